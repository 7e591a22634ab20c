"""``fit``: train one network in this process, the :class:`~neurocircuit.torch.trainer.Trainer` with one engaged
phase, for users who build their model and data in Python."""

from __future__ import annotations

from pathlib import Path

import torch
import xarray as xr
from torch import nn
from torch.utils.data import Dataset

from ..errors import ConfigError
from ..phases import EngagedPhase, MirrorSettings, Schedule
from ..simulation import TrainSettings
from .settings import TorchSettings
from .trainer import Trainer

__all__ = ["fit"]


def fit(model: nn.Module, train_set: Dataset, test_set: Dataset, *, optimizer: torch.optim.Optimizer,
        epochs: int, batch_size: int = 32, loss: str = "cross_entropy", seed: int = 0,
        record_every: int | str = "epoch", alignment_samples: int = 256, progress: bool | None = None,
        mirror: MirrorSettings | None = None, mirror_every: int = 0, mirror_steps: int = 1,
        mirror_follows_lr: bool = False, lr_schedule: str = "constant", out: str | Path | None = None,
        resume: bool = False, val_set: Dataset | None = None) -> xr.Dataset:
    """Train ``model`` (single process) and record the learning and alignment curves: the :class:`Trainer` with one
    engaged phase.

    Parameters
    ----------
    model
        A network with feedback layers (e.g. from :func:`neurocircuit.build_network` or ``convert``).
    train_set, test_set
        Map-style data sets of ``(input, target)``.
    optimizer
        Any torch optimizer over ``model.parameters()``; ``kp`` layers are attached to it.
    epochs, batch_size, loss, seed, record_every, alignment_samples, lr_schedule
        As in :class:`~neurocircuit.simulation.TrainSettings`; ``seed`` sets the shuffling order.
    mirror, mirror_every, mirror_steps, mirror_follows_lr
        Interleaved weight mirroring, as in :class:`~neurocircuit.phases.EngagedPhase`.
    out, resume
        Keep a checkpoint (and results) in ``out``; continue from it with ``resume``.
    val_set
        A validation set held out of the training data (e.g. from :func:`neurocircuit.data.load_splits`):
        recorded as ``val_loss``, ``val_accuracy``, ``val_top5`` beside the test metrics.

    Returns
    -------
    xarray.Dataset
        Dims ``step`` and ``layer``; coordinate ``epoch``; ``train_loss``, ``train_accuracy`` (sample means since
        the previous record), ``test_loss``, ``test_accuracy``, ``test_top5``, ``lr``, ``weight_angle``,
        ``norm_ratio``, ``gradient_angle``, ``update_angle``, ``effective_dim``, ``images_per_second`` and
        ``seconds_per_step``.
    """
    if mirror_every and mirror is None:
        raise ConfigError("mirror_every > 0 needs mirror settings")
    x0, y0 = test_set[0]
    n_classes = int(torch.as_tensor(y0).numel()) if loss == "mse" else _n_classes(train_set, test_set)
    train = TrainSettings(epochs=epochs, batch_size=batch_size, loss=loss, record_every=record_every,
                          alignment_samples=alignment_samples, lr_schedule=lr_schedule)
    device = next(model.parameters()).device
    trainer = Trainer(model, train_set, test_set, input_shape=tuple(torch.as_tensor(x0).shape), n_classes=n_classes,
                      optimizer=optimizer, train=train, torch_settings=TorchSettings(device=str(device)),
                      schedule=Schedule((EngagedPhase(mirror_every=mirror_every, mirror_steps=mirror_steps,
                                                      mirror_follows_lr=mirror_follows_lr),)),
                      mirror=mirror or MirrorSettings(), seed=seed, out=out, progress=progress, val_set=val_set)
    with torch.random.fork_rng(devices=[]):
        return trainer.run(resume=resume)


def _n_classes(*datasets: Dataset) -> int:
    tensors = [getattr(d, "tensors", None) for d in datasets]
    if all(t is not None for t in tensors):
        return int(max(int(t[1].max()) for t in tensors)) + 1  # type: ignore[index]
    return int(max(int(d[i][1]) for d in datasets for i in range(len(d)))) + 1  # type: ignore[arg-type]

