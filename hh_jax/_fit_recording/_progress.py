"""What a checkpoint of `hh.fit_recording` holds, and the check that a resume continues the
same fit.

The progress is plain JSON: the search's candidates and their scores so far (NaN for one
not scored yet), then the refinement's starts, its report and its Levenberg–Marquardt state
(`lm_saved`: residuals and Jacobians are evaluated again on resuming), and the seconds each
stage has taken. Every part of it is deterministic given the fit's arguments, so a resumed
fit ends where the uninterrupted one would have.
"""

from __future__ import annotations

import json
import os

import numpy as np

from .._atomic import atomic_path
from .._fit._result import digest, leaves

KIND = "hh.fit_recording progress"
VERSION = 1


def fingerprint(s: dict, candidates, starts, seed, rtol, max_steps) -> dict:
    """What a resumed fit must share with the one it continues, each part a short digest so
    that a mismatch can be named (the iteration count may grow)."""

    rec = s["recording"]
    return dict(
        recording=digest(*[np.asarray(a, float) for a in (rec.t, rec.V, rec.I) if a is not None]),
        model=digest(type(s["model"]).__name__, *leaves(s["model"])), free=list(s["free"]),
        bounds=digest(sorted((k, tuple(map(float, v))) for k, v in s["bounds"].items())),
        features=list(s["keys"]), stimulus=digest(type(s["stimulus"]).__name__, *leaves(s["stimulus"])),
        measured=digest(s["threshold"], sorted(s["recorded"].items()), sorted(s["noise"].items())),
        settings=digest(int(candidates), int(starts), int(seed), float(rtol), int(max_steps)),
    )


_WHAT = dict(recording="recording", model="model", free="free", bounds="bounds", features="features",
             stimulus="stimulus", measured="threshold, recorded or noise",
             settings="candidates, starts, seed, rtol or max_steps")


class Progress:
    """The fit so far: `search` {x `(n, p)`, scores `(n,)` (NaN: not scored yet), round},
    `refine` (None before the refinement; then its starts, report and state), `elapsed`
    seconds per stage."""

    def __init__(self, fingerprint: dict, search=None, refine=None, elapsed=None):
        self.fingerprint = fingerprint
        self.search = search or {}
        self.refine = refine
        self.elapsed = dict(elapsed or {"search": 0.0, "refine": 0.0})

    @classmethod
    def resumed(cls, resume, fingerprint: dict, owner: str) -> "Progress":
        """The progress in `resume` (a checkpoint path, or the dict an interrupted fit's
        `FitInterrupted.result` holds), refused when it belongs to another fit."""
        if isinstance(resume, (str, os.PathLike)):
            try:
                with open(resume) as fh:
                    resume = json.load(fh)
            except FileNotFoundError:
                raise FileNotFoundError(f"{owner}: `resume`: no checkpoint {resume}.") from None
            except json.JSONDecodeError as err:
                raise ValueError(f"{owner}: `resume`: {resume} is not a checkpoint (not JSON: {err}).") from None
        if not isinstance(resume, dict) or resume.get("kind") != KIND:
            raise ValueError(f"{owner}: `resume` must be a checkpoint of hh.fit_recording (its path, or the `.result` "
                             f"of the hh.FitInterrupted it raised), got {type(resume).__name__}.")
        if resume.get("version") != VERSION:
            raise ValueError(f"{owner}: `resume` was written by another version of hh_jax (format "
                             f"{resume.get('version')}, this one reads {VERSION}).")
        saved = resume["fingerprint"]
        differs = [_WHAT[k] for k in _WHAT if saved.get(k) != fingerprint.get(k)]
        if differs:
            raise ValueError(f"{owner}: `resume` comes from a different fit: {'; '.join(differs)} differ(s) from this "
                             "call. Resume with the same recording and arguments (only `iterations` may change).")
        search = resume.get("search") or {}
        if search:
            search = dict(search, x=np.asarray(search["x"], float), scores=np.asarray(search["scores"], float))
        return cls(saved, search, resume.get("refine"), resume.get("elapsed"))

    def to_dict(self) -> dict:
        search = dict(self.search)
        if search:
            search["x"] = np.asarray(search["x"]).tolist()
            search["scores"] = [float(v) for v in np.asarray(search["scores"])]  # NaN and inf as JSON allows in Python
        return dict(kind=KIND, version=VERSION, fingerprint=self.fingerprint, search=search, refine=self.refine,
                    elapsed=self.elapsed)

    def save(self, path) -> None:
        """Write the progress as JSON, atomically (a reader sees the old file or the new one)."""
        if path is None:
            return
        with atomic_path(path) as tmp, open(tmp, "w") as fh:
            json.dump(self.to_dict(), fh)

