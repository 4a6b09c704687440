"""A Brunel (2000)-style sparse E/I network of HH neurons in the asynchronous irregular
regime (issue 18): `hh.presets.brunel`, 80 % excitatory, fixed in-degree 10 %, exponential
conductances with a 1.5 ms delay, inhibition-dominated (g = 20), each neuron driven by its own
Poisson source. Runs it with fixed steps, prints the population rate, mean ISI CV and a
synchrony measure (all after a 200 ms transient), checks them against the stated ranges, and
draws a raster with the population rate.

    python scripts/brunel.py --out scripts/figures            # n = 2000, 1 s
    python scripts/brunel.py --n 500 --t1 500 --out /tmp      # a quick run
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import hh_jax as hh  # noqa: E402

TRANSIENT_MS = 200.0
RATE_HZ, MEAN_CV = (5.0, 30.0), (0.7, 1.3)  # the asynchronous irregular regime, as stated
MAX_SYNCHRONY = 10.0


def regime(trains, n, t_start, t1, bin_ms=1.0) -> dict:
    """Population rate (Hz), mean ISI CV (neurons with at least 3 spikes) and synchrony (the
    Fano factor of the population spike count in `bin_ms` bins: 1 for independent Poisson
    neurons, of order n for a synchronous network), over (t_start, t1] (ms).

    `trains`: one array of spike times (ms) per neuron."""
    trains = [np.asarray(tr)[(np.asarray(tr) > t_start) & (np.asarray(tr) <= t1)] for tr in trains]
    count = sum(tr.size for tr in trains)
    cvs = [np.std(np.diff(tr)) / np.mean(np.diff(tr)) for tr in trains if tr.size >= 3]
    hist = np.histogram(np.concatenate(trains + [np.zeros(0)]), bins=np.arange(t_start, t1 + 1e-9, bin_ms))[0]
    return dict(rate_hz=count / n / ((t1 - t_start) / 1000.0), isi_cv=float(np.mean(cvs)) if cvs else float("nan"),
                cv_neurons=len(cvs), synchrony=float(hist.var() / max(hist.mean(), 1e-12)))


def in_regime(stats) -> bool:
    return (RATE_HZ[0] <= stats["rate_hz"] <= RATE_HZ[1] and MEAN_CV[0] <= stats["isi_cv"] <= MEAN_CV[1]
            and stats["synchrony"] < MAX_SYNCHRONY)


def trains_of(spikes) -> list:
    """Spike times per neuron from an `hh.Spikes`."""
    return [row[np.isfinite(row)] for row in np.asarray(spikes.times)]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="neurons (80 %% excitatory)")
    parser.add_argument("--t1", type=float, default=1000.0, help="simulated time (ms)")
    parser.add_argument("--dt", type=float, default=0.1, help="fixed step (ms)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="figures")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)  # this script's choice (in main: the benchmark imports `regime`)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    model = hh.presets.brunel(n=args.n, seed=args.seed)
    max_spikes = int(60 * args.t1 / 1000.0) + 20  # up to 60 Hz per neuron
    start = time.perf_counter()
    tr = hh.simulate(model.network, None, t1=args.t1, dt=args.dt, init=model.init, save=(), max_spikes=max_spikes)
    spikes = jax.block_until_ready(tr.spikes["P"])
    wall = time.perf_counter() - start
    n_exc = int(round(0.8 * args.n))
    trains = trains_of(spikes)
    stats = regime(trains, args.n, TRANSIENT_MS, args.t1)
    stats.update(exc=regime(trains[:n_exc], n_exc, TRANSIENT_MS, args.t1)["rate_hz"],
                 inh=regime(trains[n_exc:], args.n - n_exc, TRANSIENT_MS, args.t1)["rate_hz"],
                 n=args.n, t1_ms=args.t1, dt_ms=args.dt, wall_s=wall, in_regime=in_regime(stats),
                 input_rate_hz=float(np.asarray(tr.spikes["ext"].counts).mean() / (args.t1 / 1000.0)))
    print(f"Brunel network, n = {args.n}, {args.t1:g} ms in {wall:.1f} s (first call, compilation included)")
    print(f"population rate {stats['rate_hz']:.2f} Hz (E {stats['exc']:.2f}, I {stats['inh']:.2f}); "
          f"mean ISI CV {stats['isi_cv']:.3f} over {stats['cv_neurons']} neurons; synchrony {stats['synchrony']:.2f}")
    print(f"asynchronous irregular (rate {RATE_HZ[0]:g}–{RATE_HZ[1]:g} Hz, CV {MEAN_CV[0]}–{MEAN_CV[1]}, "
          f"synchrony < {MAX_SYNCHRONY:g}): {stats['in_regime']}")

    fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True, gridspec_kw=dict(height_ratios=[3, 1]))
    shown = min(args.n, 200)  # a sample of neurons, excitatory then inhibitory
    rows = list(range(shown * n_exc // args.n)) + list(range(n_exc, n_exc + shown - shown * n_exc // args.n))
    for k, i in enumerate(rows):
        axes[0].plot(trains[i], np.full(trains[i].size, k), "|", ms=2, color="tab:blue" if i < n_exc else "tab:red")
    axes[0].set_ylabel("neuron (E blue, I red)")
    axes[0].set_title(f"Brunel-style E/I network of HH neurons: {stats['rate_hz']:.1f} Hz, ISI CV {stats['isi_cv']:.2f}")
    edges = np.arange(0.0, args.t1 + 1e-9, 2.0)
    all_spikes = np.concatenate(trains)
    axes[1].plot(edges[:-1], np.histogram(all_spikes, bins=edges)[0] / args.n / 2e-3, lw=0.8)
    axes[1].set_ylabel("rate (Hz)")
    axes[1].set_xlabel("time (ms)")
    hh.plotting.save_figure(fig, out / "brunel.png", dpi=120)
    (out / "brunel.json").write_text(json.dumps(stats, indent=1))
    return stats


if __name__ == "__main__":
    main()
