"""Trace: what a simulation returns."""

from __future__ import annotations

import equinox as eqx
from jaxtyping import Array, Bool, Float, Int


class Trace(eqx.Module):
    """The result of `hh.simulate`: sampled state, solver statistics and a success flag.

    **Fields:**
    - `t`: save times (ms), shape `(time,)`.
    - `V`: membrane potential (mV), shape `(*batch, time)`.
    - `gates`: dict from gate name to its values, each `(*batch, time)`; for
      `hh.HodgkinHuxley` the keys are "n", "m", "h", also readable as `trace.n` etc. Empty
      when only V was saved.
    - `num_steps`, `num_accepted_steps`, `num_rejected_steps`: solver statistics.
    - `success`: True when the solver reached t1.

    Example:
        >>> tr = hh.simulate(hh.presets.seed(), s, t1=50.0)
        >>> tr.t.shape, tr.V.shape, tr.n.shape, bool(tr.success)
    """

    t: Float[Array, " time"]
    V: Float[Array, "*batch time"]
    gates: dict[str, Float[Array, "*batch time"]]
    num_steps: Int[Array, ""]
    num_accepted_steps: Int[Array, ""]
    num_rejected_steps: Int[Array, ""]
    success: Bool[Array, ""]

    def __getattr__(self, name):
        # Only reached when normal lookup fails: expose gates as attributes (trace.n, trace.m, ...).
        gates = self.__dict__.get("gates", {})
        if name in gates:
            return gates[name]
        raise AttributeError(
            f"Trace has no attribute {name!r}; saved gates: {sorted(gates)}"
        )
