"""The fit's result: estimates, uncertainty, per-start records, and what a resume needs.

Saved as JSON by an atomic write (a temporary file renamed over the target), so an
interrupted save never leaves a truncated result; a file that is not a complete result is
refused with a `ValueError` naming it. Membrane types are read from an explicit allow-list.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

import equinox as eqx
import jax
import numpy as np

from .._atomic import atomic_path
from .._membrane import AbstractMembrane, HodgkinHuxley, Pospischil

# The membrane types a saved result may name (never an arbitrary attribute of a module).
_LOADABLE = {cls.__name__: cls for cls in (HodgkinHuxley, Pospischil)}

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
        write_json_atomically(path, payload)

    @classmethod
    def load(cls, path) -> "FitResult":
        """Read a result written by `save`."""
        d = _read_result(path)
        params = _LOADABLE[d["membrane"]["type"]](**{
            k: (float(v) if isinstance(v, float) else np.asarray(v)) for k, v in d["membrane"]["fields"].items()
        })
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


_REQUIRED = ("membrane", "loss", "stderr", "correlation", "covariance", "noise_sigma", "losses", "history",
             "polish_history", "converged", "failed", "start_params", "final_params", "best", "n_solves",
             "wall_time", "free", "steps_done", "resume")


def write_json_atomically(path, payload) -> None:
    """Write JSON so that readers see the old file or the complete new one."""
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        json.dump(payload, fh)


def _read_result(path) -> dict:
    owner = "hh.FitResult.load"
    try:
        with open(path, encoding="utf-8") as fh:
            d = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{owner}: {path} is not a complete saved fit result (truncated or corrupt: {err}).") from None
    if not isinstance(d, dict) or d.get("format") != "hh_jax.FitResult":
        raise ValueError(f"{owner}: {path} is not a saved hh_jax fit result.")
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise ValueError(f"{owner}: {path} lacks {missing}; it is not a complete saved fit result.")
    kind = d["membrane"].get("type") if isinstance(d["membrane"], dict) else None
    if kind not in _LOADABLE:
        raise ValueError(f"{owner}: {path} names membrane type {kind!r}; loadable types are {sorted(_LOADABLE)}.")
    return d


def digest(*parts) -> str:
    """A short digest of arrays (their bytes) and other values (their repr): one part of a
    fingerprint that a resumed fit must share with the fit it continues."""
    h = hashlib.sha256()
    for part in parts:
        h.update(np.ascontiguousarray(part).tobytes() if isinstance(part, np.ndarray) else repr(part).encode())
    return h.hexdigest()[:16]


def leaves(tree) -> list:
    """A pytree's leaves, arrays as numpy arrays, ready for `digest`."""
    return [np.asarray(x) if eqx.is_array(x) else x for x in jax.tree_util.tree_leaves(tree)]


def problem_fingerprint(init, targets, free, bounds, loss, n_starts) -> dict:
    """What a resumed fit must share with the one it continues, each part as a short digest
    (so a mismatch can be named)."""

    def describe(fn):  # a plain function by name (its repr holds a memory address)
        return fn if isinstance(fn, eqx.Module) else f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__name__)}"

    return dict(
        membrane=digest(type(init).__name__, *leaves(init)),
        targets=digest(len(targets), *[x for t in targets for x in leaves(t)], *[repr(type(t.stimulus)) for t in targets]),
        free=list(free), bounds=digest(sorted((k, tuple(map(float, v))) for k, v in (bounds or {}).items())),
        loss=digest(repr(describe(loss))), n_starts=int(n_starts),
    )


def fingerprint_mismatch(saved: dict, now: dict) -> list[str]:
    """The parts of the problem that differ between a saved fit and this call."""
    names = dict(membrane="init (membrane type or parameters)", targets="targets", free="free", bounds="bounds",
                 loss="loss", n_starts="n_starts")
    return [names[k] for k in names if saved.get(k) != now.get(k)]
