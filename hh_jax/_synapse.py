"""Synapses: conductance-based connections between neurons of a network.

A synapse is a small `equinox.Module` holding the parameters of one receptor type. The
current it drives into a postsynaptic neuron is I = g · B(V) · (E − V) (µA/cm², inward
positive), with g the summed conductance density (mS/cm²) of its connections, E its
reversal potential (mV) and B a voltage-dependent block (1 except for NMDA receptors).

Presynaptic spikes reach synapses as a *release drive*: every presynaptic neuron has a
detector σ(V) = 1 / (1 + exp(−(V − θ)/k)) (θ the population's threshold, k its sharpness)
that climbs from 0 to 1 on each spike's upstroke. Its rate of rise, r(t) = max(dσ/dt, 0)
(1/ms), is a smooth pulse whose integral is exactly 1 per spike, whatever the spike's shape,
so a network is one ODE and gradients flow through spikes. Short-term plasticity
(`hh.TsodyksMarkram`) turns r into a release flux R(t) whose integral per spike is the
fraction u·x of resources released.

Two kinds of synapse:
- `hh.ExpSynapse` (exponential decay, as in the COBAHH benchmark): dg/dt = −g/τ + Σ w R, so
  each presynaptic spike adds w (× u·x with STP) to g. Its state is per postsynaptic neuron.
- `hh.KineticSynapse` (Destexhe, Mainen & Sejnowski 1994): the fraction r of bound receptors
  obeys dr/dt = α T (1 − r) − β r with transmitter T = Tmax / (1 + exp(−(V_pre − Vp)/Kp))
  released continuously by the presynaptic voltage; g = Σ w r. Its state is per
  presynaptic neuron. `hh.AMPA`, `hh.GABAA` and `hh.NMDA` give the published kinetics
  (Destexhe, Mainen & Sejnowski 1998, in *Methods in Neuronal Modeling*).

Potentials are absolute, in the membranes' convention (the defaults are for the modern one,
rest near −65 mV); times in ms; conductance weights in mS/cm² of postsynaptic membrane
(nS on a cell of area A cm²: w = nS × 1e-6 / A).
"""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ._rates import safe_exp
from ._validation import check_finite, check_nonnegative, check_positive


class AbstractSynapse(eqx.Module):
    """A receptor type: its kinetics, reversal potential and voltage block.

    Subclasses name their state variables in `pre_states` (one value per presynaptic
    neuron) or `post_states` (one per postsynaptic neuron) and implement `derivatives`,
    `conductance` and, for post-state synapses driven by release, `jump`.

    Example:
        >>> syn = hh.ExpSynapse(tau=5.0, E=0.0)
        >>> syn.post_states
        ('g',)
    """

    E: Float[ArrayLike, ""]
    pre_states: ClassVar[tuple[str, ...]] = ()
    post_states: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def derivatives(self, state: dict, V_pre, release_sum, efficacy) -> dict:
        """d state / dt. `V_pre` (mV) per presynaptic neuron; `release_sum` the weighted sum
        Σ w R (mS/cm²/ms) per postsynaptic neuron; `efficacy` per presynaptic neuron (the
        release fraction of the current spike with STP, else 1)."""

    @abc.abstractmethod
    def conductance(self, state: dict, weighted_sum) -> Float[Array, " n_post"]:
        """The conductance density (mS/cm²) per postsynaptic neuron; `weighted_sum(x)` maps a
        per-presynaptic quantity x to Σ_connections w x per postsynaptic neuron."""

    def jump(self, state: dict, release_sum) -> dict:
        """The state after a release of Σ w ΔR per postsynaptic neuron (fixed-step runs)."""
        return state

    def diagonal(self, state: dict, V_pre, efficacy) -> dict:
        """∂(d s/dt)/∂s for each state variable s, without release (for exponential Euler).
        By default by forward mode, one variable at a time; subclasses give closed forms
        (scalars where the rate is the same for every neuron)."""
        out = {}
        for var in state:
            def f(x, var=var):
                zero = jnp.zeros_like(next(iter(state.values())))
                return self.derivatives({**state, var: x}, V_pre, zero, efficacy)[var]
            out[var] = jax.jvp(f, (state[var],), (jnp.ones_like(state[var]),))[1]
        return out

    def block(self, V_post) -> Float[ArrayLike, " n_post"]:
        """The voltage-dependent fraction of unblocked channels: 1 (no block)."""
        return 1.0

    def current(self, state: dict, weighted_sum, V_post) -> Float[Array, " n_post"]:
        """Synaptic current density into the postsynaptic neurons (µA/cm², inward positive)."""
        return self.conductance(state, weighted_sum) * self.block(V_post) * (self.E - V_post)


class ExpSynapse(AbstractSynapse):
    """A conductance that jumps by the weight on each presynaptic spike and decays
    exponentially: dg/dt = −g/τ + Σ w R(t). The synapse of the COBAHH benchmark
    (Brette et al. 2007): τe = 5 ms, Ee = 0 mV; τi = 10 ms, Ei = −80 mV.

    **Fields:** `tau` (ms, > 0), `E` (mV).

    Example:
        >>> exc = hh.ExpSynapse(tau=5.0, E=0.0)
        >>> inh = hh.ExpSynapse(tau=10.0, E=-80.0)
    """

    tau: Float[ArrayLike, ""] = 5.0
    E: Float[ArrayLike, ""] = 0.0
    post_states: ClassVar[tuple[str, ...]] = ("g",)

    def __check_init__(self):
        check_positive("tau", self.tau, "hh.ExpSynapse", "ms")
        check_finite("E", self.E, "hh.ExpSynapse")

    def derivatives(self, state, V_pre, release_sum, efficacy):
        return {"g": -state["g"] / self.tau + release_sum}

    def conductance(self, state, weighted_sum):
        return state["g"]

    def jump(self, state, release_sum):
        return {"g": state["g"] + release_sum}

    def diagonal(self, state, V_pre, efficacy):
        return {"g": -1.0 / jnp.asarray(self.tau)}


class KineticSynapse(AbstractSynapse):
    """Kinetic receptor binding (Destexhe, Mainen & Sejnowski 1994): transmitter
    T = Tmax·ε / (1 + exp(−(V_pre − Vp)/Kp)) binds receptors, dr/dt = α T (1 − r) − β r,
    and the conductance is g = Σ w r (w the maximal conductance of a connection). With
    short-term plasticity ε is the release fraction u·x of the current spike, else 1.
    With `mg` set, the NMDA Mg²⁺ block of Jahr & Stevens (1990),
    B(V) = 1 / (1 + exp(−0.062 V) · mg / 3.57), multiplies the current.

    **Fields:** `alpha` (1/(mM·ms)), `beta` (1/ms), `E` (mV), `Tmax` (mM), `Vp` (mV, half
    release), `Kp` (mV, release steepness), `mg` (mM, or None for no block).

    Example:
        >>> syn = hh.KineticSynapse(alpha=1.1, beta=0.19, E=0.0)   # = hh.AMPA()
    """

    alpha: Float[ArrayLike, ""]
    beta: Float[ArrayLike, ""]
    E: Float[ArrayLike, ""]
    Tmax: Float[ArrayLike, ""] = 1.0
    Vp: Float[ArrayLike, ""] = 2.0
    Kp: Float[ArrayLike, ""] = 5.0
    mg: Float[ArrayLike, ""] | None = None
    pre_states: ClassVar[tuple[str, ...]] = ("r",)

    def __check_init__(self):
        owner = "hh.KineticSynapse"
        check_positive("alpha", self.alpha, owner, "1/(mM·ms)")
        check_positive("beta", self.beta, owner, "1/ms")
        check_positive("Tmax", self.Tmax, owner, "mM")
        check_positive("Kp", self.Kp, owner, "mV")
        check_finite("E", self.E, owner)
        check_finite("Vp", self.Vp, owner)
        if self.mg is not None:
            check_nonnegative("mg", self.mg, owner, "mM")

    def transmitter(self, V_pre, efficacy=1.0):
        """Transmitter concentration (mM) for presynaptic potentials V_pre (mV)."""
        return self.Tmax * efficacy * jax.nn.sigmoid((V_pre - self.Vp) / self.Kp)

    def derivatives(self, state, V_pre, release_sum, efficacy):
        r = state["r"]
        T = self.transmitter(V_pre, efficacy)
        return {"r": self.alpha * T * (1.0 - r) - self.beta * r}

    def conductance(self, state, weighted_sum):
        return weighted_sum(state["r"])

    def diagonal(self, state, V_pre, efficacy):
        return {"r": -(self.alpha * self.transmitter(V_pre, efficacy) + self.beta)}

    def block(self, V_post):
        if self.mg is None:
            return 1.0
        return 1.0 / (1.0 + safe_exp(-0.062 * V_post) * self.mg / 3.57)


def AMPA(**overrides) -> KineticSynapse:
    """AMPA receptors: α 1.1 /(mM·ms), β 0.19 /ms, E 0 mV (Destexhe et al. 1998).

    Example:
        >>> hh.AMPA(E=65.0)     # for a network of hh1952-convention (rest at 0 mV) neurons
    """
    return KineticSynapse(**{"alpha": 1.1, "beta": 0.19, "E": 0.0, **overrides})


def GABAA(**overrides) -> KineticSynapse:
    """GABA-A receptors: α 5 /(mM·ms), β 0.18 /ms, E −80 mV (Destexhe et al. 1998).

    Example:
        >>> hh.GABAA()
    """
    return KineticSynapse(**{"alpha": 5.0, "beta": 0.18, "E": -80.0, **overrides})


def NMDA(**overrides) -> KineticSynapse:
    """NMDA receptors: α 0.072 /(mM·ms), β 0.0066 /ms, E 0 mV, with the Mg²⁺ block of
    Jahr & Stevens (1990) at [Mg²⁺]o = 1 mM (Destexhe et al. 1998).

    Example:
        >>> hh.NMDA(mg=2.0)
    """
    return KineticSynapse(**{"alpha": 0.072, "beta": 0.0066, "E": 0.0, "mg": 1.0, **overrides})
