"""jit, vmap, batches, dtypes, stimuli; the library leaves global JAX config alone."""

import diffrax
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




def test_a_trial_step_that_overflows_shrinks_the_step_instead_of_stalling():
    """A trial step too long for the dynamics can overflow and leave a NaN error estimate.
    The error norm reports it as infinite, so Diffrax's controller shrinks the step and tries
    again; a NaN norm gave a NaN step size and every later step was rejected until max_steps
    (seen in float32 at rtol = atol = 1e-5 when the benchmark's 9 µA/cm² step ends)."""
    from hh_jax._solve import _batch_rms_norm
    from hh_jax._solve_setup import solve_arrays, step_controller

    arrays = solve_arrays(jnp.float64, ts=jnp.zeros(1), t0=0.0, t1=1.0, rtol=1e-6, atol=1e-6, dt0=None, dtmax=None)
    controller = step_controller(arrays, [], _batch_rms_norm)  # the neuron solver's (the network's shares the rule)
    assert np.isinf(float(controller.norm(jnp.array([[jnp.nan, 1.0], [0.0, 0.0]]))))
    assert float(controller.norm(jnp.array([[3.0, 0.0], [4.0, 0.0]]))) == pytest.approx(np.sqrt(12.5))

    def field(t, y, args):  # relaxes to 1 at rate 50; "overflows" (NaN) beyond |y| = 5
        return jnp.where(jnp.abs(y) > 5.0, jnp.nan, 50.0 * (1.0 - y))

    sol = diffrax.diffeqsolve(diffrax.ODETerm(field), diffrax.Tsit5(), 0.0, 1.0, 0.5, jnp.zeros((1,)),
                              stepsize_controller=controller, max_steps=1000, throw=False)
    assert sol.result == diffrax.RESULTS.successful and int(sol.stats["num_steps"]) < 1000
    assert float(sol.ys[-1, 0]) == pytest.approx(1.0 - np.exp(-50.0), abs=1e-5)


def test_float32_one_neuron_at_rtol_1e_5_passes_the_end_of_a_step():
    """The case that stalled: one neuron, float32, rtol = atol = 1e-5, compiled by the
    caller; its spike times match float64 within 0.01 ms."""
    ts = jnp.linspace(0.0, 50.0, 2001)
    stim = hh.Step(start=1.0, stop=41.0, amplitude=9.0)
    ref = spikes(hh.simulate(hh.presets.neuron(), stim, t1=50.0, ts=ts, rtol=1e-10, atol=1e-10))
    with jax.enable_x64(False):
        run = jax.jit(lambda g: hh.simulate(hh.presets.neuron(gNa=g), stim, t1=50.0, ts=jnp.linspace(0.0, 50.0, 2001),
                                            save="V", rtol=1e-5, atol=1e-5))
        tr = run(jnp.float32(120.0))
        assert bool(tr.success) and tr.V.dtype == jnp.float32
        got = np.asarray(hh.spike_times(tr.t, tr.V))
    assert got.shape == ref.shape and np.max(np.abs(got - ref)) < 0.01
