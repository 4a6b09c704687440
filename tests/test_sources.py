"""Spike sources (issue 18): Poisson sources against the Poisson distribution (rate, Fano
factor), given spike times against the closed-form conductance W·exp(−(t − t_k)/τ), the
event-based Tsodyks–Markram recurrence and the exponential STDP window; reproducibility
from the key; what a source refuses."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hh_jax as hh

TAU, W = 5.0, 0.1


def _counts_in_windows(times, t0, t1, width):
    """Spikes per source in consecutive windows of `width` ms: (windows × sources) counts.
    Window edges sit half a step off the grid, where no spike is recorded."""
    edges = np.arange(t0, t1 + 1e-9, width) + 0.05
    return np.stack([np.sum((times > a) & (times <= b), axis=1) for a, b in zip(edges[:-1], edges[1:])])


def test_poisson_rate_and_fano_factor_over_1e5_spikes():
    n, rate, t1 = 1000, 100.0, 1000.0  # 10⁵ spikes expected
    src = hh.PoissonSource(n, rate=rate, key=jax.random.key(7))
    cell = hh.Population(hh.presets.neuron(), 1)
    net = hh.Network({"ext": src, "cell": cell},
                     {"in": hh.Projection("ext", "cell", hh.ExpSynapse(), weight=0.0, edges=(np.arange(n), np.zeros(n, int)))})
    tr = hh.simulate(net, None, t1=t1, dt=0.1, save=(), max_spikes=160)
    counts, times = np.asarray(tr.spikes["ext"].counts), np.asarray(tr.spikes["ext"].times)
    assert counts.sum() > 95_000 and np.all(counts == np.isfinite(times).sum(axis=1))
    assert abs(counts.mean() / (rate * t1 / 1000.0) - 1.0) < 0.02
    per_window = _counts_in_windows(times, 0.0, t1 - 50.0, 50.0)  # 19 × 1000 counts, mean 5
    assert abs(per_window.var() / per_window.mean() - 1.0) < 0.05
    # Spikes are recorded at the ends of their steps, on the grid.
    finite = times[np.isfinite(times)]
    np.testing.assert_allclose(finite / 0.1, np.round(finite / 0.1), atol=1e-6)


@pytest.mark.parametrize("mean", [0.8, 25.0])
def test_per_step_poisson_counts_at_high_rates(mean):
    """Many spikes per step (Brunel's 800 inputs at a few Hz each: a mean of ~0.2–1 per
    step) and a mean drawn in parts: rate and Fano factor within 2 % and 5 %."""
    from hh_jax._sources import poisson_counts

    counts = np.asarray(poisson_counts(jax.random.key(0), jnp.full((200_000,), mean)))
    assert counts.sum() > 1e5
    assert abs(counts.mean() / mean - 1.0) < 0.02
    assert abs(counts.var() / counts.mean() - 1.0) < 0.05


def test_poisson_sources_are_reproducible_and_independent_of_chunking():
    src = hh.PoissonSource(20, rate=400.0, key=jax.random.key(3))
    net = hh.Network({"ext": src, "cell": hh.Population(hh.presets.neuron(), 1)},
                     {"in": hh.Projection("ext", "cell", hh.ExpSynapse(), weight=0.001, edges=(np.arange(20), np.zeros(20, int)))})

    def spikes(t0, t1, key=3):
        run = eqx.tree_at(lambda n: n.sources["ext"].key, net, jax.random.key_data(jax.random.key(key)))
        sp = hh.simulate(run, None, t0=t0, t1=t1, dt=0.1, save=(), max_spikes=100).spikes["ext"]
        return [row[np.isfinite(row)] for row in np.asarray(sp.times)]

    whole = spikes(0.0, 100.0)
    first, second = spikes(0.0, 50.0), spikes(50.0, 100.0)
    for w, a, b in zip(whole, first, second):
        np.testing.assert_allclose(w, np.concatenate([a, b]), atol=1e-9)
    other = spikes(0.0, 50.0, key=4)
    assert any(len(a) != len(b) or not np.allclose(a, b) for a, b in zip(first, other))
    # `draw` gives the same spikes as times for adaptive runs.
    drawn = np.asarray(src.draw(100.0, dt=0.1).times)
    for w, row in zip(whole, drawn):
        np.testing.assert_allclose(w, row[np.isfinite(row)], atol=1e-9)
    # A rate function of time (Hz), rising from 0 to 800 Hz: counts in each half.
    ramp = np.asarray(hh.PoissonSource(20, rate=lambda t: 8.0 * t, key=jax.random.key(5)).draw(100.0, dt=0.1).times)
    for lo, hi in ((0.0, 50.0), (50.0, 100.0)):
        got, expected = np.sum((ramp > lo) & (ramp <= hi)), 20 * 8.0 * (hi**2 - lo**2) / 2 / 1000
        assert abs(got - expected) < 4 * np.sqrt(expected)


# --------------------------------------------------------------------------- given times

GIVEN = [[10.03, 30.0, 61.27, 64.5, 90.0], [25.005, 25.02]]  # two sources; two spikes in one step
T1 = 100.0
STP = dict(U=0.5, tau_rec=200.0)
RULE = dict(A_plus=0.01, A_minus=0.012, tau_plus=16.8, tau_minus=33.7)


def _driven(delay=None):
    """Source 0 drives cell 0 (plain, depressing and STDP projections); source 1 drives
    cell 1 through the plain one only. Cell 0 is made to fire at 34 and 63 ms."""
    src = hh.SpikeTimes(GIVEN)
    cells = hh.Population(hh.presets.neuron(), 2)
    syn = hh.ExpSynapse(tau=TAU, E=0.0)
    plain = hh.Projection("in", "cells", syn, weight=W, edges=([0, 1], [0, 1]))
    projections = {
        "plain": plain,
        "stp": hh.Projection("in", "cells", syn, weight=W, edges=([0], [0]), stp=hh.TsodyksMarkram(**STP)),
        "stdp": hh.Projection("in", "cells", syn, weight=0.05, edges=([0], [0]), stdp=hh.STDP(**RULE)),
    }
    if delay is not None:
        projections["late"] = hh.Projection("in", "cells", syn, weight=W, edges=([0], [0]), delay=delay)
    return hh.Network({"in": src, "cells": cells}, projections)


POST_DRIVE = {"cells": hh.PulseTrain(start=33.0, period=30.0, width=0.5, amplitude=jnp.array([40.0, 0.0]), count=2)}


def _stdp_change(pre, post):
    """The all-to-all pair rule, event by event (Song, Miller & Abbott 2000)."""
    pot = sum(RULE["A_plus"] * np.exp(-(b - a) / RULE["tau_plus"]) for a in pre for b in post if b > a)
    dep = sum(RULE["A_minus"] * np.exp(-(a - b) / RULE["tau_minus"]) for a in pre for b in post if a > b)
    return pot - dep


def _exact_g(t, spikes, weights):
    return sum(w * np.exp(-(t - s) / TAU) * (t >= s) for s, w in zip(spikes, weights))


def _tm_released(spikes):
    x, out, prev = 1.0, [], None
    for s in spikes:
        if prev is not None:
            x = 1.0 - (1.0 - x) * np.exp(-(s - prev) / STP["tau_rec"])
        out.append(STP["U"] * x)
        x -= STP["U"] * x
        prev = s
    return np.array(out)


def test_given_times_with_fixed_steps_are_delivered_at_the_end_of_their_step():
    dt, t1 = 0.025, T1
    net = _driven(delay=1.5)
    tr = hh.simulate(net, POST_DRIVE, t1=t1, dt=dt, save=("plain.g", "stp.g", "late.g", "stdp.w", "stdp.a_pre"))
    t = np.asarray(tr.t)
    sp = tr.spikes["in"]
    np.testing.assert_array_equal(np.asarray(sp.counts), [5, 2])
    np.testing.assert_allclose(np.asarray(sp.times)[0, :5], GIVEN[0], atol=1e-12)  # the given times
    ends = [np.ceil(s / dt - 1e-9) * dt for s in GIVEN[0]]  # the end of each spike's step
    g = np.asarray(tr["plain.g"])
    np.testing.assert_allclose(g[0], _exact_g(t + 1e-9, ends, [W] * 5), atol=1e-12)
    # Two spikes in one step add 2 W at its end.
    np.testing.assert_allclose(g[1], _exact_g(t + 1e-9, [25.025], [2 * W]), atol=1e-12)
    # Delayed: the same conductance, 1.5 ms (60 steps) later.
    np.testing.assert_allclose(np.asarray(tr["late.g"])[0], _exact_g(t + 1e-9, np.add(ends, 1.5), [W] * 5), atol=1e-12)
    # Depressing synapse: each jump is W · u·x of the event-based recurrence at the step ends.
    jumps = np.array([np.asarray(tr["stp.g"])[0][np.argmin(np.abs(t - e))] for e in ends])
    before = _exact_g(np.array(ends) - 1e-9, ends, W * _tm_released(ends))
    np.testing.assert_allclose(jumps - before, W * _tm_released(ends), rtol=1e-9)
    # STDP: the pre trace jumps by 1 at each source spike; the weight follows the pair rule.
    a_pre = np.asarray(tr["stdp.a_pre"])[0]
    np.testing.assert_allclose(a_pre[-1], sum(np.exp(-(t1 - e) / RULE["tau_plus"]) for e in ends), rtol=1e-9)
    post = np.asarray(tr.spikes["cells"].times)[0]
    post = post[np.isfinite(post)]
    assert post.size >= 2
    change = float(tr["stdp.w"][0, -1] - tr["stdp.w"][0, 0])
    assert change == pytest.approx(_stdp_change(ends, post), abs=0.03 * RULE["A_plus"])  # first order in dt


def test_second_order_fixed_steps_deliver_given_times_within_their_step():
    """With `hh.ExponentialMidpoint` a release acts from its time within the step: the
    conductance equals W·exp(−(t − t_k)/τ) (and 1.5 ms later through a delay) to
    (lag/τ)²/2 ≤ 2e-4, where first-order steps are off by up to dt/τ = 2 %."""
    times = [10.03, 30.07, 61.27]
    net = hh.Network({"in": hh.SpikeTimes([times]), "c": hh.Population(hh.presets.neuron(), 1)},
                     {"p": hh.Projection("in", "c", hh.ExpSynapse(tau=TAU), weight=W, edges=([0], [0])),
                      "d": hh.Projection("in", "c", hh.ExpSynapse(tau=TAU), weight=W, edges=([0], [0]), delay=1.5)})
    tr = hh.simulate(net, None, t1=80.0, dt=0.1, solver=hh.ExponentialMidpoint(), save=("p.g", "d.g"))
    t = np.asarray(tr.t)
    for name, shift in (("p.g", 0.0), ("d.g", 1.5)):
        arrival = np.add(times, shift)
        after = np.all(np.abs(t[:, None] - arrival[None]) > 0.1, axis=1)  # not in a spike's own step
        error = np.abs(np.asarray(tr[name])[0] - _exact_g(t, arrival, [W] * 3))[after]
        assert np.max(error) < 3e-4 * W


def test_given_times_in_adaptive_runs_are_delivered_at_their_times():
    net = _driven()
    ts = jnp.linspace(0.0, T1, 2001)
    tr = hh.simulate(net, POST_DRIVE, t1=T1, ts=ts, save=("plain.g", "stp.g", "stdp.w"), rtol=1e-8, atol=1e-10)
    t = np.asarray(tr.t)
    far = np.all(np.abs(t[:, None] - np.asarray(GIVEN[0])[None, :]) > 0.01, axis=1)  # outside the pulses
    g = np.asarray(tr["plain.g"])[0]
    exact = _exact_g(t, GIVEN[0], [W] * 5)
    assert np.max(np.abs(g - exact)[far] / np.max(exact)) < 1e-6  # sinh(x)/x − 1 = 4e-8, and the solver's error
    stp = np.asarray(tr["stp.g"])[0]
    exact = _exact_g(t, GIVEN[0], W * _tm_released(GIVEN[0]))
    assert np.max(np.abs(stp - exact)[far] / np.max(exact)) < 1e-4  # the front-loaded release: 5e-5
    np.testing.assert_allclose(np.asarray(tr.spikes["in"].times)[0, :5], GIVEN[0])
    post = np.asarray(tr.spikes["cells"].times)[0]
    post = post[np.isfinite(post)]
    assert post.size >= 2
    change = float(tr["stdp.w"][0, -1] - tr["stdp.w"][0, 0])
    assert change == pytest.approx(_stdp_change(GIVEN[0], post), rel=0.005)


# --------------------------------------------------------------------------- refusals


def test_what_a_source_refuses():
    src, cell = hh.SpikeTimes([[5.0]]), hh.Population(hh.presets.neuron(), 1)
    with pytest.raises(ValueError, match="spike sources only"):
        hh.Network({"in": src})
    with pytest.raises(ValueError, match="can only be a `pre`"):
        hh.Network({"in": src, "cell": cell}, {"p": hh.Projection("cell", "in", hh.ExpSynapse(), weight=[[0.1]])})
    with pytest.raises(ValueError, match="presynaptic voltage"):
        hh.Network({"in": src, "cell": cell}, {"p": hh.Projection("in", "cell", hh.AMPA(), weight=[[0.1]])})
    net = hh.Network({"in": src, "cell": cell}, {"p": hh.Projection("in", "cell", hh.ExpSynapse(), weight=[[0.1]])})
    with pytest.raises(ValueError, match=r"unknown variable.*in\.V"):
        hh.simulate(net, None, t1=10.0, save=("in.V",))
    with pytest.raises(ValueError, match="spike source"):
        hh.simulate(net, None, t1=10.0, init={"in.V": -60.0})
    with pytest.raises(ValueError, match="spike source"):
        hh.simulate(net, None, t1=10.0, v0={"in": -60.0})
    with pytest.raises(ValueError, match="unknown population"):
        hh.simulate(net, {"in": hh.Step(start=0.0, amplitude=1.0)}, t1=10.0)
    poisson = hh.Network({"ext": hh.PoissonSource(1, rate=10.0, key=jax.random.key(0)), "cell": cell},
                         {"p": hh.Projection("ext", "cell", hh.ExpSynapse(), weight=[[0.1]])})
    with pytest.raises(ValueError, match="needs fixed steps"):
        hh.simulate(poisson, None, t1=10.0)
    delayed = hh.Network({"in": src, "cell": cell}, {"p": hh.Projection("in", "cell", hh.ExpSynapse(), weight=[[0.1]], delay=1.0)})
    with pytest.raises(ValueError, match="have a delay"):
        hh.simulate(delayed, None, t1=10.0)
    with pytest.raises(ValueError, match="rate"):
        hh.PoissonSource(3, rate=-1.0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="key"):
        hh.PoissonSource(3, rate=1.0, key=0)
    with pytest.raises(ValueError, match="times"):
        hh.SpikeTimes([1.0, 2.0])


def test_brunel_preset_builds_the_stated_network():
    model = hh.presets.brunel(n=500, in_degree=80, seed=2)
    net = model.network
    assert set(net.sources) == {"ext"} and set(net.populations) == {"P"}
    exc, inh, ext = net.projections["exc"], net.projections["inh"], net.projections["in"]
    np.testing.assert_array_equal(np.bincount(np.asarray(exc.post_index), minlength=500), 80)  # fixed in-degree
    np.testing.assert_array_equal(np.bincount(np.asarray(inh.post_index), minlength=500), 20)
    assert int(exc.pre_index.max()) < 400 <= int(inh.pre_index.min())
    np.testing.assert_array_equal(ext.pre_index, ext.post_index)  # one source per neuron
    assert float(exc.delay) == 1.5 and float(inh.weight) == pytest.approx(20.0 * float(exc.weight))
    assert float(inh.synapse.E) == -80.0 and float(exc.synapse.tau) == 5.0
    with pytest.raises(ValueError, match="in_degree"):
        hh.presets.brunel(n=100)
