"""Stimuli: injected current density I(t) in µA/cm², times in ms.

A stimulus is an `equinox.Module` (a pytree, so its amplitudes can be differentiated and
batched) with two methods: `__call__(t)` gives the current at time t, and `discontinuities()`
lists the times where the current jumps, so the adaptive solver lands on them instead of
stepping over a short pulse. Stimuli add with `+`.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._validation import broadcast_batch_shape, check_finite, concrete_array


class AbstractStimulus(eqx.Module):
    """Base class of all stimuli. Subclasses implement `__call__` and `discontinuities`."""

    @abc.abstractmethod
    def __call__(self, t: Float[ArrayLike, ""]) -> Float[Array, "*batch"]:
        """The injected current density (µA/cm²) at time `t` (ms)."""

    @abc.abstractmethod
    def discontinuities(self) -> Float[Array, " jumps"]:
        """Times (ms) where the current jumps; may contain inf (ignored by the solver)."""

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
    """The sum of several stimuli (what `a + b` builds)."""

    terms: tuple[AbstractStimulus, ...]

    def __call__(self, t):
        return sum((term(t) for term in self.terms[1:]), self.terms[0](t))

    def discontinuities(self):
        return jnp.concatenate([jnp.ravel(term.discontinuities()) for term in self.terms])


class NoStimulus(AbstractStimulus):
    """Zero current; what `hh.simulate` uses when no stimulus is given."""

    def __call__(self, t):
        return jnp.zeros_like(t)

    def discontinuities(self):
        return jnp.zeros((0,))


class _Rectangular(AbstractStimulus):
    """A constant current `amplitude` for start <= t < stop."""

    start: Float[ArrayLike, "*batch"]
    stop: Float[ArrayLike, "*batch"]
    amplitude: Float[ArrayLike, "*batch"]

    def __check_init__(self):
        owner = f"hh.{type(self).__name__}"
        check_finite("start", self.start, owner)
        check_finite("amplitude", self.amplitude, owner)
        stop = concrete_array(self.stop)
        if stop is not None and np.any(np.isnan(stop)):
            raise ValueError(f"{owner}: `stop` must not be NaN.")
        start = concrete_array(self.start)
        if start is not None and stop is not None and np.any(stop <= start):
            raise ValueError(
                f"{owner}: `stop` must be after `start` (ms), got start={start.tolist()}, "
                f"stop={stop.tolist()}."
            )
        broadcast_batch_shape(
            owner, {k: np.shape(getattr(self, k)) for k in ("start", "stop", "amplitude")}
        )

    def __call__(self, t):
        on = (t >= self.start) & (t < self.stop)
        return jnp.where(on, self.amplitude, 0.0)

    def discontinuities(self):
        start, stop = jnp.broadcast_arrays(jnp.asarray(self.start), jnp.asarray(self.stop))
        return jnp.concatenate([jnp.ravel(start), jnp.ravel(stop)])


class Pulse(_Rectangular):
    """A rectangular current pulse: `amplitude` (µA/cm²) from `start` to `stop` (ms).

    **Arguments** (keyword-only, so units are never mixed up by position):
    - `start`, `stop`: onset and offset (ms), stop > start.
    - `amplitude`: current density (µA/cm²); positive is depolarising.

    Example:
        >>> s = hh.Pulse(start=0.0, stop=1.0, amplitude=150.0)
    """

    def __init__(self, *, start, stop, amplitude):
        self.start, self.stop, self.amplitude = start, stop, amplitude


class Step(_Rectangular):
    """A current step: `amplitude` (µA/cm²) from `start` (ms) until `stop` (ms; default: never
    switched off), for sustained stimulation and repetitive firing.

    Example:
        >>> s = hh.Step(start=1.0, stop=41.0, amplitude=9.0)
    """

    def __init__(self, *, start, amplitude, stop=float("inf")):
        self.start, self.stop, self.amplitude = start, stop, amplitude
