"""The hh-jax command line: a simulate → fit round trip, config files, and bad input."""

import json

import numpy as np
import pytest

import hh_jax as hh
from hh_jax.cli import main


def test_simulate_then_fit_recovers_parameters(tmp_path, capsys):
    trace = tmp_path / "trace.npz"
    assert main(["simulate", "--preset", "seed", "--set", "gNa=100,gK=40", "--set", "gL=0.25",
                 "--stimulus", "step:start=5,stop=45,amplitude=10", "--t1", "50", "--out", str(trace),
                 "--plot", str(tmp_path / "trace.png")]) == 0
    assert (tmp_path / "trace.png").exists()
    rec = hh.load_trace(trace)  # units come with the file
    assert rec.t[-1] == pytest.approx(50.0) and rec.I.max() == pytest.approx(10.0)
    out = tmp_path / "fit"
    assert main(["fit", str(trace), "--preset", "seed", "--free", "gNa,gK,gL", "--starts", "2",
                 "--steps", "30", "--out", str(out), "--no-progress"]) == 0
    result = json.loads((out / "fit.json").read_text())
    for k, v in dict(gNa=100.0, gK=40.0, gL=0.25).items():
        assert result["parameters"][k] == pytest.approx(v, rel=0.02)
        assert result["stderr"][k] >= 0
    assert (out / "fit.png").exists() and hh.FitResult.load(out / "fit_result.json").free == ("gNa", "gK", "gL")
    assert "fitted gNa" in capsys.readouterr().out


def test_simulate_from_a_toml_config_and_csv_output(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(
        'preset = "neuron"\nt1 = 30.0\ndt = 0.05\n[parameters]\ncelsius = 6.3\n'
        '[[stimulus]]\nkind = "step"\nstart = 1.0\nstop = 25.0\namplitude = 9.0\n'
    )
    out = tmp_path / "trace.csv"
    assert main(["simulate", "--config", str(config), "--out", str(out)]) == 0
    rec = hh.load_trace(out, time_unit="ms", voltage_unit="mV", current_unit="µA/cm²")
    assert rec.t.size == 601
    spikes = hh.spike_times(rec.t, rec.V, threshold=0.0)
    np.testing.assert_allclose(spikes[:2], [3.0209912102828387, 18.49592400250524], atol=2e-3)


@pytest.mark.parametrize(
    "argv, match",
    [
        (["simulate", "--preset", "squid"], "unknown preset 'squid'"),
        (["simulate", "--t1", "-5"], "positive duration"),
        (["simulate", "--set", "gX=1"], "unknown parameter"),
        (["simulate", "--stimulus", "step:start=1,amp=3"], "unknown field"),
        (["fit", "missing.npz"], "no such trace file"),
        (["fit", "{bad}", "--time-unit", "ms", "--voltage-unit", "mV"], "bad.csv"),
        (["fit", "{good}", "--free", "gX"], "unknown parameter"),
    ],
)
def test_bad_input_exits_nonzero_with_one_line(tmp_path, capsys, argv, match):
    bad = tmp_path / "bad.csv"
    bad.write_text("t,V\n0,-65\nnot,numbers\n")
    good = tmp_path / "good.npz"
    np.savez(good, t=np.linspace(0, 10, 11), V=np.zeros(11), I=np.ones(11), t_unit="ms", V_unit="mV", I_unit="µA/cm²")
    argv = [a.replace("{bad}", str(bad)).replace("{good}", str(good)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and match in err, err
