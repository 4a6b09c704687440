"""Large batches: chunking, sharding over devices, broadcasting errors."""

import json
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

import hh_jax as hh

STEP = hh.Step(start=1.0, stop=41.0, amplitude=9.0)
TS = jnp.linspace(0.0, 50.0, 501)


def test_chunked_equals_per_chunk_solves():
    # Chunking runs the same compiled solve on consecutive slices: each chunk's result is
    # exactly that of solving the slice on its own.
    gNa = jnp.linspace(100.0, 140.0, 7)
    chunked = hh.simulate(hh.presets.neuron(gNa=gNa), STEP, t1=50.0, ts=TS, save="V", batching=hh.Batching(chunk_size=3))
    assert chunked.V.shape == (7, 501)
    for lo, hi in ((0, 3), (3, 6)):
        alone = hh.simulate(hh.presets.neuron(gNa=gNa[lo:hi]), STEP, t1=50.0, ts=TS, save="V")
        np.testing.assert_allclose(np.asarray(chunked.V[lo:hi]), np.asarray(alone.V), atol=1e-10, rtol=0)
    whole = hh.simulate(hh.presets.neuron(gNa=gNa), STEP, t1=50.0, ts=TS, save="V")
    assert np.max(np.abs(np.asarray(chunked.V - whole.V))) < 0.01  # tolerance-level difference


def test_chunking_with_batched_stimulus_and_v0():
    p = hh.presets.neuron(gK=jnp.array([30.0, 40.0])[:, None])  # (2, 1)
    s = hh.Step(start=1.0, amplitude=jnp.array([2.0, 6.0, 10.0]))  # (3,)
    v0 = jnp.array([-70.0, -65.0, -60.0])
    a = hh.simulate(p, s, t1=20.0, ts=TS[:201], v0=v0, save="V", batching=hh.Batching(chunk_size=4))
    b = hh.simulate(p, s, t1=20.0, ts=TS[:201], v0=v0, save="V")
    assert a.V.shape == b.V.shape == (2, 3, 201)
    np.testing.assert_allclose(np.asarray(a.V[..., 0]), np.broadcast_to(v0, (2, 3)))
    assert np.max(np.abs(np.asarray(a.V - b.V))) < 0.01


def test_chunking_sampled_waveforms():
    times = jnp.linspace(0.0, 20.0, 41)
    vals = jnp.stack([jnp.full(41, a) for a in (0.0, 1.0, 2.0, 3.0, 4.0)])
    s = hh.Sampled(times, vals, hold="zero")
    a = hh.simulate(hh.presets.neuron(), s, t1=20.0, ts=times, save="V", batching=hh.Batching(chunk_size=2))
    b = hh.simulate(hh.presets.neuron(), s, t1=20.0, ts=times, save="V")
    assert a.V.shape == (5, 41)
    assert np.max(np.abs(np.asarray(a.V - b.V))) < 0.01


def test_per_neuron_steps_equal_solving_each_neuron_alone():
    p = hh.presets.neuron(gK=jnp.array([30.0, 40.0])[:, None])  # (2, 1)
    s = hh.Step(start=1.0, stop=41.0, amplitude=jnp.array([2.0, 6.0, 10.0]))  # (3,)
    v0 = jnp.array([-70.0, -65.0, -60.0])
    batch = hh.simulate(p, s, t1=50.0, ts=TS, v0=v0, batching=hh.Batching(per_neuron=True))
    assert batch.V.shape == batch.n.shape == (2, 3, 501)
    for i, gK in enumerate((30.0, 40.0)):
        for j, amp in enumerate((2.0, 6.0, 10.0)):
            alone = hh.simulate(hh.presets.neuron(gK=gK), hh.Step(start=1.0, stop=41.0, amplitude=amp), t1=50.0, ts=TS, v0=v0[j])
            np.testing.assert_allclose(np.asarray(batch.V[i, j]), np.asarray(alone.V), atol=1e-10, rtol=0)
    chunked = hh.simulate(p, s, t1=50.0, ts=TS, v0=v0, batching=hh.Batching(chunk_size=4, per_neuron=True))
    np.testing.assert_allclose(np.asarray(chunked.V), np.asarray(batch.V), atol=1e-10, rtol=0)


def test_mismatched_batch_shapes_name_the_arrays():
    with pytest.raises(ValueError, match=r"membrane\(3,\).*stimulus\(4,\)"):
        hh.simulate(hh.presets.neuron(gNa=jnp.ones(3) * 120), hh.Step(start=1.0, amplitude=jnp.ones(4)), t1=5.0)
    with pytest.raises(ValueError, match=r"v0\(2,\)"):
        hh.simulate(hh.presets.neuron(gNa=jnp.ones(3) * 120), STEP, t1=5.0, v0=jnp.array([-65.0, -60.0]))
    with pytest.raises(ValueError, match="chunk_size"):
        hh.simulate(hh.presets.neuron(), STEP, t1=5.0, batching=hh.Batching(chunk_size=0))


SHARDED = textwrap.dedent(
    """
    import json, jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp, numpy as np, hh_jax as hh
    assert jax.device_count() == 2, jax.devices()
    step = hh.Step(start=1.0, stop=41.0, amplitude=9.0)
    ts = jnp.linspace(0.0, 50.0, 501)
    gNa = jnp.linspace(100.0, 140.0, 8)
    sharded = hh.simulate(hh.presets.neuron(gNa=gNa), step, t1=50.0, ts=ts, save="V")
    one = [jax.devices()[0]]
    halves = [hh.simulate(hh.presets.neuron(gNa=g), step, t1=50.0, ts=ts, save="V", batching=hh.Batching(devices=one)).V
              for g in (gNa[:4], gNa[4:])]
    whole = hh.simulate(hh.presets.neuron(gNa=gNa), step, t1=50.0, ts=ts, save="V", batching=hh.Batching(devices=one)).V
    own = hh.simulate(hh.presets.neuron(gNa=gNa), step, t1=50.0, ts=ts, save="V", batching=hh.Batching(per_neuron=True))
    own_one = hh.simulate(hh.presets.neuron(gNa=gNa), step, t1=50.0, ts=ts, save="V", batching=hh.Batching(devices=one, per_neuron=True))
    print(json.dumps(dict(
        per_neuron=float(np.max(np.abs(np.asarray(own.V - own_one.V)))),
        shape=list(sharded.V.shape),
        vs_halves=float(np.max(np.abs(np.asarray(sharded.V) - np.concatenate([np.asarray(h) for h in halves])))),
        vs_whole=float(np.max(np.abs(np.asarray(sharded.V - whole)))),
        success=bool(sharded.success),
    )))
    """
)


def test_sharded_over_two_cpu_devices_matches_single_device():
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2".strip()  # the run's own flags kept
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": "2", "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["shape"] == [8, 501] and result["success"]
    # Each device solves its own slice: identical to solving that slice on one device.
    assert result["vs_halves"] < 1e-10
    # Against one shared-step solve of all 8, the difference is at the solver tolerance.
    assert result["vs_whole"] < 0.01
    # With per-neuron steps the device layout changes nothing but XLA's floating-point
    # rounding (different fusions), amplified a little through the spikes: measured 4e-10 mV.
    assert result["per_neuron"] < 1e-8


def test_simulate_spikes_matches_spike_times_of_a_tight_solve():
    """Spikes found on the steps of a batch (whole, in chunks, per neuron) against the spike
    times of a solve at rtol 1e-11 sampled every 0.001 ms."""
    gNa = jnp.linspace(80.0, 160.0, 9)
    p = hh.presets.neuron(gNa=gNa)
    tight = hh.simulate(p, STEP, t1=50.0, ts=jnp.linspace(0.0, 50.0, 50_001), save="V", rtol=1e-11, atol=1e-11)
    ref_times, ref_counts = hh.spike_times(tight.t, tight.V, max_spikes=8)
    for batching in (hh.Batching(), hh.Batching(chunk_size=4), hh.Batching(per_neuron=True)):
        sp = hh.simulate_spikes(p, STEP, t1=50.0, max_spikes=8, batching=batching)
        assert sp.times.shape == (9, 8) and sp.counts.shape == (9,) and bool(sp.success)
        np.testing.assert_array_equal(np.asarray(sp.counts), np.asarray(ref_counts))
        np.testing.assert_allclose(np.asarray(sp.times), np.asarray(ref_times), atol=5e-5, equal_nan=True)  # measured 8e-6
    assert int(sp.counts[0]) < int(sp.counts[-1])  # more sodium, more spikes
    few = hh.simulate_spikes(p, STEP, t1=50.0, max_spikes=2)  # later spikes counted, not kept
    np.testing.assert_array_equal(np.asarray(few.counts), np.asarray(ref_counts))
    np.testing.assert_allclose(np.asarray(few.times), np.asarray(ref_times)[:, :2], atol=5e-5, equal_nan=True)
    with pytest.raises(ValueError, match="max_spikes"):
        hh.simulate_spikes(p, STEP, t1=50.0, max_spikes=0)


def test_sampled_with_as_many_samples_as_neurons():
    # 6 neurons and 6 samples: the shared sample times must not be split up as if they
    # were one per neuron (chunking and per-neuron steps both flatten the batch).
    times = jnp.linspace(0.0, 10.0, 6)
    vals = jnp.outer(jnp.arange(6.0), jnp.ones(6)) * 0.5  # neuron k gets a constant k/2 µA/cm²
    s = hh.Sampled(times, vals, hold="zero")
    ref = hh.simulate(hh.presets.neuron(), s, t1=10.0, ts=times, batching=hh.Batching(per_neuron=True))
    for batching in (hh.Batching(chunk_size=4), hh.Batching(chunk_size=4, per_neuron=True)):
        got = hh.simulate(hh.presets.neuron(), s, t1=10.0, ts=times, batching=batching)
        assert got.V.shape == (6, 6)
        assert np.max(np.abs(np.asarray(got.V - ref.V))) < 0.01
    alone = hh.simulate(hh.presets.neuron(), hh.Sampled(times, vals[4], hold="zero"), t1=10.0, ts=times)
    np.testing.assert_allclose(np.asarray(ref.V[4]), np.asarray(alone.V), atol=1e-10, rtol=0)
