"""Large batches of single neurons: how they are solved (`hh.Batching`), and the machinery:
flatten the batch, run it in chunks, and shard each chunk over devices.

`hh.simulate` hands a batch to `run_batched` when it is called eagerly and either several
devices are used or the batch is larger than the chunk size. Each device runs its own
adaptive solver loop on its slice (`jax.shard_map`), so no device waits on another's step
sizes; chunks run one after another through one compiled function, so memory stays bounded
by the chunk.
"""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from ._deprecation import deprecated
from ._stimulus.base import batched_leaves
from ._validation import check_count, is_array

_AXIS = "batch"


def _as_tuple(devices):
    return None if devices is None else tuple(devices)


class Batching(eqx.Module):
    """How `hh.simulate` and `hh.simulate_spikes` solve a batch of single neurons (array-valued
    parameters, stimulus parameters or `v0`), in the way Diffrax takes a `SaveAt`.

    **Fields:**
    - `chunk_size`: the number of neurons solved per compiled call (default: the whole
      batch). Chunks run one after another, so peak memory is set by the chunk and the saved
      output (e.g. 100,000 neurons × 2001 V samples in chunks of 10,000).
    - `devices`: the devices to shard a batch over (default: all devices of JAX's default
      backend). With several, each device runs its own solver loop on its slice of the batch
      (`jax.shard_map`). Chunking and sharding apply to eager calls; inside `jax.jit` the
      batch is solved as one.
    - `per_neuron`: False (default): the batch is one ODE with one shared step sequence,
      controlled so that every neuron meets the tolerance; fastest for similar neurons, and a
      neuron's trace then depends on its batch-mates at the level of the tolerance. True:
      every neuron takes its own steps (a `vmap` of single solves), so its trace is that of
      solving it alone (to rounding, ~1e-11 mV), whatever the batch, chunk or device it is in.

    Example:
        >>> hh.simulate(hh.presets.neuron(gNa=jnp.linspace(80, 160, 100_000)), s, t1=50.0,
        ...             save="V", batching=hh.Batching(chunk_size=10_000, per_neuron=True))
    """

    chunk_size: int | None = None
    devices: tuple | None = eqx.field(default=None, converter=_as_tuple)
    per_neuron: bool = False

    def __check_init__(self):
        if self.chunk_size is not None:
            check_count("chunk_size", self.chunk_size, "hh.Batching")
        if self.devices is not None and not self.devices:
            raise ValueError("hh.Batching: `devices` must name at least one device.")
        if not isinstance(self.per_neuron, (bool, np.bool_)):
            raise ValueError(f"hh.Batching: `per_neuron` must be True or False, got {self.per_neuron!r}.")

    def chosen_devices(self) -> tuple:
        """`devices`, or by default every device of JAX's default backend."""
        return tuple(jax.devices()) if self.devices is None else self.devices


_STEPS_MODES = {"shared": False, "per_neuron": True}


def batching_from_keywords(owner: str, batching: Batching | None, old: dict) -> Batching:
    """`batching`, or one built from the deprecated flat keywords `chunk_size=`, `devices=`
    and `steps=` (each warns, naming `hh.Batching`). Any other keyword is a `TypeError`."""
    unknown = sorted(set(old) - {"chunk_size", "devices", "steps"})
    if unknown:
        raise TypeError(f"{owner}() got unexpected keyword argument(s) {unknown}.")
    if batching is not None and not isinstance(batching, Batching):
        raise TypeError(f"{owner}: `batching` must be an hh.Batching, got {type(batching).__name__}.")
    if not old:
        return Batching() if batching is None else batching
    if batching is not None:
        raise TypeError(f"{owner}: pass `batching=hh.Batching(...)` or the old {sorted(old)}, not both.")
    fields = {k: v for k, v in old.items() if k != "steps"}
    if "steps" in old:
        fields["per_neuron"] = _STEPS_MODES.get(old["steps"], old["steps"])
    spelled = ", ".join(f"{k}={v!r}" for k, v in fields.items())
    deprecated(owner, ", ".join(f"`{k}=`" for k in old), f"`batching=hh.Batching({spelled})`", stacklevel=3)
    if "steps" in old and old["steps"] not in _STEPS_MODES:
        raise ValueError(f"{owner}: `steps` must be 'shared' or 'per_neuron', got {old['steps']!r}.")
    return Batching(**fields)


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
