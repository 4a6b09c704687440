"""The state of a fit between compiled chunks: the starts, the optimiser's and the
Levenberg–Marquardt state, histories and counts — what a checkpoint holds and a resumed fit
rebuilds."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._least_squares import LM_CHUNK, LMState, isolate_failures, lm_chunk, lm_restored, lm_saved, lm_start
from ._result import fingerprint_mismatch
from ._spaces import OWNER, naturals


class Run:
    """The state of a fit between compiled chunks: what a checkpoint holds."""

    def __init__(self, u, opt_state, failed, best, done, history, start_params, n_solves, lm=None,
                 lm_done=0, lm_history=None):
        self.u, self.opt_state, self.failed, self.best = u, opt_state, failed, best
        self.done, self.history, self.start_params, self.n_solves = done, history, start_params, n_solves
        self.lm, self.lm_done, self.lm_stage = lm, lm_done, 0
        self.lm_history = lm_history if lm_history is not None else [np.zeros((u.shape[0], 0))]
        self.candidates = None

    @classmethod
    def fresh(cls, spaces, opt, n_starts, seed, dtype, screen=1):
        """Starts drawn at random (`screen` × `n_starts` candidates, of which the least-squares
        stage keeps the `n_starts` with the lowest loss), or `init` itself for one start."""
        if n_starts == 1:
            u = np.zeros((1, len(spaces)), dtype)
        else:
            rng = np.random.default_rng(seed)
            x0 = np.stack([s.sample(rng, n_starts * screen) for s in spaces], axis=1)
            u = np.stack([s.unconstrained(x0[:, i]) for i, s in enumerate(spaces)], axis=1).astype(dtype)
        candidates, u = (u, jnp.asarray(u[:n_starts])) if u.shape[0] > n_starts else (None, jnp.asarray(u))
        run = cls(u, jax.jit(jax.vmap(opt.init))(u), jnp.asarray(np.zeros(n_starts, bool)),
                  (u, jnp.asarray(np.full(n_starts, np.inf), dtype)), 0, [np.zeros((n_starts, 0))], naturals(spaces, u), 0)
        run.candidates, run.spaces = candidates, spaces
        return run

    def screened_start(self, problem):
        """The Levenberg–Marquardt start: the `n_starts` candidates of lowest loss, each
        batch of candidates evaluated by the same compiled program as the iterations (a
        candidate that fails a shared solve is told from those it held up)."""
        n, dtype = self.u.shape[0], self.u.dtype
        states = []
        for i in range(0, self.candidates.shape[0], n):
            state = lm_chunk(problem, lm_start(problem, self.candidates[i:i + n], dtype), jnp.asarray(1), LM_CHUNK)[0]
            states.append(isolate_failures(problem, state, state.failed))
            self.n_solves += n * len(problem.targets)
        every = jax.tree_util.tree_map(lambda *x: np.concatenate([np.asarray(a) for a in x]), *states)
        keep = np.argsort(np.where(every.failed, np.inf, every.cost), kind="stable")[:n]
        chosen = jax.tree_util.tree_map(lambda x: jnp.asarray(x[keep]), every)
        self.u, self.start_params, self.candidates = chosen.u, naturals(self.spaces, chosen.u), None
        return chosen

    @classmethod
    def resumed(cls, resume, opt, fingerprint, dtype, spaces):
        state = resume._resume
        saved = state.get("fingerprint", {})
        differs = fingerprint_mismatch(saved, fingerprint)
        if differs:
            raise ValueError(f"{OWNER}: `resume` comes from a different problem: {', '.join(differs)} differ(s) "
                             "from this call. Resume with the same init, targets, free, bounds, loss and n_starts.")
        u = jnp.asarray(state["u"], dtype)
        template = jax.vmap(opt.init)(u)
        leaves = [jnp.asarray(np.asarray(v, dtype=np.dtype(dt)).reshape(shape)) for v, dt, shape in state["opt_state"]]
        treedef = jax.tree_util.tree_structure(template)
        if treedef.num_leaves != len(leaves):
            raise ValueError(f"{OWNER}: `resume` was made with a different optimiser.")
        run = cls(u, jax.tree_util.tree_unflatten(treedef, leaves), jnp.asarray(state["failed"]),
                  (jnp.asarray(state["best_u"], dtype), jnp.asarray(state["best_loss"], dtype)),
                  resume.steps_done, [np.asarray(resume.history)], resume.start_params, state["n_solves"],
                  lm_done=state.get("lm_done", 0), lm_history=[np.asarray(resume.polish_history)])
        run.lm_stage = state.get("lm_stage", 0)
        if state.get("candidates") is not None:  # interrupted before the search ended
            run.candidates, run.spaces = np.asarray(state["candidates"], np.dtype(dtype)), spaces
        if state.get("lm") is not None:
            run.lm = ("saved", state["lm"])  # residuals and Jacobians are recomputed on resuming
        return run

    def ensure_lm(self, problem):
        """A saved Levenberg–Marquardt state, made whole (`lm_restored`)."""
        if isinstance(self.lm, tuple):
            self.lm = lm_restored(problem, self.lm[1], self.u.dtype)

    def after_descent(self, out, active, n_targets):
        self.u, self.opt_state, self.failed, self.best, hist = out
        # Least squares refines the descent's best iterates: a resumed fit whose descent goes
        # further starts it afresh (as an uninterrupted fit would).
        self.lm, self.lm_done, self.lm_stage, self.lm_history = None, 0, 0, [np.zeros((self.u.shape[0], 0))]
        hist = np.asarray(hist)[:, :active]
        self.history.append(hist)
        self.done += active
        self.n_solves += active * self.u.shape[0] * n_targets

    def after_least_squares(self, hist, n_targets):
        self.lm_history.append(hist)
        self.lm_done += hist.shape[1]
        self.n_solves += hist.shape[1] * self.u.shape[0] * n_targets

    def resume_state(self, fingerprint):
        lm = None
        if isinstance(self.lm, LMState):
            lm = lm_saved(self.lm)
        elif isinstance(self.lm, tuple):
            lm = self.lm[1]
        return dict(
            u=np.asarray(self.u).tolist(),
            opt_state=[(np.asarray(x).tolist(), str(np.asarray(x).dtype), list(np.shape(x)))
                       for x in jax.tree_util.tree_leaves(self.opt_state)],
            failed=np.asarray(self.failed).tolist(), best_u=np.asarray(self.best[0]).tolist(),
            best_loss=_floats(self.best[1]), n_solves=self.n_solves, lm=lm, lm_done=self.lm_done, lm_stage=self.lm_stage,
            fingerprint=fingerprint,
            candidates=None if self.candidates is None else np.asarray(self.candidates).tolist(),
        )


def _floats(x):
    return [float(v) for v in np.asarray(x)]
