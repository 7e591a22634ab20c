"""A clear train/evaluate loop for any network with feedback layers, recording into xarray.

Deterministic on CPU for a given seed: the shuffling generator, the model init (when built with a seed)
and the order of operations are fixed. Time convention of the torch backend: one *step* is one
optimizer update on one minibatch (the rate network is at steady state within a step); ``epoch`` is a
coordinate counting passes over the training set.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .errors import ConfigError
from .nn.feedback_optim import FeedbackOptimizer
from .nn.metrics import alignment, effective_dimensionality, weight_alignment
from .nn.mirror import mirror_layers, mirror_step
from .phases import MirrorPhase, MirrorSettings, PrenatalPhase

__all__ = ["LOSSES", "make_optimizer", "evaluate", "fit", "run_mirror_phase", "run_prenatal_phase"]

#: Loss functions by name. ``mse`` compares the output with the target vector (regression).
LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "cross_entropy": F.cross_entropy,
    "mse": F.mse_loss,
}

_OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
               "rmsprop": torch.optim.RMSprop}


def make_optimizer(params: object, name: str = "sgd", **settings: object) -> torch.optim.Optimizer:
    """An optimizer by short name (sgd, adam, adamw, rmsprop) or by any ``torch.optim`` class name."""
    cls = _OPTIMIZERS.get(name.lower()) or getattr(torch.optim, name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ConfigError(f"unknown optimizer {name!r} (use {', '.join(_OPTIMIZERS)} or a torch.optim class name)")
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "params"}
    for key in settings:
        if key not in allowed:
            raise ConfigError(f"optimizer {name!r} has no setting {key!r} (settings: {', '.join(sorted(allowed))})")
    return cls(params, **settings)


def _accuracy(output: Tensor, target: Tensor) -> float:
    if target.dtype.is_floating_point:
        return math.nan
    return (output.argmax(-1) == target).float().mean().item()


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, loss_fn: Callable[[Tensor, Tensor], Tensor]
             ) -> tuple[float, float]:
    """Mean loss and accuracy (NaN for regression) of ``model`` in eval mode over ``loader``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, loss_sum, correct = 0, 0.0, 0.0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        out = model(x)
        n = len(x)
        loss_sum += loss_fn(out, y).item() * n
        correct += _accuracy(out, y) * n
        total += n
    model.train(was_training)
    return loss_sum / total, correct / total


def fit(model: nn.Module, train_set: Dataset, test_set: Dataset, *, optimizer: torch.optim.Optimizer,
        epochs: int, batch_size: int = 32, loss: str = "cross_entropy", seed: int = 0,
        record_every: int | str = "epoch", alignment_samples: int = 256, progress: bool | None = None,
        description: str = "", mirror: MirrorSettings | None = None, mirror_every: int = 0, mirror_steps: int = 1,
        mirror_generator: torch.Generator | None = None, mirror_follows_lr: bool = False,
        lr_schedule: str = "constant") -> xr.Dataset:
    """Train ``model`` and record the learning and alignment curves.

    Parameters
    ----------
    model
        A network with feedback layers (e.g. from :func:`neurocircuit.get_model` or ``convert``).
    train_set, test_set
        Map-style data sets of ``(input, target)``.
    optimizer
        Any torch optimizer over ``model.parameters()``. Rules that learn with the optimizer (``kp``)
        are attached to it here.
    epochs, batch_size
        Passes over the training set and minibatch size.
    loss
        A name from :data:`LOSSES`.
    seed
        Seeds the shuffling order.
    record_every
        ``"epoch"`` or a number of steps. Records are also taken before the first step.
    alignment_samples
        Test samples used for the gradient angle.
    progress
        Show a progress bar; None shows it only on a terminal.
    mirror, mirror_every, mirror_steps
        Interleaved weight mirroring: after every ``mirror_every`` training steps (0: never), ``mirror_steps``
        mirror steps with ``mirror`` settings on the ``wm`` layers, drawing noise from ``mirror_generator``.
        Their time counts in ``seconds_per_step``. With ``mirror_follows_lr`` the mirror's learning rate and
        decay are scaled by the optimizer's current learning rate over its initial one.
    lr_schedule
        ``constant``, or ``cosine``: the learning rate follows a cosine from its value to 0 over all steps.

    Returns
    -------
    xarray.Dataset
        Dimensions ``step`` and ``layer``; coordinate ``epoch`` along ``step``; variables ``train_loss``,
        ``train_accuracy`` (means over the steps since the previous record), ``test_loss``,
        ``test_accuracy``, ``weight_angle``, ``norm_ratio``, ``gradient_angle``, ``effective_dim``, and the
        scalar ``seconds_per_step`` (mean wall time of a training step and its mirroring, evaluation excluded).
    """
    if loss not in LOSSES:
        raise ConfigError(f"unknown loss {loss!r} (known: {', '.join(LOSSES)})")
    if not isinstance(epochs, int) or epochs < 0:
        raise ConfigError(f"epochs must be a non-negative int, got {epochs!r}")
    loss_fn = LOSSES[loss]
    device = next(model.parameters()).device
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=False,
                              generator=torch.Generator().manual_seed(seed))
    test_loader = DataLoader(test_set, batch_size=max(batch_size, 256))
    steps_per_epoch = len(train_loader)
    if record_every == "epoch":
        every = steps_per_epoch
    elif isinstance(record_every, int) and record_every > 0:
        every = record_every
    else:
        raise ConfigError(f"record_every must be 'epoch' or a positive int, got {record_every!r}")
    probe = next(iter(DataLoader(test_set, batch_size=alignment_samples)))
    probe = (probe[0].to(device), probe[1].to(device))
    if mirror_every and mirror is None:
        raise ConfigError("mirror_every > 0 needs mirror settings")
    if lr_schedule not in ("constant", "cosine"):
        raise ConfigError(f"lr_schedule must be 'constant' or 'cosine', got {lr_schedule!r}")
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs * steps_per_epoch, 1))
                 if lr_schedule == "cosine" else None)
    kp = FeedbackOptimizer(model, optimizer)
    initial_lr = optimizer.param_groups[0]["lr"]
    mirrored = mirror_layers(model) if mirror_every else []

    records: list[dict[str, object]] = []
    window: list[tuple[float, float]] = []

    def record(step: int) -> None:
        test_loss, test_acc = evaluate(model, test_loader, loss_fn)
        align = alignment(model, *probe, loss_fn=loss_fn).merge(effective_dimensionality(model), compat="override",
                                                                 join="exact")
        tl, ta = (np.mean([w[0] for w in window]), np.mean([w[1] for w in window])) if window else (np.nan,) * 2
        records.append({"step": step, "train_loss": tl, "train_accuracy": ta, "test_loss": test_loss,
                        "test_accuracy": test_acc, "align": align})
        window.clear()

    model.train()
    record(0)
    step, train_seconds = 0, 0.0
    bar = tqdm(total=epochs * steps_per_epoch, disable=None if progress is None else not progress,
               desc=description or "train", leave=False)
    try:
        for _ in range(epochs):
            for x, y in train_loader:
                t0 = time.perf_counter()
                x, y = x.to(device), y.to(device)
                out = model(x)
                batch_loss = loss_fn(out, y)
                optimizer.zero_grad(set_to_none=True)
                batch_loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                if mirror_every and (step + 1) % mirror_every == 0:
                    scale = optimizer.param_groups[0]["lr"] / initial_lr if mirror_follows_lr else 1.0
                    for _ in range(mirror_steps):
                        mirror_step(model, mirror, generator=mirror_generator, rate_scale=scale, layers=mirrored)
                train_seconds += time.perf_counter() - t0
                window.append((batch_loss.item(), _accuracy(out.detach(), y)))
                step += 1
                bar.update(1)
                if not math.isfinite(window[-1][0]):
                    raise FloatingPointError(f"loss became {window[-1][0]} at step {step}")
                if step % every == 0:
                    record(step)
                    bar.set_postfix(test_acc=f"{records[-1]['test_accuracy']:.3f}")
        if step % every:
            record(step)
    finally:
        bar.close()
        kp.remove()
    return _to_dataset(records, steps_per_epoch, train_seconds / max(step, 1))


def _to_dataset(records: list[dict[str, object]], steps_per_epoch: int, seconds_per_step: float) -> xr.Dataset:
    steps = [r["step"] for r in records]
    scalar_units = {"train_loss": "1", "train_accuracy": "1", "test_loss": "1", "test_accuracy": "1"}
    data = {k: ("step", np.array([r[k] for r in records], dtype=float), {"units": u})
            for k, u in scalar_units.items()}
    align = xr.concat([r["align"] for r in records], dim="step", coords="different", compat="equals",
                      join="exact")
    ds = xr.Dataset(data, coords={"step": steps, "epoch": ("step", np.array(steps) / steps_per_epoch)})
    ds = ds.merge(align.assign_coords(step=steps), compat="override", join="exact")
    ds["seconds_per_step"] = xr.DataArray(seconds_per_step, attrs={"units": "s"})
    ds["step"].attrs["long_name"] = "optimizer steps done"
    ds["epoch"].attrs["units"] = "epoch"
    return ds


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
    return ds


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

    No :class:`FeedbackOptimizer` is attached, so even ``kp`` layers keep their B. Returns ``<name>_loss``,
    ``<name>_weight_angle``, ``<name>_norm_ratio`` and ``<name>_gradient_angle`` (on a fixed batch of the noise)
    over ``<name>_step``.
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
                raise FloatingPointError(f"prenatal loss became {window[-1]} at step {step}")
            if step % phase.record_every == 0 or step == phase.steps:
                records.append((step, {"loss": float(np.mean(window))}, measure()))
                window.clear()
    finally:
        bar.close()
    return _phase_dataset(phase.name, records)
