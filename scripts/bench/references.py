"""The single-neuron case (issue 4) and its ground truth.

NEURON's `hh` (6.3 °C), a 9 µA/cm² step from 1 to 41 ms, 50 ms simulated, V saved every
0.025 ms. Reference spike times: 0 mV upward crossings from NEURON (CVODE, usetable_hh = 0,
atol = rtol = 1e-10), or scipy's LSODA (rtol = atol = 1e-12) if NEURON is not installed.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

T1, START, STOP, AMPLITUDE, DT_SAVE = 50.0, 1.0, 41.0, 9.0, 0.025  # ms, ms, ms, µA/cm², ms
N_SAVE = int(round(T1 / DT_SAVE)) + 1


# NEURON's spike times for the case, written by `python scripts/bench/references.py` where
# NEURON is installed, for machines without it.
RECORDED = pathlib.Path(__file__).resolve().parent.parent / "benchmark" / "neuron_reference.json"


def neuron_reference() -> tuple[list[float], str]:
    """0 mV upward crossings (ms) of NEURON's own `hh` (the ground truth); where NEURON is
    absent (the GPU machine), NEURON's recorded by an earlier run (`RECORDED`), else scipy's;
    and a label saying which."""
    try:
        from neuron import h
    except ImportError:
        if RECORDED.exists():
            recorded = json.loads(RECORDED.read_text())
            return recorded["spike_times_ms"], recorded["label"] + " (recorded; NEURON not installed here)"
        return scipy_reference(), "scipy LSODA rtol=atol=1e-12 (NEURON not installed)"
    h.load_file("stdrun.hoc")
    soma = h.Section(name="soma")
    soma.L = soma.diam = 18.8
    soma.insert("hh")
    h.usetable_hh = 0
    clamp = h.IClamp(soma(0.5))
    clamp.delay, clamp.dur = START, STOP - START
    clamp.amp = AMPLITUDE * soma(0.5).area() * 1e-8 * 1e3
    cvode = h.CVode()
    cvode.active(1)
    cvode.atol(1e-10)
    cvode.rtol(1e-10)
    cvode.condition_order(2)
    detector = h.NetCon(soma(0.5)._ref_v, None, sec=soma)
    detector.threshold = 0.0
    times = h.Vector()
    detector.record(times)
    h.celsius = 6.3
    h.finitialize(-65.0)
    h.continuerun(T1)
    return list(times), "NEURON 9 CVODE, usetable_hh=0, atol=rtol=1e-10"


def hh_rhs_numpy(t, y, current):
    """NEURON's hh.mod at 6.3 °C, written out with numpy (for scipy): dy/dt for
    y = (V mV, m, h, n) under `current(t)` (µA/cm²)."""
    v, m, h, n = y
    x_m, x_n = -(v + 40.0) / 10.0, -(v + 55.0) / 10.0
    am = 0.1 * 10.0 * (x_m / np.expm1(x_m) if abs(x_m) > 1e-9 else 1.0 - x_m / 2)
    an = 0.01 * 10.0 * (x_n / np.expm1(x_n) if abs(x_n) > 1e-9 else 1.0 - x_n / 2)
    bm = 4.0 * np.exp(-(v + 65.0) / 18.0)
    ah = 0.07 * np.exp(-(v + 65.0) / 20.0)
    bh = 1.0 / (np.exp(-(v + 35.0) / 10.0) + 1.0)
    bn = 0.125 * np.exp(-(v + 65.0) / 80.0)
    i_ion = 120.0 * m**3 * h * (v - 50.0) + 36.0 * n**4 * (v + 77.0) + 0.3 * (v + 54.3)
    i_ext = current(t)
    return [i_ext - i_ion, am * (1 - m) - bm * m, ah * (1 - h) - bh * h, an * (1 - n) - bn * n]


def y0_numpy(v=-65.0):
    """(V, m, h, n) at rest: the gates at their steady state at `v` (mV)."""
    x_m, x_n = -(v + 40.0) / 10.0, -(v + 55.0) / 10.0
    am, an = x_m / np.expm1(x_m), 0.1 * x_n / np.expm1(x_n)
    bm, bn = 4.0 * np.exp(-(v + 65.0) / 18.0), 0.125 * np.exp(-(v + 65.0) / 80.0)
    ah, bh = 0.07 * np.exp(-(v + 65.0) / 20.0), 1.0 / (np.exp(-(v + 35.0) / 10.0) + 1.0)
    return [v, am / (am + bm), ah / (ah + bh), an / (an + bn)]


def step(t):
    """The case's stimulus (µA/cm²) at time `t` (ms)."""
    return AMPLITUDE if START <= t < STOP else 0.0


def scipy_reference() -> list[float]:
    """0 mV upward crossings (ms) from scipy's LSODA, integrated piece by piece between the
    step's edges."""
    from scipy.integrate import solve_ivp

    y, spikes = y0_numpy(), []
    for a, b in ((0.0, START), (START, STOP), (STOP, T1)):
        ev = lambda t, y, c=None: y[0]  # noqa: E731
        ev.direction = 1.0
        sol = solve_ivp(hh_rhs_numpy, (a, b), y, method="LSODA", rtol=1e-12, atol=1e-12, args=(step,), events=ev)
        spikes += sol.t_events[0].tolist()
        y = sol.y[:, -1]
    return spikes


if __name__ == "__main__":  # record NEURON's spike times for machines without NEURON
    times, label = neuron_reference()
    assert label.startswith("NEURON") and "recorded" not in label, "needs NEURON installed"
    RECORDED.write_text(json.dumps(dict(spike_times_ms=times, label=label), indent=1) + "\n")
    print(f"wrote {RECORDED}: {times}")
