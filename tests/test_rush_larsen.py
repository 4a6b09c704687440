"""hh.RushLarsen (adaptive exponential solvers) against scipy Radau, finite differences and
its own stated order."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hh_jax as hh
from references import GIST, gist_rhs, gist_steady_state, integrate_piecewise

GIST_PULSE = [(0.0, 1.0, 150.0), (1.0, 20.0, 0.0)]
NEURON_STEP = [(0.0, 1.0, 0.0), (1.0, 41.0, 9.0), (41.0, 50.0, 0.0)]
Y0_GIST = [0.0, *gist_steady_state(0.0)]


def neuron_rhs(t, y, current):
    """NEURON's hh (rest −65 mV, EL −54.3 mV) is the gist's model shifted by 65 mV."""
    return gist_rhs(t, [y[0] + 65.0, *y[1:]], current, dict(GIST, EL=-54.3 + 65.0))


@pytest.fixture(scope="module")
def gist_reference():
    ts = np.linspace(0.0, 20.0, 2001)
    V, spikes = integrate_piecewise(gist_rhs, Y0_GIST, GIST_PULSE, ts, threshold=50.0, method="Radau", tol=1e-10)
    return ts, V, spikes


@pytest.fixture(scope="module")
def neuron_reference():
    ts = np.linspace(0.0, 50.0, 2001)
    y0 = [-65.0, *gist_steady_state(0.0)]
    _, spikes = integrate_piecewise(neuron_rhs, y0, NEURON_STEP, ts, threshold=0.0, method="Radau", tol=1e-10)
    assert len(spikes) == 3
    return ts, spikes


@pytest.mark.parametrize("method, order", [("exprk3", 3), ("grl2", 2)])
def test_order_of_convergence(gist_reference, method, order):
    # Steps of a fixed length h (a PID controller that accepts everything, capped at h, and
    # stepping onto the pulse's end): the error against Radau falls as h^order.
    ts_ref, V_ref, _ = gist_reference
    save = np.arange(0, 1001, 50)  # every 0.5 ms up to 10 ms, on every grid below
    p = hh.presets.seed()
    stimulus = hh.Pulse(start=0.0, stop=1.0, amplitude=150.0)

    @jax.jit
    def V_at(h):
        controller = diffrax.ClipStepSizeController(
            diffrax.PIDController(rtol=1e6, atol=1e6, dtmax=h), jump_ts=jnp.asarray([1.0]))
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(hh.vector_field), hh.RushLarsen(method=method), t0=0.0, t1=10.0, dt0=h,
            y0=p.initial_state(), args=(p, stimulus), stepsize_controller=controller,
            saveat=diffrax.SaveAt(ts=jnp.asarray(ts_ref[save])), max_steps=4000)
        return sol.ys[:, 0]

    errors = [float(np.max(np.abs(np.asarray(V_at(h)) - V_ref[save]))) for h in (0.02, 0.01, 0.005)]
    observed = np.log2(np.asarray(errors[:-1]) / np.asarray(errors[1:]))
    assert np.all(np.abs(observed - order) < 0.4), (errors, observed)


def _simulate(p, s, ts, rtol, **kw):
    """Every call with 2001 save times, a Step and one solver reuses one compiled program."""
    return hh.simulate(p, s, t1=float(ts[-1]), ts=jnp.asarray(ts), save="V", rtol=rtol, atol=rtol,
                       solver=kw.pop("solver", hh.RushLarsen()), **kw)


@pytest.mark.parametrize("case", ["gist", "neuron"])
def test_spike_times_match_scipy(gist_reference, neuron_reference, case):
    if case == "gist":
        ts, _, spikes_ref = gist_reference
        p, s, threshold = hh.presets.seed(), hh.Step(start=0.0, stop=1.0, amplitude=150.0), 50.0
    else:
        ts, spikes_ref = neuron_reference
        p, s, threshold = hh.presets.neuron(), hh.Step(start=1.0, stop=41.0, amplitude=9.0), 0.0
    tr = _simulate(p, s, ts, rtol=1e-6)
    spikes = np.asarray(hh.spike_times(tr.t, tr.V, threshold=threshold))
    assert spikes.shape == spikes_ref.shape
    assert np.max(np.abs(spikes - spikes_ref)) < 0.005  # ms


def test_narrow_pulse_is_not_stepped_over():
    # 50 µs of 2 mA/cm² at 5 ms after 5 ms of rest (where steps grow long): the controller
    # steps onto the pulse, which fires a spike even at a loose tolerance.
    pulse = hh.Step(start=5.0, stop=5.05, amplitude=2000.0)
    tr = _simulate(hh.presets.seed(), pulse, np.linspace(0.0, 10.0, 2001), rtol=1e-3)
    spikes = np.asarray(hh.spike_times(tr.t, tr.V, threshold=50.0))
    assert spikes.shape == (1,) and 5.0 < spikes[0] < 7.0


def test_gradient_matches_central_differences():
    # Fixed steps (h = 0.02 ms), so that central differences see the same discretisation
    # that is differentiated; reverse mode (RecursiveCheckpointAdjoint) and forward mode.
    ts = jnp.linspace(0.0, 5.0, 51)
    stimulus = hh.Pulse(start=0.0, stop=1.0, amplitude=150.0)
    controller = diffrax.ClipStepSizeController(
        diffrax.PIDController(rtol=1e6, atol=1e6, dtmax=0.02), jump_ts=jnp.asarray([1.0]))

    def loss(gNa, adjoint=diffrax.RecursiveCheckpointAdjoint()):
        p = hh.presets.seed(gNa=gNa)
        sol = diffrax.diffeqsolve(diffrax.ODETerm(hh.vector_field), hh.RushLarsen(), t0=0.0, t1=5.0, dt0=0.02,
                                  y0=p.initial_state(), args=(p, stimulus), stepsize_controller=controller,
                                  saveat=diffrax.SaveAt(ts=ts), adjoint=adjoint, max_steps=400)
        return jnp.mean(sol.ys[:, 0] ** 2)

    g0, d = 120.0, 1e-3
    primal = jax.jit(loss)
    central = (primal(g0 + d) - primal(g0 - d)) / (2 * d)
    reverse = jax.jit(jax.grad(loss))(g0)
    forward = jax.jit(jax.jacfwd(lambda g: loss(g, diffrax.ForwardMode())))(g0)
    np.testing.assert_allclose(reverse, central, rtol=1e-6)
    np.testing.assert_allclose(forward, reverse, rtol=1e-10)


def test_float32(neuron_reference):
    ts, spikes_ref = neuron_reference
    with jax.enable_x64(False):
        tr = hh.simulate(hh.presets.neuron(), hh.Step(start=1.0, stop=41.0, amplitude=9.0), t1=50.0,
                         ts=jnp.asarray(ts, jnp.float32), save="V", solver=hh.RushLarsen(), rtol=3e-5, atol=3e-5)
        assert tr.V.dtype == jnp.float32
        spikes = np.asarray(hh.spike_times(tr.t, tr.V, threshold=0.0))
    assert bool(tr.success)
    assert spikes.shape == spikes_ref.shape
    assert np.max(np.abs(spikes - spikes_ref)) < 0.05  # ms


def test_any_vector_field_and_batches():
    # A vector field that is not hh.vector_field gets its diagonal by forward mode, a
    # `diagonal` function is used as given: both agree with the closed form; a per-neuron
    # vmapped batch equals its lone solves.
    p = hh.presets.seed()
    s = hh.Pulse(start=0.0, stop=1.0, amplitude=150.0)
    ts = jnp.linspace(0.0, 3.0, 7)

    def solve(term, solver):
        return diffrax.diffeqsolve(term, solver, t0=0.0, t1=3.0, dt0=None, y0=p.initial_state(), args=(p, s),
                                   saveat=diffrax.SaveAt(ts=ts),
                                   stepsize_controller=diffrax.ClipStepSizeController(
                                       diffrax.PIDController(rtol=1e-6, atol=1e-6), jump_ts=jnp.asarray([1.0]))).ys

    closed = solve(diffrax.ODETerm(hh.vector_field), hh.RushLarsen())
    by_jvp = solve(diffrax.ODETerm(lambda t, y, a: hh.vector_field(t, y, a)), hh.RushLarsen())
    np.testing.assert_allclose(by_jvp, closed, rtol=1e-10, atol=1e-10)

    def diagonal(t, y, args):
        membrane, stimulus = args
        return membrane.derivatives_and_diagonal(y, lambda V: stimulus(t) + 0.0 * V)

    given = solve(diffrax.ODETerm(hh.vector_field), hh.RushLarsen(diagonal=diagonal))
    np.testing.assert_allclose(given, closed, rtol=1e-12, atol=1e-12)

    gNa = jnp.asarray([100.0, 120.0])
    ts = np.linspace(0.0, 5.0, 2001)
    step = hh.Step(start=0.0, stop=1.0, amplitude=150.0)
    both = _simulate(hh.presets.seed(gNa=gNa), step, ts, rtol=1e-5, steps="per_neuron").V
    alone = _simulate(hh.presets.seed(gNa=100.0), step, ts, rtol=1e-5).V
    np.testing.assert_allclose(both[0], alone, rtol=1e-10, atol=1e-10)

    with pytest.raises(ValueError, match="method"):
        hh.RushLarsen(method="rk4")
