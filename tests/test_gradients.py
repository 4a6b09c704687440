"""Gradients through the solver against central finite differences."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hh_jax as hh

TS = jnp.linspace(0.0, 30.0, 301)
STIM = hh.Pulse(start=1.0, stop=2.0, amplitude=40.0) + hh.Step(start=12.0, amplitude=12.0)
TOL = dict(rtol=1e-10, atol=1e-10)


def make_loss(target):
    def loss(g):
        p = hh.presets.hh1952(gNa=g[0], gK=g[1], gL=g[2])
        tr = hh.simulate(p, STIM, t1=30.0, ts=TS, save="V", **TOL)
        return jnp.mean((tr.V - target) ** 2)

    return loss


@pytest.fixture(scope="module")
def target():
    return hh.simulate(hh.presets.hh1952(gNa=110.0, gK=38.0, gL=0.27), STIM, t1=30.0, ts=TS, **TOL).V


def test_trace_mse_gradient_matches_central_differences(target):
    loss = make_loss(target)
    g0 = jnp.array([120.0, 36.0, 0.3])
    value_and_grad = jax.jit(jax.value_and_grad(loss))  # its values also serve the differences
    value, grad = value_and_grad(g0)
    assert np.isfinite(float(value)) and float(value) > 0
    for k in range(3):
        h = 1e-4 * float(g0[k])
        e = jnp.zeros(3).at[k].set(h)
        fd = (float(value_and_grad(g0 + e)[0]) - float(value_and_grad(g0 - e)[0])) / (2 * h)
        assert float(grad[k]) == pytest.approx(fd, rel=0.01), (k, float(grad[k]), fd)


@jax.jit
def _loss_and_grads(membrane, v0):
    """Value and gradient (w.r.t. every parameter and v0) of a trace's mean square."""
    ts = jnp.linspace(0.0, 5.0, 51)

    def loss(m, v):
        return jnp.mean(hh.simulate(m, None, t1=5.0, ts=ts, v0=v, save="V").V ** 2)

    return jax.value_and_grad(loss, argnums=(0, 1))(membrane, v0)


@pytest.mark.parametrize(
    "preset, v0", [("hh1952", 10.0), ("hh1952", 25.0), ("neuron", -55.0), ("neuron", -40.0)]
)
def test_value_and_gradient_finite_with_v0_at_singular_point(preset, v0):
    membrane = getattr(hh.presets, preset)()
    value, (grad_membrane, grad_v0) = _loss_and_grads(membrane, jnp.asarray(v0))
    assert np.isfinite(float(value))
    for name in ("gNa", "gK", "gL", "ENa", "EK", "EL", "Cm", "celsius"):
        assert np.isfinite(float(getattr(grad_membrane, name))), name
    assert np.isfinite(float(grad_v0))
    assert float(grad_membrane.gNa) != 0.0  # the gradient is informative, not just finite


def test_gradient_with_respect_to_stimulus_amplitude():
    def peak(a):
        return jnp.max(hh.simulate(hh.presets.neuron(), hh.Pulse(start=1.0, stop=2.0, amplitude=a), t1=3.0, ts=jnp.linspace(0, 3, 31), rtol=1e-9, atol=1e-9).V)

    g = jax.grad(peak)(2.0)
    fd = (peak(2.0 + 1e-3) - peak(2.0 - 1e-3)) / 2e-3
    assert float(g) == pytest.approx(float(fd), rel=1e-3)


def test_spike_time_derivatives_by_both_modes_match_central_differences():
    """`simulate_spikes` locates each spike on a step's dense output, so its times are
    differentiable: reverse mode (the default adjoint) and forward mode
    (`adjoint=diffrax.ForwardMode()`) agree with each other and with central differences."""
    step = hh.Step(start=1.0, stop=41.0, amplitude=9.0)

    def times(gNa, adjoint=None):
        kw = {} if adjoint is None else dict(adjoint=adjoint)
        return hh.simulate_spikes(hh.presets.neuron(gNa=gNa), step, t1=20.0, rtol=1e-8, atol=1e-8, max_spikes=4, **kw).times[:2]

    forward = jax.jit(lambda g: jax.jvp(lambda x: times(x, diffrax.ForwardMode()), (g,), (jnp.ones_like(g),)))
    reverse = jax.jit(jax.jacrev(times))
    g, h = jnp.asarray(120.0), 1e-3
    value, slope = forward(g)
    fd = (forward(g + h)[0] - forward(g - h)[0]) / (2 * h)  # the forward program's values serve the differences
    assert np.all(np.isfinite(np.asarray(value))) and float(value[1]) > float(value[0])  # two spikes
    np.testing.assert_allclose(np.asarray(slope), np.asarray(fd), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(reverse(g)), np.asarray(slope), rtol=1e-8)
