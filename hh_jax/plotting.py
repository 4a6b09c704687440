"""Figures for traces: stimulus, membrane potential, phase plane. Matplotlib, no global state.

Each function draws on a given `matplotlib.axes.Axes` (or a new figure) and returns the axes,
with labelled axes and units.
"""

from __future__ import annotations

import jax
import numpy as np

from ._stimulus import AbstractStimulus
from ._trace import Trace


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(7, 3))
    return ax


def plot_stimulus(stimulus: AbstractStimulus, t, ax=None, **style):
    """Injected current density (µA/cm²) against time (ms), evaluated at times `t`.

    Example:
        >>> hh.plotting.plot_stimulus(s, tr.t)
    """
    ax = _axes(ax)
    t = np.asarray(t)
    current = np.asarray(jax.vmap(stimulus)(jax.numpy.asarray(t)))
    ax.plot(t, current, **{"color": "tab:red", **style})
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("injected current (µA/cm²)")
    ax.set_title("Stimulus")
    return ax


def plot_voltage(trace: Trace, ax=None, spikes=None, **style):
    """Membrane potential (mV) against time (ms); optional spike times (ms) marked.

    Example:
        >>> hh.plotting.plot_voltage(tr, spikes=hh.spike_times(tr.t, tr.V))
    """
    ax = _axes(ax)
    ax.plot(np.asarray(trace.t), np.asarray(trace.V).T, **{"color": "k", "lw": 1.2, **style})
    if spikes is not None:
        spikes = np.asarray(spikes)
        spikes = spikes[np.isfinite(spikes)]
        top = float(np.nanmax(np.asarray(trace.V)))
        ax.plot(spikes, np.full(spikes.shape, top + 5.0), "v", color="tab:blue", label="spikes")
        ax.legend(loc="upper right")
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("membrane potential V (mV)")
    ax.set_title("Membrane potential")
    return ax


def plot_phase_plane(trace: Trace, gates=("n", "m"), ax=None):
    """Trajectories of gating variables against V (mV): the V–n and V–m phase planes.

    Example:
        >>> hh.plotting.plot_phase_plane(tr, gates=("n", "m"))
    """
    ax = _axes(ax)
    V = np.asarray(trace.V)
    colors = {"n": "tab:blue", "m": "tab:orange", "h": "tab:green"}
    for name in gates:
        ax.plot(V.T, np.asarray(trace.gates[name]).T, label=f"V–{name}", color=colors.get(name))
    ax.set_xlabel("membrane potential V (mV)")
    ax.set_ylabel("gating variable (dimensionless)")
    ax.set_title("Phase plane")
    ax.legend(loc="best")
    return ax
