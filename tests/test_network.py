"""Networks: synapses, short- and long-term plasticity, gradients, batches and bad input,
each against an independent reference (the event-based recurrences, the exponential STDP
window, scipy, central finite differences)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import hh_jax as hh


def _pair(synapse, weight=0.1, stp=None, stdp=None):
    pop = lambda: hh.Population(hh.presets.neuron(), 1)  # noqa: E731
    proj = hh.Projection("pre", "post", synapse, weight=[[weight]], stp=stp, stdp=stdp)
    return hh.Network({"pre": pop(), "post": pop()}, {"syn": proj})


def _train_20hz(count=10):
    return hh.PulseTrain(start=10.0, period=50.0, width=1.0, amplitude=20.0, count=count)


def tm_recurrence(spike_times, U, tau_rec, tau_facil=None):
    """The event-based Tsodyks–Markram recurrence (Markram, Wang & Tsodyks 1998): released
    amounts u⁺x⁻ at each spike."""
    x, u, released, prev = 1.0, 0.0, [], None
    for t in spike_times:
        if prev is not None:
            gap = t - prev
            x = 1.0 - (1.0 - x) * np.exp(-gap / tau_rec)
            u = u * np.exp(-gap / tau_facil) if tau_facil else 0.0
        u = u + U * (1.0 - u) if tau_facil else U
        released.append(u * x)
        x -= u * x
        prev = t
    return np.array(released)


def _peaks(t, g, spikes, window=10.0):
    return np.array([g[(t > s) & (t < s + window)].max() for s in spikes])


STP_CASES = {
    "depressing": dict(U=0.5, tau_rec=800.0),
    "facilitating": dict(U=0.1, tau_rec=100.0, tau_facil=1000.0),
}


@pytest.mark.parametrize("case", sorted(STP_CASES))
@pytest.mark.parametrize("dt", [None, 0.025])
def test_stp_peaks_follow_event_based_recurrence(case, dt):
    params = STP_CASES[case]
    net = _pair(hh.ExpSynapse(tau=5.0, E=0.0), stp=hh.TsodyksMarkram(**params))
    tr = hh.simulate(net, {"pre": _train_20hz()}, t1=520.0, ts=jnp.arange(0.0, 520.0, 0.025),
                     save=("syn.g",), dt=dt)
    spikes = np.asarray(tr.spikes["pre"].times[0])
    spikes = spikes[np.isfinite(spikes)]
    assert spikes.size == 10
    peaks = _peaks(np.asarray(tr.t), np.asarray(tr["syn.g"][0]), spikes)
    expected = tm_recurrence(spikes, **params)
    ratio = (peaks / peaks[0]) / (expected / expected[0])
    assert np.max(np.abs(ratio - 1.0)) < 0.01, ratio
    # The released amount itself: the first peak is w·U less the decay during the pulse.
    assert peaks[0] == pytest.approx(0.1 * params["U"], rel=0.03)


@pytest.mark.parametrize("case", sorted(STP_CASES))
def test_stp_on_kinetic_ampa_synapse_follows_recurrence(case):
    """The released amount (the transmitter's efficacy q) follows the recurrence for the
    published AMPA kinetics; the peak conductance does too where binding is far from
    saturation (Tmax 0.01 mM). At Tmax = 1 mM receptor saturation compresses the peaks,
    as the kinetic model says it should."""
    params = STP_CASES[case]
    for tmax in (1.0, 0.01):
        net = _pair(hh.AMPA(Tmax=tmax), weight=0.05, stp=hh.TsodyksMarkram(**params))
        tr = hh.simulate(net, {"pre": _train_20hz()}, t1=520.0, ts=jnp.arange(0.0, 520.0, 0.025),
                         save=("syn.r", "syn.q"))
        spikes = np.asarray(tr.spikes["pre"].times[0])
        spikes = spikes[np.isfinite(spikes)]
        t = np.asarray(tr.t)
        expected = tm_recurrence(spikes, **params)
        released = _peaks(t, np.asarray(tr["syn.q"][0]), spikes, window=3.0)
        np.testing.assert_allclose(released, expected, rtol=1e-3)
        if tmax == 0.01:
            peaks = _peaks(t, np.asarray(tr["syn.r"][0]), spikes)
            ratio = (peaks / peaks[0]) / (expected / expected[0])
            assert np.max(np.abs(ratio - 1.0)) < 0.05, ratio


@pytest.mark.parametrize("gap", [-50.0, -20.0, -10.0, -5.0, -2.0, -1.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0])
def test_stdp_single_pair_follows_exponential_window(gap):
    rule = hh.STDP(A_plus=0.01, A_minus=0.012, tau_plus=16.8, tau_minus=33.7)
    net = _pair(hh.ExpSynapse(tau=5.0, E=0.0), weight=0.05, stdp=rule)
    t_pre = 20.0 + max(0.0, -gap)
    stim = {"pre": hh.Pulse(start=t_pre, stop=t_pre + 0.5, amplitude=40.0),
            "post": hh.Pulse(start=t_pre + gap, stop=t_pre + gap + 0.5, amplitude=40.0)}
    tr = hh.simulate(net, stim, t1=150.0, ts=jnp.arange(0.0, 150.0, 0.01), save=("pre.V", "post.V", "syn.w"))
    assert int(tr.spikes["pre"].counts[0]) == 1 and int(tr.spikes["post"].counts[0]) == 1
    measured = float(tr.spikes["post"].times[0, 0] - tr.spikes["pre"].times[0, 0])
    change = float(tr["syn.w"][0, 0, -1] - tr["syn.w"][0, 0, 0])
    window = 0.01 * np.exp(-measured / 16.8) if measured > 0 else -0.012 * np.exp(measured / 33.7)
    assert change == pytest.approx(window, rel=0.05)
    assert change == pytest.approx(window, rel=0.005)  # in fact much closer


@pytest.mark.parametrize("dense", [True, False])
def test_stdp_jumps_give_the_exponential_window_exactly(dense):
    """The rule's own state, decay and jump, without a solve: a presynaptic spike, the traces'
    exact decay over Δt, a postsynaptic spike (and the reverse order) change the weight by
    A+ exp(−Δt/τ+) and −A− exp(−Δt/τ−), the event-based window (Song et al. 2000)."""
    rule = hh.STDP(A_plus=0.01, A_minus=0.012, tau_plus=16.8, tau_minus=33.7)
    if dense:  # 2 → 1 only: the absent connections must stay absent
        proj = hh.Projection("A", "B", hh.ExpSynapse(), weight=[[0.0], [0.05]], stdp=rule)
    else:
        proj = hh.Projection("A", "B", hh.ExpSynapse(), weight=0.05, edges=([1], [0]), stdp=rule)
    assert proj.state_names == ("g", "a_pre", "a_post", "w")
    spike_pre, spike_post, none = jnp.array([0.0, 1.0]), jnp.array([1.0]), jnp.array([0.0])
    for gap in (3.0, 12.0):
        for first, second, change in (
            ((spike_pre, none), (none, spike_post), 0.01 * np.exp(-gap / 16.8)),
            ((none, spike_post), (spike_pre, none), -0.012 * np.exp(-gap / 33.7)),
        ):
            st = proj.initial_state(2, 1, jnp.float64)
            st.update(rule.jump(st, *first, proj))
            rate = rule.relaxation_diagonal()  # the traces decay exponentially between spikes
            st = {k: st[k] * jnp.exp(rate[k] * gap) if k in rate else st[k] for k in st}
            st.update(rule.jump(st, *second, proj))
            w = np.asarray(proj.weights(st)).ravel()
            np.testing.assert_allclose(w[-1] - 0.05, change, rtol=1e-12)
            assert np.all(w[:-1] == 0.0)
    d = rule.derivatives(st, jnp.zeros(2), jnp.zeros(1), proj)
    relax = rule.relaxation(st)
    assert all(np.array_equal(d[k], relax[k]) for k in rule.state_names)


def test_stdp_can_be_switched_off_and_bounds_hold():
    off = _pair(hh.ExpSynapse(), weight=0.05,
                stdp=hh.STDP(A_plus=0.01, A_minus=0.012, enabled=False))
    assert "syn.w" not in off.variable_names()
    rule = hh.STDP(A_plus=0.5, A_minus=0.0, w_max=0.06)
    on = _pair(hh.ExpSynapse(), weight=0.05, stdp=rule)
    stim = {"pre": hh.Pulse(start=5.0, stop=5.5, amplitude=40.0),
            "post": hh.Pulse(start=8.0, stop=8.5, amplitude=40.0)}
    tr = hh.simulate(on, stim, t1=40.0, save=("syn.w",))
    assert float(tr["syn.w"][0, 0, -1]) == pytest.approx(0.06, abs=1e-6)  # capped at w_max


def _ring(n=10, dense=False, seed=0):
    rng = np.random.default_rng(seed)
    pre = np.repeat(np.arange(n), 3)
    post = (pre + rng.integers(1, n, size=pre.size)) % n
    w = rng.uniform(0.02, 0.06, size=pre.size)
    syn = hh.ExpSynapse(tau=3.0, E=0.0)
    if dense:
        W = np.zeros((n, n))
        np.add.at(W, (pre, post), w)
        proj = hh.Projection("E", "E", syn, weight=W)
    else:
        proj = hh.Projection("E", "E", syn, weight=w, edges=(pre, post))
    pop = hh.Population(hh.presets.neuron(), n)
    return hh.Network({"E": pop}, {"ee": proj}), w


def _drive(n=10):
    amps = jnp.where(jnp.arange(n) < 3, 12.0, 0.0)
    return {"E": hh.Step(start=2.0, stop=30.0, amplitude=amps)}


def test_dense_and_sparse_connectivity_agree():
    ts = jnp.linspace(0.0, 40.0, 801)
    sparse, _ = _ring()
    dense, _ = _ring(dense=True)
    a = hh.simulate(sparse, _drive(), t1=40.0, ts=ts, save="V", rtol=1e-8, atol=1e-8)
    b = hh.simulate(dense, _drive(), t1=40.0, ts=ts, save="V", rtol=1e-8, atol=1e-8)
    assert int(a.spikes["E"].counts.sum()) > 3  # the drive spreads through the network
    np.testing.assert_allclose(a["E.V"], b["E.V"], atol=1e-4)


def test_weight_gradient_from_rest_matches_central_differences():
    """A network starting at rest (the default) is at exact equilibrium until its input
    arrives, so unlimited adaptive steps outgrew the stability limit and the gradient came
    back as 1e43 (Pospischil cell driven through a synapse, XLA optimisation level 0); the
    default step cap at the neurons' stability limit keeps it right."""
    pops = {"pre": hh.Population(hh.presets.neuron(), 1), "post": hh.Population(hh.presets.pospischil(), 1)}
    drive = {"pre": hh.Step(start=20.0, stop=60.0, amplitude=10.0)}
    ts = jnp.arange(0.0, 80.0, 0.5)

    def mean_v(w):
        net = hh.Network(pops, {"s": hh.Projection("pre", "post", hh.ExpSynapse(tau=5.0, E=0.0), weight=jnp.reshape(w, (1, 1)))})
        return jnp.mean(hh.simulate(net, drive, t1=80.0, ts=ts, save=("post.V",), rtol=1e-8, atol=1e-8)["post.V"])

    value_and_grad = jax.jit(jax.value_and_grad(mean_v))  # its values also serve the differences
    w, h = 0.01, 1e-5
    fd = (value_and_grad(w + h)[0] - value_and_grad(w - h)[0]) / (2 * h)
    assert float(value_and_grad(w)[1]) == pytest.approx(float(fd), rel=1e-5)


def test_weight_gradients_match_central_differences_in_10_neuron_network():
    net, w0 = _ring()
    ts = jnp.linspace(0.0, 40.0, 401)
    opts = dict(t1=40.0, ts=ts, save=("E.V",), rtol=1e-10, atol=1e-10, max_steps=200_000)

    def loss(w):
        proj = net.projections["ee"]
        new = hh.Projection("E", "E", proj.synapse, weight=w, edges=(proj.pre_index, proj.post_index))
        tr = hh.simulate(hh.Network(net.populations, {"ee": new}), _drive(), **opts)
        return jnp.mean(tr["E.V"][3:])  # the neurons driven only through synapses

    w = jnp.asarray(w0)
    grad = np.asarray(jax.jit(jax.grad(loss))(w))  # one program (outside jit: forward and backward passes apart)
    checked = 0
    for k in np.argsort(-np.abs(grad))[:6]:
        h = 1e-4 * float(w[k])
        fd = (float(loss(w.at[k].add(h))) - float(loss(w.at[k].add(-h)))) / (2 * h)
        assert grad[k] == pytest.approx(fd, rel=0.01), (k, grad[k], fd)
        checked += 1
    assert checked == 6 and np.max(np.abs(grad)) > 0


def test_spikes_only_adaptive_run_under_jit_returns_spikes_and_raises_on_failure():
    """`save=()` under jit: nothing but the spikes comes back, so a failed solve's error must
    ride on them (it used to have no array to ride on, and the trace failed to build)."""
    pops = {"inp": hh.Population(hh.presets.neuron(), 1), "out": hh.Population(hh.presets.neuron(), 1)}
    net = hh.Network(pops, {"w": hh.Projection("inp", "out", hh.ExpSynapse(tau=5.0, E=0.0), weight=[[0.5]])})
    opts = dict(t1=50.0, ts=jnp.linspace(0.0, 50.0, 11), save=())

    def counts(amplitude, max_steps):
        return hh.simulate(net, {"inp": hh.Step(start=1.0, amplitude=amplitude)}, max_steps=max_steps, **opts).spikes["inp"].counts

    eager = hh.simulate(net, {"inp": hh.Step(start=1.0, amplitude=10.0)}, **opts)
    assert eager.values == {} and int(eager.spikes["inp"].counts[0]) > 0
    np.testing.assert_array_equal(jax.jit(lambda a: counts(a, 4096))(10.0), eager.spikes["inp"].counts)
    with pytest.raises(RuntimeError, match="max_steps"):
        jax.block_until_ready(jax.jit(lambda a: counts(a, 20))(10.0))


def test_batch_of_networks_under_vmap():
    net, w0 = _ring()
    ts = jnp.linspace(0.0, 30.0, 301)

    def run(scale):
        proj = net.projections["ee"]
        new = hh.Projection("E", "E", proj.synapse, weight=scale * proj.weight,
                            edges=(proj.pre_index, proj.post_index))
        return hh.simulate(hh.Network(net.populations, {"ee": new}), _drive(), t1=30.0, ts=ts,
                           save=("E.V",))["E.V"]

    scales = jnp.array([0.0, 1.0, 2.0])
    batched = jax.vmap(run)(scales)
    assert batched.shape == (3, 10, 301)
    for i, s in enumerate(scales):
        np.testing.assert_allclose(batched[i], run(s), atol=1e-3)
    # No coupling: the undriven neurons stay at rest; with coupling they depolarise.
    assert float(jnp.max(batched[0, 3:])) < -64.0 < float(jnp.max(batched[2, 3:]))


# --------------------------------------------------------------------------- scipy reference


def _hh_rates(V):
    an = 0.01 * (V + 55.0) / (1.0 - np.exp(-(V + 55.0) / 10.0))
    bn = 0.125 * np.exp(-(V + 65.0) / 80.0)
    am = 0.1 * (V + 40.0) / (1.0 - np.exp(-(V + 40.0) / 10.0))
    bm = 4.0 * np.exp(-(V + 65.0) / 18.0)
    ah = 0.07 * np.exp(-(V + 65.0) / 20.0)
    bh = 1.0 / (1.0 + np.exp(-(V + 35.0) / 10.0))
    return an, bn, am, bm, ah, bh


def _scipy_kinetic_pair(alpha, beta, E, mg, gmax, t1, t_on, t_off, amp):
    """Two NEURON-convention HH neurons; the first drives the second through a kinetic
    synapse (Destexhe et al. 1994, with the Jahr–Stevens block if mg) — from the papers."""

    def membrane(V, n, m, h, I):
        an, bn, am, bm, ah, bh = _hh_rates(V)
        i_ion = 120 * m**3 * h * (V - 50) + 36 * n**4 * (V + 77) + 0.3 * (V + 54.3)
        return [I - i_ion, an * (1 - n) - bn * n, am * (1 - m) - bm * m, ah * (1 - h) - bh * h]

    def rhs(t, y):
        V1, n1, m1, h1, V2, n2, m2, h2, r = y
        I1 = amp if t_on <= t < t_off else 0.0
        T = 1.0 / (1.0 + np.exp(-(V1 - 2.0) / 5.0))
        B = 1.0 / (1.0 + np.exp(-0.062 * V2) * mg / 3.57) if mg else 1.0
        I2 = gmax * r * B * (E - V2)
        return membrane(V1, n1, m1, h1, I1) + membrane(V2, n2, m2, h2, I2) + [alpha * T * (1 - r) - beta * r]

    V0 = -65.0
    an, bn, am, bm, ah, bh = _hh_rates(V0)
    g0 = [V0, an / (an + bn), am / (am + bm), ah / (ah + bh)]
    ts = np.linspace(0.0, t1, 2001)
    sol = solve_ivp(rhs, (0.0, t1), g0 + g0 + [0.0], t_eval=ts, method="LSODA", rtol=1e-10,
                    atol=1e-10, max_step=0.02)
    return ts, sol.y[4], sol.y[8]


@pytest.mark.parametrize("kind", ["AMPA", "NMDA", "GABAA"])
def test_kinetic_synapses_match_scipy(kind):
    syn = {"AMPA": hh.AMPA(), "NMDA": hh.NMDA(), "GABAA": hh.GABAA()}[kind]
    gmax = {"AMPA": 0.05, "NMDA": 0.05, "GABAA": 0.1}[kind]
    ts, V2, r = _scipy_kinetic_pair(float(syn.alpha), float(syn.beta), float(syn.E),
                                    syn.mg, gmax, 40.0, 5.0, 6.0, 20.0)
    net = _pair(syn, weight=gmax)
    tr = hh.simulate(net, {"pre": hh.Pulse(start=5.0, stop=6.0, amplitude=20.0)}, t1=40.0,
                     ts=jnp.asarray(ts), save=("post.V", "syn.r"), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(tr["syn.r"][0], r, atol=1e-6)
    np.testing.assert_allclose(tr["post.V"][0], V2, atol=1e-5)
    assert abs(V2.max() - V2[0]) > 0.05  # a visible postsynaptic potential


def test_fixed_steps_converge_to_the_adaptive_solution():
    net, _ = _ring()
    adaptive = hh.simulate(net, _drive(), t1=40.0, ts=jnp.linspace(0.0, 40.0, 401), save="V",
                           rtol=1e-9, atol=1e-9)
    ref = np.asarray(adaptive.spikes["E"].times)
    errors = []
    for dt in (0.02, 0.01):
        fixed = hh.simulate(net, _drive(), t1=40.0, dt=dt, save=())
        got = np.asarray(fixed.spikes["E"].times)
        np.testing.assert_array_equal(np.isfinite(got), np.isfinite(ref))
        errors.append(np.nanmax(np.abs(got - ref)))
    assert errors[1] < 0.6 * errors[0] and errors[1] < 0.3  # first order: halves with dt


@pytest.mark.parametrize("dt", [None, 0.025])
def test_float32_network_runs_in_float32_and_agrees(dt):
    params = STP_CASES["depressing"]
    with jax.enable_x64(False):
        ts = jnp.arange(0.0, 220.0, 0.025)  # float32 times: off the exact step grid by rounding
        net = _pair(hh.ExpSynapse(tau=5.0, E=0.0), stp=hh.TsodyksMarkram(**params))
        tr = hh.simulate(net, {"pre": _train_20hz(4)}, t1=220.0, ts=ts, save=("syn.g",), dt=dt)
        assert tr["syn.g"].dtype == jnp.float32
        spikes = np.asarray(tr.spikes["pre"].times[0], np.float64)
    spikes = spikes[np.isfinite(spikes)]
    assert spikes.size == 4
    peaks = _peaks(np.asarray(tr.t, np.float64), np.asarray(tr["syn.g"][0], np.float64), spikes)
    expected = tm_recurrence(spikes, **params)
    np.testing.assert_allclose(peaks / peaks[0], expected / expected[0], rtol=0.01)


def test_cobahh_preset_matches_the_published_network():
    model = hh.presets.cobahh(n=1000, seed=1)
    net, init = model.network, model.init
    exc, inh = net.projections["exc"], net.projections["inh"]
    for proj, n_pre in ((exc, 800), (inh, 200)):
        n_edges = proj.pre_index.shape[0]
        expected = 0.02 * n_pre * 1000
        assert abs(n_edges - expected) < 5 * np.sqrt(expected)
    assert int(exc.pre_index.max()) < 800 <= int(inh.pre_index.min())
    assert float(exc.weight) == pytest.approx(6e-6 / 2e-4)  # 6 nS on 20,000 µm²
    assert float(inh.weight) == pytest.approx(67e-6 / 2e-4)
    assert float(exc.synapse.tau) == 5.0 and float(inh.synapse.E) == -80.0
    assert np.mean(init["P.V"]) == pytest.approx(-65.0, abs=0.6)


# --------------------------------------------------------------------------- bad input


def test_bad_network_input_raises_value_errors():
    pop = hh.Population(hh.presets.neuron(), 3)
    syn = hh.ExpSynapse()
    edges = (np.array([0, 1]), np.array([1, 3]))
    with pytest.raises(ValueError, match="post indices must lie in"):
        hh.Network({"A": pop}, {"p": hh.Projection("A", "A", syn, weight=0.1, edges=edges)})
    with pytest.raises(ValueError, match="one entry per edge"):
        hh.Projection("A", "A", syn, weight=[0.1, 0.2, 0.3], edges=(np.array([0, 1]), np.array([1, 2])))
    with pytest.raises(ValueError, match="tau"):
        hh.ExpSynapse(tau=-5.0)
    with pytest.raises(ValueError, match="tau_rec"):
        hh.TsodyksMarkram(U=0.5, tau_rec=-1.0)
    with pytest.raises(ValueError, match="tau_plus"):
        hh.STDP(A_plus=0.01, A_minus=0.01, tau_plus=-20.0)
    with pytest.raises(ValueError, match="does not exist"):
        hh.Network({"A": pop}, {"p": hh.Projection("A", "B", syn, weight=np.zeros((3, 3)))})
    with pytest.raises(ValueError, match="shape"):
        hh.Network({"A": pop}, {"p": hh.Projection("A", "A", syn, weight=np.zeros((3, 2)))})
    with pytest.raises(ValueError, match="U"):
        hh.TsodyksMarkram(U=1.5, tau_rec=100.0)
    with pytest.raises(ValueError, match="weight"):
        hh.Projection("A", "A", syn, weight=-np.ones((3, 3)))
    net = hh.Network({"A": pop})
    with pytest.raises(ValueError, match="unknown population"):
        hh.simulate(net, {"B": hh.Step(start=0.0, amplitude=1.0)}, t1=10.0)
    with pytest.raises(ValueError, match="unknown variable"):
        hh.simulate(net, None, t1=10.0, save=("A.Q",))
    with pytest.raises(ValueError, match="whole number of steps"):
        hh.simulate(net, None, t1=10.05, dt=0.1)
    with pytest.raises(ValueError, match="chunk_size"):
        hh.simulate(net, None, t1=10.0, chunk_size=10)
    with pytest.raises(TypeError, match="dict"):
        hh.simulate(net, hh.Step(start=0.0, amplitude=1.0), t1=10.0)


# --------------------------------------------------------------------------- closed forms


def test_closed_form_jacobian_diagonals_match_forward_mode():
    """The exponential-Euler diagonals given in closed form (membranes, channels, synapses)
    equal the generic forward-mode ones of the base classes."""
    y = hh.presets.pospischil().initial_state(jnp.linspace(-80.0, 20.0, 7))
    y = y.at[1:].set(jnp.linspace(0.1, 0.9, 7))
    m = hh.presets.pospischil()
    current = lambda V: 0.3 * (0.0 - V)  # noqa: E731  (a synaptic-like, V-dependent current)
    f_closed, b_closed = m.derivatives_and_diagonal(y, current)
    f_generic, b_generic = hh.AbstractMembrane.derivatives_and_diagonal(m, y, current)
    np.testing.assert_allclose(f_closed, f_generic, rtol=1e-12)
    np.testing.assert_allclose(b_closed, b_generic, rtol=1e-10, atol=1e-12)
    ch = hh.HHSodium(g=120.0, E=50.0)
    gates = (y[1], y[2])
    np.testing.assert_allclose(ch.gate_derivatives_and_diagonal(y[0], gates)[1],
                               hh.AbstractChannel.gate_derivatives_and_diagonal(ch, y[0], gates)[1], rtol=1e-12)
    for syn in (hh.AMPA(), hh.ExpSynapse(tau=7.0)):
        state = {k: jnp.linspace(0.0, 0.5, 7) for k in syn.pre_states + syn.post_states}
        closed = syn.diagonal(state, y[0], 0.8)
        generic = hh.AbstractSynapse.diagonal(syn, state, y[0], 0.8)
        for k in state:
            np.testing.assert_allclose(jnp.broadcast_to(closed[k], (7,)), generic[k], rtol=1e-12)


def test_exponential_euler_solves_a_single_neuron_with_diffrax():
    import diffrax

    p = hh.presets.neuron()
    s = hh.Step(start=1.0, stop=41.0, amplitude=9.0)
    ref = hh.simulate(p, s, t1=50.0, ts=jnp.linspace(0.0, 50.0, 2001), rtol=1e-10, atol=1e-10)
    t_ref = np.asarray(hh.spike_times(ref.t, ref.V))
    errors = []
    for dt in (0.01, 0.005):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(hh.vector_field), hh.ExponentialEuler(), t0=0.0, t1=50.0, dt0=jnp.asarray(dt),
            y0=p.initial_state(), args=(p, s), saveat=diffrax.SaveAt(ts=jnp.linspace(0.0, 50.0, 2001)),
            max_steps=20_000,
        )
        got = np.asarray(hh.spike_times(sol.ts, sol.ys[:, 0]))
        assert got.shape == t_ref.shape
        errors.append(np.max(np.abs(got - t_ref)))
    assert errors[1] < 0.6 * errors[0] and errors[1] < 0.1  # first order, converging


def test_dense_stdp_keeps_absent_connections_absent_and_traces_under_vmap():
    rule = hh.STDP(A_plus=0.01, A_minus=0.012, w_min=0.02, w_max=0.2)
    pop = hh.Population(hh.presets.neuron(), 2)
    W = jnp.array([[0.0, 0.1], [0.0, 0.0]])
    net = hh.Network({"A": pop}, {"p": hh.Projection("A", "A", hh.ExpSynapse(), weight=W, stdp=rule)})
    state = net.initial_state()
    np.testing.assert_array_equal(net.read(state, "p.w"), [[0.0, 0.1], [0.0, 0.0]])
    tr = hh.simulate(net, {"A": hh.Pulse(start=2.0, stop=2.5, amplitude=jnp.array([40.0, 0.0]))}, t1=20.0,
                     save=("p.w",), dt=0.025)
    final = np.asarray(tr.weights["p"])
    assert final[0, 0] == final[1, 0] == final[1, 1] == 0.0 and 0.02 <= final[0, 1] <= 0.2
    rules = jax.vmap(lambda hi: hh.STDP(A_plus=0.01, A_minus=0.01, w_max=hi))(jnp.array([0.5, 1.0]))
    assert rules.w_max.shape == (2,)
    with pytest.raises(ValueError, match="w_min"):
        hh.STDP(A_plus=0.01, A_minus=0.01, w_min=-1.0)


def test_edge_table_falls_back_for_hubs_and_agrees_otherwise():
    from hh_jax._delivery import out_edge_table

    pre = np.r_[np.zeros(1000, int), np.arange(1, 1000)]  # one hub, 999 single edges
    assert out_edge_table(pre, 1000) is None
    table = out_edge_table(np.array([2, 0, 2, 1, 2]), 4)
    assert table.shape == (4, 3)
    assert sorted(table[2].tolist()) == [0, 2, 4] and table[3].tolist() == [5, 5, 5]


def test_more_bad_network_input():
    pop = hh.Population(hh.presets.neuron(), 3)
    net = hh.Network({"A": pop})
    with pytest.raises(ValueError, match="init"):
        hh.simulate(net, None, t1=5.0, init={"A.V": np.zeros(4)})
    with pytest.raises(ValueError, match="threshold"):
        hh.Population(hh.presets.neuron(), 3, threshold=np.zeros(2))
    with pytest.raises(ValueError, match="max_spikes"):
        hh.simulate(net, None, t1=5.0, max_spikes=True)
    with pytest.raises(ValueError, match="excitatory_fraction"):
        hh.presets.cobahh(n=100, excitatory_fraction=1.0)
    empty = hh.Projection("A", "A", hh.ExpSynapse(), weight=0.1, edges=([], []))
    assert empty.pre_index.shape == (0,)
