"""Time to a fitted result (`benchmark.py --fits`): the fit scripts as a user runs them.

- `scripts/fit_recovery.py` (4 parameters, 32 starts, 2 protocols): cold (a fresh process,
  an empty compilation cache), then warm (a second process that reads the cache), repeated
  `--repeats` times each (median); with its quality (starts at the optimum, the truth's
  distance in standard errors).
- `scripts/fit_allen.py` on the shared Allen recording, cold: features within tolerance.

Each time is both the fit's own wall time (as `hh.fit` / `hh.fit_recording` report it:
from the call to the result, compilation included) and the whole process (Python start,
imports, the script's own target simulations and figures).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

SCRIPTS = pathlib.Path(__file__).resolve().parents[1]


def _run_script(name, out, cache, extra=()) -> tuple[float, str]:
    """Run scripts/`name` in a fresh process with the compilation cache at `cache`: (process
    wall time, stdout). Raises with its stderr if it fails."""
    env = dict(os.environ, HH_JAX_CACHE=str(cache))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(SCRIPTS / name), "--out", str(out), *extra], capture_output=True,
                          text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


def _recovery(out) -> dict:
    """What scripts/fit_recovery.py found: the fit's wall time, starts at the optimum, and
    |estimate − truth| / standard error per parameter (from the written result)."""
    sys.path.insert(0, str(SCRIPTS))
    from fit_recovery import TRUTH

    import hh_jax as hh

    res = hh.FitResult.load(pathlib.Path(out) / "fit_recovery.json")
    best = {k: float(getattr(res.params, k)) for k in TRUTH}
    near = np.ones(len(res.losses), bool)
    for k in TRUTH:  # the script's own rule: conductances within 1 %, EL within 0.2 mV of the best
        near &= np.abs(res.final_params[k] - best[k]) <= (0.2 if k == "EL" else 0.01 * best[k])
    return dict(fit_s=res.wall_time, at_optimum=int(near.sum()), starts=len(res.losses),
                truth_in_se={k: abs(best[k] - v) / res.stderr[k] for k, v in TRUTH.items()})


def fits_main(args) -> dict:
    """Run the fit cases one after another; write fits.json and fits.md to `args.out`."""
    from bench.report import machine, write_results

    rows = []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = pathlib.Path(tmp)
            for kind in ("cold", "warm"):  # the warm run reads what the cold one cached
                wall, _ = _run_script("fit_recovery.py", tmp / kind, tmp / "cache", ["--no-progress"])
                rows.append(dict(case="fit_recovery", kind=kind, process_s=wall, **_recovery(tmp / kind)))
                print(f"fit_recovery {kind} #{i + 1}: fit {rows[-1]['fit_s']:.1f} s, process {wall:.1f} s, "
                      f"{rows[-1]['at_optimum']}/{rows[-1]['starts']} at the optimum", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        wall, _ = _run_script("fit_allen.py", tmp, tmp / "cache")
        found = json.loads((tmp / "fit_allen.json").read_text())
        within = found["within"]
        rows.append(dict(case="fit_allen", kind="cold", process_s=wall, fit_s=found["wall_time"]["total"],
                         within=sum(within.values()), features=len(within)))
        print(f"fit_allen cold: fit {rows[-1]['fit_s']:.1f} s, process {wall:.1f} s, "
              f"{rows[-1]['within']}/{rows[-1]['features']} features within tolerance", flush=True)
    payload = dict(machine=machine(), results=rows)
    return write_results(args.out, "fits", payload, fits_markdown(payload))


def fits_markdown(payload) -> str:
    """fits.md: the machine and one row per case and kind (medians over the repeats)."""
    m = payload["machine"]
    lines = [
        f"Machine: {m['processor']}, {m['cpu_count']} cores, Python {m['python']}, JAX {m['jax']} on {m['device']}; "
        f"{m['date']}. Cold: a fresh process and an empty compilation cache; warm: a second process reading the cache.",
        "",
        "| script | run | fit (s, median) | process (s, median) | runs | quality |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    groups: dict = {}
    for r in payload["results"]:
        groups.setdefault((r["case"], r["kind"]), []).append(r)
    for (case, kind), rs in groups.items():
        if case == "fit_recovery":
            worst = max(max(r["truth_in_se"].values()) for r in rs)
            quality = (f"{min(r['at_optimum'] for r in rs)}/{rs[0]['starts']} starts at the optimum (least of the runs); "
                       f"truth within {worst:.2f} SE")
        else:
            quality = f"{min(r['within'] for r in rs)}/{rs[0]['features']} features within tolerance"
        lines.append(f"| {case}.py | {kind} | {np.median([r['fit_s'] for r in rs]):.1f} "
                     f"| {np.median([r['process_s'] for r in rs]):.1f} | {len(rs)} | {quality} |")
    return "\n".join(lines) + "\n"
