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
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._channels import (
    AbstractChannel,
    HHPotassium,
    HHSodium,
    Leak,
    MCurrent,
    PospischilPotassium,
    PospischilSodium,
)
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

    Example:
        >>> p = hh.presets.neuron()
        >>> p.initial_state().shape, p.state_names
        ((4,), ('V', 'n', 'm', 'h'))
    """

    state_names: ClassVar[tuple[str, ...]]
    # For the fitter: which parameters exist, which are positive (fitted in log space) and
    # which are potentials (mV). Membranes with nested parameters name them by dotted paths.
    parameter_names: ClassVar[tuple[str, ...]] = ()
    positive_parameters: ClassVar[tuple[str, ...]] = ()
    potential_parameters: ClassVar[tuple[str, ...]] = ()

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

    def derivatives_and_diagonal(self, y, current_of_V):
        """(dy/dt, the diagonal of its Jacobian ∂(dy_i/dt)/∂y_i), with the injected current
        (µA/cm²) a function `current_of_V(V)` of the potential (synaptic currents depend on
        it). Used by exponential-Euler steps; by default one forward-mode derivative per
        state row."""
        f = lambda y: self.derivatives(y, current_of_V(y[0]))  # noqa: E731
        dy = f(y)
        diag = []
        for i in range(y.shape[0]):
            _, jv = jax.jvp(f, (y,), (jnp.zeros_like(y).at[i].set(1.0),))
            diag.append(jv[i])
        return dy, jnp.stack(diag)

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


class AbstractChannelMembrane(AbstractMembrane):
    """A membrane built from channels: C dV/dt = I_injected − Σ I_channel.

    Subclasses implement `channels()` (the channel modules, built from the membrane's own
    fields or stored in it) and have a capacitance field `Cm` (µF/cm²). The state is V
    followed by every channel's gates in order; a gate is named by its own name, or
    `"<Channel>.<gate>"` where two channels use the same name.

    Example:
        >>> hh.presets.pospischil().state_names
        ('V', 'm', 'h', 'n', 'p')
    """

    @abc.abstractmethod
    def channels(self) -> tuple[AbstractChannel, ...]:
        """The channels, in state order."""

    @property
    def state_names(self) -> tuple[str, ...]:
        pairs = [(type(ch).__name__, gate) for ch in self.channels() for gate in ch.gates]
        counts = {}
        for _, gate in pairs:
            counts[gate] = counts.get(gate, 0) + 1
        return ("V",) + tuple(g if counts[g] == 1 else f"{c}.{g}" for c, g in pairs)

    def steady_state(self, V):
        V = jnp.asarray(V)
        gates = [x for ch in self.channels() for x in ch.steady_state(V)]
        if not gates:
            return jnp.zeros((0,) + V.shape, V.dtype)
        return jnp.stack(jnp.broadcast_arrays(*gates))

    def total_current(self, V, gates_by_channel) -> Float[Array, "*batch"]:
        """Σ channel currents (µA/cm², outward positive)."""
        total = 0.0
        for ch, gates in zip(self.channels(), gates_by_channel):
            total = total + ch.current(V, gates)
        return total

    def channel_gates(self, gate_rows):
        """Pair each channel with its gates, taken in order from the rows `gate_rows`."""
        pairs, row = [], 0
        for ch in self.channels():
            pairs.append((ch, tuple(gate_rows[row + i] for i in range(len(ch.gates)))))
            row += len(ch.gates)
        return pairs

    def derivatives(self, y, current):
        V = y[0]
        dgates, total = [], 0.0
        for ch, gates in self.channel_gates(y[1:]):
            total = total + ch.current(V, gates)
            dgates.extend(ch.gate_derivatives(V, gates))
        dV = (current - total) / self.Cm
        return jnp.stack(jnp.broadcast_arrays(dV, *dgates))

    def derivatives_and_diagonal(self, y, current_of_V):
        # Closed forms from the channels (gates), and ∂I/∂V of each current by forward mode.
        V = y[0]
        one = jnp.ones_like(V)
        current, dcurrent = jax.jvp(current_of_V, (V,), (one,))
        dgates, bgates, total, dtotal = [], [], 0.0, 0.0
        for ch, gates in self.channel_gates(y[1:]):
            i_ch, di_ch = jax.jvp(lambda v: ch.current(v, gates), (V,), (one,))
            total, dtotal = total + i_ch, dtotal + di_ch
            d, b = ch.gate_derivatives_and_diagonal(V, gates)
            dgates.extend(d)
            bgates.extend(b)
        dV = (current - total) / self.Cm
        bV = (dcurrent - dtotal) / self.Cm
        return (jnp.stack(jnp.broadcast_arrays(dV, *dgates)),
                jnp.stack(jnp.broadcast_arrays(bV, *bgates)))

    def resting_potential(self):
        """The potential (mV) where the channel currents cancel with every gate at steady
        state, by Newton's method from −65 mV (damped to 10 mV per step)."""
        return _rest_by_newton(self, -65.0)


def _check_parameters(membrane, conductances, positive):
    """Eager checks of a flat membrane: every parameter finite, conductances (mS/cm²) >= 0,
    `positive` ({name: unit}) > 0, and the array fields broadcast to one batch shape."""
    owner = type(membrane).__name__
    for name in membrane.parameter_names:
        check_finite(name, getattr(membrane, name), owner)
    for name in conductances:
        check_nonnegative(name, getattr(membrane, name), owner, "mS/cm²")
    for name, unit in positive.items():
        check_positive(name, getattr(membrane, name), owner, unit)
    _ = membrane.batch_shape  # raises if the array fields do not broadcast together


def floats_as_arrays(tree):
    """Python-float leaves as arrays, so that a compiled function taking `tree` is reused
    across parameter values instead of compiled again for each (floats are static to
    `eqx.filter_jit`)."""
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x) if isinstance(x, float) else x, tree)


def _rest_by_newton(membrane, guess, iterations=40):
    return _newton_rest(floats_as_arrays(membrane), jnp.asarray(guess, jnp.result_type(float)), iterations)


@eqx.filter_jit  # one compiled Newton loop per kind of membrane, not one per eager call
def _newton_rest(membrane, guess, iterations):
    def net(V):
        pairs = membrane.channel_gates(membrane.steady_state(V))
        return membrane.total_current(V, [gates for _, gates in pairs])

    V = jnp.broadcast_to(guess, membrane.batch_shape)

    def step(_, V):
        f, df = jax.jvp(net, (V,), (jnp.ones_like(V),))
        return V - jnp.clip(f / df, -10.0, 10.0)

    return jax.lax.fori_loop(0, iterations, step, V)


class ChannelMembrane(AbstractChannelMembrane):
    """A membrane assembled from any channels, named in a dict.

    **Fields:** `channel_map` {name: channel}, `Cm` (µF/cm²), `v_rest` (mV, the default
    initial potential; None: where the currents cancel). Fit its parameters by dotted
    paths, e.g. `free=("na.g", "kdr.g", "leak.E")`.

    Example:
        >>> m = hh.ChannelMembrane({"na": hh.HHSodium(g=120.0, E=50.0),
        ...                         "k": hh.HHPotassium(g=36.0, E=-77.0),
        ...                         "leak": hh.Leak(g=0.3, E=-54.3)}, Cm=1.0)
    """

    channel_map: dict
    Cm: Float[ArrayLike, "*batch"] = 1.0
    v_rest: float | None = None

    def __check_init__(self):
        owner = "hh.ChannelMembrane"
        if not isinstance(self.channel_map, dict) or not self.channel_map:
            raise ValueError(f"{owner}: `channel_map` must be a non-empty dict {{name: channel}}.")
        for name, ch in self.channel_map.items():
            if not isinstance(ch, AbstractChannel):
                raise TypeError(f"{owner}: channel {name!r} must be an hh channel (AbstractChannel), got {type(ch).__name__}.")
            if "." in name:
                raise ValueError(f"{owner}: channel names may not contain '.', got {name!r}.")
        check_positive("Cm", self.Cm, owner, "µF/cm²")

    def channels(self):
        return tuple(self.channel_map.values())

    @property
    def batch_shape(self) -> tuple[int, ...]:
        shapes = {"Cm": np.shape(self.Cm)}
        for cname, ch in self.channel_map.items():
            for f in dataclasses.fields(ch):
                value = getattr(ch, f.name)
                if _is_value(value):
                    shapes[f"{cname}.{f.name}"] = np.shape(value)
        return broadcast_batch_shape("hh.ChannelMembrane", shapes)

    def resting_potential(self):
        if self.v_rest is not None:
            return jnp.asarray(self.v_rest)
        return _rest_by_newton(self, -65.0)

    @property
    def parameter_names(self):
        names = ["Cm"]
        for cname, ch in self.channel_map.items():
            names += [f"{cname}.{f.name}" for f in dataclasses.fields(ch) if _is_value(getattr(ch, f.name))]
        return tuple(names)

    @property
    def positive_parameters(self):
        return ("Cm",) + tuple(f"{c}.{p}" for c, ch in self.channel_map.items() for p in ch.positive_parameters)

    @property
    def potential_parameters(self):
        return tuple(f"{c}.{p}" for c, ch in self.channel_map.items() for p in ch.potential_parameters)

class HodgkinHuxley(AbstractChannelMembrane):
    """The Hodgkin–Huxley (1952) squid-axon membrane: Na, K and leak currents.

    It is built from channels (`hh.HHPotassium`, `hh.HHSodium`, `hh.Leak`), like any
    `hh.AbstractChannelMembrane`. One set of equations serves both voltage conventions: rates are NEURON's `hh.mod` evaluated
    at `V − vshift`, so `vshift = 0` is NEURON's convention (rest near −65 mV) and
    `vshift = 65` the original one with rest at 0 mV. Build it with `hh.presets.hh1952()` or
    `hh.presets.neuron()`, which fill in every field; any field may be an array, and all array
    fields broadcast together to the batch shape.

    **Fields:**
    - `gNa`, `gK`, `gL`: maximal conductances (mS/cm²), >= 0.
    - `ENa`, `EK`, `EL`: reversal potentials (mV).
    - `Cm`: membrane capacitance (µF/cm²), > 0.
    - `celsius`: temperature (°C); gate rates are scaled by 3^((celsius − 6.3)/10).
    - `vshift`: offset of this model's voltage axis from NEURON's (mV):
      V_here = V_NEURON + vshift.

    Example:
        >>> p = hh.HodgkinHuxley(gNa=120.0, gK=36.0, gL=0.3, ENa=50.0, EK=-77.0, EL=-54.3,
        ...                      Cm=1.0, celsius=6.3, vshift=0.0)   # = hh.presets.neuron()
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

    parameter_names: ClassVar[tuple[str, ...]] = (
        "gNa", "gK", "gL", "ENa", "EK", "EL", "Cm", "celsius", "vshift",
    )
    positive_parameters: ClassVar[tuple[str, ...]] = ("gNa", "gK", "gL", "Cm")
    potential_parameters: ClassVar[tuple[str, ...]] = ("ENa", "EK", "EL", "vshift")

    def __check_init__(self):
        _check_parameters(self, ("gNa", "gK", "gL"), {"Cm": "µF/cm²"})

    def resting_potential(self):
        """−65 mV in NEURON's convention, shifted by `vshift` (0 mV for the hh1952 preset)."""
        return jnp.asarray(self.vshift - 65.0)

    def spike_threshold(self):
        """0 mV in NEURON's convention, shifted by `vshift` (65 mV for the hh1952 preset)."""
        return self.vshift + 0.0

    def channels(self):
        """K⁺ (gate n), Na⁺ (gates m, h) and leak: the state is (V, n, m, h)."""
        return (
            HHPotassium(g=self.gK, E=self.EK, vshift=self.vshift, celsius=self.celsius),
            HHSodium(g=self.gNa, E=self.ENa, vshift=self.vshift, celsius=self.celsius),
            Leak(g=self.gL, E=self.EL),
        )


class Pospischil(AbstractChannelMembrane):
    """The minimal cortical neuron model of Pospischil et al. (2008, Biol. Cybern. 99:427):
    Na⁺ and delayed-rectifier K⁺ currents with Traub–Miles kinetics shifted by the threshold
    parameter VT, a slow non-inactivating M-type K⁺ current (spike-frequency adaptation) and
    a leak. Build it with `hh.presets.pospischil()` (the paper's regular-spiking cell).

    **Fields:** `gNa`, `gK`, `gM`, `gL` (mS/cm²); `ENa`, `EK`, `EL` (mV); `VT` (mV, threshold
    shift of the Na⁺ and K⁺ kinetics); `tau_max` (ms, the M current's slowest time constant);
    `Cm` (µF/cm²). The state is (V, m, h, n, p); the default initial potential is the resting
    potential, where the currents cancel.

    Example:
        >>> p = hh.presets.pospischil(gM=0.1)
        >>> tr = hh.simulate(p, hh.Step(start=20.0, stop=220.0, amplitude=1.0), t1=240.0)
    """

    gNa: Float[ArrayLike, "*batch"]
    gK: Float[ArrayLike, "*batch"]
    gM: Float[ArrayLike, "*batch"]
    gL: Float[ArrayLike, "*batch"]
    ENa: Float[ArrayLike, "*batch"]
    EK: Float[ArrayLike, "*batch"]
    EL: Float[ArrayLike, "*batch"]
    VT: Float[ArrayLike, "*batch"]
    tau_max: Float[ArrayLike, "*batch"]
    Cm: Float[ArrayLike, "*batch"]

    parameter_names: ClassVar[tuple[str, ...]] = (
        "gNa", "gK", "gM", "gL", "ENa", "EK", "EL", "VT", "tau_max", "Cm",
    )
    positive_parameters: ClassVar[tuple[str, ...]] = ("gNa", "gK", "gM", "gL", "tau_max", "Cm")
    potential_parameters: ClassVar[tuple[str, ...]] = ("ENa", "EK", "EL", "VT")

    def __check_init__(self):
        _check_parameters(self, ("gNa", "gK", "gM", "gL"), {"Cm": "µF/cm²", "tau_max": "ms"})

    def channels(self):
        return (
            PospischilSodium(g=self.gNa, E=self.ENa, VT=self.VT),
            PospischilPotassium(g=self.gK, E=self.EK, VT=self.VT),
            MCurrent(g=self.gM, E=self.EK, tau_max=self.tau_max),
            Leak(g=self.gL, E=self.EL),
        )

    def resting_potential(self):
        return _rest_by_newton(self, self.EL)


def check_membrane(membrane, owner):
    """`membrane` if it is an hh membrane, else a TypeError naming `owner`."""
    if not isinstance(membrane, AbstractMembrane):
        raise TypeError(
            f"{owner}: `membrane` must be a membrane such as hh.presets.hh1952(), got "
            f"{type(membrane).__name__}."
        )
    return membrane
