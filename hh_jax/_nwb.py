"""NWB intracellular electrophysiology files (the Allen Cell Types and DANDI layout): the sweeps
of a file (`hh.list_sweeps`) and the samples of one (`read_nwb`, for `hh.load_trace`), with pynwb.

A sweep is a recorded response (a PatchClampSeries in
the file's acquisition) and the stimulus that produced it (one in its stimulus group),
paired by the intracellular-recordings table where the file has one, else by their
`sweep_number` (and electrode), never by their order in the file.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

import numpy as np

_OWNER = "hh.load_trace"
_NWB_UNITS = {"volts": "V", "volt": "V", "millivolts": "mV", "amperes": "A", "ampere": "A", "amps": "A",
              "nanoamperes": "nA", "picoamperes": "pA"}
_CLAMP = {"CurrentClampSeries": "current", "IZeroClampSeries": "current (I = 0)", "VoltageClampSeries": "voltage"}


@dataclass(frozen=True)
class _Part:
    """Samples [first, first + count) of one series (count None: to its end)."""

    series: object
    first: int = 0
    count: int | None = None

    def samples(self):
        n = len(self.series.data) - self.first
        return n if self.count is None else self.count

    def values(self):
        """(times in s, data × conversion + offset in the series' unit, that unit)."""
        s = self.series
        stop = None if self.count is None else self.first + self.count
        data = np.asarray(s.data[self.first:stop], float) * s.conversion + (getattr(s, "offset", None) or 0.0)
        if s.timestamps is not None:
            t = np.asarray(s.timestamps[self.first:stop], float)
        else:
            t = s.starting_time + (self.first + np.arange(data.shape[0])) / s.rate
        return t, data, _NWB_UNITS.get(str(s.unit).strip().lower(), str(s.unit).strip())


@dataclass(frozen=True)
class _NWBSweep:
    number: int | None
    response: _Part | None
    stimulus: _Part | None


def _pynwb(owner):
    try:
        import pynwb
    except ImportError:
        raise ValueError(f"{owner}: reading NWB needs pynwb: pip install 'hh_jax[nwb]'.") from None
    return pynwb


def _nwb_file(pynwb, path, owner):
    path = pathlib.Path(path)
    if not path.exists():
        raise ValueError(f"{owner}: no such file: {path}.")
    try:
        io = pynwb.NWBHDF5IO(str(path), "r")
        return io, io.read()
    except Exception as err:  # h5py, hdmf and pynwb each raise their own kinds
        raise ValueError(f"{owner}: {path.name} is not a readable NWB file ({type(err).__name__}: {err}).") from None


def _table_part(ref):
    if ref is None or ref.idx_start < 0 or ref.timeseries is None:
        return None
    return _Part(ref.timeseries, int(ref.idx_start), int(ref.count))


def _nwb_sweeps(nwb, pynwb) -> list[_NWBSweep]:
    """Every sweep of the file: the table's rows, then the series no row names, grouped by
    (sweep_number, electrode); a group pairs when it holds at most one of each."""
    clamp = pynwb.icephys.PatchClampSeries
    sweeps, named = [], set()
    table = nwb.intracellular_recordings
    if table is not None and len(table) > 0:
        responses = table.category_tables["responses"]["response"]
        stimuli = table.category_tables["stimuli"]["stimulus"]
        for row, row_id in enumerate(table.id[:]):
            parts = (_table_part(responses[row]), _table_part(stimuli[row]))
            numbers = [p.series.sweep_number for p in parts if p is not None and p.series.sweep_number is not None]
            named |= {p.series.object_id for p in parts if p is not None}
            sweeps.append(_NWBSweep(int(numbers[0]) if numbers else int(row_id), *parts))
    groups = {}
    for side, where in ((0, nwb.acquisition), (1, nwb.stimulus)):
        for s in where.values():
            if isinstance(s, clamp) and s.object_id not in named:
                number = None if s.sweep_number is None else int(s.sweep_number)
                key = (number, None if s.electrode is None else s.electrode.name)
                groups.setdefault(key, ([], []))[side].append(_Part(s))
    for (number, _), (responses, stimuli) in groups.items():
        if len(responses) <= 1 and len(stimuli) <= 1:
            sweeps.append(_NWBSweep(number, responses[0] if responses else None, stimuli[0] if stimuli else None))
        else:  # several series of one sweep and electrode: nothing says which go together
            sweeps += [_NWBSweep(number, r, None) for r in responses] + [_NWBSweep(number, None, s) for s in stimuli]
    return sorted(sweeps, key=lambda w: (w.number is None, w.number or 0, _names(w)))


def _names(sweep):
    return tuple("" if p is None else p.series.name for p in (sweep.response, sweep.stimulus))


def _describe(sweep) -> dict:
    part = sweep.response or sweep.stimulus
    s, n = part.series, part.samples()
    if s.timestamps is not None:
        start, end = float(s.timestamps[part.first]), float(s.timestamps[part.first + n - 1])
        rate = (n - 1) / (end - start) if n > 1 else float("nan")
    else:
        start, rate = s.starting_time + part.first / s.rate, float(s.rate)
    unit = lambda p: None if p is None else str(p.series.unit)  # noqa: E731
    response, stimulus = _names(sweep)
    return {
        "sweep": sweep.number,
        "response": response or None,
        "stimulus": stimulus or None,
        "clamp": None if sweep.response is None else _CLAMP.get(type(sweep.response.series).__name__, "other"),
        "electrode": None if s.electrode is None else s.electrode.name,
        "start_ms": float(start) * 1e3,
        "duration_ms": n / rate * 1e3,
        "rate_hz": rate,
        "response_unit": unit(sweep.response),
        "stimulus_unit": unit(sweep.stimulus),
        "stimulus_description": getattr((sweep.stimulus or part).series, "stimulus_description", None),
    }


def list_sweeps(path) -> list[dict]:
    """The sweeps of an NWB file (intracellular electrophysiology), as `hh.load_trace` reads them.

    A sweep is a recorded response (a current- or voltage-clamp series in the file's
    acquisition) and the stimulus that produced it (a series in its stimulus group), paired
    by the file's intracellular-recordings table where it has one, else by their
    `sweep_number` and electrode — never by their order in the file. Needs the `nwb` extra
    (pynwb).

    **Arguments:**
    - `path`: an `.nwb` file.

    **Returns:** one dict per sweep, ordered by sweep number: `sweep` (the series'
    `sweep_number`; for unnumbered series that the table pairs, the table's row id; None for
    an unnumbered series on its own), `response` and `stimulus` (the series' names, None
    where missing), `clamp` ("current", "current (I = 0)" or "voltage"), `electrode`,
    `start_ms` (ms from the session start), `duration_ms` (ms), `rate_hz` (Hz),
    `response_unit` and `stimulus_unit` (as the file declares them) and
    `stimulus_description`. `pandas.DataFrame(hh.list_sweeps(path))` shows it as a table.

    Example:
        >>> for row in hh.list_sweeps("cell.nwb"):
        ...     print(row["sweep"], row["stimulus_description"], row["duration_ms"])
        >>> rec = hh.load_trace("cell.nwb", sweep=57, area_cm2=1.857e-4, junction_mV=-14.0)
    """
    owner = "hh.list_sweeps"
    if pathlib.Path(path).suffix.lower() != ".nwb":
        raise ValueError(f"{owner}: `path` must be an .nwb file, got {str(path)!r}.")
    pynwb = _pynwb(owner)
    io, nwb = _nwb_file(pynwb, path, owner)
    with io:
        return [_describe(w) for w in _nwb_sweeps(nwb, pynwb)]


def _pick_sweep(sweeps, sweep, name):
    """The one sweep that `sweep` names (a number, a response series' name, or None for the
    file's only sweep), with a response in current clamp; errors name what is there."""
    numbers = sorted({w.number for w in sweeps}, key=lambda n: (n is None, n or 0))
    where = f"{name} (its sweeps: {numbers}; hh.list_sweeps lists them)"
    if sweep is None:
        if len(sweeps) != 1:
            raise ValueError(f"{_OWNER}: {name} holds {len(sweeps)} sweeps; pass `sweep`, one of {numbers} "
                             f"(hh.list_sweeps lists them).")
        match = sweeps
    elif isinstance(sweep, str):
        match = [w for w in sweeps if sweep in _names(w)]
    else:
        match = [w for w in sweeps if w.number == sweep]
    if not match:
        raise ValueError(f"{_OWNER}: `sweep` {sweep!r} is not in {where}.")
    recorded = [w for w in match if w.response is not None]
    if not recorded:
        stimuli = [w.stimulus.series.name for w in match]
        raise ValueError(f"{_OWNER}: sweep {sweep!r} of {name} has a stimulus ({', '.join(stimuli)}) but no recorded response.")
    if len(recorded) > 1:
        names = [w.response.series.name for w in recorded]
        raise ValueError(f"{_OWNER}: sweep {sweep!r} of {name} has {len(names)} responses ({', '.join(names)}); "
                         f"pass `sweep` as the name of one.")
    (chosen,) = recorded
    kind = type(chosen.response.series).__name__
    if not _CLAMP.get(kind, "").startswith("current"):
        raise ValueError(f"{_OWNER}: sweep {sweep!r} of {name} is a {kind}, not current clamp; "
                         f"hh.load_trace reads membrane potential under current clamp.")
    return chosen


def read_nwb(path, sweep):
    """(t, V, I, units) of one current-clamp sweep, in the file's units (for `hh.load_trace`)."""
    pynwb = _pynwb(_OWNER)
    io, nwb = _nwb_file(pynwb, path, _OWNER)
    with io:
        chosen = _pick_sweep(_nwb_sweeps(nwb, pynwb), sweep, path.name)
        t, V, unit_v = chosen.response.values()
        I, unit_i = None, None  # noqa: E741
        if chosen.stimulus is not None:
            t_i, I, unit_i = chosen.stimulus.values()  # noqa: E741
            if t_i.shape != t.shape or not np.allclose(t_i, t, rtol=0.0, atol=1e-9):
                raise ValueError(
                    f"{_OWNER}: sweep {chosen.number!r} of {path.name}: the stimulus {chosen.stimulus.series.name} "
                    f"({t_i.size} samples from {t_i[0]} s) is not sampled with the response "
                    f"{chosen.response.series.name} ({t.size} samples from {t[0]} s)."
                )
    return t, V, I, {"t": "s", "V": unit_v, "I": unit_i}
