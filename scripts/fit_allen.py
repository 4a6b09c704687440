"""Fit the Pospischil cortical model to a real recording with `hh.fit_recording`: Allen Cell
Types specimen 518290966, sweep 57 (a 1 s, 0.17 nA current step; the cell of Gonçalves et
al. 2020), or any recording in the same format (`--data`).

The data are read from ../shared/data (never copied here) with `hh.load_trace`: voltage in
mV, corrected by the file's liquid junction potential, current turned into µA/cm² with the
file's soma area. `hh.fit_recording` does the rest: the model at its own rest (EL solved for
the recorded resting potential), a batched search, Levenberg–Marquardt on the features,
standard errors from the feature Jacobian and noise.

Writes `<name>.png` (recorded vs fitted voltage) and `<name>.json` (parameters,
standard errors, recorded and fitted features, wall times).

    python scripts/fit_allen.py --out scripts/figures
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax

jax.config.update("jax_enable_x64", True)  # fits want float64; the library never sets it

import matplotlib  # noqa: E402
import numpy as np  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import hh_jax as hh  # noqa: E402

DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "allen_518290966_sweep57.npz"


def load(path):
    """An Allen recording of ../shared/data: t_ms, v_mV, i_nA, with its soma area and junction potential."""
    with np.load(path) as z:
        area, junction = float(z["soma_area_cm2"]), float(z["junction_potential_mV"])
    return hh.load_trace(path, columns={"t": "t_ms", "V": "v_mV", "I": "i_nA"}, time_unit="ms", voltage_unit="mV",
                         current_unit="nA", area_cm2=area, junction_mV=junction)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--out", default="figures")
    parser.add_argument("--name", default="fit_allen", help="stem of the output files")
    parser.add_argument("--candidates", type=int, default=512)
    parser.add_argument("--starts", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", action="store_true", help="use hh's persistent compilation cache")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.cache:
        hh.use_compilation_cache()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    rec = load(args.data)
    fit = hh.fit_recording(rec, "pospischil", candidates=args.candidates, starts=args.starts,
                           iterations=args.iterations, seed=args.seed, progress=not args.no_progress)
    payload = dict(fit.to_dict(), data=str(args.data), wall_time_s=time.perf_counter() - t_start)
    (out / f"{args.name}.json").write_text(json.dumps(payload, indent=2))
    for k in fit.features:
        print(f"{k:12s} recorded {fit.recorded[k]:9.4g}  fitted {fit.fitted[k]:9.4g}  {'ok' if fit.within[k] else 'MISSED'}")
    print("fitted " + ", ".join(f"{k} = {v:.4g}" + (f" ± {fit.stderr[k]:.2g}" if k in fit.stderr else "")
                                for k, v in fit.parameters.items()))
    print(f"wall time {payload['wall_time_s']:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in fit.wall_time.items())})")
    fig, ax = plt.subplots(figsize=(12, 3.8))
    hh.plotting.plot_fit(fit.trace, rec.t, rec.V, ax=ax, data_label="recorded (junction-corrected)",
                         fit_label="fitted Pospischil model").set_title(pathlib.Path(args.data).stem)
    hh.plotting.save_figure(fig, out / f"{args.name}.png")
    plt.close(fig)
    print(f"wrote {out / (args.name + '.png')} and {out / (args.name + '.json')}")
    return payload


if __name__ == "__main__":
    main()
