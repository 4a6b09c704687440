"""Targets: a recorded (or synthetic) voltage trace with the stimulus that produced it."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from ._stimulus import AbstractStimulus, NoStimulus
from ._validation import check_finite


class Target(eqx.Module):
    """One voltage trace to fit: the stimulus, the sample times and the recorded voltage.

    **Fields:**
    - `stimulus`: the injected current density (µA/cm²) that produced the trace.
    - `ts`: sample times (ms), strictly increasing, shape `(time,)`. The model is simulated
      from `t0` to `ts[-1]`.
    - `V`: recorded membrane potential (mV), shape `(time,)`. Masked-out samples are stored
      as 0 (they never enter a loss).
    - `mask`: which samples count (bool, shape `(time,)`); all by default. Required to cover
      every NaN in `V`.
    - `weight`: this target's weight in the total loss (default 1).
    - `t0`: simulation start (ms), default 0; `v0`: initial potential (mV), default the
      model's resting potential.
    - `sigma`: recording noise (mV), if known; used for standard errors instead of the
      residual estimate.

    Example:
        >>> target = hh.Target(stimulus=hh.Step(start=5.0, stop=45.0, amplitude=10.0),
        ...                    ts=ts, V=v_recorded)
    """

    stimulus: AbstractStimulus
    ts: Float[Array, " time"]
    V: Float[Array, " time"]
    mask: Bool[Array, " time"]
    weight: float
    t0: float
    v0: float | None
    sigma: float | None
    sample_dt: float | None  # the sampling interval (ms) when uniform, else None

    def __init__(
        self,
        *,
        stimulus: AbstractStimulus | None,
        ts: Float[ArrayLike, " time"],
        V: Float[ArrayLike, " time"],
        mask: Bool[ArrayLike, " time"] | None = None,
        weight: float = 1.0,
        t0: float = 0.0,
        v0: float | None = None,
        sigma: float | None = None,
    ):
        owner = "hh.Target"
        stimulus = NoStimulus() if stimulus is None else stimulus
        if not isinstance(stimulus, AbstractStimulus):
            raise TypeError(f"{owner}: `stimulus` must be an hh stimulus, got {type(stimulus).__name__}.")
        ts_np, V_np = np.asarray(ts, dtype=float), np.asarray(V, dtype=float)
        if ts_np.ndim != 1 or V_np.ndim != 1:
            raise ValueError(
                f"{owner}: `ts` and `V` must be 1-D, got shapes {ts_np.shape} and {V_np.shape}."
            )
        if ts_np.shape != V_np.shape:
            raise ValueError(
                f"{owner}: `ts` and `V` must have the same length, got {ts_np.shape[0]} times "
                f"and {V_np.shape[0]} voltages."
            )
        if ts_np.shape[0] < 2:
            raise ValueError(f"{owner}: a target needs at least 2 samples, got {ts_np.shape[0]}.")
        if not np.all(np.isfinite(ts_np)) or np.any(np.diff(ts_np) <= 0):
            raise ValueError(f"{owner}: `ts` must be finite and strictly increasing.")
        check_finite("t0", t0, owner)
        if v0 is not None:
            check_finite("v0", v0, owner)
        if not ts_np[0] >= t0:
            raise ValueError(f"{owner}: `ts` must start at or after t0 = {t0} ms, got {ts_np[0]}.")
        if mask is None:
            mask_np = np.ones(V_np.shape, bool)
        else:
            mask_np = np.asarray(mask)
            if mask_np.shape != V_np.shape or mask_np.dtype != bool:
                raise ValueError(
                    f"{owner}: `mask` must be a boolean array shaped like `V` {V_np.shape}, "
                    f"got {mask_np.dtype} {mask_np.shape}."
                )
        bad = ~np.isfinite(V_np) & mask_np
        if np.any(bad):
            where = np.flatnonzero(bad)
            raise ValueError(
                f"{owner}: `V` has {where.size} non-finite sample(s) (first at index {where[0]}, "
                f"t = {ts_np[where[0]]} ms); pass `mask` with False there to leave them out."
            )
        if not mask_np.any():
            raise ValueError(f"{owner}: `mask` leaves no sample to fit.")
        if not (np.isfinite(weight) and weight > 0):
            raise ValueError(f"{owner}: `weight` must be a positive number, got {weight}.")
        if sigma is not None and not (np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"{owner}: `sigma` must be a positive noise level (mV), got {sigma}.")
        self.stimulus = stimulus
        self.ts = jnp.asarray(ts_np)
        self.V = jnp.asarray(np.where(mask_np, V_np, 0.0))
        self.mask = jnp.asarray(mask_np)
        self.weight = float(weight)
        self.t0 = float(t0)
        self.v0 = None if v0 is None else float(v0)
        self.sigma = None if sigma is None else float(sigma)
        steps = np.diff(ts_np)
        uniform = np.allclose(steps, steps[0], rtol=1e-6, atol=0.0)
        self.sample_dt = float(steps.mean()) if uniform else None

    @property
    def t1(self) -> float:
        return float(self.ts[-1])
