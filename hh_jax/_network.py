"""Networks: populations of membranes connected by synapses, as one pytree and one ODE.

A `hh.Network` holds named `hh.Population`s (any membrane, `size` neurons each) and named
`hh.Projection`s (a synapse type, its connections and their weights, optionally short-term
and long-term plasticity). Its state is a dict of arrays: `{"populations": {name: (states,
size)}, "projections": {name: {variable: array}}}`; every variable is addressed by
"<population>.<state>" or "<projection>.<variable>" (e.g. "E.V", "ee.g", "ee.w").
Projections, their connectivity and their plasticity rules live in `_projection` and
`_plasticity`; this module holds populations and the network's ODE and jumps.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from ._active import top_active
from ._membrane import AbstractMembrane
from ._projection import Projection
from ._validation import check_finite, check_positive, concrete_array

_SPIKE_FLOOR = 1e-9  # detector increments below this are not deliveries (fixed-step runs)


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


class Network(eqx.Module):
    """A network of populations and projections, simulated by `hh.simulate`.

    **Fields:** `populations` {name: `hh.Population`}, `projections` {name: `hh.Projection`}.
    Names may not contain '.' and a projection may not share a population's name.

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

    def __init__(self, populations, projections=None):
        owner = "hh.Network"
        projections = {} if projections is None else projections
        if not isinstance(populations, dict) or not populations:
            raise ValueError(f"{owner}: `populations` must be a non-empty dict {{name: hh.Population}}.")
        if not isinstance(projections, dict):
            raise ValueError(f"{owner}: `projections` must be a dict {{name: hh.Projection}}.")
        for name, pop in populations.items():
            if not isinstance(pop, Population):
                raise TypeError(f"{owner}: population {name!r} must be an hh.Population, got {type(pop).__name__}.")
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
        self.populations = dict(populations)
        self.projections = dict(projections)

    # ------------------------------------------------------------------ state

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
        projs = {name: proj.initial_state(self.populations[proj.pre].size, self.populations[proj.post].size, dtype)
                 for name, proj in self.projections.items()}
        state = {"populations": pops, "projections": projs}
        known = set(self.variable_names())
        for key, value in init.items():
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
            if proj.synapse.post_states and release is not None:
                release_sum = sums[name](release)
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
            b = dict(proj.synapse.diagonal(syn_state, pops[proj.pre][0], efficacy))
            if proj.stp is not None:
                b.update(proj.stp.relaxation_diagonal())
            if proj.plastic:
                b.update(proj.stdp.relaxation_diagonal())
            # Broadcast to each variable's shape lazily: scalars stay scalars (one φ each).
            b_projs[name] = {k: jnp.asarray(b[k], st[k].dtype) for k in st}
        return ({"populations": d_pops, "projections": d_projs},
                {"populations": b_pops, "projections": b_projs})

    def jumps(self, old, new, tables=None, max_active=128):
        """Apply the spike-driven terms for one fixed step, from the potentials in `old` to
        those in `new`: each detector's rise (fall) over the step is a pulse integral, and
        release, STP, conductance and STDP updates are their exact jump forms."""
        ds_up, ds_down = {}, {}
        for name, pop in self.populations.items():
            delta = pop.detector(new["populations"][name][0]) - pop.detector(old["populations"][name][0])
            ds_up[name] = jnp.where(delta > _SPIKE_FLOOR, delta, 0.0)
            ds_down[name] = jnp.where(-delta > _SPIKE_FLOOR, -delta, 0.0)
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
                if table is None:
                    release_sum = proj.weighted_sum(w, n_post)(released)
                else:
                    release_sum = _active_sum(proj, w, released, table, n_post, max_active)
                st.update(proj.synapse.jump(st, release_sum))
            if proj.plastic:
                st.update(proj.stdp.jump(st, ds_up[proj.pre], ds_up[proj.post], proj))
            projs[name] = st
        return {"populations": new["populations"], "projections": projs}


def out_edge_table(pre_index, n_pre) -> np.ndarray:
    """For an edge list: a (n_pre, max out-degree) table of each presynaptic neuron's edge
    numbers, padded with E (one past the last edge). Built once, eagerly, from concrete
    indices, so a step only touches the edges of neurons that spiked. None when the
    out-degrees are so uneven that the table would be much larger than the edge list."""
    pre = np.asarray(pre_index)
    n_edges = pre.shape[0]
    order = np.argsort(pre, kind="stable")
    counts = np.bincount(pre, minlength=n_pre)
    width = max(int(counts.max()) if n_edges else 0, 1)
    if n_pre * width > 8 * n_edges + n_pre:
        return None  # a few hubs would make the padded table huge: sum over the edges instead
    table = np.full((n_pre, width), n_edges, dtype=np.int32)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(n_edges) - np.repeat(starts, counts)
    table[pre[order], slot] = order
    return table


def _active_sum(proj, w, released, table, n_post, max_active):
    """Σ w · released per postsynaptic neuron, touching only the edges of the presynaptic
    neurons that released anything: up to `max_active` of them, found by `lax.top_k` (on
    float32, where it is fast); in a busier step the rest are summed over all edges."""
    n_edges = proj.pre_index.shape[0]
    idx, _, overflow = top_active(released, max_active)
    amount = released[idx]  # exact values; zeros among them add nothing
    edges = table[idx]  # (k, out-degree), padded with n_edges
    w_pad = jnp.concatenate([jnp.broadcast_to(w, (n_edges,)), jnp.zeros((1,), released.dtype)])
    post_pad = jnp.concatenate([proj.post_index, jnp.full((1,), n_post, proj.post_index.dtype)])
    total = jnp.zeros((n_post,), released.dtype).at[post_pad[edges]].add(w_pad[edges] * amount[:, None], mode="drop")

    def rest(_):
        return proj.weighted_sum(w, n_post)(released.at[idx].set(0.0))

    return total + jax.lax.cond(overflow, rest, lambda _: jnp.zeros_like(total), None)
