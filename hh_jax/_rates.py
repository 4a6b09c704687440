"""NaN-free building blocks for gate rate functions.

HH-type rates such as αn = 0.01 (V + 55) / (1 − exp(−(V + 55)/10)) are 0/0 at one voltage
(a removable singularity). Written naively they return NaN there, and their gradients are NaN
in a neighbourhood under `jnp.where` guards. The helpers here are finite, with finite
gradients, for every finite input, and never overflow `exp`.
"""

from __future__ import annotations

import jax.numpy as jnp

# Below this |x| the Taylor series replaces x / expm1(x): its truncation error there is
# below 1e-19 and both branches agree to rounding. The only point the series is really needed
# at is x = 0 itself; expm1 keeps the closed form accurate arbitrarily close to it.
_TAYLOR_BELOW = 1e-4
# exp(80) ≈ 5.5e34 is representable in float32 (max ≈ 3.4e38); the rates only reach such
# arguments at |V| of thousands of mV, far outside physiology.
_EXP_CLIP = 80.0


def safe_exp(x):
    """`exp(x)` with the argument clipped above at 80, so it never overflows to inf."""
    return jnp.exp(jnp.minimum(x, _EXP_CLIP))


def exprel_inv(x):
    """x / (exp(x) − 1), continued by its limit 1 at x = 0; finite value and gradient for all x.

    With m = expm1(−|x|) it is x/m for x < 0 and x·exp(−x)/(−m) for x > 0: two
    transcendentals, never overflowing, accurate to rounding everywhere. Near 0 a Taylor series replaces it; that branch sees a
    harmless stand-in input elsewhere and vice versa, so no discarded gradient can be NaN
    (the "double where" of the JAX FAQ).
    """
    x = jnp.asarray(x)
    small = jnp.abs(x) < _TAYLOR_BELOW
    x_big = jnp.where(small, 1.0, x)
    x_small = jnp.where(small, x, 0.0)
    m = jnp.expm1(-jnp.abs(x_big))
    closed = jnp.where(x_big > 0, x_big * jnp.exp(-jnp.abs(x_big)) / -m, x_big / m)
    taylor = 1.0 - x_small / 2.0 + x_small**2 / 12.0
    return jnp.where(small, taylor, closed)


def vtrap(x, y):
    """NEURON's `vtrap(x, y) = x / (exp(x/y) − 1)`, finite at x = 0 (where it equals y)."""
    return y * exprel_inv(x / y)
