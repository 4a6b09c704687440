"""A projection: the connections of one synapse type from one population to another, with
their weights and optional short-term (`hh.TsodyksMarkram`) and long-term (`hh.STDP`)
plasticity.

Connectivity is a dense weight matrix (n_pre, n_post), summed by a matrix product, or an
edge list (pre indices, post indices, weights), summed by `jax.ops.segment_sum` over the
edges only, never through an N × N matrix.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ._plasticity import STDP, TsodyksMarkram
from ._synapse import AbstractSynapse
from ._validation import check_finite, check_memory, check_nonnegative


class Projection(eqx.Module):
    """Connections of one synapse type from population `pre` to population `post`.

    **Arguments:**
    - `pre`, `post`: population names.
    - `synapse`: an `hh.AbstractSynapse` (`hh.ExpSynapse`, `hh.AMPA()`, ...).
    - `weight`: with `edges=None`, a dense matrix (n_pre, n_post) of conductance weights
      (mS/cm²; 0 = no connection); with `edges`, one weight per edge (length E) or one
      scalar for all.
    - `edges`: None, or `(pre_index, post_index)`, two integer arrays of length E.
    - `stp`: an `hh.TsodyksMarkram` rule, or None.
    - `stdp`: an `hh.STDP` rule, or None (weights then stay fixed).
    - `delay`: synaptic delay (ms, >= 0) from a presynaptic spike to its release onto the
      postsynaptic conductance: None (none), a number for the whole projection, or an array
      with one value per edge (per pair (n_pre, n_post) for a dense matrix). Only for
      release-driven synapses (`post_states`, e.g. `hh.ExpSynapse`); short-term plasticity
      acts at the spike and its released amount arrives after the delay; STDP pairs the
      spikes themselves, undelayed. Fixed steps deliver through a ring buffer of released
      amounts; adaptive runs release at the recorded spike time + delay exactly (see
      `hh.simulate`).

    The plasticity rules see the connectivity through `pairwise` and `existing`.

    Example:
        >>> proj = hh.Projection("E", "I", hh.ExpSynapse(tau=5.0, E=0.0), weight=0.03,
        ...                      edges=(jnp.array([0, 1, 2]), jnp.array([0, 0, 1])))
    """

    pre: str = eqx.field(static=True)
    post: str = eqx.field(static=True)
    synapse: AbstractSynapse
    weight: Float[Array, "..."]
    pre_index: Int[Array, " edges"] | None
    post_index: Int[Array, " edges"] | None
    stp: TsodyksMarkram | None
    stdp: STDP | None
    delay: Float[Array, "..."] | None

    def __init__(self, pre, post, synapse, weight, edges=None, *, stp=None, stdp=None, delay=None):
        owner = "hh.Projection"
        if not (isinstance(pre, str) and isinstance(post, str)):
            raise TypeError(f"{owner}: `pre` and `post` must be population names (str), got {pre!r}, {post!r}.")
        if not isinstance(synapse, AbstractSynapse):
            raise TypeError(f"{owner}: `synapse` must be an hh synapse (hh.ExpSynapse, hh.AMPA(), ...), got {type(synapse).__name__}.")
        if stp is not None and not isinstance(stp, TsodyksMarkram):
            raise TypeError(f"{owner}: `stp` must be an hh.TsodyksMarkram or None, got {type(stp).__name__}.")
        if stdp is not None and not isinstance(stdp, STDP):
            raise TypeError(f"{owner}: `stdp` must be an hh.STDP or None, got {type(stdp).__name__}.")
        if edges is None and np.ndim(weight) == 2:
            check_memory(owner, "a dense weight matrix", np.shape(weight), 8,
                         "pass `edges` (pre_index, post_index) with one weight per edge for sparse connectivity")
        weight = jnp.asarray(weight) if not isinstance(weight, jax.Array) else weight
        if not jnp.issubdtype(weight.dtype, jnp.floating):
            weight = weight.astype(jnp.result_type(float))
        check_finite("weight", weight, owner)
        check_nonnegative("weight", weight, owner, "mS/cm² (inhibition comes from the reversal potential E)")
        if edges is None:
            if weight.ndim != 2:
                raise ValueError(
                    f"{owner}: without `edges`, `weight` must be a dense (n_pre, n_post) matrix, "
                    f"got shape {weight.shape}."
                )
            pre_index = post_index = None
        else:
            if not (isinstance(edges, (tuple, list)) and len(edges) == 2):
                raise ValueError(f"{owner}: `edges` must be a pair (pre_index, post_index) of integer arrays.")
            pre_index, post_index = (jnp.asarray(e) if np.size(e) else jnp.zeros((0,), jnp.int32) for e in edges)
            for name, idx in (("pre_index", pre_index), ("post_index", post_index)):
                if idx.ndim != 1 or not jnp.issubdtype(idx.dtype, jnp.integer):
                    raise ValueError(f"{owner}: `edges` {name} must be a 1-D integer array, got {idx.dtype} of shape {idx.shape}.")
            if pre_index.shape != post_index.shape:
                raise ValueError(
                    f"{owner}: `edges` pre and post index arrays differ in length: "
                    f"{pre_index.shape[0]} and {post_index.shape[0]}."
                )
            n_edges = pre_index.shape[0]
            if weight.shape not in ((), (n_edges,)):
                raise ValueError(
                    f"{owner}: `weight` must be a scalar or have one entry per edge ({n_edges}), "
                    f"got shape {weight.shape}."
                )
        self.pre, self.post, self.synapse = pre, post, synapse
        self.weight, self.pre_index, self.post_index = weight, pre_index, post_index
        self.stp, self.stdp = stp, stdp
        self.delay = None if delay is None else _check_delay(owner, delay, synapse, weight.shape if edges is None else pre_index.shape)

    @property
    def per_edge_delay(self) -> bool:
        """True when the delay is an array with one value per connection."""
        return self.delay is not None and jnp.ndim(self.delay) > 0

    @property
    def dense(self) -> bool:
        return self.pre_index is None

    @property
    def plastic(self) -> bool:
        return self.stdp is not None and self.stdp.enabled

    @property
    def state_names(self) -> tuple[str, ...]:
        """The projection's variables: the synapse's, then its plasticity rules'."""
        names = self.synapse.pre_states + self.synapse.post_states
        if self.stp is not None:
            names += self.stp.state_names
        if self.plastic:
            names += self.stdp.state_names
        return tuple(names)

    def initial_state(self, n_pre, n_post, dtype) -> dict:
        """At rest: no conductance, full resources, empty traces, the `weight` field as the
        STDP weights."""
        st = {s: jnp.zeros((n_pre,), dtype) for s in self.synapse.pre_states}
        st.update({s: jnp.zeros((n_post,), dtype) for s in self.synapse.post_states})
        if self.stp is not None:
            st.update(self.stp.init(n_pre, dtype))
        if self.plastic:
            shape = self.weight.shape if self.dense else self.pre_index.shape
            st.update(self.stdp.init(n_pre, n_post, jnp.broadcast_to(self.weight, shape), dtype))
        return st

    def weights(self, state) -> Array:
        """The current weights: the STDP state (within its bounds, and zero where a dense
        matrix has no connection) if plastic, else the `weight` field."""
        return self.clip_weights(state["w"]) if self.plastic else self.weight

    def clip_weights(self, w):
        """Plastic weights within the STDP bounds; absent connections of a dense matrix stay 0."""
        return self.existing(self.stdp.clip(w))

    def existing(self, w):
        """Per-connection values `w` with the absent connections of a dense matrix set to 0."""
        return w * (self.weight != 0) if self.dense else w

    def pairwise(self, x, y):
        """x[i] y[j] for every connection i → j, for per-presynaptic x and per-postsynaptic y:
        an (n_pre, n_post) outer product for a dense matrix (absent connections included,
        see `existing`), one value per edge for an edge list."""
        if self.dense:
            return x[:, None] * y[None, :]
        return x[self.pre_index] * y[self.post_index]

    def weighted_sum(self, w, n_post):
        """x ↦ Σ_connections w x per postsynaptic neuron, for per-presynaptic x."""
        if self.dense:
            return lambda x: x @ w
        return lambda x: jax.ops.segment_sum(
            w * x[self.pre_index], self.post_index, num_segments=n_post
        )


def _check_delay(owner, delay, synapse, connections):
    """`delay` (ms) as a floating array: finite, >= 0, a scalar or one per connection."""
    if not synapse.post_states:
        raise ValueError(
            f"{owner}: `delay` applies to release-driven synapses (such as hh.ExpSynapse); "
            f"{type(synapse).__name__} is driven continuously by the presynaptic voltage."
        )
    delay = jnp.asarray(delay) if not isinstance(delay, jax.Array) else delay
    if not jnp.issubdtype(delay.dtype, jnp.floating):
        delay = delay.astype(jnp.result_type(float))
    check_finite("delay", delay, owner)
    check_nonnegative("delay", delay, owner, "ms")
    if delay.shape not in ((), tuple(connections)):
        raise ValueError(
            f"{owner}: `delay` must be a number (ms) or have one value per connection, shape "
            f"{tuple(connections)}, got shape {delay.shape}."
        )
    return delay
