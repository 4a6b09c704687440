"""Stimuli: injected current density I(t) in µA/cm², times in ms (one kind per module)."""

from .base import AbstractStimulus, NoStimulus, Sum
from .noise import Noise
from .rectangular import Pulse, Step
from .sampled import Sampled
from .train import PulseTrain
from .waveforms import Ramp, Sine
