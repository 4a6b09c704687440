"""A population: `size` neurons sharing one membrane type, and the release detector that turns
their upstrokes into spikes."""

from __future__ import annotations

import equinox as eqx
import jax
import numpy as np
from jaxtyping import ArrayLike, Float

from ._membrane import AbstractMembrane
from ._validation import check_finite, check_positive


class Population(eqx.Module):
    """`size` neurons sharing one membrane type.

    **Fields:**
    - `membrane`: any `hh.AbstractMembrane`; a parameter may be an array of length `size`
      (one value per neuron).
    - `size`: number of neurons.
    - `threshold`: spike-detection potential θ (mV); default the membrane's
      `spike_threshold()` (0 mV in the modern convention).
    - `sharpness`: k (mV) of the release detector σ(V) = 1/(1 + exp(−(V − θ)/k)), whose rise
      on each upstroke is the spike's release pulse (see `hh.ExpSynapse`). Smaller is closer
      to an instantaneous event and needs smaller steps; 1 mV by default.

    Example:
        >>> exc = hh.Population(hh.presets.neuron(), size=80)
    """

    membrane: AbstractMembrane
    size: int = eqx.field(static=True)
    threshold: Float[ArrayLike, ""] | None = None
    sharpness: Float[ArrayLike, ""] = 1.0

    def __check_init__(self):
        owner = "hh.Population"
        if not isinstance(self.membrane, AbstractMembrane):
            raise TypeError(f"{owner}: `membrane` must be an hh membrane, got {type(self.membrane).__name__}.")
        if not (isinstance(self.size, (int, np.integer)) and self.size > 0):
            raise ValueError(f"{owner}: `size` must be a positive integer, got {self.size!r}.")
        shape = self.membrane.batch_shape
        if shape not in ((), (1,), (self.size,)):
            raise ValueError(
                f"{owner}: the membrane's parameter arrays must be scalars or have length "
                f"size={self.size}, got batch shape {shape}."
            )
        if self.threshold is not None:
            check_finite("threshold", self.threshold, owner)
            if np.shape(self.threshold) not in ((), (self.size,)):
                raise ValueError(f"{owner}: `threshold` must be a scalar or have length size={self.size}, got shape {np.shape(self.threshold)}.")
        check_positive("sharpness", self.sharpness, owner, "mV")

    def theta(self):
        return self.membrane.spike_threshold() if self.threshold is None else self.threshold

    def detector(self, V):
        """σ(V): the release detector, 0 at rest and 1 at a spike's peak."""
        return jax.nn.sigmoid((V - self.theta()) / self.sharpness)
