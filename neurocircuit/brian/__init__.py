"""The Brian2 backend: circuits as explicit rate (or spiking) neuron populations and plastic synapses.

See ``docs/brian2.md``.
"""

from .network import BRIAN_RULES, RateCircuit, brian_device
from .parameters import RateParameters, SpikingParameters, parameters_from_dict, parse_quantity
from .protocol import Protocol, build_protocol

__all__ = ["BRIAN_RULES", "RateCircuit", "brian_device", "RateParameters", "SpikingParameters",
           "parameters_from_dict", "parse_quantity", "Protocol", "build_protocol"]
