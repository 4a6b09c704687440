"""hh.fit against known truth: parameters that generated the targets, the noise level put in,
and the statistics of repeated noise draws."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import hh_jax as hh

TS = np.linspace(0.0, 50.0, 2001)
GIST = hh.Pulse(start=0.0, stop=1.0, amplitude=150.0) + hh.Pulse(start=10.0, stop=11.0, amplitude=50.0)
STEP = hh.Step(start=5.0, stop=45.0, amplitude=10.0)
TRUTH = dict(gNa=100.0, gK=40.0, gL=0.25, EL=12.0)
FREE = ("gNa", "gK", "gL", "EL")


def clean_trace(stimulus, **params):
    p = hh.presets.hh1952(**{**TRUTH, **params})
    return np.asarray(hh.simulate(p, stimulus, t1=50.0, ts=jnp.asarray(TS), rtol=1e-10, atol=1e-10).V)


def noisy_targets(seed, sigma=1.0):
    rng = np.random.default_rng(seed)
    return [
        hh.Target(stimulus=s, ts=TS, V=clean_trace(s) + rng.normal(0.0, sigma, TS.size))
        for s in (GIST, STEP)
    ]


def test_recovery_32_starts_two_protocols_with_noise():
    """The acceptance fit: 32 random starts, two protocols, σ = 1 mV noise, four free
    parameters. Starts must converge to the optimum, and the optimum must lie within three
    standard errors of the truth."""
    res = hh.fit(hh.presets.hh1952(), noisy_targets(1), free=FREE, n_starts=32, seed=0, progress=False)
    fp = res.final_params
    best = {k: getattr(res.params, k) for k in FREE}
    at_optimum = (
        (np.abs(fp["gNa"] / best["gNa"] - 1) < 0.01)
        & (np.abs(fp["gK"] / best["gK"] - 1) < 0.01)
        & (np.abs(fp["gL"] / best["gL"] - 1) < 0.01)
        & (np.abs(fp["EL"] - best["EL"]) < 0.2)
    )
    assert at_optimum.sum() >= 29, (at_optimum.sum(), res.losses)
    # The starts really were spread as specified.
    sp = res.start_params
    assert np.all((sp["gNa"] >= 30.0) & (sp["gNa"] <= 480.0)) and np.ptp(np.log(sp["gNa"])) > 2.0
    assert np.all(np.abs(sp["EL"] - 10.613) <= 10.0)
    # At the optimum the residuals are the noise: loss = 2 σ² (two targets), σ̂ ≈ 1 mV.
    assert res.loss == pytest.approx(2.0, rel=0.05)
    assert res.noise_sigma == pytest.approx(1.0, rel=0.03)
    for k in FREE:
        assert abs(best[k] - TRUTH[k]) <= 3 * res.stderr[k], (k, best[k], res.stderr[k])
    # Conductances within the 1% (and EL within 0.2 mV) of the truth that the data allow:
    # the standard errors say how far that is. gNa and gK are pinned below 1%.
    assert res.stderr["gNa"] / TRUTH["gNa"] < 0.01 and res.stderr["gK"] / TRUTH["gK"] < 0.01
    # A least-squares loss runs Levenberg–Marquardt alone (no optimiser steps), after a
    # search that evaluated 4 × 32 candidates; it stops once every start has converged.
    assert res.history.shape == (32, 0) and res.polish_history.shape[0] == 32
    assert 0 < res.polish_history.shape[1] < 60 and res.converged.sum() >= 29
    assert res.n_solves >= 4 * 32 * 2 and res.wall_time > 0
    assert abs(res.correlation[2, 3]) > 0.8  # gL and EL trade off through the leak current


def test_noise_free_fit_recovers_truth_exactly():
    targets = [hh.Target(stimulus=s, ts=TS, V=clean_trace(s)) for s in (GIST, STEP)]
    res = hh.fit(hh.presets.hh1952(), targets, free=FREE, n_starts=4, seed=3, steps=80, progress=False)
    for k in FREE:
        assert getattr(res.params, k) == pytest.approx(TRUTH[k], rel=1e-4), k
    assert res.loss < 1e-6


def test_standard_errors_match_spread_over_noise_draws():
    """Fisher standard errors against the spread of estimates over independent noise draws
    (12 draws: the sample SD is within ±45 % of the true SD with high probability)."""
    start = hh.presets.hh1952(**TRUTH)
    estimates, ses = [], []
    for seed in range(12):
        res = hh.fit(start, noisy_targets(100 + seed), free=FREE, steps=0, polish=10, progress=False)
        estimates.append([getattr(res.params, k) for k in FREE])
        ses.append([res.stderr[k] for k in FREE])
    spread = np.std(estimates, axis=0, ddof=1)
    se = np.mean(ses, axis=0)
    assert np.all(spread / se > 0.5) and np.all(spread / se < 1.6), spread / se
    z = (np.asarray(estimates) - [TRUTH[k] for k in FREE]) / np.asarray(ses)
    assert np.all(np.abs(z) < 4.0)


def test_each_target_contributes():
    a, b = noisy_targets(7)
    start = hh.presets.hh1952(**TRUTH)
    kw = dict(free=FREE, steps=0, polish=8, progress=False)
    both = hh.fit(start, [a, b], **kw).params
    only_a = hh.fit(start, [a], **kw).params
    only_b = hh.fit(start, [b], **kw).params
    for other in (only_a, only_b):
        assert max(abs(getattr(both, k) / getattr(other, k) - 1) for k in FREE) > 1e-4


def test_user_loss_function_drives_the_fit():
    target = hh.Target(stimulus=STEP, ts=TS, V=clean_trace(STEP))
    calls = []

    def my_loss(ts, V, tg):
        calls.append(1)
        return jnp.mean(jnp.abs(V - tg.V))  # L1, not something hh_jax provides

    start = hh.presets.hh1952(**{**TRUTH, "gK": 44.0})
    res = hh.fit(start, target, free=("gK",), loss=my_loss, steps=60, progress=False)
    assert calls and res.polish_history.shape[1] == 0  # no least-squares polish for it
    assert abs(res.params.gK - 40.0) < abs(44.0 - 40.0) * 0.1
    assert res.history[0, -1] < res.history[0, 0]


def test_feature_and_smoothed_losses_fit_a_shifted_spike_train():
    target = hh.Target(stimulus=STEP, ts=TS, V=clean_trace(STEP))
    loss = hh.SmoothedTraceMSE(width=1.0) + 0.1 * hh.FeatureLoss()
    start = hh.presets.hh1952(**{**TRUTH, "gNa": 80.0})
    res = hh.fit(start, target, free=("gNa",), loss=loss, steps=60, progress=False)
    assert abs(res.params.gNa - 100.0) < 5.0
    assert res.history[0, -1] < 0.2 * res.history[0, 0]


def test_save_load_resume_equals_uninterrupted(tmp_path):
    targets = noisy_targets(5)
    kw = dict(free=FREE, n_starts=3, seed=1, polish=3, progress=False)
    whole = hh.fit(hh.presets.hh1952(), targets, steps=20, **kw)
    half = hh.fit(hh.presets.hh1952(), targets, steps=10, **kw)
    half.save(tmp_path / "fit.json")
    loaded = hh.FitResult.load(tmp_path / "fit.json")
    assert loaded.params == half.params and loaded.stderr == half.stderr
    np.testing.assert_array_equal(loaded.history, half.history)
    resumed = hh.fit(hh.presets.hh1952(), targets, steps=20, resume=loaded, **kw)
    np.testing.assert_array_equal(resumed.history, whole.history)
    for k in FREE:
        np.testing.assert_array_equal(resumed.final_params[k], whole.final_params[k])
    assert resumed.params == whole.params and resumed.loss == whole.loss


def test_failing_start_is_marked_and_others_continue():
    """A loss that turns NaN when the spike peak passes 106 mV (gNa above about 135 mS/cm²):
    exactly the starts drawn there fail; the rest fit on (they approach gNa = 100, peak
    102.6 mV)."""
    target = hh.Target(stimulus=STEP, ts=TS, V=clean_trace(STEP))

    def nan_above(ts, V, tg):
        return jnp.mean((V - tg.V) ** 2) + jnp.where(jnp.max(V) > 106.0, jnp.nan, 0.0)

    res = hh.fit(hh.presets.hh1952(), target, free=("gNa",), loss=nan_above, n_starts=6, seed=2,
                 steps=20, progress=False)
    peak = np.array([np.max(clean_trace(STEP, gNa=g)) for g in res.start_params["gNa"]])
    assert abs(res.params.gNa - 100.0) < 10.0
    assert np.any(peak > 106.0) and np.any(peak < 106.0)  # both kinds among the starts
    np.testing.assert_array_equal(res.failed, peak > 106.0)
    assert np.all(np.isnan(res.losses[res.failed])) and np.all(np.isfinite(res.losses[~res.failed]))
    assert not res.failed[res.best]


def test_lbfgs_and_custom_optax_optimisers():
    target = hh.Target(stimulus=STEP, ts=TS, V=clean_trace(STEP))
    start = hh.presets.hh1952(**{**TRUTH, "gK": 44.0})
    for opt in ("lbfgs", optax.sgd(1e-3)):
        res = hh.fit(start, target, free=("gK",), optimizer=opt, steps=10, polish=0, progress=False)
        assert res.history[0, -1] < res.history[0, 0], opt


def test_lbfgs_line_search_differentiates_the_loss_by_the_problems_own_gradient():
    """L-BFGS's line search calls `jax.value_and_grad` on the loss it is given; that loss
    carries the problem's forward-mode gradient, which must be the loss's derivative
    (central differences of the loss itself)."""
    from hh_jax._fit._descent import _loss_with_problem_gradient
    from hh_jax._fit._problem import make_problem
    from hh_jax._fit._spaces import spaces_for

    target = hh.Target(stimulus=STEP, ts=TS, V=clean_trace(STEP))
    init = hh.presets.hh1952(**{**TRUTH, "gK": 44.0})
    free = ("gK", "gL")
    problem = make_problem(init, [target], hh.TraceMSE(), spaces_for(init, free, None), 1e-9, 1e-9, 65536,
                           jnp.float64)
    assert problem.forward
    loss = _loss_with_problem_gradient(problem)
    u = jnp.asarray([0.03, -0.02])
    value, gradient = jax.jit(jax.value_and_grad(loss))(u)
    at = jax.jit(loss)
    assert float(value) == pytest.approx(float(at(u)), rel=1e-12)
    h = 1e-5
    fd = [(at(u.at[i].add(h)) - at(u.at[i].add(-h))) / (2 * h) for i in range(2)]
    np.testing.assert_allclose(gradient, fd, rtol=1e-4)


def test_bounds_are_respected_and_starts_drawn_inside():
    target = hh.Target(stimulus=STEP, ts=TS, V=clean_trace(STEP))
    res = hh.fit(hh.presets.hh1952(), target, free=("gNa", "EL"), bounds={"gNa": (90.0, 130.0), "EL": (5.0, 15.0)},
                 n_starts=5, steps=10, polish=2, progress=False)
    for k, (lo, hi) in (("gNa", (90.0, 130.0)), ("EL", (5.0, 15.0))):
        assert np.all((res.start_params[k] > lo) & (res.start_params[k] < hi))
        assert np.all((res.final_params[k] > lo) & (res.final_params[k] < hi))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: hh.Target(stimulus=STEP, ts=TS, V=np.where(TS > 20, np.nan, 0.0)), "non-finite"),
        (lambda: hh.Target(stimulus=STEP, ts=TS, V=np.zeros(TS.size - 1)), "same length"),
        (lambda: hh.fit(hh.presets.hh1952(), _target(), free=("gNa", "gX")), r"unknown parameter.*gX"),
        (lambda: hh.fit(hh.presets.hh1952(), _target(), free=("gNa",), bounds={"gNa": (200.0, 100.0)}), "lower bound"),
        (lambda: hh.fit(hh.presets.hh1952(), _target(), free=("gNa",), bounds={"gNa": (130.0, 200.0)}), "outside its bounds"),
        (lambda: hh.fit(hh.presets.hh1952(), _target(), free=("EL",), bounds={"gNa": (1.0, 2.0)}), "not in `free`"),
        (lambda: hh.fit(hh.presets.hh1952(gNa=jnp.ones(3)), _target()), "single neuron"),
        (lambda: hh.fit(hh.presets.hh1952(), [], free=("gNa",)), "Target"),
        (lambda: hh.fit(hh.presets.hh1952(), _target(), optimizer="newton"), "lbfgs"),
    ],
)
def test_bad_input_is_rejected_before_any_solve(make, match, monkeypatch):
    import diffrax

    monkeypatch.setattr(diffrax, "diffeqsolve", lambda *a, **k: (_ for _ in ()).throw(AssertionError("solved")))
    with pytest.raises(ValueError, match=match):
        make()


def test_masked_nans_are_allowed():
    V = np.array(clean_trace(STEP))
    V[100:200] = np.nan
    target = hh.Target(stimulus=STEP, ts=TS, V=V, mask=np.isfinite(V))
    assert np.all(np.isfinite(np.asarray(target.V)))
    res = hh.fit(hh.presets.hh1952(**{**TRUTH, "gK": 41.0}), target, free=("gK",), steps=0, polish=6, progress=False)
    assert res.params.gK == pytest.approx(40.0, rel=1e-4)


def _target():
    return hh.Target(stimulus=STEP, ts=TS, V=np.zeros(TS.size))


def test_losses_on_known_traces():
    strong = hh.Step(start=5.0, stop=45.0, amplitude=20.0)
    V = clean_trace(strong)
    target = hh.Target(stimulus=strong, ts=TS, V=V)
    ts = jnp.asarray(TS)
    n_spikes = len(hh.spike_times(TS, V, threshold=50.0))
    assert n_spikes >= 3
    # The soft count counts spikes; identical traces have zero loss of every kind.
    assert float(hh.soft_spike_count(jnp.asarray(V), 50.0)) == pytest.approx(n_spikes, abs=0.05)
    for loss in (hh.TraceMSE(), hh.SmoothedTraceMSE(), hh.SpikeCountLoss(), hh.FeatureLoss()):
        assert float(loss(ts, jnp.asarray(V), target)) == pytest.approx(0.0, abs=1e-3), loss
    # A spike train shifted by 0.5 ms: MSE is large, the smoothed MSE much smaller, and the
    # count unchanged.
    shifted = jnp.asarray(np.interp(TS - 0.5, TS, V))
    mse = float(hh.TraceMSE()(ts, shifted, target))
    assert float(hh.SmoothedTraceMSE(width=1.0)(ts, shifted, target)) < 0.3 * mse
    assert float(hh.SpikeCountLoss()(ts, shifted, target)) < 0.01
    feats = hh.trace_features(ts, jnp.asarray(V), target, threshold=50.0)
    isis = np.diff(hh.spike_times(TS, V, threshold=50.0))
    assert float(feats["isi"]) == pytest.approx(isis.mean(), abs=0.01)
    # AP peak: the mean of the spike maxima (as eFEL's peak_voltage, see test_features.py).
    assert float(feats["ap_peak"]) == pytest.approx(hh.spike_features(TS, V, stim_start=5.0, stim_end=45.0, threshold=50.0)["ap_peak"])
    # Gradients of every loss with respect to the voltage are finite.
    for loss in (hh.SmoothedTraceMSE() + hh.SpikeCountLoss() + 0.5 * hh.FeatureLoss(),):
        g = jax.grad(lambda v: loss(ts, v, target))(shifted)
        assert np.all(np.isfinite(np.asarray(g)))


def test_weighted_windows_are_least_squares_and_polished():
    target = hh.Target(stimulus=STEP, ts=TS, V=clean_trace(STEP))
    loss = 3.0 * hh.TraceMSE(window=(0.0, 20.0)) + hh.TraceMSE(window=(20.0, 50.0))
    ts, V = jnp.asarray(TS), jnp.asarray(clean_trace(STEP, gK=41.0))
    r = loss.residuals(ts, V, target)
    assert float(jnp.sum(r**2)) == pytest.approx(float(loss(ts, V, target)), rel=1e-12)
    res = hh.fit(hh.presets.hh1952(**{**TRUTH, "gK": 41.0}), target, free=("gK",), loss=loss,
                 steps=0, polish=6, progress=False)
    assert res.polish_history.shape[0] == 1 and res.polish_history.shape[1] <= 6 and res.converged[0]
    assert res.params.gK == pytest.approx(40.0, rel=1e-4)


def test_every_kind_of_bound_maps_the_whole_line_inside_it():
    from hh_jax._fit._spaces import spaces_for

    u = jnp.linspace(-30.0, 30.0, 121)
    cases = {(0.0, 200.0): "gNa", (1.0, np.inf): "gNa", (0.0, np.inf): "gNa", (-np.inf, 20.0): "EL", (-np.inf, np.inf): "EL"}
    for (lo, hi), name in cases.items():
        (space,) = spaces_for(hh.presets.hh1952(), (name,), {name: (lo, hi)})
        x = np.asarray(space.natural(u))
        assert np.all(np.isfinite(x)) and np.all(x >= lo) and np.all(x <= hi), (lo, hi, space.kind)
        assert float(space.natural(0.0)) == pytest.approx(getattr(hh.presets.hh1952(), name))
        assert float(space.unconstrained(getattr(hh.presets.hh1952(), name))) == pytest.approx(0.0, abs=1e-12)
        # NumPy (bookkeeping) and JAX (inside the solves) give the same map, and the
        # closed-form dx/du of the standard errors is JAX's derivative of it.
        some = np.linspace(-3.0, 3.0, 13)
        np.testing.assert_allclose(space.natural(some), np.asarray(space.natural(jnp.asarray(some))), rtol=1e-13)
        np.testing.assert_allclose(space.derivative(some), np.asarray(jax.vmap(jax.grad(space.natural))(jnp.asarray(some))),
                                   rtol=1e-12)


@pytest.mark.parametrize("shared", [True, False])
def test_starts_solved_together_give_each_start_its_own_residuals_and_jacobian(shared):
    """Levenberg–Marquardt evaluates every start in one solve with shared steps, each start's
    Jacobian by forward mode: residuals equal each start's own solve, and Jacobians equal
    central differences of them (targets sampling the same times share one solve; others are
    solved one by one)."""
    from hh_jax._fit._least_squares import _residuals_and_jacobian
    from hh_jax._fit._problem import make_problem
    from hh_jax._fit._spaces import spaces_for

    targets = noisy_targets(3)
    if not shared:  # the step target sampled at other times
        ts = TS[::2] + 0.01
        targets[1] = hh.Target(stimulus=STEP, ts=ts, V=np.interp(ts, TS, np.asarray(targets[1].V)))
    init = hh.presets.hh1952()
    spaces = spaces_for(init, FREE, None)
    problem = make_problem(init, targets, hh.TraceMSE(), spaces, 1e-9, 1e-9, 65536, jnp.float64)
    assert problem.shared == shared
    U = jnp.asarray(np.random.default_rng(0).uniform(-0.4, 0.4, (3, len(FREE))))
    r, J, ok = jax.jit(lambda U: _residuals_and_jacobian(problem, U))(U)
    assert r.shape == (3, problem.residual_count()) and np.all(np.asarray(ok))
    alone = jax.jit(lambda u: problem.residuals(u))
    h = 1e-5
    for j in range(3):
        r_j, ok_j = alone(U[j])
        np.testing.assert_allclose(r[j], r_j, atol=2e-7 * float(jnp.max(jnp.abs(r_j))))
        for i in range(len(FREE)):
            e = h * jnp.eye(len(FREE))[i]
            fd = (alone(U[j] + e)[0] - alone(U[j] - e)[0]) / (2 * h)
            np.testing.assert_allclose(J[j, :, i], fd, atol=2e-4 * float(jnp.max(jnp.abs(fd))))


def test_loss_without_forward_mode_runs_by_reverse_mode():
    """Few free parameters take gradients by forward mode; a loss built on a jax.custom_vjp
    (which forward mode cannot differentiate) still fits, by reverse mode, to the same
    iterates as the plain loss."""
    target = hh.Target(stimulus=STEP, ts=TS, V=clean_trace(STEP))

    @jax.custom_vjp
    def square(x):
        return x**2

    square.defvjp(lambda x: (x**2, x), lambda x, g: (2.0 * x * g,))
    start = hh.presets.hh1952(**{**TRUTH, "gK": 44.0})
    kw = dict(free=("gK",), steps=8, polish=0, progress=False)
    custom = hh.fit(start, target, loss=lambda ts, V, tg: jnp.mean(square(V - tg.V)), **kw)
    plain = hh.fit(start, target, loss=lambda ts, V, tg: jnp.mean((V - tg.V) ** 2), **kw)
    np.testing.assert_allclose(custom.history, plain.history, rtol=1e-6)
