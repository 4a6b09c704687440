"""hh_jax: differentiable Hodgkin–Huxley neurons on JAX and Diffrax.

The data path, one module each: parameters (`_membrane`, `presets`) → stimulus → vector field
→ solve (`simulate`) → trace → analysis → loss (`_target`, `_loss`) → fit (`_fit`).
Networks: synapses (`_synapse`), plasticity (`_plasticity`) and spike sources (`_sources`)
→ `_network` (populations, projections, the network ODE) → `_network_solve` (adaptive, with
`_network_events`, or fixed steps with `_exponential_euler` or `_exponential_midpoint` and
`_delivery`) → `NetworkTrace`.
"""

from importlib import metadata as _metadata

from . import plotting, presets
from ._analysis import (
    firing_rate,
    first_spike_latency,
    interspike_intervals,
    spike_count,
    spike_times,
)
from ._batch import Batching
from ._compilation_cache import default_cache_dir, use_compilation_cache
from ._fi_curve import FICurve, fi_curve, rheobase
from ._fit import FitInterrupted, FitResult, fit
from ._fit_recording import RecordingFit, fit_recording
from ._loss import (
    AbstractLoss,
    FeatureLoss,
    SmoothedTraceMSE,
    SpikeCountLoss,
    SumLoss,
    TraceMSE,
)
from ._features import soft_spike_count, spike_features, trace_features
from ._channels import (
    AbstractChannel,
    AlphaBetaChannel,
    HHPotassium,
    HHSodium,
    InfTauChannel,
    Leak,
    MCurrent,
    PospischilPotassium,
    PospischilSodium,
    hh_rates,
    q10_factor,
)
from ._membrane import (
    AbstractChannelMembrane,
    AbstractMembrane,
    ChannelMembrane,
    HodgkinHuxley,
    Pospischil,
)
from ._exponential_euler import ExponentialEuler
from ._exponential_midpoint import ExponentialMidpoint
from ._unrolled_tsit5 import UnrolledTsit5
from ._network import Network
from ._population import Population
from ._plasticity import STDP, TsodyksMarkram
from ._projection import Projection
from ._sources import AbstractSource, PoissonSource, SpikeTimes
from ._synapse import AMPA, GABAA, NMDA, AbstractSynapse, ExpSynapse, KineticSynapse
from ._simulate import simulate
from ._solve import simulate_spikes
from ._stability import stable_dtmax
from ._solve_setup import SolverError
from ._stimulus import (
    AbstractStimulus,
    Noise,
    NoStimulus,
    Pulse,
    PulseTrain,
    Ramp,
    Sampled,
    Sine,
    Step,
    Sum,
)
from ._nwb import list_sweeps
from ._recording import Recording, load_trace
from ._target import Target
from ._trace import NetworkTrace, Spikes, Trace
from ._vector_field import vector_field

try:  # the version is declared once, in pyproject.toml
    __version__ = _metadata.version("hh_jax")
except _metadata.PackageNotFoundError:  # imported from a source tree without installing
    __version__ = "0+unknown"

__all__ = [
    "Batching",
    "FitInterrupted",
    "default_cache_dir",
    "use_compilation_cache",
    "AMPA",
    "AbstractSynapse",
    "ExpSynapse",
    "ExponentialEuler",
    "ExponentialMidpoint",
    "UnrolledTsit5",
    "GABAA",
    "KineticSynapse",
    "NMDA",
    "Network",
    "NetworkTrace",
    "AbstractSource",
    "PoissonSource",
    "SpikeTimes",
    "Population",
    "Projection",
    "STDP",
    "TsodyksMarkram",
    "AbstractChannel",
    "AbstractChannelMembrane",
    "AbstractLoss",
    "AlphaBetaChannel",
    "ChannelMembrane",
    "HHPotassium",
    "HHSodium",
    "InfTauChannel",
    "Leak",
    "MCurrent",
    "Pospischil",
    "PospischilPotassium",
    "PospischilSodium",
    "AbstractMembrane",
    "AbstractStimulus",
    "FICurve",
    "FeatureLoss",
    "FitResult",
    "HodgkinHuxley",
    "Noise",
    "NoStimulus",
    "Pulse",
    "PulseTrain",
    "Ramp",
    "Recording",
    "RecordingFit",
    "Sampled",
    "Sine",
    "SmoothedTraceMSE",
    "SolverError",
    "SpikeCountLoss",
    "Spikes",
    "Step",
    "Sum",
    "SumLoss",
    "Target",
    "TraceMSE",
    "Trace",
    "fi_curve",
    "firing_rate",
    "fit",
    "fit_recording",
    "first_spike_latency",
    "hh_rates",
    "interspike_intervals",
    "list_sweeps",
    "load_trace",
    "plotting",
    "presets",
    "q10_factor",
    "rheobase",
    "simulate",
    "simulate_spikes",
    "soft_spike_count",
    "spike_features",
    "spike_count",
    "spike_times",
    "stable_dtmax",
    "trace_features",
    "vector_field",
]
