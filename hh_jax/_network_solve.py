"""Solve a network: one adaptive Diffrax solve of the whole smooth ODE, or fixed
(clock-driven) steps with spikes delivered as exact jumps between them."""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._active import top_active
from ._compilation_cache import diffrax_checks_as_nan
from ._crossing import upward_crossings
from ._delivery import ring_depth, ring_init
from ._exponential_euler import AbstractExponentialSolver, ExponentialEuler
from ._delivery import out_edge_table
from ._network import Network
from ._network_events import EventController, EventSolver, event_term, initial_events
from ._stability import step_limit
from ._solve_setup import (
    cast_floats,
    check_solver,
    check_span,
    check_tolerances,
    failure_cause,
    failure_messages,
    float_dtype,
    forward_mode_hint,
    raise_or_flag,
    save_times,
    solve_arrays,
    step_controller,
)
from ._stimulus import AbstractStimulus, NoStimulus
from ._stimulus.base import guard_times
from ._trace import NetworkTrace, Spikes
from ._validation import check_count, check_memory, concrete_array

DEFAULT_MAX_SPIKES = 64  # spike times kept per neuron
DEFAULT_MAX_ACTIVE = 128  # fixed steps: presynaptic neurons delivered along their own edges


class _NetStatic(eqx.Module):
    solver: diffrax.AbstractSolver | None
    adjoint: diffrax.AbstractAdjoint
    max_steps: int
    names: tuple[str, ...]
    max_spikes: int
    fixed: tuple[int, int, int, int] | None  # steps before the first save, stride, saves, after
    dt: float | None  # the fixed step (ms), static: XLA compiles a constant step far better
    max_active: int


def simulate_network(
    net: Network, stimulus, *, t1, ts, t0, v0, init, solver, rtol, atol, dt0, dtmax, max_steps,
    save, throw, adjoint, dt=None, max_spikes=None, max_active=None,
) -> NetworkTrace:
    """`hh.simulate` for an `hh.Network` (see there): validate, build, solve, assemble."""
    owner = "hh.simulate"
    stimuli = _stimuli(net, stimulus)
    max_spikes = check_count("max_spikes", DEFAULT_MAX_SPIKES if max_spikes is None else max_spikes, owner)
    if dt is None and max_active is not None:
        raise ValueError(f"{owner}: `max_active` applies to fixed steps only; pass `dt` (ms) with it.")
    check_tolerances(owner, rtol=rtol, atol=atol, max_steps=max_steps, dt0=dt0, dtmax=dtmax)
    adjoint = check_solver(owner, solver, adjoint)
    t0_c, t1_c = check_span(owner, t0, t1)
    if t0_c is None or t1_c is None:
        raise ValueError(f"{owner}: for a network `t0` and `t1` must be concrete numbers (ms).")
    names = _save_names(net, save)
    dtype = float_dtype(net, stimuli, v0, init)
    net, stimuli = cast_floats((net, stimuli), dtype)
    y0 = net.initial_state(v0, init, dtype)
    if dt is None:
        ts = save_times(owner, ts, t0_c, t1_c, dtype)
        fixed, solver, max_active = None, diffrax.Tsit5() if solver is None else solver, 1
        _check_adaptive_delays(owner, net)
        tables = initial_events(net, max_spikes, dtype)  # the spike record kept during the solve
    else:
        dt = _check_step(owner, dt)
        ts, fixed = _fixed_grid(float(t0_c), float(t1_c), dt, ts, dtype)
        max_active = check_count("max_active", DEFAULT_MAX_ACTIVE if max_active is None else max_active, owner)
        tables = _edge_tables(net)
        tables["rings"] = _rings(net, dt, dtype)
        if solver is None:
            solver = ExponentialEuler()
        if isinstance(solver, AbstractExponentialSolver) and solver.groups is None and solver.diagonal is None:
            solver = type(solver)(diagonal=_network_diagonal)  # the network knows its diagonal
    static = _NetStatic(solver=solver, adjoint=adjoint, max_steps=int(max_steps), names=names,
                        max_spikes=max_spikes, fixed=fixed, dt=dt, max_active=max_active)
    arrays = solve_arrays(dtype, ts=ts, t0=t0, t1=t1, rtol=rtol, atol=atol, dt0=dt0, dtmax=dtmax)
    per_time = sum(int(np.size(net.read(y0, name))) for name in names)
    check_memory(owner, "the saved variables", (per_time, ts.shape[0]), jnp.dtype(dtype).itemsize,
                 "save fewer variables (`save`, () for spikes only) or fewer times (`ts`)", copies=2)
    with forward_mode_hint(owner):
        values, spikes, final, num_steps, success, cause = _integrate_network(net, stimuli, y0, arrays, tables, static)
    # The error rides on everything returned: under jit a run that saves no variables
    # (`save=()`, spikes only) has nothing else to carry it.
    values, spikes, final, num_steps = raise_or_flag((values, spikes, final, num_steps), success, cause, throw,
                                                     failure_messages(owner, network=True))
    spikes = {k: Spikes(times=v[0], counts=v[1], success=success) for k, v in spikes.items()}
    for name, proj in net.projections.items():
        if proj.plastic:  # learned weights as the network uses them: within bounds
            final["projections"][name]["w"] = proj.clip_weights(final["projections"][name]["w"])
    return NetworkTrace(t=arrays["ts"], values=values, spikes=spikes, final=final,
                        num_steps=num_steps, success=success)


def _check_step(owner, dt) -> float:
    """The fixed step (ms) as a Python float: static, XLA compiles a constant step far better."""
    dt_c = concrete_array(dt)
    if dt_c is None or not (np.isfinite(dt_c) and dt_c > 0):
        raise ValueError(f"{owner}: `dt` must be a positive, concrete time step (ms), got {dt}.")
    return float(dt_c)


def _check_adaptive_delays(owner, net):
    """Adaptive runs deliver delayed releases as events of one spike each: not yet with
    short-term plasticity, whose released amount is built up during the spike."""
    for name, proj in net.projections.items():
        if proj.delay is not None and proj.stp is not None:
            raise ValueError(
                f"{owner}: projection {name!r} combines `delay` with short-term plasticity, "
                f"which adaptive runs do not support; pass a fixed step `dt` (ms)."
            )


def _rings(net, dt, dtype):
    """An empty ring of released amounts per delayed projection (fixed steps)."""
    rings = {}
    for name, proj in net.projections.items():
        if proj.delay is not None:
            depth, n_pre = ring_depth(proj.delay, dt), net.size(proj.pre)
            check_memory("hh.simulate", f"the delay ring of projection {name!r}", (2, depth, n_pre),
                         jnp.dtype(dtype).itemsize, "shorten its delays or lengthen `dt`")
            rings[name] = ring_init(depth, n_pre, dtype)
    return rings


def _edge_tables(net):
    """Per edge-list projection with postsynaptic states: each presynaptic neuron's edges."""
    tables = {}
    for name, proj in net.projections.items():
        idx = None if proj.dense else concrete_array(proj.pre_index)
        table = None if idx is None or not proj.synapse.post_states else out_edge_table(idx, net.size(proj.pre))
        if table is not None:
            tables[name] = jnp.asarray(table)
    return tables


@eqx.filter_jit
def _integrate_network(net, stimuli, y0, arrays, tables, static):
    if static.fixed is None:
        return _adaptive(net, stimuli, y0, arrays, tables, static)
    return _clocked(net, stimuli, y0, arrays, tables, static)


def _max_norm(y):
    # Every variable of every neuron meets the tolerance; the norm only picks step sizes, so
    # no gradient flows through it (as in single-neuron solves).
    y = jax.lax.stop_gradient(y)
    return jnp.max(jnp.stack([jnp.max(jnp.abs(x)) for x in jax.tree_util.tree_leaves(y)])) + 1e-30


def _adaptive(net, stimuli, y0, arrays, events0, static):
    ts = arrays["ts"]
    # Steps are controlled on the network state; the spike record is bookkeeping.
    # The neurons' stability limit at the start, as for single neurons (see `_stability`);
    # synaptic variables relax far more slowly than the fastest gates.
    dtmax = step_limit(arrays["dtmax"], static.solver,
                       [(pop.membrane, y0["populations"][name]) for name, pop in net.populations.items()])
    stimuli_and_sources = [*stimuli.values(), *net.sources.values()]
    controller = EventController(step_controller(dict(arrays, dtmax=dtmax), stimuli_and_sources, lambda y: _max_norm(y["net"])), net)
    term = event_term(lambda t, y, args: net.derivatives(t, y, stimuli, pulses=True))
    solver = EventSolver(static.solver, net, static.max_spikes)
    with diffrax_checks_as_nan():
        sol = diffrax.diffeqsolve(
            term, solver, t0=arrays["t0"], t1=arrays["t1"], dt0=arrays["dt0"],
            y0={"net": y0, "events": events0},
            saveat=diffrax.SaveAt(subs=[
                diffrax.SubSaveAt(ts=ts, fn=lambda t, y, args: _record(net, y["net"], static.names)),
                diffrax.SubSaveAt(t1=True),
            ]),
            stepsize_controller=controller, max_steps=static.max_steps, adjoint=static.adjoint,
            throw=False,
        )
    recorded, last = sol.ys
    values = {k: jnp.moveaxis(v, 0, -1) for k, v in recorded.items()}
    last = jax.tree_util.tree_map(lambda x: x[-1], last)
    final, events = last["net"], last["events"]["populations"]
    spikes = {name: (rec["times"], rec["count"].astype(jnp.int32)) for name, rec in events.items()}
    for name, src in net.sources.items():  # given times: what was delivered
        spikes[name] = src.spikes_between(arrays["t0"], arrays["t1"], static.max_spikes)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in jax.tree_util.tree_leaves(values)] or [jnp.array(True)]))
    ok = (sol.result == diffrax.RESULTS.successful) & finite
    return values, spikes, final, sol.stats["num_steps"], ok, failure_cause(sol.result, finite)


def _record(net, y, names):
    return {name: net.read(y, name) for name in names}


def _clocked(net, stimuli, y0, arrays, tables, static):
    n_before, stride, n_saves, n_after = static.fixed
    t0, dt = arrays["t0"], static.dt
    solver = static.solver
    tables = dict(tables)
    rings0 = tables.pop("rings")
    term = diffrax.ODETerm(lambda t, y, args: args[0].derivatives(t, y, args[1], pulses=False))
    timed = solver.order(term) >= 2  # second order: spikes act from their time within the step
    solver_state = solver.init(term, t0, t0 + dt, y0, (net, stimuli))
    dtype = arrays["t0"].dtype
    spikes0 = {name: (jnp.full((pop.size, static.max_spikes), jnp.nan, dtype),
                      jnp.zeros((pop.size,), jnp.int32))
               for name, pop in {**net.populations, **net.sources}.items()}
    thetas = {name: jnp.asarray(pop.theta(), dtype) for name, pop in net.populations.items()}

    def one_step(carry, _):
        i, y, sstate, spikes, rings = carry
        t = t0 + i * dt
        if isinstance(solver, AbstractExponentialSolver):
            y_new = solver.advance(term, t, dt, y, (net, stimuli))
        else:
            y_new, _, _, sstate, _ = solver.step(term, t, t + dt, y, (net, stimuli), sstate, True)
        new_spikes, released = {}, {}
        for name, src in net.sources.items():  # a source's spikes in (t, t + dt]
            times, counts, released[name] = src.record(*spikes[name], t, dt)
            new_spikes[name] = (times, counts)
        y_new, rings = net.jumps(y, y_new, tables, static.max_active, rings, i, dt, timed, sources=released)
        for name in net.populations:
            v_old, v_new = y["populations"][name][0], y_new["populations"][name][0]
            theta = thetas[name]
            crossed, frac = upward_crossings(v_old, v_new, theta)
            times, counts = spikes[name]
            times = _record_spikes(times, counts, crossed, t + frac * dt, static.max_spikes)
            new_spikes[name] = (times, counts + crossed.astype(jnp.int32))
        return (i + 1, y_new, sstate, new_spikes, rings), None

    def advance(carry, n):
        if n == 0:
            return carry
        return jax.lax.scan(one_step, carry, None, length=n)[0]

    carry = advance((jnp.asarray(0), y0, solver_state, spikes0, rings0), n_before)
    first = _record(net, carry[1], static.names)

    def save_step(carry, _):
        carry = advance(carry, stride)
        return carry, _record(net, carry[1], static.names)

    if n_saves > 1:
        carry, rest = jax.lax.scan(save_step, carry, None, length=n_saves - 1)
        values = {k: jnp.concatenate([first[k][None], rest[k]], axis=0) for k in first}
    else:
        values = {k: v[None] for k, v in first.items()}
    carry = advance(carry, n_after)
    final = carry[1]
    values = {k: jnp.moveaxis(v, 0, -1) for k, v in values.items()}
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in jax.tree_util.tree_leaves(final)]))
    return values, carry[3], final, carry[0], finite, jnp.asarray(1)


def _record_spikes(times, counts, crossed, t_cross, max_spikes, k=64):
    """Write this step's crossing times into the (n, max_spikes) buffer, touching only the
    neurons that crossed: up to k of them found by `top_active`, the rest, in a busier step,
    by a write over all neurons."""
    n = crossed.shape[0]
    idx, hit, overflow = top_active(crossed, k)
    ok = hit & (counts[idx] < max_spikes)
    # Entries not written point past the buffer's rows and are dropped.
    times = times.at[jnp.where(ok, idx, n), jnp.minimum(counts[idx], max_spikes - 1)].set(t_cross[idx], mode="drop")

    def rest(times):
        left = crossed.at[idx].set(False) & (counts < max_spikes)
        return times.at[jnp.where(left, jnp.arange(n), n), jnp.minimum(counts, max_spikes - 1)].set(t_cross, mode="drop")

    return jax.lax.cond(overflow, rest, lambda x: x, times)


def _network_diagonal(t, y, args):
    net, stimuli = args
    return net.derivatives_and_diagonal(t, y, stimuli)


def _fixed_grid(t0, t1, dt, ts, dtype):
    """Save times for fixed steps: a uniform grid on the step grid (default: every step)."""
    owner = "hh.simulate"
    n_steps = int(round((t1 - t0) / dt))
    # Times given in float32 are off the exact grid by rounding: allow 1e-3 of a step.
    if n_steps < 1 or abs(n_steps * dt - (t1 - t0)) > 1e-3 * dt:
        raise ValueError(f"{owner}: with fixed steps, t1 − t0 = {t1 - t0} ms must be a whole number of steps dt = {dt} ms.")
    if ts is None:
        check_memory(owner, f"saving every step dt={dt} ms", (n_steps + 1,), 8, "pass fewer save times `ts`")
        idx = np.arange(n_steps + 1)
    else:
        ts_c = concrete_array(ts)
        if ts_c is None or ts_c.ndim != 1 or ts_c.size == 0:
            raise ValueError(f"{owner}: with fixed steps, `ts` must be a concrete, non-empty 1-D array (ms).")
        idx_f = (ts_c - t0) / dt
        idx = np.round(idx_f).astype(int)
        if np.any(np.abs(idx_f - idx) > 1e-3) or idx[0] < 0 or idx[-1] > n_steps:
            raise ValueError(f"{owner}: with fixed steps, every time in `ts` must lie on the step grid t0 + k·dt within [t0, t1].")
        if idx.size > 1 and (np.any(np.diff(idx) <= 0) or np.unique(np.diff(idx)).size != 1):
            raise ValueError(f"{owner}: with fixed steps, `ts` must be evenly spaced and increasing (a multiple of dt apart).")
    stride = int(idx[1] - idx[0]) if idx.size > 1 else 1
    fixed = (int(idx[0]), stride, int(idx.size), int(n_steps - idx[-1]))
    return jnp.asarray(t0 + idx * dt, dtype), fixed


def _stimuli(net, stimulus):
    owner = "hh.simulate"
    if stimulus is None:
        stimulus = {}
    if isinstance(stimulus, AbstractStimulus):
        raise TypeError(
            f"{owner}: a network takes `stimulus` as a dict {{population: stimulus}}, "
            f"got a single {type(stimulus).__name__}."
        )
    if not isinstance(stimulus, dict):
        raise TypeError(f"{owner}: `stimulus` must be a dict {{population: hh stimulus}} or None.")
    unknown = sorted(set(stimulus) - set(net.populations))
    if unknown:
        raise ValueError(f"{owner}: `stimulus` names unknown population(s) {unknown}; populations: {sorted(net.populations)}.")
    out = {}
    for name, pop in net.populations.items():
        s = stimulus.get(name, NoStimulus())
        if not isinstance(s, AbstractStimulus):
            raise TypeError(f"{owner}: stimulus for {name!r} must be an hh stimulus, got {type(s).__name__}.")
        if s.batch_shape not in ((), (1,), (pop.size,)):
            raise ValueError(
                f"{owner}: the stimulus of population {name!r} must be one stimulus or have "
                f"one entry per neuron ({pop.size}), got batch shape {s.batch_shape}."
            )
        out[name] = guard_times(s, owner)
    return out


def _save_names(net, save):
    names = net.variable_names()
    if isinstance(save, str):
        if save == "all":
            return names
        if save == "V":
            return tuple(f"{p}.V" for p in net.populations)
        save = (save,)
    save = tuple(save)
    unknown = [s for s in save if s not in names]
    if unknown:
        raise ValueError(f"hh.simulate: `save` names unknown variable(s) {unknown}; variables: {list(names)}.")
    return save
