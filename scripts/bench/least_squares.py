"""Developer measurement: hh.fit's Levenberg–Marquardt against Optimistix's, on one problem.

The recovery problem of scripts/fit_recovery.py (4 free parameters, 2 noisy targets of 2001
samples) from the same random starts, both solvers on the same residual function (the fit's
`Problem.residuals`, forward-mode Jacobians through Diffrax), every start in one vmapped
program. Reports wall time cold (compile included) and warm, iterations, and how many starts
reach the optimum. It reads hh_jax internals on purpose: it compares the fit's own solver.

    python scripts/bench/least_squares.py --starts 32
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optimistix as optx  # noqa: E402

import hh_jax as hh  # noqa: E402
from hh_jax._fit._least_squares import LM_CHUNK, lm_chunk, lm_start  # noqa: E402
from hh_jax._fit._problem import make_problem  # noqa: E402
from hh_jax._fit._spaces import naturals, spaces_for  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from fit_recovery import TRUTH, make_targets  # noqa: E402


def hand_lm(problem, u0, max_iterations):
    state = lm_start(problem, u0, u0.dtype)
    done = 0
    while done < max_iterations and not bool(jnp.all(state.done)):
        state, _, count = lm_chunk(problem, state, jnp.asarray(min(LM_CHUNK, max_iterations - done)), LM_CHUNK)
        done += int(count)
    return state.u, np.asarray(state.cost), done


def optimistix_lm(problem, u0, max_iterations, tol):
    solver = optx.LevenbergMarquardt(rtol=tol, atol=tol)

    @jax.jit
    def solve(u0):
        def one(u):
            sol = optx.least_squares(lambda x, _: problem.residuals(x)[0], solver, u, options=dict(jac="fwd"),
                                     max_steps=max_iterations, throw=False)
            return sol.value, jnp.sum(problem.residuals(sol.value)[0] ** 2), sol.stats["num_steps"]
        return jax.vmap(one)(u0)

    u, cost, steps = solve(u0)
    return u, np.asarray(cost), int(np.max(steps))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--tol", type=float, default=1e-6, help="Optimistix rtol = atol")
    args = parser.parse_args(argv)
    targets = make_targets(1.0, 1)
    init = hh.presets.hh1952()
    spaces = spaces_for(init, tuple(TRUTH), None)
    problem = make_problem(init, tuple(targets), hh.TraceMSE(), spaces, 1e-5, 1e-5, 16384, jnp.float64)
    rng = np.random.default_rng(0)
    x0 = np.stack([s.sample(rng, args.starts) for s in spaces], axis=1)
    u0 = jnp.asarray(np.stack([s.unconstrained(x0[:, i]) for i, s in enumerate(spaces)], axis=1))
    rows = []
    for name, run in (("hh_jax LM", lambda: hand_lm(problem, u0, args.iterations)),
                      ("optimistix LM", lambda: optimistix_lm(problem, u0, args.iterations, args.tol))):
        times = []
        for _ in range(2):  # cold (compiles), then warm
            t = time.perf_counter()
            u, cost, iters = run()
            times.append(time.perf_counter() - t)
        rows.append((name, times, cost, iters, naturals(spaces, u)))
    best = min(np.nanmin(np.where(np.isfinite(r[2]), r[2], np.nan)) for r in rows)
    print(f"{args.starts} starts, recovery problem, best loss {best:.6f} mV²")
    for name, (cold, warm), cost, iters, params in rows:
        at = np.isfinite(cost) & (cost <= best * (1 + 1e-6))
        print(f"  {name:14s} cold {cold:6.1f} s  warm {warm:6.1f} s  iterations {iters:3d}  at the optimum {int(at.sum())}/{args.starts}")


if __name__ == "__main__":
    main()
