"""The objective: a start's coordinates → membrane → one solve over all targets → loss.

Targets that sample the same times from the same start are solved together: their stimuli
are selected per lane of one batched solve with shared steps (`Selected`), so S starts and
K targets are one solve of S × K neurons, and the fit compiles one solve instead of K.
Other target sets are solved one after another (`Problem.batch_outputs`, the one path for
the loss, the residuals and the standard errors).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._loss import smooth
from .._membrane import AbstractMembrane
from .._simulate import simulate
from .._stimulus import AbstractStimulus
from .._target import Target
from ._spaces import membrane_with


class Selected(AbstractStimulus):
    """The stimulus of one lane of a stacked solve: Σ_k `weights[k]` · `stimuli[k]`(t), with
    `weights` one-hot. Every stimulus's jump times are handed to the solver (a few extra step
    ends on another lane's edges, never a step across one's own)."""

    stimuli: tuple
    weights: Float[Array, " targets"]

    def __call__(self, t):
        return sum((self.weights[..., k] * s(t) for k, s in enumerate(self.stimuli[1:], 1)),
                   self.weights[..., 0] * self.stimuli[0](t))

    def discontinuities(self):
        return jnp.concatenate([jnp.ravel(s.discontinuities()) for s in self.stimuli])

    def kinks(self):
        return jnp.concatenate([jnp.ravel(s.kinks()) for s in self.stimuli])


SMOOTHING_MAX = 1.0  # ms: the widest Gaussian of the coarse-to-fine least-squares stage
COARSE_RESOLUTION = 1e-3  # the coarse stage has found a start's basin when an iteration gains less (relative)


def smoothed(V, mask, width, dt):
    """V smoothed by a Gaussian of traced `width` (ms; 0 leaves V as it is), on one kernel
    size for every width (one compilation)."""
    return jax.lax.cond(width > 0, lambda V: smooth(V, mask, width, dt, reach=SMOOTHING_MAX), lambda V: V, V)


def same_samples(targets) -> bool:
    """Every target samples the same times from the same start (and potential, given or not):
    the starts and targets can be one solve with shared steps."""
    first = targets[0]
    return all(
        t.ts.shape == first.ts.shape and np.array_equal(np.asarray(t.ts), np.asarray(first.ts))
        and float(t.t0) == float(first.t0) and (t.v0 is None) == (first.v0 is None) and t.sample_dt == first.sample_dt
        for t in targets
    )


class Problem(eqx.Module):
    """Everything a start's loss depends on besides its coordinates (a pytree for jit)."""

    init: AbstractMembrane
    targets: tuple[Target, ...]
    loss: Callable
    rtol: Array
    atol: Array
    smoothing: Array  # ms: Gaussian width applied to both traces in `residuals` (0: none)
    spaces: tuple = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    forward: bool = eqx.field(static=True, default=False)  # gradients by forward mode
    shared: bool = eqx.field(static=True, default=False)  # every target samples the same times from the same start (one solve)

    def _lanes(self):
        """The stacked targets as per-lane arrays (leading axis: target)."""
        k = len(self.targets)
        stack = lambda f: jnp.stack([jnp.asarray(f(t)) for t in self.targets])  # noqa: E731
        lanes = dict(
            weights=jnp.eye(k, dtype=self.rtol.dtype), ts=stack(lambda t: t.ts), V=stack(lambda t: t.V),
            mask=stack(lambda t: t.mask), t0=stack(lambda t: t.t0).astype(self.rtol.dtype),
            weight=stack(lambda t: t.weight).astype(self.rtol.dtype),
        )
        if self.targets[0].v0 is not None:
            lanes["v0"] = stack(lambda t: t.v0).astype(self.rtol.dtype)
        return lanes

    def _lane_target(self, lane):
        stimuli = tuple(t.stimulus for t in self.targets)
        fields = ["stimulus", "ts", "V", "mask", "t0", "weight"] + (["v0"] if "v0" in lane else [])
        values = [Selected(stimuli, lane["weights"]), lane["ts"], lane["V"], lane["mask"], lane["t0"], lane["weight"]]
        values += [lane["v0"]] if "v0" in lane else []
        return eqx.tree_at(lambda t: [getattr(t, f) for f in fields], self.targets[0], values)

    def objective(self, u, adjoint=None):
        """(total loss, all solves succeeded) for one start."""
        values = [sp.natural(u[i])[None] for i, sp in enumerate(self.spaces)]
        losses, ok = self.batch_outputs(values, lambda t, V: t.weight * self.loss(t.ts, V, t), adjoint)
        return jnp.sum(losses[0]), ok[0]

    @property
    def gradient_adjoint(self):
        """The adjoint of the solves whose derivatives `value_and_grad` takes: forward mode
        with few free parameters (`forward`), else the default (reverse mode)."""
        return diffrax.ForwardMode() if self.forward else None

    def value_and_grad(self, u):
        """((loss, success), gradient) for one start. With few free parameters (`forward`)
        the gradient comes by forward mode: one tangent per parameter carried through the
        solver's own steps, which compiles to about half the program of reverse mode and runs
        about three times faster at four parameters (measured); else by reverse mode."""
        if not self.forward:
            return jax.value_and_grad(self.objective, has_aux=True)(u)

        def value(x):
            loss, ok = self.objective(x, adjoint=self.gradient_adjoint)
            return loss, (loss, ok)

        grad, aux = jax.jacfwd(value, has_aux=True)(u)
        return aux, grad

    def _target_residuals(self, t, V):
        """One target's weighted residuals of the simulated trace V (both traces smoothed
        alike in the coarse-to-fine stage)."""
        if t.sample_dt is not None:
            V = smoothed(V, t.mask, self.smoothing, t.sample_dt)
            t = eqx.tree_at(lambda t: t.V, t, smoothed(t.V, t.mask, self.smoothing, t.sample_dt))
        return jnp.sqrt(t.weight) * self.loss.residuals(t.ts, V, t)

    def residuals(self, u):
        """Least-squares residuals r (loss = Σ r²) and success for one start (`batch_residuals`
        of a batch of one)."""
        r, ok = self.batch_residuals(u[None])
        return r[0], ok[0]

    def loss_resolution(self):
        """The relative change of a start's loss below which the iterations cannot tell better
        from worse, so a start has converged: on the traces, the noise that shared steps put
        on a start's loss (about a tenth of the solver's rtol; measured 2-4e-6 at rtol 1e-4);
        on the smoothed traces of the coarse stage, which only has to find each start's
        basin, `COARSE_RESOLUTION`."""
        return jnp.where(self.smoothing > 0, jnp.maximum(COARSE_RESOLUTION, 0.1 * self.rtol), 0.1 * self.rtol)

    def residual_count(self) -> int:
        """The length of `residuals`' vector, found without solving."""
        return sum(math.prod(jax.eval_shape(lambda t: self.loss.residuals(t.ts, t.V, t), t).shape)
                   for t in self.targets)

    def batch_residuals(self, U):
        """`residuals` `(n, m)` and success `(n,)` of the starts U `(n, p)`, by forward-mode
        solves (`_least_squares` takes one tangent per parameter for all starts). A start at
        non-finite coordinates is solved at u = 0 and failed."""
        finite = jnp.all(jnp.isfinite(U), axis=-1)
        U = jnp.where(finite[:, None], U, 0.0)
        values = [s.natural(U[:, i]) for i, s in enumerate(self.spaces)]
        r, ok = self.batch_outputs(values, self._target_residuals, diffrax.ForwardMode())
        return r, ok & finite & jnp.all(jnp.isfinite(r), axis=-1)

    def batch_outputs(self, values, fn, adjoint=None):
        """`fn(target, V)` (a vector per target) for n membranes, the free parameters at
        `values` (a list of `(n,)` arrays, in `spaces` order), concatenated over the targets
        `(n, Σ m)`, and success `(n,)`: one solve with shared steps (the error norm is the
        worst neuron's, so each is as accurate as alone; the step sizes carry no derivative,
        so each membrane's outputs depend on its own parameters only), for all targets at
        once when they sample the same times (`shared`), else one solve per target."""
        n = values[0].shape[0]

        def membranes(*lead):
            return membrane_with(self.init, self.spaces, [v.reshape(n, *lead) for v in values])

        solve = dict(save="V", rtol=self.rtol, atol=self.atol, max_steps=self.max_steps, throw=False,
                     **({} if adjoint is None else {"adjoint": adjoint}))
        if self.shared:
            lanes = self._lanes()
            first = self.targets[0]
            stimulus = Selected(tuple(t.stimulus for t in self.targets), lanes["weights"])
            tr = simulate(membranes(1), stimulus, t0=first.t0, t1=first.ts[-1], ts=first.ts, v0=lanes.get("v0"), **solve)
            out = jax.vmap(lambda lane, V: jax.vmap(lambda v: fn(self._lane_target(lane), v))(V),
                           in_axes=(0, 1), out_axes=1)(lanes, tr.V)
            return out.reshape(n, -1), jnp.broadcast_to(tr.success, (n,))
        outs, ok = [], True
        for i, t in enumerate(self.targets):
            tr = simulate(membranes(), t.stimulus, t0=t.t0, t1=t.ts[-1], ts=t.ts, v0=t.v0, **solve)
            outs.append(jax.vmap(lambda v: fn(t, v))(tr.V).reshape(n, -1))
            ok = ok & tr.success
        return jnp.concatenate(outs, axis=-1), jnp.broadcast_to(ok, (n,))


FORWARD_MAX_PARAMETERS = 8  # up to this many free parameters, gradients by forward mode


def make_problem(init, targets, loss, spaces, rtol, atol, max_steps, dtype, forward=None) -> Problem:
    cast = lambda x: jnp.asarray(x, dtype) if eqx.is_inexact_array(x) or isinstance(x, float) else x  # noqa: E731
    cast_arrays = lambda x: jnp.asarray(x, dtype) if eqx.is_inexact_array(x) else x  # noqa: E731
    return Problem(
        init=jax.tree_util.tree_map(cast, init),
        targets=jax.tree_util.tree_map(cast_arrays, targets),
        loss=loss,
        rtol=jnp.asarray(rtol, dtype), atol=jnp.asarray(atol, dtype), smoothing=jnp.asarray(0.0, dtype),
        spaces=spaces, max_steps=max_steps, shared=same_samples(targets),
        forward=len(spaces) <= FORWARD_MAX_PARAMETERS if forward is None else forward,
    )
