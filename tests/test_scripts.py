"""The gist-reproduction script writes its three figures and finds the gist's two spikes."""

import importlib.util
import pathlib

import numpy as np

SCRIPTS = pathlib.Path(__file__).resolve().parents[1] / "scripts"


def load(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reproduce_seed_writes_figures(tmp_path):
    result = load("reproduce_seed").main(["--out", str(tmp_path)])
    for name in ("stimulus", "voltage", "phase_plane"):
        path = tmp_path / f"{name}.png"
        assert path.exists() and path.stat().st_size > 10_000
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    spikes = np.asarray(result["spikes"])
    assert len(spikes) == 2  # one spike per pulse, as in the gist
    assert 0.0 < spikes[0] < 1.0 and 10.0 < spikes[1] < 11.5


def test_protocols_script(tmp_path):
    # 15 amplitudes: the f–I batch is then the size of a rheobase round (15 per round, same
    # step protocol), so the two share one compiled solve.
    result = load("protocols").main(["--out", str(tmp_path), "--amplitudes", "15"])
    for name in ("sustained_step", "pulse_train", "noise", "fi_curve"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    assert len(result["sustained_step"]) > 5  # sustained current: continuous spiking
    assert len(result["pulse_train"]) == 7  # one spike per pulse
    assert 2.0 < result["rheobase"] < 2.5


def test_networks_script(tmp_path):
    result = load("networks").main(["--out", str(tmp_path)])
    for name in ("stp_depression", "ei_network", "weight_fit"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    dep = result["depression"]
    assert dep["max_ratio_error"] < 0.01  # conductance peaks follow the recurrence
    assert all(a > b for a, b in zip(dep["epsp_mV"], dep["epsp_mV"][1:]))  # EPSPs depress
    rates = result["ei_network"]["rates_hz"]
    assert rates["E"] > 1.0 and rates["I"] > 1.0
    fit = result["weight_fit"]
    assert min(fit["history"]) < 0.05 * fit["history"][0]
    np.testing.assert_allclose(fit["model_rates_hz"], fit["target_hz"], rtol=0.1)
