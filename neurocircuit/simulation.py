"""Simulation files: which circuit, which rules, which data, optimizer and training schedule.

A simulation is a TOML file (see ``simulations/``)::

    name = "default"
    model = "mlp_digits"          # a name from models/ or a path to a circuit file
    rules = ["bp", "fa", "kp"]    # or [[rules]] tables: name, label, overrides, options
    seeds = [0, 1, 2]

    [data]
    name = "digits"               # plus loader options, e.g. test_fraction = 0.25

    [optimizer]
    name = "sgd"                  # plus its settings: lr, momentum, weight_decay, ...
    lr = 0.05

    [train]
    epochs = 20
    batch_size = 32
    loss = "cross_entropy"
    record_every = "epoch"        # or a number of steps
    alignment_samples = 256

Every key is checked; a mistyped one is an error that names it.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import xarray as xr

from ._toml import check_keys, expect, read_toml, tomllib
from .circuit import Circuit
from .data import DatasetInfo, list_datasets, load_dataset
from .errors import ConfigError, ShapeError, UnknownNameError
from .registry import load_model, simulation_file
from .results import attach_config

__all__ = ["RuleSpec", "TrainSettings", "Simulation", "parse_simulation", "load_simulation", "apply_settings",
           "run_simulation"]

TIME_STEP_CONVENTION = ("torch backend: one step = one optimizer update on one minibatch, the rate network "
                        "at steady state within the step; epoch = one pass over the training set")


@dataclass(frozen=True)
class RuleSpec:
    """One arm of a simulation: a rule, its label in results, per-projection overrides and options."""

    name: str
    label: str
    overrides: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainSettings:
    """Training schedule of an engaged phase."""

    epochs: int = 10
    batch_size: int = 32
    loss: str = "cross_entropy"
    record_every: int | str = "epoch"
    alignment_samples: int = 256


@dataclass(frozen=True)
class Simulation:
    """A parsed, validated simulation file."""

    name: str
    model: str
    rules: tuple[RuleSpec, ...]
    seeds: tuple[int, ...]
    data: Mapping[str, Any]
    optimizer: Mapping[str, Any]
    train: TrainSettings
    description: str = ""
    source: str = "<dict>"

    def circuit(self, spec: RuleSpec) -> Circuit:
        """The model circuit with the rules of ``spec``."""
        return load_model(self.model, rule=spec.name, overrides=spec.overrides, options=spec.options)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (stored as JSON in the results' ``config`` attribute)."""
        return asdict(self)


_TOP_KEYS = ("name", "description", "model", "rules", "seeds", "data", "optimizer", "train")


def parse_simulation(raw: Mapping[str, Any], *, source: str = "<dict>") -> Simulation:
    """Validate the dict form of a simulation file and build a :class:`Simulation`."""
    where = source
    check_keys(raw, _TOP_KEYS, where)
    for key in ("model", "rules"):
        if key not in raw:
            raise ConfigError(f"{where}: missing key {key!r}")
    model = expect(raw["model"], str, f"{where}: model")
    rules = []
    for i, entry in enumerate(expect(raw["rules"], list, f"{where}: rules")):
        w = f"{where}: rules[{i}]"
        if isinstance(entry, str):
            entry = {"name": entry}
        expect(entry, dict, w)
        check_keys(entry, ("name", "label", "overrides", "options"), w)
        if "name" not in entry:
            raise ConfigError(f"{w}: missing key 'name'")
        name = expect(entry["name"], str, f"{w}: name")
        rules.append(RuleSpec(name, expect(entry.get("label", name), str, f"{w}: label"),
                              dict(expect(entry.get("overrides", {}), dict, f"{w}: overrides")),
                              dict(expect(entry.get("options", {}), dict, f"{w}: options"))))
    if not rules:
        raise ConfigError(f"{where}: rules is empty")
    labels = [r.label for r in rules]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{where}: rule labels must be unique, got {labels} (give each a 'label')")
    seeds = raw.get("seeds", [0])
    seeds = [seeds] if isinstance(seeds, int) and not isinstance(seeds, bool) else seeds
    for s in expect(seeds, list, f"{where}: seeds"):
        expect(s, int, f"{where}: seeds")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where}: seeds must be a non-empty list of distinct ints, got {seeds}")
    data = dict(expect(raw.get("data", {"name": "digits"}), dict, f"{where}: data"))
    if data.get("name") not in list_datasets():
        raise UnknownNameError(f"{where}: data.name: unknown dataset {data.get('name')!r} "
                               f"(known: {', '.join(list_datasets())})")
    optimizer = dict(expect(raw.get("optimizer", {"name": "sgd", "lr": 0.01}), dict, f"{where}: optimizer"))
    optimizer.setdefault("name", "sgd")
    train_raw = expect(raw.get("train", {}), dict, f"{where}: train")
    check_keys(train_raw, TrainSettings.__dataclass_fields__, f"{where}: train")
    train = TrainSettings(**train_raw)
    expect(train.epochs, int, f"{where}: train.epochs")
    expect(train.batch_size, int, f"{where}: train.batch_size")
    sim = Simulation(expect(raw.get("name", Path(source).stem), str, f"{where}: name"), model, tuple(rules),
                     tuple(seeds), data, optimizer, train, str(raw.get("description", "")), source)
    # Build every circuit now, so unknown models, rules, options and overrides fail before any training.
    from .train import LOSSES, make_optimizer  # torch-heavy; imported late on purpose

    for spec in sim.rules:
        try:
            sim.circuit(spec)
        except (ConfigError, UnknownNameError, ShapeError) as exc:
            raise type(exc)(f"{where}: rules[{spec.label!r}]: {exc}") from None
    if train.loss not in LOSSES:
        raise ConfigError(f"{where}: train.loss: unknown loss {train.loss!r} (known: {', '.join(LOSSES)})")
    import torch

    settings = {k: v for k, v in optimizer.items() if k != "name"}
    try:
        make_optimizer([torch.zeros(1, requires_grad=True)], optimizer["name"], **settings)
    except ConfigError as exc:
        raise ConfigError(f"{where}: optimizer: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: optimizer: {exc}") from None
    return sim


def apply_settings(raw: dict[str, Any], settings: Iterable[str]) -> dict[str, Any]:
    """A copy of ``raw`` with ``key.sub=value`` settings applied (values parsed as TOML, else strings)."""
    out = copy.deepcopy(raw)
    for item in settings:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        table = out
        parts = key.split(".")
        for part in parts[:-1]:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a table")
        table[parts[-1]] = value
    return out


def load_simulation(name: str | Path, settings: Iterable[str] = ()) -> Simulation:
    """Read a simulation by name (from ``simulations/``) or path, applying ``key=value`` settings."""
    path = simulation_file(name)
    source = str(name) if str(name).endswith(".toml") else f"simulation {name!r}"
    return parse_simulation(apply_settings(read_toml(path), settings), source=source)


def _check_data_fits(circuit: Circuit, info: DatasetInfo) -> None:
    size = 1
    for s in info.input_shape:
        size *= s
    if size != circuit.input.size:
        raise ShapeError(f"dataset {info.name!r} has inputs of shape {info.input_shape}, but model "
                         f"{circuit.name!r} expects {circuit.input.shape}")
    if info.n_outputs != circuit.output.size:
        raise ShapeError(f"dataset {info.name!r} has {info.n_outputs} outputs, but model {circuit.name!r} "
                         f"has {circuit.output.size} output units")


def run_simulation(sim: Simulation, *, progress: bool | None = None) -> xr.Dataset:
    """Train every rule of ``sim`` for every seed and return the results (dims rule, seed, step, layer)."""
    import torch

    from .nn.build import build_network
    from .train import fit, make_optimizer

    data_options = {k: v for k, v in sim.data.items() if k != "name"}
    train_set, test_set, info = load_dataset(sim.data["name"], **data_options)
    per_rule = []
    for spec in sim.rules:
        circuit = sim.circuit(spec)
        _check_data_fits(circuit, info)
        per_seed = []
        for seed in sim.seeds:
            model = build_network(circuit, seed=seed)
            settings = {k: v for k, v in sim.optimizer.items() if k != "name"}
            optimizer = make_optimizer(model.parameters(), sim.optimizer["name"], **settings)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)  # for rules that draw during training (brsf)
                ds = fit(model, train_set, test_set, optimizer=optimizer, epochs=sim.train.epochs,
                         batch_size=sim.train.batch_size, loss=sim.train.loss, seed=seed,
                         record_every=sim.train.record_every, alignment_samples=sim.train.alignment_samples,
                         progress=progress, description=f"{spec.label} seed {seed}")
            per_seed.append(ds)
        per_rule.append(xr.concat(per_seed, dim="seed", coords="different", compat="equals",
                                  join="outer").assign_coords(seed=list(sim.seeds)))
    results = xr.concat(per_rule, dim="rule", coords="different", compat="equals", join="outer")
    results = results.assign_coords(rule=[r.label for r in sim.rules])
    from . import __version__

    return attach_config(results, sim.to_dict(), simulation=sim.name, model=sim.model, dataset=info.name,
                         backend="torch", time_step_convention=TIME_STEP_CONVENTION,
                         neurocircuit_version=__version__, python=sys.version.split()[0])
