"""Networks of HH neurons (issue 8): three examples, each written to a figure.

1. Short-term depression: a presynaptic neuron firing at 20 Hz drives a postsynaptic one
   through a depressing synapse (Tsodyks–Markram U = 0.5, τrec = 800 ms); the conductance
   peaks and EPSPs shrink spike by spike, as the event-based recurrence says.
2. An E/I network (80 excitatory, 20 inhibitory HH neurons, 10 % random connectivity,
   exponential conductances) under heterogeneous drive: raster and population rates, run
   with fixed steps (exponential Euler).
3. Gradient descent on synaptic weights: three input neurons firing at different rates
   drive two regular-spiking cortical cells; Adam on the log-weights, with gradients through
   the adaptive solver and through the spikes, makes them fire at target rates.

    python scripts/networks.py --out scripts/figures
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax

jax.config.update("jax_enable_x64", True)  # this script's choice; the library never sets it

import diffrax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import hh_jax as hh  # noqa: E402


def tm_recurrence(spike_times, U, tau_rec):
    """Event-based Tsodyks–Markram depression: released fraction U·x at each spike."""
    x, out, prev = 1.0, [], None
    for t in spike_times:
        if prev is not None:
            x = 1.0 - (1.0 - x) * np.exp(-(t - prev) / tau_rec)
        out.append(U * x)
        x -= U * x
        prev = t
    return np.array(out)


def depression(out: pathlib.Path) -> dict:
    U, tau_rec = 0.5, 800.0
    pre, post = hh.Population(hh.presets.neuron(), 1), hh.Population(hh.presets.neuron(), 1)
    syn = hh.Projection("pre", "post", hh.ExpSynapse(tau=5.0, E=0.0), weight=[[0.1]],
                        stp=hh.TsodyksMarkram(U=U, tau_rec=tau_rec))
    net = hh.Network({"pre": pre, "post": post}, {"syn": syn})
    train = hh.PulseTrain(start=10.0, period=50.0, width=1.0, amplitude=20.0, count=10)
    tr = hh.simulate(net, {"pre": train}, t1=520.0, ts=jnp.arange(0.0, 520.0, 0.05), save="all")
    t, g, v_post = np.asarray(tr.t), np.asarray(tr["syn.g"][0]), np.asarray(tr["post.V"][0])
    spikes = np.asarray(tr.spikes["pre"].times[0])
    spikes = spikes[np.isfinite(spikes)]
    peaks = np.array([g[(t > s) & (t < s + 10)].max() for s in spikes])
    epsp = np.array([v_post[(t > s) & (t < s + 20)].max() - v_post[(t > s - 1) & (t <= s)].mean() for s in spikes])
    expected = tm_recurrence(spikes, U, tau_rec)

    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    axes[0].plot(t, np.asarray(tr["pre.V"][0]), lw=0.8)
    axes[0].set_ylabel("pre V (mV)")
    axes[1].plot(t, g, lw=0.8, label="g (hh_jax)")
    axes[1].plot(spikes + 1.0, expected / expected[0] * peaks[0], "o", mfc="none", label="event-based recurrence")
    axes[1].set_ylabel("g (mS/cm²)")
    axes[1].legend(frameon=False)
    axes[2].plot(t, v_post, lw=0.8)
    axes[2].set_ylabel("post V (mV)")
    axes[2].set_xlabel("time (ms)")
    axes[0].set_title(f"Depressing synapse (U = {U}, τrec = {tau_rec:g} ms) under a 20 Hz train")
    hh.plotting.save_figure(fig, out / "stp_depression.png", dpi=120)
    return dict(spike_times=spikes.tolist(), peak_g=peaks.tolist(), recurrence=expected.tolist(),
                epsp_mV=epsp.tolist(), max_ratio_error=float(np.max(np.abs(peaks / peaks[0] / (expected / expected[0]) - 1))))


def ei_network(out: pathlib.Path, t1: float = 500.0, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    n_e, n_i, p = 80, 20, 0.1

    def edges(n_pre, n_post):
        mask = rng.random((n_pre, n_post)) < p
        return np.nonzero(mask)

    pops = {"E": hh.Population(hh.presets.neuron(), n_e), "I": hh.Population(hh.presets.neuron(), n_i)}
    exc, inh = hh.ExpSynapse(tau=5.0, E=0.0), hh.ExpSynapse(tau=10.0, E=-80.0)
    projs = {
        "EE": hh.Projection("E", "E", exc, weight=0.02, edges=edges(n_e, n_e)),
        "EI": hh.Projection("E", "I", exc, weight=0.04, edges=edges(n_e, n_i)),
        "IE": hh.Projection("I", "E", inh, weight=0.15, edges=edges(n_i, n_e)),
        "II": hh.Projection("I", "I", inh, weight=0.1, edges=edges(n_i, n_i)),
    }
    net = hh.Network(pops, projs)
    drive = {"E": hh.Step(start=20.0, amplitude=jnp.asarray(rng.uniform(5.0, 12.0, n_e))),
             "I": hh.Step(start=20.0, amplitude=jnp.asarray(rng.uniform(2.0, 6.0, n_i)))}
    start = time.perf_counter()
    tr = hh.simulate(net, drive, t1=t1, dt=0.025, ts=jnp.arange(0.0, t1 + 1e-9, 0.5), save=("E.V",), max_spikes=200)
    wall = time.perf_counter() - start
    fig, axes = plt.subplots(2, 1, figsize=(8, 6), sharex=True, gridspec_kw=dict(height_ratios=[3, 1]))
    colors = {"E": "tab:blue", "I": "tab:red"}
    hh.plotting.plot_raster(tr.spikes, ax=axes[0], colors=colors)
    axes[0].set_xlabel("")
    rates = {}
    bins = np.arange(0.0, t1 + 5.0, 5.0)
    for name, color in colors.items():
        times = np.asarray(tr.spikes[name].times)
        hist, _ = np.histogram(times[np.isfinite(times)], bins)
        axes[1].plot(bins[:-1] + 2.5, hist / times.shape[0] / 5e-3, color=color, label=name)
        rates[name] = float(np.sum(np.asarray(tr.spikes[name].counts)) / times.shape[0] / ((t1 - 20.0) / 1000.0))
    axes[0].set_title(f"E/I network ({n_e} E, {n_i} I, p = {p}): E {rates['E']:.1f} Hz, I {rates['I']:.1f} Hz")
    axes[1].set_ylabel("rate (Hz)")
    axes[1].set_xlabel("time (ms)")
    axes[1].legend(frameon=False)
    hh.plotting.save_figure(fig, out / "ei_network.png", dpi=120)
    return dict(rates_hz=rates, wall_s=wall)


def fit_weights(out: pathlib.Path, steps: int = 30, t1: float = 300.0) -> dict:
    """Fit a 3 → 2 weight matrix so that two regular-spiking cortical cells (Pospischil et
    al. 2008) fire at target rates, driven by three HH neurons firing at 60–90 Hz."""
    pops = {"inp": hh.Population(hh.presets.neuron(), 3), "out": hh.Population(hh.presets.pospischil(), 2)}
    drive = {"inp": hh.Step(start=0.0, amplitude=jnp.array([7.0, 10.0, 20.0]))}  # three input rates
    syn = hh.ExpSynapse(tau=5.0, E=0.0)
    ts = jnp.arange(0.0, t1, 0.05)

    settle = 50.0
    mask = ts >= settle

    # Six weights: forward mode (the tangents ride along with the solver's steps, nothing is
    # stored for a backward pass) is cheaper than reverse mode.
    forward = diffrax.ForwardMode()

    def rates(log_w):
        """Firing rates (Hz) after 50 ms, differentiable in the weights: from the mean
        interspike interval, whose crossing times move smoothly with the weights (the soft
        spike count where there are fewer than two spikes); and the output traces."""
        net = hh.Network(pops, {"w": hh.Projection("inp", "out", syn, weight=jnp.exp(log_w))})
        V = hh.simulate(net, drive, t1=t1, ts=ts, save=("out.V",), rtol=1e-6, atol=1e-6, adjoint=forward)["out.V"]

        def rate(v):
            up = (v[:-1] < 0.0) & (v[1:] >= 0.0) & mask[1:]
            tc = ts[:-1] + (0.0 - v[:-1]) / jnp.where(up, v[1:] - v[:-1], 1.0) * (ts[1] - ts[0])
            n = jnp.sum(up)
            span = jnp.max(jnp.where(up, tc, -jnp.inf)) - jnp.min(jnp.where(up, tc, jnp.inf))
            from_isi = 1000.0 * (n - 1) / jnp.where(n >= 2, span, 1.0)
            soft = 1000.0 * hh.soft_spike_count(v, 0.0, mask=mask) / (t1 - settle)
            return jnp.where(n >= 2, from_isi, soft)

        return jax.vmap(rate)(V), V

    def loss(log_w, target_rates):
        r, V = rates(log_w)
        value = jnp.mean(((r - target_rates) / target_rates) ** 2)
        return value, (value, r, V)  # aux: the loss, the rates and the output traces

    # d loss / d log_w with the loss, the rates and the traces, by forward mode: one compiled
    # function serves the teacher, every Adam step and the fitted network's figure.
    grad_value_rates = jax.jit(jax.jacfwd(loss, has_aux=True))

    # Targets: the rates of a teacher network with the same inputs (so they are reachable).
    teacher = jnp.array([[0.020, 0.030], [0.025, 0.040], [0.015, 0.035]])
    _, (_, target_rates, _) = grad_value_rates(jnp.log(teacher), jnp.ones(2))

    log_w = jnp.full((3, 2), np.log(0.015))  # strongly typed: Adam's updates keep the type, one compilation
    opt = optax.adam(optax.cosine_decay_schedule(0.08, steps))
    state = opt.init(log_w)
    history, best = [], (np.inf, log_w, None)
    start = time.perf_counter()
    for _ in range(steps):
        grad, (value, r, V) = grad_value_rates(log_w, target_rates)
        history.append(float(value))
        best = min(best, (float(value), log_w, (r, V)), key=lambda b: b[0])
        updates, state = opt.update(grad, state)
        log_w = optax.apply_updates(log_w, updates)
    _, log_w, (final_rates, V) = best  # the best iterate, its rates and its output traces
    final_rates, V = np.asarray(final_rates), np.asarray(V)
    wall = time.perf_counter() - start
    spike_counts = np.asarray(hh.spike_count(ts, V, pops["out"].theta(), window=(settle, t1)))
    counted = spike_counts / ((t1 - settle) / 1000.0)

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    axes[0].semilogy(history)
    axes[0].set_xlabel("Adam step")
    axes[0].set_ylabel("loss (relative rate error²)")
    for k in range(2):
        axes[1].plot(np.asarray(ts), V[k] - 120.0 * k, lw=0.7,
                     label=f"output {k}: {counted[k]:.0f} Hz (target {float(target_rates[k]):.0f})")
    axes[1].set_xlabel("time (ms)")
    axes[1].set_yticks([])
    axes[1].legend(frameon=False, fontsize=8)
    fig.suptitle("Synaptic weights fitted by gradient descent to target firing rates")
    hh.plotting.save_figure(fig, out / "weight_fit.png", dpi=120)
    return dict(history=history, weights=np.exp(np.asarray(log_w)).tolist(), teacher_weights=np.asarray(teacher).tolist(), model_rates_hz=final_rates.tolist(),
                rates_hz=counted.tolist(), target_hz=np.asarray(target_rates).tolist(), wall_s=wall)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="figures")
    parser.add_argument("--steps", type=int, default=30, help="Adam steps of the weight fit")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = dict(depression=depression(out), ei_network=ei_network(out), weight_fit=fit_weights(out, args.steps))
    (out / "networks.json").write_text(json.dumps(result, indent=1))
    d, e, w = result["depression"], result["ei_network"], result["weight_fit"]
    print(f"depression: peaks / recurrence within {d['max_ratio_error']:.2%}; EPSPs {np.round(d['epsp_mV'], 2)} mV")
    print(f"E/I network: E {e['rates_hz']['E']:.1f} Hz, I {e['rates_hz']['I']:.1f} Hz ({e['wall_s']:.1f} s)")
    print(f"weight fit: loss {w['history'][0]:.2f} -> {min(w['history']):.4f} (best iterate); rates "
          f"{np.round(w['model_rates_hz'], 2)} Hz (spike counts: {w['rates_hz']}) against targets "
          f"{np.round(w['target_hz'], 2)} Hz, in {w['wall_s']:.1f} s")
    return result


if __name__ == "__main__":
    main()
