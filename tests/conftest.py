"""Test configuration: float64 by default (the tests opt into float32 explicitly), JAX's
persistent compilation cache for the run, XLA's backend at optimisation level 0 (faster
compilation; a fresh-clone run took 11 min 57 s instead of 14 min 3 s), and the `slow` marker.

The library never touches global JAX config; the test suite chooses for itself. The cache
folder (`.pytest_cache/hh_jax_xla` unless `HH_JAX_CACHE` is set) is shared by the xdist
workers and by the scripts, notebooks and CLI commands the tests start (they read
`HH_JAX_CACHE`), so a program compiled once in a run is loaded, not recompiled, by the
others; a second run on the same machine starts warm.
"""

import os
import pathlib

# The test run compiles hundreds of programs that each run briefly: XLA's backend at
# optimisation level 0 compiles them faster (this process and the xdist workers only).
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

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


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = getattr(item, "originalname", None) or item.name
        if item.path.name in _SLOW_MODULES or name in _SLOW_TESTS.get(item.path.name, ()):
            item.add_marker(pytest.mark.slow)
    # The longest modules (each test a notebook, a script or an interrupted fit, tens of
    # seconds) go first, so that the parallel workers start on them and the short tests fill
    # in at the end: the run ends when the last long test does, not one of them later.
    items.sort(key=lambda item: _SLOW_MODULES.index(item.path.name) if item.path.name in _SLOW_MODULES else len(_SLOW_MODULES))
