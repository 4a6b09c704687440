"""Channel-built membranes: the Pospischil model and a user-written channel against scipy
integrations of their published equations, written out here independently of hh_jax."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import hh_jax as hh


def _vtrap(x, y):
    return y if abs(x / y) < 1e-9 else x / (np.exp(x / y) - 1.0)


def pospischil_rhs(t, y, p, current):
    """Pospischil et al. 2008, eqs. for I_Na, I_Kd, I_M, I_leak (paper's notation)."""
    V, m, h, n, q = y
    v = V - p["VT"]
    am = 0.32 * (13.0 - v) / (np.exp((13.0 - v) / 4.0) - 1.0) if abs(13.0 - v) > 1e-9 else 0.32 * 4.0
    bm = 0.28 * (v - 40.0) / (np.exp((v - 40.0) / 5.0) - 1.0) if abs(v - 40.0) > 1e-9 else 0.28 * 5.0
    ah = 0.128 * np.exp(-(v - 17.0) / 18.0)
    bh = 4.0 / (1.0 + np.exp(-(v - 40.0) / 5.0))
    an = 0.032 * (15.0 - v) / (np.exp((15.0 - v) / 5.0) - 1.0) if abs(15.0 - v) > 1e-9 else 0.032 * 5.0
    bn = 0.5 * np.exp(-(v - 10.0) / 40.0)
    q_inf = 1.0 / (1.0 + np.exp(-(V + 35.0) / 10.0))
    tau_q = p["tau_max"] / (3.3 * np.exp((V + 35.0) / 20.0) + np.exp(-(V + 35.0) / 20.0))
    i_ion = (p["gNa"] * m**3 * h * (V - p["ENa"]) + p["gK"] * n**4 * (V - p["EK"])
             + p["gM"] * q * (V - p["EK"]) + p["gL"] * (V - p["EL"]))
    return [(current(t) - i_ion) / p["Cm"], am * (1 - m) - bm * m, ah * (1 - h) - bh * h,
            an * (1 - n) - bn * n, (q_inf - q) / tau_q]


def _gates_at(V, p):
    v = V - p["VT"]
    am, bm = 0.32 * _vtrap(13.0 - v, 4.0), 0.28 * _vtrap(v - 40.0, 5.0)
    ah, bh = 0.128 * np.exp(-(v - 17.0) / 18.0), 4.0 / (1.0 + np.exp(-(v - 40.0) / 5.0))
    an, bn = 0.032 * _vtrap(15.0 - v, 5.0), 0.5 * np.exp(-(v - 10.0) / 40.0)
    return [am / (am + bm), ah / (ah + bh), an / (an + bn), 1.0 / (1.0 + np.exp(-(V + 35.0) / 10.0))]


def _scipy_spikes(rhs, y0, pieces, threshold=0.0):
    """Integrate piecewise between stimulus edges (Radau, rtol = atol = 1e-10) and locate
    upward threshold crossings with scipy's event finder."""
    event = lambda t, y: y[0] - threshold  # noqa: E731
    event.direction = 1.0
    spikes, y = [], np.asarray(y0, float)
    for a, b in pieces:
        sol = solve_ivp(rhs, (a, b), y, method="Radau", rtol=1e-10, atol=1e-10, events=event)
        spikes.extend(sol.t_events[0])
        y = sol.y[:, -1]
    return np.asarray(spikes)


PARAMS = dict(gNa=56.0, gK=6.0, gM=0.075, gL=0.0205, ENa=50.0, EK=-90.0, EL=-70.3, VT=-56.2, tau_max=608.0, Cm=1.0)


@pytest.mark.parametrize("amplitude", [1.0, 3.0])
def test_pospischil_matches_scipy_over_a_200ms_step(amplitude):
    p = hh.presets.pospischil()
    assert {k: float(getattr(p, k)) for k in PARAMS} == PARAMS
    step = hh.Step(start=20.0, stop=220.0, amplitude=amplitude)
    tr = hh.simulate(p, step, t1=240.0, v0=-70.0, ts=jnp.linspace(0.0, 240.0, 9601), rtol=1e-8, atol=1e-8)
    ours = hh.spike_times(tr.t, tr.V, threshold=0.0)
    current = lambda t: amplitude if 20.0 <= t < 220.0 else 0.0  # noqa: E731
    rhs = lambda t, y: pospischil_rhs(t, y, PARAMS, current)  # noqa: E731
    ref = _scipy_spikes(rhs, [-70.0] + _gates_at(-70.0, PARAMS), [(0.0, 20.0), (20.0, 220.0), (220.0, 240.0)])
    assert len(ref) >= 3 and len(ours) == len(ref)
    np.testing.assert_allclose(ours, ref, atol=0.05)
    assert np.max(np.abs(ours - ref)) < 1e-3  # in fact far tighter than the 0.05 ms asked


def test_pospischil_rest_is_where_currents_cancel():
    p = hh.presets.pospischil()
    v = float(p.resting_potential())
    rhs = pospischil_rhs(0.0, [v] + _gates_at(v, PARAMS), PARAMS, lambda t: 0.0)
    assert abs(rhs[0]) < 1e-10 and v == pytest.approx(-71.9, abs=0.05)  # −71.9 mV in the paper's RS cell


def test_hh_presets_built_from_channels_match_a_channel_membrane():
    p = hh.presets.neuron(celsius=20.0)
    same = hh.ChannelMembrane(
        {"k": hh.HHPotassium(g=36.0, E=-77.0, celsius=20.0), "na": hh.HHSodium(g=120.0, E=50.0, celsius=20.0),
         "leak": hh.Leak(g=0.3, E=-54.3)},
        Cm=1.0, v_rest=-65.0,
    )
    assert p.state_names == same.state_names == ("V", "n", "m", "h")
    s = hh.Step(start=1.0, stop=41.0, amplitude=9.0)
    a, b = hh.simulate(p, s, t1=50.0), hh.simulate(same, s, t1=50.0)
    np.testing.assert_allclose(a.V, b.V, atol=1e-9)


class AType(hh.InfTauChannel):
    """Connor–Stevens A-type K⁺ current, I = g a³ b (V − E), as in Dayan & Abbott (2001)."""

    g: float
    E: float = -75.0
    gates = ("a", "b")

    def inf_tau(self, V):
        a_inf = (0.0761 * jnp.exp((V + 94.22) / 31.84) / (1 + jnp.exp((V + 1.17) / 28.93))) ** (1 / 3)
        tau_a = 0.3632 + 1.158 / (1 + jnp.exp((V + 55.96) / 20.12))
        b_inf = (1 + jnp.exp((V + 53.3) / 14.54)) ** -4
        tau_b = 1.24 + 2.678 / (1 + jnp.exp((V + 50.0) / 16.027))
        return (a_inf, tau_a), (b_inf, tau_b)

    def current(self, V, gates):
        a, b = gates
        return self.g * a**3 * b * (V - self.E)


def _with_a_current(g_a):
    return hh.ChannelMembrane(
        {"k": hh.HHPotassium(g=36.0, E=-77.0), "na": hh.HHSodium(g=120.0, E=50.0),
         "a": AType(g=g_a), "leak": hh.Leak(g=0.3, E=-54.3)},
        Cm=1.0,
    )


def test_user_channel_plugs_into_simulate_and_matches_scipy():
    m = _with_a_current(20.0)
    assert m.state_names == ("V", "n", "m", "h", "a", "b")
    v_rest = float(m.resting_potential())
    s = hh.Step(start=5.0, stop=95.0, amplitude=20.0)
    tr = hh.simulate(m, s, t1=100.0, ts=jnp.linspace(0.0, 100.0, 4001), rtol=1e-8, atol=1e-8)
    ours = hh.spike_times(tr.t, tr.V, threshold=0.0)

    def rhs(t, y):
        V, n, mm, h, a, b = y
        v = V
        an, bn = 0.01 * _vtrap(-(v + 55), 10), 0.125 * np.exp(-(v + 65) / 80)
        am, bm = 0.1 * _vtrap(-(v + 40), 10), 4 * np.exp(-(v + 65) / 18)
        ah, bh = 0.07 * np.exp(-(v + 65) / 20), 1 / (np.exp(-(v + 35) / 10) + 1)
        a_inf = (0.0761 * np.exp((V + 94.22) / 31.84) / (1 + np.exp((V + 1.17) / 28.93))) ** (1 / 3)
        tau_a = 0.3632 + 1.158 / (1 + np.exp((V + 55.96) / 20.12))
        b_inf = (1 + np.exp((V + 53.3) / 14.54)) ** -4
        tau_b = 1.24 + 2.678 / (1 + np.exp((V + 50.0) / 16.027))
        i = (120 * mm**3 * h * (V - 50) + 36 * n**4 * (V + 77) + 20 * a**3 * b * (V + 75) + 0.3 * (V + 54.3))
        current = 20.0 if 5.0 <= t < 95.0 else 0.0
        return [current - i, an * (1 - n) - bn * n, am * (1 - mm) - bm * mm, ah * (1 - h) - bh * h,
                (a_inf - a) / tau_a, (b_inf - b) / tau_b]

    y0 = np.asarray(m.initial_state())
    assert abs(rhs(0.0, y0)[0]) < 1e-9  # the Newton rest really is a rest
    ref = _scipy_spikes(rhs, y0, [(0.0, 5.0), (5.0, 95.0), (95.0, 100.0)])
    assert len(ref) >= 3 and len(ours) == len(ref)
    np.testing.assert_allclose(ours, ref, atol=1e-3)
    # The A current delays the first spike and slows the firing, as it should.
    without = hh.simulate(_with_a_current(0.0), s, t1=100.0, ts=tr.t)
    plain = hh.spike_times(without.t, without.V, threshold=0.0)
    assert plain[0] < ours[0] - 0.5 and len(plain) > len(ours)
    assert v_rest < -60.0


def test_user_channel_parameter_is_fitted_by_path():
    jax.config.update("jax_enable_x64", True)
    s = hh.Step(start=5.0, stop=45.0, amplitude=20.0)
    ts = np.linspace(0.0, 50.0, 2001)
    V = np.asarray(hh.simulate(_with_a_current(20.0), s, t1=50.0, ts=jnp.asarray(ts), rtol=1e-10, atol=1e-10).V)
    target = hh.Target(stimulus=s, ts=ts, V=V)
    res = hh.fit(_with_a_current(12.0), target, free=("a.g", "leak.E"), steps=20, polish=10, progress=False)
    assert res.params.channel_map["a"].g == pytest.approx(20.0, rel=1e-3)
    assert res.params.channel_map["leak"].E == pytest.approx(-54.3, abs=0.01)
    assert set(res.stderr) == {"a.g", "leak.E"}
    with pytest.raises(ValueError, match="unknown parameter"):
        hh.fit(_with_a_current(12.0), target, free=("a.gbar",))


def test_gradient_from_exact_rest_needs_and_gets_a_stable_dtmax():
    """At exact equilibrium the error estimate is zero, so the adaptive step grows past the
    stability limit: the trace is unharmed but its derivative is not. `stable_dtmax` caps
    the step; the gradient then matches central differences."""
    v0 = float(hh.presets.pospischil().resting_potential())
    ts = jnp.linspace(0.0, 30.0, 31)

    def total(gL, dtmax):
        p = hh.presets.pospischil(gL=gL)
        return hh.simulate(p, None, t1=30.0, v0=v0, ts=ts, rtol=1e-9, atol=1e-9, dtmax=dtmax).V.sum()

    dtmax = hh.stable_dtmax(hh.presets.pospischil())
    assert 0.05 < dtmax < 0.5
    fd = (total(0.0205 + 1e-6, dtmax) - total(0.0205 - 1e-6, dtmax)) / 2e-6
    assert float(jax.grad(total)(0.0205, dtmax)) == pytest.approx(float(fd), rel=1e-4)
    uncapped = float(jax.grad(total)(0.0205, None))
    assert not (abs(uncapped - fd) < 1e-3 * abs(fd))  # without the cap it is wrong
