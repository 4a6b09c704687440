"""Eager input checks shared by the public entry points.

Every check looks at concrete values only: inside `jax.jit`, `jax.vmap` or `jax.grad` the
values are tracers and cannot be inspected, so the checks are skipped there (the caller has
already been validated eagerly, or runs in a traced context they control).
"""

from __future__ import annotations

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


def check_finite(name: str, x, owner: str) -> None:
    value = concrete_array(x)
    if value is None:
        return
    if not np.issubdtype(value.dtype, np.number):
        raise ValueError(f"{owner}: `{name}` must be a number or an array of numbers, got {value.dtype}.")
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{owner}: `{name}` must be finite, got {_show(value, ~np.isfinite(value))}.")


def check_nonnegative(name: str, x, owner: str, unit: str) -> None:
    value = concrete_array(x)
    if value is None:
        return
    if np.any(value < 0):
        raise ValueError(f"{owner}: `{name}` must be >= 0 {unit}, got {_show(value, value < 0)}.")


def check_positive(name: str, x, owner: str, unit: str) -> None:
    value = concrete_array(x)
    if value is None:
        return
    if np.any(value <= 0):
        raise ValueError(f"{owner}: `{name}` must be > 0 {unit}, got {_show(value, value <= 0)}.")


def broadcast_batch_shape(owner: str, named_shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    """Broadcast the shapes of named values, with an error naming them when impossible."""
    try:
        return tuple(np.broadcast_shapes(*named_shapes.values()))
    except ValueError:
        listing = ", ".join(f"{k}{tuple(v)}" for k, v in named_shapes.items())
        raise ValueError(
            f"{owner}: the array values do not broadcast to one batch shape: {listing}."
        ) from None


def _show(value: np.ndarray, bad: np.ndarray) -> str:
    """The offending value, or a few offending entries of an array."""
    if value.ndim == 0:
        return repr(value.item())
    return f"an array with entries such as {value[bad].ravel()[:3].tolist()}"
