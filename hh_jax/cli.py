"""The `hh-jax` command line: demo, simulate, fit, bench.

    hh-jax demo --out figures
    hh-jax simulate --preset hh1952 --set gNa=100 --stimulus step:start=5,stop=45,amplitude=10 --t1 50 --out trace.npz
    hh-jax fit trace.npz --preset hh1952 --free gNa,gK,gL --out fit
    hh-jax bench --quick

Units everywhere: ms, mV, µA/cm², mS/cm². Each command computes in float64, switched on for
the command's duration only (JAX's global configuration is left as it was).

The contract: every failure (bad input, a solver failure, a damaged file, a request too big
for memory) ends with one line on stderr and exit status 2, never a traceback; an interrupt
(Ctrl-C) ends with one line and status 130. Numbers must be finite, config files may hold
only the documented keys, and outputs are checked before any work: an existing output is
replaced only with `--overwrite`, through a temporary file renamed into place. `fit` keeps
its progress in `<out>/fit_checkpoint.json`; `--resume` continues an interrupted fit.

This module parses and dispatches; the commands are in `_cli_commands`, the checks of their
input in `_cli_parse`, and every figure comes from `hh_jax.plotting`.
"""

from __future__ import annotations

import argparse
import sys

from . import _cli_commands as commands
from ._cli_parse import PRESETS, STIMULI, CLIError, add_fit_arguments, finite, nonnegative_int, positive_int

__all__ = ["CLIError", "main"]


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


# ----------------------------------------------------------------------- parser


def _parser():
    parser = _Parser(prog="hh-jax", description="Differentiable Hodgkin–Huxley neurons: simulate, fit, benchmark.")
    sub = parser.add_subparsers(dest="command")

    demo = sub.add_parser("demo", help="the gist's figures and a conductance fit to built-in synthetic data")
    demo.add_argument("--out", default="figures", help="folder for the PNG figures (default: figures)")
    demo.add_argument("--starts", type=positive_int, default=8, help="random starts of the fit (default 8)")
    demo.add_argument("--steps", type=nonnegative_int, default=None,
                      help="Adam steps before Levenberg–Marquardt (default: none; LM from screened starts)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.add_argument("--overwrite", action="store_true", help="replace figures already in --out")
    demo.set_defaults(run=commands.demo)

    sim = sub.add_parser("simulate", help="simulate a preset under a stimulus; write NPZ or CSV (and a PNG)")
    sim.add_argument("--preset", choices=None, help=f"model: {', '.join(PRESETS)} (default hh1952, formerly seed)")
    sim.add_argument("--set", action="append", metavar="NAME=VALUE",
                     help="parameter override, e.g. gNa=100 (mS/cm²) or EL=-70 (mV); repeatable or comma-separated")
    sim.add_argument("--stimulus", action="append", metavar="KIND:K=V,...",
                     help="current (µA/cm², times in ms), summed if repeated: " + "; ".join(
                         f"{k}:{','.join(v[1])}" for k, v in STIMULI.items()))
    sim.add_argument("--t1", type=finite, help="duration (ms, default 50)")
    sim.add_argument("--dt", type=finite, help="sampling interval of the output (ms, default 0.025)")
    sim.add_argument("--v0", type=finite, help="initial potential (mV; default the preset's rest)")
    sim.add_argument("--rtol", type=finite, help="solver tolerance (relative and absolute, default 1e-6)")
    sim.add_argument("--max-steps", type=positive_int, default=16384,
                     help="solver step limit (default 16384); raise it for long simulations")
    sim.add_argument("--config", help="TOML file with preset, t1, dt, v0, rtol, [parameters] and "
                     "[[stimulus]] (kind = ...); no other keys")
    sim.add_argument("--out", default="trace.npz", help="output .npz (t, V, I with units) or .csv (t,V,I)")
    sim.add_argument("--plot", help="also write this PNG of stimulus and voltage")
    sim.add_argument("--overwrite", action="store_true", help="replace existing output files")
    sim.set_defaults(run=commands.simulate)

    fit = sub.add_parser("fit", help="fit a trace file (or, with --model, a recorded cell's features); write JSON and a PNG")
    add_fit_arguments(fit, commands.fit)

    bench = sub.add_parser("bench", help="run scripts/benchmark.py (source checkout); arguments pass through")
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the benchmark, e.g. --quick")
    bench.set_defaults(run=commands.bench)
    return parser


if __name__ == "__main__":
    sys.exit(main())
