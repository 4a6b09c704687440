"""The COBAHH network (issue 8): Brette et al. (2007), benchmark 3, in hh_jax and in Brian2
on the *same* network, and the driver that runs them, each in its own process.

4000 HH neurons, 80 % excitatory, 2 % connectivity, exponential conductances, 1 s of
biological time: hh_jax with fixed steps of 0.1 ms (exponential Euler, float64 and float32),
Brian2 with its cython target (exponential Euler, dt 0.1 ms, float64). Connectivity and
initial conditions come from `hh.presets.cobahh(seed=...)` and are handed to Brian2.

The Brunel case (issue 18, `--models brunel`): `hh.presets.brunel(n=2000)` (fixed in-degree
E/I network, 1.5 ms delays, Poisson drive) in hh_jax (fixed steps of 0.1 ms, exponential Euler)
and Brian2 (cython, exponential Euler, dt 0.1 ms) on the same connectivity and initial values;
the Poisson input is drawn independently in each (Brian2: `PoissonInput` of 800 inputs at
`ext_rate`/800 Hz per neuron), so the comparison is statistical: population rate and mean ISI
CV after a 200 ms transient (`scripts/brunel.py`'s `regime`).
"""

from __future__ import annotations

import resource
import time

import numpy as np

from .runner import available, report_result, spawn, timed

N, T1_MS, DT_MS = 4000, 1000.0, 0.1
BRUNEL_N, BRUNEL_INPUTS = 2000, 800  # neurons; Poisson inputs per neuron in Brian2 (rate shared)
_TO_NS = 20000e-8 * 1e6  # hh_jax's mS/cm² on the 20,000 µm² cell, as nS


def cobahh_stats(trains, n, t1_ms) -> dict:
    """Population rate (Hz) and mean ISI CV over neurons with at least 3 spikes."""
    count = sum(len(tr) for tr in trains)
    cvs = []
    for tr in trains:
        if len(tr) >= 3:
            isi = np.diff(np.sort(np.asarray(tr)))
            cvs.append(isi.std() / isi.mean())
    return dict(rate_hz=count / n / (t1_ms / 1000.0), isi_cv=float(np.mean(cvs)), cv_neurons=len(cvs))


def case_cobahh_hh_jax(dtype, seed, repeats, n=N, t1=T1_MS):
    import jax

    jax.config.update("jax_enable_x64", dtype == "float64")
    import hh_jax as hh

    model = hh.presets.cobahh(n=n, seed=seed)
    net, init = model.network, model.init

    def run():
        return hh.simulate(net, None, t1=t1, dt=DT_MS, init=init, save=(), max_spikes=400).spikes["P"]

    sp, first, wall = timed(run, repeats)
    times_ms = np.asarray(sp.times)
    trains = [row[np.isfinite(row)] for row in times_ms]
    dropped = int(np.sum(np.asarray(sp.counts) - np.array([len(t) for t in trains])))
    return dict(first_call_s=first, wall_s=wall, dropped_spike_times=dropped,
                device=str(jax.devices()[0].device_kind), **cobahh_stats(trains, n, t1))


_TRAUB_MILES = """
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
"""


def _traub_miles_namespace(b2, we_nS, wi_nS):
    """Brian2's COBAHH example's constants (examples/frompapers/Brette_2007/COBAHH.py), units
    as there, with synaptic weights we, wi (nS)."""
    mV, ms = b2.mV, b2.ms
    area = 20000 * b2.umetre**2
    return dict(
        Cm=(1 * b2.ufarad * b2.cmetre**-2) * area, gl=(5e-5 * b2.siemens * b2.cmetre**-2) * area,
        El=-60 * mV, EK=-90 * mV, ENa=50 * mV, g_na=(100 * b2.msiemens * b2.cmetre**-2) * area,
        g_kd=(30 * b2.msiemens * b2.cmetre**-2) * area, VT=-63 * mV, taue=5 * ms, taui=10 * ms,
        Ee=0 * mV, Ei=-80 * mV, we=we_nS * b2.nS, wi=wi_nS * b2.nS,
    )


def case_cobahh_brian2(seed, repeats, target="cython", n=N, t1=T1_MS):
    import brian2 as b2

    import hh_jax as hh

    model = hh.presets.cobahh(n=n, seed=seed)
    net, init = model.network, model.init
    exc = [np.asarray(x) for x in (net.projections["exc"].pre_index, net.projections["exc"].post_index)]
    inh = [np.asarray(x) for x in (net.projections["inh"].pre_index, net.projections["inh"].post_index)]
    b2.prefs.codegen.target = target
    mV, ms, nS = b2.mV, b2.ms, b2.nS
    ns = _traub_miles_namespace(b2, 6.0, 67.0)
    eqs = b2.Equations(_TRAUB_MILES)
    # hh_jax's synaptic conductances are per area (mS/cm²) of this same cell: as nS, × area.
    to_nS = _TO_NS
    state = {}

    def build():
        b2.start_scope()
        b2.defaultclock.dt = DT_MS * ms
        P = b2.NeuronGroup(n, model=eqs, threshold="v>-20*mV", refractory=3 * ms,
                           method="exponential_euler", namespace=ns)
        Ce = b2.Synapses(P, P, on_pre="ge+=we", namespace=ns)
        Ci = b2.Synapses(P, P, on_pre="gi+=wi", namespace=ns)
        Ce.connect(i=exc[0], j=exc[1])
        Ci.connect(i=inh[0], j=inh[1])
        P.v = init["P.V"] * mV  # gates start at 0, as in the example
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
    return dict(first_call_s=first, wall_s=float(np.median(times)), device="CPU", **cobahh_stats(trains, n, t1))




def _brunel_stats(trains, n, t1):
    from brunel import regime  # scripts/brunel.py, on the path benchmark.py sets

    return regime(trains, n, 200.0, t1)


def case_brunel_hh_jax(dtype, seed, repeats, n=BRUNEL_N, t1=T1_MS):
    import jax

    jax.config.update("jax_enable_x64", dtype == "float64")
    import hh_jax as hh

    model = hh.presets.brunel(n=n, seed=seed)

    def run():
        return hh.simulate(model.network, None, t1=t1, dt=DT_MS, init=model.init, save=(), max_spikes=200).spikes["P"]

    sp, first, wall = timed(run, repeats)
    trains = [row[np.isfinite(row)] for row in np.asarray(sp.times)]
    return dict(first_call_s=first, wall_s=wall, device=str(jax.devices()[0].device_kind), **_brunel_stats(trains, n, t1))


def case_brunel_brian2(seed, repeats, target="cython", n=BRUNEL_N, t1=T1_MS):
    import brian2 as b2

    import hh_jax as hh

    model = hh.presets.brunel(n=n, seed=seed)
    net, init = model.network, model.init
    exc, inh = (net.projections[k] for k in ("exc", "inh"))
    ext = net.sources["ext"]
    b2.prefs.codegen.target = target
    mV, ms, nS = b2.mV, b2.ms, b2.nS
    ns = _traub_miles_namespace(b2, float(exc.weight) * _TO_NS, float(inh.weight) * _TO_NS)
    ns["w_ext"] = float(net.projections["in"].weight) * _TO_NS * nS
    state = {}

    def build():
        b2.start_scope()
        b2.defaultclock.dt = DT_MS * ms
        P = b2.NeuronGroup(n, model=b2.Equations(_TRAUB_MILES), threshold="v>-20*mV", refractory=3 * ms,
                           method="exponential_euler", namespace=ns)
        Ce = b2.Synapses(P, P, on_pre="ge+=we", delay=float(exc.delay) * ms, namespace=ns)
        Ci = b2.Synapses(P, P, on_pre="gi+=wi", delay=float(inh.delay) * ms, namespace=ns)
        Ce.connect(i=np.asarray(exc.pre_index), j=np.asarray(exc.post_index))
        Ci.connect(i=np.asarray(inh.pre_index), j=np.asarray(inh.post_index))
        drive = b2.PoissonInput(P, "ge", N=BRUNEL_INPUTS, rate=float(ext.rate) / BRUNEL_INPUTS * b2.Hz,
                                weight="w_ext")
        P.v = init["P.V"] * mV  # gates start at 0, conductances at 0, as in hh_jax
        monitor = b2.SpikeMonitor(P)
        state["net"] = b2.Network(P, Ce, Ci, drive, monitor)
        state["monitor"] = monitor
        b2.seed(seed)

    def run():
        build()  # not timed: only the simulation is
        start = time.perf_counter()
        state["net"].run(t1 * ms, namespace=ns)
        return time.perf_counter() - start

    first = run()
    times = [run() for _ in range(repeats)]
    trains = [np.asarray(v / ms) for v in state["monitor"].spike_trains().values()]
    return dict(first_call_s=first, wall_s=float(np.median(times)), device="CPU", **_brunel_stats(trains, n, t1))


def run_network_case(args) -> None:
    """Inside a case process: run the one case `args.case` = (tool, dtype, seed) of
    `args.models[0]`."""
    tool, dtype, seed = args.case[0], args.case[1], int(args.case[2])
    model = args.models[0]
    cases = {"brunel": (case_brunel_hh_jax, case_brunel_brian2), "cobahh": (case_cobahh_hh_jax, case_cobahh_brian2)}
    if tool == "hh_jax":
        result = cases[model][0](dtype, seed, args.repeats)
        result["setting"] = "fixed dt 0.1 ms, exponential Euler"
    else:
        result = cases[model][1](seed, args.repeats)
        result["setting"] = "cython, exponential Euler, dt 0.1 ms"
    result.update(model=model, tool=tool, dtype=dtype, seed=seed,
                  peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
    report_result(result)


def _run_cases(args, model) -> list:
    """Every (tool, dtype) of `model` on every seed in turn, each in its own process: their
    results (or errors)."""
    results = []
    brian2 = available("brian2")
    cases = [("hh_jax", d) for d in args.dtypes] + ([("brian2", "float64")] if brian2 else [])
    if not brian2:
        print("skipping Brian2: install the bench extra (pip install -e '.[bench]'; numpy < 2.3 on Python 3.11)")
    for seed in args.seeds:
        for tool, dtype in cases:
            r, stderr = spawn(["--network", "--models", model, "--case", tool, dtype, str(seed),
                               "--repeats", str(args.repeats if seed == args.seeds[0] else 1)])
            if r is None:
                print(f"{model} {tool} {dtype} seed {seed}: FAILED\n{stderr[-2000:]}")
                results.append(dict(tool=tool, dtype=dtype, seed=seed, error=stderr[-500:]))
                continue
            print(f"{model} {tool:7s} {dtype} seed {seed}: wall {r['wall_s']:.2f} s (first {r['first_call_s']:.1f} s)  "
                  f"rate {r['rate_hz']:.2f} Hz  ISI CV {r['isi_cv']:.3f}  peak {r['peak_rss_mb']:.0f} MB")
            results.append(r)
    return results


def brunel_main(args) -> dict:
    """The Brunel network: hh_jax (each dtype) and Brian2 on every seed, each in its own
    process; writes brunel.json and brunel.md into `args.out`."""
    from .report import machine, write_results

    results = _run_cases(args, "brunel")
    ok = [r for r in results if "error" not in r]
    brian = {r["seed"]: r for r in ok if r["tool"] == "brian2"}
    lines = [f"Brunel network (`hh.presets.brunel`, n = {BRUNEL_N}), {T1_MS:g} ms, dt {DT_MS} ms; rate and ISI CV "
             "after 200 ms; the same connectivity and initial values, Poisson input drawn by each tool.", "",
             "| tool | dtype | seed | wall (s) | ÷ Brian2 wall | rate (Hz) | rate ÷ Brian2 | ISI CV | synchrony |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in ok:
        b = brian.get(r["seed"])
        ratio = (lambda key: f"{r[key] / b[key]:.3f}") if b else (lambda key: "–")
        lines.append(f"| {r['tool']} | {r['dtype']} | {r['seed']} | {r['wall_s']:.2f} | {ratio('wall_s')} "
                     f"| {r['rate_hz']:.2f} | {ratio('rate_hz')} | {r['isi_cv']:.3f} | {r['synchrony']:.2f} |")
    payload = dict(machine=machine(), case=dict(model="brunel", n=BRUNEL_N, t1_ms=T1_MS, dt_ms=DT_MS), results=results)
    return write_results(args.out, "brunel", payload, "\n".join(lines) + "\n")


def network_main(args) -> dict:
    """Every (tool, dtype) on every seed in turn, each in its own process; writes
    network.json and network.md into `args.out`. With `--models brunel` (or both), the
    Brunel case too (`brunel_main`)."""
    from .report import machine, network_markdown, write_results

    if "brunel" in args.models:
        payload = brunel_main(args)
        if "cobahh" not in args.models:
            return payload

    results = _run_cases(args, "cobahh")
    payload = dict(machine=machine(), case=dict(model="COBAHH (Brette et al. 2007, benchmark 3)", n=N,
                                                t1_ms=T1_MS, dt_ms=DT_MS), results=results)
    return write_results(args.out, "network", payload, network_markdown(payload))
