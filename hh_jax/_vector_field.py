"""Vector field: the ODE right-hand side that the solver integrates."""

from __future__ import annotations

from jaxtyping import Array, ArrayLike, Float

from ._membrane import AbstractMembrane
from ._stimulus import AbstractStimulus


def vector_field(
    t: Float[ArrayLike, ""],
    y: Float[Array, "states *batch"],
    args: tuple[AbstractMembrane, AbstractStimulus],
) -> Float[Array, "states *batch"]:
    """dy/dt of a membrane driven by a stimulus, in Diffrax's `(t, y, args)` form.

    A pure function, so it can be used with `diffrax.ODETerm` directly or differentiated.

    **Arguments:**
    - `t`: time (ms).
    - `y`: state, shape `(states, *batch)`; for `hh.HodgkinHuxley` the rows are
      (V in mV, n, m, h).
    - `args`: `(membrane, stimulus)`.

    **Returns:** dy/dt with the shape of `y` (mV/ms for V, 1/ms for the gates).

    Example:
        >>> p = hh.presets.hh1952()
        >>> y0 = p.initial_state()
        >>> hh.vector_field(0.0, y0, (p, hh.Pulse(start=0.0, stop=1.0, amplitude=150.0)))
    """
    membrane, stimulus = args
    return membrane.derivatives(y, stimulus(t))
