"""The torch backend: a simulation's model (a circuit, or a torchvision classifier converted to the arm's rules) run
by the one trainer (:class:`neurocircuit.torch.trainer.Trainer`) through the arm's phases.

It honours every key of the schema except the ``[brian2]`` section, and implements every rule registered in
:mod:`neurocircuit.torch.nn.feedback_rules`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import xarray as xr

from ..backends import Backend, register_backend
from ..errors import ConfigError, ShapeError, UnknownNameError
from ..limits import MAX_TRAINING_STEPS, check_count, check_data_fits, check_memory, torch_memory
from ..registry import load_circuit
from ..simulation import ARM_KEYS, TOP_KEYS, Simulation, TrainSettings
from .settings import TorchSettings, torch_settings

__all__ = ["TorchBackend"]


def _fields(cls: type) -> frozenset[str]:
    import dataclasses

    return frozenset(f.name for f in dataclasses.fields(cls))


def _phase_keys(kind: str) -> frozenset[str]:
    import dataclasses

    from ..phases import EngagedPhase, MirrorPhase, MirrorSettings, PrenatalPhase

    cls = {"engaged": EngagedPhase, "mirror": MirrorPhase, "prenatal": PrenatalPhase}[kind]
    own = {f.name for f in dataclasses.fields(cls) if f.init and f.name != "settings"}
    return frozenset(own | (_fields(MirrorSettings) if kind == "mirror" else set()))


@register_backend
class TorchBackend(Backend):
    """Rate networks at steady state, trained by optimizer steps (one process or ``torchrun``)."""

    name = "torch"

    @property
    def resumable(self) -> frozenset[str]:  # type: ignore[override]
        """:data:`~neurocircuit.torch.checkpoint.RESUMABLE` (read when asked: it imports torch)."""
        from .checkpoint import RESUMABLE

        return frozenset(RESUMABLE)

    def honoured(self, raw: Any) -> dict[str, frozenset[str] | None]:
        """:attr:`honours`, with ``[data]``: the options of the named data set's loader."""
        from ..data import loader_options

        data = raw.get("data", {})
        name = data.get("name", "digits") if isinstance(data, dict) else "digits"
        return {**self.honours, "data": loader_options(name)}

    def refuse_unhonoured(self, raw: Any, source: str, schema: Any = None) -> None:
        """[data] keys first, by the named data set's loader (a data set swapped by ``--data`` or ``--set
        data.name=...`` keeps the simulation's options for the old one): one line naming the keys and the data
        set; then every other setting (:meth:`Backend.refuse_unhonoured`)."""
        from ..data import loader_options

        data = raw.get("data", {})
        if isinstance(data, dict) and isinstance(data.get("name", "digits"), str):
            name = data.get("name", "digits")
            takes = loader_options(name)
            refused = [f"data.{key}" for key in data if key != "name" and key not in takes]
            if refused:
                verb = "is not an option" if len(refused) == 1 else "are not options"
                raise ConfigError(f"{source}: {', '.join(refused)} {verb} of data set {name!r} (its options: "
                                  f"{', '.join(sorted(takes - {'name'}))})")
        super().refuse_unhonoured(raw, source, schema)

    @property
    def honours(self) -> dict[str, frozenset[str] | None]:  # type: ignore[override]
        from ..phases import MirrorSettings

        # [optimizer] and rule options: every key their own parsers accept (the torch.optim class, checked by a
        # probe optimizer in prepare(); the rule's options, by check_rule) is a named argument there. [data]: see
        # honoured().
        return {"top": frozenset(TOP_KEYS) - {"brian2"}, "arm": frozenset(ARM_KEYS),
                "optimizer": None, "options": None,
                "train": _fields(TrainSettings), "mirror": _fields(MirrorSettings), "torch": _fields(TorchSettings),
                **{f"phase.{k}": _phase_keys(k) for k in ("engaged", "mirror", "prenatal")}}

    def rule_names(self) -> set[str]:
        from .nn.feedback_rules import list_rules

        return set(list_rules())

    def prepare(self, sim: Simulation) -> None:
        import torch

        from ..data import check_validation
        from .distributed import resolve_device
        from .networks import build_network, is_torchvision_model
        from .nn.initialization import INIT_SCHEMES
        from .optim import make_optimizer, optimizer_settings

        resolve_device(torch_settings(sim).device)
        if sim.train.init not in INIT_SCHEMES:
            raise ConfigError(f"{sim.source}: train.init: unknown initialisation {sim.train.init!r} "
                              f"(known: {', '.join(INIT_SCHEMES)})")
        try:
            check_validation(sim.data.get("validation", 0.0), sim.data.get("validation_seed", 0))
        except ConfigError as exc:
            raise ConfigError(f"{sim.source}: {exc}") from None
        torchvision_model = is_torchvision_model(sim.model)
        circuit = None
        for arm in sim.arms:
            try:
                if torchvision_model:
                    with torch.device("meta"):  # checks the rules and override patterns without allocating
                        build_network(sim.model, rule=arm.rule, overrides=arm.overrides, options=arm.options, seed=0)
                else:
                    circuit = load_circuit(sim.model, rule=arm.rule, overrides=arm.overrides, options=arm.options)
            except (ConfigError, UnknownNameError, ShapeError) as exc:
                raise type(exc)(f"{sim.source}: arm {arm.label!r}: {exc}") from None
            _check_phase_steps(sim, arm)
        try:
            name, settings = optimizer_settings(sim.optimizer, sim.train.batch_size)
        except ConfigError as exc:  # named like every other refusal of the simulation
            raise ConfigError(f"{sim.source}: {exc}") from None
        if circuit is not None:  # before anything allocates: the allocator's own failure names no layer
            states = 2 if name.lower().startswith("adam") else 1
            try:
                check_memory(torch_memory(circuit, sim.train.batch_size, states), f"model {sim.model_name!r}")
            except ConfigError as exc:
                raise ConfigError(f"{sim.source}: {exc}") from None
        try:
            probe = make_optimizer([torch.zeros(1, requires_grad=True)], name, **settings)
        except ConfigError as exc:
            raise ConfigError(f"{sim.source}: optimizer: {exc}") from None
        if sim.train.early_weight_decay is not None and "weight_decay" not in probe.defaults:
            raise ConfigError(f"{sim.source}: train.early_weight_decay: optimizer {name!r} has no weight_decay "
                              f"setting to replace")

    def load_data(self, sim: Simulation) -> Any:
        from ..data import load_splits, transform_images

        # every option is a named parameter of the data set's loader (an unknown one is refused there)
        options = sim.data.consumed(without=("name",))
        train, val, test, info = load_splits(sim.data["name"], **options)
        ood = []
        for spec in sim.train.ood_transforms:
            if not hasattr(test, "tensors"):
                raise ConfigError(f"train.ood_transforms: data {info.name!r} is not an in-memory image set")
            ood.append((spec, transform_images(test, spec)))
        batches = -(-len(train) // sim.train.batch_size)
        for arm in sim.arms:
            for phase in sim.schedule_for(arm).phases:
                epochs = getattr(phase, "epochs", None) if phase.kind == "engaged" else 0
                epochs = sim.train.epochs if phase.kind == "engaged" and epochs is None else epochs
                if epochs:
                    check_count(epochs * batches, f"arm {arm.label!r}: phase {phase.name!r}: {epochs} epochs × "
                                f"{batches} batches", MAX_TRAINING_STEPS, "fewer epochs or a larger batch_size")
                every = getattr(phase, "mirror_every", 0) if epochs else 0
                if every and phase.mirror_steps:  # the interleaved mirror steps are steps too (they can hang a run)
                    check_count(epochs * batches // every * phase.mirror_steps, f"arm {arm.label!r}: phase "
                                f"{phase.name!r}: {epochs * batches:,} training steps // mirror_every {every} × "
                                f"mirror_steps {phase.mirror_steps:,} interleaved mirror steps", MAX_TRAINING_STEPS,
                                "fewer mirror_steps or a larger mirror_every")
        return train, test, info, tuple(ood), val

    def run_arm(self, sim: Simulation, arm: Any, seed: int, data: Any, *, out: Path | None = None,
                resume: bool = False, progress: bool | None = None, stop_after_steps: int | None = None,
                on_record: Any = None) -> xr.Dataset:
        import torch

        from .networks import build_network, is_torchvision_model
        from .trainer import Trainer

        train_set, test_set, info, ood, *rest = data  # (a 4-tuple from older callers: no validation set)
        val_set = rest[0] if rest else None
        if not is_torchvision_model(sim.model):
            check_data_fits(load_circuit(sim.model), info)
        elif len(info.input_shape) != 3:
            raise ShapeError(f"model {sim.model_name!r} takes images (C, H, W); data {info.name!r} has inputs of shape "
                             f"{info.input_shape}")
        if sim.train.loss == "cross_entropy" and info.task != "classification":
            raise ConfigError(f"train.loss is cross_entropy but data {info.name!r} is a {info.task} task "
                              "(use loss = \"mse\")")
        with torch.random.fork_rng(devices=[]):
            # every option is a field of the rule's torch class (check_rule refused any other)
            options = arm.options.consumed() if hasattr(arm.options, "consumed") else arm.options
            model = build_network(sim.model, rule=arm.rule, overrides=arm.overrides, options=options, seed=seed,
                              num_classes=info.n_outputs)
            if sim.train.init != "default":
                from .nn.initialization import initialize

                initialize(model, sim.train.init, seed=seed)
            trainer = Trainer(model, train_set, test_set, input_shape=info.input_shape, n_classes=info.n_outputs,
                              optimizer=sim.optimizer, train=sim.train, torch_settings=torch_settings(sim),
                              schedule=sim.schedule_for(arm), mirror=sim.mirror_for(arm), seed=seed, out=out,
                              label=f"{arm.label} seed {seed}", progress=progress,
                              config={**sim.to_dict(), "arm": arm.label}, val_set=val_set)
            trainer.ood_datasets = ood
            trainer.on_record = on_record
            return trainer.run(resume=resume, stop_after_steps=stop_after_steps)

    def on_accelerator(self, sim: Simulation) -> bool:
        device = torch_settings(sim).device
        if device == "auto":
            import torch

            return torch.cuda.is_available()
        return not device.startswith("cpu")

    def finish(self, results: xr.Dataset) -> xr.Dataset:
        from .distributed import release_process_group

        release_process_group()  # every arm and seed ran in the one torchrun process group
        if "phase" in results:  # arms with fewer records than others: no phase there
            results["phase"] = results["phase"].fillna("").astype(str)
        return results

    def attrs(self, sim: Simulation) -> dict[str, Any]:
        from .trainer import TIME_STEP_CONVENTION

        return {"dataset": str(sim.data.get("name")), "time_step_convention": TIME_STEP_CONVENTION}


def _check_phase_steps(sim: Simulation, arm: Any) -> None:
    """Refuse a phase of ``arm`` whose steps are beyond :data:`~neurocircuit.limits.MAX_TRAINING_STEPS` (an engaged
    phase: its epochs, each at least one step; the data set's size is checked once loaded)."""
    for phase in sim.schedule_for(arm).phases:
        if phase.kind == "engaged":
            epochs = sim.train.epochs if getattr(phase, "epochs", None) is None else phase.epochs
            count, what = epochs, "epochs"
        else:
            count, what = phase.steps, "steps"
        if count:
            try:
                check_count(count, f"arm {arm.label!r}: phase {phase.name!r}: {count} {what}", MAX_TRAINING_STEPS)
            except ConfigError as exc:
                raise ConfigError(f"{sim.source}: {exc}") from None
