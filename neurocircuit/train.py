"""The torch trainer: one engine for every torch simulation, from an MLP on digits to ResNet-50 on ImageNet.

:class:`Trainer` runs a network through a schedule of phases (:mod:`neurocircuit.phases`) on one process or
many (``torchrun``: DDP), and :func:`fit` is its single-process Python entry point. Every run gets the same
things: the same records, atomic checkpoints with exact resume, the NaN stop, progress output.

Design, for exact resumption and identical replicas:

- Every rank builds the model from the run seed, so W and B start identical; DDP all-reduces W's gradients.
  B buffers are *excluded* from DDP's buffer broadcast; they stay identical by construction instead:
  Kolen-Pollack steps B with W's (all-reduced) gradient, and the mirror noise comes from a generator seeded the
  same on every rank.
- The learning-rate schedule is a function of the optimizer step (``LambdaLR``). The data order of epoch ``e`` is
  the ``e``-th permutation of a generator seeded with the run seed, drawn exactly as a shuffling
  ``DataLoader(generator=...)`` draws it; augmentation is a function of (seed, epoch, index).
- A checkpoint (every ``torch.checkpoint_every`` steps, at every epoch and phase end, and when the run is asked to
  stop with SIGINT/SIGTERM) holds W and B, optimizer, the KP twin optimizer, scheduler, grad scaler, the position,
  every rank's RNG states, the mirror and prenatal generators, the running sums and the records. It is written
  atomically by rank 0 and loaded with ``weights_only=True``. Finished mirror/prenatal phases are kept as
  ``phase-<name>.nc`` beside it.
- The loss is checked for NaN/inf every ``torch.log_every`` steps and before every checkpoint (the weights too),
  so a checkpoint never holds a diverged model; the error names the first bad step.

Time convention of the torch backend: one *step* is one optimizer update on one (global) minibatch, the rate
network at its steady state within the step; ``epoch`` is a coordinate counting passes over the training set.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import xarray as xr
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset
from tqdm.auto import tqdm

from .errors import ConfigError, FeedbackScaleWarning
from .nn.feedback_optim import FeedbackOptimizer
from .nn.metrics import alignment, effective_dimensionality, feedback_layers, weight_alignment
from .nn.mirror import mirror_gain, mirror_layers, mirror_step
from .phases import EngagedPhase, MirrorPhase, MirrorSettings, PrenatalPhase, Schedule
from .results import atomic_path, read_results, write_netcdf
from .simulation import TorchSettings, TrainSettings

__all__ = ["LOSSES", "TIME_STEP_CONVENTION", "make_optimizer", "lr_factor", "Trainer", "TrainingInterrupted",
           "DistContext", "ResumableSampler", "ShardSampler", "fit", "run_mirror_phase", "run_prenatal_phase",
           "resolve_device", "release_process_group", "CHECKPOINT_NAME", "RESULTS_NAME"]

TIME_STEP_CONVENTION = ("torch backend: one step = one optimizer update on one minibatch, the rate network "
                        "at steady state within the step; epoch = one pass over the training set")

#: Loss functions by name (mean over the batch). ``mse`` compares the output with the target vector (regression).
LOSSES: dict[str, Callable[..., Tensor]] = {"cross_entropy": F.cross_entropy, "mse": F.mse_loss}

CHECKPOINT_NAME = "checkpoint.pt"
RESULTS_NAME = "results.nc"
_CHECKPOINT_VERSION = 2
# B's scale relative to W outside which a mirror warns: LeNet-5 loses 5-7 pp at 0.5 (README, sweep_wm_robustness).
MIRROR_GAIN_RANGE = (0.8, 1.25)
_OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
               "rmsprop": torch.optim.RMSprop}
#: Settings that may change between a run and its resumption (they do not change the maths).
_RESUMABLE = {"torch.workers", "torch.checkpoint_every", "torch.log_every", "torch.device", "torch.compile",
              "train.epochs", "data.root", "data.download"}


class TrainingInterrupted(KeyboardInterrupt):
    """The run was asked to stop (signal or ``stop_after_steps``) and saved a checkpoint first."""


# ------------------------------------------------------------------------------------------- optimizer, lr
def make_optimizer(params: Any, name: str = "sgd", **settings: Any) -> torch.optim.Optimizer:
    """An optimizer by short name (sgd, adam, adamw, rmsprop) or by any ``torch.optim`` class name."""
    cls = _OPTIMIZERS.get(name.lower()) or getattr(torch.optim, name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ConfigError(f"unknown optimizer {name!r} (use {', '.join(_OPTIMIZERS)} or a torch.optim class name)")
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
        per = settings.pop("lr_per_256")
        if not isinstance(per, (int, float)) or isinstance(per, bool) or not math.isfinite(per) or per <= 0:
            raise ConfigError(f"optimizer.lr_per_256 must be a finite number > 0, got {per!r}")
        settings["lr"] = per * global_batch / 256
    lr = settings.get("lr")
    if lr is not None and (not isinstance(lr, (int, float)) or isinstance(lr, bool) or not math.isfinite(lr)
                           or lr <= 0):
        raise ConfigError(f"optimizer.lr must be a finite number > 0, got {lr!r}")
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


# ----------------------------------------------------------------------------------------- processes, data
@dataclass(frozen=True)
class DistContext:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str) -> torch.device:
    """``auto`` = CUDA if there is one, else CPU; CUDA without an index takes this process's LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"torch.device: unknown device {name!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"torch.device {name!r}: CUDA is not available here")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


_OWN_GROUP: list[bool] = [False]  # whether this module opened the process group (and so closes it)


def cuda_default(setting: bool | None, device: torch.device) -> bool:
    """A switch that is on by default on CUDA only (``channels_last``, ``compile``): None follows the device."""
    return setting if setting is not None else device.type == "cuda"


def release_process_group() -> None:
    """Close the process group the trainer opened under ``torchrun`` (one group serves every arm and seed of a
    simulation; a group the caller opened is left alone)."""
    if _OWN_GROUP[0] and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _OWN_GROUP[0] = False


def _init_distributed(device: torch.device) -> DistContext:
    """Join the process group ``torchrun`` describes in the environment (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    _OWN_GROUP[0] = True
    return DistContext(dist.get_rank(), world, local)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of sample ``index`` in ``epoch`` (a fixed mixing of the three numbers)."""
    return ((seed * 1_000_003 + epoch) * 998_244_353 + index * 2_654_435_761) % (2**63 - 1)


class ResumableSampler(Sampler):
    """Shuffled epochs, one shard per rank, startable part-way into an epoch; yields ``(index, augmentation
    seed)`` pairs.

    Epoch ``e``'s order is drawn from a generator seeded with ``seed`` exactly as a ``DataLoader(shuffle=True,
    generator=torch.Generator().manual_seed(seed))`` draws its ``e``-th epoch, so one process sees the same
    batches as that loader. With several ranks the permutation is cut to a multiple of the world size and dealt
    out round-robin.
    """

    def __init__(self, size: int, *, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        self.size, self.num_replicas, self.rank, self.seed = size, num_replicas, rank, seed
        self.epoch, self.start = 0, 0
        self._cache: tuple[int, torch.Generator] | None = None  # (epochs drawn, generator after them)

    def permutation(self, epoch: int) -> Tensor:
        """The shuffled order of ``epoch`` (the same on every rank)."""
        if self._cache is None or self._cache[0] > epoch:
            self._cache = (0, torch.Generator().manual_seed(self.seed))
        done, generator = self._cache
        for _ in range(done, epoch + 1):
            # A DataLoader iterator draws its base seed, then the sampler draws a permutation, and one more
            # (empty) permutation when it is exhausted.
            torch.empty((), dtype=torch.int64).random_(generator=generator)
            order = torch.randperm(self.size, generator=generator)
            torch.randperm(self.size, generator=generator)
        self._cache = (epoch + 1, generator)
        return order

    def set_position(self, epoch: int, start: int) -> None:
        """Serve epoch ``epoch`` from the ``start``-th sample of this rank's shard on."""
        self.epoch, self.start = epoch, start

    def shard(self) -> Tensor:
        order = self.permutation(self.epoch)
        if self.num_replicas > 1:
            order = order[: len(order) - len(order) % self.num_replicas][self.rank:: self.num_replicas]
        return order

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self.shard()[self.start:].tolist():
            yield index, sample_seed(self.seed, self.epoch, index)

    def __len__(self) -> int:
        return self.size // self.num_replicas - self.start


class ShardSampler(Sampler[int]):
    """Every ``num_replicas``-th index from ``rank`` on, in order, without padding (for evaluation)."""

    def __init__(self, size: int, *, num_replicas: int, rank: int) -> None:
        self.indices = range(rank, size, num_replicas)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class _Indexed(Dataset):
    """Serves ``base[index]`` for the ``(index, seed)`` pairs of :class:`ResumableSampler` (a data set that
    augments takes the pair itself)."""

    def __init__(self, base: Dataset) -> None:
        self.base = base
        self.takes_seed = getattr(base, "takes_seed", False)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]) -> Any:
        return self.base[item] if self.takes_seed else self.base[item[0]]


BatchMaker = Callable[[tuple[Tensor, ...], Tensor, Tensor | None], tuple[Tensor, ...]]


def _in_memory_tensors(dataset: Dataset) -> tuple[tuple[Tensor, ...], BatchMaker | None] | None:
    """The tensors of an in-memory data set and, if it augments, its batched ``batch_on_device`` (else None: a
    ``TensorDataset`` served as is); None for a data set that needs the per-sample path."""
    if isinstance(dataset, _Indexed):
        dataset = dataset.base
    maker = getattr(dataset, "batch_on_device", None)
    if maker is not None:
        return tuple(dataset.tensors), maker  # type: ignore[attr-defined]
    if isinstance(dataset, TensorDataset) and not getattr(dataset, "takes_seed", False):
        return tuple(dataset.tensors), None
    return None


class _TensorBatches:
    """Batches ``tensors[k][indices]`` (or ``make(tensors, indices, seeds)`` for a data set that augments) in the
    order a sampler yields (``(index, seed)`` pairs or indices) — what a ``DataLoader`` with the default collate
    would give, without the per-sample Python.

    The epoch's indices (and seeds) go to the device in one copy when iteration starts: a copy from pageable host
    memory per batch would make the host wait for the device to finish the previous step every step (a blocking
    copy synchronises the stream), so the Python of one step could no longer overlap the kernels of the last."""

    def __init__(self, tensors: tuple[Tensor, ...], sampler: Sampler, batch_size: int,
                 make: BatchMaker | None = None) -> None:
        self.tensors, self.sampler, self.batch_size, self.make = tensors, sampler, batch_size, make

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        items = list(self.sampler)
        if not items:
            return
        device = self.tensors[0].device
        pairs = isinstance(items[0], tuple)
        index = torch.tensor([int(i[0]) if pairs else int(i) for i in items]).to(device)
        seeds = torch.tensor([int(i[1]) for i in items]).to(device) if pairs and self.make is not None else None
        for start in range(0, len(items), self.batch_size):
            batch = slice(start, start + self.batch_size)
            if self.make is None:
                yield tuple(t[index[batch]] for t in self.tensors)
            else:
                yield self.make(self.tensors, index[batch], None if seeds is None else seeds[batch])


class _StopFlag:
    """Turns SIGINT/SIGTERM into a request the loop honours between steps (after saving a checkpoint).
    A second SIGINT interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    @contextlib.contextmanager
    def installed(self) -> Iterator[_StopFlag]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        try:
            yield self
        finally:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)


# ------------------------------------------------------------------------------------- mirror and prenatal
def _phase_dataset(name: str, records: list[tuple[int, dict[str, float], xr.Dataset]]) -> xr.Dataset:
    """Stack per-record scalars and per-layer metrics along ``<name>_step``; variables get the phase's prefix."""
    dim = f"{name}_step"
    steps = [r[0] for r in records]
    per_layer = xr.concat([r[2] for r in records], dim=dim, coords="different", compat="equals", join="exact")
    per_layer = per_layer.assign_coords({dim: steps}).rename({v: f"{name}_{v}" for v in per_layer.data_vars})
    scalars = {f"{name}_{k}": (dim, np.array([r[1][k] for r in records], dtype=float), {"units": "1"})
               for k in records[0][1]}
    ds = per_layer.merge(xr.Dataset(scalars, coords={dim: steps}), compat="override", join="exact")
    ds[dim].attrs["long_name"] = f"steps of the {name} phase done"
    return ds.reset_coords([c for c in ("layer_rule",) if c in ds.coords])


def run_mirror_phase(model: nn.Module, phase: MirrorPhase, *, generator: torch.Generator | None = None
                     ) -> xr.Dataset:
    """Run a mirror phase on ``model``'s ``wm`` layers, recording the B-W angle every ``record_every`` steps.

    Returns variables ``<name>_weight_angle`` and ``<name>_norm_ratio`` over ``(<name>_step, layer)``.
    """
    records = [(0, {}, weight_alignment(model))]
    mirrored = mirror_layers(model)
    for step in range(1, phase.steps + 1):
        mirror_step(model, phase.settings, generator=generator, layers=mirrored)
        if step % phase.record_every == 0 or step == phase.steps:
            records.append((step, {}, weight_alignment(model)))
    return _phase_dataset(phase.name, records)


def run_prenatal_phase(model: nn.Module, phase: PrenatalPhase, *, input_shape: tuple[int, ...], n_classes: int,
                       optimizer: torch.optim.Optimizer, generator: torch.Generator | None = None,
                       progress: bool | None = None) -> xr.Dataset:
    """Train ``model`` on random noise with random labels (Cheon et al.); B is never changed.

    No :class:`FeedbackOptimizer` is attached, so even ``kp`` layers keep their B. With ``phase.dataset_size`` the
    noise is a fixed set of patterns, each with its fixed label, in shuffled passes (what aligns W with B);
    without it every sample is fresh (the control). With ``phase.keep = "norms"`` the parameters leave the phase
    in their initial directions with the norms the phase gave them (the norm-matched control). Returns
    ``<name>_loss``, ``<name>_weight_angle``, ``<name>_norm_ratio``, ``<name>_weight_norm`` and
    ``<name>_gradient_angle`` and ``<name>_update_angle`` (on a fixed batch of the noise) over ``<name>_step``.
    """
    device = next(model.parameters()).device
    model.train()
    window: list[float] = []

    def draw(n: int) -> tuple[Tensor, Tensor]:
        if phase.inputs == "noise":
            x = torch.randn((n, *input_shape), generator=generator).mul_(phase.noise_std)
        else:
            x = torch.zeros((n, *input_shape))
        if phase.labels == "random":
            return x, torch.randint(0, n_classes, (n,), generator=generator)
        # The uniform distribution as target: an error signal that carries no label information.
        return x, torch.full((n, n_classes), 1.0 / n_classes)

    fixed = draw(phase.dataset_size) if phase.dataset_size is not None else None
    # The gradient angle is measured on the same noise batch at every record.
    probe = tuple(t[:256].to(device) for t in (fixed if fixed is not None else draw(256)))

    def measure() -> xr.Dataset:
        return alignment(model, *probe, loss_fn=F.cross_entropy)

    records = [(0, {"loss": math.nan}, measure())]
    before = {name: t.detach().clone() for name, t in model.named_parameters()} if phase.keep == "norms" else {}
    order = torch.empty(0, dtype=torch.int64)
    bar = tqdm(total=phase.steps, disable=None if progress is None else not progress, desc=phase.name, leave=False)
    try:
        for step in range(1, phase.steps + 1):
            n = min(phase.batch_size, phase.samples - (step - 1) * phase.batch_size)
            if fixed is None:
                x, target = draw(n)
            else:  # shuffled passes over the fixed noise patterns
                while len(order) < n:
                    order = torch.cat([order, torch.randperm(phase.dataset_size, generator=generator)])
                idx, order = order[:n], order[n:]
                x, target = fixed[0][idx], fixed[1][idx]
            loss = F.cross_entropy(model(x.to(device)), target.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            window.append(loss.item())
            bar.update(1)
            if not math.isfinite(window[-1]):
                raise FloatingPointError(f"phase {phase.name!r}: the prenatal loss became {window[-1]} at step "
                                         f"{step}")
            if step % phase.record_every == 0 or step == phase.steps:
                records.append((step, {"loss": float(np.mean(window))}, measure()))
                window.clear()
    finally:
        bar.close()
    if before:
        _restore_directions(model, before)
    return _phase_dataset(phase.name, records)


@torch.no_grad()
def _restore_directions(model: nn.Module, before: dict[str, Tensor]) -> None:
    """The norm-matched control: every parameter back to its direction in ``before``, keeping its current norm."""
    for name, param in model.named_parameters():
        old = before[name]
        norm, old_norm = param.norm(), old.norm()
        param.copy_(old * (norm / old_norm) if old_norm > 0 else param)


# ------------------------------------------------------------------------------------------------ trainer
_PER_LAYER = {
    "weight_angle": {"units": "degree", "long_name": "angle between B and W^T"},
    "norm_ratio": {"units": "1", "long_name": "||B|| / ||W||"},
    "weight_norm": {"units": "1", "long_name": "||W|| (Frobenius)"},
    "gradient_angle": {"units": "degree", "long_name": "angle between error sent through B and through W^T"},
    "update_angle": {"units": "degree", "long_name": "angle between the rule's and backprop's update of W"},
    "effective_dim": {"units": "1", "long_name": "participation ratio of W's singular values"},
}
_SCALARS = {"lr": "1", "train_loss": "1", "train_accuracy": "1", "test_loss": "1", "test_accuracy": "1",
            "test_top5": "1", "images_per_second": "1/s", "replica_spread": "1"}
#: Recorded beside ``test_*`` when the trainer has a validation set (``[data] validation``).
_VAL_SCALARS = {"val_loss": ("1", "loss on the validation set (held out of the training data)"),
                "val_accuracy": ("1", "top-1 accuracy on the validation set (held out of the training data)"),
                "val_top5": ("1", "top-5 accuracy on the validation set (held out of the training data)")}
_TEST_NAMES = {"test_loss": "loss on the test set", "test_accuracy": "top-1 accuracy on the test set",
               "test_top5": "top-5 accuracy on the test set"}


class Trainer:
    """One run of a network through its phases on this process (one rank of a ``torchrun`` job, or alone).

    Parameters
    ----------
    model
        A network with feedback layers, on the CPU; the trainer moves it to ``device``.
    train_set, test_set
        Map-style data sets of ``(input, target)``; a training set with ``takes_seed = True`` is indexed with
        ``(index, augmentation seed)`` pairs.
    input_shape, n_classes
        Of one sample, and the number of outputs (prenatal noise is drawn in that shape, with that many labels).
    optimizer
        The ``[optimizer]`` table (name, settings; ``lr_per_256`` scales with the global batch), or a built
        optimizer over ``model.parameters()`` (then used as is for the engaged phase).
    train, torch_settings, schedule, mirror
        The simulation's records (:class:`~neurocircuit.simulation.TrainSettings`,
        :class:`~neurocircuit.simulation.TorchSettings`, the arm's :class:`~neurocircuit.phases.Schedule` and the
        shared :class:`~neurocircuit.phases.MirrorSettings`).
    seed
        The run seed: data order, augmentation, the mirror and prenatal noise, and the rules' randomness.
    val_set
        A validation set held out of the training data (served as the test set is), evaluated at every record
        beside the test set as ``val_loss``, ``val_accuracy`` and ``val_top5``; None: no ``val_*`` records.
    out
        A folder for ``checkpoint.pt``, ``results.nc`` and finished phases (None: nothing is written).
    config
        The simulation table, stored in checkpoints: a resumed run must have the same maths settings.
    """

    def __init__(self, model: nn.Module, train_set: Dataset, test_set: Dataset, *, input_shape: tuple[int, ...],
                 n_classes: int, optimizer: Mapping[str, Any] | torch.optim.Optimizer, train: TrainSettings,
                 torch_settings: TorchSettings | None = None, schedule: Schedule | None = None,
                 mirror: MirrorSettings | None = None, seed: int = 0, out: str | Path | None = None,
                 label: str = "run", progress: bool | None = None, config: Mapping[str, Any] | None = None,
                 val_set: Dataset | None = None) -> None:
        torch_settings = torch_settings or TorchSettings()
        schedule = schedule or Schedule((EngagedPhase(),))
        self.train, self.settings, self.schedule = train, torch_settings, schedule
        self.mirror = mirror or MirrorSettings()
        self.seed, self.label, self.progress = seed, label, progress
        self.out = None if out is None else Path(out)
        self.config = dict(config or {})
        self.device = resolve_device(torch_settings.device)
        self.ctx = _init_distributed(self.device)
        self.train_set, self.test_set, self.val_set = _Indexed(train_set), test_set, val_set
        if val_set is not None and len(val_set) == 0:  # type: ignore[arg-type]
            raise ConfigError("the validation set is empty")
        self._device_tensors: dict[int, tuple[Tensor, ...]] = {}  # in-memory data sets, moved to the device once
        self.input_shape, self.n_classes = tuple(input_shape), n_classes
        self.loss_fn = LOSSES[train.loss]
        self.classification = train.loss == "cross_entropy"
        self.channels_last = cuda_default(torch_settings.channels_last, self.device)
        self.compile = cuda_default(torch_settings.compile, self.device)
        self.model = model.to(self.device, memory_format=torch.channels_last if self.channels_last
                              else torch.preserve_format)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None,
                          "auto": torch.bfloat16 if self.device.type == "cuda" else None}[torch_settings.amp]
        self.sampler = ResumableSampler(len(train_set), num_replicas=self.ctx.world_size, rank=self.ctx.rank,
                                        seed=seed)
        per_rank = len(self.sampler)
        full, rest = divmod(per_rank, train.batch_size)
        self.steps_per_epoch = full + (1 if not train.drop_last and rest else 0)
        if self.steps_per_epoch == 0:
            raise ConfigError(f"the training set ({len(train_set)} samples) gives no batch of {train.batch_size} "
                              f"per process ({self.ctx.world_size} processes, drop_last = {train.drop_last})")
        if train.steps_per_epoch is not None:
            self.steps_per_epoch = min(self.steps_per_epoch, train.steps_per_epoch)
        engaged = schedule.engaged
        self.epochs = 0 if engaged is None else (train.epochs if engaged.epochs is None else engaged.epochs)
        self.every = self.steps_per_epoch if train.record_every == "epoch" else int(train.record_every)
        if isinstance(optimizer, torch.optim.Optimizer):
            # A prenatal phase then gets the same class with the same learning rate (and momentum, if any).
            self.optimizer_spec: tuple[str, dict[str, Any]] = (type(optimizer).__name__, {
                k: v for k, v in optimizer.defaults.items() if k in ("lr", "momentum")})
            self.optimizer = optimizer
        else:
            self.optimizer_spec = optimizer_settings(optimizer, train.batch_size * self.ctx.world_size)
            self.optimizer = make_optimizer(self.model.parameters(), self.optimizer_spec[0],
                                            **self.optimizer_spec[1])
        self.base_lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_factor(train, epochs=self.epochs, steps_per_epoch=self.steps_per_epoch))
        self.feedback_optimizer = FeedbackOptimizer(self.model, self.optimizer)
        self.base_weight_decays = self._base_weight_decays()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype is torch.float16)
        # One generator per purpose, so adding a phase does not change the others' noise.
        self.mirror_generator = torch.Generator(device=self.device).manual_seed(10_000 + seed)
        self.prenatal_generator = torch.Generator().manual_seed(20_000 + seed)
        self.mirrored = mirror_layers(self.model)
        self._check_mirror_gain()
        self.layers = feedback_layers(self.model)
        torch.manual_seed(seed + 1000 * self.ctx.rank)  # the rules' and modules' own randomness (brsf, dropout)

        self.phase_index = self.epoch = self.batch = self.step = 0
        self.last_lr = self.scheduler.get_last_lr()[0]  # the lr of the last step taken (what records report)
        self.records: list[dict[str, Any]] = []
        self.sums = self._zero_sums()  # since the last record
        self.train_seconds = 0.0  # up to the last record
        self.probe: tuple[Tensor, Tensor] | None = None
        self.pending: list[tuple[int, Tensor]] = []
        self.phase_results: dict[str, xr.Dataset] = {}
        self.last_checkpoint_step: int | None = None
        self.finished = False

    # ----------------------------------------------------------------------------------------------- state
    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.out is None else self.out / CHECKPOINT_NAME

    def _zero_sums(self) -> dict[str, float]:
        return {"loss": 0.0, "correct": 0.0, "count": 0.0, "seconds": 0.0}

    def state_dict(self) -> dict[str, Any]:
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        ranks_rng = [rng]
        if self.ctx.distributed:
            ranks_rng = [None] * self.ctx.world_size  # type: ignore[list-item]
            dist.all_gather_object(ranks_rng, {k: v.cpu() for k, v in rng.items()})
        return {
            "version": _CHECKPOINT_VERSION, "config": self.config, "world_size": self.ctx.world_size,
            "seed": self.seed, "phase_index": self.phase_index, "finished": self.finished,
            "epoch": self.epoch, "batch": self.batch, "step": self.step,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "feedback_optimizer": self.feedback_optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": ranks_rng,
            "mirror_generator": self.mirror_generator.get_state(),
            "prenatal_generator": self.prenatal_generator.get_state(), "sums": dict(self.sums),
            "train_seconds": self.train_seconds, "last_lr": self.last_lr,
            "records": self.records,
        }

    def save_checkpoint(self) -> None:
        self._check_finite()
        # A finite loss at step t says nothing of the update it caused: check the weights themselves too.
        norms = torch._foreach_norm([t.detach() for t in self.model.state_dict().values() if t.is_floating_point()])
        ok = torch.isfinite(torch.stack(norms)).all().float().reshape(1)
        if self.ctx.distributed:
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        if ok.item() < 1:
            raise FloatingPointError(f"the weights or BatchNorm statistics became NaN/inf at step {self.step} "
                                     f"(epoch {self.epoch + 1}); {self._last_good()}")
        if self.checkpoint_path is None:
            return
        state = self.state_dict()
        if self.ctx.rank == 0:
            with atomic_path(self.checkpoint_path) as tmp:
                torch.save(state, tmp)
        self.last_checkpoint_step = self.step

    def load_checkpoint(self) -> None:
        path = self.checkpoint_path
        assert path is not None
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # truncated, empty, garbage, or a pickle that is not plain tensors and data
            raise ConfigError(f"--resume: {path} is not a readable neurocircuit checkpoint ({type(exc).__name__}); "
                              "move it away to start that run afresh") from None
        if not isinstance(state, dict) or state.get("version") != _CHECKPOINT_VERSION:
            version = state.get("version") if isinstance(state, dict) else None
            raise ConfigError(f"{path}: checkpoint version {version!r} is not {_CHECKPOINT_VERSION} "
                              "(not written by this neurocircuit version: start a new --out)")
        changed = _config_differences(state["config"], self.config)
        if changed or state["seed"] != self.seed:
            raise ConfigError(f"--resume: {path} was written with different settings: "
                              f"{', '.join(changed) or 'seed'} (start a new --out, or set them back)")
        if state["world_size"] != self.ctx.world_size:
            raise ConfigError(f"--resume: the checkpoint was written by {state['world_size']} processes, this "
                              f"run has {self.ctx.world_size} (the data order depends on it)")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.feedback_optimizer.load_state_dict(state["feedback_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.mirror_generator.set_state(state["mirror_generator"].cpu())
        self.prenatal_generator.set_state(state["prenatal_generator"].cpu())
        rng = state["rng"][self.ctx.rank]
        torch.set_rng_state(rng["cpu"].cpu())
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"].cpu(), self.device)
        self.phase_index, self.finished = state["phase_index"], state["finished"]
        self.epoch, self.batch, self.step = state["epoch"], state["batch"], state["step"]
        self.sums, self.records, self.last_lr = dict(state["sums"]), list(state["records"]), state["last_lr"]
        self.train_seconds = state["train_seconds"]
        for phase in self.schedule.phases[: self.phase_index]:
            if not isinstance(phase, EngagedPhase):
                self.phase_results[phase.name] = read_results(self._phase_file(phase.name))
        last = len(self.schedule.phases) - 1
        if isinstance(self.schedule.phases[last], EngagedPhase) and self.phase_index > last \
                and self.epoch < self.epochs:
            self.phase_index, self.finished = last, False  # more epochs asked of a finished run: go on training
        self.last_checkpoint_step = self.step

    def _phase_file(self, name: str) -> Path:
        assert self.out is not None
        return self.out / f"phase-{name}.nc"

    # ------------------------------------------------------------------------------------------- checking
    def _check_finite(self) -> None:
        """Raise FloatingPointError naming the first step whose loss was NaN/inf (on any rank)."""
        if not self.pending:
            return
        losses = torch.stack([loss for _, loss in self.pending]).float()
        finite = torch.isfinite(losses)
        ok = torch.tensor([float(finite.all())], device=self.device)
        if self.ctx.distributed:
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        if ok.item() < 1:
            bad = (~finite).nonzero()
            if len(bad):
                step = self.pending[int(bad[0])][0]
                where = f"at step {step} (epoch {(step - 1) // self.steps_per_epoch + 1})"
            else:
                where = "on another process"
            value = float(losses[bad[0]]) if len(bad) else math.nan
            raise FloatingPointError(f"the training loss became {value} {where}; {self._last_good()}")
        self.pending.clear()

    def _last_good(self) -> str:
        if self.last_checkpoint_step is None:
            return "no checkpoint was written"
        return f"the last good checkpoint is {self.checkpoint_path} (step {self.last_checkpoint_step})"

    def _stop_requested(self, flag: _StopFlag, stop_after: int | None) -> bool:
        wanted = flag.requested or (stop_after is not None and self.step >= stop_after)
        if not self.ctx.distributed:
            return wanted
        # Ranks see signals at different steps: agree at the check points, so collectives stay matched.
        if self.step % self.settings.log_every:
            return False
        votes = torch.tensor([float(wanted)], device=self.device)
        dist.all_reduce(votes, op=dist.ReduceOp.MAX)
        return bool(votes.item() > 0)

    # --------------------------------------------------------------------------------------------- running
    def run(self, *, resume: bool = False, stop_after_steps: int | None = None) -> xr.Dataset:
        """Run (or, with ``resume`` and a checkpoint in ``out``, continue) every phase; returns the results and, with
        ``out``, writes ``results.nc`` there. ``stop_after_steps`` stops like a signal after that many engaged
        steps (checkpoint, then :class:`TrainingInterrupted`)."""
        try:
            if self.out is not None:
                if self.out.exists() and not self.out.is_dir():
                    raise ConfigError(f"output {str(self.out)!r} exists and is not a folder")
                if self.checkpoint_path.exists() and not resume:  # type: ignore[union-attr]
                    raise ConfigError(f"{self.checkpoint_path} exists: pass --resume to continue that run, or "
                                      "choose another --out")
                self.out.mkdir(parents=True, exist_ok=True)
                if resume and self.checkpoint_path.exists():  # type: ignore[union-attr]
                    self.load_checkpoint()
            with _StopFlag().installed() as flag:
                for index, phase in enumerate(self.schedule.phases):
                    if index < self.phase_index:
                        continue
                    if isinstance(phase, EngagedPhase):
                        self._engaged(phase, flag, stop_after_steps)
                    else:
                        self._other_phase(phase)
                    self.phase_index = index + 1
                    self.finished = self.phase_index == len(self.schedule.phases)
                    self.save_checkpoint()
            results = self.results()
            if self.out is not None and self.ctx.rank == 0:
                write_netcdf(results, self.out / RESULTS_NAME)
            return results
        finally:
            self.feedback_optimizer.remove()

    def _check_mirror_gain(self) -> None:
        """Warn where a mirror's settings let B settle far from W's scale (see :func:`~neurocircuit.nn.mirror_gain`)."""
        if not self.mirrored:
            return
        used = [(f"phase {p.name!r}", p.settings) for p in self.schedule.phases if isinstance(p, MirrorPhase)]
        engaged = self.schedule.engaged
        if engaged is not None and engaged.mirror_every:
            used.append(("[mirror] (the interleaved mirror steps)", self.mirror))
        for where, settings in used:
            gain = mirror_gain(settings)
            if gain is not None and not MIRROR_GAIN_RANGE[0] <= gain <= MIRROR_GAIN_RANGE[1]:
                warnings.warn(
                    f"{where}: B settles at {gain:.3g} x W (learning_rate {settings.learning_rate:g} x noise_std^2 "
                    f"{settings.noise_std ** 2:g} / decay {settings.decay:g}), which scales the error each wm layer "
                    "sends down by as much; make the product 1, or (dense mirroring, no active_units) set "
                    "mirror.normalize = true",
                    FeedbackScaleWarning, stacklevel=3)

    def _other_phase(self, phase: MirrorPhase | PrenatalPhase) -> None:
        """A mirror or prenatal phase, identical on every rank (same seeds); run whole, then kept on disk."""
        if isinstance(phase, MirrorPhase):
            ds = run_mirror_phase(self.model, phase, generator=self.mirror_generator)
        elif isinstance(phase, PrenatalPhase):
            name, settings = self.optimizer_spec
            if phase.learning_rate is not None:
                settings = {**settings, "lr": phase.learning_rate}
            optimizer = make_optimizer(self.model.parameters(), name, **settings)
            ds = run_prenatal_phase(self.model, phase, input_shape=self.input_shape, n_classes=self.n_classes,
                                    optimizer=optimizer, generator=self.prenatal_generator,
                                    progress=self._progress_enabled())
        else:  # dispatch is explicit: a kind without a branch here is never run as another
            raise ConfigError(f"phase {phase.name!r}: the torch backend has no phase of kind "
                              f"{getattr(phase, 'kind', type(phase).__name__)!r}")
        self.phase_results[phase.name] = ds
        if self.out is not None and self.ctx.rank == 0:
            write_netcdf(ds, self._phase_file(phase.name))

    def _progress_enabled(self) -> bool | None:
        """Bars on rank 0 only; None: on a terminal."""
        return False if self.ctx.rank != 0 else self.progress

    def _engaged(self, phase: EngagedPhase, flag: _StopFlag, stop_after: int | None) -> None:
        forward: nn.Module = self.model
        if self.ctx.distributed:
            ignored = [f"{name}.feedback_weight" for name, m in self.layers if m.rule.stores_feedback]
            nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self.model, ignored)
            forward = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.compile:
            forward = torch.compile(forward)  # type: ignore[assignment]
        self.probe = self._probe()
        if not self.records:
            self.record()
        while self.epoch < self.epochs:
            self._epoch(phase, forward, flag, stop_after)
            self.epoch, self.batch = self.epoch + 1, 0
            if self.step % self.every and self.epoch == self.epochs:
                self.record()
            if self.epoch < self.epochs:  # the last epoch's checkpoint is the phase's
                self.save_checkpoint()

    def _probe(self) -> tuple[Tensor, Tensor] | None:
        if not self.train.alignment_samples:
            return None
        x, y = next(iter(DataLoader(self.test_set, batch_size=self.train.alignment_samples)))
        return self._to_device(x, y, self.test_set)

    def _loader(self, dataset: Dataset, sampler: Sampler, *, batch_size: int, train: bool = False
                ) -> Iterable[tuple[Tensor, Tensor]]:
        workers = self.settings.workers
        in_memory = _in_memory_tensors(dataset)
        if in_memory is not None and not workers:
            # In-memory data: index the tensors (held on the device) batch by batch, augmenting whole batches there,
            # instead of fetching and collating sample by sample — the same batches, in the same order.
            tensors, make = in_memory
            key = id(tensors[0])
            if key not in self._device_tensors:
                self._device_tensors[key] = tuple(t.to(self.device) for t in tensors)
            return _TensorBatches(self._device_tensors[key], sampler, batch_size, make)
        # A training loader draws its workers' base seed from its own generator, not from the global RNG that the
        # rules use (the order and augmentation come from the sampler's seeds).
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                          pin_memory=self.device.type == "cuda", prefetch_factor=4 if workers else None,
                          generator=torch.Generator() if train else None)

    def _to_device(self, x: Tensor, y: Tensor, dataset: Dataset) -> tuple[Tensor, Tensor]:
        x = x.to(self.device, non_blocking=True)
        batch_transform = getattr(dataset.base if isinstance(dataset, _Indexed) else dataset, "batch_transform", None)
        if batch_transform is not None:  # e.g. uint8 images scaled and normalised here, a batch at a time
            x = batch_transform(x)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device, non_blocking=True)

    def _base_weight_decays(self) -> list[float] | None:
        """The optimizer groups' own weight decays, where ``train.early_weight_decay`` replaces them early on."""
        if self.train.early_weight_decay is None:
            return None
        missing = [i for i, g in enumerate(self.optimizer.param_groups) if "weight_decay" not in g]
        if missing:
            raise ConfigError(f"train.early_weight_decay: the optimizer {type(self.optimizer).__name__} has no "
                              f"weight_decay setting (param groups {missing})")
        return [g["weight_decay"] for g in self.optimizer.param_groups]

    def _set_weight_decay(self) -> None:
        # Decided by the optimizer steps already taken (the scheduler's count), so a resumed run decays alike.
        early = self.scheduler.last_epoch < self.train.early_weight_decay_epochs * self.steps_per_epoch
        for group, base in zip(self.optimizer.param_groups, self.base_weight_decays):
            group["weight_decay"] = self.train.early_weight_decay if early else base

    def _train_loss(self, output: Tensor, target: Tensor) -> Tensor:
        if self.classification and self.train.label_smoothing:
            return F.cross_entropy(output, target, label_smoothing=self.train.label_smoothing)
        return self.loss_fn(output, target)

    def _epoch(self, phase: EngagedPhase, forward: nn.Module, flag: _StopFlag, stop_after: int | None) -> None:
        self.model.train()
        self.sampler.set_position(self.epoch, self.batch * self.train.batch_size)
        loader = self._loader(self.train_set, self.sampler, batch_size=self.train.batch_size, train=True)
        progress = self._progress_enabled()
        bar = tqdm(total=self.steps_per_epoch, initial=self.batch, leave=False, unit="step",
                   desc=f"{self.label} epoch {self.epoch + 1}/{self.epochs}",
                   disable=None if progress is None else not progress)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.float64, device=self.device)
        count, started = 0, time.perf_counter()
        mirror_every = phase.mirror_every if self.mirrored else 0

        def fold_in() -> None:  # move the running sums into the checkpointable floats
            nonlocal count, started
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.sums["loss"] += loss_sum.item()
            self.sums["correct"] += correct.item()
            self.sums["count"] += count
            self.sums["seconds"] += time.perf_counter() - started
            loss_sum.zero_(), correct.zero_()
            count, started = 0, time.perf_counter()

        try:
            for x, y in loader:
                if self.batch >= self.steps_per_epoch:
                    break
                x, y = self._to_device(x, y, self.train_set)
                with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                    enabled=self.amp_dtype is not None):
                    output = forward(x)
                    loss = self._train_loss(output, y)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if self.base_weight_decays is not None:
                    self._set_weight_decay()
                self.scaler.step(self.optimizer)  # KP's B steps with it (FeedbackOptimizer's hook)
                self.scaler.update()
                lr_used = self.last_lr = self.scheduler.get_last_lr()[0]
                self.scheduler.step()
                self.step += 1
                self.batch += 1
                if mirror_every and self.step % mirror_every == 0:
                    # The feedback plasticity follows the learning rate of the step just taken.
                    scale = lr_used / self.base_lr if phase.mirror_follows_lr else 1.0
                    for _ in range(phase.mirror_steps):
                        mirror_step(self.model, self.mirror, generator=self.mirror_generator, rate_scale=scale,
                                    layers=self.mirrored)
                loss = loss.detach()
                n = len(y)
                loss_sum += loss.double() * n
                if self.classification:
                    correct += (output.detach().argmax(-1) == y).sum().double()
                count += n
                self.pending.append((self.step, loss))
                bar.update(1)
                if self.step % self.settings.log_every == 0:
                    self._check_finite()
                    bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                if self.step % self.every == 0:
                    fold_in()
                    self.record()
                    started = time.perf_counter()  # evaluation is not training time (images_per_second)
                    bar.set_postfix(test_acc=f"{self.records[-1]['test_accuracy']:.3f}", refresh=False)
                if self.settings.checkpoint_every and self.step % self.settings.checkpoint_every == 0 \
                        and self.batch < self.steps_per_epoch:
                    fold_in()
                    self.save_checkpoint()
                if self._stop_requested(flag, stop_after):
                    fold_in()
                    self.save_checkpoint()
                    raise TrainingInterrupted(f"stopped at step {self.step}"
                                              + (f"; resume from {self.checkpoint_path}" if self.out else ""))
                if self.batch >= self.steps_per_epoch:
                    break
        finally:
            bar.close()
        fold_in()
        self._check_finite()

    # ------------------------------------------------------------------------------------------ records
    @torch.no_grad()
    def evaluate(self, dataset: Dataset | None = None) -> dict[str, float]:
        """Loss, top-1 and top-5 accuracy (NaN for regression) on the test set, or on ``dataset`` (sharded over ranks,
        summed); keys ``test_*`` either way."""
        self.model.eval()
        dataset = self.test_set if dataset is None else dataset
        sampler = ShardSampler(len(dataset), num_replicas=self.ctx.world_size, rank=self.ctx.rank)
        loader = self._loader(dataset, sampler, batch_size=max(self.train.batch_size, 256))
        k = min(5, self.n_classes)
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)
        for i, (x, y) in enumerate(loader):
            if self.train.val_batches is not None and i >= self.train.val_batches:
                break
            x, y = self._to_device(x, y, dataset)
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                output = self.model(x)
            n = float(len(y))
            top1 = top5 = torch.zeros((), dtype=torch.float64, device=self.device)
            if self.classification:
                hits = output.topk(k, dim=-1).indices == y[:, None]
                top1, top5 = hits[:, 0].sum().double(), hits.any(-1).sum().double()
            sums += torch.stack([self.loss_fn(output.float(), y).double() * n, top1, top5,
                                 torch.tensor(n, dtype=torch.float64, device=self.device)])
        if self.ctx.distributed:
            dist.all_reduce(sums)
        self.model.train()
        loss, top1, top5, n = sums.tolist()
        nan = math.nan
        return {"test_loss": loss / n, "test_accuracy": top1 / n if self.classification else nan,
                "test_top5": top5 / n if self.classification else nan}

    @torch.no_grad()
    def _sync_buffers(self) -> None:
        """Give every rank rank 0's BatchNorm statistics (DDP broadcasts them before each forward, so after the
        last step each rank holds its own; evaluation and checkpoints need one model)."""
        if not self.ctx.distributed:
            return
        for name, buffer in self.model.named_buffers():
            if not name.endswith("feedback_weight"):
                dist.broadcast(buffer, src=0)

    @torch.no_grad()
    def _replica_spread(self) -> float:
        """max |x_rank - x_rank'| over every weight, B and buffer (0 on one process): the replicas' drift."""
        if not self.ctx.distributed:
            return 0.0
        flat = torch.cat([t.detach().reshape(-1).double() for t in self.model.state_dict().values()
                          if t.is_floating_point()])
        high, low = flat.clone(), flat
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        return float((high - low).max())

    def record(self) -> None:
        """Evaluate now and append a record (train means since the previous record)."""
        self._check_finite()
        self._sync_buffers()
        sums = torch.tensor([self.sums["loss"], self.sums["correct"], self.sums["count"]], dtype=torch.float64,
                            device=self.device)
        if self.ctx.distributed:
            dist.all_reduce(sums)
        loss, correct, count = sums.tolist()
        test = self.evaluate()
        if self.val_set is not None:
            test.update({"val" + k[4:]: v for k, v in self.evaluate(self.val_set).items()})
        align = alignment(self.model, *(self.probe or (None, None)), loss_fn=self.loss_fn)
        effective = effective_dimensionality(self.model)
        nan = math.nan
        self.records.append({
            "step": self.step, "lr": self.last_lr,
            "train_loss": loss / count if count else nan,
            "train_accuracy": correct / count if count and self.classification else nan,
            "images_per_second": count / self.sums["seconds"] if count and self.sums["seconds"] else nan,
            **test, "replica_spread": self._replica_spread(),
            "weight_angle": align["weight_angle"].values.tolist(), "norm_ratio": align["norm_ratio"].values.tolist(),
            "weight_norm": align["weight_norm"].values.tolist(),
            **{key: (align[key].values.tolist() if key in align else [nan] * len(self.layers))
               for key in ("gradient_angle", "update_angle")},
            "effective_dim": effective["effective_dim"].values.tolist(),
        })
        self.train_seconds += self.sums["seconds"]
        self.sums = self._zero_sums()
        if self.on_record is not None and self.ctx.rank == 0:
            self.on_record(self.label, {**self.records[-1], "epoch": self.step / self.steps_per_epoch})

    def results(self) -> xr.Dataset:
        """The records so far in the package's results convention (dims ``step``, ``layer``, phase steps)."""
        recs = self.records
        parts = [ds for ds in self.phase_results.values()]
        layer_names = [n for n, _ in self.layers]
        if recs:
            steps = [r["step"] for r in recs]
            data: dict[str, Any] = {k: ("step", np.array([r[k] for r in recs], dtype=float), {"units": u})
                                    for k, u in _SCALARS.items()}
            for key, name in _TEST_NAMES.items():
                data[key][2]["long_name"] = name
            if "val_accuracy" in recs[-1]:  # a run with a validation set records it from its first record
                data.update({k: ("step", np.array([r.get(k, math.nan) for r in recs], dtype=float),
                                 {"units": u, "long_name": name}) for k, (u, name) in _VAL_SCALARS.items()})
            for key, attrs in _PER_LAYER.items():
                # .get: records from a checkpoint written before a metric existed
                data[key] = (("step", "layer"), np.array([r.get(key, [math.nan] * len(layer_names)) for r in recs],
                                                         dtype=float).reshape(
                    len(recs), len(layer_names)), dict(attrs))
            ds = xr.Dataset(data, coords={
                "step": ("step", steps, {"long_name": "optimizer steps done"}),
                "epoch": ("step", np.array(steps) / self.steps_per_epoch, {"units": "epoch"}),
                "layer": layer_names})
            total = self.train_seconds + self.sums["seconds"]
            ds["seconds_per_step"] = xr.DataArray(total / max(self.step, 1), attrs={
                "units": "s", "long_name": "wall time of a training step with its mirroring and data loading"})
            ds["images_per_second"].attrs["long_name"] = "training throughput, all processes"
            engaged = self.schedule.engaged
            if engaged is not None:  # which phase each record belongs to, as the Brian2 backend labels its times
                ds["phase"] = ("step", np.full(len(steps), engaged.name, dtype=object),
                               {"long_name": "phase of the schedule"})
            parts.insert(0, ds)
        if self.finished and self.ood_datasets:
            parts.append(self._ood())
        if not parts:
            return xr.Dataset()
        ds = xr.merge(parts, compat="override", join="outer", combine_attrs="override")
        ds["layer_rule"] = ("layer", [m.rule.name for _, m in self.layers])
        return ds

    #: Transformed test sets evaluated at the end, as ``(name, dataset)`` (set by the backend).
    ood_datasets: tuple[tuple[str, Dataset], ...] = ()
    #: Called on rank 0 with ``(label, record)`` after every record (e.g. the CLI's log lines).
    on_record: Callable[[str, dict[str, Any]], None] | None = None

    def _ood(self) -> xr.Dataset:
        names = [name for name, _ in self.ood_datasets]
        accuracies = [self.evaluate(dataset)["test_accuracy"] for _, dataset in self.ood_datasets]
        return xr.Dataset({"ood_accuracy": ("transform", accuracies, {"units": "1"})}, coords={"transform": names})


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    a, b = _flatten(saved), _flatten(current)
    return sorted(k for k in set(a) | set(b) if k not in _RESUMABLE and a.get(k) != b.get(k))


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
        A network with feedback layers (e.g. from :func:`neurocircuit.get_model` or ``convert``).
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


__all__ += ["optimizer_settings", "sample_seed"]
