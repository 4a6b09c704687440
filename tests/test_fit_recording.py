"""hh.fit_recording: the leak rule that sets the rest, the fit's features, a synthetic cell
recovered, failed starts replaced, bad input refused, and the command line.

References are independent of the fit: Newton's resting potential and the vector field
(rest), `hh.spike_features` on a finely sampled trace (features), the known parameters of
a simulated cell (recovery)."""

import argparse
import importlib
import json
import os
import signal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hh_jax as hh
from hh_jax import _cli_commands as commands
from hh_jax import _fit_recording as F
from hh_jax._cli_parse import add_fit_arguments
from hh_jax._fit._least_squares import LM_CHUNK, _residuals_and_jacobian, isolate_failures, lm_chunk, lm_start
from hh_jax._fit_recording._recorded import count_between, simulated_features
from hh_jax._fit_recording._rest import at_rest, leak_reversal, rest_is_stable

search_module = importlib.import_module("hh_jax._fit_recording._search")  # F._search is its function

ONSET, OFFSET, T1 = 50.0, 250.0, 280.0
TRUTH = dict(gNa=60.0, gK=8.0, gM=0.05, gL=0.03, VT=-58.0, ENa=45.0)
SMALL = dict(candidates=32, starts=2, iterations=8, progress=False)
BOUNDS = {"gNa": (30.0, 120.0), "gK": (3.0, 20.0), "gM": (0.01, 0.2), "gL": (0.01, 0.1), "VT": (-65.0, -50.0),
          "ENa": (35.0, 60.0)}


def _synthetic(amplitude=3.0, v_rest=-72.0):
    """A Pospischil cell with known parameters at rest at `v_rest`, stepped, sampled every 0.02 ms."""
    cell = at_rest(hh.presets.pospischil(**TRUTH), v_rest, 0.0)
    t = np.arange(0.0, T1, 0.02)
    step = hh.Step(start=ONSET, stop=OFFSET, amplitude=amplitude)
    ts = jnp.asarray(t, jnp.result_type(float))
    V = np.asarray(hh.simulate(cell, step, t1=float(ts[-1]), ts=ts, v0=v_rest, save="V", rtol=1e-8, atol=1e-8).V)
    I = np.where((t >= ONSET) & (t < OFFSET), amplitude, 0.0)  # noqa: E741
    return hh.Recording(t=t, V=V, I=I, source="synthetic")


@pytest.fixture(scope="module")
def recording():
    return _synthetic()


@pytest.fixture(scope="module")
def searched_and_fitted(recording):
    """The fit, and what its search returned (reused by the replacement test)."""
    searches, search = [], F._search

    def spy(*args):
        searches.append(search(*args))
        return searches[-1]

    F._search = spy
    try:
        fit = hh.fit_recording(recording, bounds=BOUNDS, **SMALL)
    finally:
        F._search = search
    return searches[0], fit


@pytest.fixture(scope="module")
def fitted(searched_and_fitted):
    return searched_and_fitted[1]


@pytest.mark.parametrize("holding", [0.0, -0.5, 0.3])
def test_leak_rule_puts_rest_where_newton_and_the_vector_field_find_it(holding):
    params = dict(gNa=jnp.array([20.0, 56.0, 150.0]), gK=jnp.array([3.0, 6.0, 30.0]), gM=jnp.array([0.01, 0.075, 0.4]),
                  gL=jnp.array([0.01, 0.05, 0.2]), VT=jnp.array([-60.0, -56.2, -48.0]))
    for v_rest in (-90.0, -75.0, -65.0):
        m = at_rest(hh.presets.pospischil(**params), v_rest, holding)
        # The vector field at the rest state under the holding current is zero (every gate too).
        y = m.initial_state(v_rest)
        assert np.max(np.abs(np.asarray(m.derivatives(y, holding)))) < 1e-9
        if holding == 0.0:  # Newton's rest (hh's own, from EL) lands on it
            np.testing.assert_allclose(np.asarray(m.resting_potential()), v_rest, atol=1e-6)
    # A closed form for the leak alone: EL = V + (I_Na + I_K + I_M − I_hold)/gL (hand-computed here).
    m = hh.presets.pospischil(gNa=0.0, gK=0.0, gM=0.0, gL=0.1)
    np.testing.assert_allclose(float(leak_reversal(m, -70.0, holding)), -70.0 - holding / 0.1, atol=1e-9)


def test_rest_stability_agrees_with_a_perturbed_simulation():
    m = hh.presets.pospischil()
    for v_rest in (-80.0, -50.0):
        cell = at_rest(m, v_rest, 0.0)
        stable = bool(rest_is_stable(cell, v_rest, 0.0))
        y0 = cell.initial_state(v_rest).at[0].add(0.5)  # 0.5 mV off rest, gates at rest
        tr = hh.simulate(cell, None, t1=300.0, ts=jnp.array([300.0]), v0=v_rest + 0.5, save="V")
        drift = abs(float(tr.V[-1]) - v_rest)
        assert y0.shape[0] == 5
        assert stable == (drift < 0.5), (v_rest, stable, drift)


def test_fit_features_match_spike_features_on_a_fine_trace():
    cell = at_rest(hh.presets.pospischil(**TRUTH), -70.0, 0.0)
    step = hh.Step(start=ONSET, stop=OFFSET, amplitude=3.0)
    fine = jnp.arange(0.0, T1, 0.005)
    coarse = jnp.arange(0.0, T1, F.REFINE_DT)
    ref = hh.spike_features(np.asarray(fine), np.asarray(hh.simulate(cell, step, t1=float(fine[-1]), ts=fine, v0=-70.0,
                            save="V", rtol=1e-10, atol=1e-10).V), stim_start=ONSET, stim_end=OFFSET)
    f, _ = simulated_features(cell, step, coarse, -70.0, ONSET, OFFSET, 0.0, 32, rtol=1e-8, atol=1e-8)
    f = {k: float(v) for k, v in f.items()}
    assert ref["spike_count"] >= 4 and f["spike_count"] == ref["spike_count"]
    # Between samples of REFINE_DT (0.1 ms), the crossings, peaks and troughs are where samples of
    # 0.005 ms put them (those differ from the continuous ones by ~0.01 mV at the peaks).
    tolerance = dict(isi=1e-3, first_spike=1e-3, resting=1e-6, ap_peak=0.03, ap_width=1e-3, ahp=1e-3, adaptation=1e-4)
    for k, tol in tolerance.items():
        assert abs(f[k] - ref[k]) <= tol, (k, f[k], ref[k])


def test_feature_jacobian_follows_the_spikes_not_the_sampling_phase(recording):
    """The refinement's Jacobians (forward mode through one solve of two starts with shared
    steps, one tangent per parameter for both, traces sampled every `REFINE_DT`) against
    central differences of each start alone over a step that moves the late spikes by many
    samples (so the sampling phase averages out); both in units of the features' noise
    measured on an Allen cell. The largest sample and linear crossings missed by up to 10⁴."""
    s = F._setup(recording, hh.presets.pospischil(VT=TRUTH["VT"], ENa=TRUTH["ENa"]), ("gNa", "gK", "gM", "gL"),
                 F.DEFAULT_FEATURES, {k: BOUNDS[k] for k in ("gNa", "gK", "gM", "gL")}, None, 0.0, None, None, 32, 1, 1, 0,
                 1e-8, 65536)
    noise = dict(isi=0.30, first_spike=2.3, ap_peak=0.071, ap_width=0.0022, ahp=0.23, adaptation=0.0053)
    keys = tuple(noise)
    problem = F.feature_problem(s, rtol=1e-8, keys=keys, unit=[noise[k] for k in keys])
    truth = np.array([TRUTH[k] for k in ("gNa", "gK", "gM", "gL")])
    U = jnp.asarray(F.coordinates(problem, np.stack([truth, truth * np.array([1.1, 0.9, 1.2, 0.9])])))
    _, J, ok = jax.jit(lambda U: _residuals_and_jacobian(problem, U))(U)
    features = jax.jit(lambda u: problem.features(u)[0])
    eps = 1e-2
    assert np.all(np.asarray(ok))
    for u, J_u in zip(U, np.asarray(J)):
        J_fd = np.stack([(np.asarray(features(u.at[i].add(eps))) - np.asarray(features(u.at[i].add(-eps)))) / (2 * eps)
                         for i in range(u.size)], axis=1) / np.array([noise[k] for k in keys])[:, None]
        assert np.all(np.isfinite(J_u))
        assert np.all(np.abs(J_u - J_fd) <= 0.05 * np.abs(J_fd) + 1.0), (J_u, J_fd)


def test_synthetic_cell_is_recovered_within_tolerance(fitted, recording):
    assert fitted.ok, (fitted.recorded, fitted.fitted)
    # The rest is exact by construction, and the fitted trace sits there before the step.
    pre = np.asarray(fitted.trace.V)[np.asarray(fitted.trace.t) < ONSET]
    assert np.max(np.abs(pre - fitted.recorded["resting"])) < 1e-3
    assert set(fitted.stderr) == set(fitted.free) and fitted.wall_time["total"] > 0
    # The score is the objective in the stated units: half the tolerance for the acceptance features.
    assert fitted.scale["isi"] == pytest.approx(0.5 * fitted.tolerance["isi"]) and fitted.scale["ap_width"] == 1.0
    assert fitted.score == pytest.approx(sum(((fitted.fitted[k] - fitted.recorded[k]) / fitted.scale[k]) ** 2
                                             for k in fitted.features), rel=1e-9)
    assert all(s["status"] == "ok" for s in fitted.starts)
    json.dumps(fitted.to_dict())  # JSON-ready


def test_a_failing_start_is_replaced_by_the_next_candidate(recording, searched_and_fitted, monkeypatch):
    (x, scores, n_failed), _ = searched_and_fitted

    def poisoned(s, candidates, seed, *progress):  # the same search, with an unsimulable candidate first
        best = int(np.argmin(scores))
        bad = x[best].copy()
        bad[0] = np.nan  # gNa: this start cannot be simulated
        return np.concatenate([bad[None], x]), np.concatenate([[-1.0], scores]), n_failed

    monkeypatch.setattr(F, "_search", poisoned)
    fit = hh.fit_recording(recording, bounds=BOUNDS, **SMALL)
    statuses = [s["status"] for s in fit.starts]
    assert statuses[0] == "failed" and "replacement" in statuses
    assert np.isfinite(fit.score) and fit.within["spike_count"]


class _SharedSolve(eqx.Module):
    """Residuals u − 1 of every start, evaluated together as one solve with shared steps is:
    all fail when any start has u₀ > 5."""

    def batch_residuals(self, U):
        return U - 1.0, jnp.broadcast_to(~jnp.any(U[:, 0] > 5.0), U.shape[:1])

    def residuals(self, u):
        r, ok = self.batch_residuals(u[None])
        return r[0], ok[0]

    def residual_count(self):
        return 2

    def loss_resolution(self):
        return 0.0


def test_a_start_that_fails_a_shared_solve_is_told_from_the_starts_it_held_up():
    problem, dtype = _SharedSolve(), jnp.result_type(float)
    U = jnp.asarray([[0.0, 0.0], [9.0, 0.0], [2.0, 3.0]], dtype)
    state, _, _ = lm_chunk(problem, lm_start(problem, U, dtype), jnp.asarray(1), LM_CHUNK)
    assert np.all(np.asarray(state.failed))  # the shared first evaluation failed for every start
    state = isolate_failures(problem, state, np.asarray(state.failed))
    assert np.asarray(state.failed).tolist() == [False, True, False]
    # The others go on (the failed start is evaluated, and ignored, at the best one's point).
    state, _, _ = lm_chunk(problem, state, jnp.asarray(LM_CHUNK), LM_CHUNK)
    assert np.allclose(np.asarray(state.u)[[0, 2]], 1.0, atol=1e-6)
    assert not np.any(np.asarray(state.failed)[[0, 2]])


def _interrupt(monkeypatch, module, name, n, how):
    """Make the n-th call of `module.name` end in Ctrl-C or SIGTERM (after it returned)."""
    real, calls = getattr(module, name), []

    def wrapped(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == n:
            if how == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(module, name, wrapped)


@pytest.mark.parametrize("stage, how", [("search", "ctrl-c"), ("refinement", "sigterm")])
def test_interrupted_fit_resumes_to_the_uninterrupted_result(recording, fitted, tmp_path, monkeypatch, stage, how):
    """Stopped after the search's first chunk of candidates (Ctrl-C) or after the second
    and third chunks of iterations (SIGTERM, the third lost), the fit resumes from its checkpoint file or from the
    exception, and ends exactly where the uninterrupted fit did."""
    path = tmp_path / "progress.json"
    if stage == "search":
        _interrupt(monkeypatch, search_module, "score_candidates", 1, how)
    else:
        _interrupt(monkeypatch, F, "lm_chunk", 3, how)
    with pytest.raises(hh.FitInterrupted) as stop:
        hh.fit_recording(recording, bounds=BOUNDS, checkpoint=path, **SMALL)
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back
    saved = json.loads(path.read_text())
    assert saved["search"]["round"] == 1 if stage == "search" else saved["refine"]["iterations"] >= 2
    assert "resume=" in str(stop.value) and str(path) in str(stop.value)
    resumed = hh.fit_recording(recording, bounds=BOUNDS, resume=path if stage == "refinement" else stop.value.result,
                               **SMALL)
    assert resumed.parameters == fitted.parameters and resumed.score == fitted.score
    assert resumed.starts == fitted.starts and resumed.stderr == fitted.stderr
    assert resumed.wall_time["search"] > 0 and resumed.wall_time["total"] > 0
    with pytest.raises(ValueError, match="seed"):  # a checkpoint of another fit
        hh.fit_recording(recording, bounds=BOUNDS, resume=path, **{**SMALL, "seed": 1})
    with pytest.raises(ValueError, match="`resume`"):
        hh.fit_recording(recording, bounds=BOUNDS, resume={"search": {}}, **SMALL)


def test_bad_input_is_refused_naming_the_argument(recording):
    with pytest.raises(TypeError, match="`recording`"):
        hh.fit_recording(np.zeros(10))
    with pytest.raises(ValueError, match="`features`"):
        hh.fit_recording(recording, features=("spikes",))
    with pytest.raises(ValueError, match="EL"):
        hh.fit_recording(recording, free=("gNa", "EL"))
    with pytest.raises(ValueError, match="`candidates`"):
        hh.fit_recording(recording, candidates=0)
    with pytest.raises(ValueError, match="`bounds`"):
        hh.fit_recording(recording, bounds={"gNa": (10.0, 5.0)})
    with pytest.raises(ValueError, match="`model`"):
        hh.fit_recording(recording, model="squid")
    quiet = hh.Recording(t=recording.t, V=np.full_like(recording.V, -70.0), I=recording.I)
    with pytest.raises(ValueError, match="no spike"):
        hh.fit_recording(quiet)


def test_cli_fits_a_recording_file_and_resumes_an_interrupted_fit(recording, tmp_path, monkeypatch):
    path = tmp_path / "cell.npz"
    np.savez(path, time=recording.t, v=recording.V - 10.0, i=recording.I * 2e-4 * 1e3)  # nA on 2e-4 cm², +10 mV junction
    parser = argparse.ArgumentParser()
    add_fit_arguments(parser, commands.fit)
    out = tmp_path / "out"
    argv = [str(path), "--model", "pospischil", "--features", "count,isi,latency,rest,peak,width,ahp,adaptation",
            "--columns", "t=time,V=v,I=i", "--time-unit", "ms", "--voltage-unit", "mV",
            "--current-unit", "nA", "--area", "2e-4", "--junction", "10", "--candidates", "32",
            "--starts", "2", "--iterations", "8", "--out", str(out), "--no-progress",
            *sum((["--bound", f"{k}={lo}:{hi}"] for k, (lo, hi) in BOUNDS.items()), [])]
    # Interrupted in the refinement: the progress stays in --out and the message says how to go on.
    _interrupt(monkeypatch, F, "lm_chunk", 2, "ctrl-c")
    args = parser.parse_args(argv)
    with pytest.raises(KeyboardInterrupt, match="--resume"):
        args.run(args)
    monkeypatch.undo()
    checkpoint = out / commands.CHECKPOINT
    assert checkpoint.exists() and not (out / "fit.json").exists()
    with pytest.raises(commands.CLIError, match="--resume"):  # never started afresh over it silently
        args.run(parser.parse_args(argv))
    args = parser.parse_args([*argv, "--resume"])
    assert args.run(args) is None
    assert not checkpoint.exists()  # the finished result is in fit.json
    result = json.loads((out / "fit.json").read_text())
    assert (out / "fit.png").stat().st_size > 0
    # The aliases name the default features, so the fit's programs are the fixture's (compiled once).
    assert result["features"] == ["spike_count", "isi", "first_spike", "resting", "ap_peak", "ap_width", "ahp", "adaptation"]
    assert abs(result["recorded"]["resting"] - float(np.mean(recording.V[recording.t >= 0.9 * ONSET][:10]))) < 0.1
    assert result["ok"], result


def test_count_between_is_within_half_of_the_count_and_continuous_as_a_spike_enters():
    """The refinement's count term: for a regular train moved across the end of the step, the
    count continued between spikes stays within ½ of the integer count and has no jump where
    the count does (its derivative shows the way to the recorded count)."""
    offset, isi = 100.0, 10.0
    shifts = np.linspace(0.05, 19.95, 400)
    values, counts = [], []
    for s0 in shifts:
        times = s0 + isi * np.arange(12)
        inside = times[times <= offset]
        padded = jnp.asarray(np.concatenate([inside, np.full(16 - inside.size, np.nan)]))
        values.append(float(count_between(padded, jnp.asarray(inside.size), offset)))
        counts.append(inside.size)
    values, counts = np.array(values), np.array(counts)
    assert len(set(counts.tolist())) >= 2  # the count changes along the sweep
    assert np.all(np.abs(values - counts) <= 0.5 + 1e-9)
    assert np.max(np.abs(np.diff(values))) < 2 * (shifts[1] - shifts[0]) / isi  # no jump anywhere
    grad = jax.grad(lambda t: count_between(t, jnp.asarray(3), 25.0))(jnp.asarray([1.0, 11.0, 21.0, np.nan]))
    assert float(grad[2]) < 0.0  # a later last spike: fewer spikes continued
