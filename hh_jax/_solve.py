"""Solve: integrate a membrane's vector field with Diffrax and return a `Trace`."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from ._analysis import _spike_times_padded
from ._batch import flatten_batch, run_batched
from ._compilation_cache import diffrax_checks_as_nan
from ._membrane import AbstractMembrane
from ._stimulus import AbstractStimulus, NoStimulus
from ._stimulus.base import guard_times
from ._trace import Spikes, Trace
from ._validation import (
    broadcast_batch_shape,
    check_count,
    check_finite,
    check_memory,
    check_positive,
    concrete_array,
    is_array,
    is_concrete,
)
from ._vector_field import vector_field

DEFAULT_SAVE_DT = 0.025  # ms: NEURON's default time step, when no `ts` is given
MAX_RTOL = 0.1  # a relative tolerance of 10 % or more controls nothing
# Peak copies of the saved output: the whole batch's result and its reordering into the
# returned trace, plus, for the neurons solved at once (a chunk), Diffrax's save buffer and
# the compiled solve's output.
_OUTPUT_COPIES, _CHUNK_COPIES = 2, 2

_FAILURE_MESSAGES = (
    "hh.simulate: the solver hit its step limit (max_steps) before reaching t1. Increase "
    "`max_steps`, loosen `rtol`/`atol`, or check the parameters; pass `throw=False` to get "
    "the partial trace with `trace.success == False` instead of this error.",
    "hh.simulate: the state became non-finite (NaN or inf); the parameters or stimulus drive "
    "the model outside the range it can be integrated in. Pass `throw=False` to get "
    "`trace.success == False` instead of this error.",
    "hh.simulate: the solver failed before reaching t1 (its step size collapsed). Check the "
    "parameters and stimulus, or loosen `rtol`/`atol`; pass `throw=False` to get "
    "`trace.success == False` instead of this error.",
)


def _choose_devices(devices):
    if devices is None:
        return tuple(jax.devices())
    devices = tuple(devices)
    if not devices:
        raise ValueError("hh.simulate: `devices` must name at least one device.")
    return devices


class SolverError(RuntimeError):
    """A simulation did not reach t1 (step limit, collapsed step size or non-finite state).

    Example:
        >>> try:
        ...     hh.simulate(p, s, t1=50.0, max_steps=20)
        ... except hh.SolverError as err:
        ...     print(err)
    """


def _batch_rms_norm(x):
    """Error norm for a batch solved with one shared step: the worst neuron's RMS over states.

    `x` has shape `(states, *batch)`. For a single neuron this is Diffrax's RMS norm, and
    every neuron in a batch meets the requested tolerance.
    """
    # The norm only chooses step sizes, so no gradient flows through it: derivatives are
    # those of the solution for the step sequence taken (the usual discrete adjoint), a
    # neuron's gradient does not depend on its batch-mates' errors, and a state at exact
    # rest (zero error estimates, e.g. a Newton-solved resting potential) cannot turn the
    # controller's error**(-k) into NaN gradients. The floor keeps 1/norm finite.
    x = jax.lax.stop_gradient(x)
    return jnp.sqrt(jnp.max(jnp.mean(x**2, axis=0)) + 1e-30)


def simulate(
    membrane: AbstractMembrane,
    stimulus: AbstractStimulus | None = None,
    *,
    t1: float,
    ts: Float[ArrayLike, " time"] | None = None,
    t0: float = 0.0,
    v0: Float[ArrayLike, "*batch"] | None = None,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-6,
    dt0: float | None = None,
    dtmax: float | None = None,
    max_steps: int = 16384,
    save: str | Sequence[str] = "all",
    throw: bool = True,
    adjoint: diffrax.AbstractAdjoint | None = None,
    chunk_size: int | None = None,
    devices=None,
    steps: str = "shared",
    dt: float | None = None,
    init: dict | None = None,
    max_spikes: int = 64,
    max_active: int = 128,
) -> Trace:
    """Integrate a membrane (or a network) under a stimulus with an adaptive Diffrax solver.

    Steps are chosen by a PID error controller (tolerances `rtol`, `atol`), and every time
    where the stimulus jumps is handed to the controller, which steps exactly to it, so a
    pulse of any width is never stepped over. Works under `jax.jit`, `jax.vmap` and
    `jax.grad` (reverse mode through `diffrax.RecursiveCheckpointAdjoint` by default), in
    float32 and float64: the computation runs in the floating dtype of the inputs (Python
    floats follow JAX's default, float64 only when `jax_enable_x64` is on).

    Everything is differentiable except the stimulus's times (pulse edges, onsets, sample
    times): a trace is not differentiable in the time of a jump in the current wherever it
    meets a save time, where a gradient would be one-sided, so differentiating with respect
    to one raises a `ValueError` naming it instead of returning a number that may be wrong;
    use finite differences for times. Inputs are checked before anything is compiled, and
    requests too big for memory are refused with their size (see `HH_JAX_MEMORY_BUDGET`).

    A batch — array-valued parameters, stimulus parameters or `v0`, broadcast together —
    is one ODE over all neurons with a shared step size, controlled so that every neuron
    meets the tolerance (within a chunk, and within each device's slice when sharded: so a
    neuron's trace depends on its batch-mates only at the level of the tolerance). The
    solver statistics of a chunked or sharded run are the maxima over its pieces.

    **Arguments:**
    - `membrane`: the parameters, e.g. `hh.presets.seed()`.
    - `stimulus`: injected current density (µA/cm²), e.g. `hh.Step(...)`; None for none.
    - `t1`: end time (ms); `t0`: start time (ms), default 0.
    - `ts`: save times (ms), strictly increasing within [t0, t1]; default every 0.025 ms.
    - `v0`: initial potential (mV), default the membrane's resting potential; gates start
      at their steady state for `v0`.
    - `solver`: a `diffrax.AbstractSolver`; default `diffrax.Tsit5()`.
    - `rtol`, `atol`: error tolerances of the step-size controller. The defaults (1e-6) give
      V within about 1e-3 mV of a converged solution in float64; in float32 keep
      `rtol >= 1e-6`.
    - `dt0`: first step (ms); default chosen automatically.
    - `dtmax`: largest step (ms); default unlimited. Set it (e.g. `hh.stable_dtmax(membrane)`)
      when differentiating a simulation that starts exactly at equilibrium: there the error
      estimate is zero, steps grow past the explicit solver's stability limit without
      harming the trace, but its derivatives (which the error control does not see) blow up.
    - `max_steps`: step limit; reaching it is a failure.
    - `save`: "all" (V and every gate), "V" (voltage only, least memory), or a sequence of
      state names such as ("V", "n").
    - `throw`: if True (default) a failed solve raises an error naming the cause
      (`hh.SolverError`; under `jax.jit` Equinox's runtime error with the same text); if False
      the trace comes back with `success == False` (values after the failure are inf).
    - `adjoint`: a `diffrax.AbstractAdjoint` for gradients; default
      `diffrax.RecursiveCheckpointAdjoint()` (reverse mode: `jax.grad`, `jax.jacrev`). Forward
      mode (`jax.jvp`, `jax.jacfwd`) needs `adjoint=diffrax.ForwardMode()`; without it the
      error says so.
    - `chunk_size`: for large batches, the number of neurons solved per compiled call; the
      chunks run one after another, so peak memory is set by the chunk and the saved output
      (e.g. 100,000 neurons × 2001 V samples in chunks of 10,000).
    - `steps`: "shared" (default): a batch is one ODE with one step sequence, fastest for
      similar neurons, and a neuron's trace then depends on its batch-mates at the level of
      the tolerance; "per_neuron": every neuron takes its own steps (a `vmap` of single
      solves), so its trace is that of solving it alone (to rounding, ~1e-11 mV), whatever the batch, chunk
      or device it is in.
    - `devices`: the devices to shard a batch over (default: all devices of JAX's default
      backend). With several, each device runs its own solver loop on its slice of the batch
      (`jax.shard_map`). Chunking and sharding apply to eager calls; inside `jax.jit` the
      batch is solved as one.

    **Networks** (`hh.Network`): `stimulus` is a dict {population: stimulus} (a stimulus
    may have one entry per neuron); `v0` a number or a dict {population: value or array};
    `save` "all", "V" (every population's potential) or names such as ("E.V", "ee.w"),
    () for spikes only. Network-only options:
    - `dt`: None (default): one adaptive solve of the smooth network ODE, differentiable
      through spikes. A step (ms, e.g. 0.1): clock-driven fixed steps with `solver`
      (default `hh.ExponentialEuler`), each presynaptic spike's release applied as an
      exact jump after the step and delivered only along the edges of neurons that spiked —
      the fast choice for large networks (as Brian2 and NEST run them); `ts` must then be
      evenly spaced on the step grid (default: every step).
    - `init`: {"<name>.<variable>": value} initial values of any variable.
    - `max_spikes`: spike times kept per neuron (more are counted, not timed).
    - `max_active`: with `dt`, the most presynaptic neurons delivering in one step along
      their own edges; steps with more fall back to a sum over all edges.
    Returns an `hh.NetworkTrace`.

    **Returns:** a `hh.Trace` with `t` `(time,)`, `V` `(*batch, time)` and the saved gates.

    Example:
        >>> p = hh.presets.seed()
        >>> s = hh.Pulse(start=0.0, stop=1.0, amplitude=150.0)
        >>> tr = hh.simulate(p, s, t1=50.0, ts=jnp.linspace(0.0, 50.0, 5001))
        >>> tr.V.shape
        (5001,)
    """
    from ._network import Network

    if isinstance(membrane, Network):
        from ._network_solve import simulate_network

        ignored = [name for name, value, default in (
            ("chunk_size", chunk_size, None), ("devices", devices, None), ("steps", steps, "shared"),
        ) if value != default]
        if ignored:
            raise ValueError(
                f"hh.simulate: {ignored} apply to batches of single neurons, not to a network; "
                "batch networks with jax.vmap."
            )
        return simulate_network(
            membrane, stimulus, t1=t1, ts=ts, t0=t0, v0=v0, init=init, solver=solver,
            rtol=rtol, atol=atol, dt0=dt0, dtmax=dtmax, max_steps=max_steps,
            save=save, throw=throw, adjoint=adjoint, dt=dt,
            max_spikes=max_spikes, max_active=max_active,
        )
    if dt is not None or init is not None:
        raise ValueError(
            "hh.simulate: `dt` and `init` apply to networks only; for one membrane pass "
            "`v0`, and a fixed-step Diffrax solver through `solver` if needed."
        )
    save_rows = _save_rows(_check_membrane(membrane, "hh.simulate"), save)
    problem = _prepare(
        "hh.simulate", membrane, stimulus, t1=t1, ts=ts, t0=t0, v0=v0, rtol=rtol, atol=atol,
        dt0=dt0, max_steps=max_steps, chunk_size=chunk_size, devices=devices, dtmax=dtmax,
    )
    check_memory(
        "hh.simulate", "the saved trace",
        (*problem.batch_shape, len(save_rows), problem.arrays["ts"].shape[0]),
        problem.arrays["ts"].dtype.itemsize,
        "save fewer times (`ts`) or only V (save='V'), solve in chunks (`chunk_size`), or keep "
        "only spike times with hh.simulate_spikes",
        copies=_OUTPUT_COPIES + _CHUNK_COPIES * _chunk_fraction(problem),
    )
    static = _static_options("hh.simulate", solver, adjoint, max_steps, save_rows, None, steps)
    ys, success, stats = _run(problem, static, throw)
    ys = jnp.moveaxis(ys, -2, 0)  # (*batch, saved states, time) -> (saved states, *batch, time)
    names = [problem.membrane.state_names[i] for i in save_rows]
    saved = dict(zip(names, ys))
    return Trace(
        t=problem.arrays["ts"],
        V=saved.pop("V"),
        gates=saved,
        num_steps=stats["num_steps"],
        num_accepted_steps=stats["num_accepted_steps"],
        num_rejected_steps=stats["num_rejected_steps"],
        success=success,
    )


def simulate_spikes(
    membrane: AbstractMembrane,
    stimulus: AbstractStimulus | None = None,
    *,
    t1: float,
    threshold: float | None = None,
    max_spikes: int = 64,
    dt: float = 0.025,
    t0: float = 0.0,
    v0: Float[ArrayLike, "*batch"] | None = None,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-6,
    dt0: float | None = None,
    max_steps: int = 16384,
    throw: bool = True,
    chunk_size: int | None = None,
    devices=None,
    steps: str = "shared",
) -> Spikes:
    """Simulate and keep only spike times and counts: memory O(neurons × max_spikes).

    The voltage is sampled every `dt` ms inside the compiled solve and reduced to spike times
    there (as `hh.spike_times` does), so no trace is ever returned: for parameter sweeps and
    populations where only the spikes matter. Chunking and sharding as in `hh.simulate`.

    **Arguments:** as `hh.simulate` (including `steps`, `chunk_size`, `devices`), plus
    - `threshold`: spike detection level (mV); default the membrane's `spike_threshold()`.
    - `max_spikes`: length of the padded spike-time array per neuron; spikes beyond it are
      counted but their times dropped.
    - `dt`: voltage sampling interval (ms) for spike detection.

    **Returns:** an `hh.Spikes` with `times` `(*batch, max_spikes)` (ms, NaN-padded),
    `counts` `(*batch,)` and `success`.

    Example:
        >>> sp = hh.simulate_spikes(hh.presets.neuron(gNa=jnp.linspace(80, 160, 100_000)),
        ...                         hh.Step(start=1.0, amplitude=9.0), t1=50.0, chunk_size=10_000)
    """
    owner = "hh.simulate_spikes"
    _check_membrane(membrane, owner)
    max_spikes = check_count("max_spikes", max_spikes, owner)
    for name, value in (("dt", dt), ("t0", t0), ("t1", t1)):
        check_finite(name, value, owner)
    if not dt > 0:
        raise ValueError(f"{owner}: `dt` must be a positive sampling interval (ms), got {dt}.")
    if not float(t1) > float(t0):
        raise ValueError(f"{owner}: `t1` must be after `t0`, got t0={t0}, t1={t1} (ms).")
    n = int(round((float(t1) - float(t0)) / dt)) + 1
    # The voltage at every sample lives inside the solve, for each neuron of a chunk.
    neurons = math.prod(getattr(membrane, "batch_shape", ()) or (1,))
    check_memory(
        owner, f"sampling V every dt={dt} ms", (min(neurons, chunk_size or neurons), n), 8,
        "use a larger `dt` (spike detection needs ~0.025 ms) or a smaller `chunk_size`",
        copies=5,  # save times, Diffrax's buffer, V, crossings, reductions
    )
    problem = _prepare(
        "hh.simulate_spikes", membrane, stimulus, t1=t1, ts=np.linspace(float(t0), float(t1), n),
        t0=t0, v0=v0, rtol=rtol, atol=atol, dt0=dt0, max_steps=max_steps, chunk_size=chunk_size,
        devices=devices,
    )
    threshold = problem.membrane.spike_threshold() if threshold is None else threshold
    problem.arrays["threshold"] = jnp.asarray(threshold, problem.arrays["ts"].dtype)
    static = _static_options("hh.simulate_spikes", solver, None, max_steps, (0,), max_spikes, steps)
    (times, counts), success, _ = _run(problem, static, throw)
    return Spikes(times=times, counts=counts, success=success)


class _Problem(NamedTuple):
    membrane: AbstractMembrane
    stimulus: AbstractStimulus
    v0: Array | None
    batch_shape: tuple[int, ...]
    arrays: dict
    devices: tuple
    chunk_size: int | None


def _chunk_fraction(problem) -> float:
    """The fraction of the batch solved at once (1 unless an eager batch is chunked)."""
    size = math.prod(problem.batch_shape)
    return min(size, problem.chunk_size or size) / size


def _static_options(owner, solver, adjoint, max_steps, save_rows, max_spikes, steps) -> "_Static":
    """The compile-selecting options, with Diffrax defaults filled in and `steps` checked."""
    if steps not in ("shared", "per_neuron"):
        raise ValueError(f"{owner}: `steps` must be 'shared' or 'per_neuron', got {steps!r}.")
    if solver is not None and not isinstance(solver, diffrax.AbstractSolver):
        raise TypeError(f"{owner}: `solver` must be a diffrax solver such as diffrax.Tsit5(), got {type(solver).__name__}.")
    if adjoint is not None and not isinstance(adjoint, diffrax.AbstractAdjoint):
        raise TypeError(
            f"{owner}: `adjoint` must be a diffrax adjoint such as diffrax.ForwardMode(), got {type(adjoint).__name__}."
        )
    return _Static(
        solver=diffrax.Tsit5() if solver is None else solver,
        adjoint=diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint,
        max_steps=int(max_steps),
        save_rows=tuple(save_rows),
        max_spikes=max_spikes,
        per_neuron=steps == "per_neuron",
    )


def _check_membrane(membrane, owner):
    if not isinstance(membrane, AbstractMembrane):
        raise TypeError(
            f"{owner}: `membrane` must be a membrane such as hh.presets.seed(), got "
            f"{type(membrane).__name__}."
        )
    return membrane


def _prepare(owner, membrane, stimulus, *, t1, ts, t0, v0, rtol, atol, dt0, max_steps, chunk_size, devices, dtmax=None):
    """Validate eagerly and cast everything to one floating dtype."""
    if stimulus is None:
        stimulus = NoStimulus()
    if not isinstance(stimulus, AbstractStimulus):
        raise TypeError(
            f"{owner}: `stimulus` must be an hh stimulus (hh.Pulse, hh.Step, ...) or None, "
            f"got {type(stimulus).__name__}."
        )
    stimulus = guard_times(stimulus, owner)
    _check_options(rtol, atol, max_steps, dt0)
    if dtmax is not None and is_concrete(dtmax) and not (np.isfinite(dtmax) and dtmax > 0):
        raise ValueError(f"{owner}: `dtmax` must be a positive time step (ms), got {dtmax}.")
    chunk_size = None if chunk_size is None else check_count("chunk_size", chunk_size, owner)
    dtype = _float_dtype(membrane, stimulus, v0, ts, t0, t1)
    t0_c, t1_c = concrete_array(t0), concrete_array(t1)
    if t0_c is not None and t1_c is not None:
        check_finite("t0", t0_c, owner)
        check_finite("t1", t1_c, owner)
        if not t1_c > t0_c:
            raise ValueError(f"{owner}: `t1` must be after `t0`, got t0={t0}, t1={t1} (ms).")
    ts = _save_times(ts, t0, t1, t0_c, t1_c, dtype)
    if v0 is not None:
        check_finite("v0", v0, owner)

    cast = lambda x: jnp.asarray(x, dtype) if _is_inexact(x) else x  # noqa: E731
    membrane = jax.tree_util.tree_map(cast, membrane)
    stimulus = jax.tree_util.tree_map(cast, stimulus)
    batch_shape = broadcast_batch_shape(
        owner,
        {
            "membrane": membrane.batch_shape,
            "stimulus": stimulus.batch_shape,
            "v0": () if v0 is None else jnp.shape(v0),
        },
    )
    if 0 in batch_shape:
        raise ValueError(
            f"{owner}: the batch is empty (batch shape {batch_shape} from the membrane "
            f"{membrane.batch_shape}, stimulus {stimulus.batch_shape} and v0 {np.shape(v0) if v0 is not None else ()}); "
            "pass at least one neuron."
        )
    arrays = dict(
        ts=ts,
        t0=jnp.asarray(t0, dtype),
        t1=jnp.asarray(t1, dtype),
        dt0=None if dt0 is None else jnp.asarray(dt0, dtype),
        dtmax=None if dtmax is None else jnp.asarray(dtmax, dtype),
        rtol=jnp.asarray(rtol, dtype),
        atol=jnp.asarray(atol, dtype),
    )
    v0 = None if v0 is None else jnp.asarray(v0, dtype)
    return _Problem(membrane, stimulus, v0, batch_shape, arrays, _choose_devices(devices), chunk_size)


def _run(problem, static, throw):
    """Solve (in chunks and shards for a large eager batch); raise or flag failures."""
    membrane, stimulus, v0, batch_shape, arrays, devices, chunk_size = problem
    size = math.prod(batch_shape)
    eager = all(is_concrete(x) for x in jax.tree_util.tree_leaves((membrane, stimulus, v0, arrays)))
    with forward_mode_hint("hh.simulate"):
        if eager and size > 1 and (len(devices) > 1 or (chunk_size is not None and size > chunk_size)):
            out, success, cause, stats = run_batched(
                _integrate, membrane, stimulus, v0, batch_shape, arrays, static, devices, chunk_size
            )
        else:
            out, success, cause, stats = _integrate(membrane, stimulus, v0, batch_shape, arrays, static)
    if throw:
        if is_concrete(success):  # eager call: a plain Python exception
            if not bool(success):
                raise SolverError(_FAILURE_MESSAGES[int(cause)])
        else:  # traced (jit/vmap/grad): raised at run time by Equinox
            out = eqx.branched_error_if(out, ~success, cause, _FAILURE_MESSAGES)
    return out, success, stats


@contextlib.contextmanager
def forward_mode_hint(owner):
    """Turn JAX's "can't apply forward-mode autodiff (jvp) to a custom_vjp function", what
    `jax.jacfwd` through a solve with the default (reverse-mode) adjoint raises, into advice."""
    try:
        yield
    except TypeError as err:
        if "forward-mode" not in str(err):
            raise
        raise TypeError(
            f"{owner}: forward-mode differentiation (jax.jvp, jax.jacfwd) needs "
            "`adjoint=diffrax.ForwardMode()`; the default adjoint "
            "(diffrax.RecursiveCheckpointAdjoint) supports reverse mode (jax.grad, jax.jacrev) only."
        ) from None


class _Static(eqx.Module):
    """Options that select what is compiled (hashable); everything else is traced."""

    solver: diffrax.AbstractSolver
    adjoint: diffrax.AbstractAdjoint
    max_steps: int
    save_rows: tuple[int, ...]
    max_spikes: int | None  # set: reduce V to spike times inside the compiled solve
    per_neuron: bool  # each neuron its own step sequence (vmap) instead of one shared step


@eqx.filter_jit
def _integrate(membrane, stimulus, v0, batch_shape, arrays, static):
    """The compiled part of `simulate`: arrays are traced, options static, so repeated calls
    with new values (parameters, stimulus, tolerances, times) reuse one compilation."""
    if not static.per_neuron or not batch_shape:
        return _solve(membrane, stimulus, v0, batch_shape, arrays, static)
    # Per-neuron steps: flatten the batch and vmap single-neuron solves over it.
    membrane, stimulus, v0, stim_batched = flatten_batch(membrane, stimulus, v0, batch_shape)
    member_axes = jax.tree_util.tree_map(lambda x: 0 if jnp.ndim(x) > 0 else None, membrane)
    stim_axes = jax.tree_util.tree_map(lambda b: 0 if b else None, stim_batched)
    out, ok, cause, stats = jax.vmap(
        lambda m, s, v: _solve(m, s, v, (), arrays, static),
        in_axes=(member_axes, stim_axes, None if v0 is None else 0),
    )(membrane, stimulus, v0)
    out = jax.tree_util.tree_map(lambda x: x.reshape(*batch_shape, *x.shape[1:]), out)
    first_bad = jnp.argmin(ok)
    stats = {k: jnp.max(v) for k, v in stats.items()}  # the slowest neuron's counts
    return out, jnp.all(ok), cause[first_bad], stats


def _solve(membrane, stimulus, v0, batch_shape, arrays, static):
    """One Diffrax solve of the whole (possibly batched) state with a shared step."""
    ts, t0, t1, dt0 = arrays["ts"], arrays["t0"], arrays["t1"], arrays["dt0"]
    solver, adjoint, max_steps, save_rows = static.solver, static.adjoint, static.max_steps, static.save_rows
    y0 = membrane.initial_state(v0, batch_shape)

    controller = diffrax.PIDController(
        rtol=arrays["rtol"], atol=arrays["atol"], dtmax=arrays.get("dtmax"), norm=_batch_rms_norm
    )
    jumps = jnp.asarray(stimulus.discontinuities(), ts.dtype)
    kinks = jnp.asarray(stimulus.kinks(), ts.dtype)
    if jumps.size > 0 or kinks.size > 0:
        controller = diffrax.ClipStepSizeController(
            controller,
            jump_ts=jumps if jumps.size > 0 else None,
            step_ts=kinks if kinks.size > 0 else None,
        )

    def save_fn(t, y, args):
        return y[list(save_rows), ...]

    with diffrax_checks_as_nan():
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(vector_field),
            solver,
            t0=t0,
            t1=t1,
            dt0=dt0,
            y0=y0,
            args=(membrane, stimulus),
            saveat=diffrax.SaveAt(ts=ts, fn=save_fn),
            stepsize_controller=controller,
            max_steps=max_steps,
            adjoint=adjoint,
            throw=False,
        )
    ys = jnp.moveaxis(sol.ys, 0, -1)  # (time, saved, *batch) -> (saved, *batch, time)
    ys = jnp.moveaxis(ys, 0, -2)  # batch first: (*batch, saved, time)
    reached_t1 = sol.result == diffrax.RESULTS.successful
    finite = jnp.all(jnp.isfinite(ys))
    # Index into _FAILURE_MESSAGES: step limit, non-finite state, anything else.
    cause = jnp.where(sol.result == diffrax.RESULTS.max_steps_reached, 0, 2)
    cause = jnp.where(~finite & ~(sol.result == diffrax.RESULTS.max_steps_reached), 1, cause)
    stats = {k: sol.stats[k] for k in ("num_steps", "num_accepted_steps", "num_rejected_steps")}
    out = ys
    if static.max_spikes is not None:
        V = ys[..., 0, :].reshape(-1, ts.shape[0])
        times, counts = jax.vmap(
            lambda v: _spike_times_padded(ts, v, arrays["threshold"], static.max_spikes)
        )(V)
        out = (times.reshape(*batch_shape, static.max_spikes), counts.reshape(batch_shape))
    return out, reached_t1 & finite, cause, stats


def _check_options(rtol, atol, max_steps, dt0):
    for name, value in (("rtol", rtol), ("atol", atol)):
        check_finite(name, value, "hh.simulate")  # traced tolerances (under jit) are not checked
        c = concrete_array(value)
        if c is not None and not np.all(c > 0):
            raise ValueError(f"hh.simulate: `{name}` must be a positive number, got {value}.")
    c = concrete_array(rtol)
    if c is not None and np.any(c >= MAX_RTOL):
        raise ValueError(
            f"hh.simulate: `rtol` must be below {MAX_RTOL} (a relative error of 10 % or more "
            f"does not control the solution); tighten it, e.g. 1e-6, got {rtol}."
        )
    check_count("max_steps", max_steps, "hh.simulate")
    if dt0 is not None and is_concrete(dt0) and not (np.isfinite(dt0) and dt0 > 0):
        raise ValueError(f"hh.simulate: `dt0` must be a positive time step (ms), got {dt0}.")


def _save_rows(membrane: AbstractMembrane, save) -> list[int]:
    names = membrane.state_names
    if isinstance(save, str):
        save = names if save == "all" else (save,)
    save = tuple(save)
    unknown = [s for s in save if s not in names]
    if unknown or "V" not in save:
        raise ValueError(
            f"hh.simulate: `save` must be 'all', 'V', or a sequence of state names that includes "
            f"'V' (names: {list(names)}), got {save!r}."
        )
    return sorted(names.index(s) for s in set(save))


def _is_inexact(x) -> bool:
    """A Python float or a floating array (concrete or traced)."""
    if isinstance(x, (float, complex)):
        return True
    return is_array(x) and jnp.issubdtype(x.dtype, jnp.inexact)


def _float_dtype(*trees):
    leaves = [
        x for x in jax.tree_util.tree_leaves(trees)
        if isinstance(x, (int, float)) or is_array(x)
    ]
    dtype = jnp.result_type(float, *leaves)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    return dtype


def _save_times(ts, t0, t1, t0_c, t1_c, dtype):
    if ts is None:
        if t0_c is None or t1_c is None:
            raise ValueError("hh.simulate: pass `ts` when `t0` or `t1` is traced (e.g. under jit).")
        n = int(round((float(t1_c) - float(t0_c)) / DEFAULT_SAVE_DT)) + 1
        check_memory("hh.simulate", f"saving every {DEFAULT_SAVE_DT} ms (the default `ts`)", (n,),
                     jnp.dtype(dtype).itemsize, "pass fewer save times `ts`")
        return jnp.asarray(np.linspace(float(t0_c), float(t1_c), n), dtype)
    if jnp.ndim(ts) != 1 or jnp.shape(ts)[0] == 0:
        raise ValueError(f"hh.simulate: `ts` must be a non-empty 1-D array of times (ms), got shape {jnp.shape(ts)}.")
    ts_c = concrete_array(ts)
    if ts_c is not None:
        check_finite("ts", ts_c, "hh.simulate")
        if np.any(np.diff(ts_c) <= 0):
            raise ValueError("hh.simulate: `ts` must be strictly increasing.")
        if t0_c is not None and t1_c is not None and (ts_c[0] < t0_c or ts_c[-1] > t1_c):
            raise ValueError(
                f"hh.simulate: `ts` must lie within [t0, t1] = [{float(t0_c)}, {float(t1_c)}] ms, "
                f"got [{ts_c[0]}, {ts_c[-1]}]."
            )
    return jnp.asarray(ts, dtype)


def stable_dtmax(membrane: AbstractMembrane, v0=None, safety: float = 2.0) -> float:
    """A largest step (ms) inside the explicit solver's stability limit at the initial state.

    The gates relax at rates −∂(dx/dt)/∂x; the fastest of them, λ (1/ms), bounds a stable
    explicit step near h·λ ≈ 3 (Tsit5). Returns `safety / λ` (default 2/λ), for `dtmax` in
    `hh.simulate` when a simulation that starts at equilibrium is differentiated.

    **Arguments:** `membrane` (a single neuron or a batch: the stiffest neuron counts), `v0`
    (mV, default the resting potential), `safety`.

    Example:
        >>> p = hh.presets.pospischil()
        >>> jax.grad(lambda g: hh.simulate(hh.presets.pospischil(gL=g), None, t1=30.0, ts=ts,
        ...          dtmax=hh.stable_dtmax(p)).V.sum())(0.0205)
    """
    _check_membrane(membrane, "hh.stable_dtmax")
    check_positive("safety", safety, "hh.stable_dtmax", "")
    if v0 is not None:
        check_finite("v0", v0, "hh.stable_dtmax")
    y0 = jax.lax.stop_gradient(membrane.initial_state(v0))
    f = lambda y: membrane.derivatives(y, 0.0)  # noqa: E731
    lam = 0.0
    for i in range(y0.shape[0]):  # the model is elementwise over neurons: one JVP per state row
        tangent = jnp.zeros_like(y0).at[i].set(1.0)
        lam = max(lam, float(jnp.max(jnp.abs(jax.jvp(f, (y0,), (tangent,))[1][i]))))
    return safety / lam if lam > 0 else float("inf")
