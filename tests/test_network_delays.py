"""Synaptic delays (per projection, per edge, per pair) in fixed-step and adaptive network runs,
and spike detection inside adaptive runs: conductance onsets against the recorded spike time +
delay (from the exact exponential decay of the delivered conductance), weight gradients
against central finite differences, in-solve spike times against crossings of a densely
saved voltage."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hh_jax as hh

TAU, W = 5.0, 0.02  # ms, mS/cm²: too weak to make the postsynaptic neurons spike
EDGE_DELAYS = (0.5, 1.5, 4.25, 10.0, 20.0)  # ms
PAIR_DELAYS = ((3.0, 7.55),)  # ms, a dense (1, 2) matrix


def _delay_network():
    """One presynaptic neuron onto: "A" by an edge list with one delay per edge, "B" by a
    dense matrix with one delay (1.5 ms), "C" by a dense matrix with one delay per pair."""
    syn = hh.ExpSynapse(tau=TAU, E=0.0)
    pop = lambda n: hh.Population(hh.presets.neuron(), n)  # noqa: E731
    n = len(EDGE_DELAYS)
    projections = {
        "a": hh.Projection("pre", "A", syn, weight=W, edges=(np.zeros(n, int), np.arange(n)), delay=EDGE_DELAYS),
        "b": hh.Projection("pre", "B", syn, weight=[[W]], delay=1.5),
        "c": hh.Projection("pre", "C", syn, weight=[[W, W]], delay=PAIR_DELAYS),
    }
    return hh.Network({"pre": pop(1), "A": pop(n), "B": pop(1), "C": pop(2)}, projections)


def _onset_errors(tr):
    """Per connection, (conductance onset) − (presynaptic spike time + delay) (ms), the onset
    read back from the exact decay g(t) = w exp(−(t − onset)/τ) 1 ms after the arrival."""
    t_spike = float(tr.spikes["pre"].times[0, 0])
    assert int(tr.spikes["pre"].counts[0]) == 1
    t = np.asarray(tr.t)
    errors = []
    for name, delays in (("a", EDGE_DELAYS), ("b", (1.5,)), ("c", PAIR_DELAYS[0])):
        g = np.asarray(tr[f"{name}.g"])
        for j, d in enumerate(delays):
            k = np.searchsorted(t, t_spike + d + 1.0)
            onset = t[k] + TAU * np.log(g[j, k] / W)
            assert np.all(g[j, t < t_spike + d - 0.2] == 0.0)  # nothing arrives early
            errors.append(onset - (t_spike + d))
    return np.array(errors)


_STIM = {"pre": hh.Pulse(start=2.0, stop=3.0, amplitude=20.0)}
_SAVE = ("a.g", "b.g", "c.g")


@pytest.mark.parametrize("solver", ["exponential_euler", "exponential_midpoint"])
def test_fixed_step_delays_arrive_within_one_step(solver):
    dt = 0.1
    tr = hh.simulate(_delay_network(), _STIM, t1=30.0, dt=dt, save=_SAVE, solver=solver)
    errors = _onset_errors(tr)
    assert np.all(np.abs(errors) <= dt), errors
    if solver == "exponential_euler":  # at the end of the step the arrival falls in
        assert np.all(errors >= -1e-9)
    else:  # at the arrival's time within the step
        assert np.max(np.abs(errors)) < 0.01, errors


def test_adaptive_delays_arrive_at_spike_time_plus_delay():
    tr = hh.simulate(_delay_network(), _STIM, t1=30.0, ts=jnp.arange(0.0, 30.0, 0.01), save=_SAVE)
    errors = _onset_errors(tr)
    assert np.max(np.abs(errors)) < 0.01, errors
    assert np.max(np.abs(errors)) < 1e-4  # in fact the step lands on the arrival


def test_adaptive_spikes_are_detected_during_the_solve():
    """`save=()` keeps no voltage; the spike times equal the crossings of a densely saved V."""
    net = hh.Network({"pre": hh.Population(hh.presets.neuron(), 1)})
    ts = jnp.arange(0.0, 10.0, 0.005)
    spikes_only = hh.simulate(net, _STIM, t1=10.0, ts=ts, save=())
    assert spikes_only.values == {}
    dense = hh.simulate(net, _STIM, t1=10.0, ts=ts, save=("pre.V",))
    expected = np.asarray(hh.spike_times(dense.t, dense["pre.V"][0]))
    got = np.asarray(spikes_only.spikes["pre"].times[0])
    assert expected.size == 1 and int(spikes_only.spikes["pre"].counts[0]) == 1
    assert got[0] == pytest.approx(expected[0], abs=1e-4)


def _ring(delay, n=10, seed=0):
    rng = np.random.default_rng(seed)
    pre = np.repeat(np.arange(n), 3)
    post = (pre + rng.integers(1, n, size=pre.size)) % n
    w = rng.uniform(0.02, 0.06, size=pre.size)
    delays = rng.uniform(0.5, 5.0, size=pre.size) if delay == "per edge" else delay
    return pre, post, w, delays


def _ring_loss(dt):
    pre, post, w0, delays = _ring("per edge")
    pop = hh.Population(hh.presets.neuron(), 10)
    drive = {"E": hh.Step(start=2.0, stop=20.0, amplitude=jnp.where(jnp.arange(10) < 3, 12.0, 0.0))}
    opts = dict(t1=20.0, ts=jnp.linspace(0.0, 20.0, 201), save=("E.V",))
    if dt is None:
        opts.update(rtol=1e-9, atol=1e-9, max_steps=100_000)
    else:
        opts.update(dt=dt)

    def loss(w):
        proj = hh.Projection("E", "E", hh.ExpSynapse(tau=3.0, E=0.0), weight=w, edges=(pre, post), delay=delays)
        tr = hh.simulate(hh.Network({"E": pop}, {"ee": proj}), drive, **opts)
        return jnp.mean(tr["E.V"][3:])  # the neurons driven only through synapses

    return loss, jnp.asarray(w0)


@pytest.mark.parametrize("dt", [None, 0.05])
def test_weight_gradients_through_delays_match_central_differences(dt):
    loss, w = _ring_loss(dt)
    grad = np.asarray(jax.grad(loss)(w))
    assert np.max(np.abs(grad)) > 0
    for k in np.argsort(-np.abs(grad))[:4]:
        h = 1e-4 * float(w[k])
        fd = (float(loss(w.at[k].add(h))) - float(loss(w.at[k].add(-h)))) / (2 * h)
        assert grad[k] == pytest.approx(fd, rel=0.01), (k, grad[k], fd)


def test_one_delay_on_an_edge_list_equals_the_dense_matrix():
    """A projection-wide delay on an edge list (delivered along the edges of the neurons that
    released, `max_active`) and on the equal dense matrix give the same run."""
    pre, post, w, _ = _ring(None)
    W = np.zeros((10, 10))
    np.add.at(W, (pre, post), w)
    pop = hh.Population(hh.presets.neuron(), 10)
    drive = {"E": hh.Step(start=2.0, stop=30.0, amplitude=jnp.where(jnp.arange(10) < 3, 12.0, 0.0))}
    syn = hh.ExpSynapse(tau=3.0, E=0.0)
    runs = []
    for proj in (hh.Projection("E", "E", syn, weight=w, edges=(pre, post), delay=2.0),
                 hh.Projection("E", "E", syn, weight=W, delay=2.0)):
        runs.append(hh.simulate(hh.Network({"E": pop}, {"ee": proj}), drive, t1=30.0, dt=0.05, save=("E.V",)))
    assert int(runs[0].spikes["E"].counts.sum()) > 3
    np.testing.assert_allclose(runs[0]["E.V"], runs[1]["E.V"], atol=1e-8)


def test_bad_delays_are_refused(monkeypatch):
    syn = hh.ExpSynapse()
    with pytest.raises(ValueError, match="delay"):
        hh.Projection("A", "A", syn, weight=[[0.1]], delay=-1.0)
    with pytest.raises(ValueError, match="one value per connection"):
        hh.Projection("A", "A", syn, weight=0.1, edges=([0, 1], [1, 0]), delay=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="release-driven"):
        hh.Projection("A", "A", hh.AMPA(), weight=[[0.1]], delay=1.0)
    pop = hh.Population(hh.presets.neuron(), 2)
    stp = hh.Projection("A", "A", syn, weight=[[0.0, 0.1], [0.0, 0.0]], delay=1.0,
                        stp=hh.TsodyksMarkram(U=0.5, tau_rec=100.0))
    with pytest.raises(ValueError, match="short-term plasticity"):
        hh.simulate(hh.Network({"A": pop}, {"p": stp}), None, t1=5.0)
    monkeypatch.setenv("HH_JAX_MEMORY_BUDGET", "1kB")
    far = hh.Projection("A", "A", syn, weight=[[0.0, 0.1], [0.0, 0.0]], delay=1000.0)
    with pytest.raises(ValueError, match="delay ring"):
        hh.simulate(hh.Network({"A": pop}, {"p": far}), None, t1=5.0, dt=0.01, ts=jnp.array([0.0]))
