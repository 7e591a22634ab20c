"""Brian2 simulation files (``kind = "brian2"``): parse, run every arm, return one results Dataset.

::

    kind = "brian2"
    model = "mlp_digits"          # a dense circuit
    rules = ["fa", "kp", "wm"]    # arms: names, or tables {name, label, phases}
    seeds = [0]
    variant = "rate"              # or "spiking" (mirror phases only)
    data = { name = "digits" }    # for engaged phases
    [[phases]]                    # the schedule (see neurocircuit.phases); steps = presentation windows
    kind = "mirror"
    steps = 200
    [brian2]                      # RateParameters, values with units: tau = "2 ms", eta_w = "5 Hz"
    [brian2.spiking]              # SpikingParameters

Results follow the package convention: dims ``rule``, ``seed``, ``layer``; ``weight_angle`` and ``norm_ratio`` over
``weight_time`` (s); sampled activity ``<population>_y`` / ``<population>_delta`` over ``time`` (s) and
``<population>_neuron``; ``phase`` labels as coordinates on both times; ``test_accuracy`` / ``test_loss`` over
``step`` (training presentations done) with an ``epoch`` coordinate.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .._toml import check_keys, expect, read_toml
from ..circuit import Circuit
from ..errors import ConfigError
from ..phases import EngagedPhase, MirrorSettings, Schedule, parse_schedule
from ..registry import load_model, simulation_file
from ..results import attach_config
from ..simulation import apply_settings
from .parameters import RateParameters, SpikingParameters, parameters_from_dict

__all__ = ["BrianArm", "BrianSimulation", "parse_brian_simulation", "load_brian_simulation", "run_brian_simulation",
           "initial_weights"]

VARIANTS = ("rate", "spiking")
_TOP = ("kind", "name", "description", "model", "rules", "seeds", "variant", "data", "phases", "brian2")


@dataclass(frozen=True)
class BrianArm:
    name: str
    label: str
    schedule: Schedule | None = None


@dataclass(frozen=True)
class BrianSimulation:
    name: str
    model: str
    arms: tuple[BrianArm, ...]
    seeds: tuple[int, ...]
    schedule: Schedule
    params: RateParameters
    spiking: SpikingParameters
    variant: str = "rate"
    data: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)

    def schedule_for(self, arm: BrianArm) -> Schedule:
        return arm.schedule or self.schedule

    def circuit(self, arm: BrianArm) -> Circuit:
        return load_model(self.model, rule=arm.name)


def parse_brian_simulation(raw: Mapping[str, Any], *, source: str = "<dict>") -> BrianSimulation:
    """Validate a ``kind = "brian2"`` simulation table; everything is checked before anything runs."""
    from .network import BRIAN_RULES

    check_keys(raw, _TOP, source)
    if raw.get("kind") != "brian2":
        raise ConfigError(f"{source}: not a Brian2 simulation (it needs kind = \"brian2\")")
    model = expect(raw.get("model", "mlp_digits"), str, f"{source}: model")
    circuit = load_model(model)
    for proj in circuit.projections:
        if proj.kind != "dense":
            raise ConfigError(f"{source}: model {model!r} has a {proj.kind} projection ({proj.name!r}); the Brian2 "
                              "backend runs dense circuits")
    params, spiking = parameters_from_dict(expect(raw.get("brian2", {}), dict, f"{source}: brian2"),
                                           f"{source}: brian2")
    schedule = parse_schedule(raw.get("phases", [{"kind": "mirror"}]), mirror=MirrorSettings(),
                              where=f"{source}: phases")
    arms = []
    for i, item in enumerate(expect(raw.get("rules", ["wm"]), list, f"{source}: rules")):
        where = f"{source}: rules[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        expect(item, dict, where)
        check_keys(item, ("name", "label", "phases"), where)
        name = expect(item.get("name"), str, f"{where}: name")
        if name not in BRIAN_RULES:
            raise ConfigError(f"{where}: rule {name!r} is not available in the Brian2 backend "
                              f"(available: {', '.join(BRIAN_RULES)})")
        arm_schedule = parse_schedule(item["phases"], where=f"{where}: phases") if "phases" in item else None
        arms.append(BrianArm(name, str(item.get("label", name)), arm_schedule))
    labels = [a.label for a in arms]
    if len(set(labels)) != len(labels) or not arms:
        raise ConfigError(f"{source}: rules need distinct labels, got {labels}")
    seeds = tuple(expect(s, int, f"{source}: seeds") for s in expect(raw.get("seeds", [0]), list, f"{source}: seeds"))
    variant = raw.get("variant", "rate")
    if variant not in VARIANTS:
        raise ConfigError(f"{source}: variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    sim = BrianSimulation(str(raw.get("name", source)), model, tuple(arms), seeds, schedule, params, spiking, variant,
                          expect(raw.get("data", {}), dict, f"{source}: data"), str(raw.get("description", "")),
                          copy.deepcopy(dict(raw)))
    for arm in arms:
        phases = sim.schedule_for(arm).phases
        if any(isinstance(p, EngagedPhase) for p in phases) and not sim.data:
            raise ConfigError(f"{source}: arm {arm.label!r} has an engaged phase but there is no [data] table")
        if variant == "spiking" and any(p.kind != "mirror" for p in phases):
            raise ConfigError(f"{source}: the spiking variant runs mirror phases only (arm {arm.label!r})")
    return sim


def load_brian_simulation(name: str | Path, settings: Iterable[str] = (), only: Iterable[str] | None = None
                          ) -> BrianSimulation:
    raw = read_toml(simulation_file(name))
    sim = parse_brian_simulation(apply_settings(raw, settings), source=f"simulation {str(name)!r}")
    if only is not None:
        wanted = list(only)
        unknown = [w for w in wanted if w not in [a.label for a in sim.arms]]
        if unknown:
            raise ConfigError(f"--only: no arm labelled {unknown[0]!r} (arms: {', '.join(a.label for a in sim.arms)})")
        sim = dataclasses.replace(sim, arms=tuple(a for a in sim.arms if a.label in wanted))
    return sim


def initial_weights(circuit: Circuit, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """W, b and B of every projection, drawn exactly as the torch backend draws them for ``seed``."""
    from ..nn.build import build_network

    net = build_network(circuit, seed=seed).double()
    out = {}
    for proj in circuit.projections:
        layer = getattr(net, proj.name)
        out[proj.name] = (layer.weight.detach().numpy().copy(), layer.bias.detach().numpy().copy(),
                          layer.current_feedback().detach().numpy().copy())
    return out


def _data(sim: BrianSimulation) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None:
    if not sim.data:
        return None
    from ..data import load_dataset

    options = {k: v for k, v in sim.data.items() if k != "name"}
    train, test, info = load_dataset(str(sim.data.get("name")), **options)
    if info.task != "classification":
        raise ConfigError(f"data {info.name!r}: the Brian2 backend learns classification tasks")
    return ((train.tensors[0].numpy().reshape(len(train), -1).astype(float), train.tensors[1].numpy()),
            (test.tensors[0].numpy().reshape(len(test), -1).astype(float), test.tensors[1].numpy()))


def run_arm(sim: BrianSimulation, arm: BrianArm, seed: int, data: Any = None) -> xr.Dataset:
    """One arm and seed, as a Dataset without the ``rule``/``seed`` dims."""
    from .network import RateCircuit, brian_device
    from .protocol import build_protocol
    from .record import rate_results

    circuit = sim.circuit(arm)
    phases = sim.schedule_for(arm).phases
    protocol = build_protocol(phases, n_in=circuit.input.size, n_out=circuit.output.size,
                              train=data[0] if data else None, test=data[1] if data else None, seed=seed)
    params = RateParameters(**{**sim.params.__dict__, "seed": seed})
    if sim.variant == "spiking":
        from .spiking import SpikingMirror

        with brian_device(params):
            net = SpikingMirror(circuit, initial_weights(circuit, seed), params, sim.spiking, protocol)
            net.run()
            _check_finite(net, arm.label, seed)
            return net.results()
    with brian_device(params):
        net = RateCircuit(circuit, initial_weights(circuit, seed), params, protocol)
        net.run()
        _check_finite(net, arm.label, seed)
        return rate_results(net)


def _check_finite(net: Any, label: str, seed: int) -> None:
    for name in net.forward_synapses:
        w, b = net.matrices(name)
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise FloatingPointError(f"arm {label!r}, seed {seed}: the synapses of {name!r} diverged (NaN/inf) by "
                                     f"t = {net.network.t}; lower brian2.eta_w or the input scale")


def run_brian_simulation(sim: BrianSimulation) -> xr.Dataset:
    """Every arm and seed, merged along ``rule`` and ``seed``."""
    data = _data(sim) if any(isinstance(p, EngagedPhase) for a in sim.arms for p in sim.schedule_for(a).phases) \
        else None
    parts = []
    for arm in sim.arms:
        # Phase labels become variables, so arms with different schedules merge (missing times get "").
        per_seed = [run_arm(sim, arm, seed, data).reset_coords(["weight_phase", "phase", "layer_rule"])
                    .expand_dims(seed=[seed]) for seed in sim.seeds]
        parts.append(xr.concat(per_seed, dim="seed", join="outer").expand_dims(rule=[arm.label]))
    ds = xr.merge(parts, combine_attrs="override", join="outer", compat="no_conflicts")
    for name in ("weight_phase", "phase", "layer_rule"):
        ds[name] = ds[name].fillna("").astype(str)
    return attach_config(ds, dict(sim.raw), simulation=sim.name, backend="brian2", variant=sim.variant,
                         parameters=str(sim.params.to_dict()), model=sim.model,
                         time_convention="brian2 backend: simulated time in seconds; one step = one presentation "
                                         f"window of {sim.params.presentation}")
