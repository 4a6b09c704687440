"""Fit: membrane parameters to voltage traces, by derivatives through the solver.

The path: free parameters in an unconstrained space (`_spaces`) → membrane → one batched
solve over all targets → loss (`_problem`) → Levenberg–Marquardt with forward-mode
Jacobians for least-squares losses (`_least_squares`), or any Optax transformation with
gradients by forward mode (up to 8 free parameters) or reverse mode for other losses
(`_descent`), all starts at once → standard errors
from the trace residuals (`_uncertainty`) → `FitResult` (`_result`), checkpointed as it goes.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._deprecation import renamed
from .._interrupts import interrupts_raise
from .._loss import TraceMSE, is_least_squares
from .._membrane import AbstractMembrane
from .._target import Target
from ._descent import default_optimizer, descend, final_losses
from ._least_squares import LM_CHUNK, LMState, isolate_failures, lm_chunk, lm_start
from ._problem import SMOOTHING_MAX, make_problem
from ._result import FitResult, problem_fingerprint
from ._run import Run
from ._spaces import OWNER, membrane_at, naturals, spaces_for
from ._uncertainty import uncertainty

__all__ = ["FitInterrupted", "FitResult", "fit"]

COARSE_TOLERANCE = 1e-4  # rtol and atol floor of the coarse least-squares stage


class FitInterrupted(KeyboardInterrupt):
    """`hh.fit` was interrupted (Ctrl-C or SIGTERM). `result` holds the progress so far as a
    `FitResult` to pass as `resume=`; with `checkpoint=` it was also written there.

    Example:
        >>> try:
        ...     res = hh.fit(p, targets, n_starts=32, checkpoint="fit.json")
        ... except hh.FitInterrupted as stop:
        ...     res = hh.fit(p, targets, n_starts=32, resume=stop.result)
    """

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


def fit(
    init: AbstractMembrane,
    targets: Target | Sequence[Target],
    *,
    free: Sequence[str] = ("gNa", "gK", "gL"),
    bounds: dict | None = None,
    loss: Callable | None = None,
    optimizer: optax.GradientTransformation | str | None = None,
    steps: int | None = None,
    n_starts: int = 1,
    seed: int = 0,
    polish: int = 60,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 16384,
    steps_per_call: int = 10,
    progress: bool = True,
    resume: FitResult | None = None,
    checkpoint=None,
    screen: int = 4,
    chunk: int | None = None,
) -> FitResult:
    """Fit membrane parameters to voltage traces through the solver, from many starts at once.

    Each start's free parameters live in an unconstrained space (positive ones in log space,
    bounded ones through a sigmoid, potentials in units of 10 mV). All starts and all targets
    are solved together: targets with the same samples share one batched solve. For
    least-squares losses (the default trace MSE, windows and positive sums of them) every
    start runs Levenberg–Marquardt with Jacobians by forward mode through Diffrax, which
    converges in tens of iterations; other losses (features, smoothed traces, your own) run
    `steps` of an Optax optimiser, with gradients by forward mode for up to 8 free
    parameters (the tangents share the solver's steps: a smaller program, faster to compile
    and to run) and by reverse mode for more. Standard errors come from the
    Gauss–Newton approximation of the trace residuals at the best optimum. Use float64
    (`jax_enable_x64`) for fits: in float32 the solver's rounding limits how far the loss
    can fall.

    **Arguments:**
    - `init`: the starting membrane, e.g. `hh.presets.hh1952()`; its non-free parameters stay.
    - `targets`: an `hh.Target` or a sequence of them (each its own stimulus and times).
    - `free`: names of the parameters to fit: any of the membrane's `parameter_names`
      (dotted paths such as "na.g" for an `hh.ChannelMembrane`).
    - `bounds`: {name: (lower, upper)} in natural units; default a factor 100 around `init`
      for positive parameters, ±60 mV for potentials.
    - `loss`: `loss(ts, V, target) -> scalar`; default `hh.TraceMSE()`. Built-in losses
      combine: `hh.TraceMSE() + 0.1 * hh.FeatureLoss()`.
    - `optimizer`: any `optax.GradientTransformation`, or "lbfgs"; default Adam (step 0.05
      decaying to 0.002, clipping at global norm 1, non-finite updates skipped).
    - `steps`: optimiser steps in total (counting those of a resumed fit); default 0 for a
      least-squares loss without an `optimizer` (Levenberg–Marquardt alone), else 100.
    - `n_starts`: 1 starts from `init`; more draw every start at random (seeded by `seed`):
      positive parameters log-uniform in [init/4, 4·init], others uniform in init ± 10 mV.
    - `screen`: with several starts and Levenberg–Marquardt alone, draw `screen` × `n_starts`
      candidates and start from the `n_starts` of lowest loss (a batched search: one loss
      evaluation per candidate, no extra compilation); 1 draws the starts directly.
    - `polish`: the most Levenberg–Marquardt iterations after the optimiser steps, for
      least-squares losses; it stops early once every start has converged (0: none).
    - `rtol`, `atol`, `max_steps`: solver options for every simulation.
    - `steps_per_call`: optimiser steps per compiled call (the progress bar and the
      checkpoint advance once per call). `chunk` is its old name (deprecated).
    - `progress`: show a progress bar with the best loss (tqdm).
    - `resume`: a `FitResult` (from `FitResult.load`, a checkpoint or `FitInterrupted.result`)
      to continue; it must come from the same problem (init, targets, free, bounds, loss,
      n_starts), else a `ValueError` says what differs. The result equals an uninterrupted fit
      to the solver's noise (the starts share solver steps).
    - `checkpoint`: a path; the resumable state is written there (atomically) after every
      compiled chunk and on interrupt.

    **Returns:** an `hh.FitResult`. On Ctrl-C or SIGTERM, raises `hh.FitInterrupted` whose
    `result` resumes the fit.

    Example:
        >>> target = hh.Target(stimulus=s, ts=ts, V=v_recorded)
        >>> res = hh.fit(hh.presets.hh1952(), [target], free=("gNa", "gK", "gL"), n_starts=16)
        >>> res.params.gNa, res.stderr["gNa"]
    """
    start_time = time.perf_counter()
    steps_per_call = renamed(OWNER, "chunk", chunk, "steps_per_call", steps_per_call, 10)
    targets, loss, opt, use_lbfgs = _check(init, targets, loss, optimizer, n_starts, steps_per_call, polish, steps, screen)
    least_squares = is_least_squares(loss)
    steps = (0 if least_squares and optimizer is None else 100) if steps is None else steps
    spaces = spaces_for(init, free, bounds)
    names = [s.name for s in spaces]
    dtype = jnp.result_type(float)
    problem = make_problem(init, targets, loss, spaces, rtol, atol, max_steps, dtype)
    fingerprint = problem_fingerprint(init, targets, names, bounds, loss, n_starts)
    screen = screen if least_squares and steps == 0 else 1
    run = Run.fresh(spaces, opt, n_starts, seed, dtype, screen) if resume is None else Run.resumed(resume, opt, fingerprint, dtype, spaces)
    polish = polish if least_squares else 0
    bar = _progress_bar(progress, total=max(steps - run.done, 0) + max(polish - run.lm_done, 0))

    def snapshot():
        return _assemble(problem, run, init, spaces, names, start_time, fingerprint, final=False)

    with interrupts_raise(), contextlib.ExitStack() as stack:
        stack.callback(lambda: bar.close() if bar is not None else None)
        try:
            while run.done < steps:
                active = min(steps_per_call, steps - run.done)
                problem, out = descend(problem, opt, use_lbfgs, run.u, run.opt_state, run.failed, run.best,
                                       jnp.asarray(active), steps_per_call)
                run.after_descent(out, active, len(targets))
                _advance(bar, active, run.history[-1][:, -1])
                _save(checkpoint, snapshot)
            coarse = steps == 0 and n_starts > 1  # random starts: find each one's basin first
            _run_least_squares(problem, run, polish, coarse, bar, lambda: _save(checkpoint, snapshot))
        except KeyboardInterrupt as err:
            partial = snapshot()
            _save(checkpoint, lambda: partial)
            where = f" and written to {checkpoint}" if checkpoint is not None else ""
            raise FitInterrupted(
                f"hh.fit interrupted after {run.done} optimiser steps and {run.lm_done} Levenberg–Marquardt "
                f"iterations; the progress is in this exception's `.result`{where}: pass it as `resume=`.",
                partial,
            ) from err
    result = _assemble(problem, run, init, spaces, names, start_time, fingerprint, final=True)
    _save(checkpoint, lambda: result)
    return result


def _run_least_squares(problem, run, polish, coarse, bar, save):
    """Levenberg–Marquardt from every start. From random starts (`coarse`) it works coarse to
    fine: first on both traces smoothed by a Gaussian of `SMOOTHING_MAX` ms (a spike a little
    off in time still pulls the right way, so fewer starts settle on a wrong spike), then on
    the traces themselves, each stage until every start has converged or its share of
    `polish` iterations is spent. From a given start or after optimiser steps, only the
    second stage runs."""
    budget = (polish // 3 if coarse else 0, polish)  # iterations by the end of each stage
    for stage, width in enumerate((SMOOTHING_MAX, 0.0)):
        if run.lm_stage > stage or run.lm_done >= budget[stage]:
            continue
        # The coarse stage only has to find the basin: it solves at looser tolerances too.
        loose = COARSE_TOLERANCE if stage == 0 else 0.0
        dtype = problem.smoothing.dtype
        staged = eqx.tree_at(lambda p: (p.smoothing, p.rtol, p.atol), problem, tuple(
            jnp.asarray(np.asarray(v, dtype)) for v in (width, max(float(problem.rtol), loose), max(float(problem.atol), loose))))
        run.ensure_lm(staged)
        if run.lm is None and stage == 0 and run.candidates is not None:
            run.lm = run.screened_start(staged)
        elif run.lm is None or run.lm_stage < stage:
            u, failed = (run.best[0], run.failed) if run.lm is None else (run.lm.u, run.lm.failed)
            run.lm = lm_start(staged, u, u.dtype)
            run.lm = eqx.tree_at(lambda s: (s.failed, s.done), run.lm, (failed, failed))
            run.lm_stage = stage
        while run.lm_done < budget[stage] and not np.all(np.asarray(run.lm.done)):
            # While a start waits for its first evaluation, one iteration at a time: the
            # starts are solved together, and one that cannot be solved is told at once from
            # those it held up.
            pending = bool(np.any(~np.isfinite(np.asarray(run.lm.cost)) & ~np.asarray(run.lm.done)))
            active = 1 if pending else min(LM_CHUNK, budget[stage] - run.lm_done)
            failed_before = np.asarray(run.lm.failed)
            run.lm, hist, count = lm_chunk(staged, run.lm, jnp.asarray(active), LM_CHUNK)
            run.lm = isolate_failures(staged, run.lm, np.asarray(run.lm.failed) & ~failed_before)
            run.after_least_squares(np.asarray(hist)[:, : int(count)], len(problem.targets))
            _advance(bar, int(count), np.asarray(run.lm.cost))
            save()


def _assemble(problem, run, init, spaces, names, start_time, fingerprint, final):
    """The `FitResult` for the state so far (`final`: with standard errors, and checks that
    something was fitted)."""
    history = np.concatenate(run.history, axis=1)
    polish_history = np.concatenate(run.lm_history, axis=1)
    n = run.u.shape[0]
    if isinstance(run.lm, tuple):
        run.ensure_lm(problem)
    if isinstance(run.lm, LMState):
        u_final, losses = run.lm.u, np.asarray(run.lm.cost, float)
        failed = np.asarray(run.lm.failed) | np.asarray(run.failed)
        converged = np.asarray(run.lm.done) & ~failed
    else:
        u_final, losses = run.best[0], np.asarray(run.best[1], float)
        if run.done == 0 and final:
            losses = np.asarray(final_losses(problem, u_final), float)
            run.n_solves += n * len(problem.targets)
        tail = history[:, -min(10, history.shape[1]):] if history.shape[1] else losses[:, None]
        with np.errstate(invalid="ignore"):
            converged = np.abs(tail[:, 0] - losses) <= 1e-6 * np.abs(losses)
        failed = np.asarray(run.failed).copy()
        if history.shape[1] > 1:
            # Diverged: the optimiser never went below where it began and ended far above it
            # (e.g. a step size far too large); its best iterate is then no fit at all. On a
            # rough loss the last iterate may sit above the first while the best is far below
            # it: that start is kept.
            with np.errstate(invalid="ignore"):
                never_better = ~(np.nanmin(np.where(np.isfinite(history), history, np.inf), axis=1) < history[:, 0])
                failed |= never_better & ~(history[:, -1] <= 2.0 * history[:, 0])
    failed = failed | ~np.isfinite(losses)
    losses = np.where(failed, np.nan, losses)
    converged = converged & ~failed
    if np.all(failed):
        if not final:
            best = 0
        else:
            raise RuntimeError(
                f"{OWNER}: every start failed (a non-finite loss or gradient, a solve that did not finish, or an "
                f"optimiser that never improved on its start and ended far above it). Check the targets' units and the bounds, lower "
                f"the optimiser's step size, or loosen rtol/atol."
            )
    else:
        best = int(np.nanargmin(losses))
    u_best = np.asarray(u_final)[best]  # NumPy: the bookkeeping compiles nothing
    params = membrane_at(init, spaces, u_best)
    params = jax.tree_util.tree_map(lambda x: float(x) if eqx.is_array(x) and x.ndim == 0 else x, params)
    p = len(spaces)
    se, corr, cov, sigma = np.full(p, np.nan), np.full((p, p), np.nan), np.full((p, p), np.nan), float("nan")
    if final:
        reuse = (isinstance(run.lm, LMState) and run.lm_stage == 1 and isinstance(problem.loss, TraceMSE)
                 and problem.loss.window is None)
        if reuse:  # the polish's residuals are the weighted trace residuals: reuse its Jacobian
            se, corr, cov, sigma = uncertainty(problem, u_best, np.asarray(run.lm.r)[best], np.asarray(run.lm.J)[best])
        else:
            se, corr, cov, sigma = uncertainty(problem, u_best)
            run.n_solves += (p + 1) * len(problem.targets)
        at_bound = [sp.name for i, sp in enumerate(spaces) if sp.at_bound(float(u_best[i]))]
        if at_bound:
            warnings.warn(
                f"{OWNER}: the best fit has {at_bound} at a bound (see `bounds`); a fit that ends on a bound "
                "is where the optimiser stopped, not an optimum, and its standard errors mean little.",
                RuntimeWarning, stacklevel=3)
        if not np.all(np.isfinite(se)):
            warnings.warn(
                f"{OWNER}: the standard errors of {[n for n, s in zip(names, se) if not np.isfinite(s)]} are "
                "undefined (inf): the data do not determine them at the best fit (a parameter at a bound, or one "
                "that leaves the trace unchanged).", RuntimeWarning, stacklevel=3)
            se = np.where(np.isfinite(se), se, np.inf)
    return FitResult(
        params=params, loss=float(losses[best]), stderr=dict(zip(names, se.tolist())), correlation=corr,
        covariance=cov, noise_sigma=sigma, losses=losses, history=history, polish_history=polish_history,
        converged=converged, failed=failed, start_params=run.start_params, final_params=naturals(spaces, u_final),
        best=best, n_solves=run.n_solves, wall_time=time.perf_counter() - start_time, free=tuple(names),
        steps_done=run.done, _resume=run.resume_state(fingerprint),
    )


def _check(init, targets, loss, optimizer, n_starts, steps_per_call, polish, steps, screen):
    if not isinstance(init, AbstractMembrane):
        raise TypeError(f"{OWNER}: `init` must be a membrane such as hh.presets.hh1952(), got {type(init).__name__}.")
    if isinstance(targets, Target):
        targets = (targets,)
    targets = tuple(targets)
    if not targets or not all(isinstance(t, Target) for t in targets):
        raise ValueError(f"{OWNER}: `targets` must be an hh.Target or a non-empty sequence of them.")
    counts = dict(steps_per_call=steps_per_call, n_starts=n_starts, polish=polish, screen=screen) | ({} if steps is None else dict(steps=steps))
    for name, value in counts.items():
        positive = name in ("steps_per_call", "n_starts", "screen")
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < int(positive):
            raise ValueError(f"{OWNER}: `{name}` must be a {'positive' if positive else 'non-negative'} integer, got {value!r}.")
    if init.batch_shape != ():
        raise ValueError(f"{OWNER}: `init` must be a single neuron (scalar parameters), got batch shape {init.batch_shape}.")
    loss = TraceMSE() if loss is None else loss
    if not callable(loss):
        raise TypeError(f"{OWNER}: `loss` must be callable as loss(ts, V, target), got {loss!r}.")
    use_lbfgs = isinstance(optimizer, str)
    if use_lbfgs and optimizer != "lbfgs":
        raise ValueError(f"{OWNER}: `optimizer` must be an optax.GradientTransformation or 'lbfgs', got {optimizer!r}.")
    opt = optax.lbfgs() if use_lbfgs else (default_optimizer() if optimizer is None else optimizer)
    if not isinstance(opt, optax.GradientTransformation):
        raise TypeError(f"{OWNER}: `optimizer` must be an optax.GradientTransformation, got {type(opt).__name__}.")
    return targets, loss, opt, use_lbfgs


def _save(checkpoint, make_result):
    if checkpoint is not None:
        make_result().save(checkpoint)


def _progress_bar(enabled, total):
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="hh.fit", unit="step")


def _advance(bar, n, losses):
    if bar is None:
        return
    losses = np.asarray(losses)
    finite = losses[np.isfinite(losses)]
    bar.set_postfix(best=f"{finite.min():.4g}" if finite.size else "nan", failed=int(np.sum(~np.isfinite(losses))))
    bar.update(n)
