"""Parameter recovery: fit gNa, gK, gL and EL of the seed model to two noisy voltage traces.

Targets: the seed model with (gNa, gK, gL, EL) = (100, 40, 0.25, 12.0) under the gist's two
pulses and a 10 µA/cm² step from 5 to 45 ms, 50 ms each, sampled every 0.025 ms, plus
Gaussian noise σ = 1 mV. 32 starts: conductances log-uniform in [0.25×, 4×] of the seed
values, EL uniform within ±10 mV. Prints how many starts reached the optimum, the estimates
with standard errors against the truth, and the time taken; writes a figure and the result.

    python scripts/fit_recovery.py --out scripts/figures
"""

from __future__ import annotations

import argparse
import pathlib

import jax

jax.config.update("jax_enable_x64", True)  # fits want float64; the library never sets it

import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import hh_jax as hh  # noqa: E402

hh.use_compilation_cache()  # a repeated run skips compilation (opt-in: the library never sets it)

TRUTH = {"gNa": 100.0, "gK": 40.0, "gL": 0.25, "EL": 12.0}
PROTOCOLS = {
    "gist pulses": hh.Pulse(start=0.0, stop=1.0, amplitude=150.0) + hh.Pulse(start=10.0, stop=11.0, amplitude=50.0),
    "10 µA/cm² step": hh.Step(start=5.0, stop=45.0, amplitude=10.0),
}


def make_targets(sigma: float, seed: int):
    ts = jnp.linspace(0.0, 50.0, 2001)
    truth = hh.presets.hh1952(**TRUTH)
    rng = np.random.default_rng(seed)
    targets = []
    for stim in PROTOCOLS.values():
        clean = np.asarray(hh.simulate(truth, stim, t1=50.0, ts=ts, rtol=1e-10, atol=1e-10).V)
        targets.append(hh.Target(stimulus=stim, ts=ts, V=clean + rng.normal(0.0, sigma, clean.size)))
    return targets


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="figures", help="folder for fit_recovery.png and fit_recovery.json")
    parser.add_argument("--starts", type=int, default=32)
    parser.add_argument("--sigma", type=float, default=1.0, help="noise SD (mV)")
    parser.add_argument("--noise-seed", type=int, default=1)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    targets = make_targets(args.sigma, args.noise_seed)
    res = hh.fit(hh.presets.hh1952(), targets, free=tuple(TRUTH), n_starts=args.starts, seed=0,
                 progress=not args.no_progress)
    res.save(out / "fit_recovery.json")

    best = {k: float(getattr(res.params, k)) for k in TRUTH}
    fp = res.final_params
    near = np.ones(args.starts, bool)
    for k in TRUTH:
        near &= np.abs(fp[k] - best[k]) <= (0.2 if k == "EL" else 0.01 * best[k])
    print(f"hh_jax {hh.__version__}: {args.starts} starts, 2 protocols, noise σ = {args.sigma} mV")
    print(f"  wall time {res.wall_time:.1f} s (including compilation), {res.n_solves} solves")
    print(f"  starts at the optimum (conductances within 1 %, EL within 0.2 mV): {near.sum()}/{args.starts};"
          f" failed: {int(res.failed.sum())}; converged: {int(res.converged.sum())}")
    print(f"  loss at the optimum {res.loss:.4f} mV² (2σ² = {2 * args.sigma**2:.4f}); residual SD {res.noise_sigma:.4f} mV")
    print(f"  {'':5s} {'truth':>8s} {'estimate':>10s} {'std err':>9s} {'error/SE':>9s} {'error':>8s}")
    for k, v in TRUTH.items():
        err = best[k] - v
        rel = f"{100 * err / v:+.2f}%" if k != "EL" else f"{err:+.3f}mV"
        print(f"  {k:5s} {v:8.3f} {best[k]:10.4f} {res.stderr[k]:9.4f} {err / res.stderr[k]:+9.2f} {rel:>8s}")
    print("  correlations (gNa, gK, gL, EL):")
    print(np.array2string(res.correlation, precision=3, suppress_small=True, prefix="    "))

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for ax, target, name in zip(axes[:2], targets, PROTOCOLS):
        fitted = hh.simulate(res.params, target.stimulus, t1=50.0, ts=target.ts)
        hh.plotting.plot_fit(fitted, target.ts, target.V, ax=ax, markers=True, data_label="target (noisy)",
                             fit_label="best fit").set_title(name)
    hist = np.concatenate([res.history, res.polish_history], axis=1)
    axes[2].semilogy(hist.T, lw=0.7, alpha=0.7)
    axes[2].axvline(res.history.shape[1], color="k", lw=0.8, ls="--")
    axes[2].set(title="loss of every start (Adam | LM polish)", xlabel="iteration", ylabel="loss (mV²)")
    hh.plotting.save_figure(fig, out / "fit_recovery.png")
    print(f"  wrote {out / 'fit_recovery.png'} and {out / 'fit_recovery.json'}")
    return res


if __name__ == "__main__":
    main()
