"""Ready-made parameter sets. Each returns an `hh.HodgkinHuxley`; keyword arguments override
any field, and array values make a batch.

Example:
    >>> import hh_jax as hh
    >>> p = hh.presets.seed(gNa=100.0)
    >>> q = hh.presets.neuron(celsius=20.0)
"""

from __future__ import annotations

from ._membrane import HodgkinHuxley, Pospischil

__all__ = ["seed", "neuron", "pospischil"]

_SEED = dict(
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
    overrides = {k: float(v) if isinstance(v, int) else v for k, v in overrides.items()}
    return cls(**{**defaults, **overrides})


def seed(**overrides) -> HodgkinHuxley:
    """The squid-axon model of the 2017 gist: original HH convention with rest at 0 mV.

    gNa 120, gK 36, gL 0.3 mS/cm²; ENa 115, EK −12, EL 10.613 mV; Cm 1 µF/cm²; 6.3 °C
    (rate factor 1); `vshift = 65` mV. Default initial potential: 0 mV.

    **Arguments:** any field of `hh.HodgkinHuxley` by keyword (units as there); arrays batch.

    **Returns:** an `hh.HodgkinHuxley`.
    """
    return _build("seed", _SEED, overrides)


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
