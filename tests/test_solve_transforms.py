"""jit, vmap, batches, dtypes, stimuli; the library leaves global JAX config alone."""

import jax
import jax.numpy as jnp
import numpy as np

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


