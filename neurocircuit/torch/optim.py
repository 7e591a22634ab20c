"""Optimizers by name, the ``[optimizer]`` table, and the learning-rate schedule as a function of the step."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from .._toml import expect_finite, expect_number
from ..errors import ConfigError
from ..simulation import TrainSettings

__all__ = ["OPTIMIZERS", "make_optimizer", "optimizer_settings", "lr_factor", "lr_scheduler", "EarlyWeightDecay"]

#: Short names of the common optimizers (any other ``torch.optim`` class is taken by its class name).
OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
              "rmsprop": torch.optim.RMSprop}


def make_optimizer(params: Any, name: str = "sgd", **settings: Any) -> torch.optim.Optimizer:
    """An optimizer by short name (sgd, adam, adamw, rmsprop) or by any ``torch.optim`` class name."""
    cls = OPTIMIZERS.get(name.lower()) or getattr(torch.optim, name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ConfigError(f"unknown optimizer {name!r} (use {', '.join(OPTIMIZERS)} or a torch.optim class name)")
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "params"}
    for key in settings:
        if key not in allowed:
            raise ConfigError(f"optimizer {name!r} has no setting {key!r} (settings: {', '.join(sorted(allowed))})")
    try:
        return cls(params, **settings)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"optimizer {name!r}: {exc}") from None


def optimizer_settings(spec: Mapping[str, Any], global_batch: int) -> tuple[str, dict[str, Any]]:
    """(name, settings) of an ``[optimizer]`` table; ``lr_per_256`` becomes ``lr = lr_per_256 * global_batch / 256``
    (the linear scaling rule of the ImageNet recipe)."""
    # every setting is a named argument of the torch.optim class (make_optimizer refuses any other)
    settings = spec.consumed(without=("name",)) if hasattr(spec, "consumed") else \
        {k: v for k, v in spec.items() if k != "name"}
    if "lr_per_256" in settings:
        if "lr" in settings:
            raise ConfigError("optimizer: give lr or lr_per_256, not both")
        per = expect_number(settings.pop("lr_per_256"), "optimizer.lr_per_256")
        settings["lr"] = per * global_batch / 256
    elif settings.get("lr") is not None:
        expect_number(settings["lr"], "optimizer.lr")
    for key, value in settings.items():  # torch.optim checks ranges with comparisons, which NaN passes
        expect_finite(value, f"optimizer.{key}")
    return str(spec.get("name", "sgd")), settings


def lr_factor(train: TrainSettings, *, epochs: int, steps_per_epoch: int) -> Callable[[int], float]:
    """lr / base lr after ``step`` optimizer steps: linear warm-up, then constant, cosine (to 0) or step decay."""
    warmup = train.warmup_epochs * steps_per_epoch
    total = max(epochs * steps_per_epoch, 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if train.lr_schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        if train.lr_schedule == "step" and train.lr_milestones:
            return train.lr_gamma ** sum(step >= m * steps_per_epoch for m in train.lr_milestones)
        if train.lr_schedule == "step":
            return train.lr_gamma ** (step // (train.lr_step_epochs * steps_per_epoch))
        return 1.0

    return factor



def lr_scheduler(optimizer: torch.optim.Optimizer, train: TrainSettings, *, epochs: int, steps_per_epoch: int
                 ) -> torch.optim.lr_scheduler.LambdaLR:
    """torch's ``LambdaLR`` stepping :func:`lr_factor` once per optimizer step.

    Why not ``SequentialLR(LinearLR, CosineAnnealingLR)`` / ``MultiStepLR``: the recipes need the cosine measured
    over the whole run *including* the warm-up and milestones counted in epochs, and a resumed run may be given
    more ``train.epochs`` — ``LambdaLR`` keeps no schedule constants in its state dict, so the factor is always
    today's settings at the restored step, while the built-in schedulers would restore the old ``T_max``. (Their
    numbers are not the reason: ``CosineAnnealingLR``'s chained form stays within 5e-14 of the closed form over
    100,000 steps.) Under cosine a resume refuses another ``train.epochs`` (:func:`~.checkpoint.config_differences`).
    """
    factor = lr_factor(train, epochs=epochs, steps_per_epoch=steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class EarlyWeightDecay:
    """``train.early_weight_decay``: the optimizer groups' weight decay replaced by another for the first
    ``train.early_weight_decay_epochs`` epochs, decided by the optimizer steps already taken (so a resumed run
    decays alike)."""

    def __init__(self, optimizer: torch.optim.Optimizer, train: TrainSettings, *, steps_per_epoch: int) -> None:
        missing = [i for i, g in enumerate(optimizer.param_groups) if "weight_decay" not in g]
        if missing:
            raise ConfigError(f"train.early_weight_decay: the optimizer {type(optimizer).__name__} has no "
                              f"weight_decay setting (param groups {missing})")
        self.optimizer, self.value = optimizer, train.early_weight_decay
        self.until = train.early_weight_decay_epochs * steps_per_epoch
        self.base = [g["weight_decay"] for g in optimizer.param_groups]

    def apply(self, steps_taken: int) -> None:
        """Set each group's weight decay for the step after ``steps_taken`` steps."""
        early = steps_taken < self.until
        for group, base in zip(self.optimizer.param_groups, self.base):
            group["weight_decay"] = self.value if early else base
