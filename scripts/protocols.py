"""Stimulus protocols and excitability of the squid-axon model: sustained firing, a pulse
train, a noisy current, and the f–I curve with its rheobase, each written as a PNG.

    python scripts/protocols.py --out figures
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


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="figures", help="folder for the PNG files (default: figures)")
    parser.add_argument("--amplitudes", type=int, default=31, help="number of f–I amplitudes in 0–30 µA/cm² (default 31)")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    p = hh.presets.hh1952()
    threshold = p.spike_threshold()
    protocols = {
        "sustained_step": hh.Step(start=10.0, stop=190.0, amplitude=10.0),
        "pulse_train": hh.PulseTrain(start=10.0, frequency=40.0, width=1.0, amplitude=30.0, count=7),
        "noise": hh.Noise(mean=6.0, sigma=4.0, tau=5.0, key=jax.random.key(0), start=10.0, stop=190.0),
    }
    result = {}
    for name, stimulus in protocols.items():
        trace = hh.simulate(p, stimulus, t1=200.0, ts=jnp.linspace(0.0, 200.0, 8001))
        spikes = hh.spike_times(trace.t, trace.V, threshold=threshold)
        axes = hh.plotting.plot_trace(trace, stimulus, spikes=spikes)
        axes[0].set_title(f"{name.replace('_', ' ')}: {len(spikes)} spikes")
        _save(axes[0].figure, out / f"{name}.png")
        result[name] = spikes
        print(f"{name}: {len(spikes)} spikes")

    amplitudes = jnp.linspace(0.0, 30.0, args.amplitudes)
    fi = hh.fi_curve(p, amplitudes, start=1.0, stop=501.0)
    rheobase = hh.rheobase(p, start=1.0, stop=501.0)
    ax = hh.plotting.plot_fi_curve(fi, rheobase=rheobase)
    _save(ax.figure, out / "fi_curve.png")
    print(f"rheobase (1–501 ms step): {rheobase:.3f} µA/cm²")
    print("f–I:", ", ".join(f"{float(a):g}: {float(r):g} Hz" for a, r in zip(fi.amplitude, fi.rate)))
    result.update(fi=fi, rheobase=rheobase)
    return result


def _save(fig, path):
    print(f"  wrote {hh.plotting.save_figure(fig, path)}")


if __name__ == "__main__":
    main()
