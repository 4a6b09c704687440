"""The command line's input: numbers, presets, `--set`, `--stimulus` and TOML config files,
each checked strictly and refused with a `CLIError` (one line, no traceback)."""

from __future__ import annotations

import argparse
import math

PRESETS = ("hh1952", "neuron", "pospischil")
PRESET_ALIASES = {"seed": "hh1952"}  # the old name of hh1952, still accepted
STIMULI = {  # kind: (class in hh_jax, its fields)
    "pulse": ("Pulse", ("start", "stop", "amplitude")),
    "step": ("Step", ("start", "stop", "amplitude")),
    "train": ("PulseTrain", ("start", "width", "amplitude", "count", "period", "frequency")),
    "ramp": ("Ramp", ("start", "stop", "start_amplitude", "stop_amplitude")),
    "sine": ("Sine", ("amplitude", "frequency", "offset", "phase", "start", "stop")),
}
CONFIG_NUMBERS = ("t1", "dt", "v0", "rtol")
CONFIG_KEYS = ("preset", *CONFIG_NUMBERS, "parameters", "stimulus")


class CLIError(Exception):
    """Bad command-line input: reported in one line, no traceback."""


def number(text, what):
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


def finite(text):
    """argparse type: a finite float."""
    try:
        return number(text, "value")
    except CLIError as err:
        raise argparse.ArgumentTypeError(str(err).replace("value ", "")) from None


def int_at_least(minimum):
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


positive_int, nonnegative_int = int_at_least(1), int_at_least(0)


def preset_membrane(name, overrides):
    """The preset membrane `name` with parameter `overrides` ({name: number})."""
    import hh_jax as hh

    name = PRESET_ALIASES.get(name, name)
    if name not in PRESETS:
        raise CLIError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
    return getattr(hh.presets, name)(**overrides)


def assignments(items, what="--set"):
    """`NAME=VALUE[,NAME=VALUE...]` strings as {name: number}."""
    out = {}
    for item in items or ():
        for part in item.split(","):
            if "=" not in part:
                raise CLIError(f"{what} expects NAME=VALUE, got {part!r}")
            key, value = part.split("=", 1)
            out[key.strip()] = number(value, f"{what}: {key.strip()}")
    return out


def stimulus_specs(specs):
    """`kind:key=value,...` strings as (kind, {key: number}) terms."""
    terms = []
    for spec in specs or ():
        kind, _, rest = spec.partition(":")
        terms.append((kind, assignments([rest] if rest else [], what=f"--stimulus {kind}")))
    return terms


def sum_stimuli(terms, where="--stimulus"):
    """(kind, {field: number}) terms, summed; e.g. ("step", {"start": 5, "amplitude": 10})."""
    import hh_jax as hh

    total = None
    for kind, kwargs in terms:
        if kind not in STIMULI:
            raise CLIError(f"{where}: unknown stimulus {kind!r}; expected one of {', '.join(STIMULI)}")
        cls_name, allowed = STIMULI[kind]
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


def load_config(path):
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
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise CLIError(f"{path}: unknown key(s) {unknown}; expected any of {list(CONFIG_KEYS)}")
    if not isinstance(config.get("preset", ""), str):
        raise CLIError(f"{path}: preset must be a name such as \"hh1952\", got {config['preset']!r}")
    for key in CONFIG_NUMBERS:
        if key in config:
            config[key] = number(config[key], f"{path}: {key}")
    parameters = config.get("parameters", {})
    if not isinstance(parameters, dict):
        raise CLIError(f"{path}: [parameters] must be a table of NAME = number")
    config["parameters"] = {k: number(v, f"{path}: parameters.{k}") for k, v in parameters.items()}
    stimuli = config.get("stimulus", [])
    if not (isinstance(stimuli, list) and all(isinstance(s, dict) for s in stimuli)):
        raise CLIError(f"{path}: stimulus must be [[stimulus]] tables with kind = \"...\"")
    terms = []
    for s in stimuli:
        if s.get("kind") not in STIMULI:
            raise CLIError(f"{path}: every [[stimulus]] needs kind = one of {', '.join(STIMULI)}, got {s.get('kind')!r}")
        fields = {k: number(v, f"{path}: stimulus {s['kind']}.{k}") for k, v in s.items() if k != "kind"}
        terms.append((s["kind"], fields))
    config["stimulus"] = terms
    return config


def columns(text):
    """`--columns t=NAME,V=NAME,I=NAME` as {"t": ..., "V": ..., "I": ...}."""
    if text is None:
        return None
    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in ("t", "V", "I") or not value.strip():
            raise CLIError(f"--columns expects t=NAME,V=NAME[,I=NAME], got {part!r}")
        out[key.strip()] = value.strip()
    return out


def bounds(items):
    """`--bound NAME=LOW:HIGH` (repeatable or comma-separated) as {name: (low, high)}."""
    out = {}
    for item in items or ():
        for part in item.split(","):
            name, sep, rest = part.partition("=")
            low, colon, high = rest.partition(":")
            if not sep or not colon:
                raise CLIError(f"--bound expects NAME=LOW:HIGH, got {part!r}")
            lo, hi = number(low, f"--bound {name.strip()}"), number(high, f"--bound {name.strip()}")
            if not lo < hi:
                raise CLIError(f"--bound {name.strip()}: LOW must be below HIGH, got {lo}:{hi}")
            out[name.strip()] = (lo, hi)
    return out


def add_fit_arguments(fit, run):
    """The `hh-jax fit` subcommand's arguments: a trace fit by `hh.fit` (--preset, --free),
    or with --model a recorded cell's features by `hh.fit_recording` (--features). `run`
    is the command to call."""
    fit.add_argument("trace", help=".npz, .csv, .nwb or .abf file with time, voltage and current")
    fit.add_argument("--model", choices=("pospischil",), default=None,
                     help="fit a recorded cell's features with hh.fit_recording (search, then Levenberg–Marquardt)")
    fit.add_argument("--features", default=None,
                     help="with --model: comma-separated features (count, isi, latency, rest, ap_peak, ap_width, ahp, "
                          "adaptation; default all)")
    fit.add_argument("--candidates", type=positive_int, default=512, help="with --model: search candidates (default 512)")
    fit.add_argument("--iterations", type=positive_int, default=30,
                     help="with --model: Levenberg–Marquardt iterations at most (default 30)")
    fit.add_argument("--bound", action="append", metavar="NAME=LOW:HIGH", help="with --model: search bounds of a parameter")
    fit.add_argument("--threshold", type=finite, default=0.0, help="with --model: spike threshold (mV, default 0)")
    fit.add_argument("--preset", default="hh1952", help=f"model to fit: {', '.join(PRESETS)} (default hh1952, formerly seed)")
    fit.add_argument("--set", action="append", metavar="NAME=VALUE", help="initial parameter values")
    fit.add_argument("--free", default=None,
                     help="comma-separated parameters to fit (default gNa,gK,gL; with --model the model's default)")
    fit.add_argument("--starts", type=positive_int, default=None, help="starts (default 8; with --model 4)")
    fit.add_argument("--steps", type=nonnegative_int, default=None,
                     help="Adam steps before Levenberg–Marquardt (default: none; LM from screened starts)")
    fit.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the random starts")
    fit.add_argument("--stimulus-from", default="step", choices=("step", "sampled"),
                     help="the recorded current as a fitted step (default) or sample by sample")
    fit.add_argument("--time-unit", help="s or ms, if the file does not say (CSV: required)")
    fit.add_argument("--voltage-unit", help="V or mV, if the file does not say")
    fit.add_argument("--current-unit", help="A, nA, pA (with --area) or µA/cm², if the file does not say")
    fit.add_argument("--columns", help="names of the time, voltage and current columns or arrays: t=NAME,V=NAME,I=NAME")
    fit.add_argument("--area", type=finite, help="membrane area (cm²) for absolute currents")
    fit.add_argument("--junction", type=finite, default=0.0, help="liquid-junction correction added to V (mV)")
    fit.add_argument("--out", default="fit", help="output folder (default fit)")
    fit.add_argument("--no-progress", action="store_true", help="no progress bar")
    fit.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    fit.add_argument("--resume", action="store_true",
                     help="continue the fit interrupted (Ctrl-C, SIGTERM) with its progress in --out/fit_checkpoint.json")
    fit.set_defaults(run=run)
