"""Reproduce the 2017 gist: two current pulses into the squid-axon HH model, three figures.

Protocol: seed model (rest at 0 mV), 0-50 ms, 150 µA/cm² for 0-1 ms and 50 µA/cm² for
10-11 ms. Writes stimulus.png, voltage.png and phase_plane.png and prints the spike times.

    python scripts/reproduce_seed.py --out figures
"""

from __future__ import annotations

import argparse
import pathlib

import jax

jax.config.update("jax_enable_x64", True)  # a script may choose float64; the library never does

import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")

import hh_jax as hh  # noqa: E402

SPIKE_THRESHOLD = 50.0  # mV, rest-at-0 convention


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="figures", help="folder for the PNG files (default: figures)")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    params = hh.presets.hh1952()
    stimulus = hh.Pulse(start=0.0, stop=1.0, amplitude=150.0) + hh.Pulse(start=10.0, stop=11.0, amplitude=50.0)
    trace = hh.simulate(params, stimulus, t1=50.0, ts=jnp.linspace(0.0, 50.0, 5001))
    spikes = hh.spike_times(trace.t, trace.V, threshold=SPIKE_THRESHOLD)

    figures = hh.plotting.save_trace_figures(trace, stimulus, out, spikes=spikes, gates=("n", "m"))

    print(f"hh_jax {hh.__version__}: the gist's protocol, seed model, 0-50 ms")
    print(f"  solver steps: {int(trace.num_steps)} ({int(trace.num_rejected_steps)} rejected), success: {bool(trace.success)}")
    print(f"  spike times ({SPIKE_THRESHOLD:g} mV upward crossings): {[round(float(s), 4) for s in spikes]} ms")
    print(f"  peak V: {float(trace.V.max()):.2f} mV")
    for name, path in figures.items():
        print(f"  wrote {path}")
    return {"spikes": spikes, "figures": figures, "trace": trace}


if __name__ == "__main__":
    main()
