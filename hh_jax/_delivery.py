"""Delivery of released transmitter in fixed-step (clock-driven) network runs: when within
its step each release happens, the ring buffers that hold releases back for a synaptic
delay, and the step's arrivals at each projection.

A release is located within its step by a fraction in [0, 1] (`release_fraction`). With a
delay d the release of step i at fraction f arrives at t_i + (f + d/dt)·dt: in step
i + floor(f + d/dt) at fraction frac(f + d/dt). A ring of the last floor(d_max/dt) + 2 steps'
released amounts and fractions per presynaptic neuron is all a projection keeps; each step
reads the two slots its delay can point to. First-order solvers deliver arrivals at the end
of their step (within one step of t_spike + d); second-order ones at their fraction
(`Network.jumps` with `timed=True`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ._active import top_active
from ._validation import concrete_array


def release_fraction(pop, v_old, v_new, released):
    """Where within the step each neuron's release lies, as a fraction of the step: the time
    at which its detector passes the midpoint of its rise over the step, V interpolated
    linearly. For a whole upstroke within one step that is the threshold crossing, located
    as `upward_crossings` locates it; a rise split over two steps gives each part its own
    time. 0 where nothing is released."""
    mid = 0.5 * (pop.detector(v_old) + pop.detector(v_new))
    tiny = jnp.finfo(mid.dtype).tiny
    mid = jnp.clip(mid, tiny, 1.0 - jnp.finfo(mid.dtype).eps)
    v_mid = pop.theta() + pop.sharpness * (jnp.log(mid) - jnp.log1p(-mid))
    rise = v_new - v_old
    frac = (v_mid - v_old) / jnp.where(rise > 0, rise, 1.0)
    return jnp.where((released > 0) & (rise > 0), jnp.clip(frac, 0.0, 1.0), 0.5)


def ring_depth(delay, dt) -> int:
    """Slots a ring needs for delays up to max(`delay`) (ms) at step `dt` (ms)."""
    value = concrete_array(delay)
    if value is None:
        raise ValueError("hh.simulate: with fixed steps, projection delays must be concrete numbers (ms), not traced values.")
    return int(math.floor(float(np.max(value)) / dt + 1e-9)) + 2


def ring_init(depth, n_pre, dtype):
    """An empty ring: released amounts and their fractions, (depth, n_pre) each."""
    return jnp.zeros((depth, n_pre), dtype), jnp.zeros((depth, n_pre), dtype)


def ring_write(ring, i, released, frac):
    """The ring with step `i`'s releases in its slot."""
    amounts, fracs = ring
    slot = i % amounts.shape[0]
    return amounts.at[slot].set(released), fracs.at[slot].set(frac)


def arrivals(ring, i, delay, dt, rows=None):
    """What arrives in step `i` after `delay` (ms; a scalar, or one per connection with
    `rows` the presynaptic neuron of each connection): (amount, amount × the fraction of the
    step left after its arrival), per presynaptic neuron or per connection."""
    amounts, fracs = ring
    depth = amounts.shape[0]
    steps = delay / dt
    whole = jnp.floor(steps + 1e-9)
    part = jnp.clip(steps - whole, 0.0, 1.0)
    whole = whole.astype(jnp.int32)
    total = late = 0.0
    for extra in (0, 1):  # the release of step i − whole, or of the step before it
        slot = (i - whole - extra) % depth
        if rows is None:
            a, f = amounts[slot], fracs[slot]
        else:
            a, f = amounts[slot, rows], fracs[slot, rows]
        at = f + part - extra  # the arrival's fraction within step i
        mine = (at >= 0.0) & (at < 1.0)
        a = jnp.where(mine, a, 0.0)
        total = total + a
        late = late + a * (1.0 - jnp.clip(at, 0.0, 1.0))
    return total, late


def connection_rows(proj, n_post):
    """The presynaptic neuron of every connection: (E,) for an edge list, (n_pre, n_post)
    for a dense matrix (matching a per-connection delay)."""
    if proj.dense:
        n_pre = proj.weight.shape[0]
        return jnp.broadcast_to(jnp.arange(n_pre)[:, None], (n_pre, n_post))
    return proj.pre_index


def connection_sum(proj, w, x, n_post):
    """Σ w x per postsynaptic neuron, for per-connection x."""
    if proj.dense:
        return jnp.sum(w * x, axis=0)
    return jax.ops.segment_sum(w * x, proj.post_index, num_segments=n_post)


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


def active_sum(proj, w, released, table, n_post, max_active):
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
