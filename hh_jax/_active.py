"""The active neurons of one fixed network step: the few that spiked or released, found
without touching the rest (the clock-driven runs' sparse delivery and spike recording)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Int


def top_active(x: Array, k: int) -> tuple[Int[Array, " k"], Bool[Array, " k"], Bool[Array, ""]]:
    """Up to `k` of the entries of `x` (n,) that are positive (a mask or amounts).

    Found by `lax.top_k` on float32, where it is fast. Returns `(idx, hit, overflow)`: the
    `min(k, n)` indices (positive entries first), whether each is positive, and whether more
    than `k` entries are positive — then the caller handles the rest over all neurons.
    """
    k = min(k, x.shape[0])
    value, idx = jax.lax.top_k(x.astype(jnp.float32), k)
    return idx, value > 0, jnp.sum(x > 0) > k
