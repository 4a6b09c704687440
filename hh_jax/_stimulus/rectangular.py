"""Rectangular currents: a pulse and a (sustained) step."""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp
from jaxtyping import ArrayLike, Float

from .._validation import check_finite
from .base import AbstractStimulus, check_broadcast, check_window, window_edges


class _Rectangular(AbstractStimulus):
    """A constant current `amplitude` for start <= t < stop."""

    start: Float[ArrayLike, "*batch"]
    stop: Float[ArrayLike, "*batch"]
    amplitude: Float[ArrayLike, "*batch"]
    time_fields: ClassVar[tuple[str, ...]] = ("start", "stop")

    def __check_init__(self):
        owner = f"hh.{type(self).__name__}"
        check_window(owner, self.start, self.stop)
        check_finite("amplitude", self.amplitude, owner)
        check_broadcast(owner, self, ("start", "stop", "amplitude"))

    def __call__(self, t):
        on = (t >= self.start) & (t < self.stop)
        return jnp.where(on, self.amplitude, 0.0)

    def discontinuities(self):
        return window_edges(self.start, self.stop)


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
