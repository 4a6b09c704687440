"""Exponential midpoint: a second-order clock-driven solver for networks.

The second-order Rush–Larsen scheme (Perego & Veneziani 2009) for conditionally linear ODEs
dx/dt = a(x) + b(x) x: an exponential-Euler half step gives the midpoint x½; the full step
then solves the linear ODE frozen at the midpoint, dx/dt = a½ + b½ x, exactly from x0:

    x½ = x0 + (h/2) φ(b0 h/2) f(x0),    x1 = x0 + h φ(b½ h) (f(x½) + b½ (x0 − x½)),

with φ(z) = (eᶻ − 1)/z and b the Jacobian's diagonal. Second order, two evaluations of the
vector field per step, and like exponential Euler stable for any h however fast a gate is.
"""

from __future__ import annotations

import jax

from ._exponential_euler import AbstractExponentialSolver, phi1


class ExponentialMidpoint(AbstractExponentialSolver):
    """The exponential midpoint (second-order Rush–Larsen) method, as a Diffrax solver.

    Fields as `hh.ExponentialEuler` (`groups`, `diagonal`); fixed steps only, no error
    estimate. In a network run (`hh.simulate(net, ..., dt=0.1,
    solver="exponential_midpoint")`) spikes are delivered at their time within the step, so
    spike times converge at second order: halving `dt` quarters their error.

    Example:
        >>> sol = diffrax.diffeqsolve(diffrax.ODETerm(hh.vector_field), hh.ExponentialMidpoint(),
        ...                           t0=0.0, t1=50.0, dt0=0.02, y0=p.initial_state(), args=(p, s))
    """

    def order(self, terms):
        return 2

    def advance(self, terms, t0, h, y0, args):
        tree_map = jax.tree_util.tree_map
        f0, b0 = self.derivatives_and_diagonal(terms, t0, y0, args)
        y_half = tree_map(lambda y, f, b: y + (h / 2) * phi1(b * (h / 2)) * f, y0, f0, b0)
        f_half, b_half = self.derivatives_and_diagonal(terms, t0 + h / 2, y_half, args)
        return tree_map(lambda y, ym, f, b: y + h * phi1(b * h) * (f + b * (y - ym)), y0, y_half, f_half, b_half)
