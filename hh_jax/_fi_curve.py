"""Excitability: f–I curves and rheobase from batched step-current simulations."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ._analysis import first_spike_latency, spike_count
from ._membrane import AbstractMembrane
from ._simulate import simulate
from ._stimulus import Step
from ._validation import check_count, check_finite

_SAVE_DT = 0.05  # ms: resolves every HH spike (≥ 1 ms wide); times are refined sub-sample


class FICurve(eqx.Module):
    """Firing rate against step amplitude.

    **Fields:** `amplitude` (µA/cm²), `rate` (Hz: spikes during the step / its duration),
    `count` (spikes during the step), `latency` (ms from step onset to the first spike; NaN
    where none), all of shape `(amplitudes,)` (or `(*batch, amplitudes)` for a batch of
    membranes).

    Example:
        >>> fi = hh.fi_curve(hh.presets.hh1952(), jnp.linspace(0.0, 30.0, 31))
        >>> fi.rate   # Hz
    """

    amplitude: Float[Array, " amplitudes"]
    rate: Float[Array, "*batch amplitudes"]
    count: Int[Array, "*batch amplitudes"]
    latency: Float[Array, "*batch amplitudes"]


def _step_protocol(owner, start, stop, t1):
    check_finite("start", start, owner)
    check_finite("stop", stop, owner)
    if not stop > start:
        raise ValueError(f"{owner}: `stop` must be after `start` (ms), got start={start}, stop={stop}.")
    t1 = stop if t1 is None else t1
    if t1 < stop:
        raise ValueError(f"{owner}: `t1` must be >= stop ({stop} ms), got {t1}.")
    return t1


def _simulate_steps(membrane, amplitudes, start, stop, t1, v0, solver_options):
    """V for one step per amplitude (last batch axis), in one compiled, batched solve."""
    n = int(round((t1 - 0.0) / _SAVE_DT)) + 1
    ts = jnp.linspace(0.0, t1, n)
    if membrane.batch_shape:  # a batch of membranes: amplitudes become the last axis
        membrane = jax.tree_util.tree_map(
            lambda x: jnp.asarray(x)[..., None] if jnp.ndim(x) > 0 else x, membrane
        )
    stimulus = Step(start=start, stop=stop, amplitude=amplitudes)
    options = {"max_steps": 262144, **solver_options}  # long steps: room for many spikes
    trace = simulate(membrane, stimulus, t1=t1, ts=ts, v0=v0, save="V", **options)
    return trace.t, trace.V


def fi_curve(
    membrane: AbstractMembrane,
    amplitudes: Float[Array, " amplitudes"],
    *,
    start: float = 1.0,
    stop: float = 501.0,
    t1: float | None = None,
    threshold: float | None = None,
    v0=None,
    **solver_options,
) -> FICurve:
    """The f–I curve: firing rate for a current step of each amplitude, all in one batched call.

    **Arguments:**
    - `membrane`: a single neuron's parameters (e.g. `hh.presets.hh1952()`).
    - `amplitudes`: step amplitudes (µA/cm²), 1-D.
    - `start`, `stop`: the step's onset and offset (ms); default 1–501 ms.
    - `t1`: end of the simulation (ms), default `stop`.
    - `threshold`: spike detection level (mV); default the membrane's
      `spike_threshold()` (0 mV in NEURON's convention, i.e. 65 mV for the hh1952 preset).
    - `v0`: initial potential (mV), default the resting potential.
    - `**solver_options`: passed to `hh.simulate` (`rtol`, `atol`, `max_steps`, ...).

    **Returns:** an `hh.FICurve` with the rate (Hz), spike count and first-spike latency per
    amplitude.

    Example:
        >>> fi = hh.fi_curve(hh.presets.hh1952(), jnp.linspace(0.0, 30.0, 16))
        >>> fi.rate
    """
    owner = "hh.fi_curve"
    amplitudes = jnp.asarray(amplitudes)
    if amplitudes.ndim != 1 or amplitudes.shape[0] == 0:
        raise ValueError(f"{owner}: `amplitudes` must be a non-empty 1-D array (µA/cm²), got shape {amplitudes.shape}.")
    check_finite("amplitudes", amplitudes, owner)
    t1 = _step_protocol(owner, start, stop, t1)
    threshold = membrane.spike_threshold() if threshold is None else threshold
    t, V = _simulate_steps(membrane, amplitudes, start, stop, t1, v0, solver_options)
    count = spike_count(t, V, threshold, window=(start, stop))
    latency = first_spike_latency(t, V, start, threshold)
    return FICurve(
        amplitude=amplitudes,
        rate=count * 1000.0 / (stop - start),
        count=count,
        latency=latency,
    )


def rheobase(
    membrane: AbstractMembrane,
    *,
    start: float = 1.0,
    stop: float = 501.0,
    t1: float | None = None,
    threshold: float | None = None,
    low: float = 0.0,
    high: float = 50.0,
    tol: float = 0.01,
    per_round: int = 15,
    v0=None,
    **solver_options,
) -> float:
    """Rheobase: the smallest step amplitude (µA/cm²) that makes the neuron fire.

    A batched bisection: each round simulates `per_round` amplitudes spread evenly inside the
    current bracket in one compiled call, and keeps the interval where firing starts, until
    the bracket is narrower than `tol`. With the defaults (0–50 µA/cm², 15 per round,
    0.01 µA/cm²) that is 4 rounds.

    **Arguments:**
    - `membrane`: a single neuron's parameters.
    - `start`, `stop`, `t1`, `threshold`, `v0`, `**solver_options`: as in `hh.fi_curve`.
    - `low`, `high`: initial bracket (µA/cm²); `low` must not fire, `high` must.
    - `tol`: width of the final bracket (µA/cm²).
    - `per_round`: amplitudes simulated per round.

    **Returns:** the upper end of the final bracket: an amplitude that fires, at most `tol`
    above the largest amplitude seen not to fire.

    Example:
        >>> hh.rheobase(hh.presets.hh1952())
    """
    owner = "hh.rheobase"
    t1 = _step_protocol(owner, start, stop, t1)
    if not (np.isfinite(low) and np.isfinite(high) and high > low):
        raise ValueError(f"{owner}: need finite `low` < `high` (µA/cm²), got low={low}, high={high}.")
    if not tol > 0:
        raise ValueError(f"{owner}: `tol` must be > 0 µA/cm², got {tol}.")
    per_round = check_count("per_round", per_round, owner)
    threshold = membrane.spike_threshold() if threshold is None else threshold

    def fires(amplitudes):
        t, V = _simulate_steps(membrane, jnp.asarray(amplitudes), start, stop, t1, v0, solver_options)
        return np.asarray(spike_count(t, V, threshold, window=(start, t1))) > 0

    ends = fires(np.array([low, high]))
    if ends[0]:
        raise ValueError(f"{owner}: the neuron already fires at `low` = {low} µA/cm²; lower it.")
    if not ends[1]:
        raise ValueError(f"{owner}: the neuron does not fire at `high` = {high} µA/cm²; raise it.")
    while high - low > tol:
        amplitudes = np.linspace(low, high, per_round + 2)[1:-1]
        fired = fires(amplitudes)
        k = int(np.argmax(fired)) if fired.any() else per_round
        high = float(amplitudes[k]) if k < per_round else high
        low = float(amplitudes[k - 1]) if k > 0 else low
    return high
