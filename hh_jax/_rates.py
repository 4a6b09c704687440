"""NaN-free building blocks for gate rate functions.

HH-type rates such as αn = 0.01 (V + 55) / (1 − exp(−(V + 55)/10)) are 0/0 at one voltage
(a removable singularity). Written naively they return NaN there, and their gradients are NaN
in a neighbourhood under `jnp.where` guards. The helpers here are finite, with finite
gradients, for every finite input, and never overflow `exp`.
"""

from __future__ import annotations

import jax.numpy as jnp

# Below this |x| the Bernoulli series replaces x / (exp(x) − 1) (see `exprel_inv`).
_SERIES_BELOW = 0.1
# exp(80) ≈ 5.5e34 is representable in float32 (max ≈ 3.4e38); the rates only reach such
# arguments at |V| of thousands of mV, far outside physiology.
_EXP_CLIP = 80.0


def safe_exp(x):
    """`exp(x)` with the argument clipped above at 80, so it never overflows to inf."""
    return jnp.exp(jnp.minimum(x, _EXP_CLIP))


def exprel_inv(x):
    """x / (exp(x) − 1), continued by its limit 1 at x = 0; finite value and gradient for all x.

    One transcendental: with e = exp(−|x|) it is x·e/(1 − e) for x > 0 and x/(e − 1) for
    x < 0 (never overflowing). For |x| < 0.1 the Bernoulli series to x⁸ replaces it (its
    truncation error there is below 1e-17, and 1 − e has lost under 1e-15 relative
    precision where the closed form takes over). Each branch sees a harmless stand-in input
    where it is not selected, so no discarded gradient can be NaN (the "double where" of
    the JAX FAQ).
    """
    x = jnp.asarray(x)
    small = jnp.abs(x) < _SERIES_BELOW
    x_big = jnp.where(small, 1.0, x)
    z = jnp.where(small, x, 0.0)
    e = jnp.exp(-jnp.abs(x_big))
    closed = jnp.where(x_big > 0, x_big * e / (1.0 - e), x_big / (e - 1.0))
    z2 = z * z
    series = 1.0 - z / 2.0 + z2 * (1.0 / 12.0 + z2 * (-1.0 / 720.0 + z2 * (1.0 / 30240.0 - z2 / 1209600.0)))
    return jnp.where(small, series, closed)


def vtrap(x, y):
    """NEURON's `vtrap(x, y) = x / (exp(x/y) − 1)`, finite at x = 0 (where it equals y)."""
    return y * exprel_inv(x / y)
