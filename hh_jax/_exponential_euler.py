"""Exponential Euler: the clock-driven solver for large networks (as Brian2 and NEST use).

For an ODE whose every component is linear in itself given the others — dx/dt = a + b x, as
for gating variables, the membrane potential of a conductance-based model and decaying
synaptic conductances — one step of length h is x ← x + h φ(b h) f(x), with
φ(z) = (eᶻ − 1)/z and b = ∂f/∂x the Jacobian's diagonal. It is exact for frozen a and b,
first order overall, and stable for any h however fast a gate is.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import ClassVar

import diffrax
import jax
import jax.numpy as jnp


def phi1(z):
    """(eᶻ − 1)/z, continued by 1 + z/2 + z²/6 near 0."""
    small = jnp.abs(z) < 1e-5
    z_safe = jnp.where(small, 1.0, z)
    return jnp.where(small, 1.0 + z / 2.0 + z * z / 6.0, jnp.expm1(z_safe) / z_safe)


def _row_groups(y):
    """One tangent group per leading row of every leaf (per entry of a 1-D leaf): exact for
    any model whose state rows are variables and whose trailing axes are neurons."""
    leaves, treedef = jax.tree_util.tree_flatten(y)
    groups = []
    for i, leaf in enumerate(leaves):
        rows = leaf.shape[0] if leaf.ndim >= 1 else 1
        for r in range(rows):
            mask = [jnp.zeros_like(x) for x in leaves]
            mask[i] = jnp.zeros_like(leaf).at[r].set(1.0) if leaf.ndim >= 1 else jnp.ones_like(leaf)
            groups.append(jax.tree_util.tree_unflatten(treedef, mask))
    return groups


def jvp_diagonal(f_of, y, groups=None):
    """(f(y), the diagonal of its Jacobian), by one forward-mode product per tangent group
    (`groups(y)`: 0/1 mask pytrees; default one group per leading row of every leaf)."""
    f, linear = jax.linearize(f_of, y)
    diag = jax.tree_util.tree_map(jnp.zeros_like, y)
    for mask in (groups or _row_groups)(y):
        jv = linear(mask)
        diag = jax.tree_util.tree_map(lambda d, j, m: d + j * m, diag, jv, mask)
    return f, diag


class AbstractExponentialSolver(diffrax.AbstractSolver):
    """Exponential integrators for conditionally linear ODEs, as Diffrax solvers: the shared
    part of `hh.ExponentialEuler` and `hh.ExponentialMidpoint` (where the vector field and
    its Jacobian's diagonal come from; fixed steps, no error estimate). Subclasses give
    `order` and `advance`.

    **Fields:** `groups`: None, or a function from the state to a sequence of mask pytrees
    (see `hh.ExponentialEuler`); `diagonal`: None, or a function
    `(t, y, args) -> (dy/dt, diagonal)`.
    """

    groups: Callable | None = None
    diagonal: Callable | None = None
    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar = diffrax.LocalLinearInterpolation

    def init(self, terms, t0, t1, y0, args):
        return None

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del solver_state, made_jump
        y1 = self.advance(terms, t0, t1 - t0, y0, args)
        return y1, None, dict(y0=y0, y1=y1), None, diffrax.RESULTS.successful

    def derivatives_and_diagonal(self, terms, t, y, args):
        """(dy/dt, the diagonal of its Jacobian) at (t, y): from `diagonal` if given, else
        by forward-mode products over `groups`."""
        if self.diagonal is not None:
            return self.diagonal(t, y, args)
        return jvp_diagonal(lambda x: terms.vf(t, x, args), y, self.groups)

    @abc.abstractmethod
    def advance(self, terms, t0, h, y0, args):
        """One step of length `h` (ms) from (t0, y0). A Python float `h` compiles much better
        than a traced one (XLA folds φ(b·h) for the scalar rates of synapses), which is how
        fixed-step network runs call it."""

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)


class ExponentialEuler(AbstractExponentialSolver):
    """The exponential Euler method for conditionally linear ODEs, as a Diffrax solver.

    The Jacobian's diagonal is computed by forward-mode products with tangent *groups*: 0/1
    masks over the state such that no component's derivative depends on another component
    of the same group. The default takes every leading row of every state leaf as its own
    group (exact for neuron-wise models, one JVP per row). A model that knows its diagonal
    passes `diagonal`, a function `(t, y, args) -> (dy/dt, diagonal)` used instead of the
    term's vector field (`hh.simulate` of a network with `dt` does, with
    `hh.Network.derivatives_and_diagonal`).

    Fixed steps only (`diffrax.ConstantStepSize`); first order, no error estimate.

    **Fields:** `groups`: None, or a function from the state to a sequence of mask pytrees;
    `diagonal`: None, or the function above.

    Example:
        >>> sol = diffrax.diffeqsolve(diffrax.ODETerm(hh.vector_field), hh.ExponentialEuler(),
        ...                           t0=0.0, t1=50.0, dt0=0.01, y0=p.initial_state(), args=(p, s))
    """

    def order(self, terms):
        return 1

    def advance(self, terms, t0, h, y0, args):
        f, diag = self.derivatives_and_diagonal(terms, t0, y0, args)
        return jax.tree_util.tree_map(lambda y, fy, b: y + h * phi1(b * h) * fy, y0, f, diag)
