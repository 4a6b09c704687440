"""The command line's commands: simulate, fit, demo and bench, each a function of the parsed
arguments. Every output is checked before the work starts and written atomically; figures
come from `hh_jax.plotting`."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

from ._atomic import atomic_path
from ._cli_parse import (
    CLIError,
    assignments,
    bounds,
    columns,
    load_config,
    preset_membrane,
    stimulus_specs,
    sum_stimuli,
)
from ._fit._spaces import fittable_names

CHECKPOINT = "fit_checkpoint.json"  # hh-jax fit's resumable progress, inside --out


# ----------------------------------------------------------------------- outputs


def check_outputs(paths, overwrite):
    """Before any work: refuse to replace existing outputs (unless `overwrite`), and make
    sure their folders can be created and written."""
    for path in paths:
        if path.is_dir():
            raise CLIError(f"output {path} is a folder, not a file")
        if path.exists() and not overwrite:
            raise CLIError(f"output {path} exists; pass --overwrite to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(path.parent, os.W_OK):
            raise CLIError(f"cannot write to {path.parent}")


def output_folder(folder, names, overwrite):
    """An output folder (created now) and its files, checked as `check_outputs` does."""
    folder = pathlib.Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CLIError(f"--out {folder} is a file; the results go into a folder")
    paths = [folder / name for name in names]
    check_outputs(paths, overwrite)
    return paths


def resume_from(checkpoint, resume, overwrite, load=None):
    """The checkpointed fit to continue (--resume), as `load(checkpoint)` returns it (default
    `hh.FitResult.load`), or None to start afresh; a checkpoint left by an interrupted fit is
    never replaced silently."""
    import hh_jax as hh

    if resume:
        if not checkpoint.exists():
            raise CLIError(f"--resume: no checkpoint {checkpoint} to continue")
        return (load or hh.FitResult.load)(checkpoint)
    if checkpoint.exists() and not overwrite:
        raise CLIError(
            f"{checkpoint} holds an interrupted fit; pass --resume to continue it or --overwrite to start afresh"
        )
    return None


def check_figure_format(path):
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix.lstrip(".").lower() not in formats:
        raise CLIError(f"--plot must end in one of {', '.join('.' + f for f in sorted(formats))}, got {path.name!r}")


def _pyplot():
    """pyplot on the non-interactive backend: the command line only writes files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ----------------------------------------------------------------------- commands


def simulate(args):
    import jax
    import jax.numpy as jnp
    import numpy as np

    import hh_jax as hh

    from ._validation import check_memory

    config = load_config(args.config) if args.config else {}
    preset = args.preset or config.get("preset", "hh1952")
    params = {**config.get("parameters", {}), **assignments(args.set)}
    t1 = args.t1 if args.t1 is not None else config.get("t1", 50.0)
    dt = args.dt if args.dt is not None else config.get("dt", 0.025)
    v0 = args.v0 if args.v0 is not None else config.get("v0")
    rtol = args.rtol if args.rtol is not None else config.get("rtol", 1e-6)
    if not t1 > 0:
        raise CLIError(f"--t1 must be a positive duration (ms), got {t1}")
    if not dt > 0 or dt > t1:
        raise CLIError(f"--dt must be a positive sampling interval (ms) below t1, got {dt}")
    out = pathlib.Path(args.out)
    if out.suffix not in (".npz", ".csv"):
        raise CLIError(f"--out must end in .npz or .csv, got {out.name!r}")
    if args.plot:
        check_figure_format(pathlib.Path(args.plot))
    check_outputs([out] + ([pathlib.Path(args.plot)] if args.plot else []), args.overwrite)
    membrane = preset_membrane(preset, params)
    stimulus = sum_stimuli(stimulus_specs(args.stimulus) + config.get("stimulus", []))
    n = int(round(t1 / dt)) + 1
    check_memory("--t1/--dt", f"an output of {n:,} samples of t, V and I", (n, 3), 8, "use a larger --dt or a shorter --t1")
    ts = jnp.linspace(0.0, t1, n)
    tr = hh.simulate(membrane, stimulus, t1=t1, ts=ts, v0=v0, rtol=rtol, atol=rtol, save="V",
                     max_steps=args.max_steps)
    current = np.zeros(n) if stimulus is None else np.asarray(jax.vmap(stimulus)(ts))
    t, V = np.asarray(tr.t), np.asarray(tr.V)
    with atomic_path(out) as tmp:
        if out.suffix == ".npz":
            np.savez(tmp, t=t, V=V, I=current, t_unit="ms", V_unit="mV", I_unit="µA/cm²",
                     preset=preset, parameters=json.dumps(params))
        else:
            np.savetxt(tmp, np.column_stack([t, V, current]), delimiter=",", header="t,V,I", comments="")
    spikes = hh.spike_times(t, V, threshold=float(membrane.spike_threshold()))
    print(f"{preset} model, {t1:g} ms: {len(spikes)} spikes at {np.round(spikes, 3).tolist()} ms")
    print(f"wrote {out} (t in ms, V in mV, I in µA/cm²)")
    if args.plot:
        _pyplot()
        ax = hh.plotting.plot_voltage(tr) if stimulus is None else hh.plotting.plot_trace(tr, stimulus)[0]
        with atomic_path(pathlib.Path(args.plot)) as tmp:
            hh.plotting.save_figure(ax.figure, tmp)
        print(f"wrote {args.plot}")


def _load_recording(args, path):
    import hh_jax as hh

    if not path.exists():
        raise CLIError(f"no such trace file: {path}")
    return hh.load_trace(path, time_unit=args.time_unit, voltage_unit=args.voltage_unit,
                         current_unit=args.current_unit, area_cm2=args.area, junction_mV=args.junction,
                         columns=columns(getattr(args, "columns", None)))


def fit(args):
    """`hh-jax fit`: with --model, a recorded cell's features (`fit_recording`); else the
    trace itself by `hh.fit`."""
    if getattr(args, "model", None) is not None:
        return fit_recording(args)
    return fit_trace(args)


def fit_recording(args):
    """Fit a recorded cell's features with `hh.fit_recording`; writes fit.json (the result,
    written first, so a failing figure loses nothing) and fit.png. The progress is kept in
    --out/fit_checkpoint.json while the fit runs; --resume continues from it."""
    import hh_jax as hh

    free = None if args.free is None else tuple(x.strip() for x in args.free.split(",") if x.strip())
    options = {} if args.features is None else {"features": args.features}
    json_path, png_path = output_folder(args.out, ("fit.json", "fit.png"), args.overwrite)
    checkpoint = pathlib.Path(args.out) / CHECKPOINT
    resume = resume_from(checkpoint, args.resume, args.overwrite, load=lambda path: path)
    rec = _load_recording(args, pathlib.Path(args.trace))
    if rec.I is None:
        raise CLIError(f"{pathlib.Path(args.trace).name} has no current trace; the fit needs the stimulus")
    model = preset_membrane(args.model, assignments(args.set))
    try:
        result = hh.fit_recording(rec, model, free=free, **options, bounds=bounds(args.bound) or None,
                                  threshold=args.threshold, candidates=args.candidates, starts=args.starts or 4,
                                  iterations=args.iterations, seed=args.seed, progress=not args.no_progress,
                                  checkpoint=checkpoint, resume=resume)
    except hh.FitInterrupted:
        raise KeyboardInterrupt(
            f"the progress is saved in {checkpoint}; run the same command with --resume to continue"
        ) from None
    payload = dict(result.to_dict(), recording=str(args.trace), wall_time_s=result.wall_time["total"])
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2))
    print(f"wrote {json_path}")
    print(f"{'feature':12s} {'recorded':>10s} {'fitted':>10s}  within")
    for k in result.features:
        print(f"{k:12s} {result.recorded[k]:10.4g} {result.fitted[k]:10.4g}  {'yes' if result.within[k] else 'NO'}")
    print("fitted " + ", ".join(f"{k} = {v:.5g} ± {result.stderr[k]:.2g}" if k in result.stderr else f"{k} = {v:.5g}"
                                for k, v in result.parameters.items()))
    print(f"{result.wall_time['total']:.1f} s (search {result.wall_time['search']:.1f} s, "
          f"refinement {result.wall_time['refine']:.1f} s)")
    fig, ax = _pyplot().subplots(figsize=(12, 3.8))
    hh.plotting.plot_fit(result.trace, rec.t, rec.V, ax=ax, data_label="recorded",
                         fit_label=f"fitted {type(result.membrane).__name__} model")
    with atomic_path(png_path) as tmp:
        hh.plotting.save_figure(fig, tmp)
    print(f"wrote {png_path}")
    checkpoint.unlink(missing_ok=True)  # the finished result is in fit.json
    missed = [k for k in result.features if not result.within[k]]
    if missed:
        print(f"not within tolerance: {', '.join(missed)} (see {json_path})")


def fit_trace(args):
    import jax.numpy as jnp
    import numpy as np

    import hh_jax as hh

    init = preset_membrane(args.preset, assignments(args.set))
    args.starts = 8 if args.starts is None else args.starts
    free = tuple(x.strip() for x in (args.free or "gNa,gK,gL").split(",") if x.strip())
    fittable = fittable_names(init)
    unknown = [n for n in free if n not in fittable]
    if unknown or not free:
        raise CLIError(f"unknown parameter(s) {unknown} in --free; expected names from {list(fittable)}")
    path = pathlib.Path(args.trace)
    if not path.exists():
        raise CLIError(f"no such trace file: {path}")
    # Every file the command writes is named here, so each is checked before the fit runs.
    json_path, result_path, png_path = output_folder(args.out, ("fit.json", "fit_result.json", "fit.png"), args.overwrite)
    checkpoint = pathlib.Path(args.out) / CHECKPOINT
    resume = resume_from(checkpoint, args.resume, args.overwrite)
    rec = _load_recording(args, path)
    if rec.I is None:
        raise CLIError(f"{path.name} has no current trace; the fit needs the stimulus")
    stimulus = rec.stimulus(args.stimulus_from)
    target = hh.Target(stimulus=stimulus, ts=rec.t, V=rec.V, v0=float(rec.V[0]))
    try:
        res = hh.fit(init, target, free=free, n_starts=args.starts, steps=args.steps, seed=args.seed,
                     progress=not args.no_progress, checkpoint=checkpoint, resume=resume)
    except hh.FitInterrupted:
        raise KeyboardInterrupt(
            f"the progress is saved in {checkpoint}; run the same command with --resume to continue"
        ) from None
    if np.all(res.failed):
        raise CLIError(
            f"every one of the {args.starts} starts failed (the loss or its gradient became "
            "non-finite); check the units of the trace, the preset and --set, or try more --starts"
        )
    params = {k: float(getattr(res.params, k)) for k in free}
    payload = dict(parameters=params, stderr=res.stderr, loss=res.loss, noise_sigma_mV=res.noise_sigma,
                   correlation=np.asarray(res.correlation).tolist(), free=list(free), preset=args.preset,
                   n_starts=args.starts, failed_starts=int(res.failed.sum()), wall_time_s=res.wall_time)
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2))
    res.save(result_path)  # written atomically
    print(f"fitted {', '.join(f'{k} = {v:.5g} ± {res.stderr[k]:.2g}' for k, v in params.items())}")
    print(f"loss {res.loss:.4g} mV², residual SD {res.noise_sigma:.3g} mV, {res.wall_time:.1f} s")
    tr = hh.simulate(res.params, stimulus, t0=float(rec.t[0]), t1=float(rec.t[-1]), ts=jnp.asarray(rec.t),
                     v0=float(rec.V[0]))
    fig, ax = _pyplot().subplots(figsize=(9, 3.5))
    hh.plotting.plot_fit(tr, rec.t, rec.V, ax=ax)
    with atomic_path(png_path) as tmp:
        hh.plotting.save_figure(fig, tmp)
    checkpoint.unlink(missing_ok=True)  # the finished result is in fit_result.json
    print(f"wrote {json_path}, {result_path} and {png_path}")


def demo(args):
    import jax.numpy as jnp
    import numpy as np

    import hh_jax as hh

    figures = ("stimulus.png", "voltage.png", "phase_plane.png", "fit.png")
    out = output_folder(args.out, figures, args.overwrite)[0].parent
    plt = _pyplot()

    # 1. The gist: two pulses into the squid-axon model, three figures.
    p = hh.presets.hh1952()
    gist = hh.Pulse(start=0.0, stop=1.0, amplitude=150.0) + hh.Pulse(start=10.0, stop=11.0, amplitude=50.0)
    tr = hh.simulate(p, gist, t1=50.0, ts=jnp.linspace(0.0, 50.0, 5001))
    spikes = hh.spike_times(tr.t, tr.V, threshold=50.0)
    hh.plotting.save_trace_figures(tr, gist, out, spikes=spikes)
    print(f"the gist: spikes at {np.round(spikes, 4).tolist()} ms; wrote stimulus.png, voltage.png, phase_plane.png")

    # 2. Fit conductances to a built-in synthetic noisy trace.
    truth = dict(gNa=100.0, gK=40.0, gL=0.25)
    ts = np.linspace(0.0, 50.0, 2001)
    rng = np.random.default_rng(0)
    targets = []
    for stim in (gist, hh.Step(start=5.0, stop=45.0, amplitude=10.0)):
        clean = np.asarray(hh.simulate(hh.presets.hh1952(**truth), stim, t1=50.0, ts=jnp.asarray(ts)).V)
        targets.append(hh.Target(stimulus=stim, ts=ts, V=clean + rng.normal(0.0, 1.0, ts.size)))
    res = hh.fit(p, targets, free=tuple(truth), n_starts=args.starts, steps=args.steps,
                 progress=not args.no_progress)
    print(f"fit of gNa, gK, gL to two noisy (σ = 1 mV) traces from {args.starts} starts in {res.wall_time:.0f} s:")
    for k, v in truth.items():
        est = float(getattr(res.params, k))
        print(f"  {k}: truth {v:g}, fitted {est:.4g} ± {res.stderr[k]:.2g} mS/cm²")
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    for ax, target in zip(axes, targets):
        fitted = hh.simulate(res.params, target.stimulus, t1=50.0, ts=target.ts)
        hh.plotting.plot_fit(fitted, target.ts, target.V, ax=ax, markers=True, data_label="synthetic data")
    hh.plotting.save_figure(fig, out / "fit.png")
    print(f"wrote {out / 'fit.png'}")


def bench(args):
    script = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"
    if not script.exists():
        raise CLIError("bench runs scripts/benchmark.py from a source checkout of hh_jax; none found")
    return subprocess.call([sys.executable, str(script), *args.rest])
