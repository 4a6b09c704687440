"""Levenberg–Marquardt for least-squares losses, every start at once.

Each iteration takes the residuals and their Jacobian by forward-mode solves
(`jax.jacfwd` through `diffrax.ForwardMode`: the free parameters are few, so forward
sensitivities share the solver's steps with the primal), solves the damped normal
equations, and accepts the step when the loss falls. Gauss–Newton converges in tens of
iterations from the random starts where first-order descent takes hundreds.

Steps are capped at `MAX_STEP` unconstrained units (a factor e for a conductance, 10 mV for
a potential), so a far start cannot jump into a region where the model is stiff and every
solve of the batch slows down. Iterations run in compiled chunks, so the caller can report
progress, checkpoint and stop early once every start has converged.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

LAMBDA_0 = 1e-3  # initial damping, relative to diag JᵀJ
MAX_STEP = 3.0  # largest change of any unconstrained coordinate in one iteration
LM_CHUNK = 5  # iterations per compiled call (progress, checkpoints, early stop)


class LMState(eqx.Module):
    """Per start (leading axis): coordinates, residuals, Jacobian, loss, damping, flags."""

    u: jax.Array
    r: jax.Array
    J: jax.Array
    cost: jax.Array
    lam: jax.Array
    done: jax.Array
    failed: jax.Array


def _residuals_and_jacobian(problem, U):
    """Residuals `(starts, m)`, Jacobians `(starts, m, p)` and success `(starts,)` at
    coordinates U `(starts, p)`. A problem with `batch_residuals` evaluates every start in one
    call (one solve with shared steps); as start j's residuals depend on row j only, one
    tangent per parameter, the same for every start, gives every start's Jacobian. Otherwise
    each start's `residuals` are mapped over the starts."""
    batched = getattr(problem, "batch_residuals", None)
    if batched is None:
        def one(x):
            r, ok = problem.residuals(x)
            return r, (r, ok)

        J, (r, ok) = jax.vmap(lambda x: jax.jacfwd(one, has_aux=True)(x))(U)
        return r, J, ok

    def along(e):  # every start's residuals and their derivative along parameter direction e
        (r, ok), (dr, _) = jax.jvp(batched, (U,), (jnp.broadcast_to(e, U.shape),))
        return r, dr, ok

    return jax.vmap(along, out_axes=(None, -1, None))(jnp.eye(U.shape[1], dtype=U.dtype))


def lm_start(problem, u, dtype) -> LMState:
    """The state before the first iteration at coordinates `u` `(starts, p)`: its loss is
    unknown (inf), so the first iteration evaluates residuals and Jacobians at `u` itself
    (one compiled program serves the start and the steps)."""
    n, p = u.shape
    m = jax.eval_shape(lambda x: problem.residuals(x)[0], jnp.zeros((p,), dtype)).shape[0]
    return LMState(u=jnp.asarray(u, dtype), r=jnp.zeros((n, m), dtype), J=jnp.zeros((n, m, p), dtype),
                   cost=jnp.full((n,), jnp.inf, dtype), lam=jnp.full((n,), LAMBDA_0, dtype),
                   done=jnp.zeros((n,), bool), failed=jnp.zeros((n,), bool))


def _trial_step(J, r, lam, cost):
    """The damped Gauss–Newton step (Marquardt's scaling by diag JᵀJ), capped in size; zero
    before the first evaluation (cost inf)."""
    A = J.T @ J
    g = J.T @ r
    d = jnp.diag(A)
    D = jnp.diag(jnp.maximum(d, 1e-12 * jnp.max(d)))
    first = ~jnp.isfinite(cost)
    delta = jnp.where(first, 0.0, -jnp.linalg.solve(jnp.where(first, jnp.eye(A.shape[0], dtype=A.dtype), A + lam * D), g))
    size = jnp.where(first, jnp.inf, jnp.max(jnp.abs(delta)))
    return delta * jnp.minimum(1.0, MAX_STEP / jnp.maximum(size, 1e-300)), size


@eqx.filter_jit
def lm_chunk(problem, state: LMState, active, length: int):
    """Up to `active` (≤ `length`) iterations for every start; stops early when every start
    is done. Returns the new state, the loss after each iteration `(starts, length)` (NaN
    after the last) and the number of iterations run."""

    def iteration(carry):
        state, k, history = carry
        delta, size = jax.vmap(_trial_step)(state.J, state.r, state.lam, state.cost)
        # A start that is done stays where it is; one that failed is evaluated (and ignored)
        # at the best start's coordinates, so that starts solved together are never held up
        # by a point that cannot be solved.
        trial = jnp.where(state.done[:, None], state.u, state.u + delta)
        best = state.u[jnp.argmin(jnp.where(state.failed, jnp.inf, state.cost))]
        trial = jnp.where(state.failed[:, None], best, trial)
        r_t, J_t, ok_t = _residuals_and_jacobian(problem, trial)
        cost_t = jnp.sum(r_t**2, axis=-1)
        finite = ok_t & jnp.isfinite(cost_t) & jnp.all(jnp.isfinite(J_t), axis=(-2, -1))
        first = ~jnp.isfinite(state.cost) & ~state.done
        failed = state.failed | (first & ~finite)  # cannot even be evaluated where it starts
        accept = finite & (cost_t < state.cost) & ~state.done
        # Converged: the Gauss–Newton step is negligible (coordinates change by < 1e-6), an
        # accepted step no longer lowers the loss beyond rounding level, or no step is
        # accepted even with heavy damping.
        small = (size < 1e-6) & (state.lam <= 1.0)
        tiny = accept & ~first & (state.cost - cost_t <= 1e-10 * state.cost)
        stuck = ~accept & (state.lam > 1e8)
        pick = lambda new, old: jnp.where(accept.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)  # noqa: E731
        lam = jnp.where(first, state.lam, jnp.where(accept, state.lam / 3.0, state.lam * 4.0))
        new = LMState(
            u=pick(trial, state.u), r=pick(r_t, state.r), J=pick(J_t, state.J),
            cost=pick(cost_t, state.cost), lam=jnp.where(state.done, state.lam, jnp.clip(lam, 1e-12, 1e12)),
            done=state.done | small | tiny | stuck | failed, failed=failed,
        )
        return new, k + 1, history.at[:, k].set(new.cost)

    def more(carry):
        state, k, _ = carry
        return (k < active) & ~jnp.all(state.done)

    history = jnp.full((state.u.shape[0], length), jnp.nan, state.u.dtype)
    state, done_iterations, history = jax.lax.while_loop(more, iteration, (state, 0, history))
    return state, history, done_iterations


def lm_saved(state: LMState) -> dict:
    """What a checkpoint keeps of a state, JSON-ready: per start the coordinates, loss,
    damping and flags (residuals and Jacobians are evaluated again by `lm_restored`)."""
    return dict(u=np.asarray(state.u).tolist(), cost=[float(c) for c in np.asarray(state.cost)],
                lam=[float(v) for v in np.asarray(state.lam)], done=np.asarray(state.done).tolist(),
                failed=np.asarray(state.failed).tolist())


def lm_restored(problem, saved: dict, dtype) -> LMState:
    """The state `lm_saved` kept, made whole: residuals and Jacobians evaluated again at the
    saved coordinates by one zero step of the same compiled program (deterministic, so the
    iterations go on exactly as they would have); starts not evaluated yet (loss inf) stay
    as `lm_start` left them."""
    start = lm_start(problem, jnp.asarray(saved["u"], dtype), dtype)
    evaluated, _, _ = lm_chunk(problem, start, jnp.asarray(1), LM_CHUNK)
    state = lm_select(~np.isfinite(np.asarray(saved["cost"], float)), start, evaluated)
    return eqx.tree_at(lambda s: (s.lam, s.done, s.failed), state, (
        jnp.asarray(saved["lam"], dtype), jnp.asarray(saved["done"], bool), jnp.asarray(saved["failed"], bool)))


def lm_select(take, new: LMState, old: LMState) -> LMState:
    """Per start: `new`'s state where `take` `(starts,)` is true, else `old`'s."""
    take = jnp.asarray(take)
    return jax.tree_util.tree_map(lambda a, b: jnp.where(take.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)
