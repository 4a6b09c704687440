"""Test configuration: float64 by default (the tests opt into float32 explicitly), JAX's
persistent compilation cache for the run, and the `slow` marker.

The library never touches global JAX config; the test suite chooses for itself. The cache
folder (`.pytest_cache/hh_jax_xla` unless `HH_JAX_CACHE` is set) is shared by the xdist
workers and by the scripts, notebooks and CLI commands the tests start (they read
`HH_JAX_CACHE`), so a program compiled once in a run is loaded, not recompiled, by the
others; a second run on the same machine starts warm.
"""

import os
import pathlib

import jax
import pytest

jax.config.update("jax_enable_x64", True)

_ROOT = pathlib.Path(__file__).resolve().parent.parent
os.environ.setdefault("HH_JAX_CACHE", str(_ROOT / ".pytest_cache" / "hh_jax_xla"))

import hh_jax as hh  # noqa: E402

hh.use_compilation_cache(os.environ["HH_JAX_CACHE"])

# Whole modules that run notebooks, scripts or long fits end to end: `pytest -m "not slow"`
# is the quick set for development.
_SLOW_MODULES = {"test_notebooks.py", "test_scripts.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in _SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
