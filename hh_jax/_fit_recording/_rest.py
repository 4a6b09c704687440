"""The model side of `hh.fit_recording`: the leak reversal that puts the model's rest at the
recorded one, the stability of that rest, and the parameter spaces of the search.

Rest by construction: for any other parameters, EL is chosen so that the total steady-state
current at the recorded resting potential V_r equals the holding current I_h,

    EL = V_r + (Σ_channels I(V_r, gates at steady state) − I_h) / gL

(the leak itself left out of the sum), so V_r is a fixed point of the model and the fit
starts there with every gate, the slow M current's included, in equilibrium. It is the
model's rest when that fixed point is stable: `rest_is_stable` checks the eigenvalues of
the Jacobian of the vector field there.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._membrane import AbstractChannelMembrane

# Search bounds for the Pospischil model (natural units; conductances searched log-uniformly).
POSPISCHIL_BOUNDS = {
    "gNa": (5.0, 300.0), "gK": (0.5, 60.0), "gM": (0.002, 1.0), "gL": (0.005, 0.5),
    "VT": (-75.0, -40.0), "ENa": (20.0, 100.0), "EK": (-110.0, -70.0), "tau_max": (50.0, 3000.0),
    "Cm": (0.5, 3.0),
}
POSPISCHIL_FREE = ("gNa", "gK", "gM", "gL", "VT", "ENa")


def leak_reversal(membrane, v_rest, holding):
    """EL (mV) that makes `v_rest` (mV) a fixed point under the holding current (µA/cm²)."""
    V = jnp.broadcast_to(jnp.asarray(v_rest, jnp.result_type(float)), membrane.batch_shape)
    neutral = eqx.tree_at(lambda m: m.EL, membrane, V)  # the leak carries no current at V
    pairs = neutral.channel_gates(neutral.steady_state(V))
    others = neutral.total_current(V, [gates for _, gates in pairs])
    return V + (others - holding) / membrane.gL


def at_rest(membrane, v_rest, holding):
    """The membrane with EL from `leak_reversal` (one compiled program)."""
    return _at_rest(membrane, *_as_arrays(v_rest, holding))


def at_rest_with(model, names, x, v_rest, holding):
    """`at_rest(with_values(model, names, x), v_rest, holding)`, one compiled program: a
    batch of candidates when x `(n, p)` has a leading axis."""
    return _at_rest_with(model, tuple(names), jnp.asarray(x, jnp.result_type(float)), *_as_arrays(v_rest, holding))


def _as_arrays(*values):
    return tuple(jnp.asarray(v, jnp.result_type(float)) for v in values)


@eqx.filter_jit
def _at_rest(membrane, v_rest, holding):
    return eqx.tree_at(lambda m: m.EL, membrane, leak_reversal(membrane, v_rest, holding))


@eqx.filter_jit
def _at_rest_with(model, names, x, v_rest, holding):
    return _at_rest(with_values(model, names, x), v_rest, holding)


def rest_is_stable(membrane, v_rest, holding) -> np.ndarray:
    """Per neuron: every eigenvalue of the vector field's Jacobian at the rest state has a
    negative real part (a perturbation decays back to rest)."""
    shape = membrane.batch_shape
    n = int(np.prod(shape)) if shape else 1
    J = np.asarray(_rest_jacobian(membrane, *_as_arrays(v_rest, holding)), float)
    ok = np.all(np.isfinite(J), axis=(-2, -1))
    eig = np.full((n, J.shape[-1]), np.inf, complex)
    eig[ok] = np.linalg.eigvals(J[ok])
    return (np.max(eig.real, axis=-1) < 0).reshape(shape)


@eqx.filter_jit
def _rest_jacobian(membrane, v_rest, holding):
    """The vector field's Jacobian at the rest state `(n, states, states)` (flattened batch)."""
    shape = membrane.batch_shape
    flat = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, shape).reshape(-1) if eqx.is_array(x) else x, membrane)
    flat = jax.tree_util.tree_map(lambda x: jnp.asarray(x) if isinstance(x, float) else x, flat)

    def jac(m):
        y = m.initial_state(v_rest)
        return jax.jacfwd(lambda y: m.derivatives(y, holding))(y)

    axes = jax.tree_util.tree_map(lambda x: 0 if eqx.is_array(x) and x.ndim == 1 else None, flat)
    return jax.vmap(jac, in_axes=(axes,))(flat) if shape else jac(membrane)[None]


def check_model(model, owner):
    """The membrane to fit: "pospischil" or a channel membrane with `gL` and `EL`."""
    import hh_jax.presets as presets

    if isinstance(model, str):
        if model != "pospischil":
            raise ValueError(f"{owner}: `model` must be 'pospischil' or a membrane with a leak (gL, EL), got {model!r}.")
        model = presets.pospischil()
    if not isinstance(model, AbstractChannelMembrane):
        raise TypeError(f"{owner}: `model` must be 'pospischil' or an hh channel membrane, got {type(model).__name__}.")
    if not {"gL", "EL"} <= set(model.parameter_names):
        raise ValueError(f"{owner}: `model` must have leak parameters gL and EL (the rest is set through EL), "
                         f"got parameters {list(model.parameter_names)}.")
    if model.batch_shape != ():
        raise ValueError(f"{owner}: `model` must be one neuron (scalar parameters), got batch shape {model.batch_shape}.")
    return model


def search_bounds(model, free, bounds, owner) -> dict:
    """{name: (low, high)} for every free parameter: given, the Pospischil defaults, or a
    factor 10 / ±20 mV around the model's value."""
    free = tuple(free)
    if "EL" in free:
        raise ValueError(f"{owner}: `free` may not hold EL: it is set by the recorded resting potential.")
    names = [n for n in model.parameter_names if n != "vshift"]
    unknown = [n for n in free if n not in names]
    if unknown or not free:
        raise ValueError(f"{owner}: unknown parameter(s) {unknown} in `free`; expected names from {names}.")
    bounds = dict(bounds or {})
    extra = sorted(set(bounds) - set(free))
    if extra:
        raise ValueError(f"{owner}: `bounds` given for {extra}, which are not in `free` {list(free)}.")
    out = {}
    for name in free:
        value = float(getattr(model, name))
        if name in bounds:
            lo, hi = (float(b) for b in bounds[name])
        elif type(model).__name__ == "Pospischil" and name in POSPISCHIL_BOUNDS:
            lo, hi = POSPISCHIL_BOUNDS[name]
        elif name in model.positive_parameters:
            lo, hi = value / 10.0, value * 10.0
        else:
            lo, hi = value - 20.0, value + 20.0
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi) or (name in model.positive_parameters and lo <= 0):
            raise ValueError(f"{owner}: `bounds` for {name} must be finite with low < high (and low > 0 for a "
                             f"positive parameter), got ({lo}, {hi}).")
        out[name] = (lo, hi)
    return out


def to_unit(model, bounds, x):
    """Natural values `(..., p)` → coordinates in [0, 1] (log scale for positive parameters)."""
    cols = []
    for i, (name, (lo, hi)) in enumerate(bounds.items()):
        xi = np.asarray(x)[..., i]
        if name in model.positive_parameters:
            cols.append((np.log(xi) - np.log(lo)) / (np.log(hi) - np.log(lo)))
        else:
            cols.append((xi - lo) / (hi - lo))
    return np.stack(cols, axis=-1)


def from_unit(model, bounds, z):
    """Coordinates in [0, 1] `(..., p)` → natural values."""
    cols = []
    for i, (name, (lo, hi)) in enumerate(bounds.items()):
        zi = np.clip(np.asarray(z)[..., i], 0.0, 1.0)
        if name in model.positive_parameters:
            cols.append(np.exp(np.log(lo) + zi * (np.log(hi) - np.log(lo))))
        else:
            cols.append(lo + zi * (hi - lo))
    return np.stack(cols, axis=-1)


def with_values(model, names, x):
    """The model with parameters `names` set to the columns of x `(..., p)` (a batch when x
    has a leading axis)."""
    x = jnp.asarray(x, jnp.result_type(float))
    return eqx.tree_at(lambda m: [getattr(m, n) for n in names], model, [x[..., i] for i in range(len(names))])


def as_arrays(model):
    """Every number of the membrane as an array of the default float type (so compiled code
    treats parameter values as data, not as constants to recompile for)."""
    dtype = jnp.result_type(float)
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype) if isinstance(x, (int, float)) or eqx.is_inexact_array(x) else x, model)
