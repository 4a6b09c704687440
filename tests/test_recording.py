"""Recording files: round trips through files the tests write, units, and bad files."""

import numpy as np
import pytest

import hh_jax as hh

T_S = np.arange(0, 0.2, 2e-5)  # 200 ms at 50 kHz, in seconds
V_V = -0.07 + 0.01 * np.sin(2 * np.pi * 10 * T_S)  # volts
I_NA = np.where((T_S >= 0.05) & (T_S < 0.15), 0.17, 0.0)  # nA
AREA = 1.857e-4  # cm²


def _expected(junction=0.0):
    return T_S * 1e3, V_V * 1e3 + junction, I_NA * 1e-3 / AREA


def test_csv_round_trip_with_units(tmp_path):
    path = tmp_path / "trace.csv"
    np.savetxt(path, np.column_stack([T_S, V_V, I_NA]), delimiter=",", header="time,vm,inj", comments="")
    rec = hh.load_trace(path, columns={"t": "time", "V": "vm", "I": "inj"}, time_unit="s",
                        voltage_unit="V", current_unit="nA", area_cm2=AREA, junction_mV=-14.0)
    t, V, I = _expected(-14.0)
    np.testing.assert_allclose(rec.t, t, rtol=1e-12)
    np.testing.assert_allclose(rec.V, V, rtol=1e-12)
    np.testing.assert_allclose(rec.I, I, rtol=1e-12)
    assert rec.I.max() == pytest.approx(0.17e-3 / AREA)  # 0.915 µA/cm²


def test_npz_round_trip_with_units_stored_in_the_file(tmp_path):
    path = tmp_path / "trace.npz"
    np.savez(path, t=T_S * 1e3, V=V_V * 1e3, I=I_NA * 1e3, t_unit="ms", V_unit="mV", I_unit="pA")
    rec = hh.load_trace(path, area_cm2=AREA)
    t, V, I = _expected()
    np.testing.assert_allclose(rec.t, t, rtol=1e-12)
    np.testing.assert_allclose(rec.V, V, rtol=1e-12)
    np.testing.assert_allclose(rec.I, I, rtol=1e-12)


def test_window_resample_and_stimulus(tmp_path):
    path = tmp_path / "trace.npz"
    np.savez(path, t=T_S, V=V_V, I=I_NA)
    rec = hh.load_trace(path, time_unit="s", voltage_unit="V", current_unit="nA", area_cm2=AREA, window=(20.0, 180.0))
    assert rec.t[0] == 0.0 and rec.t[-1] == pytest.approx(160.0, abs=0.03)
    ts = np.linspace(0.0, 159.9, 1600)
    res = rec.resample(ts)
    np.testing.assert_allclose(res.V, 1e3 * (-0.07 + 0.01 * np.sin(2 * np.pi * 10 * (ts + 20.0) / 1e3)), atol=0.05)
    step = res.stimulus("step")
    assert step.start == pytest.approx(30.0, abs=0.1) and step.stop == pytest.approx(130.0, abs=0.1)
    assert step.amplitude == pytest.approx(0.17e-3 / AREA, rel=1e-9)
    sampled = rec.stimulus("sampled")
    assert float(sampled(50.0)) == pytest.approx(0.17e-3 / AREA) and float(sampled(10.0)) == 0.0
    target = res.target()
    assert target.ts.shape == (1600,) and isinstance(target.stimulus, hh.Step)


@pytest.mark.parametrize(
    "content, kwargs, match",
    [
        ("t,V\n0,1\n1,2\n", dict(columns={"V": "vm"}, time_unit="ms", voltage_unit="mV"), "no column 'vm'"),
        ("t,V\n0,1\n2,2\n1,3\n", dict(time_unit="ms", voltage_unit="mV"), "strictly increasing"),
        ("t,V\n0,1\n1,2\n", dict(time_unit="min", voltage_unit="mV"), "time unit"),
        ("t,V\n0,1\n1,2\n", dict(time_unit="ms"), "voltage unit"),
        ("t,V\n0,1\n1,nan\n", dict(time_unit="ms", voltage_unit="mV"), "non-finite voltage"),
        ("t,V\n", dict(time_unit="ms", voltage_unit="mV"), "empty"),
        ("t,V,I\n0,1,0\n1,2,1\n", dict(time_unit="ms", voltage_unit="mV", current_unit="nA"), "area_cm2"),
        ("t,V,I\n0,1,0\n1,2,1\n", dict(time_unit="ms", voltage_unit="mV", current_unit="amps"), "current unit"),
    ],
)
def test_bad_files_raise_clear_errors(tmp_path, content, kwargs, match):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        hh.load_trace(path, **kwargs)


def test_unknown_file_type_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        hh.load_trace(tmp_path / "nothing.csv")
    (tmp_path / "x.mat").write_text("")
    with pytest.raises(ValueError, match="unknown file type"):
        hh.load_trace(tmp_path / "x.mat")


def test_nwb_round_trip(tmp_path):
    pynwb = pytest.importorskip("pynwb")
    from datetime import datetime, timezone

    nwb = pynwb.NWBFile("test", "id", datetime.now(timezone.utc))
    device = nwb.create_device(name="amp")
    electrode = nwb.create_icephys_electrode(name="e0", description="", device=device)
    nwb.add_acquisition(pynwb.icephys.CurrentClampSeries(
        name="vm", data=V_V, electrode=electrode, rate=5e4, starting_time=0.0, gain=1.0))
    nwb.add_stimulus(pynwb.icephys.CurrentClampStimulusSeries(
        name="inj", data=I_NA * 1e-9, electrode=electrode, rate=5e4, starting_time=0.0, gain=1.0))
    path = tmp_path / "trace.nwb"
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    rec = hh.load_trace(path, area_cm2=AREA)
    t, V, I = _expected()
    np.testing.assert_allclose(rec.t, t, atol=1e-9)
    np.testing.assert_allclose(rec.V, V, rtol=1e-12)
    np.testing.assert_allclose(rec.I, I, rtol=1e-12)


def test_abf_round_trip(tmp_path):
    pyabf = pytest.importorskip("pyabf")
    path = tmp_path / "trace.abf"
    pyabf.abfWriter.writeABF1(np.asarray([V_V * 1e3]), str(path), sampleRateHz=5e4, units="mV")
    rec = hh.load_trace(path)
    np.testing.assert_allclose(rec.t, T_S * 1e3, atol=1e-9)
    np.testing.assert_allclose(rec.V, V_V * 1e3, atol=0.01)  # ABF1 stores 16-bit integers


ALLEN = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data" / "allen_518290966_sweep57.npz"


@pytest.mark.skipif(not ALLEN.exists(), reason="the shared Allen recording is not present")
def test_allen_recording_loads_with_its_documented_properties():
    with np.load(ALLEN) as z:
        area, junction = float(z["soma_area_cm2"]), float(z["junction_potential_mV"])
    rec = hh.load_trace(ALLEN, columns={"t": "t_ms", "V": "v_mV", "I": "i_nA"}, time_unit="ms",
                        voltage_unit="mV", current_unit="nA", area_cm2=area, junction_mV=junction)
    assert rec.t.size == 72500 and rec.t[-1] == pytest.approx(1449.98)
    step = rec.stimulus("step")
    assert step.start == pytest.approx(205.0) and step.stop == pytest.approx(1205.0, abs=0.05)
    assert step.amplitude == pytest.approx(0.17e-3 / 1.857e-4, rel=1e-3)  # ≈ 0.92 µA/cm²
    spikes = hh.spike_times(rec.t, rec.V, threshold=0.0)
    assert spikes.size == 12 and np.mean(np.diff(spikes)) == pytest.approx(81.0, abs=1.0)
    assert spikes[0] - 205.0 == pytest.approx(63.0, abs=1.0)
    assert np.mean(rec.V[rec.t < 200.0]) == pytest.approx(-72.6 - 14.0, abs=0.2)
