"""Ready-made models. The membranes (`hh1952`, `neuron`, `pospischil`) return a membrane whose
fields any keyword overrides (array values make a batch); `cobahh` and `brunel`
return a `NetworkModel`, a network with its initial values.

`hh1952` was called `seed` (the 2017 gist's model) in 0.1; `seed()` still works for one
release, with a `DeprecationWarning`: the word `seed` means a random seed everywhere else
(`hh.fit(seed=0)`, `hh.presets.cobahh(seed=0)`).

Example:
    >>> import hh_jax as hh
    >>> p = hh.presets.hh1952(gNa=100.0)
    >>> q = hh.presets.neuron(celsius=20.0)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import equinox as eqx
import numpy as np

from ._deprecation import deprecated
from ._membrane import HodgkinHuxley, Pospischil
from ._validation import check_count, check_finite

if TYPE_CHECKING:
    from ._network import Network

__all__ = ["hh1952", "neuron", "pospischil", "cobahh", "brunel", "NetworkModel", "seed"]

_HH1952 = dict(
    gNa=120.0, gK=36.0, gL=0.3, ENa=115.0, EK=-12.0, EL=10.613, Cm=1.0, celsius=6.3, vshift=65.0
)
_NEURON = dict(
    gNa=120.0, gK=36.0, gL=0.3, ENa=50.0, EK=-77.0, EL=-54.3, Cm=1.0, celsius=6.3, vshift=0.0
)


# Pospischil et al. 2008, Table 1, regular-spiking (RS) cell.
_POSPISCHIL = dict(
    gNa=56.0, gK=6.0, gM=0.075, gL=0.0205, ENa=50.0, EK=-90.0, EL=-70.3, VT=-56.2,
    tau_max=608.0, Cm=1.0,
)


def _build(preset: str, defaults: dict, overrides: dict, cls=HodgkinHuxley):
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ValueError(
            f"hh.presets.{preset}: unknown parameter(s) {unknown}; "
            f"expected any of {list(defaults)}."
        )
    # Integers become floats so every field is differentiable and takes the solver's dtype.
    overrides = {k: float(v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else v
                 for k, v in overrides.items()}
    return cls(**{**defaults, **overrides})


def hh1952(**overrides) -> HodgkinHuxley:
    """Hodgkin & Huxley's (1952) squid axon, voltages measured from rest as in their paper
    (rest at 0 mV, depolarisation positive): the model of the 2017 gist.

    gNa 120, gK 36, gL 0.3 mS/cm²; ENa 115, EK −12, EL 10.613 mV; Cm 1 µF/cm²; 6.3 °C
    (rate factor 1); `vshift = 65` mV. Default initial potential: 0 mV.

    **Arguments:** any field of `hh.HodgkinHuxley` by keyword (units as there); arrays batch.

    **Returns:** an `hh.HodgkinHuxley`.

    Example:
        >>> p = hh.presets.hh1952(gNa=jnp.linspace(80.0, 160.0, 1000))   # a batch of 1000
    """
    return _build("hh1952", _HH1952, overrides)


def seed(**overrides) -> HodgkinHuxley:
    """Deprecated name of `hh1952` (same model, same arguments); warns."""
    deprecated("hh.presets", "seed()", "hh.presets.hh1952() (the same model; `seed` means a random seed elsewhere)",
               stacklevel=2)
    return _build("seed", _HH1952, overrides)


def neuron(**overrides) -> HodgkinHuxley:
    """NEURON's built-in `hh` mechanism (`hh.mod`), modern convention with rest near −65 mV.

    gnabar 0.12, gkbar 0.036, gl 0.0003 S/cm² (here 120, 36, 0.3 mS/cm²); ENa 50, EK −77,
    EL −54.3 mV; Cm 1 µF/cm²; 6.3 °C; `vshift = 0`. Default initial potential: −65 mV, as
    NEURON's `finitialize(-65)`.

    **Arguments:** any field of `hh.HodgkinHuxley` by keyword (units as there); arrays batch.

    **Returns:** an `hh.HodgkinHuxley`.
    """
    return _build("neuron", _NEURON, overrides)


def pospischil(**overrides) -> Pospischil:
    """The regular-spiking cortical cell of Pospischil et al. (2008), Table 1.

    gNa 56, gK 6, gM 0.075, gL 0.0205 mS/cm²; ENa 50, EK −90, EL −70.3 mV; VT −56.2 mV;
    τmax 608 ms; Cm 1 µF/cm². (The sbi tutorial and Gonçalves et al. 2020 start from the
    same equations with their own values, e.g. VT −60 mV, gL 0.1 mS/cm², EL −70 mV.)

    **Arguments:** any field of `hh.Pospischil` by keyword; arrays batch.

    **Returns:** an `hh.Pospischil`.
    """
    return _build("pospischil", _POSPISCHIL, overrides, Pospischil)


# Brette et al. (2007), benchmark 3 (COBAHH), as in Brian2's example: a 20,000 µm² cell.
_COBAHH_AREA_CM2 = 20000e-8
_NS = 1e-6 / _COBAHH_AREA_CM2  # 1 nS on that cell, in mS/cm²


class NetworkModel(eqx.Module):
    """A ready-made network and the initial values it is meant to start from.

    **Fields:** `network` (an `hh.Network`), `init` ({"<name>.<variable>": value}, for
    `hh.simulate(model.network, ..., init=model.init)`).

    Unpacking it as a pair, `net, init = hh.presets.cobahh()`, still works for one release,
    with a `DeprecationWarning`.
    """

    network: Network
    init: dict

    def _as_tuple(self):
        deprecated("hh.presets.cobahh", "unpacking its result as a tuple",
                   "the hh.presets.NetworkModel's `.network` and `.init`", stacklevel=3)
        return (self.network, self.init)

    def __iter__(self):
        return iter(self._as_tuple())

    def __getitem__(self, index):
        return self._as_tuple()[index]


def cobahh(n: int = 4000, p: float = 0.02, seed: int = 0, excitatory_fraction: float = 0.8) -> NetworkModel:
    """The COBAHH network of Brette et al. (2007, benchmark 3), as Brian2's example builds it.

    `n` Traub–Miles HH neurons (gNa 100, gK 30, gL 0.05 mS/cm²; ENa 50, EK −90, EL −60 mV;
    VT −63 mV; Cm 1 µF/cm²) in one population "P"; the first 80 % are excitatory. Every
    ordered pair (autapses included) is connected with probability `p`, separately for the
    excitatory projection "exc" (τe 5 ms, Ee 0 mV, we 6 nS) and the inhibitory one "inh"
    (τi 10 ms, Ei −80 mV, wi 67 nS). Conductances are per area of the 20,000 µm² cell:
    1 nS = 0.005 mS/cm². Spikes are detected at −20 mV.

    Initial conditions as in the example: V = EL + (5 N(0,1) − 5) mV, gates at 0,
    ge = (1.5 N(0,1) + 4)·10 nS and gi = (12 N(0,1) + 20)·10 nS.

    **Arguments:** `n` neurons, connection probability `p`, random `seed`,
    `excitatory_fraction`.

    **Returns:** an `hh.presets.NetworkModel`: `.network`, and `.init`, the dict of initial
    values to pass to `hh.simulate(..., init=model.init)`; the connectivity is
    `model.network.projections["exc"]`'s `pre_index`/`post_index` (and "inh"'s).

    Example:
        >>> model = hh.presets.cobahh()
        >>> tr = hh.simulate(model.network, None, t1=1000.0, dt=0.1, init=model.init, save=(),
        ...                  max_spikes=100)
    """
    from ._network import Network
    from ._population import Population
    from ._projection import Projection
    from ._synapse import ExpSynapse

    n = check_count("n", n, "hh.presets.cobahh", minimum=2)
    check_finite("excitatory_fraction", excitatory_fraction, "hh.presets.cobahh")
    if not 0 < p <= 1:
        raise ValueError(f"hh.presets.cobahh: `p` must lie in (0, 1], got {p}.")
    if not 0 < round(excitatory_fraction * n) < n:
        raise ValueError(
            f"hh.presets.cobahh: `excitatory_fraction` must leave both populations non-empty, "
            f"got {excitatory_fraction} of {n} neurons."
        )
    rng = np.random.default_rng(seed)
    n_exc = int(round(excitatory_fraction * n))
    membrane = _traub_miles()

    def connect(pre_ids):
        pre, post = [], []
        for start in range(0, len(pre_ids), 500):  # row blocks keep memory small
            block = rng.random((min(500, len(pre_ids) - start), n)) < p
            i, j = np.nonzero(block)
            pre.append(pre_ids[start + i])
            post.append(j)
        return np.concatenate(pre).astype(np.int32), np.concatenate(post).astype(np.int32)

    exc_edges = connect(np.arange(n_exc))
    inh_edges = connect(np.arange(n_exc, n))
    net = Network(
        {"P": Population(membrane, n, threshold=-20.0)},
        {"exc": Projection("P", "P", ExpSynapse(tau=5.0, E=0.0), weight=6.0 * _NS, edges=exc_edges),
         "inh": Projection("P", "P", ExpSynapse(tau=10.0, E=-80.0), weight=67.0 * _NS, edges=inh_edges)},
    )
    init = {
        "P.V": -60.0 + rng.standard_normal(n) * 5.0 - 5.0,
        "P.m": 0.0, "P.h": 0.0, "P.n": 0.0,
        "exc.g": (rng.standard_normal(n) * 1.5 + 4.0) * 10.0 * _NS,
        "inh.g": (rng.standard_normal(n) * 12.0 + 20.0) * 10.0 * _NS,
    }
    return NetworkModel(network=net, init=init)


def _traub_miles():
    """The Traub–Miles cell of the COBAHH benchmark (Brette et al. 2007): gNa 100, gK 30,
    gL 0.05 mS/cm²; ENa 50, EK −90, EL −60 mV; VT −63 mV; Cm 1 µF/cm²."""
    from ._channels import Leak, PospischilPotassium, PospischilSodium
    from ._membrane import ChannelMembrane

    return ChannelMembrane(
        {"na": PospischilSodium(g=100.0, E=50.0, VT=-63.0),
         "k": PospischilPotassium(g=30.0, E=-90.0, VT=-63.0),
         "leak": Leak(g=0.05, E=-60.0)},
        Cm=1.0, v_rest=-60.0,
    )


def _fixed_in_degree(rng, pre_ids, n_post, k):
    """Edges giving every postsynaptic neuron exactly `k` distinct presynaptic partners
    drawn from `pre_ids` (autapses allowed, as in Brunel 2000): (pre, post) int32 arrays."""
    pre = np.stack([rng.choice(pre_ids, size=k, replace=False) for _ in range(n_post)])
    post = np.repeat(np.arange(n_post), k)
    return pre.ravel().astype(np.int32), post.astype(np.int32)


def brunel(n: int = 2000, *, g: float = 20.0, we: float = 1.0, ext_rate: float = 2400.0,
           in_degree: int = 160, delay: float | None = 1.5, seed: int = 0,
           excitatory_fraction: float = 0.8) -> NetworkModel:
    """A sparse E/I network after Brunel (2000), of conductance-based HH neurons driven by
    independent Poisson input, in the asynchronous irregular regime.

    `n` Traub–Miles cells (those of `cobahh`) in one population "P", the first 80 %
    excitatory. Every neuron receives exactly C_E = `in_degree` excitatory and C_I = C_E/4
    inhibitory connections (fixed in-degree; 160 and 40 are ε = 10 % of the default
    network, and stay so as `n` changes, so its regime does too), exponential conductances (τe 5 ms, Ee 0 mV,
    weight `we` nS; τi 10 ms, Ei −80 mV, weight g·`we` nS) with a synaptic `delay` (ms;
    None for none), and its own Poisson source of rate `ext_rate` (Hz; e.g. 800 inputs at
    3 Hz) onto its excitatory conductance (source "ext", projection "in", one-to-one,
    weight `we`). With g = 20 the network is inhibition-dominated: near rest (−60 mV) the
    inhibitory charge per unit of presynaptic rate, g·C_I·|Ei − V|·τi, is 3.3 times the
    excitatory C_E·|Ee − V|·τe (Brunel's g > 4 for current-based synapses, with the driving
    forces and time constants folded in). It then fires irregularly and asynchronously: at
    the defaults (n = 2000, 1 s after 200 ms, dt 0.1 ms) 12 Hz with a mean ISI CV of 1.1;
    `scripts/brunel.py` measures rate, CV and synchrony and checks them against the stated
    ranges (rate 5–30 Hz, CV 0.7–1.3). Spikes are detected at −20 mV. Conductances are per
    area of the 20,000 µm² cell (1 nS = 0.005 mS/cm²).

    Initial values: V uniform in [−70, −55] mV, gates at 0, conductances at 0.

    **Arguments:** `n` neurons; `g` (inhibitory/excitatory weight ratio); `we` (nS);
    `ext_rate` (Hz per neuron); `in_degree` (C_E, at most the number of excitatory
    neurons); `delay` (ms); random `seed` (connectivity, initial values and the Poisson
    key); `excitatory_fraction`.

    **Returns:** an `hh.presets.NetworkModel` (`.network` with the source "ext", the
    population "P" and the projections "in" (ext → P), "exc", "inh"; `.init`).

    Example:
        >>> model = hh.presets.brunel(n=1000)
        >>> tr = hh.simulate(model.network, None, t1=1000.0, dt=0.1, init=model.init, save=(),
        ...                  max_spikes=100)
    """
    import jax

    from ._network import Network
    from ._population import Population
    from ._projection import Projection
    from ._sources import PoissonSource
    from ._synapse import ExpSynapse

    owner = "hh.presets.brunel"
    n = check_count("n", n, owner, minimum=2)
    in_degree = check_count("in_degree", in_degree, owner, minimum=4)
    for name, value in (("g", g), ("we", we), ("ext_rate", ext_rate), ("excitatory_fraction", excitatory_fraction)):
        check_finite(name, value, owner)
    n_exc = int(round(excitatory_fraction * n))
    if not 0 < n_exc < n:
        raise ValueError(f"{owner}: `excitatory_fraction` must leave both groups non-empty, "
                         f"got {excitatory_fraction} of {n} neurons.")
    k_exc, k_inh = in_degree, in_degree // 4
    if k_exc > n_exc or k_inh > n - n_exc:
        raise ValueError(f"{owner}: `in_degree` {in_degree} (and {k_inh} inhibitory) exceeds the {n_exc} "
                         f"excitatory (or {n - n_exc} inhibitory) neurons; use a larger `n`.")
    if g < 0 or we < 0 or ext_rate < 0:
        raise ValueError(f"{owner}: `g`, `we` and `ext_rate` must be >= 0, got {g}, {we}, {ext_rate}.")
    rng = np.random.default_rng(seed)
    delayed = {} if delay is None else {"delay": float(delay)}
    exc_syn, inh_syn = ExpSynapse(tau=5.0, E=0.0), ExpSynapse(tau=10.0, E=-80.0)
    everyone = np.arange(n, dtype=np.int32)
    net = Network(
        {"ext": PoissonSource(n, rate=float(ext_rate), key=jax.random.key(seed)),
         "P": Population(_traub_miles(), n, threshold=-20.0)},
        {"in": Projection("ext", "P", exc_syn, weight=we * _NS, edges=(everyone, everyone)),
         "exc": Projection("P", "P", exc_syn, weight=we * _NS,
                           edges=_fixed_in_degree(rng, np.arange(n_exc), n, k_exc), **delayed),
         "inh": Projection("P", "P", inh_syn, weight=g * we * _NS,
                           edges=_fixed_in_degree(rng, np.arange(n_exc, n), n, k_inh), **delayed)},
    )
    init = {"P.V": rng.uniform(-70.0, -55.0, n), "P.m": 0.0, "P.h": 0.0, "P.n": 0.0}
    return NetworkModel(network=net, init=init)
