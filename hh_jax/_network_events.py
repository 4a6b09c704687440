"""Spike events inside adaptive network solves: spike times recorded on the accepted steps,
and delayed releases delivered exactly at spike time + delay.

The adaptive solve integrates the smooth network ODE (`hh.Network.derivatives`) with any
Diffrax solver, wrapped by `EventSolver`, whose state is {"net": network state, "events":
per population the spike record}. After each step of the wrapped solver it

- finds every threshold crossing of the step and locates it on the solver's own dense
  output (`_step_spikes`, as `hh.simulate_spikes` does for single neurons), so spike times
  are as accurate as the solution and no voltage needs to be saved (`save=()`);
- keeps the first `max_spikes` times per neuron (the trace's `spikes`) and, for populations
  with delayed projections, a ring of the latest ones;
- applies, for each delayed projection, the release of every spike whose arrival
  t_spike + delay lies in the step (t0, t1] as the synapse's exact jump.

`EventController` wraps the step-size controller and ends every step at the next pending
arrival (as `diffrax.ClipStepSizeController` does for known jump times), and marks such steps
as jumps (so first-same-as-last solvers re-evaluate the vector field). So a delayed
conductance starts at t_spike + delay to within the solver's accuracy, and since the step
endpoint is the arrival time itself, derivatives with respect to weights include the
shift of arrivals with the spike times that the weights move (the steps before and after an
arrival end and start at it). No other step endpoint carries a derivative: the controller's
choices are free, and its recurrence t₊ = t₁ + factor·(t₁ − t₀) would amplify any derivative
of them geometrically.

Why not Diffrax events: a `diffrax.Event` ends the solve at its root, so a run with many
spikes would be many solves in a loop of unknown length; recording crossings on the accepted
steps costs one comparison per neuron and step, and keeps one solve.
"""

from __future__ import annotations

import math
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._delivery import connection_rows, connection_sum
from ._step_spikes import WrappedStepper, append_spikes, empty_record, record_term, step_crossings
from ._validation import concrete_array

MIN_INTERVAL = 0.5  # ms: the shortest interspike interval whose delayed releases are all kept


def event_term(vector_field):
    """The ODE term of the network state with its spike record: the record has no
    derivative (the solver sets it after each step)."""
    return record_term(vector_field, state="net", record="events")


def recent_depth(net) -> dict:
    """Per population with delayed outgoing projections: spike times to keep for them, enough
    for one spike every `MIN_INTERVAL` over the longest delay."""
    depths = {}
    for proj in net.projections.values():
        if proj.delay is not None:
            longest = float(np.max(concrete_array(proj.delay)))
            depths[proj.pre] = max(depths.get(proj.pre, 0), int(math.ceil(longest / MIN_INTERVAL)) + 2)
    return depths


def initial_events(net, max_spikes, dtype) -> dict:
    """The empty spike record: times (n, max_spikes) NaN-padded, counts (n,), and a ring of
    the latest times (n, depth) where delays need them (−inf: none)."""
    depths = recent_depth(net)
    events = {}
    for name, pop in net.populations.items():
        rec = empty_record(pop.size, max_spikes, dtype)
        if name in depths:
            rec["recent"] = jnp.full((pop.size, depths[name]), -jnp.inf, dtype)
        events[name] = rec
    return {"populations": events, "jumped": jnp.zeros((), dtype)}


def _v_rows(info, name):
    """The potentials of population `name` in a solver's dense-output pytree (any leading
    stage axes kept)."""
    return jax.tree_util.tree_map(lambda v: v["net"]["populations"][name][..., 0, :], info,
                                  is_leaf=lambda x: isinstance(x, dict) and "net" in x)


def _arrival_times(net, proj, recent):
    """When the latest spikes of `proj`'s presynaptic neurons arrive (ms; −inf: no spike):
    (n_pre, depth), or (*connections, depth) for per-connection delays."""
    if proj.per_edge_delay:
        return recent[connection_rows(proj, net.populations[proj.post].size)] + proj.delay[..., None]
    return recent + proj.delay


def _arrivals(net, proj, recent, t0, t1):
    """Spikes of `proj`'s presynaptic neurons whose arrival falls in (t0, t1]: counts per
    presynaptic neuron, or per connection for per-connection delays."""
    arrive = _arrival_times(net, proj, recent)
    return jnp.sum((arrive > t0) & (arrive <= t1), axis=-1).astype(recent.dtype)


def next_arrival(net, events, after):
    """The earliest pending arrival of a delayed release after time `after` (inf if none)."""
    soonest = jnp.asarray(jnp.inf, after.dtype)
    for proj in net.projections.values():
        if proj.delay is not None:
            arrive = _arrival_times(net, proj, events["populations"][proj.pre]["recent"])
            soonest = jnp.minimum(soonest, jnp.min(jnp.where(arrive > after, arrive, jnp.inf), initial=jnp.inf))
    return soonest


class EventSolver(WrappedStepper):
    """Wraps a Diffrax solver of the network ODE: records spikes and delivers delayed
    releases after each step (see the module's docstring). `net` and `max_spikes` as in
    `hh.simulate`."""

    solver: diffrax.AbstractSolver
    net: Any
    max_spikes: int = eqx.field(static=True)
    scan_kind: str | None = None  # see `WrappedStepper`

    def init(self, terms, t0, t1, y0, args):
        return self._inner().init(terms, t0, t1, y0, args)

    def func(self, terms, t0, y0, args):
        return self._inner().func(terms, t0, y0, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        # The events have no derivative (`event_term`): the wrapped step leaves them as they were.
        y1, y_error, dense_info, solver_state, result = self._inner().step(
            terms, t0, t1, y0, args, solver_state, made_jump)
        events = {name: self._record(name, y0, y1, dense_info, t0, t1) for name in self.net.populations}
        projections, jumped = self._deliver(y1["net"]["projections"], events, t0, t1)
        y1 = {"net": {"populations": y1["net"]["populations"], "projections": projections},
              "events": {"populations": events, "jumped": jumped}}
        return y1, y_error, dense_info, solver_state, result

    def _record(self, name, y0, y1, dense_info, t0, t1):
        """Population `name`'s spike record after the step: its crossings added."""
        rec = dict(y0["events"]["populations"][name])
        v0, v1 = y0["net"]["populations"][name][0], y1["net"]["populations"][name][0]
        theta = jnp.broadcast_to(jnp.asarray(self.net.populations[name].theta(), v1.dtype), v1.shape)
        info_V = {k: _v_rows(v, name) for k, v in dense_info.items()}
        crossed, times = step_crossings(self.solver.interpolation_cls, info_V, v0, v1, theta, t0, t1)
        if "recent" in rec:
            n, depth = v1.shape[0], rec["recent"].shape[1]
            slot = rec["count"].astype(jnp.int32) % depth
            rec["recent"] = rec["recent"].at[jnp.where(crossed, jnp.arange(n), n), slot].set(times, mode="drop")
        rec["times"], rec["count"] = append_spikes(rec["times"], rec["count"], crossed, times, self.max_spikes)
        return rec

    def _deliver(self, projections, events, t0, t1):
        """The projections after the releases arriving in (t0, t1], and whether any did."""
        net, projections = self.net, dict(projections)
        jumped = jnp.zeros((), t1.dtype)
        for name, proj in net.projections.items():
            if proj.delay is None:
                continue
            st, n_post = projections[name], net.populations[proj.post].size
            amount = _arrivals(net, proj, events[proj.pre]["recent"], t0, t1)
            w = proj.weights(st)
            total = connection_sum(proj, w, amount, n_post) if proj.per_edge_delay else proj.weighted_sum(w, n_post)(amount)
            projections[name] = {**st, **proj.synapse.jump(st, total)}
            jumped = jnp.maximum(jumped, jnp.max(amount, initial=0.0) > 0)
        return projections, jumped


class EventController(diffrax.AbstractStepSizeController):
    """Wraps a step-size controller: every step ends at the next pending delayed arrival,
    and a step that delivered one is marked as a jump."""

    controller: diffrax.AbstractStepSizeController
    net: Any

    def wrap(self, direction):
        return eqx.tree_at(lambda c: c.controller, self, self.controller.wrap(direction))

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        t1, state = self.controller.init(terms, t0, t1, y0, dt0, args, func, error_order)
        return jax.lax.stop_gradient(t1), state

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state):
        keep, next_t0, next_t1, made_jump, state, result = self.controller.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state)
        events = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), y1_candidate["events"], y0["events"])
        soonest = next_arrival(self.net, events, next_t0)
        # Only arrivals carry derivatives into the step grid: elsewhere the grid is the
        # controller's choice, and the PID recurrence would amplify any derivative of it.
        next_t1 = jnp.where(soonest < next_t1, soonest, jax.lax.stop_gradient(next_t1))
        made_jump = made_jump | (keep & (y1_candidate["events"]["jumped"] > 0))
        return keep, next_t0, next_t1, made_jump, state, result
