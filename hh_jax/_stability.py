"""The largest step an explicit solver can take at a membrane's initial state and stay stable.

Why a solve needs it: at an equilibrium (the default initial state, the resting potential)
the solver's error estimate is zero, so adaptive steps grow past the explicit method's
stability limit without harming the trace, which stays at rest. Its derivatives are not
at rest: a tangent or adjoint is amplified by every such step, and a gradient taken through
them comes back silently wrong, by a factor of 1e6 or as NaN, depending on how exactly the
resting potential was rounded. Capping the step at the stability limit keeps the derivative
of the discrete solution equal to that of the trajectory.

The limit is `safety / ρ`, with ρ the spectral radius of the vector field's Jacobian at the
initial state (per neuron; the stiffest neuron of a batch that shares its steps) and the
safety a fraction of the solver's stability interval on the negative real axis (Tsit5:
h·ρ < 3.5, so about 3.0).
"""

from __future__ import annotations

import functools

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._membrane import AbstractMembrane, check_membrane, floats_as_arrays
from ._unrolled_tsit5 import UnrolledTsit5
from ._validation import check_finite, check_positive

# The fraction of a solver's real stability interval used as the step limit: the spectral
# radius is estimated from above (see `_spectral_radius`), and the complex eigenvalues of a
# resting membrane are slow ones, well inside the interval.
_MARGIN = 0.85
# The squarings of the normalised Jacobian in the spectral-radius estimate: ||J^32||^(1/32)
# overestimates ρ by at most (states)^(1/32), about 5 % for five states.
_SQUARINGS = 5


@functools.cache  # per solver class: its tableau is a class constant
def _real_stability_interval(solver_class) -> float:
    """The h·ρ where an explicit Runge–Kutta method's stability function R(−h·ρ) first
    leaves the unit disc (Tsit5: 3.5), from its Butcher tableau."""
    tableau = solver_class.tableau
    stages = len(tableau.a_lower) + 1
    a = np.zeros((stages, stages))
    for i, row in enumerate(tableau.a_lower):
        a[i + 1, : len(row)] = row
    b = np.asarray(tableau.b_sol, dtype=float)
    for z in np.arange(0.01, 20.0, 0.01):
        r = 1.0 - z * b @ np.linalg.solve(np.eye(stages) + z * a, np.ones(stages))
        if abs(r) > 1.0:
            return float(z)
    return 20.0


def default_safety(solver) -> float | None:
    """The step limit's h·ρ for `solver`: `_MARGIN` of its real stability interval, or None
    for a solver without an explicit Runge–Kutta tableau (implicit solvers need no limit;
    others are left to the user's `dtmax`)."""
    if isinstance(solver, UnrolledTsit5):
        return _MARGIN * _real_stability_interval(diffrax.Tsit5)  # the same method, its stages written out
    if isinstance(solver, diffrax.AbstractERK):
        return _MARGIN * _real_stability_interval(type(solver))
    return None


def _spectral_radius(J):
    """An upper estimate of the spectral radius of each matrix in `J` (`(*batch, n, n)`):
    Gelfand's ||J^k||^(1/k) with k = 2**_SQUARINGS, normalising after each squaring so that
    nothing overflows in float32."""
    log_scale = jnp.zeros(J.shape[:-2], J.dtype)
    tiny = jnp.finfo(J.dtype).tiny
    for _ in range(_SQUARINGS):
        norm = jnp.maximum(jnp.sqrt(jnp.sum(J**2, axis=(-2, -1))), tiny)
        J = J / norm[..., None, None]
        log_scale = 2.0 * (log_scale + jnp.log(norm))
        J = J @ J
    norm = jnp.sqrt(jnp.sum(J**2, axis=(-2, -1)))
    return jnp.where(norm > 0, jnp.exp((log_scale + jnp.log(jnp.maximum(norm, tiny))) / 2**_SQUARINGS), 0.0)


def stiffest_rate(membrane: AbstractMembrane, y0) -> jax.Array:
    """The largest spectral radius (1/ms) of the vector field's Jacobian at `y0`
    (`(states, *batch)`) over the neurons of the batch; no derivative flows through it."""
    membrane, y0 = jax.lax.stop_gradient((membrane, y0))
    f = lambda y: membrane.derivatives(y, 0.0)  # noqa: E731
    # The model is elementwise over neurons: the JVP along state row j gives column j of
    # every neuron's Jacobian at once; mapped over j, the vector field is traced once.
    n = y0.shape[0]
    basis = jnp.broadcast_to(jnp.eye(n, dtype=y0.dtype).reshape(n, n, *(1,) * (y0.ndim - 1)), (n, *y0.shape))
    columns = jax.vmap(lambda e: jax.jvp(f, (y0,), (e,))[1])(basis)  # (column, row, *batch)
    J = jnp.moveaxis(columns, (1, 0), (-2, -1))  # (*batch, row, column)
    return jnp.max(_spectral_radius(J))


def step_limit(dtmax, solver, starts):
    """The largest step of a solve: the user's `dtmax` if given, else `solver`'s stability
    limit at the initial states `starts` ((membrane, y0) pairs; the stiffest counts), or
    None (no limit) for a solver without an explicit Runge–Kutta tableau."""
    safety = default_safety(solver) if dtmax is None else None
    if safety is None:
        return dtmax
    return safety / jnp.max(jnp.stack([stiffest_rate(membrane, y0) for membrane, y0 in starts]))


def stable_dtmax(membrane: AbstractMembrane, v0=None, safety: float | None = None) -> float:
    """The largest step (ms) inside the explicit solver's stability limit at the initial state.

    `hh.simulate` applies this limit by default (`dtmax=None`); call it to see the value or
    to pass a more cautious one. It is `safety / ρ`, with ρ the spectral radius (1/ms) of
    the vector field's Jacobian at the initial state (the stiffest neuron of a batch).

    **Arguments:** `membrane` (a single neuron or a batch), `v0` (mV, default the resting
    potential), `safety` (h·ρ; default 0.85 of Tsit5's stability interval, about 3.0).

    Example:
        >>> hh.stable_dtmax(hh.presets.pospischil())   # about 0.19 ms
    """
    owner = "hh.stable_dtmax"
    check_membrane(membrane, owner)
    if safety is None:
        safety = default_safety(diffrax.Tsit5())
    check_positive("safety", safety, owner, "")
    if v0 is not None:
        check_finite("v0", v0, owner)
    v0 = None if v0 is None else jnp.asarray(v0, jnp.result_type(float))
    rate = float(_stiffest_rate_at(floats_as_arrays(jax.lax.stop_gradient(membrane)), v0))
    return safety / rate if rate > 0 else float("inf")


@eqx.filter_jit  # compiled once per kind of membrane (it runs before every fit)
def _stiffest_rate_at(membrane, v0):
    return stiffest_rate(membrane, membrane.initial_state(v0))
