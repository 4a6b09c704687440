"""Features: spike-train and action-potential measures of one voltage trace, each defined as
eFEL (the Blue Brain Project's electrophysiology feature library, `efel`) defines it, exactly
(`hh.spike_features`) and differentiably in the voltage (`hh.trace_features`, for losses).

One vocabulary, shared with `hh.FeatureLoss`:

| key | unit | definition | eFEL feature |
| --- | --- | --- | --- |
| `resting` | mV | mean V over 0.9·onset ≤ t ≤ onset | `voltage_base` |
| `spike_count` | 1 | upward threshold crossings in the stimulus | `spike_count` (strict_stiminterval) |
| `isi` | ms | mean interval between successive spikes | mean of `all_ISI_values` |
| `first_spike` | ms | first spike minus stimulus onset | `time_to_first_spike` |
| `ap_peak` | mV | mean of the spike maxima | mean of `peak_voltage` |
| `ap_width` | ms | mean time above threshold per spike | mean of `AP_width` |
| `ahp` | mV | mean of the minima between successive spikes | mean of `min_voltage_between_spikes` |
| `adaptation` | 1 | mean of (ISIᵢ − ISIᵢ₋₁)/(ISIᵢ + ISIᵢ₋₁) from the 2nd ISI on | `adaptation_index2` |

A spike is an upward crossing of the threshold (`_crossing`, the one rule), counted when it
falls in [onset, offset] of the stimulus. eFEL times a spike at its peak sample instead, so
`first_spike` differs from eFEL's by the rise from threshold to peak, and `isi` and
`adaptation` by how much that rise varies between spikes; eFEL's `AP_width` counts whole
samples where hh interpolates the crossings. The test suite measures every difference
(tests/test_features.py; the table is in the README).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int

from ._analysis import check_trace
from ._crossing import crossings_linear, first_true, spike_times_padded
from ._target import Target
from ._validation import check_finite

FEATURES = ("resting", "spike_count", "ap_peak", "isi", "first_spike", "ahp", "ap_width", "adaptation")
_BASE_START = 0.9  # eFEL's voltage_base_start_perc: the resting window starts at 0.9 × onset


def safe_mean(total, n):
    """total / n, NaN where n is 0 (with a finite gradient there)."""
    return jnp.where(n > 0, total / jnp.maximum(n, 1), jnp.nan)


@jax.jit
def spikes_in_window(t, V, threshold, start, stop, valid, between=None) -> dict:
    """Spike-by-spike measures of one trace, fixed-shape and differentiable in V.

    Spike k (k = 1, 2, …) is the k-th upward crossing; sample j belongs to spike `run[j]`,
    the number of crossings before it. Spike k's maximum is over its samples at or above the
    threshold; the minimum between spikes k and k+1 is over all of spike k's samples, which
    differ from the samples between the two peaks only by stretches above the threshold, so
    it is eFEL's minimum between the peaks. Only spikes that cross in [start, stop]
    (ms) count. Returns count, crossing times (ms, padded with NaN), mean peak (mV), mean
    width at the threshold (ms), mean minimum between counted spikes (mV).

    Given `between` (a `_continuous.LocalSolution`: the solution itself), every crossing,
    maximum and minimum is located between samples instead of linearly or at a sample: the
    same definitions on the continuous trace, whose derivatives in the model's parameters
    follow the spikes rather than the sampling phase.
    """
    n = t.shape[0]
    pair = valid[:-1] & valid[1:]
    up, t_up = crossings_linear(t, V, threshold)
    down, t_down = crossings_linear(t, -V, -threshold)  # back below: b > thr ≥ a
    up, down = up & pair, down & pair
    run = jnp.concatenate([jnp.zeros(1, jnp.int32), jnp.cumsum(up, dtype=jnp.int32)])
    above = (V >= threshold) & valid
    peak, peak_at = _extreme_per_spike(V, above, run, n, maximum=True)
    trough, trough_at = _extreme_per_spike(V, valid, run, n, maximum=False)
    if between is not None:
        h = t[1:] - t[:-1]
        peak_at = jnp.where(between.dVdt[peak_at] >= 0, peak_at, peak_at - 1)  # a peak follows a rising sample
        trough_at = jnp.where(between.dVdt[trough_at] <= 0, trough_at, trough_at - 1)
        t_up, t_down, peak_c, trough_c = between.events(up, (t_up - t[:-1]) / h, down, (t_down - t[:-1]) / h, peak_at,
                                                         trough_at, threshold)
        peak = jnp.where(jnp.isfinite(peak), peak_c, peak)
        trough = jnp.where(jnp.isfinite(trough), trough_c, trough)
    k_up = jnp.where(up, run[1:], 0)  # 0 collects the intervals without a crossing
    k_down = jnp.where(down, run[:-1], 0)
    t_spike = jnp.zeros(n, t_up.dtype).at[k_up].add(jnp.where(up, t_up, 0.0))
    t_end = jnp.zeros(n, t_down.dtype).at[k_down].add(jnp.where(down, t_down, 0.0))
    ended = jnp.zeros(n, bool).at[k_down].max(down)
    counted = jnp.zeros(n, bool).at[k_up].max(up & (t_up >= start) & (t_up <= stop)).at[0].set(False)
    count = jnp.sum(counted)
    successive = counted[:-1] & counted[1:]  # spikes k and k+1 both counted
    width_ok = counted & ended

    order = first_true(counted, n, 0)
    times = jnp.where(jnp.arange(n) < count, t_spike[order], jnp.nan)
    return {
        "count": count,
        "times": times,
        "ap_peak": safe_mean(jnp.sum(jnp.where(counted, peak, 0.0)), count),
        "ap_width": safe_mean(jnp.sum(jnp.where(width_ok, t_end - t_spike, 0.0)), jnp.sum(width_ok)),
        "ahp": safe_mean(jnp.sum(jnp.where(successive, trough[:-1], 0.0)), jnp.sum(successive)),
    }


def _extreme_per_spike(V, member, run, n, maximum):
    """Per spike (segment `run` over the samples in `member`): the largest (smallest) sample
    and its index (clipped to 1 … n − 2, so that it has neighbours)."""
    sign = 1.0 if maximum else -1.0
    seg = jnp.where(member, run, 0)
    best = sign * jax.ops.segment_max(jnp.where(member, sign * V, -jnp.inf), seg, num_segments=n)
    top = member & (V == best[seg])
    j = jnp.clip(jax.ops.segment_max(jnp.where(top, jnp.arange(n), -1), seg, num_segments=n), 1, n - 2)
    return best, j


@jax.jit
def spike_timing(times, count, onset) -> dict:
    """`first_spike`, `isi` and `adaptation` from spike times (ms, the first `count` valid,
    the rest anything): NaN where there are too few spikes, with finite gradients."""
    i = jnp.arange(times.shape[-1])
    s = jnp.where(i < count, times, 0.0)
    last = s[jnp.maximum(count - 1, 0)]
    isi = s[1:] - s[:-1]  # isi[m] = s[m+1] − s[m]
    # eFEL adaptation_index2: drop the first spike, then average over successive ISI pairs,
    # i.e. over isi[m−1], isi[m] for m = 2 … count − 2 (count − 3 terms, needs 4 spikes).
    m = jnp.arange(1, isi.shape[0])
    ok = (m >= 2) & (m <= count - 2)
    ratio = (isi[1:] - isi[:-1]) / jnp.where(ok, isi[1:] + isi[:-1], 1.0)
    return {
        "first_spike": jnp.where(count >= 1, s[0] - onset, jnp.nan),
        "isi": jnp.where(count >= 2, (last - s[0]) / jnp.maximum(count - 1, 1), jnp.nan),
        "adaptation": jnp.where(count >= 4, jnp.sum(jnp.where(ok, ratio, 0.0)) / jnp.maximum(count - 3, 1), jnp.nan),
    }


def base_window(t, onset, valid):
    """eFEL's voltage_base window, 0.9·onset ≤ t ≤ onset (ms), where valid."""
    return valid & (t >= _BASE_START * onset) & (t <= onset)


def spike_features(
    t: Float[ArrayLike, " time"],
    V: Float[ArrayLike, " time"],
    *,
    stim_start: float,
    stim_end: float,
    threshold: float = 0.0,
) -> dict[str, float | int]:
    """Spike-train and action-potential features of one trace under a stimulus, as eFEL
    defines them (the eFEL name of each, and how far apart the two are measured, in the
    README's "Features checked against eFEL").

    Spikes are upward crossings of `threshold` that fall in [`stim_start`, `stim_end`],
    located as `hh.spike_times` locates them (so `first_spike` equals
    `hh.first_spike_latency(t, V, onset=stim_start)` and `isi` the mean of
    `hh.interspike_intervals` when every spike is in the stimulus).

    **Arguments:**
    - `t`: sample times (ms), shape `(time,)`, increasing.
    - `V`: membrane potential (mV), shape `(time,)`.
    - `stim_start`, `stim_end`: stimulus onset and offset (ms).
    - `threshold`: spike threshold (mV), default 0 (eFEL's `Threshold` setting).

    **Returns:** a dict of Python numbers, NaN where undefined:
    - `resting` (mV): mean V over 0.9·stim_start ≤ t ≤ stim_start; eFEL `voltage_base`.
    - `spike_count`: the spikes; eFEL `spike_count` with `strict_stiminterval`.
    - `isi` (ms): mean interspike interval (≥ 2 spikes); eFEL mean of `all_ISI_values`.
    - `first_spike` (ms): first spike minus `stim_start`; eFEL `time_to_first_spike`.
    - `ap_peak` (mV): mean over spikes of the largest sample; eFEL mean of `peak_voltage`.
    - `ap_width` (ms): mean over spikes of the time from the upward to the downward crossing
      of `threshold` (linearly interpolated); eFEL mean of `AP_width`.
    - `ahp` (mV): mean over successive spikes of the lowest sample between them (≥ 2 spikes);
      eFEL mean of `min_voltage_between_spikes`.
    - `adaptation`: mean of (ISIᵢ − ISIᵢ₋₁)/(ISIᵢ + ISIᵢ₋₁) over the ISIs after the first
      (≥ 4 spikes); eFEL `adaptation_index2`.

    Example:
        >>> tr = hh.simulate(hh.presets.pospischil(), hh.Step(start=100.0, stop=500.0, amplitude=2.0),
        ...                  t1=600.0, ts=jnp.arange(0.0, 600.0, 0.025))
        >>> hh.spike_features(tr.t, tr.V, stim_start=100.0, stim_end=500.0)["isi"]   # ms
    """
    owner = "hh.spike_features"
    t, V = check_trace(owner, t, V, threshold)
    if V.ndim != 1:
        raise ValueError(f"{owner}: `V` must be one trace, shape (time,), got {V.shape}.")
    check_finite("stim_start", stim_start, owner)
    check_finite("stim_end", stim_end, owner)
    if not stim_end > stim_start:
        raise ValueError(f"{owner}: `stim_end` must be after `stim_start` (ms), got {stim_start} and {stim_end}.")
    dtype = jnp.result_type(float)
    out = _spike_features(t.astype(dtype), V.astype(dtype), *(jnp.asarray(v, dtype) for v in (threshold, stim_start, stim_end)))
    return {k: (int(v) if k == "spike_count" else float(v)) for k, v in out.items()}


@jax.jit
def _spike_features(t, V, threshold, start, stop):
    """`spike_features` of one trace, one compiled program per trace length."""
    valid = jnp.isfinite(V)
    spikes = spikes_in_window(t, V, threshold, start, stop, valid)
    n = t.shape[0]
    times, _ = spike_times_padded(t, V, threshold, (n + 1) // 2)  # a crossing needs a sample below and one above
    inside = (times >= start) & (times <= stop)  # NaN padding is never inside
    count = jnp.sum(inside)
    (order,) = jnp.nonzero(inside, size=times.shape[0], fill_value=0)
    timing = spike_timing(jnp.where(jnp.arange(times.shape[0]) < count, times[order], jnp.nan), count, start)
    base = base_window(t, start, valid)
    return {
        "resting": safe_mean(jnp.sum(jnp.where(base, V, 0.0)), jnp.sum(base)),
        "spike_count": count,
        **timing,
        **{k: spikes[k] for k in ("ap_peak", "ap_width", "ahp")},
    }


def soft_spike_count(V, threshold, sharpness=2.0, mask=None):
    """A differentiable spike count: the total rise of sigmoid((V − threshold)/sharpness).

    Each spike that crosses the threshold by several `sharpness` (mV) adds one; a trace that
    stays below adds nearly zero. `mask` (bool, like `V`) keeps the rises between samples
    that are both in it.

    Example:
        >>> hh.soft_spike_count(tr.V, threshold=0.0)   # ≈ the number of spikes
    """
    s = jax.nn.sigmoid((V - threshold) / sharpness)
    rise = jnp.maximum(s[1:] - s[:-1], 0.0)
    if mask is not None:
        rise = jnp.where(mask[1:] & mask[:-1], rise, 0.0)
    return jnp.sum(rise)


def crossing_count(ts, V, threshold, mask) -> Int[Array, ""]:
    """Upward threshold crossings between samples that are both in `mask`: the exact count
    that the soft one is compared with."""
    crossed, _ = crossings_linear(ts, V, threshold)
    return jnp.sum(crossed & mask[:-1] & mask[1:])


def _stimulus_window(ts, target):
    """Onset and offset of the target's stimulus (first and last sample where it is not
    zero; the whole trace when it never is), and the mask of samples where it is off."""
    on = target.stimulus(ts) != 0.0
    some = jnp.any(on)
    start = jnp.where(some, jnp.min(jnp.where(on, ts, jnp.inf)), ts[0])
    stop = jnp.where(some, jnp.max(jnp.where(on, ts, -jnp.inf)), ts[-1])
    return start, stop, ~on


def stimulus_spike_count(ts, V, target: Target, threshold) -> Int[Array, ""]:
    """The exact count that `trace_features`' soft `spike_count` stands for: upward crossings
    in the target's stimulus window, between samples in its mask."""
    start, stop, _ = _stimulus_window(ts, target)
    return spikes_in_window(ts, V, threshold, start, stop, target.mask)["count"]


def trace_features(
    ts: Float[Array, " time"],
    V: Float[Array, " time"],
    target: Target,
    threshold: float,
    sharpness: float = 2.0,
) -> dict[str, Float[Array, ""]]:
    """The features of `hh.spike_features`, differentiable in `V`, for losses.

    The stimulus window is where `target.stimulus` is not zero (onset: its first sample,
    offset: its last); only `target.mask`'s samples count. Every feature has the definition
    and unit of `hh.spike_features`; the differences are in how it is computed, and the test
    suite bounds them (README, "Features checked against eFEL"):
    - `spike_count` is soft (`hh.soft_spike_count` with `sharpness` mV, over the stimulus);
    - spike times are threshold crossings located by linear interpolation (not cubic), which
      `first_spike` (ms after onset), `isi` (ms) and `adaptation` use;
    - `resting` (mV) falls back to the mean where the stimulus is off when nothing precedes
      the onset.
    `ap_peak`, `ap_width` and `ahp` are the exact values. Features that need spikes are NaN
    without them (with finite gradients).

    **Arguments:** `ts` (ms), `V` (mV) at those times, `target` (an `hh.Target`: its stimulus
    and mask), `threshold` (mV), `sharpness` (mV).

    **Returns:** a dict with the keys of `hh.spike_features`, scalar arrays.

    Example:
        >>> hh.trace_features(target.ts, V_model, target, threshold=0.0)["isi"]   # ms
    """
    mask = target.mask
    start, stop, off = _stimulus_window(ts, target)
    spikes = spikes_in_window(ts, V, threshold, start, stop, mask)
    base = base_window(ts, start, mask)
    base = jnp.where(jnp.any(base) & (start > ts[0]), base, off & mask)
    base = jnp.where(jnp.any(base), base, mask)
    during = mask & (ts >= start) & (ts <= stop)
    return {
        "resting": safe_mean(jnp.sum(jnp.where(base, V, 0.0)), jnp.sum(base)),
        "spike_count": soft_spike_count(V, threshold, sharpness, during),
        **spike_timing(spikes["times"], spikes["count"], start),
        **{k: spikes[k] for k in ("ap_peak", "ap_width", "ahp")},
    }
