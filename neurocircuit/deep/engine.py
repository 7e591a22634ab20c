"""Train a torchvision classifier with any feedback rule: one process, or many under ``torchrun`` (DDP).

Design, for exact resumption and identical replicas:

- Every rank builds the model from the run seed, so W and B start identical; DDP all-reduces W's gradients.
  B buffers are *excluded* from DDP's buffer broadcast (it would ship the whole model every step); they stay
  identical by construction instead: Kolen-Pollack steps B with W's (all-reduced) gradient, and the mirror
  noise comes from a generator seeded the same on every rank, so every rank makes the same mirror update.
- The learning-rate schedule is a function of the optimizer step (``LambdaLR``); data order and augmentation
  are functions of (seed, epoch, index) — see :mod:`neurocircuit.deep.data`.
- A checkpoint (every ``checkpoint_every`` steps, at every epoch end, and when the run is asked to stop with
  SIGINT/SIGTERM) holds W and B, optimizer, the KP twin optimizer, scheduler, grad scaler, the position in the
  epoch, every rank's RNG states, the mirror generator, the epoch's running sums and the results so far. It is
  written atomically by rank 0 and loaded with ``weights_only=True``.
- The loss is checked for NaN/inf every ``log_every`` steps and before every checkpoint, so a checkpoint never
  holds a diverged model; the error names the first bad step.

Time convention (as in the rest of the torch backend): one step is one optimizer update on one global batch.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import xarray as xr
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..nn.convert import convert
from ..nn.feedback_optim import FeedbackOptimizer
from ..nn.metrics import feedback_layers, weight_alignment
from ..nn.mirror import mirror_layers, mirror_step
from ..phases import MirrorPhase, PrenatalPhase
from ..results import atomic_path, attach_config, read_results, write_netcdf
from ..train import run_mirror_phase, run_prenatal_phase
from .config import DeepConfig
from .data import ImageData, ResumableSampler, ShardSampler, load_image_data

__all__ = ["TrainingInterrupted", "DistContext", "build_model", "train", "CHECKPOINT_NAME", "RESULTS_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"
RESULTS_NAME = "results.nc"
_PRETRAINING_NAME = "pretraining.nc"
_CHECKPOINT_VERSION = 1
# Settings that may change between a run and its resumption (they do not change the maths).
_RESUMABLE_CHANGES = {"workers", "checkpoint_every", "log_every", "epochs", "device", "compile", "data_root",
                      "download"}


class TrainingInterrupted(KeyboardInterrupt):
    """The run was asked to stop (signal or ``stop_after_steps``) and saved a checkpoint first."""


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job: rank, world size, local rank, and whether :func:`train` opened the
    process group (and so closes it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _init_distributed(device_kind: str) -> DistContext:
    """Join the process group ``torchrun`` describes in the environment (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), local, owns_group=False)
    if device_kind == "cuda":
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    return DistContext(rank, world, local, owns_group=True)


def _resolve_device(config: DeepConfig, local_rank: int) -> torch.device:
    """The device of ``config.device`` (``auto``: CUDA if there is one); CUDA without an index takes this process's
    local rank (``torchrun`` sets LOCAL_RANK)."""
    name = config.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device {config.device!r}: CUDA is not available here")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def build_model(config: DeepConfig, num_classes: int) -> nn.Module:
    """The torchvision model ``config.model`` (random init from the run seed) with its layers converted to the
    config's rules."""
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if config.model not in known:
        raise ConfigError(f"train.model: unknown torchvision classification model {config.model!r} "
                          f"(e.g. {', '.join(m for m in known if m.startswith('resnet'))})")
    torch.manual_seed(config.seed)
    model = torchvision.models.get_model(config.model, weights=None, num_classes=num_classes)
    convert(model, config.rule, overrides=dict(config.overrides), options=dict(config.rule_options),
            seed=config.seed)
    return model


def _lr_factor(config: DeepConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """lr / base lr after ``step`` optimizer steps: linear warm-up, then step or cosine decay."""
    warmup = config.warmup_epochs * steps_per_epoch
    total = config.epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.lr_schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        return config.lr_gamma ** (step // (config.lr_step_epochs * steps_per_epoch))

    return factor


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


def _config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    keys = set(saved) | set(current)
    return sorted(k for k in keys if k not in _RESUMABLE_CHANGES and saved.get(k) != current.get(k))


class _Run:
    """The state of one training run on one rank (see the module docstring)."""

    def __init__(self, config: DeepConfig, out: Path, ctx: DistContext, device: torch.device, *, label: str,
                 progress: bool | None) -> None:
        self.config, self.out, self.ctx, self.label = config, out, ctx, label
        self.progress, self.device = progress, device
        self.data: ImageData = load_image_data(config)
        self.model = build_model(config, self.data.num_classes)
        self.channels_last = config.channels_last if config.channels_last is not None else \
            self.device.type == "cuda"
        self.model.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None,
                          "auto": torch.bfloat16 if self.device.type == "cuda" else None}[config.amp]

        self.sampler = ResumableSampler(self.data.train, num_replicas=ctx.world_size, rank=ctx.rank,
                                        seed=config.seed)
        self.steps_per_epoch = len(self.sampler) // config.batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(f"the training set ({len(self.data.train)} images) has less than one batch of "
                              f"{config.batch_size} per process ({ctx.world_size} processes)")
        if config.steps_per_epoch is not None:
            self.steps_per_epoch = min(self.steps_per_epoch, config.steps_per_epoch)
        self.base_lr = config.lr_per_256 * config.batch_size * ctx.world_size / 256
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=self.base_lr, momentum=config.momentum,
                                         weight_decay=config.weight_decay, nesterov=config.nesterov)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           _lr_factor(config, self.steps_per_epoch))
        self.feedback_optimizer = FeedbackOptimizer(self.model, self.optimizer)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype is torch.float16)
        self.mirror_generator = torch.Generator(device=self.device).manual_seed(config.seed + 1)
        self.mirrored = mirror_layers(self.model)
        self.layers = feedback_layers(self.model)
        torch.manual_seed(config.seed + 1000 * (ctx.rank + 1))  # per-rank randomness (e.g. dropout)

        self.epoch = self.batch = self.step = 0
        self.pretrained = False
        self.records: list[dict[str, Any]] = []
        self.sums = self._zero_sums()
        self.pending: list[tuple[int, Tensor]] = []
        self.checkpoint_path = out / CHECKPOINT_NAME
        self.last_checkpoint_step: int | None = None

    # ----------------------------------------------------------------------------------------------- state
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
            "version": _CHECKPOINT_VERSION, "config": self.config.to_dict(), "world_size": self.ctx.world_size,
            "epoch": self.epoch, "batch": self.batch, "step": self.step, "pretrained": self.pretrained,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "feedback_optimizer": self.feedback_optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": ranks_rng,
            "mirror_generator": self.mirror_generator.get_state(), "sums": dict(self.sums),
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
        state = self.state_dict()
        if self.ctx.rank == 0:
            with atomic_path(self.checkpoint_path) as tmp:
                torch.save(state, tmp)
        self.last_checkpoint_step = self.step

    def load_checkpoint(self) -> None:
        state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=True)
        if state.get("version") != _CHECKPOINT_VERSION:
            raise ConfigError(f"{self.checkpoint_path}: checkpoint version {state.get('version')!r} is not "
                              f"{_CHECKPOINT_VERSION}")
        changed = _config_differences(state["config"], self.config.to_dict())
        if changed:
            raise ConfigError(f"--resume: {self.checkpoint_path} was written with different settings: "
                              f"{', '.join(changed)} (start a new --out, or set them back)")
        if state["world_size"] != self.ctx.world_size:
            raise ConfigError(f"--resume: the checkpoint was written by {state['world_size']} processes, this "
                              f"run has {self.ctx.world_size} (the data order depends on it)")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.feedback_optimizer.load_state_dict(state["feedback_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.mirror_generator.set_state(state["mirror_generator"].cpu())
        rng = state["rng"][self.ctx.rank]
        torch.set_rng_state(rng["cpu"].cpu())
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"].cpu(), self.device)
        self.epoch, self.batch, self.step = state["epoch"], state["batch"], state["step"]
        self.pretrained, self.sums, self.records = state["pretrained"], dict(state["sums"]), list(state["records"])
        self.last_checkpoint_step = self.step

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
            where = (f"at step {self.pending[int(bad[0])][0]} (epoch {self.epoch + 1})" if len(bad)
                     else "on another process")
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
        if self.step % self.config.log_every:
            return False
        votes = torch.tensor([float(wanted)], device=self.device)
        dist.all_reduce(votes, op=dist.ReduceOp.MAX)
        return bool(votes.item() > 0)

    # ------------------------------------------------------------------------------------------ phases
    def pretrain(self) -> None:
        """Noise pretraining and the initial mirror phase, identical on every rank (same seeds)."""
        config, parts = self.config, []
        if config.prenatal_steps:
            phase = PrenatalPhase(samples=config.prenatal_steps * config.prenatal_batch_size, dataset_size=None,
                                  batch_size=config.prenatal_batch_size,
                                  record_every=max(1, config.prenatal_steps // 10))
            optimizer = torch.optim.SGD(self.model.parameters(), lr=config.prenatal_lr, momentum=0.9)
            generator = torch.Generator().manual_seed(config.seed + 2)
            side = config.image_size
            parts.append(run_prenatal_phase(self.model, phase, input_shape=(3, side, side),
                                            n_classes=self.data.num_classes, optimizer=optimizer,
                                            generator=generator, progress=False))
        if config.initial_mirror_steps and self.mirrored:
            phase = MirrorPhase(steps=config.initial_mirror_steps,
                                record_every=max(1, config.initial_mirror_steps // 20), settings=config.mirror)
            parts.append(run_mirror_phase(self.model, phase, generator=self.mirror_generator))
        if parts and self.ctx.rank == 0:
            write_netcdf(xr.merge(parts, combine_attrs="override"), self.out / _PRETRAINING_NAME)
        self.pretrained = True

    def _loader(self, dataset: Any, sampler: Any, *, train: bool) -> DataLoader:
        workers = self.config.workers
        return DataLoader(dataset, batch_size=self.config.batch_size, sampler=sampler, num_workers=workers,
                          pin_memory=self.device.type == "cuda", drop_last=train,
                          persistent_workers=False, prefetch_factor=4 if workers else None)

    def _to_device(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        images = images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, labels.to(self.device, non_blocking=True)

    def train_epoch(self, forward: nn.Module, flag: _StopFlag, stop_after: int | None) -> None:
        config = self.config
        self.model.train()
        self.sampler.set_position(self.epoch, self.batch * config.batch_size)
        loader = self._loader(self.data.train, self.sampler, train=True)
        bar = tqdm(total=self.steps_per_epoch, initial=self.batch, desc=f"{self.label} epoch {self.epoch + 1}",
                   disable=(self.ctx.rank != 0) or (None if self.progress is None else not self.progress),
                   leave=False, unit="step")
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.float64, device=self.device)
        count, started = 0, time.perf_counter()

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
            for images, labels in loader:
                if self.batch >= self.steps_per_epoch:
                    break
                images, labels = self._to_device(images, labels)
                with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                    enabled=self.amp_dtype is not None):
                    output = forward(images)
                    loss = F.cross_entropy(output, labels, label_smoothing=config.label_smoothing)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)  # KP's B steps with it (FeedbackOptimizer's hook)
                self.scaler.update()
                lr_used = self.scheduler.get_last_lr()[0]
                self.scheduler.step()
                self.step += 1
                self.batch += 1
                if config.mirror_every and self.mirrored and self.step % config.mirror_every == 0:
                    lr_scale = lr_used / self.base_lr
                    for _ in range(config.mirror_steps):
                        mirror_step(self.model, config.mirror, generator=self.mirror_generator,
                                    rate_scale=lr_scale if config.mirror_follows_lr else 1.0, layers=self.mirrored)
                loss = loss.detach()
                loss_sum += loss.double() * len(labels)
                correct += (output.detach().argmax(1) == labels).sum().double()
                count += len(labels)
                self.pending.append((self.step, loss))
                bar.update(1)
                if self.step % config.log_every == 0:
                    self._check_finite()
                    bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                if config.checkpoint_every and self.step % config.checkpoint_every == 0 \
                        and self.batch < self.steps_per_epoch:
                    fold_in()
                    self.save_checkpoint()
                if self._stop_requested(flag, stop_after):
                    fold_in()
                    self.save_checkpoint()
                    raise TrainingInterrupted(f"stopped at step {self.step}; resume from {self.checkpoint_path}")
                if self.batch >= self.steps_per_epoch:
                    break
        finally:
            bar.close()
        fold_in()
        self._check_finite()

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Loss, top-1 and top-5 accuracy on the validation set (sharded over ranks, summed)."""
        self.model.eval()
        sampler = ShardSampler(len(self.data.val), num_replicas=self.ctx.world_size, rank=self.ctx.rank)
        loader = self._loader(self.data.val, sampler, train=False)
        k = min(5, self.data.num_classes)
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)
        for i, (images, labels) in enumerate(loader):
            if self.config.val_batches is not None and i >= self.config.val_batches:
                break
            images, labels = self._to_device(images, labels)
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                output = self.model(images)
            top = output.topk(k, dim=1).indices
            hits = top == labels[:, None]
            sums += torch.stack([F.cross_entropy(output.float(), labels, reduction="sum").double(),
                                 hits[:, 0].sum().double(), hits.any(1).sum().double(),
                                 torch.tensor(float(len(labels)), dtype=torch.float64, device=self.device)])
        if self.ctx.distributed:
            dist.all_reduce(sums)
        self.model.train()
        loss, top1, top5, n = sums.tolist()
        return {"test_loss": loss / n, "test_accuracy": top1 / n, "test_top5": top5 / n}

    @torch.no_grad()
    def _sync_buffers(self) -> None:
        """Give every rank rank 0's BatchNorm statistics. DDP broadcasts them before each forward, so after the
        last step each rank holds its own; evaluation and checkpoints need one model."""
        if not self.ctx.distributed:
            return
        for name, buffer in self.model.named_buffers():
            if not name.endswith("feedback_weight"):
                dist.broadcast(buffer, src=0)

    def end_epoch(self) -> dict[str, Any]:
        self._sync_buffers()
        sums = torch.tensor([self.sums["loss"], self.sums["correct"], self.sums["count"]], dtype=torch.float64,
                            device=self.device)
        if self.ctx.distributed:
            dist.all_reduce(sums)
        loss, correct, count = sums.tolist()
        align = weight_alignment(self.model)
        spread = self._replica_spread()
        record = {
            "step": self.step, "epoch": self.epoch + 1, "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": loss / count, "train_accuracy": correct / count,
            "images_per_second": count / max(self.sums["seconds"], 1e-9), "train_seconds": self.sums["seconds"],
            **self.evaluate(),
            "weight_angle": [float(v) for v in align["weight_angle"].values],
            "norm_ratio": [float(v) for v in align["norm_ratio"].values], "replica_spread": spread,
        }
        self.records.append(record)
        self.epoch, self.batch, self.sums = self.epoch + 1, 0, self._zero_sums()
        self.save_checkpoint()
        if self.ctx.rank == 0:
            write_netcdf(self.results(), self.out / RESULTS_NAME)
        return record

    @torch.no_grad()
    def _replica_spread(self) -> float:
        """max |x_rank - x_rank'| over every weight, B and buffer of the model (0 on one process): the check that
        the replicas have not drifted apart."""
        if not self.ctx.distributed:
            return 0.0
        flat = torch.cat([t.detach().reshape(-1).double() for t in self.model.state_dict().values()
                          if t.is_floating_point()])
        high, low = flat.clone(), flat
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        return float((high - low).max())

    # ------------------------------------------------------------------------------------------ results
    def results(self) -> xr.Dataset:
        """The records so far in the package's results convention (dims rule, step, layer)."""
        recs = self.records
        steps = [r["step"] for r in recs]
        units = {"train_loss": "1", "train_accuracy": "1", "test_loss": "1", "test_accuracy": "1",
                 "test_top5": "1", "lr": "1", "images_per_second": "1/s", "train_seconds": "s",
                 "replica_spread": "1"}
        data: dict[str, Any] = {k: ("step", np.array([r[k] for r in recs], dtype=float), {"units": u})
                                for k, u in units.items()}
        shape = (len(recs), len(self.layers))
        data["weight_angle"] = (("step", "layer"), np.array([r["weight_angle"] for r in recs]).reshape(shape),
                                {"units": "degree", "long_name": "angle between B and W^T"})
        data["norm_ratio"] = (("step", "layer"), np.array([r["norm_ratio"] for r in recs]).reshape(shape),
                              {"units": "1", "long_name": "||B|| / ||W||"})
        ds = xr.Dataset(data, coords={
            "step": ("step", steps, {"long_name": "optimizer steps done"}),
            "epoch": ("step", [r["epoch"] for r in recs], {"units": "epoch"}),
            "layer": [n for n, _ in self.layers], "layer_rule": ("layer", [m.rule.name for _, m in self.layers]),
        })
        ds["images_per_second"].attrs["long_name"] = "training throughput, all processes"
        pretraining = self.out / _PRETRAINING_NAME
        if pretraining.exists():
            ds = xr.merge([ds, read_results(pretraining)], compat="override", combine_attrs="override", join="outer")
        ds = ds.expand_dims(rule=[self.label])
        return attach_config(ds, self.config.to_dict(), simulation=self.label, backend="torch",
                             model=self.config.model, data=self.data.description,
                             world_size=self.ctx.world_size, device=str(self.device))


def train(config: DeepConfig, out: str | Path, *, resume: bool = False, label: str | None = None,
          progress: bool | None = None, on_epoch: Callable[[dict[str, Any]], None] | None = None,
          stop_after_steps: int | None = None) -> xr.Dataset:
    """Train ``config.model`` with ``config.rule`` and write ``results.nc`` and ``checkpoint.pt`` into ``out``.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every process calls this; the data are sharded, gradients
    all-reduced, and rank 0 writes. ``resume`` continues from ``out/checkpoint.pt`` if there is one (a fresh
    ``out`` with ``resume`` simply starts); without ``resume`` an existing checkpoint is an error, so a run is
    never overwritten by accident. ``stop_after_steps`` stops (checkpoint, then :class:`TrainingInterrupted`)
    after that many optimizer steps, as a signal would. Returns the results Dataset.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} exists and is not a folder")
    if (out / CHECKPOINT_NAME).exists() and not resume:
        raise ConfigError(f"{out / CHECKPOINT_NAME} exists: pass --resume to continue that run, or choose "
                          "another --out")
    device = _resolve_device(config, int(os.environ.get("LOCAL_RANK", "0")))
    ctx = _init_distributed(device.type)
    try:
        out.mkdir(parents=True, exist_ok=True)
        run = _Run(config, out, ctx, device, label=label or config.rule, progress=progress)
        if resume and run.checkpoint_path.exists():
            run.load_checkpoint()
        forward: nn.Module = run.model
        with _StopFlag().installed() as flag:
            if not run.pretrained:
                run.pretrain()
                run.save_checkpoint()
            if ctx.distributed:
                ignored = [f"{name}.feedback_weight" for name, m in run.layers if m.rule.stores_feedback]
                nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(run.model, ignored)
                forward = nn.parallel.DistributedDataParallel(
                    run.model, device_ids=[run.device.index] if run.device.type == "cuda" else None)
            if config.compile:
                forward = torch.compile(forward)  # type: ignore[assignment]
            while run.epoch < config.epochs:
                run.train_epoch(forward, flag, stop_after_steps)
                record = run.end_epoch()
                if on_epoch is not None and ctx.rank == 0:
                    on_epoch(record)
        return run.results()
    finally:
        if ctx.owns_group:
            dist.destroy_process_group()
