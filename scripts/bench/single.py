"""The single-neuron cases: hh_jax, Jaxley and the gist's scipy `odeint` on the reference
case, and the driver that runs them all, each in its own process.

Per tool, dtype and N: wall time, first-call (compile) time, the spike-time error of neuron 0
against the reference, and for N in --grad-sizes the cost of `value_and_grad` of a trace MSE
with respect to (gNa, gK, gL), relative to the forward run.
"""

from __future__ import annotations

import json
import resource
import time

import numpy as np

from .references import AMPLITUDE, DT_SAVE, N_SAVE, START, STOP, T1, hh_rhs_numpy, step, y0_numpy
from .runner import available, report_result, spawn, timed


def spike_error(t, v, reference) -> float:
    """Largest difference (ms) between the 0 mV crossings of (t, v) and `reference`; ∞ if
    their numbers differ."""
    import hh_jax as hh

    spikes = np.asarray(hh.spike_times(np.asarray(t, np.float64), np.asarray(v, np.float64), 0.0))
    if len(spikes) != len(reference):
        return float("inf")
    return float(np.max(np.abs(spikes - np.asarray(reference))))


def _grad_cost(loss, g, repeats, wall) -> dict:
    """Timing of `value_and_grad(loss)` at g, beside the forward wall time."""
    import jax

    vg = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
    _, gfirst, gwall = timed(lambda: vg(*g), repeats)
    return dict(grad_first_call_s=gfirst, grad_wall_s=gwall, grad_over_forward=gwall / wall)


def case_hh_jax(n, dtype, repeats, grad, reference, rtol, chunk_size=None):
    import jax

    jax.config.update("jax_enable_x64", dtype == "float64")
    import jax.numpy as jnp

    import hh_jax as hh

    ts = jnp.linspace(0.0, T1, N_SAVE)
    stimulus = hh.Step(start=START, stop=STOP, amplitude=AMPLITUDE)
    shape = () if n == 1 else (n,)

    def run(gNa, gK, gL):
        p = hh.presets.neuron(gNa=gNa, gK=gK, gL=gL)
        return hh.simulate(p, stimulus, t1=T1, ts=ts, save="V", rtol=rtol, atol=rtol, batching=hh.Batching(chunk_size=chunk_size)).V

    g = [jnp.full(shape, x) for x in (120.0, 36.0, 0.3)]
    # Chunking is a host-side loop over compiled chunks: it runs eagerly, not under jit.
    forward = jax.jit(run) if chunk_size is None else run
    V0, first, wall = timed(lambda: forward(*g), repeats, summarize=lambda V: V if n == 1 else V[0])
    result = dict(first_call_s=first, wall_s=wall, spike_error_ms=spike_error(ts, V0, reference))
    if grad:
        target = forward(*[x * 1.02 for x in g])
        result.update(_grad_cost(lambda *g: jnp.mean((run(*g) - target) ** 2), g, repeats, wall))
    return result


def jaxley_run(solver):
    """Jaxley's single-compartment HH cell under the case's step: `run(gNa, gK, gL)` (mS/cm²)
    returns V (mV) every DT_SAVE ms."""
    import jaxley as jx
    from jaxley.channels import HH

    cell = jx.Cell()
    cell.insert(HH())
    cell.set("v", -65.0)
    cell.init_states()
    radius, length = cell.nodes["radius"].iloc[0], cell.nodes["length"].iloc[0]  # µm
    area_cm2 = 2 * np.pi * radius * length * 1e-8
    i_amp = AMPLITUDE * area_cm2 * 1e3  # µA/cm² → nA
    current = jx.step_current(i_delay=START, i_dur=STOP - START, i_amp=i_amp, delta_t=DT_SAVE, t_max=T1)
    cell.stimulate(current, verbose=False)
    cell.record("v", verbose=False)

    def run(gNa, gK, gL):
        ps = cell.data_set("HH_gNa", gNa * 1e-3, None)  # mS/cm² → S/cm²
        ps = cell.data_set("HH_gK", gK * 1e-3, ps)
        ps = cell.data_set("HH_gLeak", gL * 1e-3, ps)
        return jx.integrate(cell, param_state=ps, delta_t=DT_SAVE, t_max=T1, solver=solver)[0]

    return run


def case_jaxley(n, dtype, repeats, grad, reference, solver):
    import jax

    jax.config.update("jax_enable_x64", dtype == "float64")
    import jax.numpy as jnp

    run = jaxley_run(solver)
    batched = jax.jit(jax.vmap(run)) if n > 1 else jax.jit(run)
    g = [jnp.full((n,) if n > 1 else (), x) for x in (120.0, 36.0, 0.3)]
    V, first, wall = timed(lambda: batched(*g), repeats)
    t = np.arange(V.shape[-1]) * DT_SAVE
    result = dict(first_call_s=first, wall_s=wall, spike_error_ms=spike_error(t, V if n == 1 else V[0], reference))
    if grad:
        target = batched(*[x * 1.02 for x in g])
        unbatched = jax.vmap(run) if n > 1 else run
        result.update(_grad_cost(lambda *g: jnp.mean((unbatched(*g) - target) ** 2), g, repeats, wall))
    return result


def case_odeint(n, dtype, repeats, grad, reference):
    from scipy.integrate import odeint

    t = np.linspace(0.0, T1, N_SAVE)

    def run():
        return odeint(lambda y, t: hh_rhs_numpy(t, y, step), y0_numpy(), t)[:, 0]

    start = time.perf_counter()
    V = run()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    per_neuron = float(np.median(times))
    return dict(first_call_s=first, wall_s=per_neuron * n, extrapolated=n > 1, spike_error_ms=spike_error(t, V, reference))


def run_case(args) -> None:
    """Inside a case process: run the one case `args.case` = (tool, dtype, N)."""
    tool, dtype, n = args.case[0], args.case[1], int(args.case[2])
    args.rtol = args.rtol[0]  # a case runs one tolerance
    reference = json.loads(args.reference)
    grad = n in args.grad_sizes
    if "@" in tool:  # hh_jax rows carry their tolerance: "hh_jax@1e-05"
        tool, tolerance = tool.split("@")
        args.rtol = float(tolerance)
    if tool == "hh_jax":
        result = case_hh_jax(n, dtype, args.repeats, grad, reference, args.rtol)
        result["setting"] = f"UnrolledTsit5, PID rtol=atol={args.rtol:g}"
    elif tool == "hh_jax:chunked":
        result = case_hh_jax(n, dtype, args.repeats, False, reference, args.rtol, chunk_size=args.chunk_size)
        result["setting"] = f"UnrolledTsit5, PID rtol=atol={args.rtol:g}, chunks of {args.chunk_size}"
    elif tool.startswith("jaxley"):
        solver = tool.split(":")[1]
        result = case_jaxley(n, dtype, args.repeats, grad, reference, solver)
        result["setting"] = f"{solver}, dt {DT_SAVE} ms"
    else:
        result = case_odeint(n, dtype, args.repeats, grad, reference)
        result["setting"] = "scipy odeint, default tolerances" + (" (extrapolated from N=1)" if n > 1 else "")
    result.update(
        tool=tool.split(":")[0], dtype=dtype, n=n,
        neuron_ms_per_s=n * T1 / result["wall_s"],
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    )
    report_result(result)


def run_all(args, reference) -> list[dict]:
    """Every (tool, dtype, N) case of `args` in turn, each in its own process; a row printed
    as each finishes."""
    from .report import row

    tools = [t for t in args.tools if not t.startswith("jaxley") or available("jaxley")]
    skipped = sorted(set(args.tools) - set(tools))
    if skipped:
        print(f"skipping {skipped}: install the bench extra (pip install -e '.[bench]')")
    tools = [f"hh_jax@{r:g}" for r in args.rtol for t in tools if t == "hh_jax"] + [t for t in tools if t != "hh_jax"]
    cases = []
    for dtype in args.dtypes:
        for tool in tools:
            if tool == "odeint" and dtype == "float32":
                continue  # scipy integrates in float64 only
            if args.quick and tool.startswith("jaxley") and dtype == "float32":
                continue
            cases += [(tool, dtype, n) for n in args.sizes]
    cases += [(f"hh_jax:chunked@{args.rtol[0]:g}", "float64", n) for n in args.large]
    results = []
    for tool, dtype, n in cases:
        result, stderr = spawn(["--case", tool, dtype, str(n), "--reference", json.dumps(reference),
                                "--repeats", str(args.repeats), "--rtol", str(args.rtol[0]),
                                "--chunk-size", str(args.chunk_size), "--grad-sizes", *map(str, args.grad_sizes)])
        if result is None:
            print(f"{tool} {dtype} N={n}: FAILED\n{stderr[-2000:]}")
            result = dict(tool=tool.split(":")[0], setting=tool, dtype=dtype, n=n, error=stderr[-500:])
        else:
            print(row(result))
        results.append(result)
    return results
