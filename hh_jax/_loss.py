"""Losses: how far a simulated trace is from a target.

A loss is called as `loss(ts, V, target) -> scalar`, with `V` the simulated voltage (mV) at
the target's sample times `ts` (ms). Losses are small pytrees that combine with `+` and scale
with `*`, e.g. `hh.TraceMSE() + 0.1 * hh.FeatureLoss()`; any plain function with the same
signature works too.

Trace MSE compares sample by sample; it is the right loss when the model can match spike
timing (and the only one with a least-squares polish and Gauss–Newton standard errors). When a
small shift of a spike makes the MSE misleading, use a smoothed trace, a soft spike count or
features (resting potential, spike count, AP peak, interspike interval), or a mix.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._features import FEATURES, crossing_count, soft_spike_count, stimulus_spike_count, trace_features
from ._target import Target


class AbstractLoss(eqx.Module):
    """Base of the built-in losses: `__call__(ts, V, target)`; combine with `+` and `*`.

    Example:
        >>> loss = hh.TraceMSE() + 0.1 * hh.FeatureLoss()
        >>> loss(target.ts, V_model, target)
    """

    def __call__(self, ts: Float[Array, " time"], V: Float[Array, " time"], target: Target) -> Float[Array, ""]:
        raise NotImplementedError

    def __add__(self, other):
        if not callable(other):
            return NotImplemented
        return SumLoss(terms=(self, other), weights=(1.0, 1.0))

    def __radd__(self, other):
        if isinstance(other, (int, float)) and other == 0:  # sum([...]) starts from 0
            return self
        return NotImplemented

    def __mul__(self, weight):
        if not isinstance(weight, (int, float)):
            return NotImplemented
        return SumLoss(terms=(self,), weights=(float(weight),))

    __rmul__ = __mul__


class SumLoss(AbstractLoss):
    """A weighted sum of losses (what `+` and `*` build).

    Example:
        >>> loss = 2.0 * hh.TraceMSE(window=(0.0, 20.0)) + hh.TraceMSE(window=(20.0, 50.0))
    """

    terms: tuple
    weights: tuple[float, ...]

    def __call__(self, ts, V, target):
        return sum(w * term(ts, V, target) for w, term in zip(self.weights, self.terms))

    def residuals(self, ts, V, target):
        """Stacked residuals of the terms (when every term is a least-squares loss)."""
        return jnp.concatenate(
            [jnp.sqrt(w) * term.residuals(ts, V, target) for w, term in zip(self.weights, self.terms)]
        )


def is_least_squares(loss) -> bool:
    """True for losses of the form Σ r² with known residuals r (trace MSEs, windows of them
    and their positive combinations): those get the Levenberg–Marquardt polish."""
    if isinstance(loss, TraceMSE):
        return True
    if isinstance(loss, SumLoss):
        return all(w > 0 for w in loss.weights) and all(is_least_squares(t) for t in loss.terms)
    return False


def trace_error(V, target, mask=None):
    """V_model − V_target (mV) where `mask` (default the target's) holds, 0 elsewhere: the one
    definition of a trace residual (losses scale it; the fit's standard errors use it raw)."""
    return jnp.where(target.mask if mask is None else mask, V - target.V, 0.0)


class TraceMSE(AbstractLoss):
    """Mean squared difference (mV²) between the simulated and target voltage over the
    target's unmasked samples. Optional `window = (start, stop)` (ms) restricts it in time.

    Example:
        >>> hh.TraceMSE(window=(5.0, 45.0))(target.ts, V_model, target)   # mV²
    """

    window: tuple[float, float] | None = None

    def residuals(self, ts, V, target):
        """Per-sample residuals r with `loss = sum(r**2)`."""
        mask = target.mask
        if self.window is not None:
            mask = mask & (ts >= self.window[0]) & (ts <= self.window[1])
        n = jnp.maximum(jnp.sum(mask), 1)
        return trace_error(V, target, mask) / jnp.sqrt(n).astype(V.dtype)

    def __call__(self, ts, V, target):
        return jnp.sum(self.residuals(ts, V, target) ** 2)


def smooth(V, mask, width, dt, reach=None):
    """Gaussian smoothing (σ = width ms) of a trace sampled every dt ms, normalised over the
    mask (so masked samples and the ends do not pull the result towards zero). The kernel
    spans ±4·`reach` ms (default `width`; a fixed `reach` lets `width` be traced)."""
    n = max(1, int(np.ceil(4 * (width if reach is None else reach) / dt)))
    k = jnp.exp(-0.5 * (jnp.arange(-n, n + 1) * dt / width) ** 2).astype(V.dtype)
    m = mask.astype(V.dtype)
    num = jnp.convolve(jnp.where(mask, V, 0.0), k, mode="same")
    den = jnp.convolve(m, k, mode="same")
    return num / jnp.maximum(den, 1e-12)


class SmoothedTraceMSE(AbstractLoss):
    """MSE (mV²) between Gaussian-smoothed traces (σ = `width` ms, default 1 ms): tolerant to
    spike-time shifts smaller than the width. Assumes uniformly spaced samples.

    Example:
        >>> hh.fit(p, target, loss=hh.SmoothedTraceMSE(width=2.0))
    """

    width: float = 1.0

    def __check_init__(self):
        if not (np.isfinite(self.width) and self.width > 0):
            raise ValueError(f"hh.SmoothedTraceMSE: `width` must be a positive time (ms), got {self.width}.")

    def __call__(self, ts, V, target):
        if target.sample_dt is None:
            raise ValueError("hh.SmoothedTraceMSE: the target's samples must be uniformly spaced.")
        mask = target.mask
        a = smooth(V, mask, self.width, target.sample_dt)
        b = smooth(target.V, mask, self.width, target.sample_dt)
        return jnp.sum(jnp.where(mask, (a - b) ** 2, 0.0)) / jnp.maximum(jnp.sum(mask), 1)


def _threshold(target, threshold):
    """Default spike threshold: 40 mV above the target's median voltage."""
    if threshold is not None:
        return threshold
    return jnp.nanmedian(jnp.where(target.mask, target.V, jnp.nan)) + 40.0


class SpikeCountLoss(AbstractLoss):
    """(soft spike count of the model − spike count of the target)².

    `threshold` (mV) defaults to 40 mV above the target's median voltage; `sharpness` (mV)
    sets how soft the count is.

    Example:
        >>> hh.SpikeCountLoss(threshold=0.0)(target.ts, V_model, target)
    """

    threshold: float | None = None
    sharpness: float = 2.0

    def __call__(self, ts, V, target):
        thr = _threshold(target, self.threshold)
        model = soft_spike_count(V, thr, self.sharpness, target.mask)
        count = crossing_count(ts, target.V, thr, target.mask)
        return (model - count) ** 2


_FEATURE_SCALES = {"resting": 1.0, "spike_count": 1.0, "ap_peak": 5.0, "isi": 1.0, "first_spike": 1.0, "ahp": 1.0,
                   "ap_width": 0.1, "adaptation": 0.02}


class FeatureLoss(AbstractLoss):
    """Weighted squared differences of trace features between model and target.

    Σ_f w_f ((f_model − f_target) / scale_f)² over `features`, any of "resting",
    "spike_count", "ap_peak", "isi", "first_spike", "ahp", "ap_width", "adaptation" (default
    the first four), each as `hh.trace_features` computes it (the definitions of
    `hh.spike_features`, checked against eFEL); scales 1 mV, 1 spike, 5 mV, 1 ms, 1 ms, 1 mV,
    0.1 ms and 0.02 unless given in `scales`. The target's spike count is exact, the model's
    soft. A term that needs spikes (all but "resting" and "spike_count") counts only when
    both traces have them.

    Example:
        >>> loss = hh.FeatureLoss(features=("resting", "spike_count", "isi"), scales={"isi": 5.0})
    """

    features: tuple[str, ...] = ("resting", "spike_count", "ap_peak", "isi")
    weights: dict | None = None
    scales: dict | None = None
    threshold: float | None = None

    def __check_init__(self):
        unknown = [f for f in self.features if f not in FEATURES]
        if unknown:
            raise ValueError(f"hh.FeatureLoss: unknown feature(s) {unknown}; expected any of {list(FEATURES)}.")

    def __call__(self, ts, V, target):
        thr = _threshold(target, self.threshold)
        model = trace_features(ts, V, target, thr)
        data = trace_features(ts, target.V, target, thr)
        data["spike_count"] = stimulus_spike_count(ts, target.V, target, thr).astype(V.dtype)
        weights, scales = self.weights or {}, {**_FEATURE_SCALES, **(self.scales or {})}
        total = 0.0
        for f in self.features:
            a, b = model[f], data[f]
            if f not in ("resting", "spike_count"):  # only when both have the spikes; no NaN gradient
                ok = jnp.isfinite(a) & jnp.isfinite(b)
                a, b = jnp.where(ok, a, 0.0), jnp.where(ok, b, 0.0)
            term = ((a - b) / scales[f]) ** 2
            total = total + weights.get(f, 1.0) * term
        return total
