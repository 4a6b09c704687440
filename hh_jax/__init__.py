"""hh_jax: differentiable Hodgkin–Huxley neurons on JAX and Diffrax.

The data path, one module each: parameters (`_membrane`, `presets`) → stimulus → vector field
→ solve (`simulate`) → trace → analysis.
"""

from . import plotting, presets
from ._analysis import spike_times
from ._membrane import AbstractMembrane, HodgkinHuxley, hh_rates, q10_factor
from ._solve import SolverError, simulate
from ._stimulus import AbstractStimulus, NoStimulus, Pulse, Step, Sum
from ._trace import Trace
from ._vector_field import vector_field

__version__ = "0.1.0"

__all__ = [
    "AbstractMembrane",
    "AbstractStimulus",
    "HodgkinHuxley",
    "NoStimulus",
    "Pulse",
    "SolverError",
    "Step",
    "Sum",
    "Trace",
    "hh_rates",
    "plotting",
    "presets",
    "q10_factor",
    "simulate",
    "spike_times",
    "vector_field",
]
