"""A train of identical rectangular pulses."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from .._validation import check_count, check_finite, check_memory, check_positive, concrete_array
from .base import AbstractStimulus, check_broadcast


class PulseTrain(AbstractStimulus):
    """`count` rectangular pulses of `width` ms and `amplitude` µA/cm², one every `period` ms
    (or at `frequency` Hz), the first starting at `start` ms.

    **Arguments** (keyword-only):
    - `start`: onset of the first pulse (ms).
    - `width`: duration of each pulse (ms), > 0 and <= the period.
    - `amplitude`: current density during a pulse (µA/cm²).
    - `count`: number of pulses (a positive Python int; it fixes array shapes).
    - `period` (ms) or `frequency` (Hz): give exactly one.

    `start`, `width`, `period` and `amplitude` may be arrays (a batch); the amplitude is
    differentiable.

    Example:
        >>> s = hh.PulseTrain(start=10.0, frequency=20.0, width=1.0, amplitude=20.0, count=10)
    """

    start: Float[ArrayLike, "*batch"]
    period: Float[ArrayLike, "*batch"]
    width: Float[ArrayLike, "*batch"]
    amplitude: Float[ArrayLike, "*batch"]
    count: int = eqx.field(static=True)
    time_fields: ClassVar[tuple[str, ...]] = ("start", "period", "width")

    def __init__(self, *, start, width, amplitude, count, period=None, frequency=None):
        owner = "hh.PulseTrain"
        if (period is None) == (frequency is None):
            raise ValueError(f"{owner}: give exactly one of `period` (ms) or `frequency` (Hz).")
        if frequency is not None:
            check_positive("frequency", frequency, owner, "Hz")
            period = 1000.0 / frequency
        count = check_count("count", count, owner)
        # Every evaluation of the current, and the solver's list of jumps, holds all edges.
        check_memory(owner, f"a train of {count:,} pulses", (2, count, *np.shape(start)), 8,
                     "simulate fewer pulses (a long train in several shorter solves)")
        self.start, self.period, self.width, self.amplitude = start, period, width, amplitude
        self.count = int(count)

    def __check_init__(self):
        owner = "hh.PulseTrain"
        for name in ("start", "period", "width", "amplitude"):
            check_finite(name, getattr(self, name), owner)
        check_positive("width", self.width, owner, "ms")
        check_positive("period", self.period, owner, "ms")
        width, period = concrete_array(self.width), concrete_array(self.period)
        if width is not None and period is not None and np.any(width > period):
            raise ValueError(
                f"{owner}: `width` ({width.tolist()} ms) must not exceed the period "
                f"({period.tolist()} ms), or pulses would overlap."
            )
        check_broadcast(owner, self, ("start", "period", "width", "amplitude"))

    def _onsets(self):
        """Pulse onsets (ms), shape (*batch, count)."""
        k = jnp.arange(self.count)
        return jnp.asarray(self.start)[..., None] + k * jnp.asarray(self.period)[..., None]

    def __call__(self, t):
        onsets = self._onsets()
        on = jnp.any((t >= onsets) & (t < onsets + jnp.asarray(self.width)[..., None]), axis=-1)
        return jnp.where(on, self.amplitude, 0.0)

    def discontinuities(self):
        onsets = self._onsets()
        offsets = onsets + jnp.asarray(self.width)[..., None]
        return jnp.concatenate([jnp.ravel(onsets), jnp.ravel(offsets)])
