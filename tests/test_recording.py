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


# NWB files laid out as the Allen Institute's and DANDI's icephys files are: one
# CurrentClampSeries (response, volts) and one CurrentClampStimulusSeries (stimulus, amperes)
# per sweep, both carrying the sweep's number, stored as integers with a `conversion` and
# an `offset`, each sweep starting where the session clock stood.

RATE = 5e4  # Hz
V_CONV, V_OFFSET = 1.0 / 32768, -0.07  # volts per count; volts
I_CONV, I_OFFSET = 1e-12, 2e-12  # amperes per count (1 pA); amperes


def _counts(sweep, n=400):
    rng = np.random.default_rng(sweep)
    return rng.integers(-3000, 3000, n).astype(np.int16), (sweep * 10 + np.arange(n) % 50).astype(np.int16)


def _write_nwb(path, sweeps, *, table=(), numbered=True, extra=None):
    """An NWB file with the given sweeps added in the order given (acquisition) and in the
    reverse order (stimulus), so that pairing by position would pair the wrong ones. Sweeps
    in `table` also get a row of the intracellular-recordings table, in that order."""
    pynwb = pytest.importorskip("pynwb")
    import warnings
    from datetime import datetime, timezone

    from pynwb.icephys import CurrentClampSeries, CurrentClampStimulusSeries

    nwb = pynwb.NWBFile("test", "id", datetime(2026, 1, 1, tzinfo=timezone.utc))
    device = nwb.create_device(name="amp")
    electrode = nwb.create_icephys_electrode(name="e0", description="", device=device)
    series = {}
    for sweep in sweeps:
        v, i = _counts(sweep)
        number = {"sweep_number": sweep} if numbered else {}
        series[sweep] = (
            CurrentClampSeries(name=f"data_{sweep:05d}_AD0", data=v, electrode=electrode, rate=RATE,
                               starting_time=10.0 * sweep, gain=1.0, conversion=V_CONV, offset=V_OFFSET, **number),
            CurrentClampStimulusSeries(name=f"data_{sweep:05d}_DA0", data=i, electrode=electrode, rate=RATE,
                                       starting_time=10.0 * sweep, gain=1.0, conversion=I_CONV, offset=I_OFFSET,
                                       stimulus_description=f"step_{sweep}", **number),
        )
    for sweep in sweeps:
        nwb.add_acquisition(series[sweep][0])
    for sweep in reversed(sweeps):
        nwb.add_stimulus(series[sweep][1])
    for sweep in table:
        nwb.add_intracellular_recording(electrode=electrode, response=series[sweep][0], stimulus=series[sweep][1])
    if extra is not None:
        extra(nwb, electrode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # hdmf: sweep_number stored as uint64
        with pynwb.NWBHDF5IO(str(path), "w") as io:
            io.write(nwb)
    return path


def _check_sweep(rec, sweep, junction=0.0):
    v, i = _counts(sweep)
    n = v.size
    np.testing.assert_allclose(rec.t, (10.0 * sweep + np.arange(n) / RATE) * 1e3, rtol=1e-13)
    np.testing.assert_allclose(rec.V, (v * V_CONV + V_OFFSET) * 1e3 + junction, rtol=1e-13)
    np.testing.assert_allclose(rec.I, (i * I_CONV + I_OFFSET) * 1e6 / AREA, rtol=1e-13)


def test_nwb_sweeps_pair_by_sweep_number_not_position(tmp_path):
    path = _write_nwb(tmp_path / "cell.nwb", [12, 3, 7])
    rows = hh.list_sweeps(path)
    assert [r["sweep"] for r in rows] == [3, 7, 12]
    assert [(r["response"], r["stimulus"]) for r in rows] == [
        (f"data_{s:05d}_AD0", f"data_{s:05d}_DA0") for s in (3, 7, 12)]
    assert rows[0]["clamp"] == "current" and rows[0]["stimulus_description"] == "step_3"
    assert rows[0]["rate_hz"] == RATE and rows[0]["duration_ms"] == pytest.approx(400 / RATE * 1e3)
    assert rows[0]["start_ms"] == pytest.approx(30e3) and rows[0]["response_unit"] == "volts"
    for sweep in (12, 3, 7):
        _check_sweep(hh.load_trace(path, sweep=sweep, area_cm2=AREA, junction_mV=-14.0), sweep, -14.0)
    _check_sweep(hh.load_trace(path, sweep="data_00007_AD0", area_cm2=AREA), 7)


def test_nwb_intracellular_recordings_table_pairs_unnumbered_series(tmp_path):
    # No sweep numbers at all: only the table says which stimulus goes with which response;
    # its row ids number the sweeps.
    path = _write_nwb(tmp_path / "cell.nwb", [5, 1, 9], table=[9, 5, 1], numbered=False)
    rows = hh.list_sweeps(path)
    assert [(r["sweep"], r["response"], r["stimulus"]) for r in rows] == [
        (0, "data_00009_AD0", "data_00009_DA0"), (1, "data_00005_AD0", "data_00005_DA0"),
        (2, "data_00001_AD0", "data_00001_DA0")]
    _check_sweep(hh.load_trace(path, sweep=0, area_cm2=AREA), 9)
    _check_sweep(hh.load_trace(path, sweep=2, area_cm2=AREA), 1)


def test_nwb_table_and_sweep_numbers_together(tmp_path):
    # The table names some sweeps; the others pair by their numbers.
    path = _write_nwb(tmp_path / "cell.nwb", [4, 2, 8, 6], table=[8, 2])
    assert [r["sweep"] for r in hh.list_sweeps(path)] == [2, 4, 6, 8]
    for sweep in (2, 4, 6, 8):
        _check_sweep(hh.load_trace(path, sweep=sweep, area_cm2=AREA), sweep)


def _voltage_clamp_and_lone_stimulus(nwb, electrode):
    from pynwb.icephys import CurrentClampStimulusSeries, VoltageClampSeries

    nwb.add_acquisition(VoltageClampSeries(name="vc", data=np.zeros(10), electrode=electrode, rate=RATE,
                                           starting_time=0.0, gain=1.0, sweep_number=20))
    nwb.add_stimulus(CurrentClampStimulusSeries(name="lone", data=np.zeros(10), electrode=electrode, rate=RATE,
                                                starting_time=0.0, gain=1.0, sweep_number=21))


@pytest.mark.parametrize(
    "sweep, match",
    [
        (None, r"holds 4 sweeps; pass `sweep`, one of \[3, 7, 20, 21\]"),
        (5, r"`sweep` 5 is not in cell.nwb \(its sweeps: \[3, 7, 20, 21\]"),
        ("data_00005_AD0", "is not in"),
        (20, "VoltageClampSeries, not current clamp"),
        (21, r"has a stimulus \(lone\) but no recorded response"),
    ],
)
def test_nwb_sweep_errors_name_the_sweeps(tmp_path, sweep, match):
    path = _write_nwb(tmp_path / "cell.nwb", [7, 3], extra=_voltage_clamp_and_lone_stimulus)
    with pytest.raises(ValueError, match=match):
        hh.load_trace(path, sweep=sweep, area_cm2=AREA)


def test_nwb_two_electrodes_in_one_sweep_are_chosen_by_name(tmp_path):
    from pynwb.icephys import CurrentClampSeries

    def second_electrode(nwb, electrode):
        other = nwb.create_icephys_electrode(name="e1", description="", device=electrode.device)
        nwb.add_acquisition(CurrentClampSeries(name="data_00003_AD1", data=np.full(400, 0.5), electrode=other,
                                               rate=RATE, starting_time=30.0, gain=1.0, sweep_number=3))

    path = _write_nwb(tmp_path / "cell.nwb", [3], extra=second_electrode)
    with pytest.raises(ValueError, match=r"sweep 3 of cell.nwb has 2 responses \(data_00003_AD0, data_00003_AD1\)"):
        hh.load_trace(path, sweep=3, area_cm2=AREA)
    _check_sweep(hh.load_trace(path, sweep="data_00003_AD0", area_cm2=AREA), 3)
    rec = hh.load_trace(path, sweep="data_00003_AD1")
    assert rec.I is None and np.all(rec.V == 500.0)


def test_nwb_stimulus_sampled_unlike_its_response_is_an_error(tmp_path):
    from pynwb.icephys import CurrentClampSeries, CurrentClampStimulusSeries

    def mismatched(nwb, electrode):
        nwb.add_acquisition(CurrentClampSeries(name="r", data=np.zeros(10), electrode=electrode, rate=RATE,
                                               starting_time=0.0, gain=1.0, sweep_number=1))
        nwb.add_stimulus(CurrentClampStimulusSeries(name="s", data=np.zeros(10), electrode=electrode, rate=RATE / 2,
                                                    starting_time=0.0, gain=1.0, sweep_number=1))

    path = _write_nwb(tmp_path / "cell.nwb", [], extra=mismatched)
    with pytest.raises(ValueError, match="not sampled with the response"):
        hh.load_trace(path, area_cm2=AREA)


def test_list_sweeps_rejects_other_files(tmp_path):
    with pytest.raises(ValueError, match="must be an .nwb file"):
        hh.list_sweeps(tmp_path / "trace.csv")
    pytest.importorskip("pynwb")
    (tmp_path / "bad.nwb").write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable NWB file"):
        hh.list_sweeps(tmp_path / "bad.nwb")
    (tmp_path / "trace.csv").write_text("t,V\n0,1\n1,2\n")
    with pytest.raises(ValueError, match="`sweep` names a series only in an NWB file"):
        hh.load_trace(tmp_path / "trace.csv", time_unit="ms", voltage_unit="mV", sweep="x")
