"""hh.fit never loses work and never reports a failed fit as a result: interrupts checkpoint
and resume to the uninterrupted answer, saved files are complete or refused, a resume of a
different problem is refused, and a diverging optimiser is a failure."""

import json
import os
import signal

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import hh_jax as hh
from hh_jax._fit import _least_squares

TS = np.linspace(0.0, 50.0, 2001)
STEP = hh.Step(start=5.0, stop=45.0, amplitude=10.0)
TRUTH = dict(gNa=100.0, gK=40.0, gL=0.25, EL=12.0)
KW = dict(free=("gNa", "gK"), n_starts=3, seed=4, progress=False)


def target(stimulus=STEP, **params):
    p = hh.presets.hh1952(**{**TRUTH, **params})
    V = np.asarray(hh.simulate(p, stimulus, t1=50.0, ts=jnp.asarray(TS), rtol=1e-10, atol=1e-10).V)
    return hh.Target(stimulus=stimulus, ts=TS, V=V + np.random.default_rng(0).normal(0.0, 0.5, TS.size))


def interrupt_on_call(monkeypatch, n, how):
    """Make the n-th compiled least-squares chunk end in an interrupt (Ctrl-C or SIGTERM)."""
    real = _least_squares.lm_chunk
    calls = []

    def chunk(*args, **kwargs):
        calls.append(1)
        out = real(*args, **kwargs)
        if len(calls) == n:
            if how == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
            else:
                raise KeyboardInterrupt
        return out

    import hh_jax._fit as fit_module
    from hh_jax._fit import _run

    for module in (fit_module, _run):  # the iterations, and the screening of candidates
        monkeypatch.setattr(module, "lm_chunk", chunk)


@pytest.mark.parametrize("how, calls", [("ctrl-c", 6), ("sigterm", 6), ("ctrl-c", 2)])
def test_interrupted_fit_checkpoints_and_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, how, calls):
    tg = target()
    init = hh.presets.hh1952(**TRUTH)
    whole = hh.fit(init, tg, **KW)
    path = tmp_path / "fit.json"
    # 12 candidates in 4 compiled batches of 3, then chunks of iterations: stop in the search
    # and in the iterations.
    interrupt_on_call(monkeypatch, calls, how)
    with pytest.raises(hh.FitInterrupted) as stop:
        hh.fit(init, tg, checkpoint=path, **KW)
    assert "resume=" in str(stop.value) and str(path) in str(stop.value)
    monkeypatch.undo()
    saved = hh.FitResult.load(path)  # the file is a complete result
    assert saved.polish_history.shape[1] == stop.value.result.polish_history.shape[1]
    assert saved.polish_history.shape[1] > 0 or calls <= 4
    resumed = hh.fit(init, tg, resume=saved, **KW)
    # The starts share solver steps, so a start evaluated again on resuming (beside its
    # batch-mates' accepted points rather than their trial points) moves by the solver's
    # noise only: its loss by up to a tenth of the stage's rtol (the coarse stage's 1e-4).
    for name in KW["free"]:
        np.testing.assert_allclose(resumed.final_params[name], whole.final_params[name], rtol=1e-9)
        np.testing.assert_allclose(getattr(resumed.params, name), getattr(whole.params, name), rtol=1e-9)
        np.testing.assert_allclose(resumed.stderr[name], whole.stderr[name], rtol=1e-6)
    np.testing.assert_allclose(resumed.losses, whole.losses, rtol=1e-9)
    assert resumed.polish_history.shape == whole.polish_history.shape
    np.testing.assert_allclose(resumed.polish_history, whole.polish_history, rtol=1e-5)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back


def test_checkpoint_file_is_the_final_result(tmp_path):
    path = tmp_path / "fit.json"
    res = hh.fit(hh.presets.hh1952(**TRUTH), target(), checkpoint=path, **KW)
    assert hh.FitResult.load(path).params == res.params
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # no temporary file left


@pytest.mark.parametrize(
    "change, word",
    [
        (dict(init=hh.presets.hh1952(**{**TRUTH, "gL": 0.3})), "init"),
        (dict(targets=None), "targets"),
        (dict(n_starts=4), "n_starts"),
        (dict(free=("gNa", "gL")), "free"),
        (dict(loss=hh.TraceMSE(window=(0.0, 30.0))), "loss"),
        (dict(bounds={"gNa": (10.0, 500.0)}), "bounds"),
    ],
)
def test_resume_of_a_different_problem_is_refused(change, word):
    tg = target()
    init = hh.presets.hh1952(**TRUTH)
    first = hh.fit(init, tg, polish=2, **KW)
    kw = {**KW, "polish": 4}
    for key in ("n_starts", "free"):
        if key in change:
            kw[key] = change[key]
    args = dict(init=change.get("init", init), targets=target(gK=45.0) if "targets" in change else tg)
    with pytest.raises(ValueError, match=word):
        hh.fit(args["init"], args["targets"], resume=first, loss=change.get("loss"), bounds=change.get("bounds"), **kw)


def test_truncated_or_foreign_files_are_refused_by_name(tmp_path):
    res = hh.fit(hh.presets.hh1952(**TRUTH), target(), polish=2, **KW)
    good = tmp_path / "fit.json"
    res.save(good)
    text = good.read_text()
    cut = tmp_path / "cut.json"
    cut.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match="cut.json"):
        hh.FitResult.load(cut)
    payload = json.loads(text)
    payload["membrane"]["type"] = "os.system"
    evil = tmp_path / "evil.json"
    evil.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="loadable types"):
        hh.FitResult.load(evil)
    del payload["history"]
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({**payload, "membrane": json.loads(text)["membrane"]}))
    with pytest.raises(ValueError, match="history"):
        hh.FitResult.load(partial)


def test_diverging_optimiser_is_a_failure_not_a_result():
    """Adam with a step of 1e3 throws the starts onto the bounds: a start that never improved
    on where it began and ended far above it is failed, one that happened to land lower is
    reported with a warning that it sits on a bound; with no start left, the fit raises."""
    tg = target()
    with pytest.warns(RuntimeWarning, match="at a bound"):
        res = hh.fit(hh.presets.hh1952(**TRUTH), tg, optimizer=optax.adam(1e3), steps=12, polish=0, steps_per_call=6, **KW)
    h = res.history
    diverged = (h.min(axis=1) >= h[:, 0]) & (h[:, -1] > 2.0 * h[:, 0])  # never better, ended far above
    assert diverged.any() and np.array_equal(res.failed, diverged) and np.all(np.isnan(res.losses[diverged]))
    with pytest.raises(RuntimeError, match="every start failed"):
        hh.fit(hh.presets.hh1952(**TRUTH), tg, optimizer=optax.adam(1e3), steps=12, polish=0, steps_per_call=6,
               **{**KW, "n_starts": 1})


def test_chunk_is_the_old_name_of_steps_per_call():
    """`chunk=` (it clashed with simulate's `chunk_size`, neurons per call) still works, warns,
    and gives the same fit as `steps_per_call=`; both at once are refused."""
    tg = target()
    kw = dict(optimizer=optax.adam(1e-2), steps=4, polish=0, **KW)
    new = hh.fit(hh.presets.hh1952(**TRUTH), tg, steps_per_call=2, **kw)
    with pytest.warns(DeprecationWarning, match="steps_per_call"):
        old = hh.fit(hh.presets.hh1952(**TRUTH), tg, chunk=2, **kw)
    np.testing.assert_array_equal(old.history, new.history)
    with pytest.raises(TypeError, match="not both"):
        hh.fit(hh.presets.hh1952(**TRUTH), tg, chunk=2, steps_per_call=3, **kw)
