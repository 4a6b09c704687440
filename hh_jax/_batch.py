"""Large batches: flatten the batch, run it in chunks, and shard each chunk over devices.

`hh.simulate` hands a batch here when it is called eagerly and either several devices are
visible or the batch is larger than `chunk_size`. Each device runs its own adaptive solver
loop on its slice (`jax.shard_map`), so no device waits on another's step sizes; chunks run
one after another through one compiled function, so memory stays bounded by the chunk.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from ._stimulus.base import batched_leaves
from ._validation import is_array

_AXIS = "batch"


def flatten_batch(membrane, stimulus, v0, batch_shape):
    """Broadcast every per-neuron value to `batch_shape` and flatten it to one axis.

    Returns `(membrane, stimulus, v0, stimulus_batched)`: membrane leaves become `(B,)`,
    `v0` `(B,)` or None, and stimulus leaves whose leading axes are the stimulus's batch shape
    become `(B, *rest)`; other stimulus leaves (sample times, say) are shared by all neurons
    and `stimulus_batched` marks which is which.
    """
    size = math.prod(batch_shape)

    def flat_member(x):
        if not is_array(x):
            return x
        return jnp.broadcast_to(jnp.asarray(x), batch_shape).reshape(size)

    membrane = jax.tree_util.tree_map(flat_member, membrane)
    v0 = None if v0 is None else jnp.broadcast_to(v0, batch_shape).reshape(size)
    stim_batch = stimulus.batch_shape

    def flat_stimulus(x):
        rest = np.shape(x)[len(stim_batch):]
        padded = jnp.reshape(x, (1,) * (len(batch_shape) - len(stim_batch)) + np.shape(x))
        return jnp.broadcast_to(padded, (*batch_shape, *rest)).reshape(size, *rest)

    batched = batched_leaves(stimulus, stim_batch)
    stimulus = jax.tree_util.tree_map(
        lambda x, b: flat_stimulus(x) if b else x, stimulus, batched
    )
    return membrane, stimulus, v0, batched


def _take(tree, batched, start, stop, pad_to):
    """Rows start:stop of the batched leaves, padded (repeating the last row) to `pad_to`."""

    def take(x, is_batched):
        if not is_batched or not is_array(x) or np.ndim(x) == 0:
            return x
        rows = x[start:stop]
        if rows.shape[0] < pad_to:
            fill = jnp.repeat(rows[-1:], pad_to - rows.shape[0], axis=0)
            rows = jnp.concatenate([rows, fill], axis=0)
        return rows

    return jax.tree_util.tree_map(take, tree, batched)


def run_batched(integrate, membrane, stimulus, v0, batch_shape, arrays, static, devices, chunk_size):
    """Solve a large batch chunk by chunk, each chunk sharded over `devices`.

    `integrate(membrane, stimulus, v0, batch_shape, arrays, static)` is the single-device
    solve (`arrays`: traced options such as save times and tolerances; `static`: hashable
    options such as the solver); returns `(out, success, cause, stats)` like it, every leaf
    of `out` batch-first with the batch shape restored.
    """
    size = math.prod(batch_shape)
    membrane, stimulus, v0, stim_batched = flatten_batch(membrane, stimulus, v0, batch_shape)
    member_batched = jax.tree_util.tree_map(lambda x: is_array(x) and np.ndim(x) > 0, membrane)
    n_dev = len(devices)
    chunk = min(size, chunk_size or size)
    chunk = int(math.ceil(chunk / n_dev) * n_dev)  # every device gets the same number of neurons
    local = chunk // n_dev
    if n_dev == 1:  # chunks only: the plain compiled solve, no shard_map wrapper
        solve = functools.partial(_single_device, integrate, (chunk,), static)
    else:
        mesh = Mesh(np.asarray(devices), (_AXIS,))
        solve = _sharded_solver(integrate, mesh, local, member_batched, stim_batched, v0 is not None, static)

    buffers, treedef, success, cause, steps = None, None, True, 0, {}
    for start in range(0, size, chunk):
        stop = min(start + chunk, size)
        m = _take(membrane, member_batched, start, stop, chunk)
        s = _take(stimulus, stim_batched, start, stop, chunk)
        v = None if v0 is None else _take(v0, True, start, stop, chunk)
        out, ok, why, stats = solve(m, s, v, arrays)
        leaves, treedef = jax.tree_util.tree_flatten(out)
        if buffers is None:  # one host buffer per output for the whole batch: no concatenation
            buffers = [np.empty((size, *leaf.shape[1:]), dtype=leaf.dtype) for leaf in leaves]
        for buffer, leaf in zip(buffers, leaves):
            # Copy on the host: slicing on the device first would add a device-side copy.
            buffer[start:stop] = np.asarray(leaf)[: stop - start]
        del out, leaves
        ok = np.asarray(ok)
        if success and not ok.all():
            success, cause = False, int(np.asarray(why)[np.argmin(ok)])
        for k, val in stats.items():
            steps[k] = max(steps.get(k, 0), int(np.max(np.asarray(val))))
    outputs = [_to_jax(b.reshape(*batch_shape, *b.shape[1:])) for b in buffers]
    out = jax.tree_util.tree_unflatten(treedef, outputs)
    return out, jnp.asarray(success), jnp.asarray(cause), {k: jnp.asarray(v) for k, v in steps.items()}


def _single_device(integrate, batch_shape, static, m, s, v, arrays):
    out, ok, why, stats = integrate(m, s, v, batch_shape, arrays, static)
    return out, ok[None], why[None], stats


def _to_jax(array: np.ndarray):
    """A JAX array over the host buffer without a copy where the backend allows (CPU, via
    DLPack), else a normal transfer."""
    if jax.default_backend() == "cpu":
        try:
            return jax.dlpack.from_dlpack(array)
        except Exception:  # unaligned buffer or an older JAX: copy instead
            pass
    return jnp.asarray(array)


@functools.lru_cache(maxsize=32)
def _sharded_solver(integrate, mesh, local, member_batched, stim_batched, has_v0, static):
    """One compiled, sharded solve per layout and static options (cached across calls)."""

    def specs(batched):
        return jax.tree_util.tree_map(lambda b: P(_AXIS) if b else P(), batched)

    def per_device(m, s, v, arrays):
        ys, ok, why, stats = integrate(m, s, v, (local,), arrays, static)
        return ys, ok[None], why[None], {k: x[None] for k, x in stats.items()}

    in_specs = (specs(member_batched), specs(stim_batched), P(_AXIS) if has_v0 else None, P())
    out_specs = (P(_AXIS), P(_AXIS), P(_AXIS), P(_AXIS))  # every output is batch-first
    return jax.jit(
        jax.shard_map(per_device, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    )
