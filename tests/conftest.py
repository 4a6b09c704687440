"""Test configuration: float64 by default (the tests opt into float32 explicitly), JAX's
persistent compilation cache for the run, XLA flags that compile faster (optimisation level
0 and XLA's older CPU fusion code generator) except for the few tests marked `optimised`,
which run in processes of their own with XLA's defaults, and the `slow` marker.

The library never touches global JAX config; the test suite chooses for itself. The cache
folder (`.pytest_cache/hh_jax_xla` unless `HH_JAX_CACHE` is set) is shared by the xdist
workers and by the scripts, notebooks and CLI commands the tests start (they read
`HH_JAX_CACHE`), so a program compiled once in a run is loaded, not recompiled, by the
others; a second run on the same machine starts warm.
"""

import os
import pathlib
import re
import subprocess
import sys

# The test run compiles hundreds of programs that each run briefly (XLA's backend compile
# was about half of the workers' time), so it asks XLA to compile them faster (this process,
# the xdist workers and the notebooks, scripts and commands they start):
# - optimisation level 0 (a fresh-clone run: 11 min 57 s instead of 14 min 3 s);
# - the CPU backend's older fusion code generator: measured on the 2-core machine, a forward
#   solve compiled in 0.9-1.0 s instead of 1.4-1.6 s and a reverse-mode gradient of the
#   Pospischil model in 5-6 s instead of 8 s, running as fast at one neuron; the gradient,
#   batch, bad-input and stimulus test modules took 119 s instead of 188 s. (At 10,000 neurons
#   the newer generator's code runs 1.2-1.7x faster, which is why it is XLA's default and
#   why the library leaves it alone.)
# - no hoisting of loop-invariant code out of while loops (the solver's step loop and the
#   checkpointed loops of reverse mode): at level 0 that pass was a quarter to a third of
#   XLA's work. Measured by compiling the same lowered programs alternately with and without
#   it in one process (three rounds, medians; the machine's speed drifts too much between
#   processes): a forward solve, its reverse- and forward-mode gradients and a Pospischil
#   gradient compiled in 15.6 s instead of 24.0 s, 7.8 s instead of 11.4 s and (with a
#   10,000-neuron solve added) 10.0 s instead of 13.4 s in three runs, the Pospischil
#   gradient alone in 4.3-8.0 s instead of 5.2-13.0 s, running as fast (9 % slower at
#   10,000 neurons, faster or equal at one). At XLA's default level the
#   pass costs little to compile and pays at run time (10,000 neurons 18 % slower without
#   it), so only the test run drops it.
# The few tests marked `optimised` run for long in their compiled programs instead: each runs
# in a pytest process of its own with XLA's defaults (see `pytest_pyfunc_call`).
_FAST_COMPILE = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false",
                 "--xla_disable_hlo_passes=while-loop-invariant-code-motion")
_IN_OPTIMISED_PROCESS = os.environ.get("HH_JAX_TEST_OPTIMISED") == "1"


def _accepted(flags):
    """`flags` if this jaxlib's XLA accepts them (it aborts the process on a flag it does not
    know, and XLA's flags come and go between releases), else the optimisation level alone.
    Probed once, in the first pytest process; the xdist workers inherit the result."""
    probe = "import jax; jax.numpy.zeros(1).block_until_ready()"
    env = dict(os.environ, XLA_FLAGS=" ".join(flags), JAX_PLATFORMS="cpu")
    ok = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True).returncode == 0
    return flags if ok else flags[:1]


if not _IN_OPTIMISED_PROCESS and "XLA_FLAGS" not in os.environ:
    os.environ["XLA_FLAGS"] = " ".join(_accepted(_FAST_COMPILE))

import jax  # noqa: E402
import pytest

jax.config.update("jax_enable_x64", True)

_ROOT = pathlib.Path(__file__).resolve().parent.parent
os.environ.setdefault("HH_JAX_CACHE", str(_ROOT / ".pytest_cache" / "hh_jax_xla"))

import hh_jax as hh  # noqa: E402

hh.use_compilation_cache(os.environ["HH_JAX_CACHE"])

# `pytest -m "not slow"` is the quick set for development: it leaves out the modules that run
# notebooks, scripts or interrupted fits end to end, and the tests below, each measured at
# over ~10 s on the 2-core CI machine (long fits, network gradients, finite differences).
_SLOW_MODULES = ("test_notebooks.py", "test_scripts.py", "test_fit_reliability.py")  # longest first
_SLOW_TESTS = {
    "test_fit.py": {
        "test_lbfgs_and_custom_optax_optimisers", "test_bounds_are_respected_and_starts_drawn_inside",
        "test_save_load_resume_equals_uninterrupted", "test_failing_start_is_marked_and_others_continue",
        "test_recovery_32_starts_two_protocols_with_noise", "test_noise_free_fit_recovers_truth_exactly",
        "test_each_target_contributes", "test_loss_without_forward_mode_runs_by_reverse_mode",
    },
    "test_network.py": {"test_weight_gradients_match_central_differences_in_10_neuron_network",
                        "test_batch_of_networks_under_vmap"},
    "test_gradients.py": {"test_gradient_with_respect_to_stimulus_amplitude",
                          "test_trace_mse_gradient_matches_central_differences"},
    "test_membrane.py": {"test_user_channel_parameter_is_fitted_by_path"},
    "test_stimuli.py": {"test_noise_gradients_with_respect_to_mean_and_sigma", "test_sampled_step_matches_analytic_step",
                        "test_stimulus_gradient_through_train_amplitude"},
    "test_cli.py": {"test_simulate_then_fit_recovers_parameters"},
    "test_solve_options.py": {"test_one_failure_table_for_neurons_and_networks"},
    "test_network_solvers.py": {"test_forward_mode_through_an_adaptive_network_equals_reverse_mode"},
    "test_fit_recording.py": {"test_feature_jacobian_follows_the_spikes_not_the_sampling_phase"},
}


# Tests that spend their time running compiled solves, not compiling them: unoptimised code
# runs them 1.2-3x slower, more than the compilation it saves. Measured on the 2-core machine,
# level 0 against the default: the 32-start recovery fit 74 s against 24 s, the networks
# script 92 s against 60 s, notebook 05 88 s against 64 s (each compile-bound test is the
# other way round, 10-30 % faster at level 0).
_OPTIMISED_TESTS = {
    "test_fit.py": {"test_recovery_32_starts_two_protocols_with_noise"},
    "test_scripts.py": {"test_networks_script"},
    "test_notebooks.py": {"test_notebook_runs[05_networks.ipynb]"},
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = getattr(item, "originalname", None) or item.name
        if item.path.name in _SLOW_MODULES or name in _SLOW_TESTS.get(item.path.name, ()):
            item.add_marker(pytest.mark.slow)
        if item.name in _OPTIMISED_TESTS.get(item.path.name, ()):
            item.add_marker(pytest.mark.optimised)
    # The longest modules (each test a notebook, a script or an interrupted fit, tens of
    # seconds) go first, so that the parallel workers start on them and the short tests fill
    # in at the end: the run ends when the last long test does, not one of them later.
    items.sort(key=lambda item: _SLOW_MODULES.index(item.path.name) if item.path.name in _SLOW_MODULES else len(_SLOW_MODULES))


def pytest_pyfunc_call(pyfuncitem):
    """A test marked `optimised` runs, whole and unchanged, in a pytest process of its own
    with XLA's default optimisation level (the user's own XLA_FLAGS kept); its failure,
    with that process' output, is this test's failure."""
    if _IN_OPTIMISED_PROCESS or pyfuncitem.get_closest_marker("optimised") is None:
        return None
    flags = os.environ.get("XLA_FLAGS", "").split()  # the xdist workers inherit the fast-compile flags
    env = dict(os.environ, HH_JAX_TEST_OPTIMISED="1", XLA_FLAGS=" ".join(f for f in flags if f not in _FAST_COMPILE))
    command = [sys.executable, "-m", "pytest", pyfuncitem.nodeid, "-q", "-o", "addopts=", "-p", "no:cacheprovider"]
    done = subprocess.run(command, cwd=_ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0 or not re.search(r"^1 passed", done.stdout, re.MULTILINE):
        pytest.fail(f"{pyfuncitem.nodeid} failed in its optimised process:\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}",
                    pytrace=False)
    return True
