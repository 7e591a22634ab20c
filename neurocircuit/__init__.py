"""neurocircuit: learning without weight transport.

One circuit description (:mod:`neurocircuit.circuit`), feedback rules described once (:mod:`neurocircuit.rules`),
one simulation schema (:mod:`neurocircuit.simulation`) and backends that run it (:mod:`neurocircuit.backends`):
the torch rate backend (:mod:`neurocircuit.nn`, :mod:`neurocircuit.train`) and the Brian2 backend
(:mod:`neurocircuit.brian`). Importing the package imports neither torch nor Brian2; the torch-side names
(``get_model``, ``get_rule``, ``register_rule``, ``FeedbackRule``) load torch when first used.
"""

from typing import Any

from .circuit import Circuit, Feedback, Population, Projection, circuit_from_dict, load_circuit_file
from .errors import ConfigError, DataError, NeurocircuitError, ShapeError, UnknownNameError
from .registry import get_model, list_models, list_simulations, load_model
from .rules import RuleDescription, describe_rule, list_rules

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
    "RuleDescription",
    "describe_rule",
    "list_rules",
    "FeedbackRule",
    "get_rule",
    "register_rule",
]

_TORCH_NAMES = ("FeedbackRule", "get_rule", "register_rule")


def __getattr__(name: str) -> Any:
    # The torch implementation of the rules is imported on first use, so `import neurocircuit` stays torch-free.
    if name in _TORCH_NAMES:
        from .nn import rules

        return getattr(rules, name)
    if name == "nn":
        import importlib

        return importlib.import_module(".nn", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
