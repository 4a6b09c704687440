"""Rush–Larsen: adaptive exponential solvers for channel membranes.

A conductance-based membrane is *conditionally linear*: every state component x obeys
dx/dt = a + b x with a and b depending on the other components only (a gate for a given V;
V for given gates). Freezing a and b over a step of length h gives the exact update
x ← x + h φ₁(b h)(a + b x), φ₁(z) = (eᶻ − 1)/z, stable and bounded however fast a gate
relaxes, where an explicit Runge–Kutta step is limited by the fastest gate (h |b| ≲ 3).

`hh.RushLarsen` offers two such methods (`method`) as one Diffrax solver, with b the Jacobian's
diagonal and f = dy/dt:

- "exprk3" (default, order 3): the explicit exponential Runge–Kutta method of stiff order 3 of
  Hochbruck & Ostermann (2005; Acta Numerica 2010, eq. 5.9 with c₂ = 1/3, c₃ = 2/3) for
  y' = L y + N(y), with L = diag(b(y₀)) frozen over the step. In increments
  Dᵢ = f(Uᵢ) − f₀ − L(Uᵢ − y₀), which cancel nothing:

      U₂ = y₀ + (h/3) φ₁(hL/3) f₀
      U₃ = y₀ + (2h/3) φ₁(2hL/3) f₀ + (4h/3) φ₂(2hL/3) D₂
      y₁ = y₀ + h φ₁(hL) f₀ + (3h/2) φ₂(hL) D₃

  with the second-order y₀ + h φ₁(hL) f₀ + 3h φ₂(hL) D₂ embedded (φ₂(z) = (φ₁(z) − 1)/z).
- "grl2" (order 2): the generalised Rush–Larsen method (Sundnes et al. 2009) in trapezoidal form,

      y*  = y₀ + h φ₁(b₀ h) f₀                                (exponential Euler)
      y₁  = y₀ + h φ₁(b̄ h) ((f₀ + f*)/2 + b*(y₀ − y*)/2),     b̄ = (b₀ + b*)/2

  (ā + b̄ y₀ for the averaged a = f − b y) with exponential Euler y* embedded.

The difference to the embedded solution drives Diffrax's step-size controller. f and b at
y₁ are carried to the next step (first same as last), so a step costs three evaluations of
f (order 3; one with b) or two of f and b (order 2), and the dense output is the cubic
Hermite polynomial through (y₀, f₀, y₁, f₁).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import diffrax
import equinox as eqx
import equinox.internal as eqxi
from equinox.internal import ω
import jax
import jax.numpy as jnp

from ._exponential_euler import _phi1, jvp_diagonal
from ._vector_field import vector_field

_tree_map = jax.tree_util.tree_map


def _membrane_diagonal(t, y, args):
    """(dy/dt, diagonal) of `hh.vector_field` in closed form: args = (membrane, stimulus)."""
    membrane, stimulus = args
    current = stimulus(t)
    return membrane.derivatives_and_diagonal(y, lambda V: current + jnp.zeros_like(V))


class RushLarsen(diffrax.AbstractSolver):
    """Adaptive exponential (Rush–Larsen type) solver of order 3 or 2, for conditionally
    linear ODEs such as channel membranes.

    Each step solves dx/dt = a + b x exactly for every component, with b the Jacobian's
    diagonal frozen at the step's start (order 3, exponential Runge–Kutta) or averaged over
    the step (order 2, generalised Rush–Larsen), so fast gates never limit the step by
    stability; an embedded lower-order solution drives Diffrax's step-size controller
    (`diffrax.PIDController`, also inside `diffrax.ClipStepSizeController` with `jump_ts`,
    as `hh.simulate` builds it). Dense output: cubic Hermite. Works under `jax.jit`,
    `jax.vmap` and `jax.grad` (`diffrax.RecursiveCheckpointAdjoint` or
    `diffrax.ForwardMode`), in float32 and float64. See the module docstring for the
    formulas.

    The derivative and its Jacobian diagonal come from `diagonal`, a function
    `(t, y, args) -> (dy/dt, diagonal)` consistent with the term's vector field, if given.
    Otherwise, for the term `hh.vector_field` (args `(membrane, stimulus)`), from the
    membrane's closed form (`derivatives_and_diagonal`); for any other vector field, from
    one forward-mode product per leading state row (as `hh.ExponentialEuler` does).

    **Fields:** `method`: "exprk3" (default, order 3) or "grl2" (order 2); `diagonal`: None
    or the function above.

    Example:
        >>> tr = hh.simulate(hh.presets.neuron(), hh.Step(start=1.0, stop=41.0, amplitude=9.0),
        ...                  t1=50.0, solver=hh.RushLarsen(), rtol=1e-5, atol=1e-5)
    """

    method: str = eqx.field(default="exprk3", static=True)
    diagonal: Callable | None = None
    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar = diffrax.ThirdOrderHermitePolynomialInterpolation.from_k

    def __check_init__(self):
        if self.method not in _METHODS:
            raise ValueError(f"hh.RushLarsen: `method` must be one of {sorted(_METHODS)}, got {self.method!r}.")

    def order(self, terms):
        return _METHODS[self.method][0]

    def _derivative_and_diagonal(self, terms, t, y, args):
        if self.diagonal is not None:
            return self.diagonal(t, y, args)
        if getattr(terms, "vector_field", None) is vector_field:
            return _membrane_diagonal(t, y, args)
        return jvp_diagonal(lambda x: terms.vf(t, x, args), y)

    def init(self, terms, t0, t1, y0, args):
        return self._derivative_and_diagonal(terms, t0, y0, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        # After a jump of the forcing, the carried derivative is the left limit: re-evaluate.
        f0, b0 = jax.lax.cond(
            eqxi.unvmap_any(made_jump),
            lambda: self._derivative_and_diagonal(terms, t0, y0, args),
            lambda: solver_state,
        )
        h = t1 - t0
        y1, y_error = _METHODS[self.method][1](self, terms, t0, h, y0, f0, b0, args)
        f1, b1 = self._derivative_and_diagonal(terms, t1, y1, args)
        k = _tree_map(lambda a, b: jnp.stack([h * a, h * b]), f0, f1)
        dense_info = dict(y0=y0, y1=y1, k=k)
        return y1, y_error, dense_info, (f1, b1), diffrax.RESULTS.successful

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)


def _phi12(z):
    """φ₁(z) = (eᶻ − 1)/z and φ₂(z) = (φ₁(z) − 1)/z, by their Taylor series (to z⁹, exact to
    rounding) for |z| < 0.1 where the closed forms cancel."""
    small = jnp.abs(z) < 0.1
    zs = jnp.where(small, 1.0, z)
    phi1 = jnp.expm1(zs) / zs
    phi2 = (phi1 - 1.0) / zs
    zt = jnp.where(small, z, 0.0)
    s1, s2 = 1.0 / 3628800.0, 1.0 / 39916800.0  # 1/10!, 1/11!
    for k in range(9, 0, -1):  # Horner: φ₁ = Σ zᵏ/(k+1)!, φ₂ = Σ zᵏ/(k+2)!
        s1 = 1.0 / math.factorial(k) + zt * s1
        s2 = 1.0 / math.factorial(k + 1) + zt * s2
    return jnp.where(small, s1, phi1), jnp.where(small, s2, phi2)


def _third_order(solver, terms, t0, h, y0, f0, L, args):
    def remainder(t, U):  # N(U) − N(y₀) for y' = L y + N(y)
        return _tree_map(lambda fu, f, l, u, y: fu - f - l * (u - y), terms.vf(t, U, args), f0, L, U, y0)

    p1a, _ = _tree_unzip(_tree_map(lambda l: _phi12(l * (h / 3.0)), L), y0)
    p1b, p2b = _tree_unzip(_tree_map(lambda l: _phi12(l * (2.0 * h / 3.0)), L), y0)
    p1c, p2c = _tree_unzip(_tree_map(lambda l: _phi12(l * h), L), y0)
    y, f = y0**ω, f0**ω
    U2 = (y + (h / 3.0) * p1a**ω * f).ω
    D2 = remainder(t0 + h / 3.0, U2) ** ω
    U3 = (y + (2.0 * h / 3.0) * p1b**ω * f + (4.0 * h / 3.0) * p2b**ω * D2).ω
    D3 = remainder(t0 + 2.0 * h / 3.0, U3) ** ω
    y1 = y + h * p1c**ω * f + (1.5 * h) * p2c**ω * D3
    return y1.ω, (h * p2c**ω * (1.5 * D3 - 3.0 * D2)).ω


def _second_order(solver, terms, t0, h, y0, f0, b0, args):
    y_euler = _tree_map(lambda y, f, b: y + h * _phi1(b * h) * f, y0, f0, b0)
    f_e, b_e = solver._derivative_and_diagonal(terms, t0 + h, y_euler, args)

    def trapezoid(y, ye, fa, fb, ba, bb):
        return y + h * _phi1(0.5 * (ba + bb) * h) * (0.5 * (fa + fb) + 0.5 * bb * (y - ye))

    y1 = _tree_map(trapezoid, y0, y_euler, f0, f_e, b0, b_e)
    return y1, _tree_map(lambda a, b: a - b, y1, y_euler)


def _tree_unzip(pairs, like):
    """A tree of pairs (shaped like `like`) as a pair of trees."""
    treedef = jax.tree_util.tree_structure(like)
    leaves = treedef.flatten_up_to(pairs)
    return tuple(jax.tree_util.tree_unflatten(treedef, [p[i] for p in leaves]) for i in range(2))


# method: (order, one step (y₁, error estimate))
_METHODS = {"exprk3": (3, _third_order), "grl2": (2, _second_order)}
