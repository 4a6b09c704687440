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
