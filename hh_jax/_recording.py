"""Recordings: voltage (and injected current) traces read from files, in hh_jax's units.

`hh.load_trace` reads CSV, NPZ, NWB (with the `nwb` extra, pynwb; `hh.list_sweeps` lists an
NWB file's sweeps) and ABF (with the `abf` extra, pyabf) files into an `hh.Recording` in ms, mV and µA/cm², applying the declared units,
a membrane area for absolute currents and a liquid-junction correction. A recording can be
cut to a window, resampled onto the solver's save times, and turned into a stimulus (the
recorded current as `hh.Sampled`, or a fitted step) and an `hh.Target`.
"""

from __future__ import annotations

import pathlib
import warnings
import zipfile
from dataclasses import dataclass, replace

import numpy as np

from ._nwb import read_nwb
from ._stimulus import Sampled, Step
from ._target import Target
from ._validation import check_count, check_finite, check_positive

_TIME = {"s": 1e3, "ms": 1.0}
_VOLTAGE = {"V": 1e3, "mV": 1.0}
_CURRENT_ABSOLUTE = {"A": 1e6, "mA": 1e3, "uA": 1.0, "µA": 1.0, "nA": 1e-3, "pA": 1e-6}  # → µA
_CURRENT_DENSITY = ("uA/cm2", "µA/cm²", "uA/cm^2", "µA/cm2")
_OWNER = "hh.load_trace"
_MICRO = {"\u03bc": "\u00b5"}  # Greek small mu, as typed, for the micro sign that the tables use


def _unit(text):
    """A unit as written in a file or argument, with Greek μ read as the micro sign µ."""
    if text is None:
        return None
    text = str(text).strip()
    for greek, micro in _MICRO.items():
        text = text.replace(greek, micro)
    return text


@dataclass(frozen=True)
class Recording:
    """A recorded trace in hh_jax's units.

    **Fields:** `t` (ms, strictly increasing), `V` (mV, junction-corrected), `I` (µA/cm², or
    None when no current was recorded), `source` (where it came from).

    Example:
        >>> rec = hh.load_trace("cell.npz").window(0.0, 500.0).resample(jnp.linspace(0.0, 500.0, 2501))
        >>> target = rec.target()
    """

    t: np.ndarray
    V: np.ndarray
    I: np.ndarray | None = None  # noqa: E741
    source: str = ""

    def window(self, start: float, stop: float) -> "Recording":
        """The samples with start ≤ t ≤ stop (ms), times shifted to start at 0."""
        check_finite("start", start, "Recording.window")
        check_finite("stop", stop, "Recording.window")
        keep = (self.t >= start) & (self.t <= stop)
        if keep.sum() < 2:
            raise ValueError(f"Recording.window: fewer than 2 samples in [{start}, {stop}] ms.")
        return replace(self, t=self.t[keep] - self.t[keep][0], V=self.V[keep],
                       I=None if self.I is None else self.I[keep])

    def resample(self, ts) -> "Recording":
        """Linear interpolation onto the times `ts` (ms), which must lie within the recording
        (e.g. the solver's save times). Downsampling first averages over the new interval, so
        noise does not alias."""
        ts = np.asarray(ts, float)
        check_finite("ts", ts, "Recording.resample")
        if ts.ndim != 1 or ts.size < 2 or np.any(np.diff(ts) <= 0):
            raise ValueError("Recording.resample: `ts` must be a strictly increasing 1-D array.")
        if ts[0] < self.t[0] or ts[-1] > self.t[-1]:
            raise ValueError(
                f"Recording.resample: `ts` spans [{ts[0]}, {ts[-1]}] ms, outside the recording "
                f"[{self.t[0]}, {self.t[-1]}] ms."
            )
        step = np.median(np.diff(ts))
        native = np.median(np.diff(self.t))
        V, I = self.V, self.I  # noqa: E741
        if step > 1.5 * native:  # box-average over one new interval before sampling
            width = int(round(step / native))
            kernel = np.ones(width)
            V = np.convolve(V, kernel, mode="same") / np.convolve(np.ones_like(V), kernel, mode="same")
        V = np.interp(ts, self.t, V)
        # The current is piecewise constant (steps): take the value in force, no smoothing.
        if I is not None:
            I = I[np.clip(np.searchsorted(self.t, ts, side="right") - 1, 0, self.t.size - 1)]  # noqa: E741
        return replace(self, t=ts, V=V, I=I)

    def stimulus(self, kind: str = "sampled"):
        """The recorded current as a stimulus: "sampled" (`hh.Sampled`, zero-order hold, every
        sample) or "step" (the best single `hh.Step`: onset and offset where the current
        crosses half its extreme value, amplitude the mean current between them)."""
        if self.I is None:
            raise ValueError("Recording.stimulus: this recording has no current trace.")
        if kind == "sampled":
            return Sampled(times=self.t, values=self.I, hold="zero")
        if kind == "step":
            peak = self.I[np.argmax(np.abs(self.I))]
            if peak == 0:
                raise ValueError("Recording.stimulus: the current is zero throughout; no step to fit.")
            on = np.flatnonzero(np.abs(self.I) >= 0.5 * abs(peak))
            start, stop = self.t[on[0]], self.t[min(on[-1] + 1, self.t.size - 1)]
            return Step(start=float(start), stop=float(stop), amplitude=float(self.I[on].mean()))
        raise ValueError(f"Recording.stimulus: `kind` must be 'sampled' or 'step', got {kind!r}.")

    def target(self, stimulus=None, **kwargs) -> Target:
        """An `hh.Target` of this recording (stimulus: the recorded current as a fitted step
        unless given). Keyword arguments go to `hh.Target` (mask, weight, v0, sigma)."""
        stimulus = self.stimulus("step") if stimulus is None else stimulus
        return Target(stimulus=stimulus, ts=self.t, V=self.V, **kwargs)


def load_trace(
    path,
    *,
    time_unit: str | None = None,
    voltage_unit: str | None = None,
    current_unit: str | None = None,
    area_cm2: float | None = None,
    junction_mV: float = 0.0,
    columns: dict | None = None,
    sweep: int | str | None = None,
    window: tuple[float, float] | None = None,
) -> Recording:
    """Read a voltage trace (and the injected current, where present) from a file.

    **Arguments:**
    - `path`: a `.csv`, `.npz`, `.nwb` or `.abf` file.
    - `time_unit` ("s" or "ms"), `voltage_unit` ("V" or "mV"), `current_unit` ("A", "mA",
      "µA", "nA", "pA" — absolute, needing `area_cm2` — or "µA/cm²"): the units in the file.
      CSV and NPZ files must declare time and voltage units (here, or in a `*_unit` entry
      of an NPZ); NWB and ABF files carry their own.
    - `area_cm2`: membrane area (cm²) that turns an absolute current into a density.
    - `junction_mV`: liquid-junction correction added to the voltage (mV), e.g. −14.
    - `columns`: names of the time, voltage and current columns (CSV) or arrays (NPZ),
      {"t": ..., "V": ..., "I": ...}; default "t", "V", "I" (current optional).
    - `sweep`: which sweep of an NWB or ABF file: its number (NWB: the series'
      `sweep_number`, as `hh.list_sweeps` lists them; ABF: 0, 1, …), or for NWB the name of
      the response series. By default the file's only sweep (an error lists them when there
      are several). NWB sweeps pair the recorded potential with the stimulus that produced
      it by the file's intracellular-recordings table or by sweep number, never by order,
      and apply each series' `conversion`, `offset`, `unit` and its `starting_time` and
      `rate` (or `timestamps`).
    - `window`: (start, stop) in ms to cut, times then starting at 0.

    **Returns:** an `hh.Recording` in ms, mV and µA/cm².

    Raises `ValueError` naming the problem for missing columns, unknown units, NaNs,
    non-increasing times, an empty trace, an absolute current without `area_cm2`, or a sweep
    that is not in the file, has no recorded response, is not current clamp or is ambiguous
    (listing the sweeps that are there).

    Example:
        >>> rec = hh.load_trace("cell.csv", time_unit="s", voltage_unit="V", current_unit="pA",
        ...                     area_cm2=1.857e-4, junction_mV=-14.0)
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise ValueError(f"{_OWNER}: no such file: {path}.")
    check_finite("junction_mV", junction_mV, _OWNER)
    if area_cm2 is not None:
        check_positive("area_cm2", area_cm2, _OWNER, "cm²")
    if isinstance(sweep, str):
        if path.suffix.lower() != ".nwb":
            raise ValueError(f"{_OWNER}: `sweep` names a series only in an NWB file; pass a sweep number, got {sweep!r}.")
    elif sweep is not None:
        check_count("sweep", sweep, _OWNER, minimum=0)
    if columns is not None and not isinstance(columns, dict):
        raise ValueError(f"{_OWNER}: `columns` must be a dict such as {{'t': 'time'}}, got {type(columns).__name__}.")
    if window is not None:
        if not (isinstance(window, (tuple, list)) and len(window) == 2):
            raise ValueError(f"{_OWNER}: `window` must be a pair (start, stop) in ms, got {window!r}.")
        check_finite("window", np.asarray(window, float), _OWNER)
    kind = path.suffix.lower()
    names = {"t": "t", "V": "V", "I": "I", **(columns or {})}
    if kind == ".csv":
        t, V, I, units = _read_csv(path, names)  # noqa: E741
    elif kind == ".npz":
        t, V, I, units = _read_npz(path, names)  # noqa: E741
    elif kind == ".nwb":
        t, V, I, units = read_nwb(path, sweep)  # noqa: E741
    elif kind == ".abf":
        t, V, I, units = _read_abf(path, sweep)  # noqa: E741
    else:
        raise ValueError(f"{_OWNER}: unknown file type {path.suffix!r}; expected .csv, .npz, .nwb or .abf.")
    time_unit = _unit(time_unit or units.get("t"))
    voltage_unit = _unit(voltage_unit or units.get("V"))
    current_unit = _unit(current_unit or units.get("I"))
    rec = _to_units(path, t, V, I, time_unit, voltage_unit, current_unit, area_cm2, junction_mV)
    return rec.window(*window) if window is not None else rec


def _to_units(path, t, V, I, time_unit, voltage_unit, current_unit, area_cm2, junction_mV):  # noqa: E741
    t, V = np.asarray(t, float).ravel(), np.asarray(V, float).ravel()
    if t.size == 0 or V.size == 0:
        raise ValueError(f"{_OWNER}: {path.name} holds an empty trace.")
    if t.shape != V.shape:
        raise ValueError(f"{_OWNER}: {path.name}: time and voltage have different lengths ({t.size} and {V.size}).")
    if time_unit not in _TIME:
        raise ValueError(f"{_OWNER}: unknown or missing time unit {time_unit!r}; expected one of {list(_TIME)}.")
    if voltage_unit not in _VOLTAGE:
        raise ValueError(f"{_OWNER}: unknown or missing voltage unit {voltage_unit!r}; expected one of {list(_VOLTAGE)}.")
    for name, x in (("time", t), ("voltage", V)):
        if not np.all(np.isfinite(x)):
            bad = np.flatnonzero(~np.isfinite(x))
            raise ValueError(f"{_OWNER}: {path.name}: {bad.size} non-finite {name} sample(s), first at index {bad[0]}.")
    if t.size < 2 or np.any(np.diff(t) <= 0):
        bad = np.flatnonzero(np.diff(t) <= 0)
        where = f" (first at index {bad[0] + 1})" if bad.size else ""
        raise ValueError(f"{_OWNER}: {path.name}: time must be strictly increasing{where}.")
    t = t * _TIME[time_unit]
    V = V * _VOLTAGE[voltage_unit] + junction_mV
    if I is not None:
        I = np.asarray(I, float).ravel()  # noqa: E741
        if I.shape != t.shape:
            raise ValueError(f"{_OWNER}: {path.name}: current and time have different lengths ({I.size} and {t.size}).")
        if not np.all(np.isfinite(I)):
            raise ValueError(f"{_OWNER}: {path.name}: the current has non-finite samples.")
        if current_unit in _CURRENT_DENSITY:
            pass
        elif current_unit in _CURRENT_ABSOLUTE:
            if area_cm2 is None or not area_cm2 > 0:
                raise ValueError(
                    f"{_OWNER}: the current is in {current_unit}; pass `area_cm2` (the membrane "
                    f"area) to turn it into µA/cm²."
                )
            I = I * _CURRENT_ABSOLUTE[current_unit] / area_cm2  # noqa: E741
        else:
            raise ValueError(
                f"{_OWNER}: unknown or missing current unit {current_unit!r}; expected one of "
                f"{list(_CURRENT_ABSOLUTE) + ['µA/cm²']}."
            )
    return Recording(t=t, V=V, I=I, source=str(path))


def _read_csv(path, names):
    # utf-8-sig: a byte-order mark (as spreadsheet programs write) is not part of a column name.
    try:
        with open(path, encoding="utf-8-sig") as fh:
            header = fh.readline().strip()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": raised below
            data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{_OWNER}: {path.name} is not UTF-8 text (byte {err.object[err.start]:#04x} at "
            f"position {err.start}); save it as UTF-8."
        ) from None
    except ValueError as err:
        raise ValueError(f"{_OWNER}: {path.name} is not a numeric CSV with one header row ({err}).") from None
    cols = [c.strip() for c in header.split(",")]
    if data.size == 0:
        raise ValueError(f"{_OWNER}: {path.name} holds an empty trace.")
    if data.shape[1] != len(cols):
        raise ValueError(f"{_OWNER}: {path.name}: the header names {len(cols)} columns, the rows have {data.shape[1]}.")
    for key in ("t", "V"):
        if names[key] not in cols:
            raise ValueError(f"{_OWNER}: {path.name} has no column {names[key]!r} (columns: {cols}); pass `columns`.")
    get = lambda key: data[:, cols.index(names[key])] if names[key] in cols else None  # noqa: E731
    return get("t"), get("V"), get("I"), {}


def _read_npz(path, names):
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{_OWNER}: {path.name} is not an NPZ archive (not a zip file: truncated, or another format).")
    try:
        with np.load(path) as z:
            keys = list(z.keys())
            for key in ("t", "V"):
                if names[key] not in keys:
                    raise ValueError(f"{_OWNER}: {path.name} has no array {names[key]!r} (arrays: {keys}); pass `columns`.")
            get = lambda key: np.asarray(z[names[key]]) if names[key] in keys else None  # noqa: E731
            units = {k: str(z[f"{k}_unit"]) for k in ("t", "V", "I") if f"{k}_unit" in keys}
            return get("t"), get("V"), get("I"), units
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise ValueError(f"{_OWNER}: {path.name} is a damaged NPZ archive ({err}).") from None
    except ValueError as err:
        if "pickle" in str(err):  # object arrays: hh_jax never loads pickles from data files
            raise ValueError(f"{_OWNER}: {path.name} holds Python objects, not numeric arrays.") from None
        raise


def _read_abf(path, sweep):
    try:
        import pyabf
    except ImportError:
        raise ValueError(f"{_OWNER}: reading ABF needs pyabf: pip install 'hh_jax[abf]'.") from None
    abf = pyabf.ABF(str(path))
    if sweep is None and abf.sweepCount > 1:
        raise ValueError(f"{_OWNER}: {path.name} holds {abf.sweepCount} sweeps; pass `sweep`, 0 to {abf.sweepCount - 1}.")
    sweep = 0 if sweep is None else sweep
    if sweep >= abf.sweepCount:
        raise ValueError(f"{_OWNER}: `sweep` {sweep} is not in {path.name}, which has sweeps 0 to {abf.sweepCount - 1}.")
    abf.setSweep(sweep)
    unit_v = {"mV": "mV", "V": "V"}.get(abf.sweepUnitsY)
    unit_i = {"pA": "pA", "nA": "nA", "A": "A"}.get(abf.sweepUnitsC)
    I = np.asarray(abf.sweepC, float) if unit_i else None  # noqa: E741
    return np.asarray(abf.sweepX, float), np.asarray(abf.sweepY, float), I, {"t": "s", "V": unit_v, "I": unit_i}

