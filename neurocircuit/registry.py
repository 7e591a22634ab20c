"""Named circuit and simulation files: the TOML files of ``models/`` and ``simulations/``.

Names resolve to the files installed with the package; anything that looks like a path (it ends in
``.toml`` or contains a path separator) is read from disk instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from ._toml import read_toml
from .circuit import Circuit, circuit_from_dict
from .errors import ConfigError, UnknownNameError

__all__ = ["list_circuits", "load_circuit", "list_simulations", "simulation_file", "is_circuit_name"]


def _folder(package: str) -> Path:
    """Where the TOML files of ``neurocircuit.models`` / ``neurocircuit.simulations`` are.

    Installed, they are subpackages; in a source checkout (e.g. tests run from the repository root, where the
    checkout shadows the installed package) they are the top-level ``models/`` and ``simulations/`` folders.
    """
    try:
        return Path(str(resources.files(package)))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / package.rpartition(".")[2]


def _names(package: str) -> list[str]:
    return sorted(p.name[:-5] for p in _folder(package).iterdir() if p.name.endswith(".toml"))


def _is_path(name: str) -> bool:
    return name.endswith(".toml") or "/" in name or "\\" in name


def _resolve(name: str | Path, package: str, what: str) -> Path:
    if not isinstance(name, (str, Path)):
        raise TypeError(f"{what} must be a name or a path, got {type(name).__name__} {name!r}")
    if isinstance(name, Path) or _is_path(name):
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"{what} file not found: {path}")
        return path
    if name not in _names(package):
        raise UnknownNameError(f"unknown {what} {name!r} (known: {', '.join(_names(package))})")
    return _folder(package) / f"{name}.toml"


def list_circuits() -> list[str]:
    """Names of the circuits shipped in ``models/``."""
    return _names("neurocircuit.models")


def list_simulations() -> list[str]:
    """Names of the simulations shipped in ``simulations/``."""
    return _names("neurocircuit.simulations")


def simulation_file(name: str | Path) -> Path:
    """Path of a simulation given by name or path."""
    return _resolve(name, "neurocircuit.simulations", "simulation")


def is_circuit_name(name: str | Path) -> bool:
    """Whether ``name`` is a path or the name of a shipped circuit (anything else may name a torchvision network)."""
    return isinstance(name, Path) or _is_path(name) or name in list_circuits()


def load_circuit(name: str | Path | Circuit | Mapping[str, Any], *, rule: str | None = None,
                 overrides: Mapping[str, str] | None = None, options: Mapping[str, Any] | None = None) -> Circuit:
    """The :class:`Circuit` called ``name`` (or read from a path, or given, or built from its table: the dict form of
    :meth:`Circuit.to_dict`), optionally with ``rule`` everywhere except the projections named in ``overrides``."""
    if isinstance(name, Circuit):
        circuit = name
    elif isinstance(name, Mapping):
        circuit = circuit_from_dict(name, where=f"circuit table {str(name.get('name', ''))!r}")
    else:
        path = _resolve(name, "neurocircuit.models", "model")
        circuit = circuit_from_dict(read_toml(path), where=str(path) if _is_path(str(name)) else f"model {name!r}")
    if rule is not None:
        circuit = circuit.with_rules(rule, overrides, options)
    elif overrides:
        circuit = circuit.with_rules(circuit.default_rule, overrides)
    return circuit
