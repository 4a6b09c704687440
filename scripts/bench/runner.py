"""Running the benchmark's cases: each (tool, dtype, size) in a fresh Python process of
`scripts/benchmark.py --case ...`, so that peak memory and JAX's dtype setting belong to that
case alone; inside it, a first (compiling) call and the median of timed repeats."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time

import numpy as np

ENTRY = pathlib.Path(__file__).resolve().parents[1] / "benchmark.py"  # what a case process runs
RESULT = "RESULT "  # a case prints its result on one line starting with this


def spawn(case_args) -> tuple[dict | None, str]:
    """Run `benchmark.py *case_args` in a fresh process: (its result, or None if it failed;
    its stderr)."""
    proc = subprocess.run([sys.executable, str(ENTRY), *case_args], capture_output=True, text=True)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT)]
    if proc.returncode != 0 or not line:
        return None, proc.stderr
    return json.loads(line[0][len(RESULT):]), proc.stderr


def report_result(result: dict) -> None:
    """Inside a case process: hand `result` back to the parent."""
    print(RESULT + json.dumps(result))


def timed(fn, repeats, summarize=lambda out: out):
    """First-call time (s), median (s) of `repeats` further calls, and `summarize(first
    output)`; the output itself is dropped before the timed calls so two never coexist in
    memory."""
    import jax

    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - start
    out = summarize(out)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return out, first, float(np.median(times))


def available(module) -> bool:
    """Whether `module` imports in a fresh process (a broken install fails there, not here)."""
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode == 0
