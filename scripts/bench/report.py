"""Reporting: the machine a run was on, a one-line row per finished case, and the markdown
tables written beside the JSON results (benchmark.md, network.md)."""

from __future__ import annotations

import json
import os
import pathlib
import platform
import time


def write_results(out, name: str, payload: dict, table: str) -> dict:
    """`name`.json (the payload) and `name`.md (its table) in the folder `out`; returns the
    payload."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2))
    (out / f"{name}.md").write_text(table)
    print(f"wrote {out / f'{name}.json'} and {out / f'{name}.md'}")
    return payload


def machine() -> dict:
    """Platform, processor, cores, Python and JAX versions, JAX's device and today's date."""
    import jax

    return dict(
        platform=platform.platform(), processor=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(), python=platform.python_version(), jax=jax.__version__,
        device=str(jax.devices()[0].device_kind), date=time.strftime("%Y-%m-%d"),
    )


def fmt(x, spec) -> str:
    """`x` formatted by `spec`; "—" for None, "∞" for infinity."""
    return "—" if x is None else ("∞" if x == float("inf") else format(x, spec))


def row(r) -> str:
    """One finished single-neuron case, as printed while the benchmark runs."""
    return (f"{r['tool']:7s} {r['setting']:40s} {r['dtype']} N={r['n']:<6d} wall {r['wall_s']:.4f} s  "
            f"first {r['first_call_s']:.2f} s  spike err {fmt(r['spike_error_ms'], '.2g')} ms  "
            f"grad/fwd {fmt(r.get('grad_over_forward'), '.2f')}  peak {r['peak_rss_mb']:.0f} MB")


def markdown(payload) -> str:
    """benchmark.md: the machine, the case and one table row per single-neuron case."""
    m = payload["machine"]
    lines = [
        f"Machine: {m['processor']}, {m['cpu_count']} cores, {m['platform']}, Python {m['python']}, "
        f"JAX {m['jax']} on {m['device']}; {m['date']}.",
        f"Case: {payload['case']['model']}, {payload['case']['stimulus']}, {payload['case']['t1_ms']} ms, "
        f"V saved every {payload['case']['save_every_ms']} ms. Spike-time error against "
        f"{payload['reference']['label']}.",
        "",
        "| tool | setting | dtype | N | wall (s, median) | first call (s) | neuron·ms/s | peak RSS (MB) "
        "| spike error (ms) | grad / forward | hh_jax ÷ Jaxley CN |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    ok = [r for r in payload["results"] if "error" not in r]
    cn = {(r["dtype"], r["n"]): r["wall_s"] for r in ok if r["setting"].startswith("crank_nicolson")}
    for r in ok:
        ratio = r["wall_s"] / cn[(r["dtype"], r["n"])] if r["tool"] == "hh_jax" and (r["dtype"], r["n"]) in cn else None
        lines.append(
            f"| {r['tool']} | {r['setting']} | {r['dtype']} | {r['n']} | {r['wall_s']:.4g} | {r['first_call_s']:.2f} "
            f"| {r['neuron_ms_per_s']:.3g} | {r['peak_rss_mb']:.0f} | {fmt(r['spike_error_ms'], '.2g')} "
            f"| {fmt(r.get('grad_over_forward'), '.2f')} | {fmt(ratio, '.2f')} |"
        )
    for r in payload["results"]:
        if "error" in r:
            lines.append(f"| {r['tool']} | {r['setting']} | {r['dtype']} | {r['n']} | failed | | | | | | |")
    return "\n".join(lines) + "\n"


def network_markdown(payload) -> str:
    """network.md: the machine, the COBAHH case and one table row per (tool, dtype, seed),
    with ratios to Brian2 on the same seed."""
    m = payload["machine"]
    ok = [r for r in payload["results"] if "error" not in r]
    brian = {r["seed"]: r for r in ok if r["tool"] == "brian2"}
    lines = [
        f"Machine: {m['processor']}, {m['cpu_count']} cores, Python {m['python']}, JAX {m['jax']}; {m['date']}.",
        "COBAHH, 4000 neurons, 1 s of biological time, dt 0.1 ms; the same connectivity and initial "
        "conditions for both tools (from `hh.presets.cobahh(seed)`). Wall: median of repeated runs "
        "after a warm-up (one run for the other seeds).",
        "",
        "| tool | setting | dtype | seed | wall (s) | first call (s) | ÷ Brian2 wall | rate (Hz) | rate ÷ Brian2 "
        "| ISI CV | CV ÷ Brian2 | peak RSS (MB) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in ok:
        b = brian.get(r["seed"])
        ratio = lambda key: fmt(r[key] / b[key] if b else None, ".3f")  # noqa: E731
        lines.append(
            f"| {r['tool']} | {r['setting']} | {r['dtype']} | {r['seed']} | {r['wall_s']:.2f} | {r['first_call_s']:.1f} "
            f"| {ratio('wall_s')} | {r['rate_hz']:.2f} | {ratio('rate_hz')} | {r['isi_cv']:.3f} | {ratio('isi_cv')} "
            f"| {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines) + "\n"
