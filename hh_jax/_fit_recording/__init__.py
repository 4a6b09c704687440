"""Fit a recorded cell: `hh.fit_recording`, the two-stage fit of a model to a current-clamp
recording's features, and `hh.RecordingFit`, what it returns.

The path: recording → its features and their noise (`_recorded`) → the model
at the recorded rest (`_rest`: EL solved for it) → a batched global search
(Sobol points over the bounds, then a narrower round around the best, every candidate one
batched solve with per-neuron steps) → Levenberg–Marquardt on the feature residuals from the
best candidates, failed starts replaced by the next (`_refine`) → exact
features of the fitted model → `RecordingFit`. The progress of the search and the refinement
is what a checkpoint holds (`_progress`).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from dataclasses import dataclass, field

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._atomic import atomic_path
from .._features import spike_features
from .._fit import FitInterrupted
from .._fit._least_squares import LM_CHUNK, isolate_failures, lm_chunk, lm_restored, lm_saved, lm_select, lm_start
from .._interrupts import interrupts_raise
from ._recorded import (
    DEFAULT_FEATURES,
    SMOOTH,
    feature_names,
    measure,
    scaled,
    scales,
    tolerances,
    within,
)
from ._rest import (
    POSPISCHIL_FREE,
    as_arrays,
    at_rest_with,
    check_model,
    search_bounds,
)
from ._progress import Progress, fingerprint
from ._refine import FeatureProblem, coordinates, standard_errors
from ._search import search as _search
from .._recording import Recording
from .._simulate import simulate
from .._stimulus import Step
from .._trace import Trace
from .._validation import check_count, check_finite, check_positive

OWNER = "hh.fit_recording"
CHUNK = 128  # candidates per compiled batched solve
REFINE_DT = 0.1  # ms: sampling of the refinement's traces (events are located between samples)
AFTER = 20.0  # ms simulated after the step's end while fitting (the features end with the step)


@dataclass
class RecordingFit:
    """What `hh.fit_recording` returns.

    **Fields:**
    - `membrane`: the fitted model (EL set so that its rest is the recorded one).
    - `free`: the fitted parameters' names; `parameters`: {name: value} for them and EL.
    - `recorded`, `fitted`: {feature: value} of the recording and of the fitted model, as
      `hh.spike_features` defines them (mV, ms, spikes); `tolerance`: the acceptance
      tolerance of each; `within`: {feature: fitted within tolerance}; `features`: the
      features fitted.
    - `noise`: {feature: σ}, the recorded features' noise estimated from the spike-to-spike
      variability; `stderr`: {name: standard error} of the free parameters from the
      feature Jacobian and that noise (inf where the features do not determine one);
      `covariance` `(p, p)` in `free` order.
    - `score`: Σ ((fitted − recorded)/scale)² over `features`, the scale half the tolerance
      for count, ISI, latency, rest and AP peak (the objective the fit minimised); `scale`:
      {feature: that scale}.
    - `starts`: one record per refinement start: the search candidate it came from, its
      search score, its final score, and "ok", "failed" (its solve or features failed at
      the start; it was replaced by the next candidate) or "replacement".
    - `n_candidates`, `n_failed_candidates`: search candidates simulated, and those that
      could not be (solve failed, unstable rest).
    - `wall_time`: seconds per stage {"search", "refine", "evaluate", "total"} (a resumed
      fit's include the time before the interruption).
    - `trace`: the fitted model simulated at the recording's sample times (an `hh.Trace`).

    Example:
        >>> fit = hh.fit_recording(rec)
        >>> fit.within, fit.membrane.gNa, fit.stderr["gNa"]
    """

    membrane: object
    free: tuple
    parameters: dict
    features: tuple
    recorded: dict
    fitted: dict
    tolerance: dict
    within: dict
    noise: dict
    stderr: dict
    covariance: np.ndarray
    score: float
    scale: dict
    starts: list
    n_candidates: int
    n_failed_candidates: int
    wall_time: dict
    trace: Trace = field(repr=False)

    @property
    def ok(self) -> bool:
        """Every fitted feature within its tolerance."""
        return all(self.within[k] for k in self.features)

    def to_dict(self) -> dict:
        """A JSON-ready summary (everything but the membrane object and the trace)."""
        skip = ("membrane", "trace", "covariance")
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        out["covariance"] = np.asarray(self.covariance).tolist()
        out["model"] = type(self.membrane).__name__
        out["free"] = list(self.free)
        out["features"] = list(self.features)
        out["ok"] = self.ok
        return json.loads(json.dumps(out, default=float).replace("Infinity", "null").replace("NaN", "null"))

    def save(self, path) -> None:
        """Write `to_dict()` as JSON (atomically: a reader sees the old file or the new one)."""
        with atomic_path(path) as tmp, open(tmp, "w") as fh:
            json.dump(self.to_dict(), fh, indent=2)


def fit_recording(
    recording: Recording,
    model="pospischil",
    *,
    free=None,
    features=DEFAULT_FEATURES,
    bounds: dict | None = None,
    stimulus: Step | None = None,
    threshold: float = 0.0,
    recorded: dict | None = None,
    noise: dict | None = None,
    candidates: int = 512,
    starts: int = 4,
    iterations: int = 30,
    seed: int = 0,
    rtol: float = 1e-6,
    max_steps: int = 65536,
    progress: bool = True,
    checkpoint=None,
    resume=None,
) -> RecordingFit:
    """Fit a model to a current-clamp recording's features in one call: a batched global
    search, then Levenberg–Marquardt on the feature residuals from the best candidates.

    The model always starts at its own rest: EL is solved for the recorded resting potential
    at the holding current (the stimulus before its onset), so every gate, the slow M
    current's included, starts in equilibrium and the rest matches by construction;
    candidates whose rest is unstable are discarded. Features are those of
    `hh.spike_features` (checked against eFEL), each residual in units of half its
    acceptance tolerance (spike count 2, ISI 15 %, latency 10 ms, rest 2 mV, AP peak 10 mV)
    or, for the spike shape and adaptation, of a loose scale (AP width 1 ms, AHP 10 mV,
    adaptation 0.2) that guides the fit without pulling it off the first five. The search scores `candidates` Sobol points over the
    bounds (log scale for conductances) and half as many around the best of them, all in
    batched solves; refinement runs from the `starts` best, replacing a start whose solve
    fails by the next candidate. Standard errors come from the Jacobian of the smooth
    features (all but the count and the rest) and their noise σ estimated from the
    recording (sandwich covariance), with every crossing, peak and trough located on the
    solution between samples so that those derivatives follow the spikes; they are local
    (linearised): on 20 synthetic cells the truth was within ±2 of them for 95 % of four
    free parameters (README, "Fitting a recorded cell"). Use float64 (`jax_enable_x64`).

    **Arguments:**
    - `recording`: an `hh.Recording` with its current (µA/cm²), e.g. from `hh.load_trace`.
    - `model`: "pospischil" (`hh.presets.pospischil()`) or a channel membrane with leak
      parameters `gL` and `EL`; its parameters outside `free` stay as they are.
    - `free`: parameters to fit; default gNa, gK, gM, gL, VT, ENa for "pospischil" (EL is
      never free: the rest sets it).
    - `features`: names from `hh.spike_features` ("spike_count", "isi", "first_spike",
      "resting", "ap_peak", "ap_width", "ahp", "adaptation"; aliases "count", "latency",
      "rest"), default all eight.
    - `bounds`: {name: (low, high)} natural units; default wide physiological ranges for the
      Pospischil model, else a factor 10 (positive) or ±20 mV around the model's value.
    - `stimulus`: an `hh.Step` (µA/cm², ms); default `recording.stimulus("step")`.
    - `threshold`: spike threshold (mV) for every feature.
    - `recorded`, `noise`: {feature: value} replacing the measured features or their noise σ
      (e.g. to fit noisy synthetic features).
    - `candidates`: search points in the first round (a second round adds half as many).
    - `starts`: refinement starts; `iterations`: Levenberg–Marquardt iterations at most.
    - `seed`: the Sobol scrambling and the second round's draws.
    - `rtol`: the refinement's solver tolerance (relative and absolute); `max_steps` its
      step limit per solve.
    - `progress`: show a progress bar of the refinement (tqdm).
    - `checkpoint`: a path; the progress (the search's scores so far, then the refinement's
      starts and state) is written there, atomically, after every compiled chunk of
      candidates or iterations, and at the end.
    - `resume`: a checkpoint's path, or the `.result` of the `hh.FitInterrupted` an
      interrupted call raised: the fit goes on from there and ends where the uninterrupted
      one would have. The recording and every argument but `iterations` (which may grow)
      must be those of the interrupted call; a checkpoint of another fit is refused.

    **Returns:** an `hh.RecordingFit`. Raises `RuntimeError` only when no candidate could be
    simulated at all, and `hh.FitInterrupted` on Ctrl-C or SIGTERM: its `result` holds the
    progress to pass as `resume=` (with `checkpoint=`, also written there).

    Example:
        >>> rec = hh.load_trace("cell.npz", area_cm2=1.857e-4, junction_mV=-14.0, ...)
        >>> fit = hh.fit_recording(rec, "pospischil", features=("count", "isi", "latency", "rest", "ap_peak"))
        >>> fit.fitted["isi"], fit.recorded["isi"], fit.within
    """
    t_start = time.perf_counter()
    setup = _setup(recording, model, free, features, bounds, stimulus, threshold, recorded, noise, candidates,
                   starts, iterations, seed, rtol, max_steps)
    mark = fingerprint(setup, candidates, starts, seed, rtol, max_steps)
    state = Progress(mark) if resume is None else Progress.resumed(resume, mark, OWNER)
    clock = dict(stage="search", since=t_start)

    def save():
        now = time.perf_counter()
        state.elapsed[clock["stage"]] += now - clock["since"]
        clock["since"] = now
        state.save(checkpoint)

    bar = _progress_bar(progress, iterations)
    setup["problem"] = feature_problem(setup, rtol)
    compiling = _compile_refinement(setup["problem"], starts)
    with interrupts_raise():
        try:
            x, scores, n_failed = _search(setup, candidates, seed, state, save)
            compiling.join()
            save()
            clock["stage"] = "refine"
            lm, slots, report = _refine(setup, x, scores, starts, iterations, rtol, state, save, bar)
            save()
        except KeyboardInterrupt as err:
            save()
            where = f" and written to {checkpoint}" if checkpoint is not None else ""
            raise FitInterrupted(
                f"{OWNER} interrupted in its {clock['stage']}; the progress is in this exception's `.result`{where}: "
                "pass it as `resume=`.", state.to_dict()) from err
        finally:
            if bar is not None:
                bar.close()
    t_refine = time.perf_counter()
    result = _assemble(setup, lm, slots, report, x, scores, n_failed)
    t_end = time.perf_counter()
    result.wall_time = {"search": state.elapsed["search"], "refine": state.elapsed["refine"],
                        "evaluate": t_end - t_refine, "total": state.elapsed["search"] + state.elapsed["refine"]
                        + (t_end - t_refine)}
    return result


# ----------------------------------------------------------------------- the steps


def _setup(recording, model, free, features, bounds, stimulus, threshold, recorded, noise, candidates, starts,
           iterations, seed, rtol, max_steps) -> dict:
    """Validate the arguments; measure the recording."""
    if not isinstance(recording, Recording):
        raise TypeError(f"{OWNER}: `recording` must be an hh.Recording (from hh.load_trace), got {type(recording).__name__}.")
    model = check_model(model, OWNER)
    if free is None:
        if type(model).__name__ != "Pospischil":
            raise ValueError(f"{OWNER}: pass `free` (the parameters to fit) for a {type(model).__name__}.")
        free = POSPISCHIL_FREE
    free = (free,) if isinstance(free, str) else tuple(free)
    bnds = search_bounds(model, free, bounds, OWNER)
    keys = feature_names(features, OWNER)
    if stimulus is None:
        if recording.I is None:
            raise ValueError(f"{OWNER}: `recording` has no current trace; pass `stimulus` (an hh.Step).")
        stimulus = recording.stimulus("step")
    if not isinstance(stimulus, Step):
        raise TypeError(f"{OWNER}: `stimulus` must be an hh.Step (a current step), got {type(stimulus).__name__}.")
    check_finite("threshold", threshold, OWNER)
    for name, value, minimum in (("candidates", candidates, 2), ("starts", starts, 1), ("iterations", iterations, 1),
                                 ("seed", seed, 0), ("max_steps", max_steps, 1)):
        check_count(name, value, OWNER, minimum=minimum)
    check_positive("rtol", rtol, OWNER, "")
    onset, offset = float(stimulus.start), float(stimulus.stop)
    t1 = float(recording.t[-1])
    if not 0.0 < onset < offset <= t1 + 1e-9 or recording.t[0] > 0.9 * onset:
        raise ValueError(f"{OWNER}: the step ({onset}–{offset} ms) must start after the recording's first tenth "
                         f"and end within it (0–{t1} ms).")
    rec_feats, rec_noise = measure(recording.t, recording.V, onset, offset, threshold)
    for what, given, into in (("recorded", recorded, rec_feats), ("noise", noise, rec_noise)):
        unknown = sorted(set(given or {}) - set(rec_feats))
        if unknown:
            raise ValueError(f"{OWNER}: `{what}` names unknown feature(s) {unknown}.")
        into.update({k: float(v) for k, v in (given or {}).items()})
    if not rec_feats["spike_count"] >= 1:
        raise ValueError(f"{OWNER}: the recording has no spike above threshold={threshold} mV during the step; "
                         "there is nothing to fit the spiking features to.")
    missing = [k for k in keys if not np.isfinite(rec_feats[k])]
    if missing:
        raise ValueError(f"{OWNER}: the recording lacks feature(s) {missing} (too few spikes); leave them out of `features`.")
    smooth = tuple(k for k in keys if k in SMOOTH)
    if not smooth:
        raise ValueError(f"{OWNER}: `features` must include one with a derivative, any of {list(SMOOTH)}.")
    holding = float(stimulus(jnp.asarray(0.9 * onset)))
    return dict(model=as_arrays(model), free=free, bounds=bnds, keys=keys, smooth=smooth, stimulus=stimulus,
                onset=onset, offset=offset, t1=t1, t_fit=min(t1, offset + AFTER), threshold=float(threshold), recorded=rec_feats, noise=rec_noise,
                tolerance=tolerances(rec_feats), scale=scales(rec_feats), v_rest=float(rec_feats["resting"]), holding=holding,
                recording=recording, max_steps=max_steps, chunk=min(CHUNK, candidates))


def _refine(s, x, scores, starts, iterations, rtol, progress, save, bar):
    """Levenberg–Marquardt from the best candidates. A start that cannot be evaluated where
    it begins is replaced by the next candidate (up to three rounds of replacement); the
    state goes into `progress` and `save()` runs after every compiled chunk."""
    order = [int(i) for i in np.argsort(scores) if np.isfinite(scores[i])]
    k = min(starts, len(order))
    dtype = jnp.result_type(float)
    problem = s["problem"]
    r = progress.refine
    if r is None or "lm" not in r:  # not started, or interrupted before its first chunk ended
        # `report` holds a record per start tried; `entry[j]` is slot j's current record.
        r = r or dict(entry=list(range(k)), rounds=0, iterations=0,
                      report=[dict(candidate=i, search_score=float(scores[i]), status="ok") for i in order[:k]])
        state = lm_start(problem, jnp.asarray(coordinates(problem, x[_slots(r)]), dtype), dtype)
    else:
        state = lm_restored(problem, r["lm"], dtype)
    progress.refine = r
    if bar is not None:
        bar.update(min(r["iterations"], iterations))
    while r["iterations"] < iterations and not bool(jnp.all(state.done)):
        # While a start waits for its first evaluation, one iteration at a time: a start
        # that cannot be evaluated is replaced at once.
        pending = bool(jnp.any(~jnp.isfinite(state.cost) & ~state.done))
        active = 1 if pending else min(LM_CHUNK, iterations - r["iterations"])
        failed_before = np.asarray(state.failed)
        state, _, count = lm_chunk(problem, state, jnp.asarray(active), LM_CHUNK)
        r["iterations"] += int(count)
        state = isolate_failures(problem, state, np.asarray(state.failed) & ~failed_before)
        state = _replace_failed(problem, state, r, order, scores, x, dtype)
        r["lm"] = lm_saved(state)
        save()
        if bar is not None:
            cost = np.asarray(state.cost)
            finite = cost[np.isfinite(cost)]
            bar.set_postfix(best=f"{finite.min():.3g}" if finite.size else "nan", failed=int(np.sum(np.asarray(state.failed))))
            bar.update(int(count))
    for j in np.flatnonzero(np.asarray(state.failed)):  # failed, with no candidate left to replace it
        r["report"][r["entry"][j]]["status"] = "failed"
    return state, _slots(r), r["report"]


def _compile_refinement(problem, starts, chunk=lm_chunk) -> threading.Thread:
    """Compile the refinement's iterations (`lm_chunk` for `starts` starts, run for zero
    iterations) in a thread while the search runs: the search's batched solves keep about
    one of two CPU cores busy, and the compiled program is then found in JAX's cache. A
    failure here only means the refinement compiles it itself. (`chunk` is bound when this
    module is imported: the warm-up is not one of the refinement's chunks.)"""
    def run():
        try:
            dtype = jnp.result_type(float)
            u = jnp.zeros((starts, len(problem.names)), dtype)
            jax.block_until_ready(chunk(problem, lm_start(problem, u, dtype), jnp.asarray(0), LM_CHUNK))
        except Exception:  # noqa: BLE001 — the refinement compiles it again and reports any error
            pass

    thread = threading.Thread(target=run, name="hh.fit_recording: compile refinement", daemon=True)
    thread.start()
    return thread


def feature_problem(s, rtol, keys=None, unit=None) -> FeatureProblem:
    """The refinement's residuals for the setup `s`: features `keys` (default the fit's) in
    units `unit` (default their scales), traces sampled every `REFINE_DT`, the events of up
    to twice the recorded spikes (+ 16) located between samples (a model that fires more is
    far off and still scored)."""
    model, bounds = s["model"], s["bounds"]
    keys = s["keys"] if keys is None else tuple(keys)
    unit = [s["scale"][f] for f in keys] if unit is None else unit
    log = tuple(n in model.positive_parameters for n in bounds)
    lo = np.array([np.log(b[0]) if lg else b[0] for b, lg in zip(bounds.values(), log)])
    hi = np.array([np.log(b[1]) if lg else b[1] for b, lg in zip(bounds.values(), log)])
    dtype = jnp.result_type(float)
    arr = lambda v: jnp.asarray(v, dtype)  # noqa: E731
    return FeatureProblem(
        model=model, stimulus=s["stimulus"], ts=jnp.arange(0.0, s["t_fit"], REFINE_DT, dtype=dtype),
        recorded=arr([s["recorded"][f] for f in keys]), tolerance=arr(unit), lo=arr(lo), hi=arr(hi),
        v_rest=arr(s["v_rest"]), holding=arr(s["holding"]), onset=arr(s["onset"]), offset=arr(s["offset"]),
        threshold=arr(s["threshold"]), rtol=arr(rtol), names=tuple(bounds), log=log, keys=keys,
        max_steps=s["max_steps"], max_events=2 * int(s["recorded"]["spike_count"]) + 16)


def _slots(r):
    """The search candidate each refinement slot is working on."""
    return [r["report"][e]["candidate"] for e in r["entry"]]


def _replace_failed(problem, state, r, order, scores, x, dtype):
    """Starts that failed where they began take the next search candidates (a round of
    replacement; three at most). The candidates tried so far are `order[:len(report)]`."""
    failed = np.flatnonzero(np.asarray(state.failed))
    if failed.size == 0 or r["rounds"] >= 3 or len(r["report"]) >= len(order):
        return state
    r["rounds"] += 1
    take = np.zeros(len(r["entry"]), bool)
    for j in failed:
        if len(r["report"]) >= len(order):
            break
        new = order[len(r["report"])]
        r["report"][r["entry"][j]]["status"] = "failed"
        replaces = r["report"][r["entry"][j]]["candidate"]
        r["entry"][j] = len(r["report"])
        r["report"].append(dict(candidate=new, search_score=float(scores[new]), status="replacement", replaces=replaces))
        take[j] = True
    fresh = lm_start(problem, jnp.asarray(coordinates(problem, x[_slots(r)]), dtype), dtype)
    return lm_select(take, fresh, state)


def _assemble(s, state, slots, report, x, scores, n_failed):
    """The best refined start (lowest Levenberg–Marquardt cost: the same score as the
    search's), its standard errors, and its exact features, simulated at the recording's
    samples."""
    problem, rec = s["problem"], s["recording"]
    failed = np.asarray(state.failed)
    cost = np.where(failed, np.inf, np.asarray(state.cost))
    for j, i in enumerate(slots):
        for rep in report:
            if rep["candidate"] == i and rep["status"] != "failed":
                rep["final_score"] = float(cost[j])
    b = int(np.argmin(cost))
    if np.isfinite(cost[b]):
        x_best = np.asarray(problem.natural(state.u[b]))
        smooth = [i for i, f in enumerate(s["keys"]) if f in SMOOTH]
        se, cov = standard_errors(problem, state.u[b], np.asarray(state.J[b])[smooth],
                                  [s["scale"][s["keys"][i]] for i in smooth], [s["noise"][s["keys"][i]] for i in smooth])
    else:  # no start could be refined: the best search candidate, without standard errors
        b = int(np.argmin([scores[i] for i in slots]))
        x_best = x[slots[b]]
        se, cov = np.full(len(s["free"]), np.inf), np.full((len(s["free"]),) * 2, np.inf)
    membrane = _scalars(at_rest_with(s["model"], s["free"], x_best, s["v_rest"], s["holding"]))
    parameters = {n: float(getattr(membrane, n)) for n in (*s["free"], "EL")}
    ts = jnp.asarray(rec.t, jnp.result_type(float))  # in float32 too: t1 is the last save time as rounded
    trace = simulate(membrane, s["stimulus"], t0=float(ts[0]), t1=float(ts[-1]), ts=ts, v0=s["v_rest"], save="V",
                     rtol=float(problem.rtol), atol=float(problem.rtol), throw=False, max_steps=problem.max_steps)
    fitted = spike_features(rec.t, np.asarray(trace.V), stim_start=s["onset"], stim_end=s["offset"], threshold=s["threshold"])
    score = float(np.sum(scaled(fitted, s["recorded"], s["scale"], s["keys"]) ** 2))
    return RecordingFit(
        membrane=membrane, free=s["free"], parameters=parameters, features=s["keys"], recorded=s["recorded"],
        fitted=fitted, tolerance=s["tolerance"], within=within(s["recorded"], fitted, s["tolerance"]),
        noise=s["noise"], stderr=dict(zip(s["free"], se.tolist())), covariance=cov, score=score, scale=s["scale"], starts=report,
        n_candidates=int(scores.size), n_failed_candidates=n_failed, wall_time={}, trace=trace)


def _scalars(membrane):
    return jax.tree_util.tree_map(lambda v: float(v) if eqx.is_array(v) and v.ndim == 0 else v, membrane)


def _progress_bar(enabled, total):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=OWNER, unit="iteration")
