"""`hh.UnrolledTsit5` (`hh.simulate`'s default for neurons outside forward mode) against
Diffrax's `Tsit5`: the same method, so the same steps, values, dense output and derivatives
to rounding."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hh_jax as hh
from hh_jax._unrolled_tsit5 import PolynomialInterpolation, UnrolledTsit5, dense_info

pytestmark = pytest.mark.solve

TS = np.linspace(0.0, 30.0, 1201)
STIMULUS = hh.PulseTrain(start=2.0, period=7.0, width=1.5, amplitude=20.0, count=3) + hh.Step(start=20.0, amplitude=6.0)


def _both(**kwargs):
    membrane = hh.presets.neuron(gNa=jnp.array([90.0, 120.0, 160.0]), gK=jnp.array([30.0, 36.0, 45.0]))
    common = dict(t1=30.0, ts=jnp.asarray(TS), rtol=1e-7, atol=1e-7, save="all", **kwargs)
    return (hh.simulate(membrane, STIMULUS, **common),
            hh.simulate(membrane, STIMULUS, solver=diffrax.Tsit5(), **common))


def test_dense_output_is_tsit5s_polynomial():
    rng = np.random.default_rng(0)
    k = jnp.asarray(rng.normal(size=(7, 5)))
    y0 = jnp.asarray(rng.normal(size=5))
    # Diffrax's interpolation, and the monomial form a step builds from the same stages.
    reference = diffrax.Tsit5.interpolation_cls(t0=1.0, t1=1.5, y0=y0, y1=None, k=k)
    ours = PolynomialInterpolation(t0=1.0, t1=1.5, **dense_info(y0, list(k)))
    for t in np.linspace(1.0, 1.5, 23):
        np.testing.assert_allclose(ours.evaluate(t), reference.evaluate(t), rtol=0, atol=1e-13)
    np.testing.assert_allclose(ours.evaluate(1.1, 1.4), reference.evaluate(1.1, 1.4), rtol=0, atol=1e-13)


def test_same_steps_and_trace_as_diffrax_tsit5():
    ours, theirs = _both()
    assert int(ours.num_steps) == int(theirs.num_steps)
    assert int(ours.num_rejected_steps) == int(theirs.num_rejected_steps)
    np.testing.assert_allclose(ours.V, theirs.V, rtol=0, atol=1e-8)
    for name in ("n", "m", "h"):
        np.testing.assert_allclose(ours.gates[name], theirs.gates[name], rtol=0, atol=1e-10)
    assert np.ptp(np.asarray(ours.V)) > 100  # it spiked


def test_same_trace_with_a_step_sequence_per_neuron():
    ours, theirs = _both(batching=hh.Batching(per_neuron=True))
    np.testing.assert_allclose(ours.V, theirs.V, rtol=0, atol=1e-8)


def test_same_trace_in_float32():
    membrane = hh.presets.neuron(gNa=jnp.array([90.0, 120.0, 160.0], jnp.float32))
    common = dict(t1=30.0, ts=jnp.asarray(TS, jnp.float32), rtol=1e-5, atol=1e-5, save="V")
    ours = hh.simulate(membrane, STIMULUS, **common)
    theirs = hh.simulate(membrane, STIMULUS, solver=diffrax.Tsit5(), **common)
    assert ours.V.dtype == jnp.float32
    t = np.asarray(TS)
    for a, b in zip(np.asarray(ours.V), np.asarray(theirs.V)):
        sa, sb = hh.spike_times(t, a, 0.0), hh.spike_times(t, b, 0.0)
        assert len(sa) == len(sb) >= 2
        np.testing.assert_allclose(sa, sb, rtol=0, atol=1e-3)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_same_derivatives_as_diffrax_tsit5(mode):
    ts = jnp.asarray(TS[:481])  # 12 ms: the first pulse's spike
    target = jnp.sin(ts / 3.0) * 30.0 - 60.0
    adjoint = diffrax.ForwardMode() if mode == "forward" else None
    differentiate = jax.jacfwd if mode == "forward" else jax.grad

    def loss(g, solver):
        membrane = hh.presets.neuron(gNa=g[0], gK=g[1], gL=g[2])
        V = hh.simulate(membrane, STIMULUS, t1=12.0, ts=ts, rtol=1e-7, atol=1e-7, save="V",
                        solver=solver, adjoint=adjoint).V
        return jnp.mean((V - target) ** 2)

    g = jnp.array([120.0, 36.0, 0.3])
    ours = jax.jit(differentiate(lambda g: loss(g, UnrolledTsit5())))(g)
    theirs = jax.jit(differentiate(lambda g: loss(g, diffrax.Tsit5())))(g)
    np.testing.assert_allclose(ours, theirs, rtol=1e-7)
