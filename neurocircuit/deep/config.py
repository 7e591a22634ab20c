"""Settings of a deep-network training run (``neurocircuit train``), and their simulation-file form.

A deep simulation file has ``kind = "deep"``, a ``[train]`` table of :class:`DeepConfig` keys shared by every
arm, an optional ``[mirror]`` table (:class:`~neurocircuit.phases.MirrorSettings`) and one ``[arms.<label>]``
table per rule that may override any ``[train]`` key::

    kind = "deep"
    [train]
    model = "resnet18"
    data = "imagefolder"
    [arms.kp]
    rule = "kp"
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._toml import check_keys, expect, read_toml
from ..errors import ConfigError
from ..phases import MirrorSettings, mirror_settings_from_dict
from ..registry import simulation_file
from ..rules import check_rule
from ..simulation import apply_settings

__all__ = ["DeepConfig", "DeepSimulation", "DATA_KINDS", "parse_deep_simulation", "load_deep_simulation",
           "is_deep_simulation"]

#: Data sources: an ImageFolder tree with train/ and val/ (the ImageNet layout), Fashion-MNIST resized to
#: ``image_size`` with three equal channels (the CPU proxy), random ImageNet-shaped images (benchmarks), or any
#: torchvision classification data set as ``torchvision:<ClassName>`` (e.g. ``torchvision:CIFAR10``).
DATA_KINDS = ("imagefolder", "fashion_mnist", "synthetic")
AMP_MODES = ("auto", "bf16", "fp16", "off")
SCHEDULES = ("step", "cosine")
AUGMENTATIONS = ("imagenet", "flip", "none")


@dataclass(frozen=True)
class DeepConfig:
    """One deep training run. Defaults are the standard ImageNet recipe (torchvision's ResNet reference).

    Parameters
    ----------
    model
        A torchvision classification model name (``torchvision.models.list_models``), e.g. resnet18, resnet50.
    rule, overrides, rule_options
        The rule of every Linear/Conv2d layer, per-layer exceptions (module-name pattern -> rule) and rule
        options, as in :func:`neurocircuit.nn.convert`.
    data, data_root, download
        Where the images come from (:data:`DATA_KINDS` or ``torchvision:<Class>``); ``data_root`` is the folder
        (ImageFolder: the one holding ``train/`` and ``val/``).
    image_size, val_resize, augment
        Training crop size; validation images are resized to ``val_resize`` then center-cropped to ``image_size``.
        ``augment``: ``imagenet`` (RandomResizedCrop + flip), ``flip`` (flip only) or ``none``.
    epochs, batch_size
        ``batch_size`` is per process; the learning rate scales with the global batch (all processes).
    lr_per_256, momentum, weight_decay, nesterov, lr_schedule, lr_step_epochs, lr_gamma, warmup_epochs
        SGD with lr = lr_per_256 * global_batch / 256, a ``step`` (x lr_gamma every lr_step_epochs) or ``cosine``
        schedule after a linear warm-up, applied per optimizer step.
    label_smoothing
        Of the cross-entropy loss.
    mirror, mirror_every, mirror_steps, mirror_follows_lr, initial_mirror_steps
        Weight mirroring of ``wm`` layers: ``initial_mirror_steps`` before training, then ``mirror_steps`` every
        ``mirror_every`` optimizer steps (0: never), plasticity optionally scaled by lr / lr_0.
    prenatal_steps, prenatal_batch_size, prenatal_lr
        Cheon et al.'s random-noise pretraining before training (0 steps: none): Gaussian images, random labels,
        B fixed, plain SGD with momentum 0.9 at ``prenatal_lr``.
    amp, channels_last, compile
        ``amp``: auto = bf16 autocast on CUDA, off on CPU. ``channels_last``: None = on CUDA only.
    workers, device, seed
        DataLoader workers per process; ``auto`` = the local CUDA device if any, else CPU; the run's seed.
    checkpoint_every, steps_per_epoch, val_batches, log_every
        Checkpoint every N optimizer steps (and at every epoch end); cap the steps per epoch and the
        validation batches (None: all; for proxies and tests); how often the loss is checked for NaN/inf.
    """

    model: str = "resnet18"
    rule: str = "bp"
    overrides: Mapping[str, str] = field(default_factory=dict)
    rule_options: Mapping[str, Any] = field(default_factory=dict)
    data: str = "imagefolder"
    data_root: str | None = None
    download: bool = False
    image_size: int = 224
    val_resize: int = 256
    augment: str = "imagenet"
    epochs: int = 90
    batch_size: int = 64
    lr_per_256: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    lr_schedule: str = "step"
    lr_step_epochs: int = 30
    lr_gamma: float = 0.1
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    mirror: MirrorSettings = field(default_factory=MirrorSettings)
    mirror_every: int = 0
    mirror_steps: int = 1
    mirror_follows_lr: bool = False
    initial_mirror_steps: int = 0
    prenatal_steps: int = 0
    prenatal_batch_size: int = 64
    prenatal_lr: float = 0.01
    amp: str = "auto"
    channels_last: bool | None = None
    compile: bool = False
    workers: int = 8
    device: str = "auto"
    seed: int = 0
    checkpoint_every: int = 1000
    steps_per_epoch: int | None = None
    val_batches: int | None = None
    log_every: int = 50

    def __post_init__(self) -> None:
        ints = ("image_size", "val_resize", "epochs", "batch_size", "lr_step_epochs", "mirror_steps",
                "prenatal_batch_size", "log_every")
        for key in ints:
            expect(getattr(self, key), int, f"train.{key}")
            if getattr(self, key) <= 0:
                raise ConfigError(f"train.{key} must be > 0, got {getattr(self, key)!r}")
        for key in ("mirror_every", "initial_mirror_steps", "prenatal_steps", "workers", "seed",
                    "checkpoint_every"):
            expect(getattr(self, key), int, f"train.{key}")
            if getattr(self, key) < 0:
                raise ConfigError(f"train.{key} must be >= 0, got {getattr(self, key)!r}")
        for key in ("steps_per_epoch", "val_batches"):
            value = getattr(self, key)
            if value is not None and (expect(value, int, f"train.{key}") <= 0):
                raise ConfigError(f"train.{key} must be > 0, got {value!r}")
        for key in ("lr_per_256", "momentum", "weight_decay", "lr_gamma", "warmup_epochs", "label_smoothing",
                    "prenatal_lr"):
            expect(getattr(self, key), (int, float), f"train.{key}")
            if getattr(self, key) < 0:
                raise ConfigError(f"train.{key} must be >= 0, got {getattr(self, key)!r}")
        if self.lr_per_256 == 0:
            raise ConfigError("train.lr_per_256 must be > 0, got 0")
        for key in ("download", "nesterov", "mirror_follows_lr", "compile"):
            expect(getattr(self, key), bool, f"train.{key}")
        if self.channels_last is not None:
            expect(self.channels_last, bool, "train.channels_last")
        for key, allowed in (("amp", AMP_MODES), ("lr_schedule", SCHEDULES), ("augment", AUGMENTATIONS)):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"train.{key}: unknown value {getattr(self, key)!r} (use {', '.join(allowed)})")
        expect(self.model, str, "train.model")
        expect(self.data, str, "train.data")
        if self.data not in DATA_KINDS and not self.data.startswith("torchvision:"):
            raise ConfigError(f"train.data: unknown data {self.data!r} (use {', '.join(DATA_KINDS)} or "
                              "torchvision:<DatasetClass>)")
        if self.data_root is not None:
            expect(self.data_root, str, "train.data_root")
        expect(self.device, str, "train.device")
        check_rule(self.rule, self.rule_options, "train.rule")
        for pattern, rule in self.overrides.items():
            check_rule(rule, {}, f"train.overrides[{pattern!r}]")
        if self.val_resize < self.image_size:
            raise ConfigError(f"train.val_resize ({self.val_resize}) must be >= train.image_size ({self.image_size})")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the mirror settings as a table), for checkpoints and results attrs."""
        out = dataclasses.asdict(self)
        out["overrides"], out["rule_options"] = dict(self.overrides), dict(self.rule_options)
        return out

    @classmethod
    def from_dict(cls, table: Mapping[str, Any], *, mirror: Mapping[str, Any] | None = None,
                  where: str = "train") -> DeepConfig:
        """Build from a ``[train]`` table (and a ``[mirror]`` table); unknown keys are errors."""
        names = [f.name for f in dataclasses.fields(cls)]
        check_keys(table, names, where)
        values = dict(table)
        mirror_table = dict(mirror or {})
        if isinstance(values.get("mirror"), Mapping):
            mirror_table.update(values["mirror"])
        values["mirror"] = mirror_settings_from_dict(mirror_table, f"{where}.mirror")
        for key in ("overrides", "rule_options"):
            if key in values and not isinstance(values[key], Mapping):
                raise ConfigError(f"{where}.{key}: expected a table, got {values[key]!r}")
        try:
            return cls(**values)
        except TypeError as exc:  # pragma: no cover - check_keys catches unknown keys first
            raise ConfigError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class DeepSimulation:
    """A deep simulation file: a name, a description and one :class:`DeepConfig` per arm label."""

    name: str
    description: str
    arms: Mapping[str, DeepConfig]

    def arm(self, label: str | None) -> DeepConfig:
        """The arm called ``label``; None picks the only arm, or fails naming the choices."""
        if label is None:
            if len(self.arms) == 1:
                return next(iter(self.arms.values()))
            raise ConfigError(f"simulation {self.name!r} has several arms: pick one with --arm "
                              f"({', '.join(self.arms)})")
        if label not in self.arms:
            raise ConfigError(f"--arm: simulation {self.name!r} has no arm {label!r} (arms: {', '.join(self.arms)})")
        return self.arms[label]


def is_deep_simulation(raw: Mapping[str, Any]) -> bool:
    return raw.get("kind") == "deep"


def parse_deep_simulation(raw: Mapping[str, Any], *, source: str = "<dict>") -> DeepSimulation:
    """Validate a ``kind = "deep"`` simulation table; every arm is checked now, not when it runs."""
    check_keys(raw, ("kind", "name", "description", "train", "mirror", "arms"), source)
    if not is_deep_simulation(raw):
        raise ConfigError(f"{source}: not a deep simulation (it needs kind = \"deep\")")
    train = expect(raw.get("train", {}), dict, f"{source}: train")
    mirror = expect(raw.get("mirror", {}), dict, f"{source}: mirror")
    arms_raw = expect(raw.get("arms", {"default": {}}), dict, f"{source}: arms")
    arms = {}
    for label, table in arms_raw.items():
        expect(table, dict, f"{source}: arms.{label}")
        arms[label] = DeepConfig.from_dict({**train, **table}, mirror=mirror, where=f"{source}: arms.{label}")
    if not arms:
        raise ConfigError(f"{source}: arms is empty")
    return DeepSimulation(str(raw.get("name", source)), str(raw.get("description", "")), arms)


def load_deep_simulation(name: str | Path | None, settings: Iterable[str] = ()) -> DeepSimulation:
    """Read a deep simulation by name or path (None: a single-arm run from defaults), applying ``--set``
    settings (``key=value`` keys of ``[train]`` need no prefix; ``mirror.noise_std=0.1`` and
    ``arms.wm.mirror_every=2`` work too)."""
    if name is None:
        raw: dict[str, Any] = {"kind": "deep", "name": "train"}
    else:
        raw = read_toml(simulation_file(name))
        if not is_deep_simulation(raw):
            raise ConfigError(f"simulation {str(name)!r} is not a deep simulation (kind = \"deep\"); "
                              "run it with 'neurocircuit run'")
    top = {"kind", "name", "description", "train", "mirror", "arms"}
    arms = raw.get("arms", {}) if isinstance(raw.get("arms"), dict) else {}
    routed = []
    for item in settings:
        key = item.partition("=")[0].split(".")[0]
        if key in top:
            routed.append(item)
            continue
        # A bare key is a [train] key; it also wins over an arm that sets the same key.
        routed.append(f"train.{item}")
        routed += [f"arms.{label}.{item}" for label, table in arms.items()
                   if isinstance(table, dict) and key in table]
    return parse_deep_simulation(apply_settings(raw, routed), source=f"simulation {str(name or 'train')!r}")
