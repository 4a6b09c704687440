"""Spike analysis on traces with known answers (built by hand, not by hh_jax)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hh_jax as hh

T = jnp.linspace(0.0, 100.0, 10001)  # 0.01 ms
KNOWN = np.array([10.0, 25.3, 47.77, 80.05])


def synthetic(spike_times, t=T):
    """Smooth spikes: Gaussians (peak +40 from -65 mV, sd 0.3 ms) whose rising 0 mV crossing
    is at a known time."""
    V = jnp.full_like(t, -65.0)
    sd = 0.3
    offset = sd * np.sqrt(2 * np.log(105.0 / 65.0))  # crossing of 0 mV before the peak
    for s in spike_times:
        V = V + 105.0 * jnp.exp(-0.5 * ((t - (s + offset)) / sd) ** 2)
    return V


def test_spike_times_sub_sample_precision():
    got = np.asarray(hh.spike_times(T, synthetic(KNOWN)))
    np.testing.assert_allclose(got, KNOWN, atol=1e-6)
    coarse = jnp.linspace(0.0, 100.0, 1001)  # 0.1 ms: still well under a sample
    np.testing.assert_allclose(np.asarray(hh.spike_times(coarse, synthetic(KNOWN, coarse))), KNOWN, atol=2e-3)


def test_counts_rates_isis_latency():
    V = jnp.stack([synthetic(KNOWN), synthetic(KNOWN[:1]), jnp.full_like(T, -65.0)])
    np.testing.assert_array_equal(np.asarray(hh.spike_count(T, V)), [4, 1, 0])
    np.testing.assert_array_equal(np.asarray(hh.spike_count(T, V, window=(20.0, 50.0))), [2, 0, 0])
    np.testing.assert_allclose(np.asarray(hh.firing_rate(T, V, window=(0.0, 50.0))), [60.0, 20.0, 0.0])
    isis = np.asarray(hh.interspike_intervals(T, V))
    assert isis.shape == (3, 3)
    np.testing.assert_allclose(isis[0], np.diff(KNOWN), atol=1e-6)
    assert np.all(np.isnan(isis[1:]))
    lat = np.asarray(hh.first_spike_latency(T, V, onset=20.0))
    np.testing.assert_allclose(lat[0], KNOWN[1] - 20.0, atol=1e-6)
    assert np.isnan(lat[1]) and np.isnan(lat[2])


def test_analysis_under_jit():
    V = jnp.stack([synthetic(KNOWN), synthetic(KNOWN[:2])])

    @jax.jit
    def summary(V):
        times, counts = hh.spike_times(T, V, max_spikes=6)
        return times, counts, hh.spike_count(T, V), hh.firing_rate(T, V, window=(0.0, 100.0))

    times, counts, counts2, rates = summary(V)
    np.testing.assert_array_equal(np.asarray(counts), [4, 2])
    np.testing.assert_array_equal(np.asarray(counts2), [4, 2])
    np.testing.assert_allclose(np.asarray(times[0, :4]), KNOWN, atol=1e-6)
    assert np.all(np.isnan(np.asarray(times[1, 2:])))
    np.testing.assert_allclose(np.asarray(rates), [40.0, 20.0])


def test_bad_analysis_input():
    with pytest.raises(ValueError, match="`t`"):
        hh.spike_times(T[:5], synthetic(KNOWN))
    with pytest.raises(ValueError, match="`window`"):
        hh.spike_count(T, synthetic(KNOWN), window=(5.0, 1.0))
    with pytest.raises(ValueError, match="max_spikes"):
        jax.jit(lambda v: hh.spike_times(T, v))(synthetic(KNOWN))


def test_a_failed_solve_is_not_a_spike():
    """After a failed solve the trace is inf; running into inf is not a threshold crossing."""
    t = np.linspace(0.0, 10.0, 101)
    V = np.where(t < 6.0, -65.0, np.inf)
    assert hh.spike_times(t, V, threshold=0.0).size == 0
    times, counts = hh.spike_times(t, np.stack([V, V]), threshold=0.0, max_spikes=2)
    assert np.all(np.asarray(counts) == 0)
    assert float(hh.spike_count(t, V, threshold=0.0)) == 0


def test_spike_times_batched_padding():
    V = jnp.array([[-70.0, 10.0, -70.0, 10.0, -70.0], [-70.0, -70.0, -70.0, 10.0, -70.0]])
    t = jnp.arange(5.0)
    times, counts = hh.spike_times(t, V)
    assert times.shape == (2, 2)
    np.testing.assert_array_equal(np.asarray(counts), [2, 1])
    assert np.isnan(float(times[1, 1]))
    assert 0.0 < float(times[0, 0]) < 1.0 and 2.0 < float(times[1, 0]) < 3.0
    times_jit, counts_jit = jax.jit(lambda v: hh.spike_times(t, v, max_spikes=3))(V)
    assert times_jit.shape == (2, 3)
    np.testing.assert_array_equal(np.asarray(counts_jit), [2, 1])


def test_spike_times_cubic_beats_linear_on_known_signal():
    # A smooth rising signal with a known crossing: sin on a coarse grid.
    t = jnp.linspace(0.0, 3.0, 31)  # 0.1 spacing
    V = jnp.sin(t - 1.234)
    got = float(hh.spike_times(t, V, threshold=0.0)[0])
    assert abs(got - 1.234) < 1e-5  # linear interpolation would be ~1e-4 off here


def test_first_true_indices_equal_numpy_nonzero():
    """The crossing index rule (running count and binary search) against numpy's nonzero:
    random masks, more and fewer True entries than asked for, none, and an empty mask."""
    from hh_jax._crossing import first_true

    rng = np.random.default_rng(0)
    masks = [rng.random(200) < p for p in (0.0, 0.01, 0.05, 0.5, 1.0)] + [np.zeros(0, bool)]
    for mask in masks:
        for k in (1, 4, 16):
            expected = np.full(k, -1)
            found = np.flatnonzero(mask)[:k]
            expected[: found.size] = found
            np.testing.assert_array_equal(np.asarray(first_true(jnp.asarray(mask), k, -1)), expected)
