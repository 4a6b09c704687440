"""Eager input checks shared by the public entry points.

Every check looks at concrete values only: inside `jax.jit`, `jax.vmap` or `jax.grad` the
values are tracers and cannot be inspected, so the checks are skipped there (the caller has
already been validated eagerly, or runs in a traced context they control).
"""

from __future__ import annotations

import math
import os

import numpy as np
import jax


def is_concrete(x) -> bool:
    """True when `x` holds values Python can look at (not a JAX tracer)."""
    return not isinstance(x, jax.core.Tracer)


def is_array(x) -> bool:
    """A concrete or traced array (Python scalars and static fields are not)."""
    return hasattr(x, "shape") and hasattr(x, "dtype")


def concrete_array(x):
    """`x` as a NumPy array, or None when it is traced."""
    if not is_concrete(x):
        return None
    try:
        return np.asarray(x)
    except Exception:  # e.g. an abstract value that slipped through
        return None


def _numbers(name: str, x, owner: str):
    """`x` as a NumPy array of numbers (None when traced); refuses strings, objects and bools."""
    value = concrete_array(x)
    if value is None:
        return None
    if not np.issubdtype(value.dtype, np.number):
        raise ValueError(f"{owner}: `{name}` must be a number or an array of numbers, got {value.dtype}.")
    return value


def check_finite(name: str, x, owner: str) -> None:
    value = _numbers(name, x, owner)
    if value is not None and not np.all(np.isfinite(value)):
        raise ValueError(f"{owner}: `{name}` must be finite, got {_show(value, ~np.isfinite(value))}.")


def check_nonnegative(name: str, x, owner: str, unit: str) -> None:
    """`x` >= 0 and finite (NaN is refused: it compares false with everything)."""
    value = _numbers(name, x, owner)
    if value is None:
        return
    bad = ~(np.isfinite(value) & (value >= 0))
    if np.any(bad):
        raise ValueError(f"{owner}: `{name}` must be a finite number >= 0{_unit(unit)}, got {_show(value, bad)}.")


def check_positive(name: str, x, owner: str, unit: str, *, allow_inf: bool = False) -> None:
    """`x` > 0 and finite (or +inf where `allow_inf`, e.g. a time constant meaning "never")."""
    value = _numbers(name, x, owner)
    if value is None:
        return
    ok = (value > 0) & (np.isfinite(value) | (allow_inf & (value == np.inf)))
    if np.any(~ok):
        what = "> 0 (inf allowed)" if allow_inf else "a finite number > 0"
        raise ValueError(f"{owner}: `{name}` must be {what}{_unit(unit)}, got {_show(value, ~ok)}.")


def check_count(name: str, x, owner: str, *, minimum: int = 1) -> int:
    """A Python or NumPy integer >= `minimum` (not a bool, not a float), as a Python int."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)) or x < minimum:
        raise ValueError(f"{owner}: `{name}` must be an integer >= {minimum}, got {x!r}.")
    return int(x)


# ----------------------------------------------------------------------- memory


MEMORY_BUDGET_ENV = "HH_JAX_MEMORY_BUDGET"
_SIZE_SUFFIXES = {"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
                  "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def memory_budget() -> int:
    """Bytes one request may allocate: the environment variable `HH_JAX_MEMORY_BUDGET`
    (e.g. "8GB", "500MiB" or plain bytes) if set, else half the smaller of the host's
    available memory and the default device's memory limit (where JAX reports one): the other
    half is headroom for XLA's temporaries, which the estimates do not count."""
    text = os.environ.get(MEMORY_BUDGET_ENV, "").strip()
    if text:
        number = text.rstrip("BbKkMmGgTtIi ")
        suffix = text[len(number):].strip().upper()
        try:
            return int(float(number) * _SIZE_SUFFIXES[suffix])
        except (ValueError, KeyError):
            raise ValueError(
                f"{MEMORY_BUDGET_ENV} must be a size such as 8GB, 500MiB or 1e9, got {text!r}."
            ) from None
    budget = _host_memory()
    try:
        limit = jax.devices()[0].memory_stats().get("bytes_limit")
    except Exception:  # CPU devices report no memory statistics
        limit = None
    return int(min(budget, limit) // 2) if limit else int(budget // 2)


def _host_memory() -> float:
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES") or os.sysconf("SC_PHYS_PAGES")
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not a POSIX system: no limit known
        return math.inf


def check_memory(owner: str, what: str, shape, itemsize: int, remedy: str, copies: float = 1) -> None:
    """Refuse, before allocating, `copies` arrays of `shape` (`itemsize` bytes per entry) that
    exceed the memory budget, with a message naming the size and the remedy."""
    entries = math.prod(int(n) for n in shape)
    need = int(entries * int(itemsize) * copies)
    budget = memory_budget()
    if need > budget:
        raise ValueError(
            f"{owner}: {what} needs {_format_bytes(need)} ({' × '.join(f'{int(n):,}' for n in shape)} "
            f"values{f' × {copies:.3g} copies' if copies != 1 else ''}), more than the "
            f"{_format_bytes(budget)} memory budget; {remedy} (or raise {MEMORY_BUDGET_ENV})."
        )


def _format_bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} bytes"


def broadcast_batch_shape(owner: str, named_shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    """Broadcast the shapes of named values, with an error naming them when impossible."""
    try:
        return tuple(np.broadcast_shapes(*named_shapes.values()))
    except ValueError:
        listing = ", ".join(f"{k}{tuple(v)}" for k, v in named_shapes.items())
        raise ValueError(
            f"{owner}: the array values do not broadcast to one batch shape: {listing}."
        ) from None


def _unit(unit: str) -> str:
    return f" {unit}" if unit else ""


def _show(value: np.ndarray, bad: np.ndarray) -> str:
    """The offending value, or a few offending entries of an array."""
    if value.ndim == 0:
        return repr(value.item())
    return f"an array with entries such as {value[bad].ravel()[:3].tolist()}"
