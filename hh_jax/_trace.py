"""What a simulation returns: `Trace` (a neuron or a batch), `Spikes` (spike times only) and
`NetworkTrace` (a network).

Both traces read a saved variable the same way: `trace[name]`, and `trace.values`, the
mapping {name: array} of everything saved ("V", "n", ... for a neuron; "E.V", "ee.g", ...
for a network). A `Trace` also keeps its attributes (`trace.V`, `trace.n`).
"""

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

    Every saved variable is also `trace[name]` ("V", "n", ...), and `trace.values` is
    {name: array}, as for an `hh.NetworkTrace`.

    Example:
        >>> tr = hh.simulate(hh.presets.hh1952(), s, t1=50.0)
        >>> tr.t.shape, tr.V.shape, tr.n.shape, tr["n"].shape, bool(tr.success)
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

    @property
    def values(self) -> dict[str, Float[Array, "*batch time"]]:
        """{"V": potential (mV), gate name: values}: every saved variable."""
        return {"V": self.V, **self.gates}

    def __getitem__(self, name):
        values = self.values
        if name not in values:
            raise KeyError(f"Trace: {name!r} was not saved; saved: {sorted(values)}.")
        return values[name]


class Spikes(eqx.Module):
    """Spike times and counts of a batch (what `hh.simulate_spikes` returns).

    **Fields:** `times` (ms) `(*batch, max_spikes)`, NaN-padded; `counts` `(*batch,)`;
    `success` (all solves reached t1).

    Example:
        >>> sp = hh.simulate_spikes(hh.presets.neuron(gNa=jnp.linspace(80, 160, 100)), s, t1=50.0)
        >>> sp.counts.shape, sp.times.shape
    """

    times: Float[Array, "*batch max_spikes"]
    counts: Int[Array, "*batch"]
    success: Bool[Array, ""]


class NetworkTrace(eqx.Module):
    """What `hh.simulate` returns for a network.

    **Fields:**
    - `t`: save times (ms), `(time,)`.
    - `values`: {"<population>.<state>" or "<projection>.<variable>": array `(n, time)`}
      (`(*shape, time)` for a variable of another shape, e.g. dense weights).
      Also readable as `trace["E.V"]`.
    - `spikes`: {population: `hh.Spikes`}, times `(size, max_spikes)` (ms, NaN-padded) and
      counts `(size,)`: upward crossings of the population's threshold. Fixed-step runs
      detect them at every step; adaptive runs from the potentials sampled at `ts` (so
      choose `ts` fine enough to resolve spikes: every 0.025 ms by default).
    - `final`: the whole network state at t1.
    - `num_steps`, `success`.

    The learned weights are `trace.weights` ({projection: weights at t1}).

    Example:
        >>> tr = hh.simulate(net, stimuli, t1=100.0, save=("E.V", "ee.g"))
        >>> tr["E.V"].shape, tr.spikes["E"].counts, tr.weights["ee"]
    """

    t: Float[Array, " time"]
    values: dict
    spikes: dict
    final: dict
    num_steps: Int[Array, ""]
    success: Bool[Array, ""]

    def __getitem__(self, name):
        if name not in self.values:
            raise KeyError(f"NetworkTrace: {name!r} was not saved; saved: {sorted(self.values)}.")
        return self.values[name]

    @property
    def weights(self) -> dict[str, Float[Array, "..."]]:
        """{projection: its weights at t1 (mS/cm²)} for every projection with STDP: a dense
        (n_pre, n_post) matrix or one weight per edge, within the rule's bounds."""
        return {name: st["w"] for name, st in self.final["projections"].items() if "w" in st}
