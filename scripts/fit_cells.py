"""Fit every shared Allen cell with `hh.fit_recording`, each in a fresh (cold) process, and
print a markdown table: recorded vs fitted spike count, mean ISI, first-spike latency,
resting potential and AP peak, whether each is within tolerance (count ±2, ISI 15 %, latency
10 ms, rest 2 mV, AP peak 10 mV), and the wall time of the whole process.

    python scripts/fit_cells.py --out scripts/figures

Each cell runs `scripts/fit_allen.py --data <cell> --name fit_<specimen>` in a new Python
process (float64, no compilation cache unless --cache), so every time includes importing JAX
and compiling.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data"
CELLS = ("allen_518290966_sweep57", "allen_526950199_sweep37", "allen_532355382_sweep33",
         "allen_532571720_sweep42", "allen_534524026_sweep29")
SHOWN = (("spike_count", "count", "{:.0f}"), ("isi", "ISI (ms)", "{:.1f}"), ("first_spike", "latency (ms)", "{:.1f}"),
         ("resting", "rest (mV)", "{:.1f}"), ("ap_peak", "AP peak (mV)", "{:.1f}"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="figures")
    parser.add_argument("--cells", nargs="*", default=list(CELLS))
    parser.add_argument("--cache", action="store_true", help="let the processes share hh's compilation cache")
    args = parser.parse_args(argv)
    rows = []
    for cell in args.cells:
        specimen = cell.split("_")[1]
        command = [sys.executable, str(HERE / "fit_allen.py"), "--data", str(DATA / f"{cell}.npz"), "--out", args.out,
                   "--name", f"fit_{specimen}", "--no-progress"] + (["--cache"] if args.cache else [])
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            print(done.stderr[-2000:], file=sys.stderr)
            rows.append((specimen, None, wall))
            continue
        rows.append((specimen, json.loads((pathlib.Path(args.out) / f"fit_{specimen}.json").read_text()), wall))
        print(f"{specimen}: {wall:.0f} s", file=sys.stderr)
    header = ["cell"] + [f"{title} rec → fit" for _, title, _ in SHOWN] + ["all 5 within", "wall s (cold process)"]
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for specimen, fit, wall in rows:
        if fit is None:
            print(f"| {specimen} | " + " | ".join(["failed"] * len(SHOWN)) + f" | no | {wall:.0f} |")
            continue
        cells = []
        for key, _, fmt in SHOWN:
            mark = "" if fit["within"][key] else " ✗"
            cells.append(f"{fmt.format(fit['recorded'][key])} → {fmt.format(fit['fitted'][key])}{mark}")
        ok = all(fit["within"][key] for key, _, _ in SHOWN)
        print(f"| {specimen} | " + " | ".join(cells) + f" | {'yes' if ok else 'no'} | {wall:.0f} |")
    return rows


if __name__ == "__main__":
    main()
