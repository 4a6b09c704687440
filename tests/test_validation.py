"""Bad input raises ValueError naming the argument; failed solves never pass silently."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hh_jax as hh

STEP = hh.Step(start=1.0, stop=41.0, amplitude=9.0)


@pytest.mark.parametrize(
    "overrides, name",
    [
        (dict(gNa=-1.0), "gNa"),
        (dict(gK=-0.1), "gK"),
        (dict(gL=jnp.array([0.3, -0.3])), "gL"),
        (dict(Cm=0.0), "Cm"),
        (dict(Cm=-1.0), "Cm"),
        (dict(gNa=float("nan")), "gNa"),
        (dict(EL=float("inf")), "EL"),
        (dict(celsius=float("nan")), "celsius"),
        (dict(ENa=np.array([50.0, np.nan])), "ENa"),
    ],
)
def test_bad_parameters(overrides, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        hh.presets.neuron(**overrides)


def test_unknown_parameter_name():
    with pytest.raises(ValueError, match="gNaa"):
        hh.presets.hh1952(gNaa=1.0)


def test_parameters_that_do_not_broadcast():
    with pytest.raises(ValueError, match="broadcast"):
        hh.presets.hh1952(gNa=jnp.ones(3), gK=jnp.ones(4))


@pytest.mark.parametrize("cls", [hh.Pulse, hh.Step])
def test_stimulus_stop_before_start(cls):
    with pytest.raises(ValueError, match="`stop`"):
        cls(start=5.0, stop=2.0, amplitude=1.0)
    with pytest.raises(ValueError, match="`stop`"):
        cls(start=5.0, stop=5.0, amplitude=1.0)


def test_stimulus_non_finite():
    with pytest.raises(ValueError, match="`amplitude`"):
        hh.Pulse(start=0.0, stop=1.0, amplitude=float("nan"))
    with pytest.raises(ValueError, match="`start`"):
        hh.Step(start=float("-inf"), amplitude=1.0)


@pytest.mark.parametrize(
    "ts, match",
    [
        (jnp.array([0.0, 2.0, 1.0]), "strictly increasing"),
        (jnp.array([0.0, 1.0, 1.0]), "strictly increasing"),
        (jnp.array([-1.0, 1.0]), r"within \[t0, t1\]"),
        (jnp.array([1.0, 60.0]), r"within \[t0, t1\]"),
        (jnp.array([0.0, jnp.nan]), "`ts`"),
        (jnp.zeros((2, 2)), "1-D"),
    ],
)
def test_bad_save_times(ts, match):
    with pytest.raises(ValueError, match=match):
        hh.simulate(hh.presets.neuron(), STEP, t1=50.0, ts=ts)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(t1=0.0), "t1"),
        (dict(t1=-5.0), "t1"),
        (dict(t1=10.0, rtol=0.0), "rtol"),
        (dict(t1=10.0, atol=-1.0), "atol"),
        (dict(t1=10.0, max_steps=0), "max_steps"),
        (dict(t1=10.0, v0=float("nan")), "v0"),
        (dict(t1=10.0, save=("n",)), "save"),
        (dict(t1=10.0, save="x"), "save"),
    ],
)
def test_bad_simulate_options(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        hh.simulate(hh.presets.neuron(), STEP, **kwargs)


def test_wrong_argument_types():
    with pytest.raises(TypeError, match="membrane"):
        hh.simulate({"gNa": 1.0}, STEP, t1=10.0)
    with pytest.raises(TypeError, match="stimulus"):
        hh.simulate(hh.presets.neuron(), 5.0, t1=10.0)


def test_errors_raised_before_compilation(monkeypatch):
    # Validation happens in Python before any tracing: diffeqsolve is never reached.
    import diffrax

    def boom(*args, **kwargs):
        raise AssertionError("diffeqsolve was called")

    monkeypatch.setattr(diffrax, "diffeqsolve", boom)
    with pytest.raises(ValueError):
        hh.simulate(hh.presets.neuron(), STEP, t1=50.0, ts=jnp.array([0.0, 60.0]))


def test_step_limit_raises_clear_error():
    with pytest.raises(hh.SolverError, match="step limit") as info:
        hh.simulate(hh.presets.neuron(), STEP, t1=50.0, max_steps=20)
    assert "max_steps" in str(info.value)
    assert isinstance(info.value, RuntimeError)


def test_step_limit_raises_under_jit():
    f = jax.jit(lambda g: hh.simulate(hh.presets.neuron(gNa=g), STEP, t1=50.0, ts=jnp.linspace(0, 50, 11), max_steps=20).V)
    with pytest.raises(RuntimeError, match="max_steps"):
        jax.block_until_ready(f(120.0))


def test_step_limit_reported_when_not_throwing():
    tr = hh.simulate(hh.presets.neuron(), STEP, t1=50.0, max_steps=20, throw=False)
    assert not bool(tr.success)
    assert int(tr.num_steps) == 20
    # Whatever the values after the failure, the trace says it failed: no silent NaN trace.
    assert not np.all(np.isfinite(np.asarray(tr.V)))


def test_successful_trace_is_finite_and_flagged():
    tr = hh.simulate(hh.presets.neuron(), STEP, t1=50.0)
    assert bool(tr.success)
    assert np.all(np.isfinite(np.asarray(tr.V)))
    assert int(tr.num_accepted_steps) + int(tr.num_rejected_steps) == int(tr.num_steps)
