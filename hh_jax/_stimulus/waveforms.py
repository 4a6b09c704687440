"""Smooth waveforms switched on over a window: a linear ramp and a sinusoid."""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp
from jaxtyping import ArrayLike, Float

from .._validation import check_finite
from .base import AbstractStimulus, check_broadcast, check_window, window_edges


class Ramp(AbstractStimulus):
    """A current rising (or falling) linearly from `start_amplitude` at `start` to
    `stop_amplitude` at `stop` (µA/cm², ms), zero outside [start, stop).

    Example:
        >>> s = hh.Ramp(start=10.0, stop=510.0, stop_amplitude=20.0)   # 0 → 20 µA/cm²
    """

    start: Float[ArrayLike, "*batch"]
    stop: Float[ArrayLike, "*batch"]
    stop_amplitude: Float[ArrayLike, "*batch"]
    start_amplitude: Float[ArrayLike, "*batch"] = 0.0
    time_fields: ClassVar[tuple[str, ...]] = ("start", "stop")

    def __check_init__(self):
        owner = "hh.Ramp"
        check_window(owner, self.start, self.stop, allow_infinite_stop=False)
        check_finite("start_amplitude", self.start_amplitude, owner)
        check_finite("stop_amplitude", self.stop_amplitude, owner)
        check_broadcast(owner, self, ("start", "stop", "start_amplitude", "stop_amplitude"))

    def __call__(self, t):
        frac = (t - self.start) / (self.stop - self.start)
        value = self.start_amplitude + frac * (self.stop_amplitude - self.start_amplitude)
        return jnp.where((t >= self.start) & (t < self.stop), value, 0.0)

    def discontinuities(self):
        return window_edges(self.start, self.stop)


class Sine(AbstractStimulus):
    """`offset + amplitude · sin(2π · frequency · (t − start) + phase)` for start <= t < stop.

    **Arguments** (keyword-only): `amplitude` and `offset` (µA/cm²), `frequency` (Hz, times
    are in ms), `phase` (rad, default 0), `start` (ms, default 0), `stop` (ms, default never).

    Example:
        >>> s = hh.Sine(offset=5.0, amplitude=3.0, frequency=10.0)
    """

    amplitude: Float[ArrayLike, "*batch"]
    frequency: Float[ArrayLike, "*batch"]
    offset: Float[ArrayLike, "*batch"] = 0.0
    phase: Float[ArrayLike, "*batch"] = 0.0
    start: Float[ArrayLike, "*batch"] = 0.0
    stop: Float[ArrayLike, "*batch"] = float("inf")
    time_fields: ClassVar[tuple[str, ...]] = ("start", "stop")

    def __check_init__(self):
        owner = "hh.Sine"
        check_window(owner, self.start, self.stop)
        for name in ("amplitude", "frequency", "offset", "phase"):
            check_finite(name, getattr(self, name), owner)
        check_broadcast(owner, self, ("amplitude", "frequency", "offset", "phase", "start", "stop"))

    def __call__(self, t):
        angle = 2.0 * jnp.pi * self.frequency * (t - self.start) / 1000.0 + self.phase
        value = self.offset + self.amplitude * jnp.sin(angle)
        return jnp.where((t >= self.start) & (t < self.stop), value, 0.0)

    def discontinuities(self):
        return window_edges(self.start, self.stop)
