"""jit, vmap, batches, dtypes, stimuli; the library leaves global JAX config alone."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hh_jax as hh

TS = jnp.linspace(0.0, 30.0, 3001)
STEP = hh.Step(start=2.0, stop=25.0, amplitude=10.0)


def spikes(tr, threshold=0.0):
    return np.asarray(hh.spike_times(tr.t, tr.V, threshold=threshold))


def test_batch_matches_single_runs():
    gNa = jnp.array([90.0, 120.0, 150.0])
    batch = hh.simulate(hh.presets.neuron(gNa=gNa), STEP, t1=30.0, ts=TS)
    assert batch.V.shape == (3, 3001) and batch.n.shape == (3, 3001)
    for k in range(3):
        single = hh.simulate(hh.presets.neuron(gNa=gNa[k]), STEP, t1=30.0, ts=TS)
        # Shared steps change the discretisation, not the solution: agreement at tolerance level.
        assert np.max(np.abs(np.asarray(batch.V[k] - single.V))) < 0.01
        np.testing.assert_allclose(hh.spike_times(batch.t, batch.V[k]), spikes(single), atol=1e-3)


def test_user_vmap_and_jit_agree_with_builtin_batch():
    gK = jnp.array([30.0, 36.0, 42.0, 48.0])

    @jax.jit
    def run(g):
        return hh.simulate(hh.presets.neuron(gK=g), STEP, t1=30.0, ts=TS, save="V").V

    vmapped = jax.vmap(run)(gK)
    builtin = hh.simulate(hh.presets.neuron(gK=gK), STEP, t1=30.0, ts=TS, save="V").V
    assert vmapped.shape == builtin.shape == (4, 3001)
    assert np.max(np.abs(np.asarray(vmapped - builtin))) < 0.01


def test_broadcast_of_parameters_stimulus_and_v0():
    p = hh.presets.neuron(gNa=jnp.array([100.0, 120.0])[:, None])  # (2, 1)
    s = hh.Step(start=2.0, amplitude=jnp.array([0.0, 5.0, 10.0]))  # (3,)
    tr = hh.simulate(p, s, t1=10.0, ts=jnp.linspace(0, 10, 11), v0=-65.0)
    assert tr.V.shape == (2, 3, 11)
    tr = hh.simulate(hh.presets.neuron(), None, t1=10.0, ts=jnp.linspace(0, 10, 11), v0=jnp.array([-70.0, -65.0]))
    assert tr.V.shape == (2, 11)
    np.testing.assert_allclose(np.asarray(tr.V[:, 0]), [-70.0, -65.0])
    # API contract shape: 1000 neurons × 10001 saves.
    pb = hh.presets.hh1952(gNa=jnp.linspace(80.0, 160.0, 1000))
    tr = hh.simulate(pb, hh.Pulse(start=0.0, stop=1.0, amplitude=150.0), t1=50.0, ts=jnp.linspace(0, 50, 10001), save="V")
    assert tr.V.shape == (1000, 10001)


def test_float32_runs_in_float32():
    with jax.enable_x64(False):
        tr = hh.simulate(hh.presets.neuron(), STEP, t1=30.0, ts=jnp.linspace(0.0, 30.0, 3001))
        assert tr.V.dtype == jnp.float32 and tr.t.dtype == jnp.float32
        got = np.asarray(hh.spike_times(tr.t, tr.V))
    ref = spikes(hh.simulate(hh.presets.neuron(), STEP, t1=30.0, ts=TS))
    assert got.shape == ref.shape
    assert np.max(np.abs(got - ref)) < 0.05


def test_rest_is_a_fixed_point():
    # With no input, the seed model stays at 0 mV (EL chosen for that) and NEURON's near -65.
    tr = hh.simulate(hh.presets.hh1952(), None, t1=50.0, ts=jnp.linspace(0, 50, 51))
    assert np.max(np.abs(np.asarray(tr.V))) < 0.01
    tr = hh.simulate(hh.presets.neuron(), None, t1=50.0, ts=jnp.linspace(0, 50, 51))
    assert np.max(np.abs(np.asarray(tr.V) + 65.0)) < 0.1


def test_conventions_differ_only_by_shift():
    # The seed model equals NEURON's `hh` with every potential shifted by 65 mV.
    shifted = hh.presets.neuron(ENa=115.0 - 65.0, EK=-12.0 - 65.0, EL=10.613 - 65.0)
    tight = dict(rtol=1e-10, atol=1e-10)
    a = hh.simulate(hh.presets.hh1952(), STEP, t1=30.0, ts=TS, **tight)
    b = hh.simulate(shifted, STEP, t1=30.0, ts=TS, **tight)
    assert np.max(np.abs(np.asarray(a.V - 65.0 - b.V))) < 1e-5


def test_temperature_speeds_up_gates():
    base = hh.simulate(hh.presets.neuron(), STEP, t1=30.0, ts=TS)
    warm = hh.simulate(hh.presets.neuron(celsius=20.0), STEP, t1=30.0, ts=TS)
    assert len(spikes(warm)) > len(spikes(base))


def test_stimulus_values_and_sum():
    s = hh.Pulse(start=0.0, stop=1.0, amplitude=150.0) + hh.Pulse(start=10.0, stop=11.0, amplitude=50.0)
    ts = jnp.array([-0.5, 0.0, 0.5, 1.0, 5.0, 10.0, 10.99, 11.0])
    np.testing.assert_allclose(np.asarray(jax.vmap(s)(ts)), [0, 150, 150, 0, 0, 50, 50, 0])
    assert sorted(np.asarray(s.discontinuities()).tolist()) == [0.0, 1.0, 10.0, 11.0]
    assert isinstance(s + hh.Step(start=3.0, amplitude=1.0), hh.Sum)
    assert len((s + hh.Step(start=3.0, amplitude=1.0)).terms) == 3
    total = sum([hh.Step(start=0.0, amplitude=1.0), hh.Step(start=1.0, amplitude=2.0)])
    assert float(total(2.0)) == 3.0
    assert float(hh.Step(start=1.0, amplitude=9.0)(1e6)) == 9.0  # sustained by default


def test_gradient_with_respect_to_stimulus_amplitude():
    def peak(a):
        return jnp.max(hh.simulate(hh.presets.neuron(), hh.Pulse(start=1.0, stop=2.0, amplitude=a), t1=3.0, ts=jnp.linspace(0, 3, 31), rtol=1e-9, atol=1e-9).V)

    g = jax.grad(peak)(2.0)
    fd = (peak(2.0 + 1e-3) - peak(2.0 - 1e-3)) / 2e-3
    assert float(g) == pytest.approx(float(fd), rel=1e-3)


def test_import_leaves_jax_config_alone():
    code = "import jax; before = jax.config.jax_enable_x64; import hh_jax; assert jax.config.jax_enable_x64 == before == False"
    subprocess.run([sys.executable, "-c", code], check=True)


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
