"""Parameters: the membrane models, as immutable pytrees.

A membrane is an `equinox.Module` whose fields are its parameters (floats or arrays; an array
of any leading shape makes a batch of neurons). It owns its state variables and their
dynamics; the solver only ever sees the interface of `AbstractMembrane`, so new membrane
types plug into `hh.simulate` without touching it.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._rates import safe_exp, vtrap
from ._validation import (
    broadcast_batch_shape,
    check_finite,
    check_nonnegative,
    check_positive,
    is_array,
)


class AbstractMembrane(eqx.Module):
    """A single-compartment membrane: parameters, state variables and their dynamics.

    The state is one array `y` of shape `(len(state_names), *batch)`; `y[0]` is the membrane
    potential V (mV) and the remaining rows are gating variables (dimensionless, in [0, 1]).
    Subclasses define `state_names`, `resting_potential`, `steady_state` and `derivatives`.
    """

    state_names: ClassVar[tuple[str, ...]]

    @abc.abstractmethod
    def resting_potential(self) -> Float[Array, "*batch"]:
        """The default initial membrane potential (mV)."""

    @abc.abstractmethod
    def steady_state(self, V: Float[ArrayLike, "*batch"]) -> Float[Array, "gates *batch"]:
        """Gating variables at their steady state for a clamped potential V (mV)."""

    @abc.abstractmethod
    def derivatives(
        self, y: Float[Array, "states *batch"], current: Float[ArrayLike, "*batch"]
    ) -> Float[Array, "states *batch"]:
        """dy/dt (mV/ms for V, 1/ms for gates) under an injected current density (µA/cm²)."""

    def spike_threshold(self) -> Float[ArrayLike, "*batch"]:
        """Default spike-detection level (mV) for this membrane's voltage convention: 0 mV."""
        return 0.0

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """The broadcast shape of all parameter values: () for a single neuron."""
        shapes = {
            f.name: np.shape(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if _is_value(getattr(self, f.name))
        }
        return broadcast_batch_shape(type(self).__name__, shapes)

    def initial_state(self, v0=None, batch_shape=()) -> Float[Array, "states *batch"]:
        """The state at potential `v0` (mV; default: the resting potential), gates at steady
        state, broadcast to the parameters' batch shape (and `batch_shape`, if larger)."""
        V = self.resting_potential() if v0 is None else jnp.asarray(v0)
        shape = jnp.broadcast_shapes(self.batch_shape, jnp.shape(V), tuple(batch_shape))
        V = jnp.broadcast_to(V, shape)
        gates = jnp.broadcast_to(self.steady_state(V), (len(self.state_names) - 1, *shape))
        return jnp.concatenate([V[None], gates], axis=0)


def _is_value(v) -> bool:
    return isinstance(v, (int, float)) or is_array(v)


def q10_factor(celsius, base_celsius=6.3, q10=3.0):
    """Temperature factor q10^((celsius − base)/10) that scales gate rates (NEURON's `hh.mod`)."""
    return q10 ** ((celsius - base_celsius) / 10.0)


def hh_rates(v):
    """The Hodgkin–Huxley rate constants (1/ms) at 6.3 °C, in NEURON's convention (rest −65 mV).

    These are the formulas of NEURON's `hh.mod`, with its `vtrap` made finite at the removable
    singularities (v = −55 mV for αn, v = −40 mV for αm).

    **Arguments:**
    - `v`: membrane potential (mV), NEURON convention; any shape.

    **Returns:** `(alpha_n, beta_n, alpha_m, beta_m, alpha_h, beta_h)`, each shaped like `v`.
    """
    alpha_n = 0.01 * vtrap(-(v + 55.0), 10.0)
    beta_n = 0.125 * safe_exp(-(v + 65.0) / 80.0)
    alpha_m = 0.1 * vtrap(-(v + 40.0), 10.0)
    beta_m = 4.0 * safe_exp(-(v + 65.0) / 18.0)
    alpha_h = 0.07 * safe_exp(-(v + 65.0) / 20.0)
    beta_h = 1.0 / (safe_exp(-(v + 35.0) / 10.0) + 1.0)
    return alpha_n, beta_n, alpha_m, beta_m, alpha_h, beta_h


class HodgkinHuxley(AbstractMembrane):
    """The Hodgkin–Huxley (1952) squid-axon membrane: Na, K and leak currents.

    One set of equations serves both voltage conventions: rates are NEURON's `hh.mod` evaluated
    at `V − vshift`, so `vshift = 0` is NEURON's convention (rest near −65 mV) and
    `vshift = 65` the original one with rest at 0 mV. Build it with `hh.presets.seed()` or
    `hh.presets.neuron()`, which fill in every field; any field may be an array, and all array
    fields broadcast together to the batch shape.

    **Fields:**
    - `gNa`, `gK`, `gL`: maximal conductances (mS/cm²), >= 0.
    - `ENa`, `EK`, `EL`: reversal potentials (mV).
    - `Cm`: membrane capacitance (µF/cm²), > 0.
    - `celsius`: temperature (°C); gate rates are scaled by 3^((celsius − 6.3)/10).
    - `vshift`: offset of this model's voltage axis from NEURON's (mV):
      V_here = V_NEURON + vshift.
    """

    gNa: Float[ArrayLike, "*batch"]
    gK: Float[ArrayLike, "*batch"]
    gL: Float[ArrayLike, "*batch"]
    ENa: Float[ArrayLike, "*batch"]
    EK: Float[ArrayLike, "*batch"]
    EL: Float[ArrayLike, "*batch"]
    Cm: Float[ArrayLike, "*batch"]
    celsius: Float[ArrayLike, "*batch"]
    vshift: Float[ArrayLike, "*batch"]

    state_names: ClassVar[tuple[str, ...]] = ("V", "n", "m", "h")
    parameter_names: ClassVar[tuple[str, ...]] = (
        "gNa", "gK", "gL", "ENa", "EK", "EL", "Cm", "celsius", "vshift",
    )

    def __check_init__(self):
        owner = type(self).__name__
        for name in self.parameter_names:
            check_finite(name, getattr(self, name), owner)
        for name in ("gNa", "gK", "gL"):
            check_nonnegative(name, getattr(self, name), owner, "mS/cm²")
        check_positive("Cm", self.Cm, owner, "µF/cm²")
        _ = self.batch_shape  # raises if the array fields do not broadcast together

    def resting_potential(self):
        """−65 mV in NEURON's convention, shifted by `vshift` (0 mV for the seed preset)."""
        return jnp.asarray(self.vshift - 65.0)

    def spike_threshold(self):
        """0 mV in NEURON's convention, shifted by `vshift` (65 mV for the seed preset)."""
        return self.vshift + 0.0

    def _gate_rates(self, V):
        alpha_n, beta_n, alpha_m, beta_m, alpha_h, beta_h = hh_rates(V - self.vshift)
        return (alpha_n, beta_n), (alpha_m, beta_m), (alpha_h, beta_h)

    def steady_state(self, V):
        V = jnp.asarray(V)
        infs = [a / (a + b) for a, b in self._gate_rates(V)]
        return jnp.stack(jnp.broadcast_arrays(*infs))

    def derivatives(self, y, current):
        V, n, m, h = y[0], y[1], y[2], y[3]
        phi = q10_factor(self.celsius)
        (an, bn), (am, bm), (ah, bh) = self._gate_rates(V)
        dn = phi * (an * (1.0 - n) - bn * n)
        dm = phi * (am * (1.0 - m) - bm * m)
        dh = phi * (ah * (1.0 - h) - bh * h)
        i_ion = (
            self.gNa * m**3 * h * (V - self.ENa)
            + self.gK * n**4 * (V - self.EK)
            + self.gL * (V - self.EL)
        )
        dV = (current - i_ion) / self.Cm
        return jnp.stack(jnp.broadcast_arrays(dV, dn, dm, dh))
