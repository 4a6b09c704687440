"""The search of `hh.fit_recording`: every candidate parameter set at the recorded rest,
solved in batches with per-neuron steps at loose tolerances, scored on its features in units
of their tolerances; Sobol points over the bounds, then a narrower round around the best.

A candidate fails (score inf) when its solve does not finish (a quarter of the fit's
`max_steps`: one that needs more fires far faster than any recording), its rest is unstable,
or its trace is not finite.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .._batch import Batching
from ._recorded import scaled, simulated_features
from ._rest import at_rest_with, from_unit, rest_is_stable, to_unit

OWNER = "hh.fit_recording"
SEARCH_DT = 0.1  # ms: sampling of the search's traces (features from the samples: scores only)
SEARCH_TOL = 1e-4  # the search's rtol and atol


def score_candidates(s, x):
    """Search score of at most `s["chunk"]` candidates `(n, p)`, one compiled batched solve
    (padded to the chunk, so every chunk reuses it): Σ ((f − recorded)/tolerance)² over the
    features (inf where the solve failed or the rest is unstable)."""
    n = x.shape[0]
    chunk = s["chunk"]
    x = np.concatenate([x, np.repeat(x[-1:], chunk - n, axis=0)])
    batch = at_rest_with(s["model"], s["free"], x, s["v_rest"], s["holding"])
    stable = rest_is_stable(batch, s["v_rest"], s["holding"])
    ts = jnp.arange(0.0, s["t_fit"], SEARCH_DT)
    feats, _ = simulated_features(batch, s["stimulus"], ts, s["v_rest"], s["onset"], s["offset"], s["threshold"],
                                  rtol=SEARCH_TOL, atol=SEARCH_TOL, throw=False, max_steps=max(s["max_steps"] // 4, 1),
                                  batching=Batching(chunk_size=chunk, per_neuron=True))
    feats = {k: np.asarray(v) for k, v in feats.items()}
    r = scaled(feats, s["recorded"], s["scale"], s["keys"])
    score = np.sum(r**2, axis=-1)
    score = np.where(stable & feats["solved"].astype(bool) & np.isfinite(score), score, np.inf)
    return score[:n]


def search(s, candidates, seed, progress, save):
    """Sobol points over the bounds, then half as many drawn around the best 1/16 of them.
    The scores are kept in `progress.search` chunk by chunk and `save()` is called after
    each, so an interrupted search resumes at its next chunk (the points are deterministic
    given `seed`)."""
    model, bounds = s["model"], s["bounds"]
    p = len(bounds)
    state = progress.search
    if not state:
        from scipy.stats import qmc  # here, not at import: scipy.stats takes about 1 s to import

        x = from_unit(model, bounds, qmc.Sobol(d=p, scramble=True, seed=seed).random(candidates))
        state.update(x=x, scores=np.full(candidates, np.nan), round=1)
    _score_pending(s, state, 0, candidates, save)
    if state["round"] == 1:
        x, scores = state["x"], state["scores"]
        ok = np.flatnonzero(np.isfinite(scores))
        if ok.size >= 2:
            elite = ok[np.argsort(scores[ok])][: max(8, candidates // 16)]
            ze = to_unit(model, bounds, x[elite])
            spread = np.maximum(ze.std(axis=0), 0.02)
            rng = np.random.default_rng(seed)
            z2 = np.clip(rng.normal(ze.mean(axis=0), spread, (max(candidates // 2, 1), p)), 0.0, 1.0)
            state.update(x=np.concatenate([x, from_unit(model, bounds, z2)]),
                         scores=np.concatenate([scores, np.full(z2.shape[0], np.nan)]))
        state["round"] = 2
    _score_pending(s, state, candidates, state["x"].shape[0], save)
    x, scores = state["x"], state["scores"]
    n_failed = int(np.sum(~np.isfinite(scores)))
    if n_failed == scores.size:
        raise RuntimeError(
            f"{OWNER}: none of the {scores.size} search candidates could be simulated (every solve failed or its "
            "rest was unstable); check the recording's units and the bounds.")
    return x, scores, n_failed


def _score_pending(s, state, begin, end, save):
    """Score the candidates begin:end not scored yet (NaN), a compiled chunk at a time."""
    for i in range(begin, end, s["chunk"]):
        j = min(i + s["chunk"], end)
        if np.any(np.isnan(state["scores"][i:j])):
            state["scores"][i:j] = score_candidates(s, state["x"][i:j])
            save()
