"""Networks: populations of membranes connected by synapses, as one pytree and one ODE.

A `hh.Network` holds named `hh.Population`s (any membrane, `size` neurons each) and named
`hh.Projection`s (a synapse type, its connections and their weights, optionally short-term
and long-term plasticity). Its state is a dict of arrays: `{"populations": {name: (states,
size)}, "projections": {name: {variable: array}}}`; every variable is addressed by
"<population>.<state>" or "<projection>.<variable>" (e.g. "E.V", "ee.g", "ee.w").
Projections, their connectivity and their plasticity rules live in `_projection` and
`_plasticity`, spike sources (`hh.SpikeTimes`, `hh.PoissonSource`: populations without a
membrane) in `_sources`, populations in `_population` and fixed-step delivery in `_delivery`; this
module holds the network, its ODE and its jumps.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ._delivery import active_sum, arrivals, connection_rows, connection_sum, release_fraction, ring_write
from ._population import Population
from ._projection import Projection
from ._sources import AbstractSource
from ._validation import check_finite, concrete_array

_SPIKE_FLOOR = 1e-9  # detector increments below this are not deliveries (fixed-step runs)


class Network(eqx.Module):
    """A network of populations and projections, simulated by `hh.simulate`.

    **Fields:** `populations` {name: `hh.Population`}, `sources` {name: spike source
    (`hh.SpikeTimes`, `hh.PoissonSource`)}, `projections` {name: `hh.Projection`}. Sources
    are passed among the populations (`hh.Network({"ext": hh.PoissonSource(...), "E":
    hh.Population(...)}, ...)`) and kept apart here: they may be the `pre` of a projection
    with a postsynaptic-state synapse (`hh.ExpSynapse`), never its `post`. Names may not
    contain '.' and a projection may not share a population's name.

    Example:
        >>> net = hh.Network(
        ...     populations={"pre": hh.Population(hh.presets.neuron(), 1),
        ...                  "post": hh.Population(hh.presets.neuron(), 1)},
        ...     projections={"syn": hh.Projection("pre", "post", hh.AMPA(), weight=[[0.05]],
        ...                                       stp=hh.TsodyksMarkram(U=0.5, tau_rec=800.0))})
        >>> tr = hh.simulate(net, {"pre": hh.PulseTrain(...)}, t1=300.0)
    """

    populations: dict
    projections: dict
    sources: dict

    def __init__(self, populations, projections=None):
        owner = "hh.Network"
        projections = {} if projections is None else projections
        if not isinstance(populations, dict) or not populations:
            raise ValueError(f"{owner}: `populations` must be a non-empty dict {{name: hh.Population}}.")
        if not isinstance(projections, dict):
            raise ValueError(f"{owner}: `projections` must be a dict {{name: hh.Projection}}.")
        for name, pop in populations.items():
            if not isinstance(pop, (Population, AbstractSource)):
                raise TypeError(f"{owner}: population {name!r} must be an hh.Population or a spike source (hh.SpikeTimes, hh.PoissonSource), got {type(pop).__name__}.")
        if all(isinstance(pop, AbstractSource) for pop in populations.values()):
            raise ValueError(f"{owner}: `populations` holds spike sources only; add an hh.Population for them to drive.")
        for name in list(populations) + list(projections):
            if not isinstance(name, str) or "." in name or not name:
                raise ValueError(f"{owner}: names must be non-empty strings without '.', got {name!r}.")
        clash = set(populations) & set(projections)
        if clash:
            raise ValueError(f"{owner}: projections and populations share the name(s) {sorted(clash)}.")
        for name, proj in projections.items():
            if not isinstance(proj, Projection):
                raise TypeError(f"{owner}: projection {name!r} must be an hh.Projection, got {type(proj).__name__}.")
            for role in ("pre", "post"):
                target = getattr(proj, role)
                if target not in populations:
                    raise ValueError(
                        f"{owner}: projection {name!r} has {role} population {target!r}, which "
                        f"does not exist; populations: {sorted(populations)}."
                    )
            _check_source_roles(owner, name, proj, populations)
            n_pre, n_post = populations[proj.pre].size, populations[proj.post].size
            if proj.dense:
                if proj.weight.shape != (n_pre, n_post):
                    raise ValueError(
                        f"{owner}: projection {name!r}: the dense `weight` must have shape "
                        f"(n_pre, n_post) = ({n_pre}, {n_post}), got {proj.weight.shape}."
                    )
            else:
                for label, idx, n in (("pre", proj.pre_index, n_pre), ("post", proj.post_index, n_post)):
                    value = concrete_array(idx)
                    if value is not None and value.size and (value.min() < 0 or value.max() >= n):
                        raise ValueError(
                            f"{owner}: projection {name!r}: {label} indices must lie in "
                            f"[0, {n}) (population {getattr(proj, label)!r} has {n} neurons), "
                            f"got values from {value.min()} to {value.max()}."
                        )
        self.populations = {k: v for k, v in populations.items() if isinstance(v, Population)}
        self.sources = {k: v for k, v in populations.items() if isinstance(v, AbstractSource)}
        self.projections = dict(projections)

    # ------------------------------------------------------------------ state

    def size(self, name) -> int:
        """The number of neurons of population or source `name`."""
        return (self.populations.get(name) or self.sources[name]).size

    def variable_names(self) -> tuple[str, ...]:
        """Every recordable variable, "<population>.<state>" and "<projection>.<variable>"."""
        names = [f"{p}.{s}" for p, pop in self.populations.items() for s in pop.membrane.state_names]
        for name, proj in self.projections.items():
            names += [f"{name}.{v}" for v in proj.state_names]
        return tuple(names)

    def initial_state(self, v0=None, init=None, dtype=None) -> dict:
        """The state at t0: potentials `v0` (mV; a number for all populations or a dict
        {population: value or array of length size}; default each membrane's resting
        potential) with gates at steady state; synaptic variables at rest (no conductance,
        full resources, empty traces, the `weight` field as STDP weights); then the entries
        of `init` ({"<name>.<variable>": value}) override any of them."""
        dtype = jnp.result_type(float) if dtype is None else dtype
        init = {} if init is None else dict(init)
        if v0 is not None and not isinstance(v0, dict):
            v0 = {name: v0 for name in self.populations}
        v0 = {} if v0 is None else v0
        unknown = sorted(set(v0) - set(self.populations))
        _refuse_sources(self, unknown, "`v0`")
        if unknown:
            raise ValueError(f"hh.simulate: `v0` names unknown population(s) {unknown}; populations: {sorted(self.populations)}.")
        pops = {}
        for name, pop in self.populations.items():
            v = v0.get(name)
            if v is not None:
                check_finite(f"v0[{name!r}]", v, "hh.simulate")
                if jnp.shape(v) not in ((), (pop.size,)):
                    raise ValueError(f"hh.simulate: `v0[{name!r}]` must be a scalar or have length {pop.size}, got shape {jnp.shape(v)}.")
            pops[name] = pop.membrane.initial_state(v, (pop.size,)).astype(dtype)
        projs = {name: proj.initial_state(self.size(proj.pre), self.populations[proj.post].size, dtype)
                 for name, proj in self.projections.items()}
        state = {"populations": pops, "projections": projs}
        known = set(self.variable_names())
        for key, value in init.items():
            _refuse_sources(self, [key.split(".", 1)[0]], f"`init[{key!r}]`")
            if key not in known:
                raise ValueError(f"hh.simulate: `init` names unknown variable {key!r}; variables: {sorted(known)}.")
            check_finite(f"init[{key!r}]", value, "hh.simulate")
            owner, var = key.split(".", 1)
            if owner in pops:
                row = self.populations[owner].membrane.state_names.index(var)
                y = pops[owner]
                if jnp.shape(value) not in ((), y.shape[1:]):
                    raise ValueError(f"hh.simulate: `init[{key!r}]` must be a scalar or have shape {y.shape[1:]}, got {jnp.shape(value)}.")
                pops[owner] = y.at[row].set(jnp.broadcast_to(jnp.asarray(value, dtype), y.shape[1:]))
            else:
                old = projs[owner][var]
                if jnp.shape(value) not in ((), old.shape):
                    raise ValueError(f"hh.simulate: `init[{key!r}]` must be a scalar or have shape {old.shape}, got {jnp.shape(value)}.")
                projs[owner][var] = jnp.broadcast_to(jnp.asarray(value, dtype), old.shape)
        return state

    def read(self, state, name):
        """The variable `name` ("<population>.<state>" or "<projection>.<variable>")."""
        owner, var = name.split(".", 1)
        if owner in self.populations:
            return state["populations"][owner][self.populations[owner].membrane.state_names.index(var)]
        if var == "w":
            return self.projections[owner].weights(state["projections"][owner])
        return state["projections"][owner][var]

    # ------------------------------------------------------------------ dynamics

    def _sums(self, projs):
        return {name: proj.weighted_sum(proj.weights(projs[name]), self.populations[proj.post].size)
                for name, proj in self.projections.items()}

    def _current_fns(self, t, state, stimuli, sums):
        """Per population, the injected current density (µA/cm²) as a function of its V."""
        projs = state["projections"]
        external = {name: stimuli[name](t) for name in self.populations}

        def make(name):
            incoming = [(p, proj) for p, proj in self.projections.items() if proj.post == name]

            def current(V):
                total = external[name]
                for p, proj in incoming:
                    total = total + proj.synapse.current(projs[p], sums[p], V)
                return total

            return current

        return {name: make(name) for name in self.populations}

    def _projection_derivatives(self, state, sums, up, down, pulses):
        projs = state["projections"]
        V = {name: y[0] for name, y in state["populations"].items()}
        V.update(self._source_potentials(state))
        d_projs = {}
        for name, proj in self.projections.items():
            st, d = projs[name], {}
            if proj.stp is not None:
                if pulses:
                    d_stp, release = proj.stp.derivatives(st, up[proj.pre], down[proj.pre])
                else:
                    d_stp, release = proj.stp.relaxation(st), None
                d.update(d_stp)
                efficacy = st["q"]
            else:
                release, efficacy = (up[proj.pre] if pulses else None), 1.0
            if proj.synapse.post_states and release is not None and proj.delay is None:
                release_sum = sums[name](release)  # delayed releases arrive as jumps (_network_events)
            else:
                release_sum = jnp.zeros((self.populations[proj.post].size,), V[proj.post].dtype)
            d.update(proj.synapse.derivatives(st, V[proj.pre], release_sum, efficacy))
            if proj.plastic:
                if pulses:
                    d.update(proj.stdp.derivatives(st, up[proj.pre], up[proj.post], proj))
                else:
                    d.update(proj.stdp.relaxation(st))
            d_projs[name] = d
        return d_projs

    def derivatives(self, t, state, stimuli, pulses: bool = True) -> dict:
        """d state/dt. With `pulses=False`, the spike-driven terms are left out (fixed-step
        runs apply them as exact jumps after each step, see `jumps`)."""
        pops = state["populations"]
        sums = self._sums(state["projections"])
        currents = self._current_fns(t, state, stimuli, sums)
        d_pops = {name: pop.membrane.derivatives(pops[name], currents[name](pops[name][0]))
                  for name, pop in self.populations.items()}
        up, down = {}, {}
        for name, pop in self.populations.items():
            V = pops[name][0]
            if pulses:
                s = pop.detector(V)
                rate = s * (1.0 - s) / pop.sharpness * d_pops[name][0]
                up[name], down[name] = jax.nn.relu(rate), jax.nn.relu(-rate)
            else:
                up[name] = down[name] = jnp.zeros_like(V)
        for name, src in self.sources.items():  # a source's release: its pulses, or none
            delayed = [p for p, proj in self.projections.items() if proj.pre == name and proj.delay is not None]
            if pulses and delayed:
                raise ValueError(
                    f"hh.simulate: projection(s) {delayed} from spike source {name!r} have a delay, which "
                    "adaptive runs deliver from recorded spikes; run with fixed steps (`dt`), or give "
                    "the source its spike times plus the delay."
                )
            dtype = next(iter(pops.values())).dtype
            up[name] = down[name] = src.release(t).astype(dtype) if pulses else jnp.zeros((src.size,), dtype)
        d_projs = self._projection_derivatives(state, sums, up, down, pulses)
        return {"populations": d_pops, "projections": d_projs}

    def derivatives_and_diagonal(self, t, state, stimuli):
        """(d state/dt without the spike-driven terms, the diagonal of its Jacobian), for
        `hh.ExponentialEuler`: membranes and synapses give theirs in closed form where they
        can (a scalar where every neuron shares it), forward mode otherwise."""
        pops = state["populations"]
        sums = self._sums(state["projections"])
        currents = self._current_fns(t, state, stimuli, sums)
        d_pops, b_pops = {}, {}
        for name, pop in self.populations.items():
            d_pops[name], b_pops[name] = pop.membrane.derivatives_and_diagonal(pops[name], currents[name])
        zeros = {name: jnp.zeros_like(y[0]) for name, y in pops.items()}
        projs = state["projections"]
        d_projs = self._projection_derivatives(state, sums, zeros, zeros, False)
        b_projs = {}
        for name, proj in self.projections.items():
            st = projs[name]
            efficacy = st["q"] if proj.stp is not None else 1.0
            syn_state = {k: st[k] for k in proj.synapse.pre_states + proj.synapse.post_states}
            v_pre = pops[proj.pre][0] if proj.pre in pops else None  # a source has no V
            b = dict(proj.synapse.diagonal(syn_state, v_pre, efficacy))
            if proj.stp is not None:
                b.update(proj.stp.relaxation_diagonal())
            if proj.plastic:
                b.update(proj.stdp.relaxation_diagonal())
            # Broadcast to each variable's shape lazily: scalars stay scalars (one φ each).
            b_projs[name] = {k: jnp.asarray(b[k], st[k].dtype) for k in st}
        return ({"populations": d_pops, "projections": d_projs},
                {"populations": b_pops, "projections": b_projs})

    def jumps(self, old, new, tables=None, max_active=128, rings=None, step=0, dt=None, timed=False, sources=None):
        """Apply the spike-driven terms for one fixed step, from the potentials in `old` to
        those in `new`: each detector's rise (fall) over the step is a pulse integral, and
        release, STP, conductance and STDP updates are their exact jump forms.

        Delayed projections hold their releases in `rings` {projection: ring} (see
        `_delivery`) and receive what arrives in step `step` (of length `dt` ms). With
        `timed` (second-order solvers) each arrival acts from its time within the step: the
        conductance it adds has decayed over the rest of the step and has already driven
        its current into the postsynaptic membrane for that long; otherwise arrivals act at
        the step's end. Spike sources release what `sources` {source: (spikes in this step,
        their mean time as a fraction of it)} says (`AbstractSource.record`; none if absent).
        Returns (state, rings)."""
        rings = {} if rings is None else dict(rings)
        ds_up, ds_down, frac = {}, {}, {}
        for name, pop in self.populations.items():
            v_old, v_new = old["populations"][name][0], new["populations"][name][0]
            delta = pop.detector(v_new) - pop.detector(v_old)
            ds_up[name] = jnp.where(delta > _SPIKE_FLOOR, delta, 0.0)
            ds_down[name] = jnp.where(-delta > _SPIKE_FLOOR, -delta, 0.0)
            if timed or any(p.pre == name and p.delay is not None for p in self.projections.values()):
                frac[name] = release_fraction(pop, v_old, v_new, ds_up[name])
        counted = self._source_releases(new, sources)  # a source's spikes: counted, not detected
        ds_up.update(counted)
        ds_down.update(counted)  # (q, a spike's efficacy, unused by post-state synapses: cleared)
        frac.update({name: where for name, (_, where) in (sources or {}).items()})
        pops = dict(new["populations"])
        charge = {}  # per population: conductance × time × driving force of timed arrivals
        projs = {}
        for name, proj in self.projections.items():
            st = dict(new["projections"][name])
            if proj.stp is not None:
                stp_new, released = proj.stp.jump(st, ds_up[proj.pre], ds_down[proj.pre])
                st.update(stp_new)
            else:
                released = ds_up[proj.pre]
            if proj.synapse.post_states:
                n_post = self.populations[proj.post].size
                w = proj.weights(st)
                table = None if tables is None else tables.get(name)
                if proj.delay is not None:
                    rings[name] = ring_write(rings[name], step, released, frac[proj.pre])
                    if proj.per_edge_delay:  # one slot per connection: a sum over all of them
                        amount, late = arrivals(rings[name], step, proj.delay, dt, connection_rows(proj, n_post))
                        total = lambda x: connection_sum(proj, w, x, n_post)  # noqa: E731
                    else:
                        amount, late = arrivals(rings[name], step, proj.delay, dt)
                        total = lambda x: self._release_sum(proj, w, x, table, n_post, max_active)  # noqa: E731
                else:
                    amount, late = released, released * (1.0 - frac[proj.pre]) if timed else None
                    total = lambda x: self._release_sum(proj, w, x, table, n_post, max_active)  # noqa: E731
                jumped = proj.synapse.jump(st, total(amount))
                if timed:  # the arrivals' conductance × time over the rest of the step
                    exposure = total(late * dt)
                    rest = {k: v - st[k] for k, v in proj.synapse.jump(st, exposure).items()}
                    decay = proj.synapse.diagonal(st, None, 1.0)
                    jumped = {k: v + decay[k] * rest[k] for k, v in jumped.items()}
                    v_post = pops[proj.post][0]
                    drive = proj.synapse.current(rest, None, v_post)
                    charge[proj.post] = charge.get(proj.post, 0.0) + drive
                st.update(jumped)
            if proj.plastic:
                st.update(proj.stdp.jump(st, ds_up[proj.pre], ds_up[proj.post], proj))
            projs[name] = st
        for name, q in charge.items():  # ΔV = (charge) / Cm: the membrane's response to a current
            y, membrane = pops[name], self.populations[name].membrane
            pops[name] = y + jax.jvp(lambda i: membrane.derivatives(y, i), (jnp.zeros_like(q),), (q,))[1]
        return {"populations": pops, "projections": projs}, rings

    def _source_potentials(self, state):
        """Placeholders for the sources' potentials: a source has no voltage, and only
        synapses that ignore V_pre (post-state synapses) may take one as `pre`."""
        dtype = next(iter(state["populations"].values())).dtype
        return {name: jnp.zeros((src.size,), dtype) for name, src in self.sources.items()}

    def _source_releases(self, state, sources):
        """Per source, its spikes in this step (as amounts released), zero if not given."""
        out = {name: jnp.zeros_like(v) for name, v in self._source_potentials(state).items()}
        for name, (count, _) in (sources or {}).items():
            out[name] = count.astype(out[name].dtype)
        return out

    @staticmethod
    def _release_sum(proj, w, released, table, n_post, max_active):
        if table is None:
            return proj.weighted_sum(w, n_post)(released)
        return active_sum(proj, w, released, table, n_post, max_active)


def _check_source_roles(owner, name, proj, populations):
    """A source may be a projection's `pre` only, and only for a synapse whose state is
    per postsynaptic neuron (a kinetic synapse needs the presynaptic voltage)."""
    if isinstance(populations[proj.post], AbstractSource):
        raise ValueError(f"{owner}: projection {name!r} targets {proj.post!r}, a spike source; a source has no membrane and can only be a `pre`.")
    if isinstance(populations[proj.pre], AbstractSource) and proj.synapse.pre_states:
        raise ValueError(
            f"{owner}: projection {name!r}: its synapse ({type(proj.synapse).__name__}) releases "
            f"transmitter by the presynaptic voltage, and {proj.pre!r} is a spike source with no "
            "voltage; use a synapse driven by spikes (hh.ExpSynapse)."
        )


def _refuse_sources(net, names, what):
    sources = [n for n in names if n in net.sources]
    if sources:
        raise ValueError(f"hh.simulate: {what} names spike source(s) {sources}; a source has no voltage or state.")
