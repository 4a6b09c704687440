"""A current given by samples: recorded or arbitrary waveforms."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._validation import check_finite, concrete_array
from .base import AbstractStimulus

_HOLDS = ("linear", "zero")


class Sampled(AbstractStimulus):
    """A current defined by samples `values` (µA/cm²) at `times` (ms), zero outside
    [times[0], times[-1]].

    **Arguments:**
    - `times`: sample times (ms), shape `(samples,)`, strictly increasing.
    - `values`: current density (µA/cm²), shape `(*batch, samples)`; differentiable.
    - `hold`: "linear" (default: linear interpolation, a continuous current) or "zero"
      (zero-order hold: each value holds until the next sample, as a DAC plays it out).

    With "zero" hold the times where the value changes are handed to the solver as jumps
    (found from the values given here; a step sampled at 50 kHz has just two). With "linear"
    the two ends of the record are jumps and every sample is a kink the solver steps onto,
    so the solve takes at least one step per sample interval: resample a long, finely
    sampled record to the resolution you need first.

    Example:
        >>> s = hh.Sampled(times=t_ms, values=i_uA_per_cm2, hold="zero")
    """

    shared_fields: ClassVar[tuple[str, ...]] = ("times", "jumps")
    time_fields: ClassVar[tuple[str, ...]] = ("times", "jumps")

    times: Float[Array, " samples"]
    values: Float[Array, "*batch samples"]
    hold: str = eqx.field(static=True)
    jumps: Float[Array, " jumps"]

    def __init__(self, times, values, hold="linear"):
        owner = "hh.Sampled"
        if hold not in _HOLDS:
            raise ValueError(f"{owner}: `hold` must be one of {_HOLDS}, got {hold!r}.")
        times = jnp.asarray(times)
        values = jnp.asarray(values)
        if times.ndim != 1 or times.shape[0] < 2:
            raise ValueError(f"{owner}: `times` must be 1-D with at least 2 samples, got shape {times.shape}.")
        if values.ndim < 1 or values.shape[-1] != times.shape[0]:
            raise ValueError(
                f"{owner}: `values` must have the length of `times` ({times.shape[0]}) as its "
                f"last axis, got shape {values.shape}."
            )
        check_finite("times", times, owner)
        check_finite("values", values, owner)
        t_c = concrete_array(times)
        if t_c is not None and np.any(np.diff(t_c) <= 0):
            bad = int(np.argmax(np.diff(t_c) <= 0))
            raise ValueError(
                f"{owner}: `times` must be strictly increasing (sorted, no duplicates); "
                f"times[{bad}] = {t_c[bad]} is followed by {t_c[bad + 1]}."
            )
        self.times, self.values, self.hold = times, values, hold
        self.jumps = self._find_jumps(times, values, hold)

    @staticmethod
    def _find_jumps(times, values, hold):
        ends = jnp.stack([times[0], times[-1]])
        if hold == "linear":
            return ends
        v_c = concrete_array(values)
        if v_c is None:  # traced values: every sample time may be a jump
            return times
        flat = v_c.reshape(-1, v_c.shape[-1])
        changes = np.any(flat[:, 1:] != flat[:, :-1], axis=0)
        return jnp.concatenate([ends, times[1:][changes]])

    def __call__(self, t):
        times, values = self.times, self.values
        # The sample interval holding t; outside the record the value is masked anyway.
        i = jnp.clip(jnp.searchsorted(times, t, side="right") - 1, 0, times.shape[0] - 2)
        inside = (t >= times[0]) & (t < times[-1])
        if self.hold == "zero":
            value = values[..., i]
        else:
            frac = (t - times[i]) / (times[i + 1] - times[i])
            value = values[..., i] + frac * (values[..., i + 1] - values[..., i])
        return jnp.where(inside, value, 0.0)

    def discontinuities(self):
        return self.jumps

    def kinks(self):
        return self.times if self.hold == "linear" else jnp.zeros((0,), self.times.dtype)
