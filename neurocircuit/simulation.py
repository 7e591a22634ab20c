"""The one simulation schema: every simulation file, for every backend, is read here into one :class:`Simulation`.

A simulation is a TOML file (see ``simulations/``)::

    name = "default"
    model = "mlp_digits"          # a circuit from models/ (or a path, from this file's folder), or a torchvision
                                  # classifier (resnet18); in Python also a Circuit (stored as its table)
    backend = "torch"             # or "brian2"
    seeds = [0, 1]
    arms = ["bp", "fa", { rule = "usf", label = "usf+bp", overrides = { W2 = "bp" } },
            { rule = "wm", phases = [{ kind = "mirror", steps = 300 }, { kind = "engaged" }] }]

    [data]                        # one registry for both backends (neurocircuit.data)
    name = "digits"               # digits | teacher | fashion_mnist | imagefolder | synthetic | torchvision:<Class>

    [optimizer]                   # torch.optim by name, plus its settings; lr_per_256 scales with the global batch
    name = "sgd"
    lr = 0.05

    [train]                       # TrainSettings: epochs, batch size, loss, records, learning-rate schedule
    epochs = 30

    [mirror]                      # MirrorSettings shared by every mirror step (neurocircuit.phases); an arm may
                                  # give its own: { rule = "wm", mirror = { estimate = "exact" }, ... }
    [[phases]]                    # the schedule: engaged, mirror and prenatal phases (neurocircuit.phases)

    [torch]                       # what only the torch backend has: device, AMP, workers, checkpoints
    [brian2]                      # what only the Brian2 backend has: biological parameters with units

Every key is checked; a mistyped one is an error that names it. Which keys a backend honours is declared by
the backend (:mod:`neurocircuit.backends`): any other key in a file is refused, naming the key and the backend.
Nothing in a file is evaluated as code.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _toml
from ._reads import Tracked, TrackedDict, origins_of, set_origins
from ._toml import check_keys, expect, expect_number, read_toml, shown, tomllib
from .backends import get_backend
from .circuit import Circuit, circuit_from_dict
from .datasets import check_dataset_name, list_datasets
from .errors import ConfigError
from .phases import (
    EngagedPhase,
    MirrorPhase,
    MirrorSettings,
    PrenatalPhase,
    Schedule,
    mirror_settings_from_dict,
    parse_schedule,
    refuse_unread_mirror_keys,
)
from .registry import _is_path, simulation_file
from .rules import check_rule
from .transforms import parse_transform

__all__ = ["Arm", "TrainSettings", "Simulation", "parse_simulation", "load_simulation",
           "apply_settings", "set_key", "parse_setting", "parse_record", "read_simulation", "TOP_KEYS"]

TOP_KEYS = ("name", "description", "model", "backend", "seeds", "arms", "data", "optimizer", "train", "mirror",
            "phases", "torch", "brian2")
ARM_KEYS = ("rule", "label", "overrides", "options", "phases", "mirror")
LR_SCHEDULES = ("constant", "cosine", "step")
LOSS_NAMES = ("cross_entropy", "mse")


@dataclass(frozen=True)
class Arm(Tracked):
    """One arm of a simulation: its label in results, the rule of every projection, per-projection (torch:
    module-name pattern) overrides, rule options, and optionally its own phase schedule and its own mirror settings
    (``[mirror]`` with the arm's ``mirror`` table on top, e.g. ``mirror = { estimate = "exact" }``)."""

    label: str
    rule: str
    overrides: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    schedule: Schedule | None = None
    mirror: MirrorSettings | None = None


@dataclass(frozen=True)
class TrainSettings(Tracked):
    """How the engaged phase learns from data and what is recorded.

    Parameters
    ----------
    epochs, batch_size
        Passes over the training set (an engaged phase may give its own ``epochs``) and minibatch size (per process
        under ``torchrun``).
    loss
        ``cross_entropy`` (classification) or ``mse`` (regression, e.g. the teacher task).
    label_smoothing
        Of the training cross-entropy.
    record_every
        ``"epoch"`` or a number of steps: when test loss/accuracy and the alignment metrics are recorded (also
        before the first step and after the last).
    alignment_samples
        Test samples used for the gradient angle (at least 1).
    lr_schedule, warmup_epochs, lr_step_epochs, lr_gamma, lr_milestones
        ``constant``, ``cosine`` (to 0 over the phase) or ``step`` (x ``lr_gamma`` every ``lr_step_epochs``, or at
        each epoch listed in ``lr_milestones``, e.g. ``[50, 75]``), after a linear warm-up of ``warmup_epochs``;
        applied per optimizer step.
    early_weight_decay, early_weight_decay_epochs
        The optimizer's weight decay during the first ``early_weight_decay_epochs`` epochs of the engaged phase
        (None: no early phase), then the ``[optimizer]`` value again. Kolen-Pollack's B gets it too (its twin
        optimizer copies W's settings at every step), so W - B shrinks by (1 - lr * early_weight_decay) per plain-SGD
        step while it lasts: a decay warm-up that erases the random starts of W and B sooner (README, KP on ResNet).
        Applied to every parameter group, every rule alike.
    init
        How W, b and B start: ``default`` (torch's layer init, B drawn like W), ``xavier`` (Xavier-uniform W and B,
        zero biases; BioTorch's protocol) or ``he`` (He-normal W and B, N(0, 2 / fan_in) drawn independently, zero
        biases). Circuits and converted torchvision models alike; see :func:`neurocircuit.nn.initialize`.
    ood_transforms
        Test-set transforms evaluated at the end, e.g. ``["rotate:20", "shift:3", "scale:0.8"]``.
    steps_per_epoch, val_batches
        Caps on the steps of an epoch and on the evaluated test batches (None: all) — for proxies and tests.
    drop_last
        Drop the last, incomplete batch of every epoch.
    """

    epochs: int = 10
    batch_size: int = 32
    loss: str = "cross_entropy"
    label_smoothing: float = 0.0
    record_every: int | str = "epoch"
    alignment_samples: int = 256
    lr_schedule: str = "constant"
    warmup_epochs: float = 0.0
    lr_step_epochs: int = 30
    lr_gamma: float = 0.1
    lr_milestones: tuple[int, ...] = ()
    early_weight_decay: float | None = None
    early_weight_decay_epochs: float = 0.0
    init: str = "default"
    ood_transforms: tuple[str, ...] = ()
    steps_per_epoch: int | None = None
    val_batches: int | None = None
    drop_last: bool = False

    def __post_init__(self) -> None:
        w = "train"
        expect_number(self.epochs, f"{w}.epochs", strict=False, integer=True)
        for key in ("batch_size", "lr_step_epochs"):
            expect_number(getattr(self, key), f"{w}.{key}", integer=True)
        expect_number(self.alignment_samples, f"{w}.alignment_samples", integer=True)
        for key in ("steps_per_epoch", "val_batches"):
            if getattr(self, key) is not None:
                expect_number(getattr(self, key), f"{w}.{key}", integer=True)
        if self.loss not in LOSS_NAMES:
            raise ConfigError(f"{w}.loss: unknown loss {self.loss!r} (known: {', '.join(LOSS_NAMES)})")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"{w}.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        expect_number(self.label_smoothing, f"{w}.label_smoothing", strict=False)
        if self.label_smoothing >= 1:
            raise ConfigError(f"{w}.label_smoothing must be < 1, got {shown(self.label_smoothing)}")
        expect_number(self.warmup_epochs, f"{w}.warmup_epochs", strict=False)
        if self.early_weight_decay is not None:
            expect_number(self.early_weight_decay, f"{w}.early_weight_decay", strict=False)
            if not self.early_weight_decay_epochs:
                raise ConfigError(f"{w}.early_weight_decay = {self.early_weight_decay!r} needs "
                                  f"{w}.early_weight_decay_epochs > 0 (how long it lasts)")
            expect_number(self.early_weight_decay_epochs, f"{w}.early_weight_decay_epochs")
        elif self.early_weight_decay_epochs:
            raise ConfigError(f"{w}.early_weight_decay_epochs = {self.early_weight_decay_epochs!r} needs "
                              f"{w}.early_weight_decay (the weight decay to use for those epochs)")
        expect_number(self.lr_gamma, f"{w}.lr_gamma")
        milestones = expect(self.lr_milestones, (list, tuple), f"{w}.lr_milestones")
        for m in milestones:
            expect_number(m, f"{w}.lr_milestones", integer=True)
        if list(milestones) != sorted(set(milestones)):
            raise ConfigError(f"{w}.lr_milestones must be increasing epochs, got {list(milestones)!r}")
        if milestones and self.lr_schedule != "step":
            raise ConfigError(f"{w}.lr_milestones needs lr_schedule = \"step\" (got {self.lr_schedule!r})")
        object.__setattr__(self, "lr_milestones", tuple(milestones))
        expect(self.init, str, f"{w}.init")  # the torch backend knows the schemes (neurocircuit.nn.INIT_SCHEMES)
        if self.record_every != "epoch":
            expect_number(self.record_every, f"{w}.record_every (or \"epoch\")", integer=True)
        expect(self.drop_last, bool, f"{w}.drop_last")
        for spec in self.ood_transforms:
            parse_transform(expect(spec, str, f"{w}.ood_transforms"))


@dataclass(frozen=True)
class Simulation(Tracked):
    """A parsed, validated simulation file (any backend)."""

    name: str
    model: str | Circuit  # a name or path; a circuit given in Python or as a table in the file
    arms: tuple[Arm, ...]
    seeds: tuple[int, ...] = (0,)
    backend: str = "torch"
    data: Mapping[str, Any] = field(default_factory=lambda: {"name": "digits"})
    optimizer: Mapping[str, Any] = field(default_factory=lambda: {"name": "sgd", "lr": 0.01})
    train: TrainSettings = TrainSettings()
    schedule: Schedule = Schedule((EngagedPhase(),))
    mirror: MirrorSettings = MirrorSettings()
    backend_section: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = "<dict>"
    raw: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Reads of [data] and [optimizer] entries are logged like the records' fields (neurocircuit._reads).
        for name in ("data", "optimizer"):
            if not isinstance(getattr(self, name), TrackedDict):
                object.__setattr__(self, name, TrackedDict(getattr(self, name), name))

    @property
    def model_name(self) -> str:
        """The model in one short line: its name or path, or the name of a circuit given as a table."""
        return self.model.name if isinstance(self.model, Circuit) else self.model

    def schedule_for(self, arm: Arm) -> Schedule:
        """The phases that ``arm`` runs."""
        return arm.schedule or self.schedule

    def mirror_for(self, arm: Arm) -> MirrorSettings:
        """The settings of ``arm``'s interleaved mirror steps (its own ``mirror`` table over ``[mirror]``)."""
        return arm.mirror or self.mirror

    def arm(self, label: str) -> Arm:
        """The arm called ``label``."""
        for arm in self.arms:
            if arm.label == label:
                return arm
        raise ConfigError(f"simulation {self.name!r} has no arm {label!r} (arms: {', '.join(self.labels)})")

    @property
    def labels(self) -> list[str]:
        return [a.label for a in self.arms]

    def select(self, labels: Iterable[str] | None) -> Simulation:
        """The simulation with only the arms in ``labels`` (None: all), in the file's order."""
        if labels is None:
            return self
        wanted = list(labels)
        if not wanted:
            raise ConfigError("--arm/--only names no arm (arms: " + ", ".join(self.labels) + ")")
        for label in wanted:
            self.arm(label)
        chosen = dataclasses.replace(self, arms=tuple(a for a in self.arms if a.label in wanted))
        return set_origins(chosen, origins_of(self))

    def to_dict(self) -> dict[str, Any]:
        """The file's table with every applied setting (stored as JSON in results' ``config`` attribute)."""
        return copy.deepcopy(dict(self.raw))


_OLD_DEEP_HINT = ("write it in the one simulation format: model = \"resnet18\" at the top, arms = [\"bp\", "
                  "{ rule = \"fa\", label = \"fa_prenatal\", phases = [...] }], [data] name = \"imagefolder\" with "
                  "root/image_size/augment, [optimizer] name = \"sgd\" with lr_per_256/momentum/weight_decay, "
                  "[train] epochs/batch_size/lr_schedule, [torch] workers/checkpoint_every/amp, and prenatal_* / "
                  "initial_mirror_steps / mirror_every as [[phases]] (see docs/architecture.md)")


def _refuse_old_formats(raw: Mapping[str, Any], where: str) -> None:
    kind = raw.get("kind")
    if kind == "sweep":
        raise ConfigError(f"{where} is a sweep: run it with 'neurocircuit sweep'")
    if kind == "deep":
        raise ConfigError(f"{where} is in the old deep format (kind = \"deep\"): {_OLD_DEEP_HINT}")
    if kind == "brian2":
        raise ConfigError(f"{where}: kind = \"brian2\" is now backend = \"brian2\" (and variant moves into [brian2])")
    if kind is not None:
        raise ConfigError(f"{where}: unknown key 'kind' (simulations choose a backend with backend = \"...\")")
    if "rules" in raw:
        raise ConfigError(f"{where}: 'rules' is now 'arms' (entries: a rule name, or a table with rule, label, "
                          "overrides, options, phases)")


def _parse_arm(entry: Any, i: int, mirror: MirrorSettings, where: str) -> Arm:
    w = f"{where}: arms[{i}]"
    given = entry if isinstance(entry, dict) else {}  # an arm written as a rule name sets no key of its own
    if isinstance(entry, str):
        entry = {"rule": entry}
    expect(entry, dict, w)
    check_keys(entry, ARM_KEYS, w)
    if "rule" not in entry:
        raise ConfigError(f"{w}: missing key 'rule'")
    rule = expect(entry["rule"], str, f"{w}: rule")
    options = dict(expect(entry.get("options", {}), dict, f"{w}: options"))
    check_rule(rule, options, f"{w}: rule")
    overrides = dict(expect(entry.get("overrides", {}), dict, f"{w}: overrides"))
    for target, other in overrides.items():
        check_rule(other, {}, f"{w}: overrides[{target!r}]")
    own_mirror = (mirror_settings_from_dict(expect(entry["mirror"], dict, f"{w}: mirror"), f"{w}: mirror", mirror,
                                            key=f"arms.{i}.mirror") if "mirror" in entry else None)
    schedule = (parse_schedule(entry["phases"], mirror=own_mirror or mirror, where=f"{w}: phases",
                               key=f"arms.{i}.phases") if "phases" in entry else None)
    arm = Arm(expect(entry.get("label", rule), str, f"{w}: label"), rule, overrides,
              TrackedDict(options, f"arms.{i}.options"), schedule, own_mirror)
    return set_origins(arm, {k: f"arms.{i}.{k}" for k in given if k not in ("options", "phases", "mirror")})


def _with_schedule(arm: Arm, schedule: Schedule) -> Arm:
    return set_origins(dataclasses.replace(arm, schedule=schedule), origins_of(arm))


def _refuse_overridden(raw: Mapping[str, Any], schedule: Schedule, arms: tuple[Arm, ...], where: str) -> None:
    """Defaults that no arm uses are set but never read: refuse them by name."""
    if "phases" in raw and all(arm.schedule is not None for arm in arms):
        raise ConfigError(f"{where}: phases is never used: every arm gives its own phases (drop the top-level "
                          "phases, or an arm's)")
    engaged = [s.engaged for s in (arm.schedule or schedule for arm in arms)]
    train = raw.get("train", {})
    if isinstance(train, Mapping) and "epochs" in train and all(e is None or e.epochs is not None
                                                                   for e in engaged):
        raise ConfigError(f"{where}: train.epochs is never used: every engaged phase gives its own epochs (or "
                          "there is none)")


def _mirror_uses(schedule: Schedule, mirror: MirrorSettings, arms: tuple[Arm, ...]
                 ) -> list[tuple[MirrorSettings, EngagedPhase | None]]:
    """Every arm's mirror steps' settings: its mirror phases', and its interleaved steps' with their engaged phase.
    An arm whose rule never mirrors counts too (its [mirror] keys are another check's business)."""
    uses: list[tuple[MirrorSettings, EngagedPhase | None]] = []
    for arm in arms:
        phases = (arm.schedule or schedule).phases
        uses += [(p.settings, None) for p in phases if isinstance(p, MirrorPhase)]
        uses += [(arm.mirror or mirror, p) for p in phases if isinstance(p, EngagedPhase) and p.mirror_every]
    return uses


def schema_keys() -> dict[str, frozenset[str]]:
    """Every key the backend-neutral schema's records take, by section of :data:`neurocircuit.backends.SECTIONS`
    (a backend's own sections, ``[torch]`` and ``[brian2]``, are the backend's)."""
    def fields(cls: type) -> frozenset[str]:
        return frozenset(f.name for f in dataclasses.fields(cls) if f.init)

    return {"top": frozenset(TOP_KEYS), "arm": frozenset(ARM_KEYS), "train": fields(TrainSettings),
            "mirror": fields(MirrorSettings), "phase.engaged": fields(EngagedPhase),
            "phase.prenatal": fields(PrenatalPhase), "phase.mirror": fields(MirrorPhase) | fields(MirrorSettings)}


def _parse_model(model: Any, where: str) -> str | Circuit:
    """A simulation's model: a name or path as given, a circuit table (a circuit's dict form) built as a Circuit."""
    if isinstance(model, (str, Circuit)):
        return model
    if isinstance(model, Mapping):
        return circuit_from_dict(model, where=f"{where}: model")
    raise ConfigError(f"{where}: model: expected str (a circuit's name or path, a torchvision classifier's name), "
                      f"a Circuit or a circuit table, got {type(model).__name__}")


def parse_simulation(raw: Mapping[str, Any], *, source: str = "<dict>") -> Simulation:
    """Validate the table of a simulation file and build a :class:`Simulation`; the backend then checks that it
    honours every key the file sets, and builds what it needs (circuit, data, optimizer) before anything runs."""
    where = source
    expect(raw, dict, where)
    _toml.check_bounded(raw, where)  # before anything walks or copies it
    _refuse_old_formats(raw, where)
    for key in ("model", "arms"):
        if key not in raw:
            raise ConfigError(f"{where}: missing key {key!r}")
    model = _parse_model(raw["model"], where)
    if isinstance(raw["model"], Circuit):  # the table keeps the circuit's dict form: results store it as JSON
        raw = {**raw, "model": raw["model"].to_dict()}
    backend = expect(raw.get("backend", "torch"), str, f"{where}: backend")
    runner = get_backend(backend, where=f"{where}: backend")
    if isinstance(raw.get("data"), Mapping) and "name" not in raw["data"]:
        raise ConfigError(f"{where}: [data] has no name (the data set to load; known: {', '.join(list_datasets())})")
    if isinstance(raw.get("data", {}), Mapping):
        check_dataset_name(raw.get("data", {}).get("name", "digits"), f"{where}: data.name")
    # every key the backend does not honour, misspelt ones of every section included, in one line
    runner.refuse_unhonoured(raw, where, schema_keys())
    check_keys(raw, TOP_KEYS, where)
    mirror = mirror_settings_from_dict(expect(raw.get("mirror", {}), dict, f"{where}: mirror"), f"{where}: mirror",
                                       key="mirror")
    schedule = (parse_schedule(raw["phases"], mirror=mirror, where=f"{where}: phases", key="phases")
                if "phases" in raw else Schedule((EngagedPhase(),)))
    arms = tuple(_parse_arm(entry, i, mirror, where)
                 for i, entry in enumerate(expect(raw["arms"], list, f"{where}: arms")))
    if not arms:
        raise ConfigError(f"{where}: arms is empty")
    _refuse_overridden(raw, schedule, arms, where)
    if "phases" in raw:
        # an arm's own mirror table lays over [mirror] in the mirror phases it takes from the top-level schedule too
        arms = tuple(_with_schedule(arm, parse_schedule(raw["phases"], mirror=arm.mirror, where=f"{where}: phases",
                                                        key="phases"))
                     if arm.schedule is None and arm.mirror is not None else arm for arm in arms)
    refuse_unread_mirror_keys(_mirror_uses(schedule, mirror, arms), where)
    for i, arm in enumerate(arms):  # wm learns B only in mirror steps: without any, it would silently be fa
        if "wm" in (arm.rule, *arm.overrides.values()) and not (phases := arm.schedule or schedule).mirrors:
            raise ConfigError(f"{where}: arm {arm.label!r} uses rule 'wm', but its phases ("
                              f"{', '.join(p.name for p in phases.phases)}) never mirror, so B would stay fixed: give "
                              f"it a mirror phase or mirror_every (arms.{i}.phases), or run the simulation's own wm "
                              "arm (--arm LABEL)")
    labels = [a.label for a in arms]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{where}: arm labels must be unique, got {labels} (give each a 'label')")
    seeds = raw.get("seeds", [0])
    seeds = [seeds] if isinstance(seeds, int) and not isinstance(seeds, bool) else seeds
    for s in expect(seeds, list, f"{where}: seeds"):
        _toml.expect_seed(s, f"{where}: seeds")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where}: seeds must be a non-empty list of distinct ints, got {seeds}")
    data = dict(expect(raw.get("data", {"name": "digits"}), dict, f"{where}: data"))
    optimizer = dict(expect(raw.get("optimizer", {"name": "sgd", "lr": 0.01}), dict, f"{where}: optimizer"))
    optimizer.setdefault("name", "sgd")
    expect(optimizer["name"], str, f"{where}: optimizer.name")
    train = parse_record(TrainSettings, raw.get("train", {}), where, "train", tuples=("ood_transforms",))
    sim = Simulation(expect(raw.get("name", Path(source).stem), str, f"{where}: name"), model, arms, tuple(seeds),
                     backend, data, optimizer, train, schedule, mirror,
                     dict(expect(raw.get(backend, {}), dict, f"{where}: {backend}")) if backend in TOP_KEYS else {},
                     str(raw.get("description", "")), source, copy.deepcopy(dict(raw)))
    set_origins(sim, {k: k for k in ("name", "description", "model", "backend", "seeds") if k in raw})
    runner.validate(sim)
    return sim


def parse_record(cls: type, table: Any, source: str, section: str, tuples: tuple[str, ...] = ()) -> Any:
    """A settings record from the ``[section]`` table of ``source``: unknown keys and bad values are errors naming
    both (the records' own checks name ``section.key``)."""
    where = f"{source}: {section}"
    expect(table, dict, where)
    check_keys(table, [f.name for f in dataclasses.fields(cls)], where)
    values = dict(table)
    for key in tuples:
        if key in values:
            values[key] = tuple(expect(values[key], list, f"{where}.{key}"))
    try:
        return set_origins(cls(**values), {k: f"{section}.{k}" for k in values})
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


# ----------------------------------------------------------------------------------------------- --set
def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def set_key(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted ``key`` in a simulation table in place; integer parts index lists; ``seed`` sets ``seeds``.

    This is what ``--set`` means in ``run``, ``train`` and ``sweep`` alike: ``train.epochs``,
    ``phases.0.noise_std``, ``arms.1.rule``, ``data.name``.
    """
    if key == "seed":
        raw["seeds"] = [value]
        return
    parts = key.split(".")
    if not all(parts) or len(parts) > _toml.MAX_DEPTH:
        raise ConfigError(f"--set: bad key {key[:60]!r}{'...' if len(key) > 60 else ''}" + (
            f" (more than {_toml.MAX_DEPTH} levels deep)" if len(parts) > _toml.MAX_DEPTH else ""))
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        here = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not _is_int(part) or not -len(node) <= int(part) < len(node):
                raise ConfigError(f"--set {key!r}: {here!r} is not an index of a list of {len(node)}")
            if isinstance(node[int(part)], str):
                node[int(part)] = {"rule": node[int(part)]}  # arms.0.label on an arm given as a rule name
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            raise ConfigError(f"--set {key!r}: {here!r} is not a table or list")
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"--set {key!r}: {here!r} is a value, not a table")
    last = parts[-1]
    if isinstance(node, list):
        if not _is_int(last) or not -len(node) <= int(last) < len(node):
            raise ConfigError(f"--set {key!r}: {last!r} is not an index of a list of {len(node)}")
        node[int(last)] = value
    else:
        node[last] = value


def parse_setting(item: str) -> tuple[str, Any]:
    """``"key=value"`` -> (key, value), the value parsed as TOML (a bare word stays a string)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value, got {item!r}")
    try:
        value = _toml.loads_bounded(f"v = {text}", f"--set {key.strip()[:60]}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    return key.strip(), value


def apply_settings(raw: Mapping[str, Any], settings: Iterable[str]) -> dict[str, Any]:
    """A copy of ``raw`` with ``key=value`` settings applied (see :func:`set_key`)."""
    out = copy.deepcopy(dict(raw))
    for item in settings:
        set_key(out, *parse_setting(item))
    return out


def read_simulation(name: str | Path) -> dict[str, Any]:
    """The table of a simulation file, by name (from ``simulations/``) or path, with a relative model path made
    absolute from the file's folder: a circuit file named by a simulation is found beside it, wherever one runs."""
    path = simulation_file(name)
    raw = read_toml(path)
    model = raw.get("model")
    if isinstance(model, str) and _is_path(model) and not Path(model).is_absolute():
        raw["model"] = str(path.parent.absolute() / model)
    return raw


def load_simulation(name: str | Path, settings: Iterable[str] = (), arms: Iterable[str] | None = None
                    ) -> Simulation:
    """Read a simulation by name (from ``simulations/``) or path (:func:`read_simulation`), apply ``key=value``
    settings, and keep only the arms labelled in ``arms`` (None: all)."""
    source = str(name) if str(name).endswith(".toml") else f"simulation {str(name)!r}"
    raw = read_simulation(name)
    _refuse_old_formats(raw, source)
    return parse_simulation(apply_settings(raw, settings), source=source).select(arms)
