"""Test configuration: float64 by default (the tests opt into float32 explicitly)."""

import jax

# The library never touches global JAX config; the test suite chooses float64 for itself.
jax.config.update("jax_enable_x64", True)
