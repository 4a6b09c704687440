"""Large batches of single neurons on one device (issue 14), `--gpu`: hh_jax and Jaxley on
whatever device JAX has (a GPU where there is one; on a CPU the same cases run as a check of
the script), each case in its own process.

Case: the benchmark's (NEURON's `hh`, 9 µA/cm² step 1-41 ms, 50 ms), N neurons, identical or
varied (`--populations`; varied: gNa and gK drawn uniformly from 80-160 and 25-45 mS/cm², as
in a parameter sweep, neuron 0 at the reference values), in three outputs: `V` (every 0.025 ms), `V1ms` (every 1 ms) and `spikes` (spike times only:
`hh.simulate_spikes`; for Jaxley, `hh.spike_times` of its trace, on the device).
Per case: first-call and median wall time, neuron·ms simulated per second, the device's peak
memory (`memory_stats`; the process' peak RSS where the device reports none), the spike-time
error of neuron 0 against NEURON (not for `V1ms`: 1 ms samples do not place spikes), and a
roofline line:

- bytes that must move: the three conductances in and the requested output out;
- arithmetic: evaluations of the HH vector field × XLA's count of floating-point operations
  for one evaluation over the N neurons (`cost_analysis()["flops"]`, about 110 per neuron,
  exponentials not counted; hh_jax: six per attempted step, Tsit5 being FSAL, the spikes-only
  case counted with the steps of the same solve saving two times; Jaxley: one per fixed
  step, counted with the same per-evaluation figure), a lower bound on the work done;
- the bound: max(bytes / bandwidth, arithmetic / peak rate) with the device's peaks (`PEAKS`,
  or --peak-bandwidth and --peak-flops), and the fraction bound / wall. Without known peaks
  (a CPU) the fraction is left out.

With shared steps (hh_jax's default) a varied batch takes every neuron's small steps: on a
varied population hh_jax finds spikes with per-neuron steps (`hh.Batching(per_neuron=True)`;
measured on 2 CPU cores at 2,000 neurons, float32: 133 against 197 ms shared), and saves V
with shared steps (per-neuron steps were 2x slower there: each neuron's save loop runs
inside the vmapped step loop).

N above --chunk-size runs in chunks of that many neurons (hh_jax's `hh.Batching(chunk_size=)`),
so that 10⁷ neurons fit in device memory; Jaxley runs it whole.

    python scripts/benchmark.py --gpu --out scripts/benchmark           # N = 1e3 ... 1e6
    python scripts/benchmark.py --gpu --sizes 100 1000 --repeats 2 --out /tmp/b   # a CPU check
"""

from __future__ import annotations

import json
import resource

import numpy as np

from .references import AMPLITUDE, DT_SAVE, START, STOP, T1, neuron_reference
from .report import machine, write_results
from .runner import available, report_result, spawn, timed
from .single import jaxley_run, spike_error

OUTPUTS = {"V": DT_SAVE, "V1ms": 1.0, "spikes": None}  # output → its sampling interval (ms)
MAX_SPIKES = 16  # spike times kept per neuron (the case fires 5)
# Device peaks for the roofline: copy bandwidth measured on this project's H200 machines
# (/work/.library/device/KINDS.md: 4.3 TB/s, datasheet 4.8) and the datasheet's plain
# (non-tensor-core) arithmetic rates.
PEAKS = {"NVIDIA H200": dict(bandwidth=4.3e12, flops=dict(float32=67e12, float64=34e12))}
DEFAULT_SIZES = [1_000, 10_000, 100_000, 1_000_000]
POPULATIONS = ("identical", "varied")


def conductances(population, n, dtype):
    """gNa, gK, gL (mS/cm²) of the n neurons: the reference values, or for a varied population
    gNa and gK drawn (seeded) with neuron 0 at the reference."""
    import jax.numpy as jnp

    g = [np.full(n, x) for x in (120.0, 36.0, 0.3)]
    if population == "varied":
        rng = np.random.default_rng(0)
        g[0][1:], g[1][1:] = rng.uniform(80.0, 160.0, n - 1), rng.uniform(25.0, 45.0, n - 1)
    return [jnp.asarray(x, dtype) for x in g]


def _device():
    import jax

    return jax.local_devices()[0]


def _peak_memory_mb() -> tuple[float, str]:
    stats = _device().memory_stats()
    if stats and "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2**20, "device"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "process RSS"


def _vector_field_flops(n, dtype) -> float:
    """XLA's count of floating-point operations in one evaluation of the HH vector field over
    n neurons."""
    import jax
    import jax.numpy as jnp

    import hh_jax as hh

    membrane = hh.presets.neuron(gNa=jnp.full((n,), 120.0, dtype))
    y0 = membrane.initial_state(None, (n,))
    cost = jax.jit(lambda y: membrane.derivatives(y, 0.0)).lower(y0).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan")))


def case_batch(tool, output, population, n, dtype, repeats, reference, rtol, chunk_size):
    """One case inside its own process."""
    import jax

    jax.config.update("jax_enable_x64", dtype == "float64")
    import jax.numpy as jnp

    import hh_jax as hh

    g = conductances(population, n, dtype)
    itemsize = jnp.dtype(dtype).itemsize
    sample_dt = OUTPUTS[output]
    saved = (n * MAX_SPIKES * itemsize + n * 4) if sample_dt is None else n * (int(round(T1 / sample_dt)) + 1) * itemsize
    moved = 3 * n * itemsize + saved
    if tool == "hh_jax":
        stimulus = hh.Step(start=START, stop=STOP, amplitude=AMPLITUDE)
        chunked = n > chunk_size
        per_neuron = population == "varied" and sample_dt is None
        batching = hh.Batching(chunk_size=chunk_size if chunked else None, per_neuron=per_neuron)

        def run(gNa, gK, gL):
            p = hh.presets.neuron(gNa=gNa, gK=gK, gL=gL)
            opts = dict(t1=T1, rtol=rtol, atol=rtol, batching=batching)
            if sample_dt is None:
                sp = hh.simulate_spikes(p, stimulus, max_spikes=MAX_SPIKES, **opts)
                return sp.times, sp.counts
            tr = hh.simulate(p, stimulus, ts=jnp.linspace(0.0, T1, int(round(T1 / sample_dt)) + 1), save="V", **opts)
            return tr.V, tr.num_steps

        def run_steps(gNa, gK, gL, ts):
            p = hh.presets.neuron(gNa=gNa, gK=gK, gL=gL)
            return hh.simulate(p, stimulus, t1=T1, ts=ts, save="V", rtol=rtol, atol=rtol, batching=batching).num_steps

        forward = run if chunked else jax.jit(run)  # chunks are a host loop over compiled chunks
        out, first, wall = timed(lambda: forward(*g), repeats, summarize=lambda o: jax.tree_util.tree_map(np.asarray, o))
        if sample_dt is None:
            times = out[0][0]
            error = float(np.max(np.abs(times[: len(reference)] - np.asarray(reference))))
            # `simulate_spikes` reports no step count: that of the same solve saving two times
            # (the same steps: saving does not choose them).
            ends = jnp.asarray([0.0, T1])
            count = lambda *g: run_steps(*g, ends)  # noqa: E731
            steps = int(np.max(np.asarray((count if chunked else jax.jit(count))(*g))))
        else:
            error = spike_error(np.linspace(0.0, T1, out[0].shape[-1]), out[0][0], reference) if output == "V" else None
            steps = int(np.max(out[1]))
        evaluations = None if steps is None else 6 * steps
        setting = (f"UnrolledTsit5, PID rtol=atol={rtol:g}" + (", per-neuron steps" if per_neuron else "")
                   + (f", chunks of {chunk_size}" if chunked else ""))
    else:
        solver = tool.split(":")[1]
        single = jaxley_run(solver)
        t = jnp.arange(int(round(T1 / DT_SAVE)) + 1) * DT_SAVE

        def run(gNa, gK, gL):
            V = jax.vmap(single)(gNa, gK, gL)
            V = V[..., : t.size]
            if sample_dt is None:  # located as hh_jax locates them (`hh.spike_times`)
                return hh.spike_times(t, V, 0.0, max_spikes=MAX_SPIKES)[0]
            return V[..., :: int(round(sample_dt / DT_SAVE))]

        out, first, wall = timed(lambda: jax.jit(run)(*g), repeats, summarize=lambda o: np.asarray(o))
        if sample_dt is None:
            error = float(np.max(np.abs(out[0][: len(reference)] - np.asarray(reference))))
        else:
            error = spike_error(np.asarray(t), out[0], reference) if output == "V" else None
        steps = int(round(T1 / DT_SAVE))
        evaluations = steps
        setting = f"{solver}, dt {DT_SAVE} ms"
    flops = None if evaluations is None else evaluations * _vector_field_flops(n, dtype)
    memory_mb, memory_kind = _peak_memory_mb()
    return dict(tool=tool.split(":")[0], setting=setting, dtype=dtype, n=n, output=output, population=population, first_call_s=first,
                wall_s=wall, neuron_ms_per_s=n * T1 / wall, peak_memory_mb=memory_mb, memory_kind=memory_kind,
                spike_error_ms=error, steps=steps, bytes=moved, flops=flops, device=str(_device().device_kind))


def run_batch_case(args) -> None:
    """Inside a case process: `args.case` = ("batch|<tool>|<output>|<population>", dtype, N)."""
    _, tool, output, population = args.case[0].split("|")
    reference = json.loads(args.reference)
    report_result(case_batch(tool, output, population, int(args.case[2]), args.case[1], args.repeats, reference,
                             args.rtol[0], args.chunk_size))


def roofline(result, bandwidth, flops_rate):
    """The case's bound (s) from the bytes and arithmetic it must do, and the fraction of it
    reached; None where a peak is unknown."""
    if bandwidth is None or flops_rate is None:
        return None, None
    bound = max(result["bytes"] / bandwidth, (result["flops"] or 0.0) / flops_rate)
    return bound, bound / result["wall_s"]


def _table(payload) -> str:
    head = ("| tool | setting | dtype | N | neurons | output | wall (s) | first call (s) | neuron·ms/s | peak memory (MB) | "
            "spike error (ms) | steps | bytes moved | GFLOP | roofline bound (s) | of the bound |")
    m = payload["machine"]
    lines = [f"Machine: {m['processor']}, {m['cpu_count']} cores, {m['platform']}, Python {m['python']}, "
             f"JAX {m['jax']} on {m['device']} ({payload['device']}); {m['date']}.",
             f"Case: NEURON hh, {AMPLITUDE} µA/cm² step {START}-{STOP} ms, {T1} ms; N neurons, identical or varied "
             f"(gNa 80-160, gK 25-45 mS/cm²). "
             f"Peaks: {payload['peaks']}.", "", head, "|" + " --- |" * 2 + " ---: |" * 14]

    def fmt(x, spec):
        return "—" if x is None else format(x, spec)

    for r in payload["results"]:
        lines.append(f"| {r['tool']} | {r['setting']} | {r['dtype']} | {r['n']} | {r.get('population', 'identical')} | {r['output']} | {r['wall_s']:.4g} | "
                     f"{r['first_call_s']:.2f} | {r['neuron_ms_per_s']:.3g} | {r['peak_memory_mb']:.0f} ({r['memory_kind']}) | "
                     f"{fmt(r['spike_error_ms'], '.2g')} | {fmt(r['steps'], 'd')} | {r['bytes']:.3g} | "
                     f"{fmt(None if r['flops'] is None else r['flops'] / 1e9, '.3g')} | {fmt(r['bound_s'], '.3g')} | "
                     f"{fmt(None if r['fraction'] is None else 100 * r['fraction'], '.1f')}{'' if r['fraction'] is None else ' %'} |")
    return "\n".join(lines) + "\n"


def gpu_main(args, argv_given) -> dict:
    """Every (dtype, N, output, tool) case in turn, each in its own process; writes gpu.json
    and gpu.md to args.out."""
    sizes = args.sizes if "--sizes" in argv_given else DEFAULT_SIZES
    reference, label = neuron_reference()
    tools = ["hh_jax"] + [t for t in args.tools if t.startswith("jaxley") and available("jaxley")]
    results, device = [], None
    for dtype in args.dtypes:
        for n in sizes:
            for output in args.outputs:
                for population in args.populations:
                    for tool in tools:
                        case = [f"batch|{tool}|{output}|{population}", dtype, str(n)]
                        result, err = spawn(["--gpu", "--case", *case, "--reference", json.dumps(reference),
                                             "--repeats", str(args.repeats), "--rtol", str(args.rtol[0]),
                                             "--chunk-size", str(args.chunk_size)])
                        if result is None:
                            print(f"{case}: failed\n{err[-2000:]}")
                            continue
                        device = result["device"]
                        peaks = PEAKS.get(device, {})
                        bandwidth = args.peak_bandwidth or peaks.get("bandwidth")
                        rate = args.peak_flops or peaks.get("flops", {}).get(dtype)
                        result["bound_s"], result["fraction"] = roofline(result, bandwidth, rate)
                        results.append(result)
                        print(json.dumps({k: result[k] for k in ("tool", "dtype", "n", "population", "output", "wall_s", "fraction")}))
    peaks = dict(PEAKS.get(device, {}), **{k: v for k, v in (("bandwidth", args.peak_bandwidth),
                                                                 ("flops", args.peak_flops)) if v})
    payload = dict(machine=machine(), device=device, peaks=peaks or "unknown (no roofline fraction)",
                   reference=dict(label=label, spike_times_ms=reference), results=results)
    return write_results(args.out, "gpu", payload, _table(payload))
