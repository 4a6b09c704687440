"""Bad input, across the public API and the command line: each is refused with an error that
names the argument (issue 15). The tables run in milliseconds: every check here happens
before anything is compiled. Below them, one test per class of failure asserts the good
outcome (a refused gradient that would have been wrong, NaN refused at the root, a request
too big for memory refused before allocating, outputs never overwritten)."""

import math
import zipfile

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hh_jax as hh
from hh_jax.cli import main

P = hh.presets.hh1952()
STEP = hh.Step(start=1.0, stop=4.0, amplitude=10.0)
TS = jnp.linspace(0.0, 5.0, 51)
NAN, INF = float("nan"), float("inf")


def sim(**kwargs):
    kwargs = {"t1": 5.0, **kwargs}
    return lambda: hh.simulate(kwargs.pop("membrane", P), kwargs.pop("stimulus", STEP), **kwargs)


def spikes(**kwargs):
    kwargs = {"t1": 5.0, **kwargs}
    return lambda: hh.simulate_spikes(P, STEP, **kwargs)


def train(**kwargs):
    kwargs = {"start": 0.0, "width": 1.0, "amplitude": 5.0, "count": 3, "period": 5.0, **kwargs}
    return lambda: hh.PulseTrain(**kwargs)


def noise(**kwargs):
    kwargs = {"mean": 1.0, "sigma": 1.0, "tau": 5.0, "key": jax.random.key(0), "stop": 10.0, **kwargs}
    return lambda: hh.Noise(**kwargs)


def projection(weight=0.1, edges=((0, 1), (1, 0)), **kwargs):
    if edges is not None:
        edges = tuple(jnp.asarray(e) for e in edges)
    return lambda: hh.Projection("E", "E", hh.ExpSynapse(tau=5.0, E=0.0), weight, edges, **kwargs)


def network():
    return hh.Network({"E": hh.Population(P, size=2)}, {"ee": projection()()})


def trace_file(tmp, name, content):
    """A file in `tmp`: bytes, text, or a dict of arrays for an .npz."""
    path = tmp / name
    if isinstance(content, dict):
        np.savez(path, **content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


GOOD = {"t": np.linspace(0.0, 10.0, 11), "V": np.full(11, -65.0), "I": np.ones(11),
        "t_unit": "ms", "V_unit": "mV", "I_unit": "µA/cm²"}


def load(name, content, **kwargs):
    """A load_trace call on a file written into the test's folder (`tmp` is filled in)."""
    return lambda tmp: hh.load_trace(trace_file(tmp, name, content), **kwargs)


CSV = "t,V,I\n0,-65,0\n1,-65,1\n2,-65,0\n"

# (make, exception, a word of its message). `make` takes no argument, or `tmp` (a folder).
API = [
    # membranes
    (lambda: hh.presets.hh1952(gNa=NAN), ValueError, "gNa"),
    (lambda: hh.presets.hh1952(gK=-1.0), ValueError, "gK"),
    (lambda: hh.presets.hh1952(gL=INF), ValueError, "gL"),
    (lambda: hh.presets.hh1952(Cm=0.0), ValueError, "Cm"),
    (lambda: hh.presets.hh1952(Cm=INF), ValueError, "Cm"),
    (lambda: hh.presets.neuron(celsius=NAN), ValueError, "celsius"),
    (lambda: hh.presets.hh1952(gNa="lots"), ValueError, "gNa"),
    (lambda: hh.presets.hh1952(gNaa=1.0), ValueError, "gNaa"),
    (lambda: hh.presets.hh1952(gNa=jnp.ones(3), gK=jnp.ones(4)), ValueError, "broadcast"),
    (lambda: hh.presets.pospischil(gM=-0.1), ValueError, "gM"),
    # channels (and so every membrane built from them)
    (lambda: hh.Leak(g=NAN, E=-65.0), ValueError, "`g`"),
    (lambda: hh.Leak(g=-0.1, E=-65.0), ValueError, "`g`"),
    (lambda: hh.HHSodium(g=120.0, E=INF), ValueError, "`E`"),
    (lambda: hh.MCurrent(g=0.1, E=-90.0, tau_max=NAN), ValueError, "tau_max"),
    (lambda: hh.ChannelMembrane({"leak": hh.Leak(g=0.1, E=-65.0)}, Cm=NAN), ValueError, "Cm"),
    (lambda: hh.ChannelMembrane({}), ValueError, "channel_map"),
    # stimuli
    (lambda: hh.Pulse(start=0.0, stop=NAN, amplitude=1.0), ValueError, "stop"),
    (lambda: hh.Pulse(start=5.0, stop=2.0, amplitude=1.0), ValueError, "stop"),
    (lambda: hh.Pulse(start=0.0, stop=1.0, amplitude=INF), ValueError, "amplitude"),
    (lambda: hh.Pulse(start="soon", stop=1.0, amplitude=1.0), ValueError, "start"),
    (lambda: hh.Step(start=-INF, amplitude=1.0), ValueError, "start"),
    (lambda: hh.Step(start=0.0, amplitude=jnp.array([1.0, NAN])), ValueError, "amplitude"),
    (lambda: hh.Ramp(start=0.0, stop=INF, stop_amplitude=1.0), ValueError, "stop"),
    (lambda: hh.Ramp(start=0.0, stop=5.0, stop_amplitude=1.0, start_amplitude=NAN), ValueError, "start_amplitude"),
    (lambda: hh.Sine(amplitude=1.0, frequency=NAN), ValueError, "frequency"),
    (lambda: hh.Sine(amplitude=1.0, frequency=5.0, phase=INF), ValueError, "phase"),
    (train(count=0), ValueError, "count"),
    (train(count=2.5), ValueError, "count"),
    (train(count=True), ValueError, "count"),
    (train(count=10**12), ValueError, "pulses"),
    (train(width=6.0), ValueError, "width"),
    (train(width=0.0), ValueError, "width"),
    (train(frequency=10.0), ValueError, "exactly one"),
    (train(period=None, frequency=NAN), ValueError, "frequency"),
    (train(period=NAN), ValueError, "period"),
    (lambda: hh.Sampled(times=jnp.array([0.0, 2.0, 1.0]), values=jnp.ones(3)), ValueError, "strictly increasing"),
    (lambda: hh.Sampled(times=jnp.array([0.0, 1.0]), values=jnp.ones(3)), ValueError, "values"),
    (lambda: hh.Sampled(times=jnp.array([0.0, 1.0]), values=jnp.ones(2), hold="cubic"), ValueError, "hold"),
    (lambda: hh.Sampled(times=jnp.array([0.0, NAN]), values=jnp.ones(2)), ValueError, "times"),
    (lambda: hh.Sampled(times=jnp.array([0.0]), values=jnp.ones(1)), ValueError, "at least 2"),
    (noise(tau=NAN), ValueError, "tau"),
    (noise(sigma=-1.0), ValueError, "sigma"),
    (noise(stop=INF), ValueError, "stop"),
    (noise(dt=0.0), ValueError, "dt"),
    (noise(key=3), TypeError, "`key`"),
    (noise(stop=1e6, dt=1e-6), ValueError, "memory budget"),
    (lambda: STEP + 3.0, TypeError, "unsupported"),
    # simulate
    (lambda: hh.simulate("seed", STEP, t1=5.0), TypeError, "membrane"),
    (sim(stimulus="pulse"), TypeError, "stimulus"),
    (sim(t1=0.0), ValueError, "t1"),
    (sim(t1=NAN), ValueError, "t1"),
    (sim(t1=INF), ValueError, "t1"),
    (sim(t0=NAN), ValueError, "t0"),
    (sim(rtol=0.5), ValueError, "rtol"),
    (sim(rtol=0.1), ValueError, "below 0.1"),
    (sim(rtol=0.0), ValueError, "rtol"),
    (sim(rtol=-1e-6), ValueError, "rtol"),
    (sim(atol=NAN), ValueError, "atol"),
    (sim(atol=INF), ValueError, "atol"),
    (sim(max_steps=0), ValueError, "max_steps"),
    (sim(max_steps=1.5), ValueError, "max_steps"),
    (sim(max_steps=np.int64(0)), ValueError, "max_steps"),
    (sim(max_steps=True), ValueError, "max_steps"),
    (sim(dt0=-1.0), ValueError, "dt0"),
    (sim(dtmax=0.0), ValueError, "dtmax"),
    (sim(dtmax=NAN), ValueError, "dtmax"),
    (sim(dtmax=-INF), ValueError, "dtmax"),
    (sim(ts=jnp.array([0.0, 2.0, 1.0])), ValueError, "strictly increasing"),
    (sim(ts=jnp.array([0.0, 9.0])), ValueError, "within"),
    (sim(ts=jnp.array([0.0, NAN])), ValueError, "ts"),
    (sim(ts=jnp.zeros((2, 2))), ValueError, "1-D"),
    (sim(ts=jnp.zeros((0,))), ValueError, "non-empty"),
    (sim(v0=NAN), ValueError, "v0"),
    (sim(save="X"), ValueError, "save"),
    (sim(save=("m",)), ValueError, "save"),
    (lambda: hh.Batching(per_neuron="each"), ValueError, "per_neuron"),
    (lambda: hh.Batching(chunk_size=0), ValueError, "chunk_size"),
    (lambda: hh.Batching(chunk_size=1.5), ValueError, "chunk_size"),
    (lambda: hh.Batching(devices=[]), ValueError, "devices"),
    (sim(batching="chunks"), TypeError, "batching"),
    (sim(membrane=hh.presets.hh1952(gNa=jnp.zeros((0,)))), ValueError, "empty"),
    (sim(membrane=hh.presets.hh1952(gNa=jnp.ones(3)), v0=jnp.zeros(4)), ValueError, "broadcast"),
    (sim(dt=0.1), ValueError, "networks"),
    (sim(max_spikes=3), ValueError, "max_spikes"),
    (sim(t1=1e12), ValueError, "memory budget"),
    (sim(solver="tsit5"), TypeError, "solver"),
    (sim(adjoint="forward"), TypeError, "adjoint"),
    (spikes(max_spikes=10**12), ValueError, "memory budget"),
    (spikes(t1=INF), ValueError, "t1"),
    (spikes(max_spikes=0), ValueError, "max_spikes"),
    (spikes(max_spikes=2.0), ValueError, "max_spikes"),
    (lambda: hh.stable_dtmax("seed"), TypeError, "membrane"),
    (lambda: hh.stable_dtmax(P, safety=NAN), ValueError, "safety"),
    (lambda: hh.stable_dtmax(P, v0=NAN), ValueError, "v0"),
    # networks
    (lambda: hh.Population(P, size=0), ValueError, "size"),
    (lambda: hh.Population(P, size=3, sharpness=NAN), ValueError, "sharpness"),
    (lambda: hh.Population(P, size=3, threshold=NAN), ValueError, "threshold"),
    (lambda: hh.Population("seed", size=3), TypeError, "membrane"),
    (lambda: hh.ExpSynapse(tau=NAN), ValueError, "tau"),
    (lambda: hh.ExpSynapse(tau=-1.0), ValueError, "tau"),
    (lambda: hh.ExpSynapse(tau=INF), ValueError, "tau"),
    (lambda: hh.ExpSynapse(E=NAN), ValueError, "E"),
    (lambda: hh.AMPA(alpha=NAN), ValueError, "alpha"),
    (lambda: hh.GABAA(beta=0.0), ValueError, "beta"),
    (lambda: hh.NMDA(mg=NAN), ValueError, "mg"),
    (lambda: hh.TsodyksMarkram(U=1.5, tau_rec=100.0), ValueError, "U"),
    (lambda: hh.TsodyksMarkram(U=0.5, tau_rec=NAN), ValueError, "tau_rec"),
    (lambda: hh.TsodyksMarkram(U=0.5, tau_rec=100.0, tau_facil=NAN), ValueError, "tau_facil"),
    (lambda: hh.STDP(A_plus=0.01, A_minus=0.01, tau_plus=NAN), ValueError, "tau_plus"),
    (lambda: hh.STDP(A_plus=0.01, A_minus=0.01, tau_minus=-5.0), ValueError, "tau_minus"),
    (lambda: hh.STDP(A_plus=NAN, A_minus=0.01), ValueError, "A_plus"),
    (projection(weight=-0.1), ValueError, "weight"),
    (projection(weight=NAN), ValueError, "weight"),
    (projection(weight=np.broadcast_to(0.1, (100_000, 100_000)), edges=None), ValueError, "edges"),
    (projection(weight=jnp.ones(3), edges=None), ValueError, "dense"),
    (projection(edges=((0.0, 1.0), (1.0, 0.0))), ValueError, "integer"),
    (projection(stp="depressing"), TypeError, "stp"),
    (lambda: hh.simulate(network(), STEP, t1=5.0), TypeError, "dict"),
    (lambda: hh.simulate(network(), {"I": STEP}, t1=5.0), ValueError, "unknown population"),
    (lambda: hh.simulate(network(), None, t1=5.0, batching=hh.Batching(chunk_size=2)), ValueError, "network"),
    (lambda: hh.simulate(network(), None, t1=5.0, max_spikes=0), ValueError, "max_spikes"),
    (lambda: hh.simulate(network(), None, t1=5.0, dt=NAN), ValueError, "dt"),
    (lambda: hh.simulate(network(), None, t1=5.0, dt=0.1, max_active=0), ValueError, "max_active"),
    (lambda: hh.presets.cobahh(n=1), ValueError, "`n`"),
    (lambda: hh.presets.cobahh(n=10.0), ValueError, "`n`"),
    (lambda: hh.presets.cobahh(p=NAN), ValueError, "`p`"),
    (lambda: hh.presets.cobahh(excitatory_fraction=NAN), ValueError, "excitatory_fraction"),
    # recordings
    (lambda tmp: hh.load_trace(tmp / "missing.csv"), ValueError, "no such file"),
    (load("trace.txt", "t,V\n"), ValueError, "unknown file type"),
    (load("ok.npz", GOOD, junction_mV=NAN), ValueError, "junction_mV"),
    (load("ok.npz", GOOD, current_unit="pA", area_cm2=NAN), ValueError, "area_cm2"),
    (load("ok.npz", GOOD, current_unit="pA"), ValueError, "area_cm2"),
    (load("ok.npz", GOOD, current_unit="furlongs"), ValueError, "current unit"),
    (load("ok.npz", GOOD, voltage_unit="kV"), ValueError, "voltage unit"),
    (load("ok.npz", GOOD, sweep=-1), ValueError, "sweep"),
    (load("ok.npz", GOOD, window=(0.0, NAN)), ValueError, "window"),
    (load("ok.npz", GOOD, columns="t"), ValueError, "columns"),
    (load("ok.npz", GOOD, window=(20.0, 30.0)), ValueError, "fewer than 2"),
    (load("nan.npz", {**GOOD, "V": np.where(np.arange(11) == 3, NAN, -65.0)}), ValueError, "non-finite"),
    (load("back.npz", {**GOOD, "t": GOOD["t"][::-1]}), ValueError, "strictly increasing"),
    (load("nounit.npz", {"t": GOOD["t"], "V": GOOD["V"]}), ValueError, "time unit"),
    (load("noV.npz", {"t": GOOD["t"], "t_unit": "ms"}), ValueError, "no array 'V'"),
    (load("object.npz", {**GOOD, "V": np.array([{"V": 1}], dtype=object)}), ValueError, "Python objects"),
    (load("text.npz", b"t,V\n0,1\n"), ValueError, "not an NPZ"),
    (load("latin1.csv", "t,V (\xb5V)\n0,1\n1,2\n".encode("latin-1"), time_unit="ms", voltage_unit="mV"),
     ValueError, "UTF-8"),
    (load("cols.csv", "time,volts\n0,1\n1,2\n", time_unit="ms", voltage_unit="mV"), ValueError, "columns"),
    (load("words.csv", "t,V\n0,-65\nnot,numbers\n", time_unit="ms", voltage_unit="mV"), ValueError, "numeric CSV"),
    (load("empty.csv", "t,V\n", time_unit="ms", voltage_unit="mV"), ValueError, "empty"),
    (lambda tmp: hh.load_trace(trace_file(tmp, "a.npz", GOOD)).stimulus("cubic"), ValueError, "kind"),
    (lambda tmp: hh.load_trace(trace_file(tmp, "a.npz", GOOD)).resample(np.linspace(0, 20, 5)), ValueError, "outside"),
    # targets, losses, f–I
    (lambda: hh.Target(stimulus="step", ts=TS, V=jnp.zeros(51)), TypeError, "stimulus"),
    (lambda: hh.Target(stimulus=STEP, ts=TS[::-1], V=jnp.zeros(51)), ValueError, "ts"),
    (lambda: hh.Target(stimulus=STEP, ts=TS, V=jnp.zeros(51), weight=0.0), ValueError, "weight"),
    (lambda: hh.Target(stimulus=STEP, ts=TS, V=jnp.zeros(51), sigma=NAN), ValueError, "sigma"),
    (lambda: hh.Target(stimulus=STEP, ts=TS, V=jnp.zeros(51), v0=NAN), ValueError, "v0"),
    (lambda: hh.Target(stimulus=STEP, ts=TS, V=jnp.zeros(51), t0=NAN), ValueError, "t0"),
    (lambda: hh.SmoothedTraceMSE(width=0.0), ValueError, "width"),
    (lambda: hh.fi_curve(P, jnp.array([1.0, NAN])), ValueError, "amplitudes"),
    (lambda: hh.fi_curve(P, jnp.zeros((0,))), ValueError, "non-empty"),
    (lambda: hh.fi_curve(P, jnp.array([1.0]), start=NAN), ValueError, "start"),
    (lambda: hh.rheobase(P, low=10.0, high=5.0), ValueError, "high"),
    (lambda: hh.rheobase(P, per_round=0), ValueError, "per_round"),
    # analysis of traces
    (lambda: hh.spike_times(TS, jnp.zeros(51), threshold=NAN), ValueError, "threshold"),
    (lambda: hh.spike_times(TS, jnp.zeros(51), max_spikes=1.5), ValueError, "max_spikes"),
    (lambda: hh.spike_times(TS, jnp.zeros(50)), ValueError, "last axis"),
    (lambda: hh.spike_count(TS, jnp.zeros(51), window=(0.0, NAN)), ValueError, "window"),
    (lambda: hh.firing_rate(TS, jnp.zeros(51), window=(3.0, 1.0)), ValueError, "window"),
    (lambda: hh.first_spike_latency(TS, jnp.zeros(51), onset=NAN), ValueError, "onset"),
    (lambda tmp: hh.load_trace(trace_file(tmp, "a.npz", GOOD)).resample([0.0, NAN]), ValueError, "ts"),
    (lambda tmp: hh.load_trace(trace_file(tmp, "a.npz", GOOD)).window(0.0, NAN), ValueError, "stop"),
]


@pytest.mark.parametrize("make, error, word", API)
def test_bad_input_is_refused(make, error, word, tmp_path):
    with pytest.raises(error) as info:
        make(tmp_path) if make.__code__.co_argcount else make()
    assert word in str(info.value), str(info.value)
    assert "allow_pickle" not in str(info.value)


# (argv, a word of the one-line message). "{tmp}" is the test's folder; files named below exist.
CLI = [
    (["simulate", "--t1", "inf"], "finite"),
    (["simulate", "--t1", "nan"], "finite"),
    (["simulate", "--t1", "1e400"], "finite"),
    (["simulate", "--t1", "fifty"], "number"),
    (["simulate", "--t1", "-5"], "positive duration"),
    (["simulate", "--dt", "0"], "--dt"),
    (["simulate", "--dt", "100", "--t1", "50"], "--dt"),
    (["simulate", "--v0", "inf"], "finite"),
    (["simulate", "--rtol", "0.5", "--out", "{tmp}/r.npz"], "rtol"),
    (["simulate", "--preset", "squid"], "unknown preset"),
    (["simulate", "--set", "gX=1", "--out", "{tmp}/x.npz"], "gX"),
    (["simulate", "--set", "gNa=nan"], "finite"),
    (["simulate", "--set", "gNa"], "NAME=VALUE"),
    (["simulate", "--set", "gNa=-1", "--out", "{tmp}/n.npz"], "gNa"),
    (["simulate", "--stimulus", "step:start=1,amp=3"], "unknown field"),
    (["simulate", "--stimulus", "zap:start=1"], "unknown stimulus"),
    (["simulate", "--stimulus", "step:start=inf,amplitude=1"], "finite"),
    (["simulate", "--stimulus", "train:start=1,width=1,amplitude=1,count=2.5,period=5"], "count"),
    (["simulate", "--stimulus", "train:start=1,width=1,amplitude=1,count=1e12,period=2"], "memory budget"),
    (["simulate", "--t1", "10000", "--dt", "0.000001"], "memory budget"),
    (["simulate", "--max-steps", "0"], "--max-steps"),
    (["simulate", "--out", "{tmp}/trace.txt"], ".npz or .csv"),
    (["simulate", "--out", "{tmp}/t.npz", "--plot", "{tmp}/t.xyz"], "--plot"),
    (["simulate", "--out", "{tmp}/existing.npz"], "--overwrite"),
    (["simulate", "--out", "{tmp}/folder.npz"], "folder"),
    (["simulate", "--config", "{tmp}/typo.toml"], "presett"),
    (["simulate", "--config", "{tmp}/huge.toml"], "finite"),
    (["simulate", "--config", "{tmp}/words.toml"], "number"),
    (["simulate", "--config", "{tmp}/spliced.toml"], "number"),
    (["simulate", "--config", "{tmp}/kindless.toml"], "kind"),
    (["simulate", "--config", "{tmp}/zap.toml"], "zap"),
    (["simulate", "--config", "{tmp}/broken.toml"], "TOML"),
    (["simulate", "--config", "{tmp}/missing.toml"], "no such config"),
    (["simulate", "--config", "{tmp}/params.toml"], "parameters"),
    (["simulate", "--unknown-flag"], "unrecognized"),
    (["fit", "{tmp}/missing.npz"], "no such trace file"),
    (["fit", "{tmp}/truncated.npz", "--out", "{tmp}/f1"], "not an NPZ"),
    (["fit", "{tmp}/good.npz", "--out", "{tmp}/existing.npz"], "is a file"),
    (["fit", "{tmp}/good.npz", "--out", "{tmp}/done"], "--overwrite"),
    (["fit", "{tmp}/good.npz", "--out", "{tmp}/stopped"], "--resume"),
    (["fit", "{tmp}/good.npz", "--out", "{tmp}/f5", "--resume"], "no checkpoint"),
    (["fit", "{tmp}/good.npz", "--free", "gX", "--out", "{tmp}/f2"], "unknown parameter"),
    (["fit", "{tmp}/good.npz", "--starts", "0"], "--starts"),
    (["fit", "{tmp}/good.npz", "--steps", "many"], "--steps"),
    (["fit", "{tmp}/good.npz", "--junction", "nan"], "finite"),
    (["fit", "{tmp}/good.npz", "--area", "inf"], "finite"),
    (["fit", "{tmp}/nocurrent.npz", "--out", "{tmp}/f3"], "no current"),
    (["fit", "{tmp}/latin1.csv", "--time-unit", "ms", "--voltage-unit", "mV", "--out", "{tmp}/f4"], "UTF-8"),
    (["demo", "--out", "{tmp}/existing.npz"], "is a file"),
    (["demo", "--starts", "-1"], "--starts"),
]


def _cli_files(tmp):
    trace_file(tmp, "existing.npz", GOOD)
    trace_file(tmp, "good.npz", GOOD)
    trace_file(tmp, "nocurrent.npz", {k: v for k, v in GOOD.items() if not k.startswith("I")})
    trace_file(tmp, "truncated.npz", (tmp / "good.npz").read_bytes()[:200])
    trace_file(tmp, "latin1.csv", "t,V (\xb5V)\n0,1\n1,2\n".encode("latin-1"))
    trace_file(tmp, "typo.toml", 'presett = "seed"\n')
    trace_file(tmp, "huge.toml", "t1 = 1e400\n")
    trace_file(tmp, "words.toml", 't1 = "fifty"\n')
    trace_file(tmp, "spliced.toml", '[[stimulus]]\nkind = "step"\nstart = "1,amplitude=1e9"\n')
    trace_file(tmp, "kindless.toml", "[[stimulus]]\nstart = 1.0\n")
    trace_file(tmp, "zap.toml", '[[stimulus]]\nkind = "zap"\nstart = 1.0\n')
    trace_file(tmp, "broken.toml", "t1 = = 3\n")
    trace_file(tmp, "params.toml", "parameters = 3\n")
    (tmp / "done").mkdir()
    (tmp / "folder.npz").mkdir()
    trace_file(tmp, "done/fit.json", "{}")
    (tmp / "stopped").mkdir()
    trace_file(tmp, "stopped/fit_checkpoint.json", "{}")


@pytest.mark.parametrize("argv, word", CLI)
def test_cli_bad_input_is_one_line_and_exit_2(argv, word, tmp_path, capsys):
    _cli_files(tmp_path)
    status = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert word in err, err


def test_the_tables_hold_at_least_100_bad_inputs():
    assert len(API) + len(CLI) >= 100


# ------------------------------------------------------------- one test per class of failure


def _mean_v(field, value, amplitude, **kwargs):
    times = {"start": 5.0, "stop": 6.0, field: value}
    s = hh.Pulse(amplitude=amplitude, **times)
    return jnp.mean(hh.simulate(P, s, t1=10.0, ts=jnp.linspace(0.0, 10.0, 201), **kwargs).V)


@pytest.mark.solve
@pytest.mark.parametrize("field", ["start", "stop"])
@pytest.mark.parametrize("amplitude", [50.0, 1.0])  # suprathreshold, subthreshold
def test_gradient_with_respect_to_a_jump_time_is_refused_not_wrong(field, amplitude):
    """A trace is not differentiable in a jump time that meets a save time (here 5 and 6 ms on
    a 0.05 ms grid), where grad gave one one-sided derivative (86 for a central 42): refused,
    eagerly, under jit either side of grad, and in forward mode; the amplitude's gradient on
    the same solve is right (central differences)."""
    value = 5.0 if field == "start" else 6.0
    f = lambda x: _mean_v(field, x, amplitude)  # noqa: E731
    for transform in (jax.grad, lambda g: jax.grad(jax.jit(g)), lambda g: jax.jit(jax.grad(g)), jax.jacfwd):
        with pytest.raises(ValueError, match=f"Pulse.{field}"):
            transform(f)(value)
    # What the error suggests works: finite differences in the time, stop_gradient to silence.
    assert float(jax.grad(lambda x: f(jax.lax.stop_gradient(x)))(value)) == 0.0
    g = lambda a: _mean_v(field, value, a, rtol=1e-10, atol=1e-10, max_steps=100_000)  # noqa: E731
    h = 1e-4 * amplitude
    central = (g(amplitude + h) - g(amplitude - h)) / (2 * h)
    np.testing.assert_allclose(jax.grad(g)(amplitude), central, rtol=1e-4)


@pytest.mark.solve
def test_every_stimulus_time_refuses_differentiation():
    ts = jnp.linspace(0.0, 5.0, 11)
    builders = {
        "Step.start": lambda x: hh.Step(start=x, amplitude=5.0),
        "PulseTrain.period": lambda x: hh.PulseTrain(start=1.0, width=0.5, amplitude=5.0, count=2, period=x),
        "PulseTrain.width": lambda x: hh.PulseTrain(start=1.0, width=x / 4, amplitude=5.0, count=2, period=2.0),
        "Ramp.stop": lambda x: hh.Ramp(start=1.0, stop=x, stop_amplitude=5.0),
        "Sine.start": lambda x: hh.Sine(amplitude=1.0, frequency=100.0, start=x),
        "Sampled.times": lambda x: hh.Sampled(times=jnp.array([0.0, 1.0, x]), values=jnp.ones(3)),
    }
    for field, build in builders.items():
        loss = lambda x: jnp.sum(hh.simulate(P, build(x), t1=5.0, ts=ts).V)  # noqa: E731
        with pytest.raises(ValueError, match=field):
            jax.grad(loss)(2.0)


@pytest.mark.solve
def test_the_network_solve_refuses_a_stimulus_time_gradient():
    net = hh.Network({"E": hh.Population(P, size=1)})
    loss = lambda x: jnp.sum(hh.simulate(net, {"E": hh.Pulse(start=1.0, stop=x, amplitude=5.0)},  # noqa: E731
                                         t1=3.0, ts=jnp.linspace(0.0, 3.0, 4)).values["E.V"])
    with pytest.raises(ValueError, match="Pulse.stop"):
        jax.grad(loss)(2.0)


@pytest.mark.solve
def test_forward_mode_says_which_adjoint_to_pass():
    ts = jnp.linspace(0.0, 2.0, 5)
    f = lambda gna, adjoint=None: hh.simulate(hh.presets.hh1952(gNa=gna), None, t1=2.0, ts=ts,  # noqa: E731
                                              adjoint=adjoint).V
    with pytest.raises(TypeError, match=r"adjoint=diffrax.ForwardMode\(\)"):
        jax.jacfwd(f)(120.0)
    forward = jax.jacfwd(lambda g: f(g, diffrax.ForwardMode()))(120.0)
    np.testing.assert_allclose(forward, jax.jacrev(f)(120.0), rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("value", [NAN, INF, -INF, np.array([1.0, NAN])])
def test_nan_is_refused_at_the_root(value):
    """Every positive or non-negative quantity goes through one check, which refuses NaN and
    inf: time constants of synapses, plasticity, populations; conductances; a junction."""
    from hh_jax._validation import check_nonnegative, check_positive

    for check in (lambda: check_positive("tau", value, "owner", "ms"),
                  lambda: check_nonnegative("g", value, "owner", "mS/cm²")):
        with pytest.raises(ValueError, match="finite"):
            check()
    for build in (lambda: hh.ExpSynapse(tau=value), lambda: hh.TsodyksMarkram(U=0.5, tau_rec=value),
                  lambda: hh.STDP(A_plus=0.01, A_minus=0.01, tau_plus=value),
                  lambda: hh.Population(P, size=2, sharpness=value)):
        with pytest.raises(ValueError, match="finite"):
            build()


@pytest.mark.solve
def test_memory_budget_refuses_before_allocating(monkeypatch):
    """Requests are sized before anything is allocated, against a budget that the
    environment can set; the message names the size and the remedy, and the remedy works."""
    from hh_jax._validation import MEMORY_BUDGET_ENV, memory_budget

    assert 0 < memory_budget() < math.inf
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "1MB")
    assert memory_budget() == 1_000_000
    with pytest.raises(ValueError, match=r"saved trace needs .* MB .*save='V'"):
        hh.simulate(P, STEP, t1=5.0, ts=jnp.linspace(0.0, 5.0, 20_001))
    with pytest.raises(ValueError, match="chunk_size"):
        hh.simulate_spikes(hh.presets.hh1952(gNa=jnp.linspace(100.0, 120.0, 1000)), STEP, t1=5.0)
    with pytest.raises(ValueError, match="edges"):
        projection(weight=np.broadcast_to(0.1, (1000, 1000)), edges=None)()
    batch = hh.presets.hh1952(gNa=jnp.linspace(100.0, 120.0, 400))  # 400 × 201 V samples: 0.64 MB
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "2MB")
    with pytest.raises(ValueError, match="chunk_size"):
        hh.simulate(batch, STEP, t1=5.0, save="V")  # 4 copies: 2.6 MB
    assert hh.simulate(batch, STEP, t1=5.0, save="V", batching=hh.Batching(chunk_size=40)).V.shape == (400, 201)
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "lots")
    with pytest.raises(ValueError, match=MEMORY_BUDGET_ENV):
        memory_budget()


@pytest.mark.solve
@pytest.mark.parametrize("max_steps", [np.int64(4096), np.int32(4096)])
def test_numpy_integers_are_integers(max_steps):
    tr = hh.simulate(hh.presets.hh1952(gNa=jnp.array([100.0, 120.0])), STEP, t1=5.0, ts=TS,
                     max_steps=max_steps, batching=hh.Batching(chunk_size=np.int64(1)))
    sp = hh.simulate_spikes(P, STEP, t1=5.0, max_spikes=np.int64(4), max_steps=max_steps)
    assert tr.V.shape == (2, 51) and sp.times.shape == (4,)


def test_recordings_with_a_bom_and_greek_mu(tmp_path):
    """A byte-order mark is not part of the first column's name; μ (Greek) is micro."""
    path = trace_file(tmp_path, "bom.csv", "\ufeff" + CSV)
    rec = hh.load_trace(path, time_unit="ms", voltage_unit="mV", current_unit="\u03bcA/cm²")
    np.testing.assert_allclose(rec.I, [0.0, 1.0, 0.0])
    npz = trace_file(tmp_path, "abs.npz", {**GOOD, "I_unit": "\u03bcA"})
    np.testing.assert_allclose(hh.load_trace(npz, area_cm2=1e-3).I, GOOD["I"] / 1e-3)


@pytest.mark.solve
def test_cli_never_overwrites_and_checks_outputs_before_the_work(tmp_path, capsys):
    out = trace_file(tmp_path, "trace.npz", b"precious")
    argv = ["simulate", "--t1", "2", "--out", str(out)]
    assert main(argv) == 2 and out.read_bytes() == b"precious"
    assert main([*argv, "--overwrite"]) == 0
    assert zipfile.is_zipfile(out) and not list(tmp_path.glob(".*tmp*"))  # written via a rename
    capsys.readouterr()


def test_cli_fit_whose_every_start_failed_is_one_line(tmp_path, capsys, monkeypatch):
    """A fit that returns with every start failed is an error (exit 2), not a result."""
    import types

    trace_file(tmp_path, "good.npz", GOOD)
    failed = types.SimpleNamespace(failed=np.ones(2, bool))
    monkeypatch.setattr(hh, "fit", lambda *a, **k: failed)
    status = main(["fit", str(tmp_path / "good.npz"), "--starts", "2", "--out", str(tmp_path / "f")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "every one of the 2 starts failed" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "f" / "fit.json").exists()


def test_cli_interrupted_fit_says_how_to_resume(tmp_path, capsys, monkeypatch):
    """Ctrl-C (or SIGTERM) during `hh-jax fit`: one line, status 130, and the way back."""

    def interrupted(*args, **kwargs):
        raise hh.FitInterrupted("stopped", result=None)

    trace_file(tmp_path, "good.npz", GOOD)
    monkeypatch.setattr(hh, "fit", interrupted)
    status = main(["fit", str(tmp_path / "good.npz"), "--out", str(tmp_path / "f")])
    err = capsys.readouterr().err.strip()
    assert status == 130 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "fit_checkpoint.json" in err and "--resume" in err


def test_cli_solver_failure_is_one_line(tmp_path, capsys, monkeypatch):
    def fail(*args, **kwargs):
        raise hh.SolverError("hh.simulate: the solver hit its step limit (max_steps)\nsecond line")

    monkeypatch.setattr(hh, "simulate", fail)
    status = main(["simulate", "--t1", "2", "--out", str(tmp_path / "t.npz")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.endswith("error: hh.simulate: the solver hit its step limit (max_steps)")
    assert len(err.splitlines()) == 1
