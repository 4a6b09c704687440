"""Threshold crossings: the one rule for where a spike is, used by the analysis functions,
the solvers' in-solve spike detection (single neurons and networks) and the losses.

A spike is an upward crossing of the threshold between two samples: the earlier one below
it, the later one at or above it and finite (a failed solve's inf is no spike).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

_BISECTION_STEPS = 60  # halves the sample interval 60 times: below float64 resolution


@jax.jit  # one compiled program per shape when called eagerly (the analysis functions)
def upward_crossings(before, after, threshold) -> tuple[Bool[Array, "..."], Float[Array, "..."]]:
    """Where the potential crosses `threshold` upwards from `before` to `after` (mV, any
    broadcastable shapes), and the fraction of the interval at which it does by linear
    interpolation (in [0, 1] where crossed; differentiable in the potentials)."""
    crossed = (before < threshold) & (after >= threshold) & jnp.isfinite(after)
    fraction = (threshold - before) / jnp.where(crossed, after - before, 1.0)
    return crossed, fraction


def first_true(mask: Bool[Array, " n"], k: int, fill: int) -> Int[Array, " k"]:
    """Indices of the first `k` True entries of the 1-D `mask`, `fill` past the last one (what
    `jnp.nonzero(mask, size=k, fill_value=fill)` gives). By the running count and a binary
    search for each rank: 2.6x faster than `nonzero` over a batch of long traces on a CPU
    (2,000 neurons × 2,000 samples: 21 against 54 ms), whose compaction scatters."""
    if mask.shape[0] == 0:
        return jnp.full(k, fill, jnp.int32)
    rank = jnp.cumsum(mask, dtype=jnp.int32)  # True entries up to and including each index
    idx = jnp.searchsorted(rank, jnp.arange(1, k + 1, dtype=jnp.int32), side="left")
    return jnp.where(jnp.arange(k) < rank[-1], idx, fill)


def crossings_linear(t, V, threshold):
    """Mask of upward crossings per sample interval `(*batch, time − 1)` and their linearly
    interpolated times (ms)."""
    crossed, fraction = upward_crossings(V[..., :-1], V[..., 1:], threshold)
    return crossed, t[:-1] + fraction * (t[1:] - t[:-1])


def _cubic_through(t4, v4, s):
    """The cubic through the four points (t4, v4), evaluated at s (Lagrange form)."""
    total = 0.0
    for j in range(4):
        term = v4[j]
        for k in range(4):
            if k != j:
                term = term * (s - t4[k]) / (t4[j] - t4[k])
        total = total + term
    return total


def _crossing_time(t, V, i, threshold):
    """Time in [t[i], t[i+1]] where the cubic through samples i-1..i+2 reaches the threshold.

    The cubic interpolates the samples, so it is below the threshold at t[i] and at or above
    it at t[i+1]; bisection on it converges to a crossing in that interval. At the ends of
    the trace the four points shift inwards (still bracketing the interval).
    """
    n = t.shape[0]
    lo_idx = jnp.clip(i - 1, 0, max(n - 4, 0))
    idx = lo_idx + jnp.arange(min(4, n))
    t4, v4 = t[idx], V[idx]
    if n < 4:  # too few samples for a cubic: linear interpolation
        t_a, t_b, v_a, v_b = t[i], t[i + 1], V[i], V[i + 1]
        return t_a + (threshold - v_a) * (t_b - t_a) / (v_b - v_a)

    def body(_, bracket):
        a, b = bracket
        mid = 0.5 * (a + b)
        above = _cubic_through(t4, v4, mid) >= threshold
        return jnp.where(above, a, mid), jnp.where(above, mid, b)

    a, b = jax.lax.fori_loop(0, _BISECTION_STEPS, body, (t[i], t[i + 1]))
    return 0.5 * (a + b)


@functools.partial(jax.jit, static_argnames="max_spikes")
def spike_times_padded(
    t: Float[Array, " time"], V: Float[Array, " time"], threshold, max_spikes: int
) -> tuple[Float[Array, " max_spikes"], Int[Array, ""]]:
    """Upward crossings of one trace, each located on the cubic through the four samples
    around it: (times (ms) padded with NaN to `max_spikes`, count of all crossings)."""
    crossed, _ = upward_crossings(V[:-1], V[1:], threshold)
    count = jnp.sum(crossed)
    idx = first_true(crossed, max_spikes, 0)
    times = jax.vmap(lambda i: _crossing_time(t, V, i, threshold))(idx)
    valid = jnp.arange(max_spikes) < count
    return jnp.where(valid, times, jnp.nan), count
