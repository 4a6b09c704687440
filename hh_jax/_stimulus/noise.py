"""A noisy current: an Ornstein–Uhlenbeck process, reproducible from a PRNG key."""

from __future__ import annotations

import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._validation import check_finite, check_memory, check_nonnegative, check_positive, concrete_array
from .base import AbstractStimulus, check_broadcast, check_window


class Noise(AbstractStimulus):
    """An Ornstein–Uhlenbeck current: mean `mean`, stationary standard deviation `sigma`
    (µA/cm²) and correlation time `tau` (ms), on during [start, stop) ms.

    The path is drawn once, when the stimulus is built, from `key` on a grid of spacing `dt`
    (ms; default tau/20) with the exact OU transition and a stationary start, and is
    linearly interpolated between grid points; the solver steps onto every grid point, so
    a solve takes at least (stop − start)/dt steps. The same key always gives the same current.
    `mean` and `sigma` are differentiable (the path is `mean + sigma · z(t)` with `z` a unit
    OU path); `tau`, `dt` and the window fix the path and are not.

    **Arguments** (keyword-only): `mean`, `sigma` (µA/cm², sigma >= 0), `tau` (ms, > 0),
    `key` (a `jax.random.key`; a batch of keys makes a batch of paths), `start` (ms,
    default 0), `stop` (ms, finite), `dt` (ms).

    Example:
        >>> s = hh.Noise(mean=5.0, sigma=2.0, tau=5.0, key=jax.random.key(0), stop=1000.0)
    """

    mean: Float[ArrayLike, "*batch"]
    sigma: Float[ArrayLike, "*batch"]
    tau: float
    start: float
    stop: float
    dt: float
    unit_path: Float[Array, "*batch samples"]
    time_fields: ClassVar[tuple[str, ...]] = ("start", "stop", "dt")

    def __init__(self, *, mean, sigma, tau, key, stop, start=0.0, dt=None):
        owner = "hh.Noise"
        for name, value in (("tau", tau), ("start", start), ("stop", stop), ("dt", dt)):
            if value is not None and concrete_array(value) is None:
                raise ValueError(f"{owner}: `{name}` fixes the sample grid and must be a concrete number.")
        check_positive("tau", tau, owner, "ms")
        check_window(owner, start, stop, allow_infinite_stop=False)
        dt = tau / 20.0 if dt is None else dt
        check_positive("dt", dt, owner, "ms")
        self.mean, self.sigma = mean, sigma
        self.tau, self.start, self.stop, self.dt = float(tau), float(start), float(stop), float(dt)
        n = int(math.ceil((self.stop - self.start) / self.dt)) + 1
        check_memory(owner, f"a noise path of {n:,} samples", (n,), 8,
                     "use a larger `dt` or a shorter window")
        try:
            self.unit_path = _unit_ou_paths(key, n, math.exp(-self.dt / self.tau))
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"{owner}: `key` must be a JAX PRNG key such as jax.random.key(0) (or a batch of "
                f"them), got {type(key).__name__} ({str(err).splitlines()[0]})."
            ) from None

    def __check_init__(self):
        owner = "hh.Noise"
        check_finite("mean", self.mean, owner)
        check_finite("sigma", self.sigma, owner)
        check_nonnegative("sigma", self.sigma, owner, "µA/cm²")
        check_broadcast(owner, self, ("mean", "sigma"))

    @property
    def times(self) -> Float[Array, " samples"]:
        """The grid of the drawn path (ms)."""
        return self.start + self.dt * jnp.arange(self.unit_path.shape[-1])

    def __call__(self, t):
        n = self.unit_path.shape[-1]
        position = (t - self.start) / self.dt
        i = jnp.clip(jnp.floor(position).astype(jnp.int32), 0, n - 2)
        frac = jnp.clip(position - i, 0.0, 1.0)
        z = self.unit_path[..., i] * (1.0 - frac) + self.unit_path[..., i + 1] * frac
        value = self.mean + self.sigma * z
        return jnp.where((t >= self.start) & (t < self.stop), value, 0.0)

    def discontinuities(self):
        return jnp.array([self.start, self.stop])

    def kinks(self):
        return self.times


def _unit_ou_paths(key, n, decay):
    """Stationary OU paths with unit variance, exact transitions: shape (*key_batch, n)."""
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        batch = key.shape
    else:  # legacy uint32 keys of shape (..., 2)
        batch = key.shape[:-1]
    if batch:
        flat = key.reshape(-1, *key.shape[len(batch):])
        return jax.vmap(lambda k: _unit_ou_path(k, n, decay))(flat).reshape(*batch, n)
    return _unit_ou_path(key, n, decay)


def _unit_ou_path(key, n, decay):
    xi = jax.random.normal(key, (n,))
    innovation = math.sqrt(1.0 - decay**2)

    def step(z, x):
        z = decay * z + innovation * x
        return z, z

    _, rest = jax.lax.scan(step, xi[0], xi[1:])
    return jnp.concatenate([xi[:1], rest])
