"""Figures: stimulus, membrane potential, phase plane, f–I curve. Matplotlib, no global state.

Each function draws on a given `matplotlib.axes.Axes` (or a new figure) and returns the axes,
with labelled axes and units.
"""

from __future__ import annotations

import jax
import numpy as np

from ._fi_curve import FICurve
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


def plot_trace(trace: Trace, stimulus: AbstractStimulus, axes=None, spikes=None):
    """Stimulus (top) above membrane potential (bottom), sharing the time axis (ms).

    **Returns:** the two axes.

    Example:
        >>> hh.plotting.plot_trace(tr, s)
    """
    if axes is None:
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(
            2, 1, figsize=(7, 4.5), sharex=True, gridspec_kw={"height_ratios": [1, 2.5]}
        )
    top, bottom = axes
    plot_stimulus(stimulus, trace.t, ax=top)
    plot_voltage(trace, ax=bottom, spikes=spikes)
    top.set_xlabel("")
    top.set_ylabel("I (µA/cm²)")
    bottom.set_title("")
    return axes


def plot_fi_curve(fi: FICurve, ax=None, rheobase=None, **style):
    """Firing rate (Hz) against step amplitude (µA/cm²); optionally the rheobase marked.

    Example:
        >>> hh.plotting.plot_fi_curve(hh.fi_curve(p, amplitudes), rheobase=hh.rheobase(p))
    """
    ax = _axes(ax)
    ax.plot(np.asarray(fi.amplitude), np.asarray(fi.rate).T, "o-", **{"color": "k", "ms": 3, **style})
    if rheobase is not None:
        ax.axvline(float(rheobase), color="tab:red", ls="--", label=f"rheobase {float(rheobase):.2f} µA/cm²")
        ax.legend(loc="lower right")
    ax.set_xlabel("step amplitude (µA/cm²)")
    ax.set_ylabel("firing rate (Hz)")
    ax.set_title("f–I curve")
    return ax
