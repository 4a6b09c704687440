"""Independent references, written from the published equations (not from hh_jax)."""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp


def gist_rates(V):
    """The 2017 gist's rate constants (1/ms), rest-at-0-mV convention, written out directly.

    Only evaluated away from the removable singularities V = 10 and 25 mV (the gist returns
    NaN exactly there); the integration below never lands on them exactly.
    """
    an = 0.01 * (10.0 - V) / (np.exp((10.0 - V) / 10.0) - 1.0)
    bn = 0.125 * np.exp(-V / 80.0)
    am = 0.1 * (25.0 - V) / (np.exp((25.0 - V) / 10.0) - 1.0)
    bm = 4.0 * np.exp(-V / 18.0)
    ah = 0.07 * np.exp(-V / 20.0)
    bh = 1.0 / (np.exp((30.0 - V) / 10.0) + 1.0)
    return an, bn, am, bm, ah, bh


GIST = dict(gNa=120.0, gK=36.0, gL=0.3, ENa=115.0, EK=-12.0, EL=10.613, Cm=1.0)


def gist_rhs(t, y, current, p=GIST):
    V, n, m, h = y
    an, bn, am, bm, ah, bh = gist_rates(V)
    i_ion = p["gNa"] * m**3 * h * (V - p["ENa"]) + p["gK"] * n**4 * (V - p["EK"]) + p["gL"] * (V - p["EL"])
    return [(current - i_ion) / p["Cm"], an * (1 - n) - bn * n, am * (1 - m) - bm * m, ah * (1 - h) - bh * h]


def gist_steady_state(V):
    an, bn, am, bm, ah, bh = gist_rates(V)
    return [an / (an + bn), am / (am + bm), ah / (ah + bh)]


def integrate_piecewise(rhs, y0, pieces, t_eval, threshold=None, method="Radau", tol=1e-11):
    """Integrate through a piecewise-constant current, restarting at every jump.

    `pieces` is a list of (t_start, t_stop, current). Returns (V at t_eval, upward threshold
    crossing times located by scipy's event root finder on the dense output).
    """
    V_out = np.full(len(t_eval), np.nan)
    spikes = []
    y = np.asarray(y0, dtype=float)
    for a, b, current in pieces:
        inside = (t_eval >= a) & (t_eval <= b)
        # Evaluate at the requested times and at the end of the piece (the next start state).
        times = np.union1d(t_eval[inside], [b])
        events = None
        if threshold is not None:
            def crossing(t, y, current=current):
                return y[0] - threshold
            crossing.direction = 1.0
            events = crossing
        sol = solve_ivp(
            rhs, (a, b), y, method=method, rtol=tol, atol=tol, t_eval=times,
            args=(current,), events=events,
        )
        assert sol.success, sol.message
        V_out[inside] = np.interp(t_eval[inside], sol.t, sol.y[0])  # exact: same time points
        if threshold is not None:
            spikes.extend(sol.t_events[0].tolist())
        y = sol.y[:, -1]
    return V_out, np.asarray(spikes)
