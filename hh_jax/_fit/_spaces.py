"""Parameter spaces: each free parameter as an unconstrained coordinate u, and back.

Positive parameters (conductances, Cm) are fitted in log space, bounded ones through a
sigmoid, potentials in units of 10 mV, so that every optimiser step is a valid membrane and
the coordinates have similar scales.
"""

from __future__ import annotations

from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

NOT_FITTED = ("vshift",)  # a convention, not a property of the cell
_START_FACTOR = 4.0  # positive parameters start log-uniform in [init/4, 4·init]
OWNER = "hh.fit"


# ----------------------------------------------------------------------- parameter spaces


@dataclass(frozen=True)
class _Space:
    """How one free parameter maps to an unconstrained coordinate u (u = 0 at `ref`).

    Positive parameters (conductances, Cm) work with z = log x, the others with z = x. Both
    bounds finite: z = z_lo + (z_hi − z_lo)·sigmoid(c + k·u), c putting u = 0 at `ref` and k
    making dz/du = `unit` there (1 in log space: u is a relative change; 10 mV or °C
    otherwise), so bounds change the scale of u only far from `ref`. Unbounded: z = z_ref +
    unit·u. One bound only: x = bound ± (distance at ref)·exp(u).
    """

    name: str
    kind: str  # "bounded", "free", "lower", "upper"
    log: bool
    ref: float
    lo: float
    hi: float
    unit: float

    def _z(self, x):
        return np.log(x) if self.log else x

    @property
    def _zlo(self):
        return float(self._z(self.lo))

    @property
    def _zhi(self):
        return float(self._z(self.hi))

    @property
    def _c(self):
        p = (float(self._z(self.ref)) - self._zlo) / (self._zhi - self._zlo)
        return float(np.log(p / (1.0 - p)))

    @property
    def _k(self):
        sig = 1.0 / (1.0 + np.exp(-self._c))
        return self.unit / ((self._zhi - self._zlo) * sig * (1.0 - sig))

    def natural(self, u):
        """x at coordinate u: NumPy for NumPy input (the fit's bookkeeping between compiled
        calls, so nothing is compiled for it), JAX otherwise (traced inside the solves)."""
        xp, sigmoid = (np, lambda a: 0.5 * (1.0 + np.tanh(0.5 * a))) if _is_host(u) else (jnp, jax.nn.sigmoid)
        if self.kind == "lower":
            return self.lo + (self.ref - self.lo) * xp.exp(u)
        if self.kind == "upper":
            return self.hi - (self.hi - self.ref) * xp.exp(u)
        if self.kind == "bounded":
            z = self._zlo + (self._zhi - self._zlo) * sigmoid(self._c + self._k * u)
        else:
            z = float(self._z(self.ref)) + self.unit * u
        return xp.exp(z) if self.log else z

    def derivative(self, u):
        """dx/du at coordinates u (NumPy), for the chain rule of the standard errors; from x
        itself (for the sigmoid, σ(1 − σ) = (z − z_lo)(z_hi − z)/(z_hi − z_lo)²)."""
        x = self.natural(np.asarray(u, float))
        if self.kind in ("lower", "upper"):
            return x - (self.lo if self.kind == "lower" else self.hi)
        z = self._z(x)
        dz = self._k * (z - self._zlo) * (self._zhi - z) / (self._zhi - self._zlo) if self.kind == "bounded" else self.unit
        return x * dz if self.log else dz * np.ones_like(x)

    def at_bound(self, u, tolerance=1e-6) -> bool:
        """Whether coordinate u maps within `tolerance` (relative to the range, or to the
        distance at `ref` for a one-sided bound) of a finite bound."""
        x = float(self.natural(u))
        scale = self.hi - self.lo if np.isfinite(self.hi - self.lo) else abs(self.ref - (self.lo if np.isfinite(self.lo) else self.hi))
        near = [abs(x - b) for b in (self.lo, self.hi) if np.isfinite(b)]
        return bool(near) and min(near) <= tolerance * max(scale, 1e-300)

    def unconstrained(self, x):
        x = np.asarray(x, float)
        if self.kind == "lower":
            return np.log((x - self.lo) / (self.ref - self.lo))
        if self.kind == "upper":
            return np.log((self.hi - x) / (self.hi - self.ref))
        z = self._z(x)
        if self.kind == "bounded":
            p = (z - self._zlo) / (self._zhi - self._zlo)
            return (np.log(p / (1.0 - p)) - self._c) / self._k
        return (z - float(self._z(self.ref))) / self.unit

    def sample(self, rng, n):
        """n start values in natural units: positive parameters log-uniform in
        [ref/4, 4·ref], others uniform in ref ± one unit (10 mV or °C), within the bounds."""
        if self.log:
            lo = max(self.ref / _START_FACTOR, self.lo)
            hi = min(self.ref * _START_FACTOR, self.hi)
            x = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
        else:
            lo = max(self.ref - self.unit, self.lo)
            hi = min(self.ref + self.unit, self.hi)
            x = rng.uniform(lo, hi, n)
        span = (hi - lo) * 1e-6  # strictly inside, so every start has a finite u
        return np.clip(x, lo + span, hi - span)


def _default_bounds(kind, ref):
    """Wide but physical: positive parameters within a factor 100 of the initial value,
    potentials within ±60 mV, temperature within ±30 °C. They keep a wandering start out of
    regions where the model is stiff and every solve of the batch slows down."""
    if kind == "positive":
        return (ref / 100.0, ref * 100.0) if ref > 0 else (0.0, np.inf)
    if kind == "potential":
        return (ref - 60.0, ref + 60.0)
    if kind == "celsius":
        return (ref - 30.0, ref + 30.0)
    return (-np.inf, np.inf)


def get_param(membrane, path):
    """A parameter by name or dotted path ("gNa"; "na.g" in a ChannelMembrane)."""
    obj = membrane
    if "." in path and hasattr(membrane, "channel_map"):
        obj = membrane.channel_map
    for part in path.split("."):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    return obj


def fittable_names(membrane) -> tuple[str, ...]:
    """The parameters of `membrane` that `hh.fit` may free: all but `NOT_FITTED`."""
    return tuple(n for n in membrane.parameter_names if n not in NOT_FITTED)


def _param_kind(membrane, name):
    if name in membrane.positive_parameters:
        return "positive"
    if name in membrane.potential_parameters:
        return "potential"
    return "celsius" if name.split(".")[-1] == "celsius" else "other"


def spaces_for(init, free, bounds) -> tuple[_Space, ...]:
    if isinstance(free, str):
        free = (free,)
    free = tuple(free)
    if not free:
        raise ValueError(f"{OWNER}: `free` must name at least one parameter.")
    fittable = list(fittable_names(init))
    unknown = [n for n in free if n not in fittable]
    if unknown:
        raise ValueError(f"{OWNER}: unknown parameter(s) {unknown} in `free`; expected any of {fittable}.")
    if len(set(free)) != len(free):
        raise ValueError(f"{OWNER}: `free` lists a parameter twice: {list(free)}.")
    bounds = dict(bounds or {})
    extra = sorted(set(bounds) - set(free))
    if extra:
        raise ValueError(f"{OWNER}: `bounds` given for parameter(s) {extra} that are not in `free` {list(free)}.")
    spaces = []
    for name in free:
        ref = np.asarray(get_param(init, name), float)
        if ref.shape != ():
            raise ValueError(f"{OWNER}: `init.{name}` must be a scalar (fit one neuron at a time), got shape {ref.shape}.")
        ref = float(ref)
        pkind = _param_kind(init, name)
        lo, hi = (float(b) for b in bounds.get(name, _default_bounds(pkind, ref)))
        if not lo < hi:
            raise ValueError(f"{OWNER}: lower bound must be below upper bound for {name}, got ({lo}, {hi}).")
        if not lo < ref < hi:
            raise ValueError(
                f"{OWNER}: `init.{name}` = {ref} lies outside its bounds ({lo}, {hi}); "
                f"start from a value strictly inside."
            )
        # Log space for conductance-like parameters, unless a lower bound above 0 stands
        # alone (then the distance to it is what varies on a log scale).
        log = pkind == "positive" and ((lo > 0.0 and np.isfinite(hi)) or (lo == 0.0 and not np.isfinite(hi)))
        if np.isfinite(lo) and np.isfinite(hi):
            kind = "bounded"
        elif log:
            kind = "free"
        elif np.isfinite(lo):
            kind = "lower"
        elif np.isfinite(hi):
            kind = "upper"
        else:
            kind = "free"
        unit = 1.0 if log else (10.0 if pkind in ("potential", "celsius") else max(0.1 * abs(ref), 1.0))
        spaces.append(_Space(name, kind, log, ref, lo, hi, unit))
    return tuple(spaces)


def _is_host(u) -> bool:
    return isinstance(u, (np.ndarray, np.generic, float, int))


def membrane_with(init, spaces, values):
    """`init` with the free parameters (in `spaces` order) at natural `values`."""
    return eqx.tree_at(lambda m: [get_param(m, s.name) for s in spaces], init, list(values))


def membrane_at(init, spaces, u):
    """The membrane with the free parameters at unconstrained coordinates u (shape (p,))."""
    return membrane_with(init, spaces, [s.natural(u[i]) for i, s in enumerate(spaces)])


def naturals(spaces, u) -> dict[str, np.ndarray]:
    u = np.asarray(u)
    return {s.name: np.asarray(s.natural(u[..., i])) for i, s in enumerate(spaces)}
