"""Features of a recording for `hh.fit_recording`: what is fitted, in which units, how far
off is acceptable, and how noisy each recorded value is.

Every feature has the definition of `hh.spike_features` (checked against eFEL). A fit's
residual for feature f is (f_model − f_recorded) / tolerance_f: a residual of 1 is the edge
of acceptance. The noise σ_f of a recorded feature (the standard error of its value, from
the spike-to-spike variability within the recording) sets the standard errors of the
fitted parameters.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._analysis import spike_times
from .._simulate import simulate
from .._continuous import local_solution
from .._features import FEATURES, base_window, safe_mean, spikes_in_window, spike_timing, spike_features

# Tolerances (absolute, in each feature's unit; `isi` relative to the recording): the
# acceptance of a fit for count, ISI, latency, rest and AP peak; for the spike shape and
# adaptation, loose scales that guide the fit without pulling it off the first five (a
# Pospischil cell cannot match every recorded spike shape).
TOLERANCES = {"spike_count": 2.0, "isi": 0.15, "first_spike": 10.0, "resting": 2.0, "ap_peak": 10.0,
              "ap_width": 1.0, "ahp": 10.0, "adaptation": 0.2}
RELATIVE = ("isi",)
DEFAULT_FEATURES = ("spike_count", "isi", "first_spike", "resting", "ap_peak", "ap_width", "ahp", "adaptation")
# The features with a derivative: the refinement's residuals. The count is an integer and the
# resting potential is exact by construction (the leak reversal is solved for it).
SMOOTH = ("isi", "first_spike", "ap_peak", "ap_width", "ahp", "adaptation")
ALIASES = {"count": "spike_count", "latency": "first_spike", "rest": "resting", "peak": "ap_peak",
           "width": "ap_width", "ahp_depth": "ahp", "adaptation_index": "adaptation"}
PENALTY = 10.0  # residual of a feature the model lacks (too few spikes), in tolerances
NEEDS = {"isi": 2, "first_spike": 1, "ap_peak": 1, "ap_width": 1, "ahp": 2, "adaptation": 4}  # spikes


def feature_names(features, owner) -> tuple[str, ...]:
    """Feature keys from names or aliases ("count", "latency", "rest"), checked."""
    if isinstance(features, str):
        features = tuple(f for f in features.split(",") if f.strip())
    out = []
    for f in features:
        key = ALIASES.get(str(f).strip(), str(f).strip())
        if key not in FEATURES:
            raise ValueError(f"{owner}: unknown feature {f!r} in `features`; expected any of "
                             f"{list(FEATURES)} (or {sorted(ALIASES)}).")
        if key not in out:
            out.append(key)
    if not out:
        raise ValueError(f"{owner}: `features` must name at least one feature.")
    return tuple(out)


ACCEPTANCE = ("spike_count", "isi", "first_spike", "resting", "ap_peak")


def scales(recorded: dict) -> dict:
    """The objective's unit of each feature: half the tolerance for the five acceptance
    features (so a fit aims inside them, not at their edge), the tolerance for the others."""
    tol = tolerances(recorded)
    return {k: tol[k] * (0.5 if k in ACCEPTANCE else 1.0) for k in tol}


def tolerances(recorded: dict) -> dict:
    """Each feature's acceptance tolerance in its own unit (ISI: 15 % of the recorded ISI)."""
    return {k: TOLERANCES[k] * (abs(recorded[k]) if k in RELATIVE else 1.0) for k in TOLERANCES}


def within(recorded, fitted, tol) -> dict:
    """Per feature: fitted within tolerance of recorded (False where either is NaN)."""
    return {k: bool(np.isfinite(fitted[k]) and np.isfinite(recorded[k]) and abs(fitted[k] - recorded[k]) <= tol[k] + 1e-12)
            for k in recorded}


def measure(t, V, onset, offset, threshold) -> dict:
    """The recording's features (`hh.spike_features`) and the noise σ of each, from the
    variability between its spikes: spike-time jitter σ_t from the second differences of the
    spike times (independent jitter gives them variance 6σ_t²), so σ(first_spike) = σ_t and
    σ(isi) = √2 σ_t/(n − 1); the per-spike peaks, widths and troughs give standard errors of
    their means; σ(adaptation) the standard error of its terms' mean."""
    t, V = np.asarray(t, float), np.asarray(V, float)
    feats = spike_features(t, V, stim_start=onset, stim_end=offset, threshold=threshold)
    s = np.asarray(spike_times(t, V, threshold=threshold))
    s = s[(s >= onset) & (s <= offset)]
    n = s.size
    noise = {k: np.nan for k in FEATURES}
    if n >= 3:
        jitter = float(np.sqrt(np.mean(np.diff(s, 2) ** 2) / 6.0))
        noise["first_spike"] = jitter
        noise["isi"] = np.sqrt(2.0) * jitter / (n - 1)
    peaks, widths, troughs = [], [], []
    for k, a in enumerate(s):
        after = t >= a
        below = np.flatnonzero(after & (V < threshold))
        end = t[below[0]] if below.size else t[-1]
        seg = (t >= a) & (t <= end)
        peaks.append(V[seg].max() if seg.any() else np.nan)
        widths.append(end - a)
        if k + 1 < n:
            troughs.append(V[(t >= a) & (t <= s[k + 1])].min())
    sem = lambda x: float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) >= 2 else np.nan  # noqa: E731
    noise["ap_peak"], noise["ap_width"], noise["ahp"] = sem(peaks), sem(widths), sem(troughs)
    if n >= 4:
        isi = np.diff(s)
        terms = (isi[2:] - isi[1:-1]) / (isi[2:] + isi[1:-1])
        noise["adaptation"] = sem(terms)
    base = (t >= 0.9 * onset) & (t <= onset)
    noise["resting"] = float(np.std(V[base])) if base.sum() > 1 else np.nan
    noise["spike_count"] = np.nan
    return feats, noise


def model_features(ts, V, onset, offset, threshold, between=None):
    """The features of one simulated trace `V` at `ts` as a dict of scalars (differentiable in
    V, NaN where there are too few spikes; also `count_between`): from the samples, or with every crossing, peak and
    trough located `between` them (a `_continuous.LocalSolution`), so that they and their
    derivatives move with the spikes, not with the sampling phase."""
    valid = jnp.isfinite(V) if between is None else jnp.isfinite(V) & jnp.isfinite(between.dVdt)
    spikes = spikes_in_window(ts, V, threshold, onset, offset, valid, between)
    timing = spike_timing(spikes["times"], spikes["count"], onset)
    base = base_window(ts, onset, valid)
    return {
        "spike_count": spikes["count"].astype(V.dtype),
        "count_between": count_between(spikes["times"], spikes["count"], offset).astype(V.dtype),
        "resting": safe_mean(jnp.sum(jnp.where(base, V, 0.0)), jnp.sum(base)),
        **timing,
        "ap_peak": spikes["ap_peak"],
        "ap_width": spikes["ap_width"],
        "ahp": spikes["ahp"],
        "solved": jnp.all(valid),
    }


def count_between(times, count, offset):
    """The spike count continued between spikes: count − ½ + (offset − last spike)/(last
    ISI), within ½ of the count for a regular train, and continuous (with a derivative in the
    spike times) as a spike enters or leaves the window at `offset`; the count itself below
    two spikes."""
    last = times[jnp.maximum(count - 1, 0)]
    isi = last - times[jnp.maximum(count - 2, 0)]
    return jnp.where(count >= 2, count - 0.5 + (offset - last) / jnp.where(count >= 2, isi, 1.0), count)


def simulated_features(membrane, stimulus, ts, v_rest, onset, offset, threshold, events=None, **solver):
    """Simulate `membrane` (a neuron or a batch: one solve) from `v_rest` at the samples `ts`
    and measure `model_features` per neuron: from the samples of V, or, given `events` (the
    most spikes whose events are refined per trace), on the solution between samples
    (every state saved; `_continuous.LocalSolution`). Returns (features `(*batch,)` each,
    the trace)."""
    tr = simulate(membrane, stimulus, t1=ts[-1], ts=ts, v0=v_rest, save="V" if events is None else "all", **solver)
    return _measured(membrane, stimulus, ts, tr.V, tr.gates, onset, offset, threshold, events), tr


@eqx.filter_jit
def _measured(membrane, stimulus, ts, V, gates, onset, offset, threshold, events):
    """`model_features` of each trace of `simulated_features` (one compiled program)."""
    if events is None:
        one = lambda m, V: model_features(ts, V, onset, offset, threshold)  # noqa: E731
        data = V
    else:
        def one(m, y):
            return model_features(ts, y[0], onset, offset, threshold, local_solution(m, stimulus, ts, y, events))

        data = jnp.stack([V] + [gates[name] for name in membrane.state_names[1:]], axis=-2)  # (*batch, states, time)
    if V.ndim == 1:
        return one(membrane, data)
    axes = jax.tree_util.tree_map(lambda x: 0 if eqx.is_array(x) and x.ndim >= 1 else None, membrane)
    return jax.vmap(one, in_axes=(axes, 0))(membrane, data)


def scaled(values: dict, recorded: dict, tol: dict, keys) -> np.ndarray:
    """(f − recorded)/scale per feature (`tol`: {feature: scale}) `(..., len(keys))`; a feature the model lacks
    (NaN) counts as `PENALTY` tolerances off."""
    cols = []
    for k in keys:
        r = (np.asarray(values[k], float) - recorded[k]) / tol[k]
        cols.append(np.where(np.isfinite(r), r, PENALTY))
    return np.stack(cols, axis=-1)
