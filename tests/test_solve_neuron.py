"""NEURON preset against NEURON's own `hh` mechanism, run in the test."""

import jax.numpy as jnp
import numpy as np
import pytest

import hh_jax as hh

neuron = pytest.importorskip(
    "neuron", reason="NEURON (pip package `neuron`) is not installable on this platform"
)


def neuron_spike_times(celsius, amplitude=9.0, start=1.0, stop=41.0, t1=50.0, tol=1e-10):
    """0 mV upward crossings of a single NEURON `hh` soma under a current step (CVODE)."""
    h = neuron.h
    h.load_file("stdrun.hoc")
    soma = h.Section(name="soma")
    soma.L = soma.diam = 18.8  # µm; area 1110.36 µm²
    soma.insert("hh")
    h.usetable_hh = 0  # exact rate functions, not NEURON's interpolation tables
    area_cm2 = soma(0.5).area() * 1e-8
    clamp = h.IClamp(soma(0.5))
    clamp.delay, clamp.dur = start, stop - start
    clamp.amp = amplitude * area_cm2 * 1e3  # µA/cm² × cm² → µA → nA
    cvode = h.CVode()
    cvode.active(1)
    cvode.atol(tol)
    cvode.rtol(tol)
    cvode.condition_order(2)  # locate threshold crossings on the interpolant, not at step ends
    detector = h.NetCon(soma(0.5)._ref_v, None, sec=soma)
    detector.threshold = 0.0
    times = h.Vector()
    detector.record(times)
    h.celsius = celsius
    h.finitialize(-65.0)
    h.continuerun(t1)
    return np.array(times)


@pytest.mark.parametrize("celsius", [6.3, 20.0])
def test_neuron_preset_spike_times_match_neuron(celsius):
    ref = neuron_spike_times(celsius)
    assert len(ref) >= 3
    tr = hh.simulate(
        hh.presets.neuron(celsius=celsius),
        hh.Step(start=1.0, stop=41.0, amplitude=9.0),
        t1=50.0,
        ts=jnp.linspace(0.0, 50.0, 5001),
    )
    assert float(tr.V[0]) == -65.0  # NEURON's finitialize(-65)
    spikes = np.asarray(hh.spike_times(tr.t, tr.V, threshold=0.0))
    assert spikes.shape == ref.shape, (spikes, ref)
    assert np.max(np.abs(spikes - ref)) < 0.01  # ms


@pytest.mark.parametrize("celsius", [6.3, 20.0])
def test_simulate_spikes_locates_neuron_spikes_on_the_steps(celsius):
    # Spikes found on the solver's steps (no voltage sampled): at the default tolerance
    # within 1e-5 ms of NEURON's CVODE at 1e-10 (measured 6e-6 and 9e-6 ms).
    ref = neuron_spike_times(celsius)
    sp = hh.simulate_spikes(hh.presets.neuron(celsius=celsius), hh.Step(start=1.0, stop=41.0, amplitude=9.0),
                            t1=50.0, max_spikes=16)
    assert int(sp.counts) == len(ref) and np.all(np.isnan(np.asarray(sp.times)[len(ref):]))
    assert np.max(np.abs(np.asarray(sp.times)[: len(ref)] - ref)) < 2e-5  # ms


def test_rates_match_neuron_rates_procedure():
    # NEURON's hh.mod `rates(v)` fills minf, hinf, ninf and the time constants; compare the
    # steady states and time constants derived from hh_jax's rates over a voltage grid.
    h = neuron.h
    soma = h.Section(name="rates_soma")
    soma.insert("hh")
    h.usetable_hh = 0
    h.celsius = 6.3
    seg = soma(0.5)
    h.setdata_hh(seg)
    vs = np.linspace(-120.0, 60.0, 37) + 0.123  # off the removable singularities
    ours = np.asarray(hh.hh_rates(jnp.asarray(vs)))
    an, bn, am, bm, ah, bh = ours
    for k, v in enumerate(vs):
        h.rates_hh(v)
        np.testing.assert_allclose(
            [seg.ninf_hh, seg.minf_hh, seg.hinf_hh],
            [an[k] / (an[k] + bn[k]), am[k] / (am[k] + bm[k]), ah[k] / (ah[k] + bh[k])],
            rtol=1e-10,
        )
        np.testing.assert_allclose(
            [seg.ntau_hh, seg.mtau_hh, seg.htau_hh],
            [1 / (an[k] + bn[k]), 1 / (am[k] + bm[k]), 1 / (ah[k] + bh[k])],
            rtol=1e-10,
        )
