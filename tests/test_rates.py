"""Rate functions: finite and correct everywhere, including the removable singularities."""

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hh_jax as hh
from hh_jax._rates import exprel_inv

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
