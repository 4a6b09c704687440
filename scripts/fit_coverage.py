"""Coverage of `hh.fit_recording`'s standard errors on synthetic cells.

Each cell: Pospischil parameters drawn at random (the truth), its response to a current step
simulated from its own rest and sampled at the Allen recordings' 200 kHz, the features measured (`hh.spike_features`) and perturbed by
Gaussian noise of the magnitude measured on a real recording (the Allen cell 518290966's
feature noise, `RecordingFit.noise`), then fitted by `hh.fit_recording` with those noisy
features (`recorded=`) and that noise (`noise=`). A parameter is covered when the truth lies
within ±2 standard errors of the estimate; for correct standard errors ≈ 95 % are.

Standard errors describe the scatter of the optimum of the fit's objective, so each cell also
records the objective at the truth: a fit whose score is above the truth's stopped short of
the optimum (a local minimum of the feature objective), an error that no local standard error
includes. The summary gives the coverage over every cell and over the fits that reached the
truth's score.

    python scripts/fit_coverage.py --cells 20 --out scripts/figures

Writes `fit_coverage_<number of free parameters>.json` (every cell: truth, estimate, standard errors, features) as it
goes, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import hh_jax as hh  # noqa: E402

FREE = ("gNa", "gK", "gM", "gL", "VT", "ENa")
TRUTH_RANGE = {"gNa": (30.0, 120.0), "gK": (3.0, 15.0), "gM": (0.02, 0.15), "gL": (0.01, 0.08), "VT": (-62.0, -52.0),
               "ENa": (30.0, 60.0)}
# Feature noise σ measured on Allen 518290966 sweep 57 (RecordingFit.noise of its fit).
NOISE = {"isi": 0.30, "first_spike": 2.3, "ap_peak": 0.071, "ap_width": 0.0022, "ahp": 0.23, "adaptation": 0.0053}
ONSET, OFFSET, T1, AMPLITUDE = 100.0, 600.0, 650.0, 2.0
# The Allen recordings' sampling (200 kHz). Coarser samples bias the recorded AP peak and width
# by a sizeable part of their noise (at 0.02 ms: up to ~0.5 σ), which no standard error covers.
SAMPLE_DT = 0.005


def draw(rng):
    return {k: float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if k.startswith("g") else float(rng.uniform(lo, hi))
            for k, (lo, hi) in TRUTH_RANGE.items()}


def synthetic(truth):
    cell = hh.presets.pospischil(**truth, EL=-75.0)
    rest = float(cell.resting_potential())
    t = np.arange(0.0, T1, SAMPLE_DT)
    step = hh.Step(start=ONSET, stop=OFFSET, amplitude=AMPLITUDE)
    V = np.asarray(hh.simulate(cell, step, t1=float(t[-1]), ts=jnp.asarray(t), v0=rest, save="V", rtol=1e-8, atol=1e-8).V)
    I = np.where((t >= ONSET) & (t < OFFSET), AMPLITUDE, 0.0)  # noqa: E741
    return hh.Recording(t=t, V=V, I=I, source="synthetic"), cell


def summarise(records, free) -> dict:
    """Coverage over the parameters whose standard error is finite (an infinite one says the
    features do not determine the parameter: counted apart, never as covered), over every
    cell and over the fits that reached the optimum (score at most the truth's)."""
    out = _coverage(records, free)
    reached = [r for r in records if r["score"] <= r["truth_score"] * (1 + 1e-6) + 1e-9]
    out["n_reached_optimum"] = len(reached)
    out["coverage_reached_optimum"] = _coverage(reached, free)["coverage"] if reached else float("nan")
    return out


def _coverage(records, free) -> dict:
    se = np.array([[r["stderr"][k] for k in free] for r in records], float)
    err = np.array([[r["estimate"][k] - r["truth"][k] for k in free] for r in records], float)
    truth = np.array([[r["truth"][k] for k in free] for r in records], float)
    finite = np.isfinite(se)
    covered = np.abs(err[finite]) <= 2.0 * se[finite]
    return dict(n_cells=len(records), n_finite=int(finite.sum()), n_undetermined=int((~finite).sum()),
                coverage=float(covered.mean()) if covered.size else float("nan"),
                median_relative_stderr=float(np.median(se[finite] / np.abs(truth[finite]))) if covered.size else float("nan"),
                per_parameter={k: float(np.mean(np.abs(err[finite[:, i], i]) <= 2.0 * se[finite[:, i], i]))
                               if finite[:, i].any() else float("nan") for i, k in enumerate(free)},
                noise=NOISE, free=list(free))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidates", type=int, default=512)
    parser.add_argument("--starts", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--free", default=",".join(FREE),
                        help="parameters fitted (the others stay at the truth); default all six")
    parser.add_argument("--out", default="figures")
    args = parser.parse_args(argv)
    free = tuple(args.free.split(","))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    records = []
    while len(records) < args.cells:
        truth = draw(rng)
        rec, cell = synthetic(truth)
        clean = hh.spike_features(rec.t, rec.V, stim_start=ONSET, stim_end=OFFSET)
        if not clean["spike_count"] >= 5:
            continue  # too few spikes for every feature: draw again
        noisy = {k: clean[k] + rng.normal(0.0, s) for k, s in NOISE.items()}
        start = time.perf_counter()
        model = hh.presets.pospischil(**{k: v for k, v in truth.items() if k not in free})
        fit = hh.fit_recording(rec, model, free=free, recorded=noisy, noise=NOISE, candidates=args.candidates,
                               starts=args.starts, iterations=args.iterations, seed=len(records), progress=False)
        z = {k: (fit.parameters[k] - truth[k]) / fit.stderr[k] for k in free}
        # The fit's own objective at the truth: the exact features of the true model.
        truth_score = float(np.sum(((np.array([clean[k] for k in fit.features]) - [fit.recorded[k] for k in fit.features])
                                    / [fit.scale[k] for k in fit.features]) ** 2))
        records.append(dict(truth=truth, estimate=fit.parameters, stderr=fit.stderr, z=z, recorded=fit.recorded,
                            fitted=fit.fitted, score=fit.score, truth_score=truth_score, wall_s=time.perf_counter() - start))
        summary = summarise(records, free)
        (out / f"fit_coverage_{len(free)}.json").write_text(json.dumps(dict(summary=summary, cells=records), indent=1, default=float))
        print(f"cell {len(records)}: score {fit.score:.3f} (truth {truth_score:.3f}), |z| {np.round(np.abs(list(z.values())), 2).tolist()}, "
              f"coverage so far {summary['coverage']:.3f} of {summary['n_finite']} finite standard errors "
              f"({summary['n_undetermined']} undetermined); {summary['coverage_reached_optimum']:.3f} over the "
              f"{summary['n_reached_optimum']} fits that reached the truth's score; {records[-1]['wall_s']:.0f} s", flush=True)
    return summary


if __name__ == "__main__":
    main()
