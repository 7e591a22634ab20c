"""The torch trainer: one engine for every torch simulation, from an MLP on digits to ResNet-50 on ImageNet.

:class:`Trainer` runs a network through a schedule of phases (:mod:`neurocircuit.phases`) on one process or
many (``torchrun``: DDP); :func:`neurocircuit.torch.fitting.fit` is its single-process Python entry point. Every run
gets the same things: the same records, atomic checkpoints with exact resume, the NaN stop, progress output. The
jobs around the loop live beside it: optimizers and the schedule (``optim``), device and process group
(``distributed``), data order and batches (``sampling``), mirror and prenatal phases (``phase_runners``),
checkpoints (``checkpoint``), records (``records``), signals (``stopping``).

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

import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import xarray as xr
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from ..backends import RESULTS_FILE
from ..errors import ConfigError
from ..phases import EngagedPhase, MirrorPhase, MirrorSettings, PrenatalPhase, Schedule
from ..progress import progress_bar
from ..results import read_results, write_netcdf
from ..simulation import TrainSettings
from .checkpoint import CHECKPOINT_NAME, CHECKPOINT_VERSION, read_checkpoint, restore_rng, rng_states, write_checkpoint
from .distributed import cuda_default, init_distributed, replica_spread, resolve_device, sync_buffers
from .evaluation import evaluate
from .nn.feedback_optim import FeedbackOptimizer
from .nn.metrics import alignment, effective_dimensionality, feedback_layers
from .nn.mirror import mirror_layers
from .optim import EarlyWeightDecay, lr_scheduler, make_optimizer, optimizer_settings
from .phase_runners import check_mirror_gain, run_mirror_phase, run_mirror_steps, run_prenatal_phase
from .records import ood_dataset, records_dataset
from .sampling import BatchServer, IndexedDataset, ResumableSampler
from .settings import TorchSettings
from .stopping import StopFlag, TrainingInterrupted

__all__ = ["LOSSES", "TIME_STEP_CONVENTION", "Trainer"]

TIME_STEP_CONVENTION = ("torch backend: one step = one optimizer update on one minibatch, the rate network "
                        "at steady state within the step; epoch = one pass over the training set")

#: Loss functions by name (mean over the batch). ``mse`` compares the output with the target vector (regression).
LOSSES: dict[str, Callable[..., Tensor]] = {"cross_entropy": F.cross_entropy, "mse": F.mse_loss}


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
        The simulation's records (``TrainSettings``, ``TorchSettings``, the arm's
        :class:`~neurocircuit.phases.Schedule` and the shared :class:`~neurocircuit.phases.MirrorSettings`).
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
        self.ctx = init_distributed(self.device)
        self.train_set, self.test_set, self.val_set = IndexedDataset(train_set), test_set, val_set
        if val_set is not None and len(val_set) == 0:  # type: ignore[arg-type]
            raise ConfigError("the validation set is empty")
        self.input_shape, self.n_classes = tuple(input_shape), n_classes
        self.loss_fn = LOSSES[train.loss]
        self.classification = train.loss == "cross_entropy"
        self.channels_last = cuda_default(torch_settings.channels_last, self.device)
        self.compile = cuda_default(torch_settings.compile, self.device)
        self.batches = BatchServer(self.device, workers=torch_settings.workers, channels_last=self.channels_last)
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
        self.scheduler = lr_scheduler(self.optimizer, train, epochs=self.epochs, steps_per_epoch=self.steps_per_epoch)
        self.feedback_optimizer = FeedbackOptimizer(self.model, self.optimizer)
        self.early_decay = (None if train.early_weight_decay is None else
                            EarlyWeightDecay(self.optimizer, train, steps_per_epoch=self.steps_per_epoch))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype is torch.float16)
        # One generator per purpose, so adding a phase does not change the others' noise.
        self.mirror_generator = torch.Generator(device=self.device).manual_seed(10_000 + seed)
        self.prenatal_generator = torch.Generator().manual_seed(20_000 + seed)
        self.mirrored = mirror_layers(self.model)
        check_mirror_gain(bool(self.mirrored), self.schedule, self.mirror)
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
        return {
            "version": CHECKPOINT_VERSION, "config": self.config, "world_size": self.ctx.world_size,
            "seed": self.seed, "phase_index": self.phase_index, "finished": self.finished,
            "epoch": self.epoch, "batch": self.batch, "step": self.step,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "feedback_optimizer": self.feedback_optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": rng_states(self.ctx, self.device),
            "mirror_generator": self.mirror_generator.get_state(),
            "prenatal_generator": self.prenatal_generator.get_state(), "sums": dict(self.sums),
            "train_seconds": self.train_seconds, "last_lr": self.last_lr,
            "records": self.records,
        }

    def save_checkpoint(self) -> None:
        """Refuse non-finite weights (a finite loss at step t says nothing of the update it caused), then write."""
        self._check_finite()
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
            write_checkpoint(state, self.checkpoint_path)
        self.last_checkpoint_step = self.step

    def load_checkpoint(self) -> None:
        """Restore everything :meth:`save_checkpoint` wrote: weights, optimizers, schedules, generators, position."""
        path = self.checkpoint_path
        assert path is not None
        state = read_checkpoint(path, device=self.device, config=self.config, seed=self.seed,
                                world_size=self.ctx.world_size)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.feedback_optimizer.load_state_dict(state["feedback_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.mirror_generator.set_state(state["mirror_generator"].cpu())
        self.prenatal_generator.set_state(state["prenatal_generator"].cpu())
        restore_rng(state["rng"], self.ctx.rank, self.device)
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

    def _stop_requested(self, flag: StopFlag, stop_after: int | None) -> bool:
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
            ran = self.phase_index < len(self.schedule.phases)  # else a finished run read back: its file is kept
            with StopFlag().installed() as flag:
                for index, phase in enumerate(self.schedule.phases):
                    if index < self.phase_index:
                        continue
                    if isinstance(phase, EngagedPhase):
                        self._engaged(phase, flag, stop_after_steps)
                    else:
                        self._run_noise_phase(phase, flag)
                    self.phase_index = index + 1
                    self.finished = self.phase_index == len(self.schedule.phases)
                    self.save_checkpoint()
            results = self.results()
            if self.out is not None and self.ctx.rank == 0 and (ran or not (self.out / RESULTS_FILE).exists()):
                write_netcdf(results, self.out / RESULTS_FILE)
            return results
        finally:
            self.feedback_optimizer.remove()

    def _run_noise_phase(self, phase: MirrorPhase | PrenatalPhase, flag: StopFlag | None = None) -> None:
        """A mirror or prenatal phase, identical on every rank (same seeds); run whole, then kept on disk."""
        if isinstance(phase, MirrorPhase):
            ds = run_mirror_phase(self.model, phase, generator=self.mirror_generator, stop=flag)
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

    def _engaged(self, phase: EngagedPhase, flag: StopFlag, stop_after: int | None) -> None:
        forward: nn.Module = self.model
        if self.ctx.distributed:
            ignored = [f"{name}.feedback_weight" for name, m in self.layers if m.rule.stores_feedback]
            nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self.model, ignored)
            forward = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.compile:
            forward = torch.compile(forward)  # type: ignore[assignment]
        # first() draws a DataLoader seed from the global RNG (brsf's): a resumed run's restored state has that draw
        with torch.random.fork_rng(devices=[], enabled=bool(self.records)):
            self.probe = (self.batches.first(self.test_set, self.train.alignment_samples)
                          if self.train.alignment_samples else None)
        if not self.records:
            self.record()
        bar = progress_bar(self._progress_enabled(), total=self.epochs * self.steps_per_epoch, leave=False,
                           initial=self.epoch * self.steps_per_epoch + self.batch, unit="step", desc=self.label)
        try:
            while self.epoch < self.epochs:
                bar.set_description(f"{self.label} epoch {self.epoch + 1}/{self.epochs}", refresh=False)
                self._epoch(phase, forward, flag, stop_after, bar)
                self.epoch, self.batch = self.epoch + 1, 0
                if self.step % self.every and self.epoch == self.epochs:
                    self.record()
                if self.epoch < self.epochs:  # the last epoch's checkpoint is the phase's
                    self.save_checkpoint()
        finally:
            bar.close()

    def _train_loss(self, output: Tensor, target: Tensor) -> Tensor:
        if self.classification and self.train.label_smoothing:
            return F.cross_entropy(output, target, label_smoothing=self.train.label_smoothing)
        return self.loss_fn(output, target)

    def _epoch(self, phase: EngagedPhase, forward: nn.Module, flag: StopFlag, stop_after: int | None, bar: Any) -> None:
        self.model.train()
        self.sampler.set_position(self.epoch, self.batch * self.train.batch_size)
        loader = self.batches.loader(self.train_set, self.sampler, batch_size=self.train.batch_size, train=True)
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

        for x, y in loader:
            if self.batch >= self.steps_per_epoch:
                break
            x, y = self.batches.to_device(x, y, self.train_set)
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                output = forward(x)
                loss = self._train_loss(output, y)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.early_decay is not None:
                self.early_decay.apply(self.scheduler.last_epoch)
            self.scaler.step(self.optimizer)  # KP's B steps with it (FeedbackOptimizer's hook)
            self.scaler.update()
            lr_used = self.last_lr = self.scheduler.get_last_lr()[0]
            self.scheduler.step()
            self.step += 1
            self.batch += 1
            if mirror_every and self.step % mirror_every == 0:
                scale = lr_used / self.base_lr if phase.mirror_follows_lr else 1.0  # the lr of the step just taken
                if run_mirror_steps(self.model, self.mirror, phase.mirror_steps, generator=self.mirror_generator,
                                    rate_scale=scale, layers=self.mirrored, stop=flag):
                    raise TrainingInterrupted(f"stopped in mirror steps at step {self.step}; {self._last_good()}",
                                              signalled=True)
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
                where = f"; resume from {self.checkpoint_path}" if self.out else ""
                raise TrainingInterrupted(f"stopped at step {self.step}{where}", signalled=flag.requested)
            if self.batch >= self.steps_per_epoch:
                break
        fold_in()
        self._check_finite()

    # ------------------------------------------------------------------------------------------ records
    def evaluate(self, dataset: Dataset | None = None) -> dict[str, float]:
        """Loss, top-1 and top-5 accuracy (NaN for regression) on the test set, or on ``dataset``; keys ``test_*``
        either way (:func:`~neurocircuit.torch.evaluation.evaluate`)."""
        return evaluate(self.model, self.test_set if dataset is None else dataset, batches=self.batches,
                        ctx=self.ctx, loss_fn=self.loss_fn, classification=self.classification,
                        n_classes=self.n_classes, batch_size=max(self.train.batch_size, 256),
                        max_batches=self.train.val_batches, amp_dtype=self.amp_dtype)

    def record(self) -> None:
        """Evaluate now and append a record (train means since the previous record)."""
        self._check_finite()
        sync_buffers(self.model, self.ctx)
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
            **test, "replica_spread": replica_spread(self.model, self.ctx),
            "weight_angle": align["weight_angle"].values.tolist(), "norm_ratio": align["norm_ratio"].values.tolist(),
            "weight_norm": align["weight_norm"].values.tolist(),
            **{key: (align[key].values.tolist() if key in align else [nan] * len(self.layers))
               for key in ("gradient_angle", "update_angle")},
            "effective_dim": effective["effective_dim"].values.tolist(),
        })
        self.train_seconds += self.sums["seconds"]
        self.sums = self._zero_sums()
        if self.on_record is not None and self.ctx.rank == 0:
            self.on_record(self.label, {**self.records[-1], "epoch": self.step / self.steps_per_epoch,
                                        "epochs": self.epochs})

    def results(self) -> xr.Dataset:
        """The records so far in the package's results convention (dims ``step``, ``layer``, phase steps)."""
        recs = self.records
        parts = [ds for ds in self.phase_results.values()]
        layer_names = [n for n, _ in self.layers]
        if recs:
            engaged = self.schedule.engaged
            parts.insert(0, records_dataset(recs, layer_names=layer_names, steps_per_epoch=self.steps_per_epoch,
                                            seconds=self.train_seconds + self.sums["seconds"], steps=self.step,
                                            phase=None if engaged is None else engaged.name))
        if self.finished and self.ood_datasets:
            parts.append(self._out_of_distribution_accuracy())
        if not parts:
            return xr.Dataset()
        ds = xr.merge(parts, compat="override", join="outer", combine_attrs="override")
        ds["layer_rule"] = ("layer", [m.rule.name for _, m in self.layers])
        return ds

    #: Transformed test sets evaluated at the end, as ``(name, dataset)`` (set by the backend).
    ood_datasets: tuple[tuple[str, Dataset], ...] = ()
    #: Called on rank 0 with ``(label, record)`` after every record (e.g. the CLI's log lines).
    on_record: Callable[[str, dict[str, Any]], None] | None = None

    def _out_of_distribution_accuracy(self) -> xr.Dataset:
        """Test accuracy on every transformed test set (``train.ood_transforms``), at the end of the run."""
        names = [name for name, _ in self.ood_datasets]
        accuracies = [self.evaluate(dataset)["test_accuracy"] for _, dataset in self.ood_datasets]
        return ood_dataset(names, accuracies)

