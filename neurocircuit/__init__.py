"""neurocircuit: learning without weight transport.

One circuit description (:mod:`neurocircuit.circuit`), feedback rules (:mod:`neurocircuit.rules`) and a
torch rate backend (:mod:`neurocircuit.nn`) that runs circuits and converts any torch network.
"""

from .circuit import Circuit, Feedback, Population, Projection, circuit_from_dict, load_circuit_file
from .errors import ConfigError, DataError, NeurocircuitError, ShapeError, UnknownNameError
from .registry import get_model, list_models, list_simulations, load_model
from .rules import FeedbackRule, get_rule, list_rules, register_rule

__version__ = "0.1.0"

__all__ = [
    "Circuit",
    "Feedback",
    "Population",
    "Projection",
    "circuit_from_dict",
    "load_circuit_file",
    "ConfigError",
    "DataError",
    "NeurocircuitError",
    "ShapeError",
    "UnknownNameError",
    "get_model",
    "list_models",
    "list_simulations",
    "load_model",
    "FeedbackRule",
    "get_rule",
    "list_rules",
    "register_rule",
]
