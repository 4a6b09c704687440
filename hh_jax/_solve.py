"""Solve a single neuron or a batch of them: integrate the membrane's vector field with
Diffrax and return a `Trace` (or, reduced inside the solve, `Spikes`). `hh.simulate`
(`_simulate`) dispatches here for membranes; the setup shared with the network solver is
in `_solve_setup`, large batches in `_batch`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._batch import Batching, batching_from_keywords, flatten_batch, run_batched
from ._compilation_cache import diffrax_checks_as_nan
from ._deprecation import deprecated
from ._membrane import AbstractMembrane, check_membrane
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
from ._stability import step_limit
from ._step_spikes import SpikeRecorder, empty_record, record_term
from ._stimulus import AbstractStimulus, NoStimulus
from ._stimulus.base import guard_times
from ._trace import Spikes, Trace
from ._unrolled_tsit5 import UnrolledTsit5
from ._validation import broadcast_batch_shape, check_count, check_finite, check_memory, is_concrete
from ._vector_field import vector_field

# Peak copies of the saved output: the whole batch's result and its reordering into the
# returned trace, plus, for the neurons solved at once (a chunk), Diffrax's save buffer and
# the compiled solve's output.
_OUTPUT_COPIES, _CHUNK_COPIES = 2, 2


def simulate_neuron(
    membrane: AbstractMembrane, stimulus: AbstractStimulus | None, *, t1, ts, t0, v0, solver, rtol,
    atol, dt0, dtmax, max_steps, save: str | Sequence[str], throw: bool, adjoint, batching: Batching,
) -> Trace:
    """`hh.simulate` for a membrane (see there): validate, build, solve, assemble."""
    owner = "hh.simulate"
    save_rows = _save_rows(check_membrane(membrane, owner), save)
    problem = _prepare(owner, membrane, stimulus, t1=t1, ts=ts, t0=t0, v0=v0, rtol=rtol, atol=atol,
                       dt0=dt0, dtmax=dtmax, max_steps=max_steps, batching=batching)
    check_memory(
        owner, "the saved trace",
        (*problem.batch_shape, len(save_rows), problem.arrays["ts"].shape[0]),
        problem.arrays["ts"].dtype.itemsize,
        "save fewer times (`ts`) or only V (save='V'), solve in chunks "
        "(`batching=hh.Batching(chunk_size=...)`), or keep only spike times with hh.simulate_spikes",
        copies=_OUTPUT_COPIES + _CHUNK_COPIES * _chunk_fraction(problem),
    )
    static = _static_options(owner, solver, adjoint, max_steps, save_rows, None, batching)
    ys, success, stats = _run(owner, problem, static, throw)
    ys = jnp.moveaxis(ys, -2, 0)  # (*batch, saved states, time) -> (saved states, *batch, time)
    saved = dict(zip([problem.membrane.state_names[i] for i in save_rows], ys))
    return Trace(t=problem.arrays["ts"], V=saved.pop("V"), gates=saved, success=success, **stats)


def simulate_spikes(
    membrane: AbstractMembrane,
    stimulus: AbstractStimulus | None = None,
    *,
    t1: float,
    threshold: float | None = None,
    max_spikes: int = 64,
    sample_dt: float | None = None,
    t0: float = 0.0,
    v0: Float[ArrayLike, "*batch"] | None = None,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-6,
    dt0: float | None = None,
    max_steps: int = 16384,
    throw: bool = True,
    adjoint: diffrax.AbstractAdjoint | None = None,
    batching: Batching | None = None,
    **old_keywords,
) -> Spikes:
    """Simulate and keep only spike times and counts: memory O(neurons × max_spikes).

    Spikes are found on the solver's own steps: after each step, every upward crossing of
    `threshold` in it is located on the step's dense output (to the solution's accuracy)
    and appended to the neuron's record, so no voltage is sampled or returned: for
    parameter sweeps and populations where only the spikes matter.

    A batch shares one step sequence by default, so varied neurons (a parameter sweep) all
    take the small steps of every neuron's spikes; each neuron's own steps
    (`batching=hh.Batching(per_neuron=True)`) are then usually faster (2,000 neurons with
    gNa and gK varied, float32, 2 CPU cores: 133 against 197 ms; 2.3× slower for identical
    neurons).

    Spike times are differentiable (each is located on the step's dense output): by
    reverse mode with the default `adjoint`, by forward mode (`jax.jvp`, `jax.jacfwd`) with
    `adjoint=diffrax.ForwardMode()`, as for `hh.simulate`.

    **Arguments:** as `hh.simulate` for a membrane (including `batching` and `adjoint`), plus
    - `threshold`: spike detection level (mV); default the membrane's `spike_threshold()`.
    - `max_spikes`: length of the padded spike-time array per neuron; spikes beyond it are
      counted but their times dropped.
    - `sample_dt` (and its old name `dt=`) is deprecated and has no effect: spikes are no
      longer found on samples of V. `chunk_size=`, `devices=` and `steps=` are deprecated
      too (use `batching=hh.Batching(...)`).

    **Returns:** an `hh.Spikes` with `times` `(*batch, max_spikes)` (ms, NaN-padded),
    `counts` `(*batch,)` and `success`.

    Example:
        >>> sp = hh.simulate_spikes(hh.presets.neuron(gNa=jnp.linspace(80, 160, 100_000)),
        ...                         hh.Step(start=1.0, amplitude=9.0), t1=50.0,
        ...                         batching=hh.Batching(chunk_size=10_000))
    """
    owner = "hh.simulate_spikes"
    _no_sampling(owner, sample_dt, old_keywords)
    batching = batching_from_keywords(owner, batching, old_keywords)
    check_membrane(membrane, owner)
    max_spikes = check_count("max_spikes", max_spikes, owner)
    for name, value in (("t0", t0), ("t1", t1)):
        check_finite(name, value, owner)
    if not float(t1) > float(t0):
        raise ValueError(f"{owner}: `t1` must be after `t0`, got t0={t0}, t1={t1} (ms).")
    # The record lives inside the solve for each neuron of a chunk: the state's, the step's
    # new one and Diffrax's choice between them.
    neurons = math.prod(getattr(membrane, "batch_shape", ()) or (1,))
    check_memory(
        owner, f"the record of max_spikes={max_spikes} spike times", (min(neurons, batching.chunk_size or neurons), max_spikes), 8,
        "use a smaller `max_spikes` or a smaller `Batching.chunk_size`", copies=3,
    )
    problem = _prepare(owner, membrane, stimulus, t1=t1, ts=np.asarray([float(t1)]), t0=t0,
                       v0=v0, rtol=rtol, atol=atol, dt0=dt0, dtmax=None, max_steps=max_steps, batching=batching)
    threshold = problem.membrane.spike_threshold() if threshold is None else threshold
    problem.arrays["threshold"] = jnp.asarray(threshold, problem.arrays["ts"].dtype)
    static = _static_options(owner, solver, adjoint, max_steps, (0,), max_spikes, batching)
    (times, counts), success, _ = _run(owner, problem, static, throw)
    return Spikes(times=times, counts=counts, success=success)


def _no_sampling(owner, sample_dt, old_keywords: dict) -> None:
    """Warn that `sample_dt` (or its old name `dt=`, popped from `old_keywords`) no longer
    has an effect."""
    dt = old_keywords.pop("dt", None)
    if dt is not None and sample_dt is not None:
        raise TypeError(f"{owner}: pass `sample_dt` or its old name `dt`, not both (both are deprecated and have no effect).")
    given = "`dt=`" if dt is not None else "`sample_dt=`" if sample_dt is not None else None
    if given is not None:
        deprecated(owner, given, "no replacement (it has no effect: spikes are located on the solver's steps, on "
                   "their dense output, not on samples of V)", stacklevel=3)


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


class _Static(eqx.Module):
    """Options that select what is compiled (hashable); everything else is traced."""

    solver: diffrax.AbstractSolver
    adjoint: diffrax.AbstractAdjoint
    max_steps: int
    save_rows: tuple[int, ...]
    max_spikes: int | None  # set: reduce V to spike times inside the compiled solve
    per_neuron: bool  # each neuron its own step sequence (vmap) instead of one shared step


def _static_options(owner, solver, adjoint, max_steps, save_rows, max_spikes, batching) -> _Static:
    """The compile-selecting options, with Diffrax's defaults filled in."""
    adjoint = check_solver(owner, solver, adjoint)
    return _Static(
        solver=_default_solver(adjoint) if solver is None else solver,
        adjoint=adjoint,
        max_steps=int(max_steps),
        save_rows=tuple(save_rows),
        max_spikes=max_spikes,
        per_neuron=bool(batching.per_neuron),
    )


def _default_solver(adjoint: diffrax.AbstractAdjoint) -> diffrax.AbstractSolver:
    """Tsitouras' 5(4) method, written for the way the solve will be used: `hh.UnrolledTsit5`
    (faster at every batch size, as fast to compile for a forward solve; see its module),
    except in forward mode (`adjoint=diffrax.ForwardMode()`, as `hh.fit` uses), whose
    programs are compile-bound: there the seven stages compiled separately double the
    compile time, and Diffrax's `Tsit5` (one stage compiled inside a loop) is kept (the
    recovery fit, 11 s cold and 6 s warm against 14 and 7 s). Both give the same steps and
    values to rounding (tests/test_unrolled_tsit5.py)."""
    return diffrax.Tsit5() if isinstance(adjoint, diffrax.ForwardMode) else UnrolledTsit5()


def _prepare(owner, membrane, stimulus, *, t1, ts, t0, v0, rtol, atol, dt0, dtmax, max_steps, batching):
    """Validate eagerly and cast everything to one floating dtype."""
    if stimulus is None:
        stimulus = NoStimulus()
    if not isinstance(stimulus, AbstractStimulus):
        raise TypeError(
            f"{owner}: `stimulus` must be an hh stimulus (hh.Pulse, hh.Step, ...) or None, "
            f"got {type(stimulus).__name__}."
        )
    stimulus = guard_times(stimulus, owner)
    check_tolerances(owner, rtol=rtol, atol=atol, max_steps=max_steps, dt0=dt0, dtmax=dtmax)
    dtype = float_dtype(membrane, stimulus, v0, ts, t0, t1)
    t0_c, t1_c = check_span(owner, t0, t1)
    ts = save_times(owner, ts, t0_c, t1_c, dtype)
    if v0 is not None:
        check_finite("v0", v0, owner)
    membrane, stimulus = cast_floats((membrane, stimulus), dtype)
    v0_shape = () if v0 is None else jnp.shape(v0)
    batch_shape = broadcast_batch_shape(
        owner, {"membrane": membrane.batch_shape, "stimulus": stimulus.batch_shape, "v0": v0_shape}
    )
    if 0 in batch_shape:
        raise ValueError(
            f"{owner}: the batch is empty (batch shape {batch_shape} from the membrane "
            f"{membrane.batch_shape}, stimulus {stimulus.batch_shape} and v0 {v0_shape}); "
            "pass at least one neuron."
        )
    arrays = solve_arrays(dtype, ts=ts, t0=t0, t1=t1, rtol=rtol, atol=atol, dt0=dt0, dtmax=dtmax)
    v0 = None if v0 is None else jnp.asarray(v0, dtype)
    return _Problem(membrane, stimulus, v0, batch_shape, arrays, batching.chosen_devices(), batching.chunk_size)


def _run(owner, problem, static, throw):
    """Solve (in chunks and shards for a large eager batch); raise or flag failures."""
    membrane, stimulus, v0, batch_shape, arrays, devices, chunk_size = problem
    size = math.prod(batch_shape)
    eager = all(is_concrete(x) for x in jax.tree_util.tree_leaves((membrane, stimulus, v0, arrays)))
    with forward_mode_hint(owner):
        if eager and size > 1 and (len(devices) > 1 or (chunk_size is not None and size > chunk_size)):
            out, success, cause, stats = run_batched(
                _integrate, membrane, stimulus, v0, batch_shape, arrays, static, devices, chunk_size
            )
        else:
            # Called eagerly: compiled once per set of options. Inside a caller's trace (jit,
            # grad, jvp, vmap) the solve is traced straight into the caller's program: a jit
            # of its own there would be traced first and then traced again through each
            # transformation (measured: about twice the tracing time of a fit's Jacobian).
            integrate = _integrate if eager else _integrate_traced
            out, success, cause, stats = integrate(membrane, stimulus, v0, batch_shape, arrays, static)
    out = raise_or_flag(out, success, cause, throw, failure_messages(owner))
    return out, success, stats


def _integrate_traced(membrane, stimulus, v0, batch_shape, arrays, static):
    """The compiled part of `simulate` (`_integrate`), for use inside a trace."""
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


# Arrays are traced and options static, so repeated calls with new values (parameters,
# stimulus, tolerances, times) reuse one compilation.
_integrate = eqx.filter_jit(_integrate_traced)


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


def _solve(membrane, stimulus, v0, batch_shape, arrays, static):
    """One Diffrax solve of the whole (possibly batched) state with a shared step: the saved
    rows at `ts`, or (`static.max_spikes` set) only the spike record, kept on the steps."""
    y0 = membrane.initial_state(v0, batch_shape)
    dtmax = step_limit(arrays["dtmax"], static.solver, [(membrane, y0)])  # see `_stability`
    term = diffrax.ODETerm(vector_field)
    if static.max_spikes is None:
        save_rows = list(static.save_rows)
        solver, norm, start = static.solver, _batch_rms_norm, y0
        saveat = diffrax.SaveAt(ts=arrays["ts"], fn=lambda t, y, args: y[save_rows, ...])
    else:
        solver = SpikeRecorder(static.solver, term, arrays["threshold"], static.max_spikes)
        norm = lambda y: _batch_rms_norm(y["state"])  # noqa: E731
        start = {"state": y0, "spikes": empty_record(math.prod(batch_shape), static.max_spikes, y0.dtype)}
        term, saveat = record_term(vector_field), diffrax.SaveAt(t1=True)
    with diffrax_checks_as_nan():
        sol = diffrax.diffeqsolve(
            term,
            solver,
            t0=arrays["t0"],
            t1=arrays["t1"],
            dt0=arrays["dt0"],
            y0=start,
            args=(membrane, stimulus),
            saveat=saveat,
            stepsize_controller=step_controller(dict(arrays, dtmax=dtmax), [stimulus], norm),
            max_steps=static.max_steps,
            adjoint=static.adjoint,
            throw=False,
        )
    stats = {k: sol.stats[k] for k in ("num_steps", "num_accepted_steps", "num_rejected_steps")}
    if static.max_spikes is None:
        ys = jnp.moveaxis(sol.ys, 0, -1)  # (time, saved, *batch) -> (saved, *batch, time)
        out = jnp.moveaxis(ys, 0, -2)  # batch first: (*batch, saved, time)
        finite = jnp.all(jnp.isfinite(out))
    else:
        final = jax.tree_util.tree_map(lambda x: x[-1], sol.ys)
        record = final["spikes"]
        out = (record["times"].reshape(*batch_shape, static.max_spikes),
               record["count"].astype(jnp.int32).reshape(batch_shape))
        finite = jnp.all(jnp.isfinite(final["state"]))
    success = (sol.result == diffrax.RESULTS.successful) & finite
    return out, success, failure_cause(sol.result, finite), stats


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
