"""Spike sources: populations without a membrane whose spikes are given (`hh.SpikeTimes`)
or drawn (`hh.PoissonSource`). They sit in an `hh.Network` beside `hh.Population`s and may
be the `pre` of any projection with an `hh.ExpSynapse` (with or without short-term
plasticity and STDP), so a synapse can be driven at chosen times without a presynaptic HH
cell. A source has no voltage and no state: it cannot be a `post`, take a stimulus, or have
"<source>.V" saved; its spikes come back in `NetworkTrace.spikes[name]` like a
population's.

How a source's spikes reach its synapses:
- Fixed steps (`dt=...`): the spikes in (t, t + dt] are that step's release, applied as the
  same exact jumps as a population's spike (conductance + w per spike, Tsodyks–Markram
  release, the STDP pre trace + 1 per spike). First-order solvers (`hh.ExponentialEuler`)
  apply them at the end of the step, t + dt: within one step of the spike, as in Brian2 and
  NEST's grid-based runs. Second-order ones (`hh.ExponentialMidpoint`) let each release act
  from its time within the step (`fraction`): an exponential synapse's conductance then
  equals w·exp(−(t − t_k)/τ) to (lag/τ)²/2, given times delivered at their time. Poisson
  spikes are placed at the end of their step. Delays (`Projection(..., delay=...)`) apply
  to a source's spikes as to a population's.
- Adaptive runs: given times only. Each spike at t_k is a rectangular release pulse of
  integral 1 and width `width` centred on t_k; both edges are handed to the step-size
  controller as jump times (as a stimulus's are), so the solver steps exactly onto them
  and never over a pulse. For a linear synapse the response after the pulse is that of an
  instantaneous release at t_k times sinh(x)/x, x = width/(2τ): with the default 0.005 ms
  and τ = 5 ms, 1 + 4·10⁻⁸. With short-term depression the release within a pulse is
  front-loaded (x falls during it), which moves it earlier by up to ~0.06·width (U = 0.5):
  a relative error of ~0.06·width/τ, 5·10⁻⁵ at τ = 5 ms. Poisson sources are refused
  there (10⁵ spikes would be 2·10⁵ forced steps): draw the times first
  (`PoissonSource.draw`) and pass an `hh.SpikeTimes`, or run with fixed steps. So are
  delayed projections from a source (adaptive runs deliver delays from recorded spikes):
  shift the given times by the delay instead.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from ._validation import check_count, check_finite, check_nonnegative, check_positive, concrete_array

_DIRECT_MAX = 10.0  # mean count per step up to which counts are drawn by inverse transform


class AbstractSource(eqx.Module):
    """A population of `size` spike sources (no membrane, no state).

    Subclasses say how many spikes each source emits in a step (`counts`), at which times
    (`spike_time`), and, for adaptive runs, their release rate (`release`) and its
    discontinuities."""

    size: eqx.AbstractVar[int]

    @abc.abstractmethod
    def counts(self, t, dt) -> Int[Array, " size"]:
        """Spikes of each source in (t, t + dt] (ms)."""

    @abc.abstractmethod
    def spike_time(self, t, dt, j) -> Float[Array, " size"]:
        """The time (ms) recorded for each source's j-th spike (from 0) in (t, t + dt]."""

    @abc.abstractmethod
    def fraction(self, t, dt) -> Float[Array, " size"]:
        """The mean time of each source's spikes in (t, t + dt], as a fraction of the step
        (for delays and second-order delivery)."""

    def release(self, t) -> Float[Array, " size"]:
        """The release rate (1/ms, integral 1 per spike) at t, for adaptive runs."""
        raise ValueError(self._adaptive_refusal())

    def discontinuities(self) -> Float[Array, " jumps"]:
        """Times (ms) where the release rate jumps (the step-size controller lands on them)."""
        raise ValueError(self._adaptive_refusal())

    def kinks(self) -> Float[Array, " kinks"]:
        return jnp.zeros((0,))

    def _adaptive_refusal(self):
        return (f"hh.simulate: an hh.{type(self).__name__} needs fixed steps (pass `dt`, ms); "
                "adaptive runs take hh.SpikeTimes (e.g. PoissonSource.draw(t1))")

    def record(self, times, counts, t, dt):
        """One fixed step (t, t + dt]: (the spike buffer `times`, (size, max_spikes) and
        NaN-padded, with this step's spikes written; the counts so far; (this step's
        counts, their `fraction`) for `hh.Network.jumps`)."""
        new = self.counts(t, dt)
        times = _write_spikes(times, counts, new, lambda j: self.spike_time(t, dt, j))
        return times, counts + new, (new, self.fraction(t, dt))


def _write_spikes(times, counts, new, time_of):
    """Write new[i] spike times time_of(j)[i], j < new[i], after the counts[i] already held
    (entries past the buffer are dropped, the counts still count them)."""
    n, width = times.shape
    rows = jnp.arange(n)

    def body(j, buf):
        slot = counts + j
        ok = (new > j) & (slot < width)
        return buf.at[jnp.where(ok, rows, n), jnp.minimum(slot, width - 1)].set(time_of(j), mode="drop")

    room = jnp.maximum(jnp.minimum(new, width - counts), 0)
    return jax.lax.fori_loop(0, jnp.max(room, initial=0), body, times)


class SpikeTimes(AbstractSource):
    """Sources that spike at given times: `times[i]` are the spike times (ms) of source i.

    **Arguments:**
    - `times`: a list of lists (one per source, any lengths) or a (size, max_spikes) array
      padded with NaN; each row is sorted here.
    - `width`: the release pulse's width (ms) in adaptive runs (see the module docs); 0.005
      by default. The solver steps onto both edges whatever the width, so a narrower pulse
      costs no more steps.

    Fixed steps deliver a spike at the end of the step (t, t + dt] that contains it, within
    one step of its time, or, with a second-order solver (`hh.ExponentialMidpoint`), from
    its time within that step; `NetworkTrace.spikes` holds the given times themselves. Adaptive
    runs deliver it at t_k (the pulse centred there, edges stepped onto exactly). Spikes at
    or before t0, and after t1, are not delivered.

    Example:
        >>> src = hh.SpikeTimes([[10.0, 30.0], [25.0]])       # two sources
        >>> net = hh.Network({"in": src, "cell": hh.Population(hh.presets.neuron(), 1)},
        ...                  {"syn": hh.Projection("in", "cell", hh.ExpSynapse(), weight=[[0.1], [0.1]])})
    """

    times: Float[Array, "size max_spikes"]
    size: int = eqx.field(static=True)
    width: float = eqx.field(static=True)

    def __init__(self, times, width: float = 0.005):
        owner = "hh.SpikeTimes"
        if isinstance(times, (list, tuple)) and all(np.ndim(row) == 1 for row in times) and times:
            rows = [np.asarray(row, float) for row in times]
            longest = max((r.size for r in rows), default=0)
            padded = np.full((len(rows), max(longest, 1)), np.nan)
            for i, r in enumerate(rows):
                padded[i, : r.size] = r
            times = padded
        if np.ndim(times) != 2 or np.shape(times)[0] == 0:
            raise ValueError(
                f"{owner}: `times` must be a list of lists (one per source) or a "
                f"(size, max_spikes) NaN-padded array (ms), got shape {np.shape(times)}."
            )
        value = concrete_array(times)
        if value is not None and np.any(np.isinf(value)):
            raise ValueError(f"{owner}: `times` must be finite (NaN pads), got an infinite entry.")
        check_positive("width", width, owner, "ms")
        times = jnp.asarray(times)
        if not jnp.issubdtype(times.dtype, jnp.floating):
            times = times.astype(jnp.result_type(float))
        self.times = jnp.sort(jnp.where(jnp.isnan(times), jnp.inf, times), axis=1)  # padding last
        self.size = int(times.shape[0])
        self.width = float(width)

    def _before(self, t):
        """Given spikes at or before t, per source."""
        return jax.vmap(lambda row: jnp.searchsorted(row, t, side="right"))(self.times)

    def counts(self, t, dt):
        return (self._before(t + dt) - self._before(t)).astype(jnp.int32)

    def spike_time(self, t, dt, j):
        k = jnp.minimum(self._before(t) + j, self.times.shape[1] - 1)
        return jnp.take_along_axis(self.times, k[:, None], axis=1)[:, 0]

    def fraction(self, t, dt):
        inside = (self.times > t) & (self.times <= t + dt)
        where = jnp.sum(jnp.where(inside, self.times - t, 0.0), axis=1) / dt
        n = jnp.sum(inside, axis=1)
        return jnp.where(n > 0, where / jnp.maximum(n, 1), 0.5)

    def release(self, t):
        start, stop = self._edges()
        inside = (t >= start) & (t < stop)
        # 1/(the pulse's width as rounded): the solver steps from edge to edge, so the
        # integral is exactly 1 in float32 too, where times of ~1 s carry errors ~1e-4 ms.
        return jnp.sum(jnp.where(inside, 1.0 / jnp.where(inside, stop - start, 1.0), 0.0), axis=1)

    def _edges(self):
        half = jnp.asarray(self.width / 2.0, self.times.dtype)
        return self.times - half, self.times + half

    def discontinuities(self):
        return jnp.ravel(jnp.stack(self._edges()))

    def spikes_between(self, t0, t1, max_spikes):
        """(times (size, max_spikes) NaN-padded, counts): the given spikes in (t0, t1]."""
        inside = (self.times > t0) & (self.times <= t1)
        counts = jnp.sum(inside, axis=1).astype(jnp.int32)
        order = jnp.argsort(~inside, axis=1, stable=True)  # the spikes inside first, in order
        kept = jnp.take_along_axis(jnp.where(inside, self.times, jnp.nan), order, axis=1)
        width = kept.shape[1]
        if width < max_spikes:
            kept = jnp.pad(kept, ((0, 0), (0, max_spikes - width)), constant_values=jnp.nan)
        return kept[:, :max_spikes], counts


class PoissonSource(AbstractSource):
    """`size` independent Poisson spike sources of rate `rate` (Hz), reproducible from `key`.

    **Arguments:**
    - `size`: number of sources.
    - `rate`: Hz; a number, an array of length `size`, or a function of t (ms) returning
      either (the rate over a step is taken at its midpoint).
    - `key`: a `jax.random` key (`jax.random.key(0)` or `jax.random.PRNGKey(0)`). Give
      different sources different keys (`jax.random.split`).

    Fixed steps only (see the module docs for adaptive runs): the count of each source in
    step (t, t + dt] is Poisson(rate·dt), drawn from `key` folded with the step's index on
    the absolute grid, round(t/dt): the same key gives the same spikes however the run is
    split into calls, and the counts of different steps are independent. The spikes of a
    step are delivered, and recorded in `NetworkTrace.spikes`, at its end t + dt. Counts
    are discrete, so no gradient flows to `rate`.

    Example:
        >>> ext = hh.PoissonSource(100, rate=8000.0, key=jax.random.key(1))
        >>> ramp = hh.PoissonSource(100, rate=lambda t: 10.0 + 0.1 * t, key=jax.random.key(2))
    """

    size: int = eqx.field(static=True)
    rate: Float[ArrayLike, "..."] | Callable
    key: Array

    def __init__(self, size, rate, key):
        owner = "hh.PoissonSource"
        self.size = check_count("size", size, owner)
        if not callable(rate):
            check_finite("rate", rate, owner)
            check_nonnegative("rate", rate, owner, "Hz")
            if np.shape(rate) not in ((), (size,)):
                raise ValueError(f"{owner}: `rate` must be a number, a function of t, or have length "
                                 f"size={size}, got shape {np.shape(rate)}.")
            rate = jnp.asarray(rate)
            if not jnp.issubdtype(rate.dtype, jnp.floating):
                rate = rate.astype(jnp.result_type(float))
        self.rate = rate
        self.key = _key_data(key, owner)

    def rate_at(self, t) -> Float[Array, " size"]:
        """The rate (Hz) of every source at t (ms)."""
        rate = self.rate(t) if callable(self.rate) else self.rate
        return jnp.broadcast_to(jnp.asarray(rate, jnp.result_type(t)), (self.size,))

    def counts(self, t, dt):
        mean = jax.lax.stop_gradient(self.rate_at(t + dt / 2.0) * dt / 1000.0)
        step = jnp.round(t / dt).astype(jnp.int32)
        return poisson_counts(jax.random.fold_in(jax.random.wrap_key_data(self.key), step), mean)

    def spike_time(self, t, dt, j):
        return jnp.full((self.size,), t + dt)

    def fraction(self, t, dt):
        return jnp.ones((self.size,), jnp.result_type(t))  # at the step's end

    def draw(self, t1, t0=0.0, dt=0.01) -> SpikeTimes:
        """The spike times of these sources in (t0, t1] as an `hh.SpikeTimes` (for adaptive
        runs): the counts of steps of `dt` ms, exactly as a fixed-step run with that `dt`
        draws them, each spike placed at its step's end."""
        n = int(round((t1 - t0) / dt))
        steps = t0 + dt * np.arange(n)
        counts = np.asarray(jax.vmap(lambda t: self.counts(t, dt))(jnp.asarray(steps)))  # (n, size)
        rows = [np.repeat(steps + dt, counts[:, i]) for i in range(self.size)]
        return SpikeTimes(rows)


def _key_data(key, owner):
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    key = jnp.asarray(key)
    if key.dtype != jnp.uint32 or key.shape != (2,):
        raise ValueError(f"{owner}: `key` must be a jax.random key (jax.random.key(0) or PRNGKey(0)), "
                         f"got {key.dtype} of shape {key.shape}.")
    return key


def poisson_counts(key, mean) -> Int[Array, " n"]:
    """Poisson(mean) counts, one per entry of `mean`, exactly: by inverse transform of one
    uniform (a few multiplications for the small means of a step); a mean above
    `_DIRECT_MAX` as the sum of Poisson counts of parts no larger than that."""

    def part(i, mean_part):
        u = jax.random.uniform(jax.random.fold_in(key, i), mean_part.shape, mean_part.dtype)
        p0 = jnp.exp(-mean_part)

        def more(s):
            n, cdf, p = s
            return jnp.any((u > cdf) & (p > 0) & (n < 100))

        def step(s):
            n, cdf, p = s
            go = (u > cdf) & (p > 0) & (n < 100)
            p = jnp.where(go, p * mean_part / (n + 1), p)
            return n + go, cdf + jnp.where(go, p, 0.0), p

        return jax.lax.while_loop(more, step, (jnp.zeros(mean.shape, jnp.int32), p0, p0))[0]

    def left(s):
        return jnp.any(s[2] > 0)

    def add(s):
        i, total, remaining = s
        now = jnp.minimum(remaining, _DIRECT_MAX)
        return i + 1, total + part(i, now), remaining - now

    return jax.lax.while_loop(left, add, (0, jnp.zeros(mean.shape, jnp.int32), mean))[1]
