"""Fit: gradient descent through the solver with Optax.

The path: free parameters in an unconstrained space → membrane → `simulate` per target →
loss → gradient (reverse mode through Diffrax) → Optax update, for all starts at once (`vmap`)
in compiled chunks of steps. For the trace MSE a Levenberg–Marquardt polish (Jacobians by
forward mode through the solver) then takes each start to its optimum, and the Gauss–Newton
(Fisher) approximation there gives standard errors and correlations.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._loss import TraceMSE, is_least_squares
from ._membrane import AbstractMembrane
from ._solve import simulate, stable_dtmax
from ._target import Target

_NOT_FITTED = ("vshift",)  # a convention, not a property of the cell
_START_FACTOR = 4.0  # positive parameters start log-uniform in [init/4, 4·init]
_OWNER = "hh.fit"


# ----------------------------------------------------------------------- parameter spaces


@dataclass(frozen=True)
class _Space:
    """How one free parameter maps to an unconstrained coordinate u (u = 0 at `ref`).

    Positive parameters (conductances, Cm) work with z = log x, the others with z = x. Both
    bounds finite: z = z_lo + (z_hi − z_lo)·sigmoid(c + k·u), c putting u = 0 at `ref` and k
    making dz/du = `unit` there (1 in log space: u is a relative change; 10 mV or °C
    otherwise), so bounds change the scale of u only far from `ref`. Unbounded: z = z_ref +
    unit·u. One bound only: x = bound ± (distance at ref)·exp(u).
    """

    name: str
    kind: str  # "bounded", "free", "lower", "upper"
    log: bool
    ref: float
    lo: float
    hi: float
    unit: float

    def _z(self, x):
        return np.log(x) if self.log else x

    @property
    def _zlo(self):
        return float(self._z(self.lo))

    @property
    def _zhi(self):
        return float(self._z(self.hi))

    @property
    def _c(self):
        p = (float(self._z(self.ref)) - self._zlo) / (self._zhi - self._zlo)
        return float(np.log(p / (1.0 - p)))

    @property
    def _k(self):
        sig = 1.0 / (1.0 + np.exp(-self._c))
        return self.unit / ((self._zhi - self._zlo) * sig * (1.0 - sig))

    def natural(self, u):
        if self.kind == "lower":
            return self.lo + (self.ref - self.lo) * jnp.exp(u)
        if self.kind == "upper":
            return self.hi - (self.hi - self.ref) * jnp.exp(u)
        if self.kind == "bounded":
            z = self._zlo + (self._zhi - self._zlo) * jax.nn.sigmoid(self._c + self._k * u)
        else:
            z = float(self._z(self.ref)) + self.unit * u
        return jnp.exp(z) if self.log else z

    def unconstrained(self, x):
        x = np.asarray(x, float)
        if self.kind == "lower":
            return np.log((x - self.lo) / (self.ref - self.lo))
        if self.kind == "upper":
            return np.log((self.hi - x) / (self.hi - self.ref))
        z = self._z(x)
        if self.kind == "bounded":
            p = (z - self._zlo) / (self._zhi - self._zlo)
            return (np.log(p / (1.0 - p)) - self._c) / self._k
        return (z - float(self._z(self.ref))) / self.unit

    def sample(self, rng, n):
        """n start values in natural units: positive parameters log-uniform in
        [ref/4, 4·ref], others uniform in ref ± one unit (10 mV or °C), within the bounds."""
        if self.log:
            lo = max(self.ref / _START_FACTOR, self.lo)
            hi = min(self.ref * _START_FACTOR, self.hi)
            x = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
        else:
            lo = max(self.ref - self.unit, self.lo)
            hi = min(self.ref + self.unit, self.hi)
            x = rng.uniform(lo, hi, n)
        span = (hi - lo) * 1e-6  # strictly inside, so every start has a finite u
        return np.clip(x, lo + span, hi - span)


def _default_bounds(kind, ref):
    """Wide but physical: positive parameters within a factor 100 of the initial value,
    potentials within ±60 mV, temperature within ±30 °C. They keep a wandering start out of
    regions where the model is stiff and every solve of the batch slows down."""
    if kind == "positive":
        return (ref / 100.0, ref * 100.0) if ref > 0 else (0.0, np.inf)
    if kind == "potential":
        return (ref - 60.0, ref + 60.0)
    if kind == "celsius":
        return (ref - 30.0, ref + 30.0)
    return (-np.inf, np.inf)


def _get_param(membrane, path):
    """A parameter by name or dotted path ("gNa"; "na.g" in a ChannelMembrane)."""
    obj = membrane
    if "." in path and hasattr(membrane, "channel_map"):
        obj = membrane.channel_map
    for part in path.split("."):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    return obj


def _param_kind(membrane, name):
    if name in membrane.positive_parameters:
        return "positive"
    if name in membrane.potential_parameters:
        return "potential"
    return "celsius" if name.split(".")[-1] == "celsius" else "other"


def _spaces(init, free, bounds) -> tuple[_Space, ...]:
    if isinstance(free, str):
        free = (free,)
    free = tuple(free)
    if not free:
        raise ValueError(f"{_OWNER}: `free` must name at least one parameter.")
    fittable = [n for n in init.parameter_names if n not in _NOT_FITTED]
    unknown = [n for n in free if n not in fittable]
    if unknown:
        raise ValueError(f"{_OWNER}: unknown parameter(s) {unknown} in `free`; expected any of {fittable}.")
    if len(set(free)) != len(free):
        raise ValueError(f"{_OWNER}: `free` lists a parameter twice: {list(free)}.")
    bounds = dict(bounds or {})
    extra = sorted(set(bounds) - set(free))
    if extra:
        raise ValueError(f"{_OWNER}: `bounds` given for parameter(s) {extra} that are not in `free` {list(free)}.")
    spaces = []
    for name in free:
        ref = np.asarray(_get_param(init, name), float)
        if ref.shape != ():
            raise ValueError(f"{_OWNER}: `init.{name}` must be a scalar (fit one neuron at a time), got shape {ref.shape}.")
        ref = float(ref)
        pkind = _param_kind(init, name)
        lo, hi = (float(b) for b in bounds.get(name, _default_bounds(pkind, ref)))
        if not lo < hi:
            raise ValueError(f"{_OWNER}: lower bound must be below upper bound for {name}, got ({lo}, {hi}).")
        if not lo < ref < hi:
            raise ValueError(
                f"{_OWNER}: `init.{name}` = {ref} lies outside its bounds ({lo}, {hi}); "
                f"start from a value strictly inside."
            )
        # Log space for conductance-like parameters, unless a lower bound above 0 stands
        # alone (then the distance to it is what varies on a log scale).
        log = pkind == "positive" and ((lo > 0.0 and np.isfinite(hi)) or (lo == 0.0 and not np.isfinite(hi)))
        if np.isfinite(lo) and np.isfinite(hi):
            kind = "bounded"
        elif log:
            kind = "free"
        elif np.isfinite(lo):
            kind = "lower"
        elif np.isfinite(hi):
            kind = "upper"
        else:
            kind = "free"
        unit = 1.0 if log else (10.0 if pkind in ("potential", "celsius") else max(0.1 * abs(ref), 1.0))
        spaces.append(_Space(name, kind, log, ref, lo, hi, unit))
    return tuple(spaces)


def _membrane_at(init, spaces, u):
    """The membrane with the free parameters at unconstrained coordinates u (shape (p,))."""
    values = [s.natural(u[i]) for i, s in enumerate(spaces)]
    return eqx.tree_at(lambda m: [_get_param(m, s.name) for s in spaces], init, values)


def _naturals(spaces, u) -> dict[str, np.ndarray]:
    u = np.asarray(u)
    return {s.name: np.asarray(s.natural(jnp.asarray(u[..., i]))) for i, s in enumerate(spaces)}


# ----------------------------------------------------------------------- the objective


class _Problem(eqx.Module):
    """Everything a start's loss depends on besides its coordinates (a pytree for jit)."""

    init: AbstractMembrane
    targets: tuple[Target, ...]
    loss: Callable
    dtmax: tuple  # per target: the largest stable step at its initial state (ms)
    spaces: tuple = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

    def simulate(self, membrane, i, adjoint=None):
        target = self.targets[i]
        return simulate(
            membrane, target.stimulus, t0=target.t0, t1=target.ts[-1], ts=target.ts,
            v0=target.v0, save="V", rtol=self.rtol, atol=self.atol, max_steps=self.max_steps,
            throw=False, adjoint=adjoint, dtmax=self.dtmax[i],
        )

    def objective(self, u):
        """(total loss, all solves succeeded) for one start."""
        membrane = _membrane_at(self.init, self.spaces, u)
        total, ok = 0.0, True
        for i, target in enumerate(self.targets):
            tr = self.simulate(membrane, i)
            total = total + target.weight * self.loss(target.ts, tr.V, target)
            ok = ok & tr.success
        return total, ok

    def residuals(self, u):
        """Trace-MSE residuals r (loss = Σ r²) for one start, by forward-mode solves."""
        membrane = _membrane_at(self.init, self.spaces, u)
        parts = []
        for i, target in enumerate(self.targets):
            V = self.simulate(membrane, i, diffrax.ForwardMode()).V
            parts.append(math.sqrt(target.weight) * self.loss.residuals(target.ts, V, target))
        return jnp.concatenate(parts)


def _where_rows(flags, new, old):
    """Per-start select over a pytree whose leaves have a leading start axis."""
    def pick(a, b):
        if not hasattr(a, "ndim") or a.ndim == 0:
            return a
        return jnp.where(flags.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)
    return jax.tree_util.tree_map(pick, new, old)


@eqx.filter_jit
def _descent_chunk(problem, optimizer, use_lbfgs, u, opt_state, failed, best, active, length):
    """`length` optimiser steps for every start (steps beyond `active` do nothing). `best`
    = (coordinates, loss) of the lowest loss each start has seen: on a rough loss (spike
    features) the last iterate need not be the best one."""
    value_and_grad = jax.vmap(jax.value_and_grad(problem.objective, has_aux=True))

    def update_one(g, state, u_, value):
        if use_lbfgs:
            fn = lambda x: problem.objective(x)[0]  # noqa: E731
            return optimizer.update(g, state, u_, value=value, grad=g, value_fn=fn)
        return optimizer.update(g, state, u_)

    def step(carry, k):
        u, state, failed, (best_u, best_loss) = carry

        def run(_):
            (value, ok), g = value_and_grad(u)
            bad = ~(jnp.isfinite(value) & ok & jnp.all(jnp.isfinite(g), axis=-1))
            now_failed = failed | bad
            updates, new_state = jax.vmap(update_one)(g, state, u, value)
            new_u = optax.apply_updates(u, updates)
            keep = now_failed  # failed starts stay at their last finite point
            new_u = jnp.where(keep[:, None], u, new_u)
            new_state = _where_rows(keep, state, new_state)
            better = ~bad & (value < best_loss)
            best = (jnp.where(better[:, None], u, best_u), jnp.where(better, value, best_loss))
            return (new_u, new_state, now_failed, best), jnp.where(bad, jnp.nan, value)

        def skip(_):
            return (u, state, failed, (best_u, best_loss)), jnp.full(u.shape[:1], jnp.nan, u.dtype)

        return jax.lax.cond(k < active, run, skip, None)

    (u, opt_state, failed, best), history = jax.lax.scan(
        step, (u, opt_state, failed, best), jnp.arange(length)
    )
    return u, opt_state, failed, best, history.T


@eqx.filter_jit
def _final_losses(problem, u):
    value, ok = jax.vmap(problem.objective)(u)
    return jnp.where(ok, value, jnp.nan)


def _residuals_and_jacobian(problem, u):
    J, r = jax.jacfwd(lambda x: (problem.residuals(x), problem.residuals(x)), has_aux=True)(u)
    return r, J


@eqx.filter_jit
def _polish(problem, u, iterations):
    """Levenberg–Marquardt on the trace residuals, every start at once (`vmap`).

    Returns the final coordinates, loss, residuals and Jacobian (d residuals / d u) per start,
    whether each converged, and the loss after every iteration."""

    def one(state):
        u, r, J, cost, lam, done = state
        A = J.T @ J
        g = J.T @ r
        D = jnp.diag(jnp.maximum(jnp.diag(A), 1e-12 * jnp.max(jnp.diag(A))))
        delta = -jnp.linalg.solve(A + lam * D, g)
        r_t, J_t = _residuals_and_jacobian(problem, u + delta)
        cost_t = jnp.sum(r_t**2)
        accept = jnp.isfinite(cost_t) & jnp.all(jnp.isfinite(J_t)) & (cost_t < cost) & ~done
        # Converged: the Gauss–Newton step is negligible (parameters change by < 1e-6
        # relative), an accepted step no longer lowers the loss beyond rounding level, or no
        # step is accepted even with heavy damping.
        small = (jnp.max(jnp.abs(delta)) < 1e-6) & (lam <= 1.0)
        tiny = accept & (cost - cost_t <= 1e-10 * cost)
        stuck = ~accept & (lam > 1e8)
        new = (
            jnp.where(accept, u + delta, u),
            jnp.where(accept, r_t, r),
            jnp.where(accept, J_t, J),
            jnp.where(accept, cost_t, cost),
            jnp.clip(jnp.where(accept, lam / 3.0, lam * 4.0), 1e-12, 1e12),
            done | small | tiny | stuck,
        )
        return new, new[3]

    def run(u):
        r, J = _residuals_and_jacobian(problem, u)
        cost = jnp.sum(r**2)
        state = (u, r, J, cost, jnp.asarray(1e-3, u.dtype), ~jnp.isfinite(cost))
        state, history = jax.lax.scan(lambda s, _: one(s), state, None, length=iterations)
        u, r, J, cost, _, done = state
        return u, cost, r, J, done, history

    return jax.vmap(run)(u)


# ----------------------------------------------------------------------- uncertainty


@eqx.filter_jit
def _raw_jacobian(problem, x):
    """Raw trace residuals e = V_model − V_data (mV, 0 where masked) at natural parameter
    values x, and their Jacobian with respect to x, by forward mode through the solver."""
    spaces = problem.spaces

    def raw(x):
        membrane = eqx.tree_at(lambda m: [_get_param(m, s.name) for s in spaces], problem.init, list(x))
        es = []
        for i, target in enumerate(problem.targets):
            V = problem.simulate(membrane, i, diffrax.ForwardMode()).V
            es.append(jnp.where(target.mask, V - target.V, 0.0))
        return jnp.concatenate(es)

    J, e = jax.jacfwd(lambda x: (raw(x), raw(x)), has_aux=True)(x)
    return J, e


def _uncertainty(problem, u_best, r=None, J_u=None):
    """Standard errors and correlations of the free parameters (natural units) from the
    Gauss–Newton approximation of the trace residuals at the optimum.

    With raw residuals e_i = V_model − V_data (mV) weighted by s_i² in the fit (target
    weight / number of samples), the estimator's covariance is the sandwich
    A⁻¹ B A⁻¹ with A = Jᵀ S² J and B = Jᵀ S² Σ S² J, Σ = diag(σ_i²): σ from each target's
    `sigma`, otherwise the pooled residual variance Σe²/(n − p). Equal weights reduce it to
    σ² (JᵀJ)⁻¹. J is taken from the polish (residuals r = s·e with respect to the
    unconstrained u, converted by the chain rule) or computed afresh.
    """
    spaces = problem.spaces
    masks = [np.asarray(t.mask) for t in problem.targets]
    s = np.concatenate([np.full(m.shape, np.sqrt(t.weight / m.sum())) for t, m in zip(problem.targets, masks)])
    if J_u is None:
        x_best = jnp.stack([sp.natural(u_best[i]) for i, sp in enumerate(spaces)])
        J, e = _raw_jacobian(problem, x_best)
        J, e = np.asarray(J, float), np.asarray(e, float)
    else:
        dx_du = np.array([float(jax.grad(sp.natural)(u_best[i])) for i, sp in enumerate(spaces)])
        e = np.asarray(r, float) / s
        J = np.asarray(J_u, float) / s[:, None] / dx_du[None, :]
    mask = np.concatenate(masks)
    s2 = s**2
    n, p = int(mask.sum()), len(spaces)
    pooled = float(np.sum(e[mask] ** 2) / max(n - p, 1))
    sig2 = np.concatenate(
        [np.full(m.shape, pooled if t.sigma is None else t.sigma**2) for t, m in zip(problem.targets, masks)]
    )
    Jm, w = J[mask], s2[mask]
    A = Jm.T @ (w[:, None] * Jm)
    B = Jm.T @ ((w * w * sig2[mask])[:, None] * Jm)
    try:
        Ainv = np.linalg.inv(A)
        cov = Ainv @ B @ Ainv
    except np.linalg.LinAlgError:
        cov = np.full((p, p), np.inf)
    se = np.sqrt(np.abs(np.diag(cov)))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(se, se)
    return se, corr, cov, float(np.sqrt(pooled))


# ----------------------------------------------------------------------- result


@dataclass
class FitResult:
    """What `hh.fit` returns.

    **Fields:**
    - `params`: the membrane at the best start's optimum (same type as `init`).
    - `loss`: the best start's final loss.
    - `stderr`: {name: standard error} (natural units) from the Gauss–Newton approximation of
      the trace residuals at `params`; `correlation`, `covariance`: `(p, p)` in `free` order.
    - `noise_sigma`: the residual standard deviation (mV) at the optimum.
    - `losses`: final loss of every start `(n_starts,)` (NaN for failed starts).
    - `history`: loss of every start at every optimiser step `(n_starts, steps)`;
      `polish_history`: loss after every polish iteration `(n_starts, polish)`.
    - `converged`, `failed`: per-start flags. A start failed when its loss or gradient became
      non-finite or its solve did not finish; it then stopped where it was.
    - `start_params`, `final_params`: {name: `(n_starts,)`} values at the start and end.
    - `best`: index of the best start; `n_solves`: simulations run (one per target per loss
      or gradient evaluation, and per polish iteration); `wall_time`: seconds.

    Example:
        >>> res = hh.fit(p, targets, free=("gNa", "gK"), n_starts=8)
        >>> res.save("fit.json"); hh.FitResult.load("fit.json").stderr
    """

    params: AbstractMembrane
    loss: float
    stderr: dict
    correlation: np.ndarray
    covariance: np.ndarray
    noise_sigma: float
    losses: np.ndarray
    history: np.ndarray
    polish_history: np.ndarray
    converged: np.ndarray
    failed: np.ndarray
    start_params: dict
    final_params: dict
    best: int
    n_solves: int
    wall_time: float
    free: tuple
    steps_done: int
    _resume: dict = field(default_factory=dict, repr=False)

    def save(self, path) -> None:
        """Write the result (and the optimiser state, to resume from) as JSON."""
        fields = {}
        for f in dataclasses.fields(self.params):
            value = getattr(self.params, f.name)
            if not isinstance(value, (int, float)) and not eqx.is_array(value):
                raise NotImplementedError(
                    f"FitResult.save: {type(self.params).__name__} holds nested modules "
                    f"({f.name}); saving supports membranes whose fields are numbers "
                    f"(hh.HodgkinHuxley, hh.Pospischil)."
                )
            fields[f.name] = np.asarray(value).tolist()
        payload = dict(
            format="hh_jax.FitResult", version=1,
            membrane=dict(type=type(self.params).__name__, fields=fields),
            loss=self.loss, stderr=self.stderr, correlation=np.asarray(self.correlation).tolist(),
            covariance=np.asarray(self.covariance).tolist(), noise_sigma=self.noise_sigma,
            losses=np.asarray(self.losses).tolist(), history=np.asarray(self.history).tolist(),
            polish_history=np.asarray(self.polish_history).tolist(),
            converged=np.asarray(self.converged).tolist(), failed=np.asarray(self.failed).tolist(),
            start_params={k: np.asarray(v).tolist() for k, v in self.start_params.items()},
            final_params={k: np.asarray(v).tolist() for k, v in self.final_params.items()},
            best=self.best, n_solves=self.n_solves, wall_time=self.wall_time, free=list(self.free),
            steps_done=self.steps_done, resume=self._resume,
        )
        with open(path, "w") as fh:
            json.dump(payload, fh)

    @classmethod
    def load(cls, path) -> "FitResult":
        """Read a result written by `save`."""
        with open(path) as fh:
            d = json.load(fh)
        if d.get("format") != "hh_jax.FitResult":
            raise ValueError(f"hh.FitResult.load: {path} is not a saved hh_jax fit result.")
        from . import _membrane

        membrane_type = getattr(_membrane, d["membrane"]["type"])
        params = membrane_type(**{k: (float(v) if isinstance(v, float) else np.asarray(v))
                                  for k, v in d["membrane"]["fields"].items()})
        return cls(
            params=params, loss=d["loss"], stderr=d["stderr"],
            correlation=np.asarray(d["correlation"], float), covariance=np.asarray(d["covariance"], float),
            noise_sigma=d["noise_sigma"], losses=np.asarray(d["losses"], float),
            history=np.asarray(d["history"], float), polish_history=np.asarray(d["polish_history"], float),
            converged=np.asarray(d["converged"], bool), failed=np.asarray(d["failed"], bool),
            start_params={k: np.asarray(v) for k, v in d["start_params"].items()},
            final_params={k: np.asarray(v) for k, v in d["final_params"].items()},
            best=d["best"], n_solves=d["n_solves"], wall_time=d["wall_time"], free=tuple(d["free"]),
            steps_done=d["steps_done"], _resume=d["resume"],
        )


# ----------------------------------------------------------------------- fit


_DEFAULT_OPTIMIZER = []  # built once, so repeated fits reuse one compilation


def _default_optimizer():
    if not _DEFAULT_OPTIMIZER:
        _DEFAULT_OPTIMIZER.append(_build_default_optimizer())
    return _DEFAULT_OPTIMIZER[0]


def _build_default_optimizer():
    """Adam on the unconstrained coordinates with a decaying step (0.05 → 0.002 per unit),
    gradient clipping at global norm 1, and non-finite updates skipped."""
    schedule = optax.exponential_decay(0.05, transition_steps=1, decay_rate=0.985, end_value=0.002)
    return optax.apply_if_finite(
        optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule)), max_consecutive_errors=10
    )


def fit(
    init: AbstractMembrane,
    targets: Target | Sequence[Target],
    *,
    free: Sequence[str] = ("gNa", "gK", "gL"),
    bounds: dict | None = None,
    loss: Callable | None = None,
    optimizer: optax.GradientTransformation | str | None = None,
    steps: int = 100,
    n_starts: int = 1,
    seed: int = 0,
    polish: int = 20,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 16384,
    chunk: int = 10,
    progress: bool = True,
    resume: FitResult | None = None,
) -> FitResult:
    """Fit membrane parameters to voltage traces by gradient descent through the solver.

    Each start's free parameters live in an unconstrained space (positive ones in log space,
    bounded ones through a sigmoid, potentials in units of 10 mV), so every step is valid and
    the coordinates are of similar scale. All starts are optimised together: one compiled,
    vmapped loop, run in chunks of `chunk` steps (so a progress bar can show the best loss).
    With the default trace-MSE loss, `polish` Levenberg–Marquardt iterations (Jacobians by
    forward mode through Diffrax) then take every start to its optimum, which first-order
    methods approach only slowly. Standard errors come from the Gauss–Newton approximation of
    the trace residuals at the best optimum. Use float64 (`jax_enable_x64`) for fits: in
    float32 the solver's rounding limits how far the loss can fall.

    **Arguments:**
    - `init`: the starting membrane, e.g. `hh.presets.seed()`; its non-free parameters stay.
    - `targets`: an `hh.Target` or a sequence of them (each its own stimulus and times).
    - `free`: names of the parameters to fit: any of the membrane's `parameter_names`
      (for `hh.HodgkinHuxley` gNa, gK, gL, ENa, EK, EL, Cm, celsius; dotted paths such as
      "na.g" for an `hh.ChannelMembrane`).
    - `bounds`: {name: (lower, upper)} in natural units; default positive for conductances and
      Cm, unbounded otherwise.
    - `loss`: `loss(ts, V, target) -> scalar`; default `hh.TraceMSE()`. Built-in losses
      combine: `hh.TraceMSE() + 0.1 * hh.FeatureLoss()`.
    - `optimizer`: any `optax.GradientTransformation`, or "lbfgs" for `optax.lbfgs()`; default
      Adam (step 0.05 decaying to 0.002, clipping at global norm 1, non-finite updates skipped).
    - `steps`: optimiser steps (in total, counting those of a resumed fit).
    - `n_starts`: 1 starts from `init`; more draw every start at random (seeded by `seed`):
      positive parameters log-uniform in [init/4, 4·init], others uniform in init ± 10 mV
      (or °C), both within the bounds.
    - `polish`: Levenberg–Marquardt iterations after the optimiser (for trace MSEs and
      positive combinations of them, e.g. weighted windows; 0: none).
    - `rtol`, `atol`, `max_steps`: solver options for every simulation.
    - `chunk`: optimiser steps per compiled call.
    - `progress`: show a progress bar with the best loss (tqdm).
    - `resume`: a `FitResult` (e.g. from `FitResult.load`) to continue from: its starts and
      optimiser state carry on up to `steps` in total; the same `init`, targets, `free`,
      `bounds`, loss and optimiser give the same result as one uninterrupted fit.

    **Returns:** an `hh.FitResult`.

    Example:
        >>> target = hh.Target(stimulus=s, ts=ts, V=v_recorded)
        >>> res = hh.fit(hh.presets.seed(), [target], free=("gNa", "gK", "gL"), n_starts=16)
        >>> res.params.gNa, res.stderr["gNa"]
    """
    start_time = time.perf_counter()
    if not isinstance(init, AbstractMembrane):
        raise TypeError(f"{_OWNER}: `init` must be a membrane such as hh.presets.seed(), got {type(init).__name__}.")
    if isinstance(targets, Target):
        targets = (targets,)
    targets = tuple(targets)
    if not targets or not all(isinstance(t, Target) for t in targets):
        raise ValueError(f"{_OWNER}: `targets` must be an hh.Target or a non-empty sequence of them.")
    for name, value in (("steps", steps), ("chunk", chunk), ("n_starts", n_starts), ("polish", polish)):
        if not isinstance(value, (int, np.integer)) or value < (1 if name in ("chunk", "n_starts") else 0):
            raise ValueError(f"{_OWNER}: `{name}` must be a {'positive' if name in ('chunk', 'n_starts') else 'non-negative'} integer, got {value!r}.")
    if init.batch_shape != ():
        raise ValueError(f"{_OWNER}: `init` must be a single neuron (scalar parameters), got batch shape {init.batch_shape}.")
    spaces = _spaces(init, free, bounds)
    loss = TraceMSE() if loss is None else loss
    if not callable(loss):
        raise TypeError(f"{_OWNER}: `loss` must be callable as loss(ts, V, target), got {loss!r}.")
    use_lbfgs = isinstance(optimizer, str)
    if use_lbfgs and optimizer != "lbfgs":
        raise ValueError(f"{_OWNER}: `optimizer` must be an optax.GradientTransformation or 'lbfgs', got {optimizer!r}.")
    opt = optax.lbfgs() if use_lbfgs else (_default_optimizer() if optimizer is None else optimizer)
    if not isinstance(opt, optax.GradientTransformation):
        raise TypeError(f"{_OWNER}: `optimizer` must be an optax.GradientTransformation, got {type(opt).__name__}.")

    dtype = jnp.result_type(float)
    cast = lambda x: jnp.asarray(x, dtype) if eqx.is_inexact_array(x) or isinstance(x, float) else x  # noqa: E731
    cast_arrays = lambda x: jnp.asarray(x, dtype) if eqx.is_inexact_array(x) else x  # noqa: E731
    problem = _Problem(
        init=jax.tree_util.tree_map(cast, init),
        targets=jax.tree_util.tree_map(cast_arrays, targets),
        loss=loss, spaces=spaces, rtol=rtol, atol=atol, max_steps=max_steps,
        # Targets usually start at rest, where the error estimate is zero and steps could grow
        # past the stability limit that the gradients (not the trace) need.
        dtmax=tuple(jnp.asarray(stable_dtmax(init, t.v0), dtype) for t in targets),
    )
    names = [s.name for s in spaces]

    # Starts and optimiser state: fresh, or carried on from a saved result.
    if resume is not None:
        if tuple(resume.free) != tuple(names):
            raise ValueError(f"{_OWNER}: `resume` fitted {list(resume.free)}, but `free` is {names}.")
        u = jnp.asarray(resume._resume["u"], dtype)
        template = jax.vmap(opt.init)(u)
        leaves = [jnp.asarray(np.asarray(v, dtype=np.dtype(dt)).reshape(shape))
                  for v, dt, shape in resume._resume["opt_state"]]
        treedef = jax.tree_util.tree_structure(template)
        if treedef.num_leaves != len(leaves):
            raise ValueError(f"{_OWNER}: `resume` was made with a different optimiser.")
        opt_state = jax.tree_util.tree_unflatten(treedef, leaves)
        failed = jnp.asarray(resume._resume["failed"])
        best = (jnp.asarray(resume._resume["best_u"], dtype), jnp.asarray(resume._resume["best_loss"], dtype))
        done = resume.steps_done
        history = [np.asarray(resume.history)]
        start_params = resume.start_params
        n_solves = resume.n_solves - resume._resume["polish_solves"]
        n_starts = u.shape[0]
    else:
        if n_starts == 1:
            u = jnp.zeros((1, len(spaces)), dtype)
        else:
            rng = np.random.default_rng(seed)
            x0 = np.stack([s.sample(rng, n_starts) for s in spaces], axis=1)
            u = jnp.asarray(np.stack([s.unconstrained(x0[:, i]) for i, s in enumerate(spaces)], axis=1), dtype)
        opt_state = jax.vmap(opt.init)(u)
        failed = jnp.zeros((n_starts,), bool)
        best = (u, jnp.full((n_starts,), jnp.inf, dtype))
        done, history, n_solves = 0, [], 0
        start_params = _naturals(spaces, u)

    bar = _progress_bar(progress, total=max(steps - done, 0) + polish)
    while done < steps:
        active = min(chunk, steps - done)
        u, opt_state, failed, best, hist = _descent_chunk(
            problem, opt, use_lbfgs, u, opt_state, failed, best, jnp.asarray(active), chunk
        )
        hist = np.asarray(hist)[:, :active]
        history.append(hist)
        done += active
        n_solves += active * n_starts * len(targets)
        _advance(bar, active, hist[:, -1])
    history = np.concatenate(history, axis=1) if history else np.zeros((n_starts, 0))
    resume_state = dict(
        u=np.asarray(u).tolist(),
        opt_state=[(np.asarray(x).tolist(), str(np.asarray(x).dtype), list(np.shape(x)))
                   for x in jax.tree_util.tree_leaves(opt_state)],
        failed=np.asarray(failed).tolist(),
        best_u=np.asarray(best[0]).tolist(),
        best_loss=[float(x) for x in np.asarray(best[1])],
    )

    polish_solves = 0
    polish_history = np.zeros((n_starts, 0))
    can_polish = is_least_squares(loss) and polish > 0
    if can_polish:
        u_final, cost, r_all, J_all, converged, polish_history = _polish(problem, best[0], polish)
        polish_history = np.asarray(polish_history)
        polish_solves += (polish + 1) * n_starts * len(targets)
        _advance(bar, polish, polish_history[:, -1])
        losses = np.asarray(cost, float)
        converged = np.asarray(converged)
    else:
        u_final = best[0]
        best_loss = np.asarray(best[1], float)
        losses = best_loss if done > 0 else np.asarray(_final_losses(problem, u_final), float)
        polish_solves += 0 if done > 0 else n_starts * len(targets)
        tail = history[:, -min(10, history.shape[1]):] if history.shape[1] else losses[:, None]
        with np.errstate(invalid="ignore"):
            converged = np.abs(tail[:, 0] - losses) <= 1e-6 * np.abs(losses)
    if bar is not None:
        bar.close()
    failed = np.asarray(failed) | ~np.isfinite(losses)
    losses = np.where(failed, np.nan, losses)
    converged = np.asarray(converged) & ~failed
    if np.all(failed):
        raise RuntimeError(
            f"{_OWNER}: every start failed (non-finite loss or gradient, or a solve that did not "
            f"finish). Check the targets' units and the bounds, or loosen rtol/atol."
        )
    best = int(np.nanargmin(losses))
    u_best = jnp.asarray(u_final)[best]
    params = _membrane_at(init, spaces, u_best)
    params = jax.tree_util.tree_map(lambda x: float(x) if eqx.is_array(x) and x.ndim == 0 else x, params)
    if can_polish and isinstance(loss, TraceMSE) and loss.window is None:
        # The polish's residuals are the weighted trace residuals: reuse its Jacobian.
        se, corr, cov, sigma = _uncertainty(problem, u_best, r_all[best], J_all[best])
    else:
        se, corr, cov, sigma = _uncertainty(problem, u_best)
        polish_solves += (len(spaces) + 1) * len(targets)
    resume_state["polish_solves"] = polish_solves
    return FitResult(
        params=params, loss=float(losses[best]), stderr=dict(zip(names, se.tolist())),
        correlation=corr, covariance=cov, noise_sigma=sigma, losses=losses, history=history,
        polish_history=polish_history, converged=converged, failed=failed,
        start_params=start_params, final_params=_naturals(spaces, u_final), best=best,
        n_solves=n_solves + polish_solves, wall_time=time.perf_counter() - start_time,
        free=tuple(names), steps_done=done, _resume=resume_state,
    )


def _progress_bar(enabled, total):
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="hh.fit", unit="step")


def _advance(bar, n, losses):
    if bar is None:
        return
    finite = losses[np.isfinite(losses)]
    bar.set_postfix(best=f"{finite.min():.4g}" if finite.size else "nan", failed=int(np.sum(~np.isfinite(losses))))
    bar.update(n)
