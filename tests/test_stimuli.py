"""Stimulus library: values, jumps handed to the solver, reproducibility, statistics, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hh_jax as hh


def values(stimulus, ts):
    return np.asarray(jax.vmap(stimulus)(jnp.asarray(ts)))


class HiddenJumps(hh.AbstractStimulus):
    """The same current with its discontinuities withheld from the solver (the failure mode
    that jump handling exists to prevent)."""

    inner: hh.AbstractStimulus

    def __call__(self, t):
        return self.inner(t)

    def discontinuities(self):
        return jnp.zeros((0,))


@pytest.mark.parametrize("start", [17.3, 30.05, 41.234])
@pytest.mark.parametrize("amplitude", [40.0, 80.0])
def test_short_pulse_inside_large_step_is_never_missed(start, amplitude):
    # A 0.1 ms pulse in a quiet period where adaptive steps are several ms long (the
    # default cap at the stability limit, 0.59 ms here, lifted), at loose tolerances
    # (rtol = atol = 1e-3). Charge 40 µA/cm² × 0.1 ms depolarises NEURON's hh by
    # ~4 mV, below its 0.1 ms threshold (~62 µA/cm², measured at tight tolerance); 80 fires.
    pulse = hh.Pulse(start=start, stop=start + 0.1, amplitude=amplitude)
    ts = jnp.linspace(0.0, 60.0, 6001)
    loose = dict(t1=60.0, ts=ts, rtol=1e-3, atol=1e-3, dtmax=float("inf"))
    got = hh.simulate(hh.presets.neuron(), pulse, **loose)
    ref = hh.simulate(hh.presets.neuron(), pulse, t1=60.0, ts=ts, rtol=1e-10, atol=1e-10)
    blind = hh.simulate(hh.presets.neuron(), HiddenJumps(pulse), **loose)
    assert abs(float(jnp.max(got.V) - jnp.max(ref.V))) < 0.25  # mV; the pulse adds ~4 mV
    assert float(jnp.max(blind.V)) < -64.5  # without jump handling the pulse is stepped over
    spikes, ref_spikes = np.asarray(hh.spike_times(got.t, got.V)), np.asarray(hh.spike_times(ref.t, ref.V))
    assert len(spikes) == len(ref_spikes) == (1 if amplitude > 62.0 else 0)
    np.testing.assert_allclose(spikes, ref_spikes, atol=0.1)  # ms, at rtol 1e-3
    assert len(hh.spike_times(blind.t, blind.V)) == 0


@pytest.mark.parametrize("amplitude, fires", [(40.0, False), (62.0, False), (66.0, True), (80.0, True)])
def test_short_pulse_threshold_matches_scipy(amplitude, fires):
    # Independent check of the claim above: NEURON's hh written out for scipy (LSODA,
    # rtol = atol = 1e-10), a 0.1 ms pulse from rest fires only above ~62-66 µA/cm².
    from scipy.integrate import solve_ivp

    def rhs(t, y, current):
        v, n, m, h = y
        a = [0.01 * -(v + 55) / np.expm1(-(v + 55) / 10), 0.125 * np.exp(-(v + 65) / 80),
             0.1 * -(v + 40) / np.expm1(-(v + 40) / 10), 4 * np.exp(-(v + 65) / 18),
             0.07 * np.exp(-(v + 65) / 20), 1 / (np.exp(-(v + 35) / 10) + 1)]
        i_ion = 120 * m**3 * h * (v - 50) + 36 * n**4 * (v + 77) + 0.3 * (v + 54.3)
        return [current - i_ion, a[0] * (1 - n) - a[1] * n, a[2] * (1 - m) - a[3] * m, a[4] * (1 - h) - a[5] * h]

    y = np.asarray(hh.presets.neuron().initial_state(), dtype=float)
    peak = -np.inf
    for t0, t1, current in ((0.0, 10.0, 0.0), (10.0, 10.1, amplitude), (10.1, 30.0, 0.0)):
        sol = solve_ivp(rhs, (t0, t1), y, method="LSODA", rtol=1e-10, atol=1e-10, args=(current,), max_step=0.05)
        peak, y = max(peak, sol.y[0].max()), sol.y[:, -1]
    assert (peak > 0.0) == fires
    tr = hh.simulate(hh.presets.neuron(), hh.Pulse(start=10.0, stop=10.1, amplitude=amplitude), t1=30.0, rtol=1e-3, atol=1e-3)
    assert (len(hh.spike_times(tr.t, tr.V)) > 0) == fires


def test_pulse_train_values_and_jumps():
    s = hh.PulseTrain(start=10.0, frequency=20.0, width=1.0, amplitude=20.0, count=3)
    assert s.period == pytest.approx(50.0)
    ts = [9.9, 10.0, 10.5, 11.0, 59.99, 60.0, 110.5, 160.0, 160.5]
    np.testing.assert_array_equal(values(s, ts), [0, 20, 20, 0, 0, 20, 20, 0, 0])
    assert sorted(np.asarray(s.discontinuities()).tolist()) == [10, 11, 60, 61, 110, 111]
    same = hh.PulseTrain(start=10.0, period=50.0, width=1.0, amplitude=20.0, count=3)
    np.testing.assert_array_equal(values(same, ts), values(s, ts))


def test_pulse_train_drives_one_spike_per_pulse():
    s = hh.PulseTrain(start=5.0, frequency=50.0, width=0.5, amplitude=60.0, count=5)
    tr = hh.simulate(hh.presets.neuron(), s, t1=110.0, ts=jnp.linspace(0, 110, 5501))
    spikes = np.asarray(hh.spike_times(tr.t, tr.V))
    assert len(spikes) == 5
    np.testing.assert_array_less(np.arange(5) * 20.0 + 5.0, spikes)
    np.testing.assert_array_less(spikes, np.arange(5) * 20.0 + 8.0)


def test_ramp_and_sine_values():
    r = hh.Ramp(start=10.0, stop=20.0, start_amplitude=2.0, stop_amplitude=12.0)
    np.testing.assert_allclose(values(r, [5.0, 10.0, 15.0, 19.999, 20.0]), [0, 2, 7, 11.999, 0])
    s = hh.Sine(offset=1.0, amplitude=2.0, frequency=250.0, phase=0.0, start=0.0, stop=8.0)
    ts = np.array([-1.0, 0.0, 1.0, 2.0, 3.0, 8.5])  # 250 Hz: period 4 ms
    np.testing.assert_allclose(values(s, ts), [0.0, 1.0, 3.0, 1.0, -1.0, 0.0], atol=1e-12)


def test_sampled_linear_and_zero_hold():
    times = jnp.array([0.0, 1.0, 2.0, 4.0])
    vals = jnp.array([0.0, 10.0, 10.0, -2.0])
    lin = hh.Sampled(times, vals)
    zoh = hh.Sampled(times, vals, hold="zero")
    ts = [-0.5, 0.0, 0.5, 1.0, 1.5, 3.0, 3.999, 4.0, 5.0]
    np.testing.assert_allclose(values(lin, ts), [0, 0, 5, 10, 10, 4, -1.994, 0, 0], atol=1e-12)
    np.testing.assert_allclose(values(zoh, ts), [0, 0, 0, 10, 10, 10, 10, 0, 0])
    # Jumps: the record's ends, and for zero hold the samples where the value changes.
    assert sorted(np.asarray(zoh.discontinuities()).tolist()) == [0.0, 1.0, 4.0, 4.0]
    assert sorted(np.asarray(lin.discontinuities()).tolist()) == [0.0, 4.0]


def test_sampled_step_matches_analytic_step():
    t1 = 50.0
    grid = np.round(np.arange(0.0, t1 + 1e-9, 0.02), 10)  # 0.02 ms spacing
    step = hh.Step(start=10.0, stop=40.0, amplitude=9.0)
    sampled = hh.Sampled(grid, values(step, grid), hold="zero")
    ts = jnp.linspace(0.0, t1 - 0.02, 2500)
    a = hh.simulate(hh.presets.neuron(), step, t1=t1 - 0.02, ts=ts)
    b = hh.simulate(hh.presets.neuron(), sampled, t1=t1 - 0.02, ts=ts)
    assert len(hh.spike_times(a.t, a.V)) >= 2
    assert np.max(np.abs(np.asarray(a.V - b.V))) < 0.05  # mV


def test_sampled_batch_of_waveforms():
    times = jnp.linspace(0.0, 10.0, 11)
    vals = jnp.stack([jnp.zeros(11), jnp.full(11, 1.0)])  # subthreshold
    s = hh.Sampled(times, vals)
    assert s.batch_shape == (2,)
    tr = hh.simulate(hh.presets.neuron(), s, t1=10.0, ts=times)
    assert tr.V.shape == (2, 11)
    assert abs(float(tr.V[0, 5]) + 65.0) < 0.05  # no current: stays at rest
    assert float(tr.V[1, 5]) > float(tr.V[0, 5]) + 0.5  # 1 µA/cm² depolarises


def test_noise_reproducible_and_key_dependent():
    kw = dict(mean=5.0, sigma=3.0, tau=2.0, stop=100.0)
    ts = jnp.linspace(0.0, 100.0, 2001)
    run = lambda key: hh.simulate(hh.presets.neuron(), hh.Noise(key=key, **kw), t1=100.0, ts=ts, save="V").V  # noqa: E731
    a, b, c = run(jax.random.key(1)), run(jax.random.key(1)), run(jax.random.key(2))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.max(np.abs(np.asarray(a - c))) > 1.0


def test_noise_stationary_statistics():
    # A 2 s sample: mean and standard deviation within 5% of the requested values.
    mean, sigma, tau = 10.0, 2.0, 1.0
    s = hh.Noise(mean=mean, sigma=sigma, tau=tau, key=jax.random.key(0), stop=2000.0, dt=0.05)
    current = values(s, np.arange(0.0, 2000.0, 0.05))
    assert abs(current.mean() - mean) < 0.05 * mean
    assert abs(current.std() - sigma) < 0.05 * sigma
    # Correlation time: autocorrelation at lag tau is exp(-1) (independent OU property).
    z = (current - current.mean()) / current.std()
    lag = int(round(tau / 0.05))
    assert np.mean(z[lag:] * z[:-lag]) == pytest.approx(np.exp(-1.0), abs=0.05)


def test_noise_gradients_with_respect_to_mean_and_sigma():
    key = jax.random.key(3)
    ts = jnp.linspace(0.0, 20.0, 201)

    def final_v(mean, sigma):
        s = hh.Noise(mean=mean, sigma=sigma, tau=2.0, key=key, stop=20.0)
        tr = hh.simulate(hh.presets.neuron(), s, t1=20.0, ts=ts, rtol=1e-10, atol=1e-10, save="V")
        return tr.V[-1]

    value_and_grad = jax.jit(jax.value_and_grad(final_v, argnums=(0, 1)))  # its values serve the differences
    g_mean, g_sigma = value_and_grad(1.0, 0.5)[1]
    # Subthreshold, so the response is smooth: a wide central difference (h = 0.05 µA/cm²)
    # is accurate, while a narrow one would drown in the solver's own step-selection noise.
    h = 0.05
    v = lambda mean, sigma: value_and_grad(mean, sigma)[0]  # noqa: E731
    fd_mean = (v(1.0 + h, 0.5) - v(1.0 - h, 0.5)) / (2 * h)
    fd_sigma = (v(1.0, 0.5 + h) - v(1.0, 0.5 - h)) / (2 * h)
    assert float(g_mean) == pytest.approx(float(fd_mean), rel=1e-3)
    assert float(g_sigma) == pytest.approx(float(fd_sigma), rel=1e-2)
    assert abs(float(g_sigma)) > 1e-3


def test_stimulus_gradient_through_train_amplitude():
    def peak(a):
        s = hh.PulseTrain(start=1.0, period=5.0, width=1.0, amplitude=a, count=2)
        return jnp.max(hh.simulate(hh.presets.neuron(), s, t1=8.0, ts=jnp.linspace(0, 8, 81), rtol=1e-9, atol=1e-9, save="V").V)

    g = jax.grad(peak)(2.0)
    fd = (peak(2.0 + 1e-3) - peak(2.0 - 1e-3)) / 2e-3
    assert float(g) == pytest.approx(float(fd), rel=1e-3)


@pytest.mark.parametrize(
    "build, name",
    [
        (lambda: hh.Pulse(start=1.0, stop=0.5, amplitude=1.0), "stop"),
        (lambda: hh.PulseTrain(start=0.0, period=5.0, width=-1.0, amplitude=1.0, count=3), "width"),
        (lambda: hh.PulseTrain(start=0.0, period=5.0, width=6.0, amplitude=1.0, count=3), "width"),
        (lambda: hh.PulseTrain(start=0.0, frequency=-5.0, width=1.0, amplitude=1.0, count=3), "frequency"),
        (lambda: hh.PulseTrain(start=0.0, period=5.0, width=1.0, amplitude=1.0, count=0), "count"),
        (lambda: hh.PulseTrain(start=0.0, width=1.0, amplitude=1.0, count=2), "period"),
        (lambda: hh.Ramp(start=5.0, stop=5.0, stop_amplitude=1.0), "stop"),
        (lambda: hh.Ramp(start=5.0, stop=float("inf"), stop_amplitude=1.0), "stop"),
        (lambda: hh.Sine(amplitude=1.0, frequency=float("nan")), "frequency"),
        (lambda: hh.Noise(mean=0.0, sigma=1.0, tau=-1.0, key=jax.random.key(0), stop=10.0), "tau"),
        (lambda: hh.Noise(mean=0.0, sigma=-1.0, tau=1.0, key=jax.random.key(0), stop=10.0), "sigma"),
        (lambda: hh.Noise(mean=0.0, sigma=1.0, tau=1.0, key=jax.random.key(0), start=5.0, stop=1.0), "stop"),
        (lambda: hh.Sampled([0.0, 2.0, 1.0], [0.0, 1.0, 2.0]), "times"),
        (lambda: hh.Sampled([0.0, 1.0, 1.0], [0.0, 1.0, 2.0]), "times"),
        (lambda: hh.Sampled([0.0, 1.0, 2.0], [0.0, np.nan, 2.0]), "values"),
        (lambda: hh.Sampled([0.0, 1.0, 2.0], [0.0, 1.0]), "values"),
        (lambda: hh.Sampled([0.0, 1.0], [0.0, 1.0], hold="cubic"), "hold"),
    ],
)
def test_bad_stimulus_input(build, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        build()


def test_stimulus_values_and_sum():
    s = hh.Pulse(start=0.0, stop=1.0, amplitude=150.0) + hh.Pulse(start=10.0, stop=11.0, amplitude=50.0)
    ts = jnp.array([-0.5, 0.0, 0.5, 1.0, 5.0, 10.0, 10.99, 11.0])
    np.testing.assert_allclose(np.asarray(jax.vmap(s)(ts)), [0, 150, 150, 0, 0, 50, 50, 0])
    assert sorted(np.asarray(s.discontinuities()).tolist()) == [0.0, 1.0, 10.0, 11.0]
    assert isinstance(s + hh.Step(start=3.0, amplitude=1.0), hh.Sum)
    assert len((s + hh.Step(start=3.0, amplitude=1.0)).terms) == 3
    total = sum([hh.Step(start=0.0, amplitude=1.0), hh.Step(start=1.0, amplitude=2.0)])
    assert float(total(2.0)) == 3.0
    assert float(hh.Step(start=1.0, amplitude=9.0)(1e6)) == 9.0  # sustained by default
