"""Figures: stimulus, membrane potential, phase plane, f–I curve, fit overlay, spike raster.
Matplotlib, no global state.

Each `plot_*` function draws on a given `matplotlib.axes.Axes` (or a new figure) and returns
the axes, with labelled axes and units. `save_figure` writes a finished figure and closes it;
`save_trace_figures` writes the three standard figures of one simulation.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping

import jax
import numpy as np

from ._fi_curve import FICurve
from ._stimulus import AbstractStimulus
from ._trace import Spikes, Trace


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


def plot_fit(fitted: Trace, t, V, ax=None, markers=False, data_label="data", fit_label="fit"):
    """A fitted trace over the data it was fitted to, membrane potential (mV) against time (ms).

    **Arguments:**
    - `fitted`: the trace simulated with the fitted parameters.
    - `t`, `V`: the data's times (ms) and membrane potential (mV), shape `(time,)`.
    - `markers`: draw the data as dots (noisy or synthetic data) instead of a line.
    - `data_label`, `fit_label`: legend entries.

    **Returns:** the axes.

    Example:
        >>> hh.plotting.plot_fit(hh.simulate(res.params, s, t1=50.0, ts=target.ts), target.ts, target.V)
    """
    ax = _axes(ax)
    data_style = {"ls": "none", "marker": ".", "ms": 1.5, "color": "0.6"} if markers else {"lw": 0.8, "color": "0.5"}
    ax.plot(np.asarray(t), np.asarray(V), label=data_label, **data_style)
    ax.plot(np.asarray(fitted.t), np.asarray(fitted.V), color="tab:red", lw=1.0, label=fit_label)
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("membrane potential V (mV)")
    ax.legend(loc="upper right", fontsize=8)
    return ax


def plot_raster(spikes: Spikes | Mapping[str, Spikes], ax=None, colors=None, **style):
    """Spike raster: one row per neuron, spike times (ms) as ticks; populations stacked.

    **Arguments:**
    - `spikes`: an `hh.Spikes` with times `(n, max_spikes)` (NaN-padded), or a mapping
      {population: `hh.Spikes`} such as `NetworkTrace.spikes`, drawn bottom-up in its order.
    - `colors`: {population: colour}; default the Matplotlib cycle.

    **Returns:** the axes.

    Example:
        >>> hh.plotting.plot_raster(tr.spikes, colors={"E": "tab:blue", "I": "tab:red"})
    """
    ax = _axes(ax)
    groups = spikes if isinstance(spikes, Mapping) else {"": spikes}
    offset = 0
    for k, (name, group) in enumerate(groups.items()):
        times = np.asarray(group.times).reshape(-1, np.shape(group.times)[-1])
        color = (colors or {}).get(name, f"C{k}")
        rows = np.broadcast_to(offset + np.arange(times.shape[0])[:, None], times.shape)
        finite = np.isfinite(times)
        ax.plot(times[finite], rows[finite], "|", **{"color": color, "ms": 3, **style})
        offset += times.shape[0]
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("neuron")
    ax.set_title("Spikes")
    return ax


def save_figure(fig, path, dpi=110) -> pathlib.Path:
    """Lay out `fig` tightly, write it to `path` (format from the suffix) and close it.

    **Returns:** the path written.
    """
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return pathlib.Path(path)


def save_trace_figures(trace: Trace, stimulus: AbstractStimulus, folder, spikes=None, gates=("n", "m"),
                       dpi=120) -> dict[str, pathlib.Path]:
    """The three figures of one simulation: `stimulus.png`, `voltage.png` (spike times
    marked) and `phase_plane.png` (the V–gate planes of `gates`), written into `folder`.

    **Returns:** {"stimulus" | "voltage" | "phase_plane": path written}.

    Example:
        >>> hh.plotting.save_trace_figures(tr, s, "figures", spikes=hh.spike_times(tr.t, tr.V))
    """
    import matplotlib.pyplot as plt

    folder = pathlib.Path(folder)
    draws = {
        "stimulus": (lambda ax: plot_stimulus(stimulus, trace.t, ax=ax), (7, 3.2)),
        "voltage": (lambda ax: plot_voltage(trace, ax=ax, spikes=spikes), (7, 3.2)),
        "phase_plane": (lambda ax: plot_phase_plane(trace, gates=gates, ax=ax), (5.5, 4.5)),
    }
    written = {}
    for name, (draw, size) in draws.items():
        fig, ax = plt.subplots(figsize=size)
        draw(ax)
        written[name] = save_figure(fig, folder / f"{name}.png", dpi=dpi)
    return written
