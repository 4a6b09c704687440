"""The gist's protocol against an independent scipy integration of the gist's own equations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hh_jax as hh
from references import gist_rhs, gist_steady_state, integrate_piecewise

T1 = 50.0
TS = np.linspace(0.0, T1, 5001)  # every 0.01 ms
PIECES = [(0.0, 1.0, 150.0), (1.0, 10.0, 0.0), (10.0, 11.0, 50.0), (11.0, T1, 0.0)]
THRESHOLD = 50.0  # mV in the rest-at-0 convention (about -15 mV in NEURON's)


def gist_stimulus():
    return hh.Pulse(start=0.0, stop=1.0, amplitude=150.0) + hh.Pulse(start=10.0, stop=11.0, amplitude=50.0)


@pytest.fixture(scope="module")
def scipy_reference():
    y0 = [0.0, *gist_steady_state(0.0)]
    V, spikes = integrate_piecewise(gist_rhs, y0, PIECES, TS, threshold=THRESHOLD, method="Radau", tol=1e-11)
    assert len(spikes) == 2  # the gist's two spikes
    return V, spikes


def test_reference_methods_agree(scipy_reference):
    # The reference is itself converged: an unrelated scipy method (LSODA vs Radau) agrees
    # far below the tolerances asserted against hh_jax.
    y0 = [0.0, *gist_steady_state(0.0)]
    V, spikes = integrate_piecewise(gist_rhs, y0, PIECES, TS, threshold=THRESHOLD, method="LSODA", tol=1e-11)
    assert np.max(np.abs(V - scipy_reference[0])) < 1e-5
    assert np.max(np.abs(spikes - scipy_reference[1])) < 1e-7


def test_gist_float64_matches_scipy(scipy_reference):
    V_ref, spikes_ref = scipy_reference
    tr = hh.simulate(hh.presets.hh1952(), gist_stimulus(), t1=T1, ts=jnp.asarray(TS))
    assert tr.V.dtype == jnp.float64
    assert bool(tr.success)
    assert np.max(np.abs(np.asarray(tr.V) - V_ref)) < 0.01  # mV
    spikes = np.asarray(hh.spike_times(tr.t, tr.V, threshold=THRESHOLD))
    assert spikes.shape == spikes_ref.shape
    assert np.max(np.abs(spikes - spikes_ref)) < 0.001  # ms
    # The gates are saved too, and are the gist's steady state at t = 0.
    np.testing.assert_allclose([tr.n[0], tr.m[0], tr.h[0]], gist_steady_state(0.0), rtol=1e-12)


def test_gist_float32_spike_times(scipy_reference):
    _, spikes_ref = scipy_reference
    with jax.enable_x64(False):
        tr = hh.simulate(hh.presets.hh1952(), gist_stimulus(), t1=T1, ts=jnp.linspace(0.0, T1, 5001))
        assert tr.V.dtype == jnp.float32
        spikes = np.asarray(hh.spike_times(tr.t, tr.V, threshold=THRESHOLD))
    assert bool(tr.success)
    assert spikes.shape == spikes_ref.shape
    assert np.max(np.abs(spikes - spikes_ref)) < 0.05  # ms


def test_long_step_repetitive_firing_matches_scipy():
    # A sustained step (what the gist's readers asked for): many spikes, all in place.
    ts = np.linspace(0.0, 100.0, 10001)
    pieces = [(0.0, 5.0, 0.0), (5.0, 100.0, 10.0)]
    y0 = [0.0, *gist_steady_state(0.0)]
    V_ref, spikes_ref = integrate_piecewise(gist_rhs, y0, pieces, ts, threshold=THRESHOLD)
    tr = hh.simulate(hh.presets.hh1952(), hh.Step(start=5.0, amplitude=10.0), t1=100.0, ts=jnp.asarray(ts))
    spikes = np.asarray(hh.spike_times(tr.t, tr.V, threshold=THRESHOLD))
    assert len(spikes_ref) >= 5
    assert spikes.shape == spikes_ref.shape
    assert np.max(np.abs(spikes - spikes_ref)) < 0.001
    assert np.max(np.abs(np.asarray(tr.V) - V_ref)) < 0.01
