"""Plasticity: short-term (Tsodyks–Markram) and long-term (pair-based STDP) rules.

Both are written in continuous time, driven by the release pulses r(t) of the presynaptic
(and, for STDP, postsynaptic) neurons, whose integral is 1 per spike (see `hh.ExpSynapse`).
Each rule also has an exact *jump* form, the same equations integrated over a step in which
only the pulses act, used by fixed-step (clock-driven) runs.

Both own their state and answer one interface, which is all a network calls: `state_names`,
`init` (the state at rest), `derivatives` (under the pulses), `relaxation` and
`relaxation_diagonal` (without them, for exponential Euler) and `jump`. Tsodyks–Markram acts
per presynaptic neuron and also returns the released amount; STDP acts per connection, which
it reaches through its projection (`pairwise`, `existing`).
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from ._validation import check_finite, check_nonnegative, check_positive, concrete_array


def _check_fraction(name, value, owner):
    check_finite(name, value, owner)
    v = concrete_array(value)
    if v is not None and not np.all((v > 0) & (v < 1)):
        raise ValueError(f"{owner}: `{name}` must lie in (0, 1), got {value}.")


class TsodyksMarkram(eqx.Module):
    """Short-term depression and facilitation (Tsodyks & Markram 1997; Markram, Wang &
    Tsodyks 1998) in continuous time.

    Per presynaptic neuron: available resources x (recovering to 1 with `tau_rec`) and
    utilisation u (decaying to 0 with `tau_facil`). At each spike u jumps to
    u⁺ = u + U (1 − u), then a fraction u⁺ of x is released: the synapse receives u⁺x and
    x drops by as much. Without facilitation (`tau_facil=None`) u⁺ = U at every spike.

    The continuous form drives x and u with the spike's release pulse r(t) (integral 1):
    du/dt = −u/τf + λ (1 − u) r and dx/dt = (1 − x)/τrec − κ x r with λ = −ln(1 − U) and
    κ = −ln(1 − u) + λ/2. Over a pulse, 1 − u shrinks by exactly (1 − U) and x by exactly
    (1 − u⁺) — ln(1 − u) falls linearly in the pulse's integral, so its mean over the pulse
    is the midpoint, which the λ/2 accounts for — so the released amounts follow the
    event-based recurrence up to recovery during the pulse itself (width ≪ τ).

    **Fields:** `U` (in (0, 1)), `tau_rec` (ms, > 0), `tau_facil` (ms, > 0, or None).

    Example:
        >>> depressing = hh.TsodyksMarkram(U=0.5, tau_rec=800.0)
        >>> facilitating = hh.TsodyksMarkram(U=0.1, tau_rec=100.0, tau_facil=1000.0)
    """

    U: Float[ArrayLike, ""]
    tau_rec: Float[ArrayLike, ""]
    tau_facil: Float[ArrayLike, ""] | None = None

    def __check_init__(self):
        owner = "hh.TsodyksMarkram"
        _check_fraction("U", self.U, owner)
        check_positive("tau_rec", self.tau_rec, owner, "ms")
        if self.tau_facil is not None:
            check_positive("tau_facil", self.tau_facil, owner, "ms")

    @property
    def state_names(self):
        return ("x", "u", "q") if self.tau_facil is not None else ("x", "q")

    def init(self, n, dtype):
        state = {"x": jnp.ones((n,), dtype), "q": jnp.zeros((n,), dtype)}
        if self.tau_facil is not None:
            state["u"] = jnp.zeros((n,), dtype)
        return state

    def _lam(self):
        return -jnp.log1p(-jnp.asarray(self.U))

    def derivatives(self, state, r_up, r_down):
        """(d state/dt, release flux R (1/ms)) under the pulses r_up, r_down (1/ms)."""
        x, q = state["x"], state["q"]
        lam = self._lam()
        d = {}
        if self.tau_facil is not None:
            u = state["u"]
            kappa = -jnp.log1p(-u) + lam / 2.0
            d["u"] = -u / self.tau_facil + lam * (1.0 - u) * r_up
        else:
            kappa = lam
        release = kappa * x * r_up
        d["x"] = (1.0 - x) / self.tau_rec - release
        # q holds the current spike's released amount (the efficacy of its transmitter),
        # built on the upstroke and cleared on the downstroke.
        d["q"] = release - _Q_CLEAR * q * r_down
        return d, release

    def relaxation(self, state):
        """The pulse-free part of d state/dt (recovery and decay)."""
        d = {"x": (1.0 - state["x"]) / self.tau_rec, "q": jnp.zeros_like(state["q"])}
        if self.tau_facil is not None:
            d["u"] = -state["u"] / self.tau_facil
        return d

    def relaxation_diagonal(self):
        """∂(relaxation)/∂state: scalars."""
        d = {"x": -1.0 / jnp.asarray(self.tau_rec), "q": jnp.zeros(())}
        if self.tau_facil is not None:
            d["u"] = -1.0 / jnp.asarray(self.tau_facil)
        return d

    def jump(self, state, ds_up, ds_down):
        """(state, released amount) after pulses with integrals ds_up, ds_down."""
        x, q = state["x"], state["q"]
        lam = self._lam()
        new = {}
        if self.tau_facil is not None:
            log_free = jnp.log1p(-state["u"])  # ln(1 − u), linear in the pulse integral
            kappa = -(log_free - lam * ds_up / 2.0) + lam / 2.0
            new["u"] = -jnp.expm1(log_free - lam * ds_up)
        else:
            kappa = lam
        released = -x * jnp.expm1(-kappa * ds_up)  # x (1 − e^(−κ ds)), exact for small ds
        new["x"] = x - released
        new["q"] = (q + released) * jnp.exp(-_Q_CLEAR * ds_down)
        return new, released


_Q_CLEAR = 20.0  # the efficacy q falls by exp(−20) on a spike's downstroke


class STDP(eqx.Module):
    """Pair-based spike-timing-dependent plasticity with pre- and postsynaptic traces
    (all-to-all pairing; Song, Miller & Abbott 2000).

    Each presynaptic spike adds 1 to a trace a_pre (decaying with `tau_plus`) and each
    postsynaptic spike 1 to a_post (decaying with `tau_minus`). A postsynaptic spike adds
    `A_plus`·a_pre to the weight, a presynaptic spike subtracts `A_minus`·a_post; so a single
    pair with Δt = t_post − t_pre changes w by A+ exp(−Δt/τ+) (Δt > 0) or −A− exp(Δt/τ−)
    (Δt < 0). In continuous time the spikes act through their release pulses, so the window is
    exact for |Δt| larger than a pulse's width (~0.1 ms) and passes smoothly through 0.
    Weights are kept within [`w_min`, `w_max`]; `enabled=False` freezes them.

    **Fields:** `A_plus`, `A_minus` (weight units, mS/cm², >= 0), `tau_plus`, `tau_minus`
    (ms, > 0), `w_min`, `w_max` (mS/cm²; default 0 and no upper bound), `enabled`.

    Example:
        >>> rule = hh.STDP(A_plus=0.01, A_minus=0.0105, tau_plus=20.0, tau_minus=20.0, w_max=1.0)
    """

    A_plus: Float[ArrayLike, ""]
    A_minus: Float[ArrayLike, ""]
    tau_plus: Float[ArrayLike, ""] = 20.0
    tau_minus: Float[ArrayLike, ""] = 20.0
    w_min: float = 0.0
    w_max: float | None = None
    enabled: bool = eqx.field(default=True, static=True)

    def __check_init__(self):
        owner = "hh.STDP"
        for name in ("A_plus", "A_minus"):
            check_finite(name, getattr(self, name), owner)
            check_nonnegative(name, getattr(self, name), owner, "(mS/cm²)")
        check_positive("tau_plus", self.tau_plus, owner, "ms")
        check_positive("tau_minus", self.tau_minus, owner, "ms")
        check_finite("w_min", self.w_min, owner)
        check_nonnegative("w_min", self.w_min, owner, "mS/cm² (weights are conductances)")
        if self.w_max is not None:
            check_finite("w_max", self.w_max, owner)
            lo, hi = concrete_array(self.w_min), concrete_array(self.w_max)
            if lo is not None and hi is not None and not np.all(hi > lo):
                raise ValueError(f"{owner}: `w_max` must exceed `w_min`, got {self.w_max} <= {self.w_min}.")

    @property
    def state_names(self):
        return ("a_pre", "a_post", "w")

    def init(self, n_pre, n_post, weight, dtype):
        """Empty traces and the initial weights `weight` (mS/cm², one per connection)."""
        return {"a_pre": jnp.zeros((n_pre,), dtype), "a_post": jnp.zeros((n_post,), dtype),
                "w": jnp.asarray(weight).astype(dtype)}

    def _pairing(self, a_pre, r_post, r_pre, a_post, connections):
        """A+ a_pre[i] r_post[j] − A− r_pre[i] a_post[j] for every connection i → j: the
        weight's rate, or its jump with step integrals."""
        dw = connections.pairwise(self.A_plus * a_pre, r_post) - connections.pairwise(self.A_minus * r_pre, a_post)
        return connections.existing(dw)

    def derivatives(self, state, r_pre, r_post, connections):
        """d state/dt under the pre- and postsynaptic pulses r_pre, r_post (1/ms).

        `connections` (an `hh.Projection`) pairs them: `pairwise(x, y)` gives x[i] y[j] for
        every connection i → j and `existing(w)` zeroes absent ones."""
        d = self.relaxation(state)
        d["a_pre"] = d["a_pre"] + r_pre
        d["a_post"] = d["a_post"] + r_post
        d["w"] = self.clip_rate(state["w"], self._pairing(state["a_pre"], r_post, r_pre, state["a_post"], connections))
        return d

    def relaxation(self, state):
        """The pulse-free part of d state/dt: the traces decay, the weights stay."""
        return {"a_pre": -state["a_pre"] / self.tau_plus, "a_post": -state["a_post"] / self.tau_minus,
                "w": jnp.zeros_like(state["w"])}

    def relaxation_diagonal(self):
        """∂(relaxation)/∂state: scalars."""
        return {"a_pre": -1.0 / jnp.asarray(self.tau_plus), "a_post": -1.0 / jnp.asarray(self.tau_minus),
                "w": jnp.zeros(())}

    def jump(self, state, ds_pre, ds_post, connections):
        """The state after pre- and postsynaptic pulses with integrals ds_pre, ds_post: the
        bilinear terms integrated exactly over the step, with the traces at their midpoints;
        weights kept within bounds (`connections` as in `derivatives`)."""
        a_pre, a_post = state["a_pre"], state["a_post"]
        dw = self._pairing(a_pre + ds_pre / 2.0, ds_post, ds_pre, a_post + ds_post / 2.0, connections)
        return {"w": connections.existing(self.clip(state["w"] + dw)), "a_pre": a_pre + ds_pre,
                "a_post": a_post + ds_post}

    def clip_rate(self, w, dw):
        """dw/dt with the bounds enforced: zero where it would push w past a bound."""
        dw = jnp.where((w <= self.w_min) & (dw < 0), 0.0, dw)
        if self.w_max is not None:
            dw = jnp.where((w >= self.w_max) & (dw > 0), 0.0, dw)
        return dw

    def clip(self, w):
        return jnp.clip(w, self.w_min, self.w_max)
