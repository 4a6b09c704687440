"""Features against eFEL, the reference feature library: the exact ones (`hh.spike_features`)
on the five shared Allen recordings and on simulated traces, and the differentiable ones
(`hh.trace_features`, what `hh.FeatureLoss` compares) against the exact ones and against
finite differences.

eFEL runs with `Threshold` = hh's threshold (0 mV), `strict_stiminterval` on (spikes in the
stimulus only) and `interp_step` = the trace's sample interval (by default it resamples to
0.1 ms, which would move every peak). `python tests/test_features.py` prints the README's
table of worst differences.
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hh_jax as hh

efel = pytest.importorskip("efel")

DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
ALLEN = sorted(DATA.glob("allen_*.npz"))
needs_data = pytest.mark.skipif(not ALLEN, reason=f"the shared Allen recordings are not in {DATA}")

# hh's feature → eFEL's (a per-spike list where eFEL gives one; hh reports its mean).
EFEL = {
    "resting": "voltage_base",
    "spike_count": "spike_count",
    "isi": "all_ISI_values",
    "first_spike": "time_to_first_spike",
    "ap_peak": "peak_voltage",
    "ap_width": "AP_width",
    "ahp": "min_voltage_between_spikes",
    "adaptation": "adaptation_index2",
}
# How far hh's exact value may be from eFEL's: (absolute, in sample intervals dt). eFEL times
# a spike at its peak sample, hh at its threshold crossing: `first_spike` is earlier by the
# rise to the peak (≤ 0.3 ms here), and `isi` moves by how that rise varies (< dt). eFEL's
# AP_width counts whole samples, hh interpolates (< dt). The rest is the same arithmetic.
TOLERANCE = {
    "resting": (1e-3, 0.0),  # mV (eFEL's resampled clock may shift a window edge by a sample)
    "spike_count": (0.0, 0.0),
    "isi": (0.0, 1.0),  # ms
    "first_spike": (0.3, 0.0),  # ms
    "ap_peak": (1e-6, 0.0),  # mV
    "ap_width": (0.0, 1.0),  # ms
    "ahp": (1e-6, 0.0),  # mV
    "adaptation": (1e-3, 0.0),
}
# How far the differentiable value may be from the exact one: the soft count, and crossings
# located linearly instead of on a cubic. ap_peak, ap_width, ahp and resting are the same code.
SMOOTH_TOLERANCE = {"spike_count": 0.05, "first_spike": 2e-3, "isi": 1e-3, "adaptation": 1e-4}
SMOOTH_EXACT = 1e-9


def efel_features(t, V, start, stop, dt, threshold=0.0):
    efel.reset()
    efel.set_setting("Threshold", threshold)
    efel.set_setting("interp_step", dt)
    efel.set_setting("strict_stiminterval", True)
    trace = {"T": np.asarray(t, float), "V": np.asarray(V, float), "stim_start": [start], "stim_end": [stop]}
    values = efel.get_feature_values([trace], list(EFEL.values()), raise_warnings=False)[0]
    return {k: np.nan if values[name] is None else float(np.mean(values[name])) for k, name in EFEL.items()}


def differences(t, V, start, stop, target):
    """(hh − eFEL, differentiable − exact, dt) for every feature of one trace."""
    dt = float(np.median(np.diff(t)))
    exact = hh.spike_features(t, V, stim_start=start, stim_end=stop)
    reference = efel_features(t, V, start, stop, dt)
    smooth = hh.trace_features(jnp.asarray(target.ts), jnp.asarray(V), target, threshold=0.0)
    vs_efel = {k: exact[k] - reference[k] for k in EFEL}
    vs_exact = {k: float(smooth[k]) - exact[k] for k in EFEL}
    return vs_efel, vs_exact, dt, exact


def check(vs_efel, vs_exact, dt, exact):
    assert exact["spike_count"] >= 4, "every trace here must have the spikes that every feature needs"
    for k in EFEL:
        absolute, samples = TOLERANCE[k]
        assert abs(vs_efel[k]) <= absolute + samples * dt, (k, vs_efel[k])
        assert abs(vs_exact[k]) <= SMOOTH_TOLERANCE.get(k, SMOOTH_EXACT), (k, vs_exact[k])
    assert vs_efel["first_spike"] < 0.0  # the crossing comes before the peak


def allen(path):
    with np.load(path) as z:
        area, junction = float(z["soma_area_cm2"]), float(z["junction_potential_mV"])
        start, stop = float(z["stim_on_ms"]), float(z["stim_off_ms"])
    rec = hh.load_trace(path, columns={"t": "t_ms", "V": "v_mV", "I": "i_nA"}, time_unit="ms",
                        voltage_unit="mV", current_unit="nA", area_cm2=area, junction_mV=junction)
    return rec, start, stop


@needs_data
@pytest.mark.parametrize("path", ALLEN, ids=[p.stem for p in ALLEN])
def test_recordings_agree_with_efel(path):
    rec, start, stop = allen(path)
    target = rec.target()  # the recorded current as a step: its window is the stimulus
    check(*differences(rec.t, rec.V, start, stop, target))


SIMULATED = {  # model, step amplitudes (µA/cm²), step on and off (ms)
    "pospischil": (hh.presets.pospischil, (1.0, 2.0, 4.0), (100.0, 500.0)),
    "neuron": (hh.presets.neuron, (10.0, 20.0, 40.0), (20.0, 180.0)),
}
DT = 0.025  # ms


def simulate(name):
    make, amplitudes, (start, stop) = SIMULATED[name]
    ts = np.arange(0.0, stop + 100.0 + DT / 2, DT)
    tr = hh.simulate(make(), hh.Step(start=start, stop=stop, amplitude=jnp.asarray(amplitudes)),
                     t1=float(ts[-1]), ts=ts, max_steps=200_000)
    return ts, np.asarray(tr.V), amplitudes, (start, stop)


@pytest.fixture(scope="module", params=sorted(SIMULATED))
def simulated(request):
    return simulate(request.param)


@pytest.mark.solve
def test_simulated_traces_agree_with_efel(simulated):
    ts, V, amplitudes, (start, stop) = simulated
    for v, amplitude in zip(V, amplitudes):
        target = hh.Target(stimulus=hh.Step(start=start, stop=stop, amplitude=amplitude), ts=ts, V=v)
        check(*differences(ts, v, start, stop, target))


@pytest.mark.solve
def test_differentiable_features_match_finite_differences(simulated):
    ts, V, amplitudes, (start, stop) = simulated
    v = jnp.asarray(V[1])
    target = hh.Target(stimulus=hh.Step(start=start, stop=stop, amplitude=amplitudes[1]), ts=ts, V=V[1])
    # A smooth change of the trace that moves no spike across a sample: gradients are
    # then those of the interpolated crossings, maxima and minima, and means over windows.
    bump = jnp.asarray(np.sin(2 * np.pi * ts / 37.0) + 0.5)
    features = lambda e: hh.trace_features(jnp.asarray(ts), v + e * bump, target, threshold=0.0)  # noqa: E731
    _, tangent = jax.jvp(features, (0.0,), (1.0,))
    eps = 1e-5
    up, down = features(eps), features(-eps)
    for k in ("resting", "spike_count", "isi", "first_spike", "ap_peak", "ap_width", "ahp", "adaptation"):
        fd = (float(up[k]) - float(down[k])) / (2 * eps)
        assert float(tangent[k]) == pytest.approx(fd, rel=1e-4, abs=1e-8), k
    loss = hh.FeatureLoss(features=tuple(EFEL), threshold=0.0)
    grad = jax.grad(lambda x: loss(jnp.asarray(ts), x, target))(jnp.asarray(V[2]))
    assert np.all(np.isfinite(np.asarray(grad))) and float(jnp.max(jnp.abs(grad))) > 0.0


def test_exact_features_use_the_analysis_functions_spike_times():
    t = np.arange(0.0, 200.0, 0.05)
    # Three smooth 30 mV "spikes" during a 50–150 ms stimulus on a −70 mV rest.
    V = -70.0 + 100.0 * sum(np.exp(-(((t - c) / 0.4) ** 2)) for c in (60.0, 80.0, 110.0))
    f = hh.spike_features(t, V, stim_start=50.0, stim_end=150.0)
    assert f["spike_count"] == 3
    assert f["first_spike"] == float(hh.first_spike_latency(t, V, onset=50.0))
    assert f["isi"] == pytest.approx(float(jnp.nanmean(hh.interspike_intervals(t, V))), rel=1e-12)
    assert f["ap_peak"] == pytest.approx(V.max(), abs=1e-3) and f["ahp"] == pytest.approx(-70.0, abs=1e-9)
    # A Gaussian crosses 0 mV (70 of 100 mV up) at ±0.4·sqrt(ln(100/70)) ms from its centre.
    assert f["ap_width"] == pytest.approx(0.8 * np.sqrt(np.log(100 / 70)), abs=1e-3)
    assert f["resting"] == pytest.approx(-70.0) and np.isnan(f["adaptation"])  # needs 4 spikes
    quiet = hh.spike_features(t, np.full_like(t, -70.0), stim_start=50.0, stim_end=150.0)
    assert quiet["spike_count"] == 0 and all(np.isnan(quiet[k]) for k in ("isi", "first_spike", "ap_peak", "ahp"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(stim_start=100.0, stim_end=50.0), "stim_end"),
        (dict(stim_start=np.nan, stim_end=50.0), "stim_start"),
        (dict(stim_start=10.0, stim_end=50.0, threshold=np.nan), "threshold"),
    ],
)
def test_spike_features_refuses_bad_input(kwargs, match):
    t = np.arange(0.0, 100.0, 0.1)
    with pytest.raises(ValueError, match=match):
        hh.spike_features(t, np.zeros_like(t), **kwargs)
    with pytest.raises(ValueError, match="one trace"):
        hh.spike_features(t, np.zeros((2, t.size)), stim_start=10.0, stim_end=50.0)


def _table():
    """The README's table: worst |difference| over every recording and simulated trace."""
    rows = []
    for path in ALLEN:
        rec, start, stop = allen(path)
        rows.append(differences(rec.t, rec.V, start, stop, rec.target()))
    for name in SIMULATED:
        ts, V, amplitudes, (start, stop) = simulate(name)
        for v, a in zip(V, amplitudes):
            rows.append(differences(ts, v, start, stop, hh.Target(stimulus=hh.Step(start=start, stop=stop, amplitude=a), ts=ts, V=v)))
    print("| feature | eFEL feature | tolerance vs eFEL | worst vs eFEL | tolerance, differentiable | worst, differentiable |")
    for k, name in EFEL.items():
        worst = max(abs(r[0][k]) for r in rows)
        smooth = max(abs(r[1][k]) for r in rows)
        print(f"| {k} | {name} | {TOLERANCE[k]} | {worst:.2g} | {SMOOTH_TOLERANCE.get(k, SMOOTH_EXACT)} | {smooth:.2g} |")


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", True)
    _table()
