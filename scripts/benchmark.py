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
    python scripts/benchmark.py --network --models brunel --seeds 0 --out scripts/benchmark

With `--models brunel` (default: both) the Brunel (2000)-style E/I network of
`hh.presets.brunel` (2000 HH neurons, 1.5 ms delays, Poisson drive) runs in both tools the
same way, writing brunel.json and brunel.md: rates, ISI CV and the wall ratio.

Fits (issue 13), `--fits`: `scripts/fit_recovery.py` cold (a fresh process and an empty
compilation cache) and warm (a second process reading the cache), --repeats times each, and
`scripts/fit_allen.py` cold: the fit's and the process's wall time, with the fit's quality.
Written to fits.json and fits.md.

    python scripts/benchmark.py --fits --repeats 3 --out scripts/benchmark

Large batches on one device (issue 14), `--gpu`: hh_jax and Jaxley at N = 10³ ... 10⁶ in
three outputs (V every 0.025 ms, every 1 ms, spikes only), with peak device memory and a
roofline line per case (see scripts/bench/batch.py). On a CPU it runs as a check.

    python scripts/benchmark.py --gpu --out scripts/benchmark

This file is the entry point (its command line, and what each case process runs); the work is
in scripts/bench/: `references` (the case and NEURON's spike times), `runner` (a process per
case), `single` (hh_jax, Jaxley, odeint), `network` (COBAHH, Brian2), `fits` (the fit scripts), `batch` (large batches on one device, --gpu) and `report` (tables).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # scripts/bench, however this is run

from bench.batch import gpu_main, run_batch_case  # noqa: E402
from bench.fits import fits_main  # noqa: E402
from bench.network import network_main, run_network_case  # noqa: E402
from bench.references import AMPLITUDE, DT_SAVE, START, STOP, T1, neuron_reference  # noqa: E402
from bench.report import machine, markdown, write_results  # noqa: E402
from bench.single import run_all, run_case  # noqa: E402


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
    parser.add_argument("--models", nargs="+", default=["cobahh", "brunel"], choices=["cobahh", "brunel"],
                        help="networks for --network: COBAHH and/or the Brunel E/I network (issue 18)")
    parser.add_argument("--fits", action="store_true",
                        help="time the fit scripts (fit_recovery cold and warm, fit_allen cold) instead")
    parser.add_argument("--gpu", action="store_true",
                        help="large batches of single neurons on JAX's device (issue 14): three outputs, roofline "
                             "(default --sizes 1000 10000 100000 1000000); writes gpu.json and gpu.md")
    parser.add_argument("--outputs", nargs="+", choices=["V", "V1ms", "spikes"], default=["V", "V1ms", "spikes"],
                        help="--gpu: V every 0.025 ms, V every 1 ms, spike times only (default all three)")
    parser.add_argument("--populations", nargs="+", choices=["identical", "varied"], default=["identical", "varied"],
                        help="--gpu: identical neurons, or gNa and gK varied as in a parameter sweep (default both)")
    parser.add_argument("--peak-bandwidth", type=float, help="--gpu: the device's memory bandwidth (bytes/s) for the roofline")
    parser.add_argument("--peak-flops", type=float, help="--gpu: the device's arithmetic rate (FLOP/s) for the roofline")
    parser.add_argument("--case", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.network:
        if args.case:
            return run_network_case(args)
        if "--repeats" not in (argv if argv is not None else sys.argv):
            args.repeats = 3
        return network_main(args)
    if args.gpu:
        if args.case:
            return run_batch_case(args)
        return gpu_main(args, argv if argv is not None else sys.argv)
    if args.case:
        return run_case(args)
    if args.fits:
        if "--repeats" not in (argv if argv is not None else sys.argv):
            args.repeats = 3
        return fits_main(args)

    reference, reference_label = neuron_reference()
    print(f"reference spike times ({reference_label}): {[round(s, 5) for s in reference]}")
    results = run_all(args, reference)
    payload = dict(machine=machine(), reference=dict(label=reference_label, spike_times_ms=reference),
                   case=dict(model="NEURON hh, 6.3 °C", stimulus=f"{AMPLITUDE} µA/cm² step {START}-{STOP} ms",
                             t1_ms=T1, save_every_ms=DT_SAVE), results=results)
    return write_results(args.out, "benchmark", payload, markdown(payload))


if __name__ == "__main__":
    main()
