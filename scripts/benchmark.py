"""Benchmark: hh_jax beside Jaxley and the gist's scipy `odeint`, in one run.

Case (issue 4): NEURON's `hh` (6.3 °C), a 9 µA/cm² step from 1 to 41 ms, 50 ms simulated,
V saved every 0.025 ms; N identical neurons, N in --sizes; float64 and float32.

Per tool, dtype and N: wall time (median of --repeats runs after a warm-up call), first-call
(compile) time, neuron-milliseconds simulated per second, peak resident memory, and the
spike-time error of neuron 0 against NEURON (CVODE, usetable_hh = 0, atol = rtol = 1e-10;
a scipy LSODA reference if NEURON is not installed). For N in --grad-sizes also the cost of
`value_and_grad` of a trace MSE with respect to (gNa, gK, gL), relative to the forward run.

Every (tool, dtype, N) case runs in its own Python process, so that peak memory and JAX's
dtype setting belong to that case alone; the cases run one after another in this one
invocation, on the same machine. The gist's odeint is timed for one neuron and extrapolated
linearly to N (labelled so). Jaxley needs the `bench` extra: pip install -e ".[bench]".

    python scripts/benchmark.py --out scripts/benchmark            # full run
    python scripts/benchmark.py --sizes 1 100 --repeats 3 --quick  # a smoke run

Networks (issue 8), `--network`: the COBAHH benchmark of Brette et al. (2007): 4000 HH
neurons, 80 % excitatory, 2 % connectivity, exponential conductances, 1 s of biological time,
hh_jax (fixed steps of 0.1 ms, exponential Euler, float64 and float32) beside Brian2 (cython
target, exponential Euler, dt 0.1 ms, float64) on the *same* network: connectivity and initial
conditions come from `hh.presets.cobahh(seed=...)` and are handed to Brian2. Per tool, wall
time of the run (median of --repeats after a warm-up run, which includes compilation or code
generation), population firing rate and mean ISI CV. Brian2 needs numpy < 2.3 on Python 3.11
(the bench extra pins it there).

    python scripts/benchmark.py --network --out scripts/benchmark
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import time

import numpy as np

T1, START, STOP, AMPLITUDE, DT_SAVE = 50.0, 1.0, 41.0, 9.0, 0.025
N_SAVE = int(round(T1 / DT_SAVE)) + 1


# --------------------------------------------------------------------------- references


def neuron_reference() -> tuple[list[float], str]:
    """0 mV upward crossings of NEURON's own `hh` (the ground truth), or scipy if absent."""
    try:
        from neuron import h
    except ImportError:
        return scipy_reference(), "scipy LSODA rtol=atol=1e-12 (NEURON not installed)"
    h.load_file("stdrun.hoc")
    soma = h.Section(name="soma")
    soma.L = soma.diam = 18.8
    soma.insert("hh")
    h.usetable_hh = 0
    clamp = h.IClamp(soma(0.5))
    clamp.delay, clamp.dur = START, STOP - START
    clamp.amp = AMPLITUDE * soma(0.5).area() * 1e-8 * 1e3
    cvode = h.CVode()
    cvode.active(1)
    cvode.atol(1e-10)
    cvode.rtol(1e-10)
    cvode.condition_order(2)
    detector = h.NetCon(soma(0.5)._ref_v, None, sec=soma)
    detector.threshold = 0.0
    times = h.Vector()
    detector.record(times)
    h.celsius = 6.3
    h.finitialize(-65.0)
    h.continuerun(T1)
    return list(times), "NEURON 9 CVODE, usetable_hh=0, atol=rtol=1e-10"


def _hh_rhs_numpy(t, y, current):
    """NEURON's hh.mod at 6.3 °C, written out with numpy (for scipy)."""
    v, m, h, n = y
    x_m, x_n = -(v + 40.0) / 10.0, -(v + 55.0) / 10.0
    am = 0.1 * 10.0 * (x_m / np.expm1(x_m) if abs(x_m) > 1e-9 else 1.0 - x_m / 2)
    an = 0.01 * 10.0 * (x_n / np.expm1(x_n) if abs(x_n) > 1e-9 else 1.0 - x_n / 2)
    bm = 4.0 * np.exp(-(v + 65.0) / 18.0)
    ah = 0.07 * np.exp(-(v + 65.0) / 20.0)
    bh = 1.0 / (np.exp(-(v + 35.0) / 10.0) + 1.0)
    bn = 0.125 * np.exp(-(v + 65.0) / 80.0)
    i_ion = 120.0 * m**3 * h * (v - 50.0) + 36.0 * n**4 * (v + 77.0) + 0.3 * (v + 54.3)
    i_ext = current(t)
    return [i_ext - i_ion, am * (1 - m) - bm * m, ah * (1 - h) - bh * h, an * (1 - n) - bn * n]


def _y0_numpy(v=-65.0):
    x_m, x_n = -(v + 40.0) / 10.0, -(v + 55.0) / 10.0
    am, an = x_m / np.expm1(x_m), 0.1 * x_n / np.expm1(x_n)
    bm, bn = 4.0 * np.exp(-(v + 65.0) / 18.0), 0.125 * np.exp(-(v + 65.0) / 80.0)
    ah, bh = 0.07 * np.exp(-(v + 65.0) / 20.0), 1.0 / (np.exp(-(v + 35.0) / 10.0) + 1.0)
    return [v, am / (am + bm), ah / (ah + bh), an / (an + bn)]


def _step(t):
    return AMPLITUDE if START <= t < STOP else 0.0


def scipy_reference() -> list[float]:
    from scipy.integrate import solve_ivp

    y, spikes = _y0_numpy(), []
    for a, b in ((0.0, START), (START, STOP), (STOP, T1)):
        ev = lambda t, y, c=None: y[0]  # noqa: E731
        ev.direction = 1.0
        sol = solve_ivp(_hh_rhs_numpy, (a, b), y, method="LSODA", rtol=1e-12, atol=1e-12, args=(_step,), events=ev)
        spikes += sol.t_events[0].tolist()
        y = sol.y[:, -1]
    return spikes


# --------------------------------------------------------------------------- cases


def _timed(fn, repeats, summarize=lambda out: out):
    """First-call time, median of `repeats` further calls, and `summarize(first output)`; the
    output itself is dropped before the timed calls so two never coexist in memory."""
    import jax

    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - start
    out = summarize(out)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return out, first, float(np.median(times))


def _spike_error(t, v, reference):
    import hh_jax as hh

    spikes = np.asarray(hh.spike_times(np.asarray(t, np.float64), np.asarray(v, np.float64), 0.0))
    if len(spikes) != len(reference):
        return float("inf")
    return float(np.max(np.abs(spikes - np.asarray(reference))))


def case_hh_jax(n, dtype, repeats, grad, reference, rtol, chunk_size=None):
    import jax

    jax.config.update("jax_enable_x64", dtype == "float64")
    import jax.numpy as jnp

    import hh_jax as hh

    ts = jnp.linspace(0.0, T1, N_SAVE)
    stimulus = hh.Step(start=START, stop=STOP, amplitude=AMPLITUDE)
    shape = () if n == 1 else (n,)

    def run(gNa, gK, gL):
        p = hh.presets.neuron(gNa=gNa, gK=gK, gL=gL)
        return hh.simulate(p, stimulus, t1=T1, ts=ts, save="V", rtol=rtol, atol=rtol, chunk_size=chunk_size).V

    g = [jnp.full(shape, x) for x in (120.0, 36.0, 0.3)]
    # Chunking is a host-side loop over compiled chunks: it runs eagerly, not under jit.
    forward = jax.jit(run) if chunk_size is None else run
    V0, first, wall = _timed(lambda: forward(*g), repeats, summarize=lambda V: V if n == 1 else V[0])
    result = dict(first_call_s=first, wall_s=wall, spike_error_ms=_spike_error(ts, V0, reference))
    if grad:
        target = forward(*[x * 1.02 for x in g])
        loss = lambda *g: jnp.mean((run(*g) - target) ** 2)  # noqa: E731
        vg = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
        _, gfirst, gwall = _timed(lambda: vg(*g), repeats)
        result.update(grad_first_call_s=gfirst, grad_wall_s=gwall, grad_over_forward=gwall / wall)
    return result


def jaxley_run(solver):
    """Jaxley's single-compartment HH cell under the case's step: `run(gNa, gK, gL)` (mS/cm²)
    returns V (mV) every DT_SAVE ms."""
    import jaxley as jx
    from jaxley.channels import HH

    cell = jx.Cell()
    cell.insert(HH())
    cell.set("v", -65.0)
    cell.init_states()
    radius, length = cell.nodes["radius"].iloc[0], cell.nodes["length"].iloc[0]  # µm
    area_cm2 = 2 * np.pi * radius * length * 1e-8
    i_amp = AMPLITUDE * area_cm2 * 1e3  # µA/cm² → nA
    current = jx.step_current(i_delay=START, i_dur=STOP - START, i_amp=i_amp, delta_t=DT_SAVE, t_max=T1)
    cell.stimulate(current, verbose=False)
    cell.record("v", verbose=False)

    def run(gNa, gK, gL):
        ps = cell.data_set("HH_gNa", gNa * 1e-3, None)  # mS/cm² → S/cm²
        ps = cell.data_set("HH_gK", gK * 1e-3, ps)
        ps = cell.data_set("HH_gLeak", gL * 1e-3, ps)
        return jx.integrate(cell, param_state=ps, delta_t=DT_SAVE, t_max=T1, solver=solver)[0]

    return run


def case_jaxley(n, dtype, repeats, grad, reference, solver):
    import jax

    jax.config.update("jax_enable_x64", dtype == "float64")
    import jax.numpy as jnp

    run = jaxley_run(solver)
    batched = jax.jit(jax.vmap(run)) if n > 1 else jax.jit(run)
    g = [jnp.full((n,) if n > 1 else (), x) for x in (120.0, 36.0, 0.3)]
    V, first, wall = _timed(lambda: batched(*g), repeats)
    t = np.arange(V.shape[-1]) * DT_SAVE
    result = dict(first_call_s=first, wall_s=wall, spike_error_ms=_spike_error(t, V if n == 1 else V[0], reference))
    if grad:
        target = batched(*[x * 1.02 for x in g])
        loss = lambda *g: jnp.mean(((jax.vmap(run) if n > 1 else run)(*g) - target) ** 2)  # noqa: E731
        vg = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
        _, gfirst, gwall = _timed(lambda: vg(*g), repeats)
        result.update(grad_first_call_s=gfirst, grad_wall_s=gwall, grad_over_forward=gwall / wall)
    return result


def case_odeint(n, dtype, repeats, grad, reference):
    from scipy.integrate import odeint

    t = np.linspace(0.0, T1, N_SAVE)

    def run():
        return odeint(lambda y, t: _hh_rhs_numpy(t, y, _step), _y0_numpy(), t)[:, 0]

    start = time.perf_counter()
    V = run()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    per_neuron = float(np.median(times))
    return dict(first_call_s=first, wall_s=per_neuron * n, extrapolated=n > 1, spike_error_ms=_spike_error(t, V, reference))


def run_case(args) -> None:
    tool, dtype, n = args.case[0], args.case[1], int(args.case[2])
    args.rtol = args.rtol[0]  # a case runs one tolerance
    reference = json.loads(args.reference)
    grad = n in args.grad_sizes
    if "@" in tool:  # hh_jax rows carry their tolerance: "hh_jax@1e-05"
        tool, tolerance = tool.split("@")
        args.rtol = float(tolerance)
    if tool == "hh_jax":
        result = case_hh_jax(n, dtype, args.repeats, grad, reference, args.rtol)
        result["setting"] = f"Tsit5, PID rtol=atol={args.rtol:g}"
    elif tool == "hh_jax:chunked":
        result = case_hh_jax(n, dtype, args.repeats, False, reference, args.rtol, chunk_size=args.chunk_size)
        result["setting"] = f"Tsit5, PID rtol=atol={args.rtol:g}, chunks of {args.chunk_size}"
    elif tool.startswith("jaxley"):
        solver = tool.split(":")[1]
        result = case_jaxley(n, dtype, args.repeats, grad, reference, solver)
        result["setting"] = f"{solver}, dt {DT_SAVE} ms"
    else:
        result = case_odeint(n, dtype, args.repeats, grad, reference)
        result["setting"] = "scipy odeint, default tolerances" + (" (extrapolated from N=1)" if n > 1 else "")
    result.update(
        tool=tool.split(":")[0], dtype=dtype, n=n,
        neuron_ms_per_s=n * T1 / result["wall_s"],
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    )
    print("RESULT " + json.dumps(result))


# --------------------------------------------------------------------------- COBAHH network


def _cobahh_stats(trains, n, t1_ms):
    """Population rate (Hz) and mean ISI CV over neurons with at least 3 spikes."""
    count = sum(len(tr) for tr in trains)
    cvs = []
    for tr in trains:
        if len(tr) >= 3:
            isi = np.diff(np.sort(np.asarray(tr)))
            cvs.append(isi.std() / isi.mean())
    return dict(rate_hz=count / n / (t1_ms / 1000.0), isi_cv=float(np.mean(cvs)), cv_neurons=len(cvs))


def case_cobahh_hh_jax(dtype, seed, repeats, n=4000, t1=1000.0):
    import jax

    jax.config.update("jax_enable_x64", dtype == "float64")
    import hh_jax as hh

    net, init = hh.presets.cobahh(n=n, seed=seed)

    def run():
        return hh.simulate(net, None, t1=t1, dt=0.1, init=init, save=(), max_spikes=400).spikes["P"]

    sp, first, wall = _timed(run, repeats)
    times_ms = np.asarray(sp.times)
    trains = [row[np.isfinite(row)] for row in times_ms]
    dropped = int(np.sum(np.asarray(sp.counts) - np.array([len(t) for t in trains])))
    return dict(first_call_s=first, wall_s=wall, dropped_spike_times=dropped,
                device=str(jax.devices()[0].device_kind), **_cobahh_stats(trains, n, t1))


def case_cobahh_brian2(seed, repeats, target="cython", n=4000, t1=1000.0):
    import brian2 as b2
    import hh_jax as hh

    net, init = hh.presets.cobahh(n=n, seed=seed)
    exc = [np.asarray(x) for x in (net.projections["exc"].pre_index, net.projections["exc"].post_index)]
    inh = [np.asarray(x) for x in (net.projections["inh"].pre_index, net.projections["inh"].post_index)]
    b2.prefs.codegen.target = target
    mV, ms, nS = b2.mV, b2.ms, b2.nS
    # Brian2's own COBAHH example (examples/frompapers/Brette_2007/COBAHH.py), units as there.
    area = 20000 * b2.umetre**2
    ns = dict(
        Cm=(1 * b2.ufarad * b2.cmetre**-2) * area, gl=(5e-5 * b2.siemens * b2.cmetre**-2) * area,
        El=-60 * mV, EK=-90 * mV, ENa=50 * mV, g_na=(100 * b2.msiemens * b2.cmetre**-2) * area,
        g_kd=(30 * b2.msiemens * b2.cmetre**-2) * area, VT=-63 * mV, taue=5 * ms, taui=10 * ms,
        Ee=0 * mV, Ei=-80 * mV, we=6 * nS, wi=67 * nS,
    )
    eqs = b2.Equations("""
    dv/dt = (gl*(El-v)+ge*(Ee-v)+gi*(Ei-v)-g_na*(m*m*m)*h*(v-ENa)-g_kd*(n*n*n*n)*(v-EK))/Cm : volt
    dm/dt = alpha_m*(1-m)-beta_m*m : 1
    dn/dt = alpha_n*(1-n)-beta_n*n : 1
    dh/dt = alpha_h*(1-h)-beta_h*h : 1
    dge/dt = -ge*(1./taue) : siemens
    dgi/dt = -gi*(1./taui) : siemens
    alpha_m = 0.32*(mV**-1)*4*mV/exprel((13*mV-v+VT)/(4*mV))/ms : Hz
    beta_m = 0.28*(mV**-1)*5*mV/exprel((v-VT-40*mV)/(5*mV))/ms : Hz
    alpha_h = 0.128*exp((17*mV-v+VT)/(18*mV))/ms : Hz
    beta_h = 4./(1+exp((40*mV-v+VT)/(5*mV)))/ms : Hz
    alpha_n = 0.032*(mV**-1)*5*mV/exprel((15*mV-v+VT)/(5*mV))/ms : Hz
    beta_n = .5*exp((10*mV-v+VT)/(40*mV))/ms : Hz
    """)
    state = {}

    def build():
        b2.start_scope()
        b2.defaultclock.dt = 0.1 * ms
        P = b2.NeuronGroup(n, model=eqs, threshold="v>-20*mV", refractory=3 * ms,
                           method="exponential_euler", namespace=ns)
        Ce = b2.Synapses(P, P, on_pre="ge+=we", namespace=ns)
        Ci = b2.Synapses(P, P, on_pre="gi+=wi", namespace=ns)
        Ce.connect(i=exc[0], j=exc[1])
        Ci.connect(i=inh[0], j=inh[1])
        P.v = init["P.V"] * mV  # gates start at 0, as in the example
        to_nS = 1.0 / float(hh.presets._NS)
        P.ge = init["exc.g"] * to_nS * nS
        P.gi = init["inh.g"] * to_nS * nS
        monitor = b2.SpikeMonitor(P)
        state["net"] = b2.Network(P, Ce, Ci, monitor)
        state["monitor"] = monitor

    def run():
        build()  # not timed: only the simulation of 1 s is
        start = time.perf_counter()
        state["net"].run(t1 * ms)
        return time.perf_counter() - start

    first = run()
    times = [run() for _ in range(repeats)]
    trains = [np.asarray(v / ms) for v in state["monitor"].spike_trains().values()]
    return dict(first_call_s=first, wall_s=float(np.median(times)), device="CPU", **_cobahh_stats(trains, n, t1))


def run_network_case(args) -> None:
    tool, dtype, seed = args.case[0], args.case[1], int(args.case[2])
    if tool == "hh_jax":
        result = case_cobahh_hh_jax(dtype, seed, args.repeats)
        result["setting"] = "fixed dt 0.1 ms, exponential Euler"
    else:
        result = case_cobahh_brian2(seed, args.repeats)
        result["setting"] = "cython, exponential Euler, dt 0.1 ms"
    result.update(tool=tool, dtype=dtype, seed=seed,
                  peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
    print("RESULT " + json.dumps(result))


def network_main(args):
    results = []
    cases = [("hh_jax", d) for d in args.dtypes] + ([("brian2", "float64")] if _available_brian2() else [])
    if not _available_brian2():
        print("skipping Brian2: install the bench extra (pip install -e '.[bench]'; numpy < 2.3 on Python 3.11)")
    for seed in args.seeds:
        for tool, dtype in cases:
            cmd = [sys.executable, __file__, "--network", "--case", tool, dtype, str(seed),
                   "--repeats", str(args.repeats if seed == args.seeds[0] else 1)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not line:
                print(f"{tool} {dtype} seed {seed}: FAILED\n{proc.stderr[-2000:]}")
                results.append(dict(tool=tool, dtype=dtype, seed=seed, error=proc.stderr[-500:]))
                continue
            r = json.loads(line[0][len("RESULT "):])
            print(f"{tool:7s} {dtype} seed {seed}: wall {r['wall_s']:.2f} s (first {r['first_call_s']:.1f} s)  "
                  f"rate {r['rate_hz']:.2f} Hz  ISI CV {r['isi_cv']:.3f}  peak {r['peak_rss_mb']:.0f} MB")
            results.append(r)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = dict(machine=_machine(), case=dict(model="COBAHH (Brette et al. 2007, benchmark 3)", n=4000,
                                                 t1_ms=1000.0, dt_ms=0.1), results=results)
    (out / "network.json").write_text(json.dumps(payload, indent=2))
    (out / "network.md").write_text(network_markdown(payload))
    print(f"wrote {out / 'network.json'} and {out / 'network.md'}")
    return payload


def _available_brian2():
    proc = subprocess.run([sys.executable, "-c", "import brian2"], capture_output=True)
    return proc.returncode == 0


def network_markdown(payload):
    m = payload["machine"]
    ok = [r for r in payload["results"] if "error" not in r]
    brian = {r["seed"]: r for r in ok if r["tool"] == "brian2"}
    lines = [
        f"Machine: {m['processor']}, {m['cpu_count']} cores, Python {m['python']}, JAX {m['jax']}; {m['date']}.",
        "COBAHH, 4000 neurons, 1 s of biological time, dt 0.1 ms; the same connectivity and initial "
        "conditions for both tools (from `hh.presets.cobahh(seed)`). Wall: median of repeated runs "
        "after a warm-up (one run for the other seeds).",
        "",
        "| tool | setting | dtype | seed | wall (s) | first call (s) | ÷ Brian2 wall | rate (Hz) | rate ÷ Brian2 "
        "| ISI CV | CV ÷ Brian2 | peak RSS (MB) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in ok:
        b = brian.get(r["seed"])
        ratio = lambda key: _fmt(r[key] / b[key] if b else None, ".3f")  # noqa: E731
        lines.append(
            f"| {r['tool']} | {r['setting']} | {r['dtype']} | {r['seed']} | {r['wall_s']:.2f} | {r['first_call_s']:.1f} "
            f"| {ratio('wall_s')} | {r['rate_hz']:.2f} | {ratio('rate_hz')} | {r['isi_cv']:.3f} | {ratio('isi_cv')} "
            f"| {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- driver


def _available(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 1000, 10000], help="numbers of neurons N")
    parser.add_argument("--grad-sizes", type=int, nargs="*", default=[1, 1000], help="N at which gradients are timed")
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"], choices=["float64", "float32"])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case after the warm-up (median reported)")
    parser.add_argument("--rtol", type=float, nargs="+", default=[1e-5, 1e-4],
                        help="hh_jax rtol = atol, one row set per value (default 1e-5 and 1e-4, the loosest "
                             "whose spike times stay within 0.005 ms of NEURON)")
    parser.add_argument("--tools", nargs="+", default=["hh_jax", "jaxley:bwd_euler", "jaxley:crank_nicolson", "odeint"])
    parser.add_argument("--out", default="benchmark", help="folder for benchmark.json and benchmark.md")
    parser.add_argument("--large", type=int, nargs="*", default=[100000], help="N for the chunked large-batch memory case (float64)")
    parser.add_argument("--chunk-size", type=int, default=10000, help="neurons per chunk in the large case")
    parser.add_argument("--quick", action="store_true", help="skip Jaxley float32 and odeint float32 (smoke runs)")
    parser.add_argument("--network", action="store_true", help="run the COBAHH network benchmark against Brian2 instead")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="COBAHH network instances (--network)")
    parser.add_argument("--case", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.network:
        if args.case:
            return run_network_case(args)
        if "--repeats" not in (argv if argv is not None else sys.argv):
            args.repeats = 3
        return network_main(args)
    if args.case:
        return run_case(args)

    reference, reference_label = neuron_reference()
    print(f"reference spike times ({reference_label}): {[round(s, 5) for s in reference]}")
    tools = [t for t in args.tools if not t.startswith("jaxley") or _available("jaxley")]
    tools = [f"hh_jax@{r:g}" for r in args.rtol for t in tools if t == "hh_jax"] + [t for t in tools if t != "hh_jax"]
    skipped = sorted(set(args.tools) - set(tools))
    if skipped:
        print(f"skipping {skipped}: install the bench extra (pip install -e '.[bench]')")
    results = []
    for dtype in args.dtypes:
        for tool in tools:
            if tool == "odeint" and dtype == "float32":
                continue  # scipy integrates in float64 only
            if args.quick and tool.startswith("jaxley") and dtype == "float32":
                continue
            for n in args.sizes:
                results.append(_spawn(tool, dtype, n, reference, args))
    for n in args.large:
        results.append(_spawn(f"hh_jax:chunked@{args.rtol[0]:g}", "float64", n, reference, args))

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = _machine()
    payload = dict(machine=machine, reference=dict(label=reference_label, spike_times_ms=reference),
                   case=dict(model="NEURON hh, 6.3 °C", stimulus=f"{AMPLITUDE} µA/cm² step {START}-{STOP} ms",
                             t1_ms=T1, save_every_ms=DT_SAVE), results=results)
    (out / "benchmark.json").write_text(json.dumps(payload, indent=2))
    (out / "benchmark.md").write_text(markdown(payload))
    print(f"wrote {out / 'benchmark.json'} and {out / 'benchmark.md'}")
    return payload


def _spawn(tool, dtype, n, reference, args):
    """Run one case in a fresh process; its peak memory and dtype setting are its own."""
    cmd = [sys.executable, __file__, "--case", tool, dtype, str(n), "--reference", json.dumps(reference),
           "--repeats", str(args.repeats), "--rtol", str(args.rtol[0]), "--chunk-size", str(args.chunk_size),
           "--grad-sizes", *map(str, args.grad_sizes)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not line:
        print(f"{tool} {dtype} N={n}: FAILED\n{proc.stderr[-2000:]}")
        return dict(tool=tool.split(":")[0], setting=tool, dtype=dtype, n=n, error=proc.stderr[-500:])
    result = json.loads(line[0][len("RESULT "):])
    print(_row(result))
    return result


def _machine():
    import jax

    return dict(
        platform=platform.platform(), processor=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(), python=platform.python_version(), jax=jax.__version__,
        device=str(jax.devices()[0].device_kind), date=time.strftime("%Y-%m-%d"),
    )


def _fmt(x, spec):
    return "—" if x is None else ("∞" if x == float("inf") else format(x, spec))


def _row(r):
    return (f"{r['tool']:7s} {r['setting']:40s} {r['dtype']} N={r['n']:<6d} wall {r['wall_s']:.4f} s  "
            f"first {r['first_call_s']:.2f} s  spike err {_fmt(r['spike_error_ms'], '.2g')} ms  "
            f"grad/fwd {_fmt(r.get('grad_over_forward'), '.2f')}  peak {r['peak_rss_mb']:.0f} MB")


def markdown(payload) -> str:
    m = payload["machine"]
    lines = [
        f"Machine: {m['processor']}, {m['cpu_count']} cores, {m['platform']}, Python {m['python']}, "
        f"JAX {m['jax']} on {m['device']}; {m['date']}.",
        f"Case: {payload['case']['model']}, {payload['case']['stimulus']}, {payload['case']['t1_ms']} ms, "
        f"V saved every {payload['case']['save_every_ms']} ms. Spike-time error against "
        f"{payload['reference']['label']}.",
        "",
        "| tool | setting | dtype | N | wall (s, median) | first call (s) | neuron·ms/s | peak RSS (MB) "
        "| spike error (ms) | grad / forward | hh_jax ÷ Jaxley CN |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    ok = [r for r in payload["results"] if "error" not in r]
    cn = {(r["dtype"], r["n"]): r["wall_s"] for r in ok if r["setting"].startswith("crank_nicolson")}
    for r in ok:
        ratio = r["wall_s"] / cn[(r["dtype"], r["n"])] if r["tool"] == "hh_jax" and (r["dtype"], r["n"]) in cn else None
        lines.append(
            f"| {r['tool']} | {r['setting']} | {r['dtype']} | {r['n']} | {r['wall_s']:.4g} | {r['first_call_s']:.2f} "
            f"| {r['neuron_ms_per_s']:.3g} | {r['peak_rss_mb']:.0f} | {_fmt(r['spike_error_ms'], '.2g')} "
            f"| {_fmt(r.get('grad_over_forward'), '.2f')} | {_fmt(ratio, '.2f')} |"
        )
    for r in payload["results"]:
        if "error" in r:
            lines.append(f"| {r['tool']} | {r['setting']} | {r['dtype']} | {r['n']} | failed | | | | | | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
