"""Networks by name: a circuit built as a torch network, or a torchvision classifier converted to a rule."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._toml import expect_number
from ..circuit import Circuit
from ..errors import ShapeError, UnknownNameError
from ..registry import is_circuit_name, list_circuits, load_circuit
from .nn.circuit_network import network_from_circuit
from .nn.convert import convert

__all__ = ["build_network", "is_torchvision_model", "list_networks"]


def is_torchvision_model(name: str | Path | Circuit) -> bool:
    """Whether ``name`` names a torchvision classifier rather than a circuit (circuits win a name clash)."""
    if isinstance(name, Circuit) or is_circuit_name(name):
        return False
    import torchvision

    return name in torchvision.models.list_models(module=torchvision.models)


def list_networks() -> list[str]:
    """Every name :func:`build_network` takes: the shipped circuits, then torchvision's classifiers."""
    import torchvision

    return list_circuits() + sorted(torchvision.models.list_models(module=torchvision.models))


def build_network(model: str | Path | Circuit, *, rule: str | None = None, overrides: Mapping[str, str] | None = None,
                  options: Mapping[str, Any] | None = None, seed: int | None = None, num_classes: int | None = None
                  ) -> nn.Module:
    """A torch network with feedback layers: a circuit (a :class:`~neurocircuit.circuit.Circuit`, the name of one in
    ``models/``, or a path) built as a :class:`neurocircuit.nn.CircuitNetwork`, or a torchvision classifier
    (``resnet18``, ``resnet50``, ...) with every Linear/Conv2d converted to ``rule`` (``overrides``: module-name
    pattern -> rule). ``rule`` None: a circuit keeps the rules it has (a named circuit file, its own default), a
    torchvision classifier gets ``bp``.

    Keyword-only, like torchvision's builders: ``build_network("mlp_digits", rule="kp", seed=0)``,
    ``build_network("resnet18", rule="kp", num_classes=10, seed=0)``. ``seed`` fixes W and B (None: torch's RNG).
    ``num_classes``: a torchvision classifier's outputs (None: 1000); a circuit's are its output population's, which
    a given ``num_classes`` must equal.
    """
    if not isinstance(model, (str, Path, Circuit)):
        raise TypeError(f"build_network: model must be a name, a path or a Circuit, got {type(model).__name__} "
                        f"{model!r}")
    if num_classes is not None:
        expect_number(num_classes, "build_network: num_classes", integer=True)
    if is_torchvision_model(model):
        import torchvision

        if seed is not None:
            torch.manual_seed(seed)
        network = torchvision.models.get_model(str(model), weights=None, num_classes=num_classes or 1000)
        convert(network, rule or "bp", overrides=dict(overrides or {}), options=dict(options or {}), seed=seed)
        return network
    if not (isinstance(model, Circuit) or is_circuit_name(model)):
        raise UnknownNameError(f"unknown model {model!r}: neither a circuit ({', '.join(list_circuits())}) nor a "
                               "torchvision classifier (e.g. resnet18, resnet50)")
    circuit = load_circuit(model, rule=rule, overrides=overrides, options=options)
    if num_classes is not None and num_classes != circuit.output.size:
        raise ShapeError(f"build_network: num_classes = {num_classes}, but circuit {circuit.name!r} has "
                         f"{circuit.output.size} output units")
    return network_from_circuit(circuit, seed=seed)
