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
    lr_schedule = "constant"      # or "cosine" (per step, over the engaged phase)
    ood_transforms = []           # e.g. ["rotate:30", "shift:3", "scale:0.8"], evaluated at the end
    device = "cpu"                # or "cuda", "cuda:1", ...

    [mirror]                      # MirrorSettings for every mirror step (see neurocircuit.phases)
    noise_std = 1.0

    [[phases]]                    # default: one engaged phase; an arm may give its own "phases" list
    kind = "mirror"
    steps = 200

    [[phases]]
    kind = "engaged"
    mirror_every = 1

Every key is checked; a mistyped one is an error that names it.
"""

from __future__ import annotations

import copy
import dataclasses
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
from .phases import (
    EngagedPhase,
    MirrorPhase,
    MirrorSettings,
    PrenatalPhase,
    Schedule,
    mirror_settings_from_dict,
    parse_schedule,
)
from .registry import load_model, simulation_file
from .results import attach_config

__all__ = ["RuleSpec", "TrainSettings", "Simulation", "parse_simulation", "load_simulation", "apply_settings",
           "run_simulation"]

TIME_STEP_CONVENTION = ("torch backend: one step = one optimizer update on one minibatch, the rate network "
                        "at steady state within the step; epoch = one pass over the training set")


@dataclass(frozen=True)
class RuleSpec:
    """One arm of a simulation: a rule, its label in results, per-projection overrides, options, and
    optionally its own phase schedule (else the simulation's)."""

    name: str
    label: str
    overrides: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    schedule: Schedule | None = None


@dataclass(frozen=True)
class TrainSettings:
    """Training schedule of an engaged phase."""

    epochs: int = 10
    batch_size: int = 32
    loss: str = "cross_entropy"
    record_every: int | str = "epoch"
    alignment_samples: int = 256
    lr_schedule: str = "constant"
    ood_transforms: tuple[str, ...] = ()
    device: str = "cpu"


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
    schedule: Schedule = Schedule((EngagedPhase(),))
    mirror: MirrorSettings = MirrorSettings()
    description: str = ""
    source: str = "<dict>"

    def schedule_for(self, spec: RuleSpec) -> Schedule:
        """The phases that arm ``spec`` runs."""
        return spec.schedule or self.schedule

    def circuit(self, spec: RuleSpec) -> Circuit:
        """The model circuit with the rules of ``spec``."""
        return load_model(self.model, rule=spec.name, overrides=spec.overrides, options=spec.options)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (stored as JSON in the results' ``config`` attribute)."""
        return asdict(self)


_TOP_KEYS = ("name", "description", "model", "rules", "seeds", "data", "optimizer", "train", "mirror", "phases")


def parse_simulation(raw: Mapping[str, Any], *, source: str = "<dict>") -> Simulation:
    """Validate the dict form of a simulation file and build a :class:`Simulation`."""
    where = source
    check_keys(raw, _TOP_KEYS, where)
    for key in ("model", "rules"):
        if key not in raw:
            raise ConfigError(f"{where}: missing key {key!r}")
    model = expect(raw["model"], str, f"{where}: model")
    mirror = mirror_settings_from_dict(expect(raw.get("mirror", {}), dict, f"{where}: mirror"), f"{where}: mirror")
    schedule = (parse_schedule(raw["phases"], mirror=mirror, where=f"{where}: phases") if "phases" in raw
                else Schedule((EngagedPhase(),)))
    rules = []
    for i, entry in enumerate(expect(raw["rules"], list, f"{where}: rules")):
        w = f"{where}: rules[{i}]"
        if isinstance(entry, str):
            entry = {"name": entry}
        expect(entry, dict, w)
        check_keys(entry, ("name", "label", "overrides", "options", "phases"), w)
        if "name" not in entry:
            raise ConfigError(f"{w}: missing key 'name'")
        name = expect(entry["name"], str, f"{w}: name")
        own = (parse_schedule(entry["phases"], mirror=mirror, where=f"{w}: phases") if "phases" in entry
               else None)
        rules.append(RuleSpec(name, expect(entry.get("label", name), str, f"{w}: label"),
                              dict(expect(entry.get("overrides", {}), dict, f"{w}: overrides")),
                              dict(expect(entry.get("options", {}), dict, f"{w}: options")), own))
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
    train = TrainSettings(**{**train_raw, "ood_transforms": tuple(expect(train_raw.get("ood_transforms", []), list,
                                                                          f"{where}: train.ood_transforms"))})
    expect(train.epochs, int, f"{where}: train.epochs")
    expect(train.batch_size, int, f"{where}: train.batch_size")
    if train.lr_schedule not in ("constant", "cosine"):
        raise ConfigError(f"{where}: train.lr_schedule must be 'constant' or 'cosine', got {train.lr_schedule!r}")
    from .data import parse_transform

    expect(train.device, str, f"{where}: train.device")
    for spec_text in train.ood_transforms:
        parse_transform(expect(spec_text, str, f"{where}: train.ood_transforms"))
    sim = Simulation(expect(raw.get("name", Path(source).stem), str, f"{where}: name"), model, tuple(rules),
                     tuple(seeds), data, optimizer, train, schedule, mirror, str(raw.get("description", "")),
                     source)
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


def load_simulation(name: str | Path, settings: Iterable[str] = (), only: Iterable[str] | None = None) -> Simulation:
    """Read a simulation by name (from ``simulations/``) or path, applying ``key=value`` settings, and keeping
    only the arms whose labels are in ``only`` (if given)."""
    path = simulation_file(name)
    source = str(name) if str(name).endswith(".toml") else f"simulation {name!r}"
    raw = read_toml(path)
    if raw.get("kind") == "sweep":
        raise ConfigError(f"{source} is a sweep: run it with 'neurocircuit sweep {name} --out DIR'")
    if raw.get("kind") == "brian2":
        raise ConfigError(f"{source} is a Brian2 simulation: load it with neurocircuit.brian.simulation")
    if raw.get("kind") == "deep":
        raise ConfigError(f"{source} is a deep-network simulation: run it with 'neurocircuit train {name}'")
    sim = parse_simulation(apply_settings(raw, settings), source=source)
    if only is not None:
        wanted = list(only)
        labels = [r.label for r in sim.rules]
        unknown = [w for w in wanted if w not in labels]
        if unknown:
            raise ConfigError(f"--only: no arm labelled {unknown[0]!r} (arms: {', '.join(labels)})")
        sim = dataclasses.replace(sim, rules=tuple(r for r in sim.rules if r.label in wanted))
    return sim


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


def run_arm(sim: Simulation, spec: RuleSpec, seed: int, data: tuple[Any, Any, DatasetInfo], *,
            progress: bool | None = None) -> xr.Dataset:
    """Run one arm (rule ``spec``, one ``seed``) through its phases and return its results."""
    import torch
    from torch.utils.data import DataLoader

    from .data import transform_images
    from .nn.build import build_network
    from .train import LOSSES, evaluate, fit, make_optimizer, run_mirror_phase, run_prenatal_phase

    train_set, test_set, info = data
    circuit = sim.circuit(spec)
    _check_data_fits(circuit, info)
    try:
        device = torch.device(sim.train.device)
    except RuntimeError:
        raise ConfigError(f"train.device: unknown device {sim.train.device!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {sim.train.device!r} but torch sees no CUDA device here")
    model = build_network(circuit, seed=seed).to(device)
    settings = {k: v for k, v in sim.optimizer.items() if k != "name"}
    parts = []
    # Separate generators per purpose, so adding a phase does not change the others' noise.
    mirror_gen = torch.Generator().manual_seed(10_000 + seed)
    prenatal_gen = torch.Generator().manual_seed(20_000 + seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # for rules that draw during training (brsf)
        for phase in sim.schedule_for(spec).phases:
            label = f"{spec.label} seed {seed} {phase.name}"
            if isinstance(phase, PrenatalPhase):
                lr = {"lr": phase.learning_rate} if phase.learning_rate is not None else {}
                optimizer = make_optimizer(model.parameters(), sim.optimizer["name"], **{**settings, **lr})
                parts.append(run_prenatal_phase(model, phase, input_shape=info.input_shape, n_classes=info.n_outputs,
                                                optimizer=optimizer, generator=prenatal_gen, progress=progress))
            elif isinstance(phase, MirrorPhase):
                parts.append(run_mirror_phase(model, phase, generator=mirror_gen))
            else:
                optimizer = make_optimizer(model.parameters(), sim.optimizer["name"], **settings)
                epochs = sim.train.epochs if phase.epochs is None else phase.epochs
                parts.append(fit(model, train_set, test_set, optimizer=optimizer, epochs=epochs,
                                 batch_size=sim.train.batch_size, loss=sim.train.loss, seed=seed,
                                 record_every=sim.train.record_every, alignment_samples=sim.train.alignment_samples,
                                 progress=progress, description=label, mirror=sim.mirror,
                                 mirror_every=phase.mirror_every, mirror_steps=phase.mirror_steps,
                                 mirror_generator=mirror_gen, mirror_follows_lr=phase.mirror_follows_lr,
                                 lr_schedule=sim.train.lr_schedule))
    if sim.train.ood_transforms:
        accuracies = [evaluate(model, DataLoader(transform_images(test_set, t), batch_size=512),
                               LOSSES[sim.train.loss])[1] for t in sim.train.ood_transforms]
        parts.append(xr.Dataset({"ood_accuracy": ("transform", accuracies, {"units": "1"})},
                                coords={"transform": list(sim.train.ood_transforms)}))
    ds = xr.merge(parts, compat="override", join="outer", combine_attrs="override")
    # Per-arm coordinates that differ between arms become variables, so arms can be stacked.
    return ds.reset_coords([c for c in ("layer_rule",) if c in ds.coords])


def run_simulation(sim: Simulation, *, progress: bool | None = None) -> xr.Dataset:
    """Run every arm of ``sim`` for every seed and return the results.

    Dims: ``rule`` (arm labels), ``seed``, ``step`` (engaged training), ``layer``, and ``<phase>_step`` for
    mirror and prenatal phases, ``transform`` for OOD accuracies. Variables an arm does not have are NaN there.
    """
    data_options = {k: v for k, v in sim.data.items() if k != "name"}
    data = load_dataset(sim.data["name"], **data_options)
    arms = []
    for spec in sim.rules:
        for seed in sim.seeds:
            ds = run_arm(sim, spec, seed, data, progress=progress)
            arms.append(ds.expand_dims(rule=[spec.label], seed=[seed]))
    results = xr.merge(arms, compat="no_conflicts", join="outer", combine_attrs="override")
    results = results.reindex(rule=[r.label for r in sim.rules], seed=list(sim.seeds))
    if "layer_rule" in results:
        results = results.set_coords("layer_rule")
    from . import __version__

    return attach_config(results, sim.to_dict(), simulation=sim.name, model=sim.model, dataset=data[2].name,
                         backend="torch", time_step_convention=TIME_STEP_CONVENTION,
                         neurocircuit_version=__version__, python=sys.version.split()[0])
