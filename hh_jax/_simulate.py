"""`hh.simulate`: one entry point, two solvers. Checks which options apply to the model
given and dispatches to the single-neuron solver (`_solve`) or the network solver
(`_network_solve`); both share their setup (`_solve_setup`)."""

from __future__ import annotations

from collections.abc import Sequence

import diffrax
from jaxtyping import ArrayLike, Float

from ._batch import Batching, batching_from_keywords
from ._exponential_euler import ExponentialEuler
from ._exponential_midpoint import ExponentialMidpoint
from ._membrane import AbstractMembrane
from ._network import Network
from ._network_solve import simulate_network
from ._solve import simulate_neuron
from ._stimulus import AbstractStimulus
from ._trace import NetworkTrace, Trace

_NEURON_ONLY = ("batching", "chunk_size", "devices", "steps")
_NETWORK_ONLY = ("dt", "init", "max_spikes", "max_active")
_SOLVERS = {"exponential_euler": ExponentialEuler, "exponential_midpoint": ExponentialMidpoint}


def simulate(
    membrane: AbstractMembrane | Network,
    stimulus: AbstractStimulus | dict | None = None,
    *,
    t1: float,
    ts: Float[ArrayLike, " time"] | None = None,
    t0: float = 0.0,
    v0: Float[ArrayLike, "*batch"] | dict | None = None,
    solver: diffrax.AbstractSolver | str | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-6,
    dt0: float | None = None,
    dtmax: float | None = None,
    max_steps: int = 16384,
    save: str | Sequence[str] = "all",
    throw: bool = True,
    adjoint: diffrax.AbstractAdjoint | None = None,
    batching: Batching | None = None,
    dt: float | None = None,
    init: dict | None = None,
    max_spikes: int | None = None,
    max_active: int | None = None,
    **old_keywords,
) -> Trace | NetworkTrace:
    """Integrate a membrane (or a network) under a stimulus with an adaptive Diffrax solver.

    Steps are chosen by a PID error controller (tolerances `rtol`, `atol`), and every time
    where the stimulus jumps is handed to the controller, which steps exactly to it, so a
    pulse of any width is never stepped over. Works under `jax.jit`, `jax.vmap` and
    `jax.grad` (reverse mode through `diffrax.RecursiveCheckpointAdjoint` by default), in
    float32 and float64: the computation runs in the floating dtype of the inputs (Python
    floats follow JAX's default, float64 only when `jax_enable_x64` is on).

    Everything is differentiable except the stimulus's times (pulse edges, onsets, sample
    times): a trace is not differentiable in the time of a jump in the current wherever it
    meets a save time, where a gradient would be one-sided, so differentiating with respect
    to one raises a `ValueError` naming it instead of returning a number that may be wrong;
    use finite differences for times. Inputs are checked before anything is compiled, and
    requests too big for memory are refused with their size (see `HH_JAX_MEMORY_BUDGET`).
    An option that does not apply to the model given (e.g. `max_spikes` for a membrane)
    raises a `ValueError` naming it.

    A batch — array-valued parameters, stimulus parameters or `v0`, broadcast together —
    is one ODE over all neurons with a shared step size, controlled so that every neuron
    meets the tolerance (within a chunk, and within each device's slice when sharded: so a
    neuron's trace depends on its batch-mates only at the level of the tolerance). The
    solver statistics of a chunked or sharded run are the maxima over its pieces.

    **Arguments:**
    - `membrane`: the parameters, e.g. `hh.presets.hh1952()`; or an `hh.Network`.
    - `stimulus`: injected current density (µA/cm²), e.g. `hh.Step(...)`; None for none.
    - `t1`: end time (ms); `t0`: start time (ms), default 0.
    - `ts`: save times (ms), strictly increasing within [t0, t1]; default every 0.025 ms.
    - `v0`: initial potential (mV), default the membrane's resting potential; gates start
      at their steady state for `v0`.
    - `solver`: a `diffrax.AbstractSolver`; default Tsitouras' 5(4) method: `hh.UnrolledTsit5()`
      (as `diffrax.Tsit5`, the same steps and values, with less memory traffic: about
      twice as fast for batches), or `diffrax.Tsit5()` with `adjoint=diffrax.ForwardMode()`
      (its derivative programs compile in half the time). Networks use `diffrax.Tsit5()`.
    - `rtol`, `atol`: error tolerances of the step-size controller. The defaults (1e-6) give
      V within about 1e-3 mV of a converged solution in float64; in float32 keep
      `rtol >= 1e-6`.
    - `dt0`: first step (ms); default chosen automatically.
    - `dtmax`: largest step (ms). Default: the explicit solver's stability limit at the
      initial state (`hh.stable_dtmax`). At an equilibrium (the default start, at rest) the
      error estimate is zero, so steps would grow past that limit; the trace would not
      suffer, but its derivatives (which the error control does not see) would come back
      wrong or NaN. `float("inf")` removes the limit; solvers without an explicit
      Runge–Kutta tableau (implicit ones) get none. Networks: the neurons' limit, for
      adaptive solves.
    - `max_steps`: step limit; reaching it is a failure.
    - `save`: "all" (V and every gate), "V" (voltage only, least memory), or a sequence of
      state names such as ("V", "n").
    - `throw`: if True (default) a failed solve raises an error naming the cause
      (`hh.SolverError`; under `jax.jit` Equinox's runtime error with the same text); if False
      the trace comes back with `success == False` (values after the failure are inf).
    - `adjoint`: a `diffrax.AbstractAdjoint` for gradients; default
      `diffrax.RecursiveCheckpointAdjoint()` (reverse mode: `jax.grad`, `jax.jacrev`). Forward
      mode (`jax.jvp`, `jax.jacfwd`) needs `adjoint=diffrax.ForwardMode()`; without it the
      error says so.
    - `batching`: an `hh.Batching(chunk_size=None, devices=None, per_neuron=False)` for large
      batches: chunks, sharding over devices, and shared or per-neuron steps (see there).
      The old flat keywords `chunk_size=`, `devices=` and `steps="shared"|"per_neuron"` are
      deprecated and warn.

    **Networks** (`hh.Network`): `stimulus` is a dict {population: stimulus} (a stimulus
    may have one entry per neuron); `v0` a number or a dict {population: value or array};
    `save` "all", "V" (every population's potential) or names such as ("E.V", "ee.w"),
    () for spikes only. Network-only options:
    - `dt`: None (default): one adaptive solve of the smooth network ODE, differentiable
      through spikes; spikes are found during the solve (so `save=()` keeps no voltage) and
      delayed releases arrive as exact jumps at spike time + delay. A fixed step (ms, e.g. 0.1): clock-driven steps with `solver`
      (default `hh.ExponentialEuler`, first order; `"exponential_midpoint"` or
      `hh.ExponentialMidpoint()` for second order; also by name `"exponential_euler"`), each
      presynaptic spike's release applied as an exact jump after the step (second-order
      solvers: from its time within the step) and delivered only along the edges of neurons
      that spiked — the fast choice for large networks (as Brian2 and NEST run them); `ts`
      must then be evenly spaced on the step grid (default: every step). Projection delays
      (`hh.Projection(..., delay=)`) are delivered through a ring buffer of released amounts,
      within one step of spike time + delay (first order) or at it (second order).
    - `init`: {"<name>.<variable>": value} initial values of any variable.
    - `max_spikes`: spike times kept per neuron, default 64 (more are counted, not timed).
    - `max_active`: with `dt` only, the most presynaptic neurons delivering in one step along
      their own edges, default 128; steps with more fall back to a sum over all edges.

    **Returns:** for a membrane, an `hh.Trace` with `t` `(time,)`, `V` `(*batch, time)` and
    the saved gates; for a network, an `hh.NetworkTrace`.

    Example:
        >>> p = hh.presets.hh1952()
        >>> s = hh.Pulse(start=0.0, stop=1.0, amplitude=150.0)
        >>> tr = hh.simulate(p, s, t1=50.0, ts=jnp.linspace(0.0, 50.0, 5001))
        >>> tr.V.shape
        (5001,)
    """
    unknown = sorted(set(old_keywords) - {"chunk_size", "devices", "steps"})
    if unknown:
        raise TypeError(f"hh.simulate() got unexpected keyword argument(s) {unknown}.")
    if isinstance(membrane, Network):  # names are of clocked network solvers; a neuron's solver is type-checked
        solver = _solver_by_name(solver, dt is not None)
    common = dict(t1=t1, ts=ts, t0=t0, v0=v0, solver=solver, rtol=rtol, atol=atol, dt0=dt0,
                  dtmax=dtmax, max_steps=max_steps, save=save, throw=throw, adjoint=adjoint)
    given = dict(old_keywords, batching=batching, dt=dt, init=init, max_spikes=max_spikes, max_active=max_active)
    if isinstance(membrane, Network):
        _refuse(given, _NEURON_ONLY, "to batches of single neurons, not to a network; batch networks with jax.vmap")
        return simulate_network(membrane, stimulus, init=init, dt=dt, max_spikes=max_spikes,
                                max_active=max_active, **common)
    _refuse(given, _NETWORK_ONLY, "to networks only; for one membrane pass `v0`, a fixed-step "
            "Diffrax solver through `solver` if needed, and hh.simulate_spikes for spike times")
    batching = batching_from_keywords("hh.simulate", batching, old_keywords)
    return simulate_neuron(membrane, stimulus, batching=batching, **common)


def _solver_by_name(solver, clocked: bool):
    """A clock-driven solver named by a string ("exponential_euler", "exponential_midpoint"),
    for fixed-step network runs; anything else is passed on."""
    if not isinstance(solver, str):
        return solver
    if solver not in _SOLVERS:
        raise ValueError(f"hh.simulate: unknown `solver` {solver!r}; by name: {sorted(_SOLVERS)}, or a diffrax solver.")
    if not clocked:
        raise ValueError(f"hh.simulate: `solver={solver!r}` is a clock-driven solver for networks with a fixed step; pass `dt` (ms).")
    return _SOLVERS[solver]()


def _refuse(given: dict, names: tuple[str, ...], why: str) -> None:
    """A `ValueError` naming the options in `names` that were given (not None)."""
    wrong = [f"`{name}`" for name in names if given.get(name) is not None]
    if wrong:
        raise ValueError(f"hh.simulate: {', '.join(wrong)} {'applies' if len(wrong) == 1 else 'apply'} {why}.")
