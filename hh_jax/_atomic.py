"""Atomic writes: a result file is either the old one or the complete new one, never half."""

from __future__ import annotations

import contextlib
import os
import pathlib


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path` (same suffix); on success it is renamed over
    `path`, on failure removed, so an interrupted write never leaves a truncated file."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
