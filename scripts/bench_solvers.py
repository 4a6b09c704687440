"""Solver and saving measurements (issue 13, lever 3): steps, wall time and accuracy of
Tsit5 and `hh.RushLarsen` beside Jaxley Crank–Nicolson, and the cost of the ways to save.

Case (as scripts/benchmark.py): NEURON's `hh` (6.3 °C), 9 µA/cm² step from 1 to 41 ms,
50 ms, V saved every 0.025 ms, N identical neurons (one shared-step solve). For every row:
wall time (median and minimum of --repeats calls after a warm-up call, the rows of one N
called in turn so that outside load spreads over all of them; `jax.block_until_ready`),
first-call time (compilation included), solver steps, the spike-time error of neuron 0
against NEURON (CVODE, usetable_hh = 0; scripts/benchmark.py), and the ratio to Jaxley's
Crank–Nicolson (dt 0.025 ms) time measured in the same process (of medians, of minima).

Saving rows (N <= --dense-max, Tsit5): `SaveAt(ts=..., fn=V)` inside the loop (what
`hh.simulate` does) against `SaveAt(dense=True)` with the dense solution evaluated at every
save time after the loop (vectorised), the same in-loop saving with the solver's dense
information cut to the V row (so that only V is interpolated), the RK stage loop's
`scan_kind="bounded"`, and no saving at all (the state at t1: what saving costs).
Dense output keeps every step (max_steps × state × stages), so only small batches.

Every group runs in its own process (JAX's dtype and Equinox's EQX_ON_ERROR are fixed per
process): float64; float64 with EQX_ON_ERROR=nan (no runtime checks; Tsit5 rows); float32
(N = 10,000; Tsit5 and exprk3). grl2 rows only for N <= 100 (thousands of steps).

    python scripts/bench_solvers.py                 # everything (~10 minutes on 2 cores)
    python scripts/bench_solvers.py --sizes 1 100 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from benchmark import AMPLITUDE, DT_SAVE, N_SAVE, START, STOP, T1, _available, jaxley_run  # noqa: E402

# NEURON 9, CVODE atol = rtol = 1e-10, usetable_hh = 0 (RESEARCH.md; benchmark.neuron_reference()).
NEURON_SPIKES = [3.0210, 18.4959, 33.7268]

# (label, solver, rtol = atol); solver None is Tsit5.
SOLVERS = [
    ("Tsit5", "tsit5", 1e-5),
    ("Tsit5", "tsit5", 1e-4),
    ("RushLarsen exprk3", "exprk3", 1e-4),
    ("RushLarsen exprk3", "exprk3", 3e-5),
    ("RushLarsen exprk3", "exprk3", 1e-5),
    ("RushLarsen grl2", "grl2", 1e-4),
    ("RushLarsen grl2", "grl2", 1e-5),
]


def _solver(name, **kw):
    import diffrax

    import hh_jax as hh

    return diffrax.Tsit5(**kw) if name == "tsit5" else hh.RushLarsen(method=name)


def _spike_error(t, v):
    import hh_jax as hh

    spikes = np.asarray(hh.spike_times(np.asarray(t, np.float64), np.asarray(v, np.float64), 0.0))
    if len(spikes) != len(NEURON_SPIKES):
        return float("inf")
    return float(np.max(np.abs(spikes - np.asarray(NEURON_SPIKES))))


def _jaxley_entries(n):
    import jax
    import jax.numpy as jnp

    run = jaxley_run("crank_nicolson")
    forward = jax.jit(jax.vmap(run)) if n > 1 else jax.jit(run)
    g = [jnp.full((n,) if n > 1 else (), x) for x in (120.0, 36.0, 0.3)]
    return [dict(setting="Jaxley Crank-Nicolson dt 0.025", saving="every step",
                 fn=lambda: (forward(*g), int(T1 / DT_SAVE)))]


def _simulate_entries(n, max_steps, only):
    """hh.simulate (save inside the loop) for the solvers of SOLVERS named in `only`."""
    import jax
    import jax.numpy as jnp

    import hh_jax as hh

    ts = jnp.linspace(0.0, T1, N_SAVE)
    stimulus = hh.Step(start=START, stop=STOP, amplitude=AMPLITUDE)
    gNa = jnp.full(() if n == 1 else (n,), 120.0)
    entries = []
    for label, name, tol in SOLVERS:
        if name not in only or (name == "grl2" and n > 100):
            continue  # grl2: 4,000-14,000 steps, seconds per call at N = 10,000

        @jax.jit
        def run(gNa, solver=_solver(name), tol=tol):
            tr = hh.simulate(hh.presets.neuron(gNa=gNa), stimulus, t1=T1, ts=ts, save="V",
                             solver=solver, rtol=tol, atol=tol, max_steps=max_steps)
            return tr.V, tr.num_steps

        entries.append(dict(setting=f"{label} rtol {tol:g}", saving="ts in loop (hh.simulate)",
                            fn=lambda run=run: run(gNa)))
    return entries


def _v_only(solver):
    """`solver` with its dense information cut to the V row: saving then interpolates V alone
    (`hh.simulate` interpolates the whole state and keeps V)."""
    import diffrax

    class VOnly(diffrax.AbstractWrappedSolver):
        solver: diffrax.AbstractSolver

        term_structure = property(lambda self: self.solver.term_structure)
        interpolation_cls = property(lambda self: self.solver.interpolation_cls)

        def order(self, terms):
            return self.solver.order(terms)

        def init(self, *args):
            return self.solver.init(*args)

        def func(self, *args):
            return self.solver.func(*args)

        def step(self, *args):
            y1, error, dense, state, result = self.solver.step(*args)
            dense = {k: v[:, :1] if k == "k" else v[:1] for k, v in dense.items()}
            return y1, error, dense, state, result

    return VOnly(solver)


def _saving_entries(n, max_steps):
    """The same Tsit5 solve as hh.simulate, written with diffrax directly, saved four ways."""
    import diffrax
    import jax
    import jax.numpy as jnp

    import hh_jax as hh

    ts = jnp.linspace(0.0, T1, N_SAVE)
    stimulus = hh.Step(start=START, stop=STOP, amplitude=AMPLITUDE)
    gNa = jnp.full(() if n == 1 else (n,), 120.0)

    def norm(x):  # hh.simulate's: the worst neuron's RMS over states
        x = jax.lax.stop_gradient(x)
        return jnp.sqrt(jnp.max(jnp.mean(x**2, axis=0)) + 1e-30)

    def solve(gNa, tol, mode, solver):
        p = hh.presets.neuron(gNa=gNa)
        controller = diffrax.ClipStepSizeController(
            diffrax.PIDController(rtol=tol, atol=tol, norm=norm),
            jump_ts=jnp.asarray(stimulus.discontinuities(), ts.dtype))
        saveat = {"dense": diffrax.SaveAt(dense=True), "none": diffrax.SaveAt(t1=True),
                  "ts": diffrax.SaveAt(ts=ts, fn=lambda t, y, args: y[0]),
                  "v_only": diffrax.SaveAt(ts=ts, fn=lambda t, y, args: y[0])}[mode]
        solver = _v_only(solver) if mode == "v_only" else solver
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(hh.vector_field), solver, t0=0.0, t1=T1, dt0=None,
            y0=p.initial_state(None, jnp.shape(gNa)), args=(p, stimulus), saveat=saveat,
            stepsize_controller=controller, max_steps=max_steps, throw=False)
        V = jax.vmap(lambda t: sol.evaluate(t)[0])(ts) if mode == "dense" else sol.ys
        return (None if mode == "none" else jnp.moveaxis(V, 0, -1)), sol.stats["num_steps"]

    entries = []
    for tol in (1e-5, 1e-4):
        for mode, kw, note in (("ts", {}, "ts in loop (diffeqsolve)"),
                               ("v_only", {}, "ts in loop, interpolating V only"),
                               ("ts", {"scan_kind": "bounded"}, "ts in loop, scan_kind='bounded'"),
                               ("dense", {}, "dense, evaluated after the loop"),
                               ("dense", {"scan_kind": "bounded"}, "dense, scan_kind='bounded'"),
                               ("none", {}, "none (the state at t1 only)")):
            run = jax.jit(lambda gNa, tol=tol, mode=mode, kw=kw: solve(gNa, tol, mode, diffrax.Tsit5(**kw)))
            entries.append(dict(setting=f"Tsit5 rtol {tol:g}", saving=note, fn=lambda run=run: run(gNa)))
    return entries


def _measure(entries, repeats, n):
    """First call of each entry, then `repeats` rounds calling every entry in turn (so that
    load from elsewhere on the machine spreads over all of them): median and minimum."""
    import jax
    import jax.numpy as jnp

    ts = jnp.linspace(0.0, T1, N_SAVE)
    for e in entries:
        start = time.perf_counter()
        V, steps = jax.block_until_ready(e["fn"]())
        e.update(first_s=time.perf_counter() - start, steps=int(steps), times=[],
                 spike_error_ms=float("nan") if V is None else _spike_error(ts, V if n == 1 else V[0]))
    for _ in range(repeats):
        for e in entries:
            start = time.perf_counter()
            jax.block_until_ready(e["fn"]())
            e["times"].append(time.perf_counter() - start)
    return [dict({k: v for k, v in e.items() if k not in ("fn", "times")},
                 wall_s=float(np.median(e["times"])), min_s=float(np.min(e["times"]))) for e in entries]


def worker(args):
    import jax

    jax.config.update("jax_enable_x64", args.dtype == "float64")
    for n in args.sizes:
        entries = _jaxley_entries(n) if _available("jaxley") else []
        entries += _simulate_entries(n, args.max_steps, args.only)
        if n <= args.dense_max:
            entries += _saving_entries(n, 4096)
        for r in _measure(entries, args.repeats, n):
            r.update(n=n, dtype=args.dtype, eqx_on_error=os.environ.get("EQX_ON_ERROR", "raise"))
            print("ROW " + json.dumps(r), flush=True)


def _table(rows):
    jaxley = {(r["n"], r["dtype"], r["eqx_on_error"]): r for r in rows if r["setting"].startswith("Jaxley")}
    lines = [f"{'N':>6} {'dtype':7} {'EQX_ON_ERROR':12} {'setting':32} {'saving':34} {'steps':>6} {'first s':>8} "
             f"{'median ms':>10} {'min ms':>9} {'x Jaxley':>8} {'x (min)':>8} {'spike err ms':>12}"]
    for r in rows:
        ref = jaxley.get((r["n"], r["dtype"], r["eqx_on_error"]))
        ratios = (f"{r['wall_s'] / ref['wall_s']:8.2f} {r['min_s'] / ref['min_s']:8.2f}" if ref
                  else f"{'-':>8} {'-':>8}")
        lines.append(f"{r['n']:>6} {r['dtype']:7} {r['eqx_on_error']:12} {r['setting']:32} {r['saving']:34} "
                     f"{r['steps']:>6} {r['first_s']:8.2f} {1e3 * r['wall_s']:10.2f} {1e3 * r['min_s']:9.2f} "
                     f"{ratios} {r['spike_error_ms']:12.5f}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 10_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-steps", type=int, default=16384)
    parser.add_argument("--dense-max", type=int, default=100, help="largest N for the dense-output rows")
    parser.add_argument("--no-extra", action="store_true", help="skip the EQX_ON_ERROR=nan and float32 groups")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float64", help=argparse.SUPPRESS)
    parser.add_argument("--only", nargs="+", default=["tsit5", "exprk3", "grl2"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if not _available("jaxley"):
        print("Jaxley not importable: no Jaxley rows (pip install 'jaxley>=0.14')")
    # (dtype, sizes, environment, solvers, largest N with dense rows)
    groups = [("float64", args.sizes, {}, ["tsit5", "exprk3", "grl2"], args.dense_max)]
    if not args.no_extra:
        groups += [("float64", args.sizes, {"EQX_ON_ERROR": "nan"}, ["tsit5"], 0),
                   ("float32", [n for n in args.sizes if n >= 10_000], {}, ["tsit5", "exprk3"], 0)]
    rows = []
    for dtype, sizes, env, only, dense_max in groups:
        if not sizes:
            continue
        cmd = [sys.executable, __file__, "--worker", "--dtype", dtype, "--repeats", str(args.repeats),
               "--max-steps", str(args.max_steps), "--dense-max", str(dense_max), "--sizes", *map(str, sizes),
               "--only", *only]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
        if proc.returncode != 0:
            print(f"{dtype} {env}: FAILED\n{proc.stderr[-3000:]}")
        rows += [json.loads(ln[4:]) for ln in proc.stdout.splitlines() if ln.startswith("ROW ")]
    print(_table(rows))


if __name__ == "__main__":
    main()
