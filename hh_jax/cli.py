"""The `hh-jax` command line: demo, simulate, fit, bench.

    hh-jax demo --out figures
    hh-jax simulate --preset seed --set gNa=100 --stimulus step:start=5,stop=45,amplitude=10 --t1 50 --out trace.npz
    hh-jax fit trace.npz --preset seed --free gNa,gK,gL --out fit
    hh-jax bench --quick

Units everywhere: ms, mV, µA/cm², mS/cm². Each command computes in float64, switched on for
the command's duration only (JAX's global configuration is left as it was).

The contract: every failure (bad input, a solver failure, a damaged file, a request too big
for memory) ends with one line on stderr and exit status 2, never a traceback; an interrupt
(Ctrl-C) ends with one line and status 130. Numbers must be finite, config files may hold
only the documented keys, and outputs are checked before any work: an existing output is
replaced only with `--overwrite`, through a temporary file renamed into place. `fit` keeps
its progress in `<out>/fit_checkpoint.json`; `--resume` continues an interrupted fit.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import subprocess
import sys

from ._atomic import atomic_path

_PRESETS = ("seed", "neuron", "pospischil")
_STIMULI = {
    "pulse": ("Pulse", ("start", "stop", "amplitude")),
    "step": ("Step", ("start", "stop", "amplitude")),
    "train": ("PulseTrain", ("start", "width", "amplitude", "count", "period", "frequency")),
    "ramp": ("Ramp", ("start", "stop", "start_amplitude", "stop_amplitude")),
    "sine": ("Sine", ("amplitude", "frequency", "offset", "phase", "start", "stop")),
}


_CONFIG_NUMBERS = ("t1", "dt", "v0", "rtol")
_CONFIG_KEYS = ("preset", *_CONFIG_NUMBERS, "parameters", "stimulus")


class CLIError(Exception):
    """Bad command-line input: reported in one line, no traceback."""


def main(argv=None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as err:
        return _fail(err.prog, str(err))
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        import hh_jax as hh

        hh.use_compilation_cache()  # a repeated command skips compilation (this process only)
        with _float64():
            return args.run(args) or 0
    except KeyboardInterrupt as stop:
        print(f"hh-jax {args.command}: interrupted{f'; {_one_line(stop)}' if str(stop) else ''}", file=sys.stderr)
        return 130
    except Exception as err:  # the contract: one line, never a traceback
        # Refusals, solver failures (hh.SolverError and XLA's runtime errors are RuntimeErrors)
        # and file errors speak for themselves; anything else is named by its type.
        known = isinstance(err, (CLIError, ValueError, TypeError, OSError, KeyError, RuntimeError))
        return _fail(f"hh-jax {args.command}", _one_line(err) if known else f"{type(err).__name__}: {_one_line(err)}")


def _fail(prog, message) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def _one_line(err) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


class _UsageError(Exception):
    def __init__(self, prog, message):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage block) and exit status 2."""

    def error(self, message):
        raise _UsageError(self.prog, message)


def _float64():
    """float64 for the duration of the command, restored afterwards (a scoped switch, not a
    change of JAX's global configuration)."""
    import jax

    scoped = getattr(jax, "enable_x64", None)
    if scoped is None:  # older JAX
        from jax.experimental import enable_x64 as scoped
    return scoped(True)


# ----------------------------------------------------------------------- parsing helpers


def _number(text, what):
    """A finite float from a command-line or config value (refuses inf, nan, 1e400, text)."""
    if isinstance(text, bool):
        raise CLIError(f"{what} must be a number, got {text!r}")
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise CLIError(f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise CLIError(f"{what} must be a finite number, got {text!r}")
    return value


def _finite(text):
    """argparse type: a finite float."""
    try:
        return _number(text, "value")
    except CLIError as err:
        raise argparse.ArgumentTypeError(str(err).replace("value ", "")) from None


def _int_at_least(minimum):
    """argparse type: an integer >= `minimum`."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
        return value

    return parse


_positive_int, _nonnegative_int = _int_at_least(1), _int_at_least(0)


def _preset(name, overrides):
    import hh_jax as hh

    if name not in _PRESETS:
        raise CLIError(f"unknown preset {name!r}; expected one of {', '.join(_PRESETS)}")
    return getattr(hh.presets, name)(**overrides)


def _assignments(items, what="--set"):
    out = {}
    for item in items or ():
        for part in item.split(","):
            if "=" not in part:
                raise CLIError(f"{what} expects NAME=VALUE, got {part!r}")
            key, value = part.split("=", 1)
            out[key.strip()] = _number(value, f"{what}: {key.strip()}")
    return out


def _stimulus_specs(specs):
    """`kind:key=value,...` strings as (kind, {key: number}) terms."""
    terms = []
    for spec in specs or ():
        kind, _, rest = spec.partition(":")
        terms.append((kind, _assignments([rest] if rest else [], what=f"--stimulus {kind}")))
    return terms


def _stimulus(terms, where="--stimulus"):
    """(kind, {field: number}) terms, summed; e.g. ("step", {"start": 5, "amplitude": 10})."""
    import hh_jax as hh

    total = None
    for kind, kwargs in terms:
        if kind not in _STIMULI:
            raise CLIError(f"{where}: unknown stimulus {kind!r}; expected one of {', '.join(_STIMULI)}")
        cls_name, allowed = _STIMULI[kind]
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown:
            raise CLIError(f"{where} {kind}: unknown field(s) {unknown}; expected any of {list(allowed)}")
        if "count" in kwargs:
            if not float(kwargs["count"]).is_integer():
                raise CLIError(f"{where} {kind}: count must be a whole number of pulses, got {kwargs['count']}")
            kwargs = {**kwargs, "count": int(kwargs["count"])}
        term = getattr(hh, cls_name)(**kwargs)
        total = term if total is None else total + term
    return total


def _load_config(path):
    """A TOML run description, strictly checked: only the documented keys, numbers where
    numbers belong (finite), one table of parameters and a list of stimulus tables."""
    import tomllib

    try:
        with open(path, "rb") as fh:
            config = tomllib.load(fh)
    except FileNotFoundError:
        raise CLIError(f"no such config file: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise CLIError(f"{path}: not valid TOML ({err})") from None
    unknown = sorted(set(config) - set(_CONFIG_KEYS))
    if unknown:
        raise CLIError(f"{path}: unknown key(s) {unknown}; expected any of {list(_CONFIG_KEYS)}")
    if not isinstance(config.get("preset", ""), str):
        raise CLIError(f"{path}: preset must be a name such as \"seed\", got {config['preset']!r}")
    for key in _CONFIG_NUMBERS:
        if key in config:
            config[key] = _number(config[key], f"{path}: {key}")
    parameters = config.get("parameters", {})
    if not isinstance(parameters, dict):
        raise CLIError(f"{path}: [parameters] must be a table of NAME = number")
    config["parameters"] = {k: _number(v, f"{path}: parameters.{k}") for k, v in parameters.items()}
    stimuli = config.get("stimulus", [])
    if not (isinstance(stimuli, list) and all(isinstance(s, dict) for s in stimuli)):
        raise CLIError(f"{path}: stimulus must be [[stimulus]] tables with kind = \"...\"")
    terms = []
    for s in stimuli:
        if s.get("kind") not in _STIMULI:
            raise CLIError(f"{path}: every [[stimulus]] needs kind = one of {', '.join(_STIMULI)}, got {s.get('kind')!r}")
        fields = {k: _number(v, f"{path}: stimulus {s['kind']}.{k}") for k, v in s.items() if k != "kind"}
        terms.append((s["kind"], fields))
    config["stimulus"] = terms
    return config


# ----------------------------------------------------------------------- outputs


def _check_outputs(paths, overwrite):
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


def _output_folder(folder, names, overwrite):
    """An output folder (created now) and its files, checked as `_check_outputs` does."""
    folder = pathlib.Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CLIError(f"--out {folder} is a file; the results go into a folder")
    paths = [folder / name for name in names]
    _check_outputs(paths, overwrite)
    return paths


_CHECKPOINT = "fit_checkpoint.json"  # hh-jax fit's resumable progress, inside --out


def _resume_from(checkpoint, resume, overwrite):
    """The checkpointed fit to continue (--resume), or None to start afresh; a checkpoint left
    by an interrupted fit is never replaced silently."""
    import hh_jax as hh

    if resume:
        if not checkpoint.exists():
            raise CLIError(f"--resume: no checkpoint {checkpoint} to continue")
        return hh.FitResult.load(checkpoint)
    if checkpoint.exists() and not overwrite:
        raise CLIError(
            f"{checkpoint} holds an interrupted fit; pass --resume to continue it or --overwrite to start afresh"
        )
    return None


def _check_figure_format(path):
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix.lstrip(".").lower() not in formats:
        raise CLIError(f"--plot must end in one of {', '.join('.' + f for f in sorted(formats))}, got {path.name!r}")


# ----------------------------------------------------------------------- commands


def _simulate(args):
    import jax
    import jax.numpy as jnp
    import numpy as np

    import hh_jax as hh

    from hh_jax._validation import check_memory

    config = _load_config(args.config) if args.config else {}
    preset = args.preset or config.get("preset", "seed")
    params = {**config.get("parameters", {}), **_assignments(args.set)}
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
        _check_figure_format(pathlib.Path(args.plot))
    _check_outputs([out] + ([pathlib.Path(args.plot)] if args.plot else []), args.overwrite)
    membrane = _preset(preset, params)
    stimulus = _stimulus(_stimulus_specs(args.stimulus) + config.get("stimulus", []))
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
        with atomic_path(pathlib.Path(args.plot)) as tmp:
            _plot_trace(tr, stimulus, tmp)
        print(f"wrote {args.plot}")


def _plot_trace(tr, stimulus, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import hh_jax as hh

    if stimulus is None:
        fig, ax = plt.subplots(figsize=(7, 3.2))
        hh.plotting.plot_voltage(tr, ax=ax)
    else:
        fig = hh.plotting.plot_trace(tr, stimulus)[0].figure
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fit(args):
    import jax.numpy as jnp
    import numpy as np

    import hh_jax as hh

    init = _preset(args.preset, _assignments(args.set))
    free = tuple(x.strip() for x in args.free.split(",") if x.strip())
    unknown = [n for n in free if n not in init.parameter_names or n == "vshift"]
    if unknown or not free:
        raise CLIError(f"unknown parameter(s) {unknown} in --free; expected names from {list(init.parameter_names)}")
    path = pathlib.Path(args.trace)
    if not path.exists():
        raise CLIError(f"no such trace file: {path}")
    # Every file the command writes is named here, so each is checked before the fit runs.
    json_path, result_path, png_path = _output_folder(
        args.out, ("fit.json", "fit_result.json", "fit.png"), args.overwrite
    )
    checkpoint = pathlib.Path(args.out) / _CHECKPOINT
    resume = _resume_from(checkpoint, args.resume, args.overwrite)
    rec = hh.load_trace(path, time_unit=args.time_unit, voltage_unit=args.voltage_unit,
                        current_unit=args.current_unit, area_cm2=args.area, junction_mV=args.junction)
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.plot(rec.t, rec.V, color="0.5", lw=0.8, label="data")
    ax.plot(tr.t, tr.V, color="C3", lw=1.0, label="fit")
    ax.set(xlabel="t (ms)", ylabel="V (mV)")
    ax.legend()
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    checkpoint.unlink(missing_ok=True)  # the finished result is in fit_result.json
    print(f"wrote {json_path}, {result_path} and {png_path}")


def _demo(args):
    import jax.numpy as jnp
    import numpy as np

    import hh_jax as hh

    figures = ("stimulus.png", "voltage.png", "phase_plane.png", "fit.png")
    out = _output_folder(args.out, figures, args.overwrite)[0].parent
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # 1. The gist: two pulses into the squid-axon model, three figures.
    p = hh.presets.seed()
    gist = hh.Pulse(start=0.0, stop=1.0, amplitude=150.0) + hh.Pulse(start=10.0, stop=11.0, amplitude=50.0)
    tr = hh.simulate(p, gist, t1=50.0, ts=jnp.linspace(0.0, 50.0, 5001))
    spikes = hh.spike_times(tr.t, tr.V, threshold=50.0)
    for name, draw, size in (
        ("stimulus", lambda ax: hh.plotting.plot_stimulus(gist, tr.t, ax=ax), (7, 3.2)),
        ("voltage", lambda ax: hh.plotting.plot_voltage(tr, ax=ax, spikes=spikes), (7, 3.2)),
        ("phase_plane", lambda ax: hh.plotting.plot_phase_plane(tr, gates=("n", "m"), ax=ax), (5.5, 4.5)),
    ):
        fig, ax = plt.subplots(figsize=size)
        draw(ax)
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=120)
        plt.close(fig)
    print(f"the gist: spikes at {np.round(spikes, 4).tolist()} ms; wrote stimulus.png, voltage.png, phase_plane.png")

    # 2. Fit conductances to a built-in synthetic noisy trace.
    truth = dict(gNa=100.0, gK=40.0, gL=0.25)
    ts = np.linspace(0.0, 50.0, 2001)
    rng = np.random.default_rng(0)
    targets = []
    for stim in (gist, hh.Step(start=5.0, stop=45.0, amplitude=10.0)):
        clean = np.asarray(hh.simulate(hh.presets.seed(**truth), stim, t1=50.0, ts=jnp.asarray(ts)).V)
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
        ax.plot(target.ts, target.V, ".", ms=1.5, color="0.6", label="synthetic data")
        ax.plot(fitted.t, fitted.V, color="C3", lw=1.2, label="fit")
        ax.set(xlabel="t (ms)", ylabel="V (mV)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "fit.png", dpi=110)
    plt.close(fig)
    print(f"wrote {out / 'fit.png'}")


def _bench(args):
    script = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"
    if not script.exists():
        raise CLIError("bench runs scripts/benchmark.py from a source checkout of hh_jax; none found")
    return subprocess.call([sys.executable, str(script), *args.rest])


# ----------------------------------------------------------------------- parser


def _parser():
    parser = _Parser(prog="hh-jax", description="Differentiable Hodgkin–Huxley neurons: simulate, fit, benchmark.")
    sub = parser.add_subparsers(dest="command")

    demo = sub.add_parser("demo", help="the gist's figures and a conductance fit to built-in synthetic data")
    demo.add_argument("--out", default="figures", help="folder for the PNG figures (default: figures)")
    demo.add_argument("--starts", type=_positive_int, default=8, help="random starts of the fit (default 8)")
    demo.add_argument("--steps", type=_nonnegative_int, default=None,
                      help="Adam steps before Levenberg–Marquardt (default: none; LM from screened starts)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.add_argument("--overwrite", action="store_true", help="replace figures already in --out")
    demo.set_defaults(run=_demo)

    sim = sub.add_parser("simulate", help="simulate a preset under a stimulus; write NPZ or CSV (and a PNG)")
    sim.add_argument("--preset", choices=None, help=f"model: {', '.join(_PRESETS)} (default seed)")
    sim.add_argument("--set", action="append", metavar="NAME=VALUE",
                     help="parameter override, e.g. gNa=100 (mS/cm²) or EL=-70 (mV); repeatable or comma-separated")
    sim.add_argument("--stimulus", action="append", metavar="KIND:K=V,...",
                     help="current (µA/cm², times in ms), summed if repeated: " + "; ".join(
                         f"{k}:{','.join(v[1])}" for k, v in _STIMULI.items()))
    sim.add_argument("--t1", type=_finite, help="duration (ms, default 50)")
    sim.add_argument("--dt", type=_finite, help="sampling interval of the output (ms, default 0.025)")
    sim.add_argument("--v0", type=_finite, help="initial potential (mV; default the preset's rest)")
    sim.add_argument("--rtol", type=_finite, help="solver tolerance (relative and absolute, default 1e-6)")
    sim.add_argument("--max-steps", type=_positive_int, default=16384,
                     help="solver step limit (default 16384); raise it for long simulations")
    sim.add_argument("--config", help="TOML file with preset, t1, dt, v0, rtol, [parameters] and "
                     "[[stimulus]] (kind = ...); no other keys")
    sim.add_argument("--out", default="trace.npz", help="output .npz (t, V, I with units) or .csv (t,V,I)")
    sim.add_argument("--plot", help="also write this PNG of stimulus and voltage")
    sim.add_argument("--overwrite", action="store_true", help="replace existing output files")
    sim.set_defaults(run=_simulate)

    fit = sub.add_parser("fit", help="fit parameters to a trace file; write JSON (with standard errors) and a PNG")
    fit.add_argument("trace", help=".npz, .csv, .nwb or .abf file with time, voltage and current")
    fit.add_argument("--preset", default="seed", help=f"model to fit: {', '.join(_PRESETS)} (default seed)")
    fit.add_argument("--set", action="append", metavar="NAME=VALUE", help="initial parameter values")
    fit.add_argument("--free", default="gNa,gK,gL", help="comma-separated parameters to fit (default gNa,gK,gL)")
    fit.add_argument("--starts", type=_positive_int, default=8, help="random starts (default 8)")
    fit.add_argument("--steps", type=_nonnegative_int, default=None,
                     help="Adam steps before Levenberg–Marquardt (default: none; LM from screened starts)")
    fit.add_argument("--seed", type=_nonnegative_int, default=0, help="seed of the random starts")
    fit.add_argument("--stimulus-from", default="step", choices=("step", "sampled"),
                     help="the recorded current as a fitted step (default) or sample by sample")
    fit.add_argument("--time-unit", help="s or ms, if the file does not say (CSV: required)")
    fit.add_argument("--voltage-unit", help="V or mV, if the file does not say")
    fit.add_argument("--current-unit", help="A, nA, pA (with --area) or µA/cm², if the file does not say")
    fit.add_argument("--area", type=_finite, help="membrane area (cm²) for absolute currents")
    fit.add_argument("--junction", type=_finite, default=0.0, help="liquid-junction correction added to V (mV)")
    fit.add_argument("--out", default="fit", help="output folder (default fit)")
    fit.add_argument("--no-progress", action="store_true", help="no progress bar")
    fit.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    fit.add_argument("--resume", action="store_true",
                     help=f"continue the fit interrupted (Ctrl-C, SIGTERM) with its progress in --out/{_CHECKPOINT}")
    fit.set_defaults(run=_fit)

    bench = sub.add_parser("bench", help="run scripts/benchmark.py (source checkout); arguments pass through")
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the benchmark, e.g. --quick")
    bench.set_defaults(run=_bench)
    return parser


if __name__ == "__main__":
    sys.exit(main())
