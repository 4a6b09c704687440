"""Compilation cache: keep compiled programs on disk, so a new process skips XLA compilation.

The library never changes JAX's configuration by itself; this is the one call a user (or a
script, or the CLI) makes to opt in.
"""

from __future__ import annotations

import contextlib
import os
import pathlib


def default_cache_dir() -> pathlib.Path:
    """`$HH_JAX_CACHE`, else `$XDG_CACHE_HOME/hh_jax/xla`, else `~/.cache/hh_jax/xla`."""
    if os.environ.get("HH_JAX_CACHE"):
        return pathlib.Path(os.environ["HH_JAX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "hh_jax" / "xla"


def use_compilation_cache(directory=None, min_compile_time_s: float = 0.2) -> pathlib.Path:
    """Turn on JAX's persistent compilation cache (a global JAX setting, for this process).

    Programs that took at least `min_compile_time_s` to compile are written to `directory`
    and read back by later processes with the same JAX version and backend, so a repeated
    script or command starts without recompiling its solves (tracing still runs).

    **Arguments:** `directory`: a folder (created if absent); default
    `hh.default_cache_dir()`. `min_compile_time_s`: compile time (s) above which a program
    is cached.

    **Returns:** the cache folder.

    Example:
        >>> hh.use_compilation_cache()   # once, at the top of a script or notebook
    """
    import jax

    folder = pathlib.Path(directory) if directory is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


@contextlib.contextmanager
def diffrax_checks_as_nan():
    """While a solve is traced, Diffrax's own runtime checks (of inputs that hh_jax has
    already validated eagerly) produce NaN instead of a host callback. A compiled program
    with a host callback cannot be written to the persistent cache; a NaN from such a check
    makes the solve's `success` False, so it is still reported. hh_jax's own checks
    (`throw=True` under `jit`) are outside this scope and raise as before."""
    # Equinox's module-level setting, read when a check is traced. Should a future Equinox
    # move it, solves keep their callbacks and are simply not cached.
    try:
        from equinox import _errors

        previous = _errors.EQX_ON_ERROR
    except (ImportError, AttributeError):
        yield
        return
    _errors.EQX_ON_ERROR = "nan"
    try:
        yield
    finally:
        _errors.EQX_ON_ERROR = previous
