"""Uncertainty: standard errors and correlations from the trace residuals at the optimum."""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._loss import trace_error


@eqx.filter_jit
def raw_jacobian(problem, x):
    """Raw trace residuals e = V_model − V_data (mV, 0 where masked) at natural parameter
    values x, and their Jacobian with respect to x, by forward mode through the solver."""

    def raw(x):
        e, _ = problem.batch_outputs([x[i][None] for i in range(len(problem.spaces))], lambda t, V: trace_error(V, t),
                                     diffrax.ForwardMode())
        return e[0]

    J, e = jax.jacfwd(lambda x: (raw(x), raw(x)), has_aux=True)(x)
    return J, e


def sandwich_covariance(J, w2, sig2):
    """Covariance A⁻¹ B A⁻¹ of a weighted least-squares estimate: A = Jᵀ W J,
    B = Jᵀ W Σ W J with W = diag(`w2`) (the squared residual weights) and Σ = diag(`sig2`)
    (the data's noise variances); `J` `(n, p)` is the Jacobian of the unweighted residuals.
    Columns are scaled to unit length first, so the rank test sees the shape of J and not
    its units; inf where the data do not determine the parameters (a zero column, fewer
    residuals than parameters, or a singular A). The one copy of the rule for trace fits
    and feature fits."""
    n, p = J.shape
    norm = np.linalg.norm(J, axis=0)
    if n < p or not np.all(norm > 0):
        return np.full((p, p), np.inf)
    Jn = J / norm
    A = Jn.T @ (w2[:, None] * Jn)
    eig = np.linalg.eigvalsh(A)
    if not eig[0] > 1e-12 * eig[-1]:
        return np.full((p, p), np.inf)
    Ainv = np.linalg.inv(A)
    B = Jn.T @ ((w2 * w2 * sig2)[:, None] * Jn)
    return (Ainv @ B @ Ainv) / np.outer(norm, norm)


def uncertainty(problem, u_best, r=None, J_u=None):
    """Standard errors and correlations of the free parameters (natural units) from the
    Gauss–Newton approximation of the trace residuals at the optimum.

    With raw residuals e_i = V_model − V_data (mV) weighted by s_i² in the fit (target
    weight / number of samples), the estimator's covariance is the sandwich
    A⁻¹ B A⁻¹ with A = Jᵀ S² J and B = Jᵀ S² Σ S² J, Σ = diag(σ_i²): σ from each target's
    `sigma`, otherwise the pooled residual variance Σe²/(n − p). Equal weights reduce it to
    σ² (JᵀJ)⁻¹. J is taken from the polish (residuals r = s·e with respect to the
    unconstrained u, converted by the chain rule) or computed afresh.
    """
    spaces = problem.spaces
    masks = [np.asarray(t.mask) for t in problem.targets]
    s = np.concatenate([np.full(m.shape, np.sqrt(t.weight / m.sum())) for t, m in zip(problem.targets, masks)])
    if J_u is None:
        x_best = jnp.asarray([sp.natural(u_best[i]) for i, sp in enumerate(spaces)], problem.rtol.dtype)
        J, e = raw_jacobian(problem, x_best)
        J, e = np.asarray(J, float), np.asarray(e, float)
    else:
        dx_du = np.array([float(sp.derivative(u_best[i])) for i, sp in enumerate(spaces)])
        e = np.asarray(r, float) / s
        J = np.asarray(J_u, float) / s[:, None] / dx_du[None, :]
    mask = np.concatenate(masks)
    s2 = s**2
    n, p = int(mask.sum()), len(spaces)
    pooled = float(np.sum(e[mask] ** 2) / max(n - p, 1))
    sig2 = np.concatenate(
        [np.full(m.shape, pooled if t.sigma is None else t.sigma**2) for t, m in zip(problem.targets, masks)]
    )
    cov = sandwich_covariance(J[mask], s2[mask], sig2[mask])
    se = np.sqrt(np.abs(np.diag(cov)))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(se, se)
    return se, corr, cov, float(np.sqrt(pooled))
