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
    coordinates U `(starts, p)`, from the problem's `batch_residuals`: every start in one
    call (one solve with shared steps). As start j's residuals depend on row j only, one
    tangent per parameter, the same for every start, gives every start's Jacobian."""
    # Every start is solved p times over, copy i carrying the tangent along parameter i:
    # one forward-mode solve of p·n neurons with shared steps. (Mapping jax.jvp over the p
    # directions instead carries the primal once, but ran 1.5x slower on CPU.)
    n, p = U.shape
    tangents = jnp.repeat(jnp.eye(p, dtype=U.dtype), n, axis=0)
    (r, ok), (dr, _) = jax.jvp(problem.batch_residuals, (jnp.tile(U, (p, 1)),), (tangents,))
    J = jnp.moveaxis(dr.reshape(p, n, -1), 0, -1)
    return r[:n], J, jnp.all(ok.reshape(p, n), axis=0)


def lm_start(problem, u, dtype) -> LMState:
    """The state before the first iteration at coordinates `u` `(starts, p)`: its loss is
    unknown (inf), so the first iteration evaluates residuals and Jacobians at `u` itself
    (one compiled program serves the start and the steps)."""
    n, p = u.shape
    m = problem.residual_count()
    dtype = np.dtype(dtype)  # built in NumPy: nothing to compile between the compiled chunks
    return LMState(u=jnp.asarray(u, dtype), r=jnp.asarray(np.zeros((n, m), dtype)), J=jnp.asarray(np.zeros((n, m, p), dtype)),
                   cost=jnp.asarray(np.full(n, np.inf, dtype)), lam=jnp.asarray(np.full(n, LAMBDA_0, dtype)),
                   done=jnp.asarray(np.zeros(n, bool)), failed=jnp.asarray(np.zeros(n, bool)))


def _trial_step(J, r, lam, cost):
    """The damped Gauss–Newton step (Marquardt's scaling by diag JᵀJ), capped in size (zero
    before the first evaluation, cost inf), its size before the cap, and the decrease of the
    loss that the linearised model predicts for it."""
    A = J.T @ J
    g = J.T @ r
    d = jnp.diag(A)
    D = jnp.diag(jnp.maximum(d, 1e-12 * jnp.max(d)))
    first = ~jnp.isfinite(cost)
    delta = jnp.where(first, 0.0, -jnp.linalg.solve(jnp.where(first, jnp.eye(A.shape[0], dtype=A.dtype), A + lam * D), g))
    size = jnp.where(first, jnp.inf, jnp.max(jnp.abs(delta)))
    delta = delta * jnp.minimum(1.0, MAX_STEP / jnp.maximum(size, 1e-300))
    predicted = -(2.0 * g @ delta + delta @ (A @ delta))  # |r|² − |r + J·δ|²
    return delta, size, jnp.where(first, jnp.inf, predicted)


@eqx.filter_jit
def lm_chunk(problem, state: LMState, active, length: int):
    """Up to `active` (≤ `length`) iterations for every start; stops early when every start
    is done. Returns the new state, the loss after each iteration `(starts, length)` (NaN
    after the last) and the number of iterations run."""

    def iteration(carry):
        state, k, history = carry
        delta, size, predicted = jax.vmap(_trial_step)(state.J, state.r, state.lam, state.cost)
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
        # accepted even with heavy damping. Where the problem resolves its loss only to a
        # relative `loss_resolution` (starts that share solver steps see their loss move by
        # about that much with their batch-mates), a start has also converged when an
        # accepted step gained less than that, or a rejected one changed the loss by less
        # or was predicted to gain less: no iteration can tell better from worse there.
        noise = problem.loss_resolution()
        small = (size < 1e-6) & (state.lam <= 1.0)
        tiny = accept & ~first & (state.cost - cost_t <= jnp.maximum(1e-10, noise) * state.cost)
        flat = (noise > 0) & ~accept & ~first & finite & (
            (jnp.abs(cost_t - state.cost) <= noise * state.cost) | (predicted <= noise * state.cost))
        stuck = ~accept & (state.lam > 1e8)
        pick = lambda new, old: jnp.where(accept.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)  # noqa: E731
        lam = jnp.where(first, state.lam, jnp.where(accept, state.lam / 3.0, state.lam * 4.0))
        new = LMState(
            u=pick(trial, state.u), r=pick(r_t, state.r), J=pick(J_t, state.J),
            cost=pick(cost_t, state.cost), lam=jnp.where(state.done, state.lam, jnp.clip(lam, 1e-12, 1e12)),
            done=state.done | small | tiny | flat | stuck | failed, failed=failed,
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


def isolate_failures(problem, state: LMState, new) -> LMState:
    """Starts solved together (`batch_residuals`: one solve with shared steps) fail together
    when one of them cannot be solved. When more than one start failed in one chunk (`new`,
    `(starts,)`), each is evaluated again alone (the batch filled with copies of it: the same
    compiled program); those that succeed alone start again where they were."""
    new = np.asarray(new)
    if np.sum(new) < 2:
        return state
    u, dtype = np.asarray(state.u), state.u.dtype
    again = np.zeros(len(u), bool)
    for j in np.flatnonzero(new):
        alone = lm_start(problem, jnp.asarray(np.repeat(u[j:j + 1], len(u), axis=0), dtype), dtype)
        again[j] = not bool(lm_chunk(problem, alone, jnp.asarray(1), LM_CHUNK)[0].failed[0])
    return lm_select(again, lm_start(problem, state.u, dtype), state)
