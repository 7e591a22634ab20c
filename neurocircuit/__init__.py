"""neurocircuit: learning without weight transport.

One circuit description (:mod:`neurocircuit.circuit`), feedback rules described once (:mod:`neurocircuit.rules`),
one simulation schema (:mod:`neurocircuit.simulation`) and backends that run it (:mod:`neurocircuit.backends`):
the torch rate backend (:mod:`neurocircuit.torch`; its rule layers are public as :mod:`neurocircuit.nn`) and the
Brian2 backend (:mod:`neurocircuit.brian`). Importing the package imports neither torch nor Brian2; the torch-side
names (``build_network``, ``get_rule``, ``register_rule``, ``FeedbackRule``) load torch when first used.

Running: :func:`run` (``nc.run("default", model=my_circuit, arms=["kp"], overrides={"train.epochs": 1})``) runs a
simulation from Python and returns its results as an :class:`xarray.Dataset` (docs/tutorial.md).

Vocabulary: a *circuit* is loaded (:func:`load_circuit`, :func:`list_circuits`: the files of ``models/``); a
*network* is built (:func:`build_network`: a circuit, or a torchvision classifier, as a torch module).
"""

import warnings
from typing import Any

from ._version import __version__
from .circuit import Circuit, Feedback, Population, Projection, circuit_from_dict, load_circuit_file
from .errors import ConfigError, DataError, NeurocircuitError, ShapeError, UnknownNameError
from .registry import list_circuits, list_simulations, load_circuit
from .rules import RuleDescription, describe_rule, list_rules

__all__ = [
    "__version__",
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
    "build_network",
    "list_circuits",
    "list_simulations",
    "load_circuit",
    "RuleDescription",
    "describe_rule",
    "list_rules",
    "FeedbackRule",
    "get_rule",
    "register_rule",
    "run",
]

#: Names whose implementation needs torch, imported on first use (so `import neurocircuit` stays torch-free).
_RULES = "neurocircuit.torch.nn.feedback_rules"
_TORCH_NAMES = {"FeedbackRule": _RULES, "get_rule": _RULES,
                "register_rule": _RULES, "build_network": "neurocircuit.torch.networks"}
#: Old names, kept for one release: each warns and returns its new name.
#: Names whose module imports xarray (and the backends' interface): loaded on first use too.
_LAZY = {"run": "neurocircuit.api"}
_DEPRECATED = {"get_model": "build_network", "load_model": "load_circuit", "list_models": "list_circuits"}


def __getattr__(name: str) -> Any:
    import importlib

    if name in _DEPRECATED:
        new = _DEPRECATED[name]
        warnings.warn(f"neurocircuit.{name} is deprecated: use neurocircuit.{new} (a circuit is loaded, a network "
                      "is built)", DeprecationWarning, stacklevel=2)
        return globals()[new] if new in globals() else __getattr__(new)
    if name in _TORCH_NAMES or name in _LAZY:
        return getattr(importlib.import_module({**_TORCH_NAMES, **_LAZY}[name]), name)
    if name in ("nn", "torch"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
