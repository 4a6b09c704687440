"""Stimuli: injected current density I(t) in µA/cm², times in ms.

A stimulus is an `equinox.Module` (a pytree, so its amplitudes can be differentiated and
batched) with two methods: `__call__(t)` gives the current at time t, and `discontinuities()`
lists the times where the current jumps, so the adaptive solver lands on them instead of
stepping over a short pulse. Stimuli add with `+`.

Stimulus times are not differentiable. A loss of a trace is not differentiable in the time
of a jump in the current wherever that time coincides with a save time — and with edges and
save grids at round numbers (a pulse ending at 6 ms, samples every 0.025 ms) it nearly always
does. There `jax.grad` returns one one-sided derivative (86 where the central difference,
the mean of the two sides, is 42, for the `stop` of a 1 ms pulse; ±2.8e20 was reported for
`Sampled.times`). With the save grid off the edges the solver's derivative matched central
differences for `Pulse`, `Ramp` and `Sampled` edges (to 1e-4), but not for
`PulseTrain.period` (0.054 against −0.0071). A gradient that is right or wrong depending on
the kind of stimulus and on where its edges sit relative to the save grid is a silent wrong
answer, so `guard_times` makes every field listed in a stimulus's `time_fields` refuse
differentiation with an error at trace time; amplitudes, offsets and other values stay
differentiable.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._validation import broadcast_batch_shape, check_finite, concrete_array


class AbstractStimulus(eqx.Module):
    """Base class of all stimuli. Subclasses implement `__call__` and `discontinuities`.

    A field whose array is shared by every neuron of a batch (sample times, say), rather
    than holding one entry per neuron along its leading axes, is listed in `shared_fields`,
    so batches can be split into chunks and over devices without mistaking it for one.
    Fields holding the times where the current jumps are listed in `time_fields`: a solve
    refuses to differentiate with respect to them (see the module docstring for why).

    Example:
        >>> s = hh.Pulse(start=0.0, stop=1.0, amplitude=150.0) + hh.Step(start=10.0, amplitude=5.0)
        >>> s(0.5), s.discontinuities()
    """

    shared_fields: ClassVar[tuple[str, ...]] = ()
    # Fields holding times (ms) where the current jumps: these refuse differentiation.
    time_fields: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def __call__(self, t: Float[ArrayLike, ""]) -> Float[Array, "*batch"]:
        """The injected current density (µA/cm²) at time `t` (ms)."""

    @abc.abstractmethod
    def discontinuities(self) -> Float[Array, " jumps"]:
        """Times (ms) where the current jumps; may contain inf (ignored by the solver)."""

    def kinks(self) -> Float[Array, " kinks"]:
        """Times (ms) where the current is continuous but its slope jumps (the samples of a
        piecewise-linear waveform). The solver steps exactly onto them, so no step straddles
        one: its error estimate stays valid, and so do gradients. Default: none."""
        return jnp.zeros((0,))

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """The shape of the current this stimulus returns: () unless its parameters are arrays."""
        return tuple(jax.eval_shape(self, jnp.zeros(())).shape)

    def __add__(self, other: "AbstractStimulus") -> "Sum":
        if not isinstance(other, AbstractStimulus):
            return NotImplemented
        return Sum(_terms(self) + _terms(other))

    def __radd__(self, other):
        # Lets `sum([stim1, stim2])` work: sum starts from 0.
        if isinstance(other, (int, float)) and other == 0:
            return self
        return NotImplemented


def _terms(s: AbstractStimulus) -> tuple[AbstractStimulus, ...]:
    return s.terms if isinstance(s, Sum) else (s,)


class Sum(AbstractStimulus):
    """The sum of several stimuli (what `a + b` builds).

    Example:
        >>> s = hh.Pulse(start=0.0, stop=1.0, amplitude=150.0) + hh.Pulse(start=10.0, stop=11.0, amplitude=50.0)
        >>> isinstance(s, hh.Sum)
        True
    """

    terms: tuple[AbstractStimulus, ...]

    def __call__(self, t):
        return sum((term(t) for term in self.terms[1:]), self.terms[0](t))

    def discontinuities(self):
        return jnp.concatenate([jnp.ravel(term.discontinuities()) for term in self.terms])

    def kinks(self):
        return jnp.concatenate([jnp.ravel(term.kinks()) for term in self.terms])


class NoStimulus(AbstractStimulus):
    """Zero current; what `hh.simulate` uses when no stimulus is given.

    Example:
        >>> hh.simulate(hh.presets.neuron(), hh.NoStimulus(), t1=10.0)
    """

    def __call__(self, t):
        return jnp.zeros_like(t)

    def discontinuities(self):
        return jnp.zeros((0,))


def check_window(owner: str, start, stop, *, allow_infinite_stop: bool = True) -> None:
    """`start` finite, `stop` after `start` (and finite unless allowed), both in ms."""
    check_finite("start", start, owner)
    stop_c = concrete_array(stop)
    if stop_c is not None:
        if np.any(np.isnan(stop_c)) or (not allow_infinite_stop and not np.all(np.isfinite(stop_c))):
            raise ValueError(f"{owner}: `stop` must be a finite time (ms), got {stop_c.tolist()}.")
    start_c = concrete_array(start)
    if start_c is not None and stop_c is not None and np.any(stop_c <= start_c):
        raise ValueError(
            f"{owner}: `stop` must be after `start` (ms), got start={start_c.tolist()}, "
            f"stop={stop_c.tolist()}."
        )


def window_edges(start, stop):
    """The two jumps of a current switched on over [start, stop): all starts, then all stops."""
    start, stop = jnp.broadcast_arrays(jnp.asarray(start), jnp.asarray(stop))
    return jnp.concatenate([jnp.ravel(start), jnp.ravel(stop)])


def check_broadcast(owner: str, module: eqx.Module, names: tuple[str, ...]) -> None:
    broadcast_batch_shape(owner, {k: np.shape(getattr(module, k)) for k in names})


def batched_leaves(stimulus: AbstractStimulus, batch_shape: tuple[int, ...]):
    """A pytree like `stimulus` of bools: True for leaves that carry the stimulus's batch
    axes first (one entry per neuron), False for shared ones."""
    flags = jax.tree_util.tree_map(
        lambda x: len(batch_shape) > 0 and np.shape(x)[: len(batch_shape)] == tuple(batch_shape),
        stimulus,
    )
    return _unflag_shared(stimulus, flags)


def _unflag_shared(stimulus, flags):
    if isinstance(stimulus, Sum):
        terms = tuple(_unflag_shared(s, f) for s, f in zip(stimulus.terms, flags.terms))
        return eqx.tree_at(lambda f: f.terms, flags, terms)
    for name in getattr(stimulus, "shared_fields", ()):
        flags = eqx.tree_at(
            lambda f, name=name: getattr(f, name),
            flags,
            jax.tree_util.tree_map(lambda _: False, getattr(flags, name)),
        )
    return flags


def guard_times(stimulus: AbstractStimulus, owner: str) -> AbstractStimulus:
    """`stimulus` with each traced leaf of its `time_fields` passed through an identity that
    raises, when differentiated, a `ValueError` naming the field (see the module docstring
    for why). Concrete leaves are left as they are: they cannot be differentiated."""
    for field in dataclasses.fields(stimulus):  # stimuli made of stimuli (a Sum, say)
        value = getattr(stimulus, field.name)
        if isinstance(value, AbstractStimulus) or (
            isinstance(value, tuple) and value and all(isinstance(v, AbstractStimulus) for v in value)
        ):
            guarded = (guard_times(value, owner) if isinstance(value, AbstractStimulus)
                       else tuple(guard_times(v, owner) for v in value))
            stimulus = eqx.tree_at(lambda s, name=field.name: getattr(s, name), stimulus, guarded)
    for name in getattr(stimulus, "time_fields", ()):
        value = getattr(stimulus, name)
        if isinstance(value, jax.core.Tracer):
            guarded = _nondifferentiable_time(value, owner, f"{type(stimulus).__name__}.{name}")
            stimulus = eqx.tree_at(lambda s, name=name: getattr(s, name), stimulus, guarded)
    return stimulus


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _nondifferentiable_time(x, owner, field):
    return x


def _refuse_time_tangent(owner, field, primals, tangents):
    (x,), (dx,) = primals, tangents
    if not isinstance(dx, jax.custom_derivatives.SymbolicZero):
        raise ValueError(
            f"{owner}: cannot differentiate with respect to `{field}` (ms), a time where the "
            "stimulus current jumps: the trace is not differentiable in it wherever it meets a "
            "save time, so the gradient could be wrong. Differentiate with respect to "
            "amplitudes, use finite differences for times, or wrap the time in "
            "jax.lax.stop_gradient."
        )
    return x, dx


_nondifferentiable_time.defjvp(_refuse_time_tangent, symbolic_zeros=True)
