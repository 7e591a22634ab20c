"""The mirror and prenatal phases of a schedule, run on a torch network (the engaged phase is the trainer's loop)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
import torch.distributed as dist
import xarray as xr
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import FeedbackScaleWarning
from ..phases import MirrorPhase, MirrorSettings, PrenatalPhase, Schedule
from ..progress import progress_bar
from .nn.metrics import alignment, weight_alignment
from .nn.mirror import mirror_gain, mirror_layers, mirror_step
from .stopping import StopFlag, TrainingInterrupted

__all__ = ["run_mirror_phase", "run_mirror_steps", "run_prenatal_phase", "phase_dataset", "check_mirror_gain",
           "MIRROR_GAIN_RANGE"]

# B's scale relative to W outside which a mirror warns: LeNet-5 loses 5-7 pp at 0.5 (README, sweep_wm_robustness).
MIRROR_GAIN_RANGE = (0.8, 1.25)

#: long_name of a phase's scalar records, by key.
_SCALAR_NAMES = {"loss": "training loss on the noise of phase {name} (mean since the last record)"}


def phase_dataset(name: str, records: list[tuple[int, dict[str, float], xr.Dataset]]) -> xr.Dataset:
    """Stack per-record scalars and per-layer metrics along ``<name>_step``; variables get the phase's prefix."""
    dim = f"{name}_step"
    steps = [r[0] for r in records]
    per_layer = xr.concat([r[2] for r in records], dim=dim, coords="different", compat="equals", join="exact")
    per_layer = per_layer.assign_coords({dim: steps}).rename({v: f"{name}_{v}" for v in per_layer.data_vars})
    scalars = {f"{name}_{k}": (dim, np.array([r[1][k] for r in records], dtype=float),
                               {"units": "1", "long_name": _SCALAR_NAMES.get(k, k).format(name=name)})
               for k in records[0][1]}
    ds = per_layer.merge(xr.Dataset(scalars, coords={dim: steps}), compat="override", join="exact")
    ds[dim].attrs.update(long_name=f"steps of the {name} phase done", units="1")
    return ds.reset_coords([c for c in ("layer_rule",) if c in ds.coords])


def _stopping(stop: StopFlag | None) -> bool:
    """A stop was requested; never on one rank of a distributed run, whose ranks would then disagree on when to
    stop (the engaged loop's own check, where they vote, stops them together)."""
    return stop is not None and stop.requested and not (dist.is_available() and dist.is_initialized())


def run_mirror_steps(model: nn.Module, settings: MirrorSettings, steps: int, *, generator: torch.Generator | None,
                     rate_scale: float, layers: list, stop: StopFlag | None = None) -> bool:
    """``steps`` mirror steps on ``layers`` of ``model`` (the interleaved ones of an engaged phase); True when
    ``stop`` was requested (SIGINT/SIGTERM) before they were all done. The caller then stops without saving the
    half-mirrored state (resume stays exact: the last checkpoint is kept as it is)."""
    for _ in range(steps):
        if _stopping(stop):
            return True
        mirror_step(model, settings, generator=generator, rate_scale=rate_scale, layers=layers)
    return False


def run_mirror_phase(model: nn.Module, phase: MirrorPhase, *, generator: torch.Generator | None = None,
                     stop: StopFlag | None = None) -> xr.Dataset:
    """Run a mirror phase on ``model``'s ``wm`` layers, recording the B-W angle every ``record_every`` steps.

    Returns variables ``<name>_weight_angle`` and ``<name>_norm_ratio`` over ``(<name>_step, layer)``. A ``stop``
    requested (SIGINT/SIGTERM) raises :class:`~neurocircuit.torch.stopping.TrainingInterrupted` between steps,
    the phase unfinished (it is run whole again on resume).
    """
    records = [(0, {}, weight_alignment(model))]
    mirrored = mirror_layers(model)
    for step in range(1, phase.steps + 1):
        if _stopping(stop):
            raise TrainingInterrupted(f"stopped in phase {phase.name!r} at mirror step {step - 1}", signalled=True)
        mirror_step(model, phase.settings, generator=generator, layers=mirrored)
        if step % phase.record_every == 0 or step == phase.steps:
            records.append((step, {}, weight_alignment(model)))
    return phase_dataset(phase.name, records)


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
    bar = progress_bar(progress, total=phase.steps, desc=phase.name, leave=False)
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
    return phase_dataset(phase.name, records)


@torch.no_grad()
def _restore_directions(model: nn.Module, before: dict[str, Tensor]) -> None:
    """The norm-matched control: every parameter back to its direction in ``before``, keeping its current norm."""
    for name, param in model.named_parameters():
        old = before[name]
        norm, old_norm = param.norm(), old.norm()
        param.copy_(old * (norm / old_norm) if old_norm > 0 else param)


def check_mirror_gain(model_mirrored: bool, schedule: Schedule, mirror: MirrorSettings) -> None:
    """Warn where a mirror's settings let B settle far from W's scale (see :func:`~neurocircuit.nn.mirror_gain`):
    the schedule's mirror phases and, when the engaged phase mirrors, the shared ``[mirror]`` settings."""
    if not model_mirrored:
        return
    used = [(f"phase {p.name!r}", p.settings) for p in schedule.phases if isinstance(p, MirrorPhase)]
    engaged = schedule.engaged
    if engaged is not None and engaged.mirror_every:
        used.append(("[mirror] (the interleaved mirror steps)", mirror))
    for where, settings in used:
        gain = mirror_gain(settings)
        if gain is not None and not MIRROR_GAIN_RANGE[0] <= gain <= MIRROR_GAIN_RANGE[1]:
            warnings.warn(
                f"{where}: B settles at {gain:.3g} x W (learning_rate {settings.learning_rate:g} x noise_std^2 "
                f"{settings.noise_std ** 2:g} / decay {settings.decay:g}), which scales the error each wm layer "
                "sends down by as much; make the product 1, or (dense mirroring, no active_units) set "
                "mirror.normalize = true",
                FeedbackScaleWarning, stacklevel=3)
