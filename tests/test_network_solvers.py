"""The clock-driven network solvers: exponential midpoint converges at second order (spike
times against a tight adaptive Tsit5 solution, an independent method), exponential Euler at
first, and the solvers are chosen by name."""

from __future__ import annotations

import diffrax
import jax.numpy as jnp
import numpy as np
import pytest

import hh_jax as hh


def _ring(n=10, seed=0):
    rng = np.random.default_rng(seed)
    pre = np.repeat(np.arange(n), 3)
    post = (pre + rng.integers(1, n, size=pre.size)) % n
    w = rng.uniform(0.02, 0.06, size=pre.size)
    proj = hh.Projection("E", "E", hh.ExpSynapse(tau=3.0, E=0.0), weight=w, edges=(pre, post))
    return hh.Network({"E": hh.Population(hh.presets.neuron(), n)}, {"ee": proj})


_DRIVE = {"E": hh.Step(start=2.0, stop=30.0, amplitude=jnp.where(jnp.arange(10) < 3, 12.0, 0.0))}


def _spike_error(net, reference, **options):
    got = np.asarray(hh.simulate(net, _DRIVE, t1=40.0, save=(), **options).spikes["E"].times)
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(reference))
    return np.nanmax(np.abs(got - reference))


def test_exponential_midpoint_converges_at_second_order_in_a_10_neuron_network():
    net = _ring()
    reference = hh.simulate(net, _DRIVE, t1=40.0, ts=jnp.array([0.0, 40.0]), save=(),
                            rtol=1e-10, atol=1e-10, max_steps=100_000).spikes["E"]
    reference = np.asarray(reference.times)
    assert np.sum(np.isfinite(reference)) >= 10  # the drive spreads through the network
    midpoint = [_spike_error(net, reference, dt=dt, solver="exponential_midpoint") for dt in (0.1, 0.05, 0.025)]
    euler = _spike_error(net, reference, dt=0.05, solver=hh.ExponentialEuler())
    ratios = [midpoint[0] / midpoint[1], midpoint[1] / midpoint[2]]
    assert min(ratios) >= 3.0, (midpoint, ratios)  # second order: halving dt quarters the error
    assert midpoint[0] <= euler, (midpoint, euler)  # EM at dt at least as accurate as EE at dt/2
    assert midpoint[2] < 0.05


def test_exponential_midpoint_solves_a_single_neuron_with_diffrax():
    p = hh.presets.neuron()
    s = hh.Step(start=1.0, stop=21.0, amplitude=9.0)
    ts = jnp.linspace(0.0, 25.0, 1001)
    ref = hh.simulate(p, s, t1=25.0, ts=ts, rtol=1e-10, atol=1e-10)
    t_ref = np.asarray(hh.spike_times(ref.t, ref.V))
    errors = []
    for dt in (0.05, 0.025):
        sol = diffrax.diffeqsolve(diffrax.ODETerm(hh.vector_field), hh.ExponentialMidpoint(), t0=0.0, t1=25.0,
                                  dt0=jnp.asarray(dt), y0=p.initial_state(), args=(p, s), saveat=diffrax.SaveAt(ts=ts),
                                  max_steps=2_000)
        got = np.asarray(hh.spike_times(sol.ts, sol.ys[:, 0]))
        assert got.shape == t_ref.shape
        errors.append(np.max(np.abs(got - t_ref)))
    assert errors[0] / errors[1] > 3.0 and errors[1] < 0.05, errors  # second order


def test_solvers_by_name():
    net = _ring()
    default = hh.simulate(net, _DRIVE, t1=10.0, dt=0.1, save=("E.V",))
    named = hh.simulate(net, _DRIVE, t1=10.0, dt=0.1, save=("E.V",), solver="exponential_euler")
    np.testing.assert_array_equal(default["E.V"], named["E.V"])
    instance = hh.simulate(net, _DRIVE, t1=10.0, dt=0.1, save=("E.V",), solver=hh.ExponentialMidpoint())
    by_name = hh.simulate(net, _DRIVE, t1=10.0, dt=0.1, save=("E.V",), solver="exponential_midpoint")
    np.testing.assert_array_equal(instance["E.V"], by_name["E.V"])
    with pytest.raises(ValueError, match="unknown `solver`"):
        hh.simulate(net, _DRIVE, t1=10.0, dt=0.1, solver="rk4")
    with pytest.raises(ValueError, match="pass `dt`"):
        hh.simulate(net, _DRIVE, t1=10.0, solver="exponential_midpoint")


def test_fixed_step_delays_converge_to_the_adaptive_delays_at_second_order():
    """The two delay mechanisms — a ring buffer of releases (fixed steps) and events at
    spike time + delay (adaptive) — agree in the limit: per-edge delays 0.5–5 ms."""
    rng = np.random.default_rng(0)
    base = _ring().projections["ee"]
    proj = hh.Projection("E", "E", base.synapse, weight=base.weight, edges=(base.pre_index, base.post_index),
                         delay=rng.uniform(0.5, 5.0, size=base.pre_index.shape[0]))
    net = hh.Network(_ring().populations, {"ee": proj})
    reference = hh.simulate(net, _DRIVE, t1=40.0, ts=jnp.array([0.0, 40.0]), save=(),
                            rtol=1e-10, atol=1e-10, max_steps=100_000).spikes["E"]
    reference = np.asarray(reference.times)
    errors = [_spike_error(net, reference, dt=dt, solver="exponential_midpoint") for dt in (0.05, 0.025)]
    assert errors[0] / errors[1] >= 3.0 and errors[1] < 0.2, errors


def test_forward_mode_through_an_adaptive_network_equals_reverse_mode():
    """`adjoint=diffrax.ForwardMode()` (few parameters: tangents share the solver's steps)
    runs through the adaptive network solver, and gives reverse mode's derivative."""
    import jax

    pops = {"inp": hh.Population(hh.presets.neuron(), 2), "out": hh.Population(hh.presets.neuron(), 1)}
    drive = {"inp": hh.Step(start=1.0, amplitude=jnp.array([10.0, 20.0]))}
    ts = jnp.linspace(0.0, 20.0, 81)

    def mean_v(w, adjoint=None):
        net = hh.Network(pops, {"w": hh.Projection("inp", "out", hh.ExpSynapse(tau=3.0), weight=w)})
        V = hh.simulate(net, drive, t1=20.0, ts=ts, save=("out.V",), rtol=1e-8, atol=1e-8, adjoint=adjoint)["out.V"]
        return jnp.mean(V)

    w = jnp.array([[0.3], [0.2]])
    forward = jax.jacfwd(lambda x: mean_v(x, diffrax.ForwardMode()))(w)
    # Reverse mode in one compiled program (jax.grad outside jit compiles its forward and
    # backward passes separately), whose values also serve the central differences.
    value_and_grad = jax.jit(jax.value_and_grad(mean_v))
    np.testing.assert_allclose(forward, value_and_grad(w)[1], rtol=1e-7)
    h = 1e-5
    central = (value_and_grad(w.at[0, 0].add(h))[0] - value_and_grad(w.at[0, 0].add(-h))[0]) / (2 * h)
    assert float(forward[0, 0]) == pytest.approx(float(central), rel=1e-4)
