"""Solve setup shared by the single-neuron solver (`_solve`) and the network solver
(`_network_solve`): option checks, the floating dtype, save times, the step-size controller
built from the stimuli's jump times, and raising or flagging a failed solve with one table
of failure causes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._stimulus import AbstractStimulus
from ._validation import check_count, check_finite, check_memory, concrete_array, is_array, is_concrete

DEFAULT_SAVE_DT = 0.025  # ms: NEURON's default time step, when no `ts` is given
MAX_RTOL = 0.1  # a relative tolerance of 10 % or more controls nothing


class SolverError(RuntimeError):
    """A simulation did not reach t1 (step limit, collapsed step size or non-finite state).

    Example:
        >>> try:
        ...     hh.simulate(p, s, t1=50.0, max_steps=20)
        ... except hh.SolverError as err:
        ...     print(err)
    """


# Why a solve failed, indexed by `failure_cause`: (what happened, what to do for a single
# neuron or batch, what to do for a network).
FAILURES = (
    (
        "the solver hit its step limit (max_steps) before reaching t1",
        "increase `max_steps`, loosen `rtol`/`atol`, or check the parameters",
        "increase `max_steps` or loosen `rtol`/`atol`; for large networks use fixed steps (`dt=0.1`)",
    ),
    (
        "the state became non-finite (NaN or inf)",
        "the parameters or stimulus drive the model outside the range it can be integrated in",
        "with fixed steps, reduce `dt`; otherwise check the weights and stimuli",
    ),
    (
        "the solver failed before reaching t1 (its step size collapsed)",
        "check the parameters and stimulus, or loosen `rtol`/`atol`",
        "check the weights and stimuli, or loosen `rtol`/`atol`",
    ),
)


def failure_messages(owner: str, network: bool = False) -> tuple[str, ...]:
    """The error text for each row of `FAILURES`, as raised by `owner`."""
    column = 2 if network else 1
    return tuple(
        f"{owner}: {row[0]}. {row[column][0].upper()}{row[column][1:]}; pass `throw=False` to get "
        "the partial result with `success == False` instead of this error."
        for row in FAILURES
    )


def failure_cause(result, finite):
    """Index into `FAILURES` for a Diffrax `result` and whether the saved state is finite
    (meaningful only where the solve failed)."""
    max_steps = result == diffrax.RESULTS.max_steps_reached
    return jnp.where(max_steps, 0, jnp.where(finite, 2, 1))


def raise_or_flag(out, success, cause, throw: bool, messages: tuple[str, ...]):
    """With `throw`: a failed eager solve raises `SolverError`; a traced one (jit, vmap,
    grad) raises at run time through Equinox with the same text. Without: `out` as it is,
    the caller returns `success` as a flag."""
    if not throw:
        return out
    if is_concrete(success):
        if not bool(success):
            raise SolverError(messages[int(cause)])
        return out
    return eqx.branched_error_if(out, ~success, cause, messages)


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


def check_tolerances(owner, *, rtol, atol, max_steps, dt0, dtmax):
    """Positive finite tolerances (rtol below `MAX_RTOL`), a step count and positive steps
    (ms). Traced values (under jit) are not checked."""
    for name, value in (("rtol", rtol), ("atol", atol)):
        check_finite(name, value, owner)
        c = concrete_array(value)
        if c is not None and not np.all(c > 0):
            raise ValueError(f"{owner}: `{name}` must be a positive number, got {value}.")
    c = concrete_array(rtol)
    if c is not None and np.any(c >= MAX_RTOL):
        raise ValueError(
            f"{owner}: `rtol` must be below {MAX_RTOL} (a relative error of 10 % or more "
            f"does not control the solution); tighten it, e.g. 1e-6, got {rtol}."
        )
    check_count("max_steps", max_steps, owner)
    if dt0 is not None and is_concrete(dt0) and not (np.isfinite(dt0) and dt0 > 0):
        raise ValueError(f"{owner}: `dt0` must be a positive time step (ms), got {dt0}.")
    if dtmax is not None and is_concrete(dtmax) and not np.all(np.asarray(dtmax) > 0):  # NaN and -inf fail too
        raise ValueError(f"{owner}: `dtmax` must be a positive time step (ms), or inf for no limit, got {dtmax}.")


def check_solver(owner, solver, adjoint) -> diffrax.AbstractAdjoint:
    """Type-check the Diffrax solver and adjoint; returns the adjoint with its default."""
    if solver is not None and not isinstance(solver, diffrax.AbstractSolver):
        raise TypeError(f"{owner}: `solver` must be a diffrax solver such as diffrax.Tsit5(), got {type(solver).__name__}.")
    if adjoint is not None and not isinstance(adjoint, diffrax.AbstractAdjoint):
        raise TypeError(
            f"{owner}: `adjoint` must be a diffrax adjoint such as diffrax.ForwardMode(), got {type(adjoint).__name__}."
        )
    return diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint


def check_span(owner, t0, t1):
    """Finite `t0` < `t1` (ms) where both are concrete; returns them as NumPy values (None
    where traced)."""
    t0_c, t1_c = concrete_array(t0), concrete_array(t1)
    if t0_c is not None and t1_c is not None:
        check_finite("t0", t0_c, owner)
        check_finite("t1", t1_c, owner)
        if not t1_c > t0_c:
            raise ValueError(f"{owner}: `t1` must be after `t0`, got t0={t0}, t1={t1} (ms).")
    return t0_c, t1_c


def is_inexact(x) -> bool:
    """A Python float or a floating array (concrete or traced)."""
    if isinstance(x, (float, complex)):
        return True
    return is_array(x) and jnp.issubdtype(x.dtype, jnp.inexact)


def float_dtype(*trees):
    """The floating dtype of the inputs' numbers (JAX's default float if none is floating)."""
    leaves = [x for x in jax.tree_util.tree_leaves(trees) if isinstance(x, (int, float)) or is_array(x)]
    dtype = jnp.result_type(float, *leaves)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    return dtype


def cast_floats(tree, dtype):
    """Every floating leaf of `tree` in `dtype`; integer and other leaves unchanged."""
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype) if is_inexact(x) else x, tree)


def save_times(owner, ts, t0_c, t1_c, dtype):
    """The save times (ms): `ts` checked (1-D, strictly increasing, within [t0, t1]), or by
    default every `DEFAULT_SAVE_DT` from t0 to t1 (which must then be concrete)."""
    if ts is None:
        if t0_c is None or t1_c is None:
            raise ValueError(f"{owner}: pass `ts` when `t0` or `t1` is traced (e.g. under jit).")
        n = int(round((float(t1_c) - float(t0_c)) / DEFAULT_SAVE_DT)) + 1
        check_memory(owner, f"saving every {DEFAULT_SAVE_DT} ms (the default `ts`)", (n,),
                     jnp.dtype(dtype).itemsize, "pass fewer save times `ts`")
        return jnp.asarray(np.linspace(float(t0_c), float(t1_c), n), dtype)
    if jnp.ndim(ts) != 1 or jnp.shape(ts)[0] == 0:
        raise ValueError(f"{owner}: `ts` must be a non-empty 1-D array of times (ms), got shape {jnp.shape(ts)}.")
    ts_c = concrete_array(ts)
    if ts_c is not None:
        check_finite("ts", ts_c, owner)
        if np.any(np.diff(ts_c) <= 0):
            raise ValueError(f"{owner}: `ts` must be strictly increasing.")
        if t0_c is not None and t1_c is not None and (ts_c[0] < t0_c or ts_c[-1] > t1_c):
            raise ValueError(
                f"{owner}: `ts` must lie within [t0, t1] = [{float(t0_c)}, {float(t1_c)}] ms, "
                f"got [{ts_c[0]}, {ts_c[-1]}]."
            )
    return jnp.asarray(ts, dtype)


def solve_arrays(dtype, *, ts, t0, t1, rtol, atol, dt0, dtmax) -> dict:
    """The traced options of a solve, in one dtype: changing them never recompiles."""
    as_array = lambda x: None if x is None else jnp.asarray(x, dtype)  # noqa: E731
    return dict(ts=ts, t0=as_array(t0), t1=as_array(t1), dt0=as_array(dt0), dtmax=as_array(dtmax),
                rtol=as_array(rtol), atol=as_array(atol))


def _nan_as_inf(norm):
    """`norm`, reporting a NaN error estimate as infinite. A trial step too long for the
    dynamics can overflow (float32's exp first) and leave NaN; Diffrax's controller turns a
    NaN norm into a NaN step size and never recovers (every later step rejected until
    max_steps), while an infinite one makes it shrink the step by its smallest factor and
    try again."""
    def norm_or_inf(y):
        value = norm(y)
        return jnp.where(jnp.isnan(value), jnp.inf, value)

    return norm_or_inf


def step_controller(arrays: dict, stimuli: Iterable[AbstractStimulus], norm):
    """A PID controller with tolerances `arrays["rtol"]`, `arrays["atol"]` and largest step
    `arrays["dtmax"]`, error `norm`, stepping exactly onto every time where a stimulus jumps
    (so no pulse is stepped over) and onto its kinks (so no step straddles one)."""
    controller = diffrax.PIDController(rtol=arrays["rtol"], atol=arrays["atol"], dtmax=arrays["dtmax"],
                                       norm=_nan_as_inf(norm))
    dtype = arrays["ts"].dtype
    stimuli = list(stimuli)
    jumps = jnp.concatenate([jnp.zeros((0,), dtype)] + [jnp.ravel(jnp.asarray(s.discontinuities(), dtype)) for s in stimuli])
    kinks = jnp.concatenate([jnp.zeros((0,), dtype)] + [jnp.ravel(jnp.asarray(s.kinks(), dtype)) for s in stimuli])
    if jumps.size == 0 and kinks.size == 0:
        return controller
    return diffrax.ClipStepSizeController(
        controller, jump_ts=jumps if jumps.size > 0 else None, step_ts=kinks if kinks.size > 0 else None
    )
