"""The membrane stage: rate functions (finite and correct everywhere, including the removable
singularities), channel-built membranes (the Pospischil model and a user-written channel against
scipy integrations of their published equations, written out here independently of hh_jax),
rest, voltage conventions and temperature."""

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import hh_jax as hh
from hh_jax._rates import exprel_inv


# --------------------------------------------------------------------------- rate functions

V_GRID = np.linspace(-200.0, 200.0, 40001)  # 0.01 mV spacing, hits -55 and -40 exactly


def test_exact_values_at_singularities():
    # vtrap limit: alpha_n(-55) = 0.01 * 10, alpha_m(-40) = 0.1 * 10 (NEURON convention).
    an, _, am, _, _, _ = hh.hh_rates(jnp.array([-55.0, -40.0]))
    assert float(an[0]) == pytest.approx(0.1, rel=1e-15)
    assert float(am[1]) == pytest.approx(1.0, rel=1e-15)


def test_exprel_inv_against_exact_rational_series():
    # x/(e^x - 1) = sum B_k x^k / k!, checked with exact Bernoulli numbers near 0, and against
    # numpy's closed form (accurate away from 0) elsewhere.
    bern = [Fraction(1), Fraction(-1, 2), Fraction(1, 6), Fraction(0), Fraction(-1, 30)]
    fact = [1, 1, 2, 6, 24]
    for x in [0.0, 1e-12, -1e-9, 3e-5, -9e-5, 2e-4, -7e-4]:
        series = float(sum(b * Fraction(x) ** k / f for k, (b, f) in enumerate(zip(bern, fact))))
        assert float(exprel_inv(x)) == pytest.approx(series, rel=1e-14)
    xs = np.array([-300.0, -30.0, -1.0, -0.01, 0.01, 1.0, 30.0, 300.0])
    with np.errstate(over="ignore"):
        closed = np.where(xs > 0, xs * np.exp(-xs) / -np.expm1(-xs), xs / np.expm1(xs))
    np.testing.assert_allclose(np.asarray(exprel_inv(jnp.asarray(xs))), closed, rtol=1e-14)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_rates_and_gradients_finite_on_wide_grid(dtype):
    v = jnp.asarray(V_GRID, dtype)
    rates = hh.hh_rates(v)
    for r in rates:
        assert r.dtype == dtype
        assert bool(jnp.all(jnp.isfinite(r)))
        assert bool(jnp.all(r >= 0))
    for k in range(6):
        g = jax.vmap(jax.grad(lambda x: hh.hh_rates(x)[k]))(v)
        assert bool(jnp.all(jnp.isfinite(g))), k


@pytest.mark.parametrize("v_sing, index", [(-55.0, 0), (-40.0, 2)])
def test_gradient_at_singularity_matches_finite_difference(v_sing, index):
    # Central finite differences of the closed-form numpy rate on either side of the singular
    # point (where the closed form is fine) give the true derivative there.
    def closed_form(v):
        x = -(v - v_sing)
        scale = 0.01 if index == 0 else 0.1
        return scale * x / (np.exp(x / 10.0) - 1.0)

    eps = 1e-3
    fd = (closed_form(v_sing + eps) - closed_form(v_sing - eps)) / (2 * eps)
    grad = jax.grad(lambda v: hh.hh_rates(v)[index])(jnp.asarray(v_sing))
    assert float(grad) == pytest.approx(fd, rel=1e-6)
    # Continuity: the value at the point equals the limit of neighbours.
    assert float(hh.hh_rates(jnp.asarray(v_sing))[index]) == pytest.approx(
        0.5 * (closed_form(v_sing + 1e-4) + closed_form(v_sing - 1e-4)), rel=1e-8
    )


def test_rates_match_closed_form_away_from_singularities():
    v = V_GRID[(np.abs(V_GRID + 55) > 0.5) & (np.abs(V_GRID + 40) > 0.5)]
    ours = np.asarray(hh.hh_rates(jnp.asarray(v)))
    an = 0.01 * -(v + 55) / (np.exp(-(v + 55) / 10) - 1)
    bn = 0.125 * np.exp(-(v + 65) / 80)
    am = 0.1 * -(v + 40) / (np.exp(-(v + 40) / 10) - 1)
    bm = 4 * np.exp(-(v + 65) / 18)
    ah = 0.07 * np.exp(-(v + 65) / 20)
    bh = 1 / (np.exp(-(v + 35) / 10) + 1)
    np.testing.assert_allclose(ours, np.stack([an, bn, am, bm, ah, bh]), rtol=1e-12)


def test_q10_factor():
    assert hh.q10_factor(6.3) == pytest.approx(1.0)
    assert hh.q10_factor(16.3) == pytest.approx(3.0)
    assert hh.q10_factor(20.0) == pytest.approx(3.0 ** 1.37)


# --------------------------------------------------------------------------- channel-built membranes

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


def test_gradient_from_exact_rest_matches_central_differences():
    """At exact equilibrium (the default start) the error estimate is zero, so unlimited
    adaptive steps grow past the explicit solver's stability limit: the trace is unharmed,
    but its derivative came back wrong by a factor of 1e6, or NaN, depending on how the
    resting potential happened to round. `simulate` caps the step at `hh.stable_dtmax`."""
    ts = jnp.linspace(0.0, 30.0, 31)
    at_rest = lambda gL: hh.simulate(hh.presets.pospischil(gL=gL), None, t1=30.0, ts=ts, rtol=1e-9, atol=1e-9).V.sum()  # noqa: E731
    # At rest until a step 5 ms in, at the default tolerances.
    ts_step = jnp.arange(0.0, 100.0, 0.1)
    stepped = lambda gNa: jnp.mean(hh.simulate(hh.presets.pospischil(gNa=gNa), hh.Step(start=5.0, stop=90.0, amplitude=1.0),  # noqa: E731
                                               t1=100.0, ts=ts_step, save="V").V ** 2)
    for loss, x, h, rel in ((at_rest, 0.0205, 1e-6, 1e-4), (stepped, 50.0, 1e-4, 2e-3)):
        value_and_grad = jax.jit(jax.value_and_grad(loss))  # its values also serve the differences
        fd = (value_and_grad(x + h)[0] - value_and_grad(x - h)[0]) / (2 * h)
        assert float(value_and_grad(x)[1]) == pytest.approx(float(fd), rel=rel)


@pytest.mark.parametrize("preset", ["neuron", "pospischil"])
def test_stable_dtmax_follows_the_spectral_radius_at_rest(preset):
    """`stable_dtmax` = 0.85 × Tsit5's real stability interval (h·ρ < 3.5) / ρ, with ρ the
    spectral radius of the Jacobian at rest: against numpy's eigenvalues (the estimate may
    err on the cautious side, by at most 15 %)."""
    p = getattr(hh.presets, preset)()
    y0 = p.initial_state()
    rho = np.max(np.abs(np.linalg.eigvals(np.asarray(jax.jacfwd(lambda y: p.derivatives(y, 0.0))(y0)))))
    assert 0.85 * 3.5 / rho / 1.15 < hh.stable_dtmax(p) <= 0.85 * 3.5 / rho * 1.01  # the interval: 3.5 to 1 %
    assert hh.stable_dtmax(p, safety=1.0) == pytest.approx(hh.stable_dtmax(p) / (0.85 * 3.5), rel=1e-2)


# --------------------------------------------------------------------------- rest, conventions, temperature

TS = jnp.linspace(0.0, 30.0, 3001)
STEP = hh.Step(start=2.0, stop=25.0, amplitude=10.0)


def spikes(tr, threshold=0.0):
    return np.asarray(hh.spike_times(tr.t, tr.V, threshold=threshold))


def test_rest_is_a_fixed_point():
    # With no input, the seed model stays at 0 mV (EL chosen for that) and NEURON's near -65.
    tr = hh.simulate(hh.presets.hh1952(), None, t1=50.0, ts=jnp.linspace(0, 50, 51))
    assert np.max(np.abs(np.asarray(tr.V))) < 0.01
    tr = hh.simulate(hh.presets.neuron(), None, t1=50.0, ts=jnp.linspace(0, 50, 51))
    assert np.max(np.abs(np.asarray(tr.V) + 65.0)) < 0.1

def test_conventions_differ_only_by_shift():
    # The seed model equals NEURON's `hh` with every potential shifted by 65 mV.
    shifted = hh.presets.neuron(ENa=115.0 - 65.0, EK=-12.0 - 65.0, EL=10.613 - 65.0)
    tight = dict(rtol=1e-10, atol=1e-10)
    a = hh.simulate(hh.presets.hh1952(), STEP, t1=30.0, ts=TS, **tight)
    b = hh.simulate(shifted, STEP, t1=30.0, ts=TS, **tight)
    assert np.max(np.abs(np.asarray(a.V - 65.0 - b.V))) < 1e-5

def test_temperature_speeds_up_gates():
    base = hh.simulate(hh.presets.neuron(), STEP, t1=30.0, ts=TS)
    warm = hh.simulate(hh.presets.neuron(celsius=20.0), STEP, t1=30.0, ts=TS)
    assert len(spikes(warm)) > len(spikes(base))
