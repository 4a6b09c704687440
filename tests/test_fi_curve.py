"""f–I curve and rheobase of the seed model against an independent scipy integration."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest

import hh_jax as hh
from references import gist_rhs, gist_steady_state, integrate_piecewise

START, STOP = 1.0, 501.0
THRESHOLD = 65.0  # mV, seed convention (0 mV in NEURON's)
AMPLITUDES = np.arange(0.0, 31.0, 2.0)  # µA/cm²


@functools.lru_cache(maxsize=None)  # the curve and the latency test share the reference solves
def scipy_spikes(amplitude):
    """Spike times under a 1–501 ms step, from the gist's equations (LSODA, rtol=atol=1e-9)."""
    y0 = [0.0, *gist_steady_state(0.0)]
    pieces = [(0.0, START, 0.0), (START, STOP, float(amplitude))]
    _, spikes = integrate_piecewise(gist_rhs, y0, pieces, np.array([0.0]), threshold=THRESHOLD, method="LSODA", tol=1e-9)
    return spikes


@pytest.fixture(scope="module")
def fi():
    return hh.fi_curve(hh.presets.hh1952(), jnp.asarray(AMPLITUDES), start=START, stop=STOP)


def test_fi_curve_matches_scipy(fi):
    ref_counts = np.array([len(scipy_spikes(a)) for a in AMPLITUDES])
    ref_rates = ref_counts * 1000.0 / (STOP - START)
    assert fi.rate.shape == AMPLITUDES.shape
    np.testing.assert_allclose(np.asarray(fi.rate), ref_rates, atol=1.0)  # Hz
    # The curve has the shape of the HH model: silent, onset spikes, then repetitive firing
    # whose rate grows with current.
    assert ref_counts[0] == 0 and ref_rates[-1] > 90.0
    assert np.all(np.diff(np.asarray(fi.rate)[ref_counts > 2]) >= 0)


def test_fi_latency_matches_scipy(fi):
    for k in (3, 6, 15):
        ref = scipy_spikes(AMPLITUDES[k])[0] - START
        assert float(fi.latency[k]) == pytest.approx(ref, abs=0.01)
    assert np.isnan(float(fi.latency[0]))


def test_rheobase_matches_scipy_bisection():
    got = hh.rheobase(hh.presets.hh1952(), start=START, stop=STOP)
    # Independent bisection on scipy solves to 0.005 µA/cm².
    low, high = 0.0, 10.0
    assert len(scipy_spikes(low)) == 0 and len(scipy_spikes(high)) > 0
    while high - low > 0.005:
        mid = 0.5 * (low + high)
        if len(scipy_spikes(mid)) > 0:
            high = mid
        else:
            low = mid
    assert got == pytest.approx(0.5 * (low + high), abs=0.05)
    # hh_jax's own claim: `got` fires and `got - 0.01` does not.
    counts = hh.fi_curve(hh.presets.hh1952(), jnp.array([got - 0.011, got]), start=START, stop=STOP).count
    np.testing.assert_array_equal(np.asarray(counts > 0), [False, True])


def test_fi_curve_batch_of_membranes():
    fi = hh.fi_curve(hh.presets.hh1952(gNa=jnp.array([100.0, 120.0])), jnp.array([0.0, 20.0]), start=1.0, stop=101.0)
    assert fi.rate.shape == (2, 2)
    assert np.all(np.asarray(fi.rate[:, 0]) == 0) and np.all(np.asarray(fi.rate[:, 1]) > 50)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: hh.fi_curve(hh.presets.hh1952(), jnp.array([[1.0]])), "amplitudes"),
        (lambda: hh.fi_curve(hh.presets.hh1952(), jnp.array([1.0, np.nan])), "amplitudes"),
        (lambda: hh.fi_curve(hh.presets.hh1952(), jnp.array([1.0]), start=5.0, stop=2.0), "stop"),
        (lambda: hh.rheobase(hh.presets.hh1952(), low=5.0, high=1.0), "low"),
        (lambda: hh.rheobase(hh.presets.hh1952(), tol=0.0), "tol"),
        (lambda: hh.rheobase(hh.presets.hh1952(), stop=20.0, high=1.0), "high"),
    ],
)
def test_bad_input(call, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        call()
