"""Channels: the currents a membrane is built from.

A channel is a small `equinox.Module`: its parameters are fields (conductance, reversal
potential, anything its kinetics need), `gates` names its gating variables, and it says how
the gates move and what current flows. A membrane made of channels
(`hh.AbstractChannelMembrane`) stacks their gates into the state and sums their currents, so
a new channel never touches the solver or the fitter:

    class AType(hh.InfTauChannel):              # an A-type K⁺ current, I = g a³ b (V − E)
        g: float = 10.0                         # mS/cm²
        E: float = -90.0                        # mV
        gates = ("a", "b")
        def inf_tau(self, V):
            a_inf = 1 / (1 + jnp.exp(-(V + 60) / 8.5)); tau_a = 0.4
            b_inf = 1 / (1 + jnp.exp((V + 78) / 6)); tau_b = 20.0
            return (a_inf, tau_a), (b_inf, tau_b)
        def current(self, V, gates):
            a, b = gates
            return self.g * a**3 * b * (V - self.E)

Currents are outward-positive densities (µA/cm²), potentials in mV, times in ms, rates in 1/ms.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ._rates import safe_exp, vtrap
from ._validation import check_finite, check_nonnegative, is_array


class AbstractChannel(eqx.Module):
    """A transmembrane current with gating variables.

    Subclasses set `gates` (names of the gating variables, possibly empty) and implement
    `steady_state`, `gate_derivatives` and `current`; or derive from `hh.AlphaBetaChannel` /
    `hh.InfTauChannel`, which supply the first two from rate functions.
    `positive_parameters` and `potential_parameters` tell the fitter which fields are
    conductance-like (fitted in log space) and which are potentials (in mV).

    Example:
        >>> class Kir(hh.InfTauChannel): ...   # see the module docstring for a full channel
    """

    gates: ClassVar[tuple[str, ...]] = ()
    positive_parameters: ClassVar[tuple[str, ...]] = ("g",)
    potential_parameters: ClassVar[tuple[str, ...]] = ("E",)

    def __check_init__(self):
        """Every numeric field finite; the `positive_parameters` (conductances, time
        constants) >= 0. Runs for every channel, including those users define."""
        owner = f"hh.{type(self).__name__}"
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) or is_array(value):
                check_finite(field.name, value, owner)
        for name in self.positive_parameters:
            if getattr(self, name, None) is not None:
                check_nonnegative(name, getattr(self, name), owner, "")

    @abc.abstractmethod
    def steady_state(self, V: Float[ArrayLike, "*batch"]) -> tuple[Float[Array, "*batch"], ...]:
        """The gates' values at a clamped potential V (mV), one array per gate."""

    @abc.abstractmethod
    def gate_derivatives(self, V, gates: tuple) -> tuple[Float[Array, "*batch"], ...]:
        """d gate / dt (1/ms), one array per gate."""

    @abc.abstractmethod
    def current(self, V, gates: tuple) -> Float[Array, "*batch"]:
        """Outward current density (µA/cm²)."""

    def gate_derivatives_and_diagonal(self, V, gates: tuple):
        """(d gate/dt, ∂(d gate/dt)/∂gate) per gate, for exponential-Euler steps. By default
        from forward-mode derivatives, one per gate; subclasses with closed forms override."""
        derivs = self.gate_derivatives(V, gates)
        diag = []
        for i in range(len(gates)):
            tangent = tuple(jnp.ones_like(g) if k == i else jnp.zeros_like(g) for k, g in enumerate(gates))
            _, jv = jax.jvp(lambda gs: self.gate_derivatives(V, gs), (tuple(gates),), (tangent,))
            diag.append(jv[i])
        return tuple(derivs), tuple(diag)


class AlphaBetaChannel(AbstractChannel):
    """A channel whose gates open at rate α(V) and close at rate β(V) (1/ms):
    dx/dt = φ·(α(1 − x) − βx), steady state α/(α + β); φ = `rate_factor()` (1 by default,
    a temperature factor for example). Subclasses implement `rates(V)` and `current`.

    Example:
        >>> hh.HHSodium(g=120.0, E=50.0).steady_state(-65.0)   # (m∞, h∞)
    """

    @abc.abstractmethod
    def rates(self, V) -> tuple[tuple[Float[Array, "*batch"], Float[Array, "*batch"]], ...]:
        """((α, β) for each gate), in 1/ms."""

    def rate_factor(self):
        return 1.0

    def steady_state(self, V):
        return tuple(a / (a + b) for a, b in self.rates(V))

    def gate_derivatives(self, V, gates):
        phi = self.rate_factor()
        return tuple(phi * (a * (1.0 - x) - b * x) for (a, b), x in zip(self.rates(V), gates))

    def gate_derivatives_and_diagonal(self, V, gates):
        phi = self.rate_factor()
        rates = self.rates(V)
        derivs = tuple(phi * (a * (1.0 - x) - b * x) for (a, b), x in zip(rates, gates))
        return derivs, tuple(-phi * (a + b) for a, b in rates)


class InfTauChannel(AbstractChannel):
    """A channel whose gates relax to x∞(V) with time constant τ(V) (ms):
    dx/dt = (x∞ − x)/τ. Subclasses implement `inf_tau(V)` and `current`.

    Example:
        >>> class Kslow(hh.InfTauChannel):
        ...     g: float; E: float = -90.0; gates = ("s",)
        ...     def inf_tau(self, V): return ((1 / (1 + jnp.exp(-(V + 30) / 10)), 200.0),)
        ...     def current(self, V, gates): return self.g * gates[0] * (V - self.E)
    """

    @abc.abstractmethod
    def inf_tau(self, V) -> tuple[tuple[Float[Array, "*batch"], Float[ArrayLike, "*batch"]], ...]:
        """((x∞, τ) for each gate), τ in ms."""

    def steady_state(self, V):
        return tuple(jnp.asarray(inf) for inf, _ in self.inf_tau(V))

    def gate_derivatives(self, V, gates):
        return tuple((inf - x) / tau for (inf, tau), x in zip(self.inf_tau(V), gates))

    def gate_derivatives_and_diagonal(self, V, gates):
        pairs = self.inf_tau(V)
        derivs = tuple((inf - x) / tau for (inf, tau), x in zip(pairs, gates))
        return derivs, tuple(-1.0 / jnp.asarray(tau) + jnp.zeros_like(x) for (_, tau), x in zip(pairs, gates))


class Leak(AbstractChannel):
    """Ohmic leak, I = g (V − E): g in mS/cm², E in mV.

    Example:
        >>> hh.Leak(g=0.3, E=-54.3).current(-65.0, ())   # −3.21 µA/cm²
    """

    g: Float[ArrayLike, "*batch"]
    E: Float[ArrayLike, "*batch"]

    def steady_state(self, V):
        return ()

    def gate_derivatives(self, V, gates):
        return ()

    def current(self, V, gates):
        return self.g * (V - self.E)


# ----------------------------------------------------------------------- Hodgkin–Huxley


def q10_factor(celsius, base_celsius=6.3, q10=3.0):
    """Temperature factor q10^((celsius − base)/10) that scales gate rates (NEURON's `hh.mod`).

    Example:
        >>> hh.q10_factor(16.3)   # 3.0
    """
    return q10 ** ((celsius - base_celsius) / 10.0)


def _hh_sodium_rates(v):
    """αm, βm, αh, βh (1/ms) of `hh.mod` at 6.3 °C; v in mV, NEURON convention."""
    alpha_m = 0.1 * vtrap(-(v + 40.0), 10.0)
    beta_m = 4.0 * safe_exp(-(v + 65.0) / 18.0)
    alpha_h = 0.07 * safe_exp(-(v + 65.0) / 20.0)
    beta_h = 1.0 / (safe_exp(-(v + 35.0) / 10.0) + 1.0)
    return alpha_m, beta_m, alpha_h, beta_h


def _hh_potassium_rates(v):
    """αn, βn (1/ms) of `hh.mod` at 6.3 °C; v in mV, NEURON convention."""
    alpha_n = 0.01 * vtrap(-(v + 55.0), 10.0)
    beta_n = 0.125 * safe_exp(-(v + 65.0) / 80.0)
    return alpha_n, beta_n


def hh_rates(v):
    """The Hodgkin–Huxley rate constants (1/ms) at 6.3 °C, in NEURON's convention (rest −65 mV).

    These are the formulas of NEURON's `hh.mod`, with its `vtrap` made finite at the removable
    singularities (v = −55 mV for αn, v = −40 mV for αm): the same functions `hh.HHSodium`
    and `hh.HHPotassium` (and so `hh.HodgkinHuxley`) integrate.

    **Arguments:**
    - `v`: membrane potential (mV), NEURON convention; any shape.

    **Returns:** `(alpha_n, beta_n, alpha_m, beta_m, alpha_h, beta_h)`, each shaped like `v`.

    Example:
        >>> an, bn, am, bm, ah, bh = hh.hh_rates(jnp.linspace(-100.0, 50.0, 151))
    """
    return (*_hh_potassium_rates(v), *_hh_sodium_rates(v))


class HHSodium(AlphaBetaChannel):
    """The squid-axon Na⁺ current of NEURON's `hh.mod`, I = g m³h (V − E), rates evaluated
    at V − vshift and scaled by 3^((celsius − 6.3)/10).

    Example:
        >>> hh.HHSodium(g=120.0, E=50.0, celsius=20.0).gate_derivatives(-65.0, (0.05, 0.6))
    """

    g: Float[ArrayLike, "*batch"]
    E: Float[ArrayLike, "*batch"]
    vshift: Float[ArrayLike, "*batch"] = 0.0
    celsius: Float[ArrayLike, "*batch"] = 6.3
    gates: ClassVar[tuple[str, ...]] = ("m", "h")

    def rates(self, V):
        alpha_m, beta_m, alpha_h, beta_h = _hh_sodium_rates(V - self.vshift)
        return (alpha_m, beta_m), (alpha_h, beta_h)

    def rate_factor(self):
        return q10_factor(self.celsius)

    def current(self, V, gates):
        m, h = gates
        return self.g * m**3 * h * (V - self.E)


class HHPotassium(AlphaBetaChannel):
    """The squid-axon delayed-rectifier K⁺ current of `hh.mod`, I = g n⁴ (V − E).

    Example:
        >>> hh.HHPotassium(g=36.0, E=-77.0).current(-65.0, (0.3177,))   # µA/cm²
    """

    g: Float[ArrayLike, "*batch"]
    E: Float[ArrayLike, "*batch"]
    vshift: Float[ArrayLike, "*batch"] = 0.0
    celsius: Float[ArrayLike, "*batch"] = 6.3
    gates: ClassVar[tuple[str, ...]] = ("n",)

    def rates(self, V):
        return (_hh_potassium_rates(V - self.vshift),)

    def rate_factor(self):
        return q10_factor(self.celsius)

    def current(self, V, gates):
        (n,) = gates
        return self.g * n**4 * (V - self.E)


# ----------------------------------------------------------------------- Pospischil et al. 2008


class PospischilSodium(AlphaBetaChannel):
    """Na⁺ current of Pospischil et al. (2008), I = g m³h (V − E), with the threshold
    parameter VT (mV) shifting all rates (Traub–Miles kinetics).

    Example:
        >>> hh.PospischilSodium(g=56.0, E=50.0, VT=-56.2).steady_state(-70.0)
    """

    g: Float[ArrayLike, "*batch"]
    E: Float[ArrayLike, "*batch"]
    VT: Float[ArrayLike, "*batch"]
    gates: ClassVar[tuple[str, ...]] = ("m", "h")
    potential_parameters: ClassVar[tuple[str, ...]] = ("E", "VT")

    def rates(self, V):
        v = V - self.VT
        alpha_m = 0.32 * vtrap(-(v - 13.0), 4.0)
        beta_m = 0.28 * vtrap(v - 40.0, 5.0)
        alpha_h = 0.128 * safe_exp(-(v - 17.0) / 18.0)
        beta_h = 4.0 / (1.0 + safe_exp(-(v - 40.0) / 5.0))
        return (alpha_m, beta_m), (alpha_h, beta_h)

    def current(self, V, gates):
        m, h = gates
        return self.g * m**3 * h * (V - self.E)


class PospischilPotassium(AlphaBetaChannel):
    """Delayed-rectifier K⁺ current of Pospischil et al. (2008), I = g n⁴ (V − E).

    Example:
        >>> hh.PospischilPotassium(g=6.0, E=-90.0, VT=-56.2).steady_state(-70.0)
    """

    g: Float[ArrayLike, "*batch"]
    E: Float[ArrayLike, "*batch"]
    VT: Float[ArrayLike, "*batch"]
    gates: ClassVar[tuple[str, ...]] = ("n",)
    potential_parameters: ClassVar[tuple[str, ...]] = ("E", "VT")

    def rates(self, V):
        v = V - self.VT
        alpha_n = 0.032 * vtrap(-(v - 15.0), 5.0)
        beta_n = 0.5 * safe_exp(-(v - 10.0) / 40.0)
        return ((alpha_n, beta_n),)

    def current(self, V, gates):
        (n,) = gates
        return self.g * n**4 * (V - self.E)


class MCurrent(InfTauChannel):
    """Slow non-inactivating K⁺ (M-type) current of Pospischil et al. (2008), I = g p (V − E):
    p∞ = 1/(1 + exp(−(V + 35)/10)), τp = τmax / (3.3 exp((V + 35)/20) + exp(−(V + 35)/20)).

    Example:
        >>> hh.MCurrent(g=0.075, E=-90.0, tau_max=608.0).inf_tau(-60.0)
    """

    g: Float[ArrayLike, "*batch"]
    E: Float[ArrayLike, "*batch"]
    tau_max: Float[ArrayLike, "*batch"]
    gates: ClassVar[tuple[str, ...]] = ("p",)
    positive_parameters: ClassVar[tuple[str, ...]] = ("g", "tau_max")

    def inf_tau(self, V):
        x = V + 35.0
        p_inf = 1.0 / (1.0 + safe_exp(-x / 10.0))
        tau = self.tau_max / (3.3 * safe_exp(x / 20.0) + safe_exp(-x / 20.0))
        return ((p_inf, tau),)

    def current(self, V, gates):
        (p,) = gates
        return self.g * p * (V - self.E)
