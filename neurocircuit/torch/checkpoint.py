"""Checkpoints of a torch run: written atomically by rank 0, read back with ``weights_only=True``, and refused
when the run they belong to had other maths settings, another seed or another number of processes."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..errors import ConfigError, DataError
from ..results import atomic_path
from .distributed import DistContext

__all__ = ["CHECKPOINT_NAME", "CHECKPOINT_VERSION", "RESUMABLE", "config_differences", "rng_states", "restore_rng",
           "write_checkpoint", "read_checkpoint"]

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_VERSION = 2
#: Settings that may change between a run and its resumption (they do not change the maths).
RESUMABLE = {"torch.workers", "torch.checkpoint_every", "torch.log_every", "torch.device", "torch.compile",
             "train.epochs", "data.root", "data.download"}


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The dotted keys whose values differ between two simulation tables, except the :data:`RESUMABLE` ones --
    and ``train.epochs`` under a cosine schedule: the cosine spans the whole run, so the steps already taken
    followed another schedule than a run of the new length would have (the results would misdescribe the run)."""
    a, b = _flatten(saved), _flatten(current)
    cosine = "cosine" in (a.get("train.lr_schedule"), b.get("train.lr_schedule"))
    return sorted(k for k in set(a) | set(b)
                  if (k not in RESUMABLE or (cosine and k == "train.epochs")) and a.get(k) != b.get(k))


def rng_states(ctx: DistContext, device: torch.device) -> list[dict[str, torch.Tensor]]:
    """Every rank's global CPU (and CUDA) generator states, gathered (a collective under ``torchrun``)."""
    rng = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    if not ctx.distributed:
        return [rng]
    ranks: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(ranks, {k: v.cpu() for k, v in rng.items()})
    return ranks


def restore_rng(states: list[dict[str, torch.Tensor]], rank: int, device: torch.device) -> None:
    """Set this rank's global generators from :func:`rng_states`' list."""
    rng = states[rank]
    torch.set_rng_state(rng["cpu"].cpu())
    if "cuda" in rng and device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"].cpu(), device)


def _tensor_bytes(value: Any) -> int:
    """The bytes of the tensors in ``value`` (nested dicts, lists and tuples): about a checkpoint's size."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, Mapping):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


#: Room asked for beside the tensors (the records, the pickle's own bytes).
CHECKPOINT_MARGIN = 1 << 20


def write_checkpoint(state: Mapping[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` atomically (a crash leaves the previous checkpoint). Refused in one line, before
    writing, where the disk has less room than the checkpoint needs; a write that fails anyway (the disk filled
    meanwhile) is one line too, and the previous checkpoint is kept either way."""
    need = _tensor_bytes(state) + CHECKPOINT_MARGIN
    path.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path.parent).free
    if free < need:
        kept = "; the previous checkpoint is kept" if path.exists() else ""
        raise DataError(f"writing checkpoint {path} refused: it needs about {need / 2**20:.1f} MiB and the disk has "
                        f"{free / 2**20:.1f} MiB free{kept}")
    with atomic_path(path, "checkpoint") as tmp:
        torch.save(dict(state), tmp)


def read_checkpoint(path: Path, *, device: torch.device, config: Mapping[str, Any], seed: int, world_size: int
                    ) -> dict[str, Any]:
    """The checkpoint at ``path``, after checking it is one of this version, written by the same simulation
    settings (but :data:`RESUMABLE`), seed and number of processes; else a one-line ConfigError saying what to do."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # truncated, empty, garbage, or a pickle that is not plain tensors and data
        raise ConfigError(f"--resume: {path} is not a readable neurocircuit checkpoint ({type(exc).__name__}); "
                          "move it away to start that run afresh") from None
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        version = state.get("version") if isinstance(state, dict) else None
        raise ConfigError(f"{path}: checkpoint version {version!r} is not {CHECKPOINT_VERSION} "
                          "(not written by this neurocircuit version: start a new --out)")
    missing = [k for k, kind in (("config", Mapping), ("seed", int), ("world_size", int))
               if not isinstance(state.get(k), kind)]
    if missing:
        raise ConfigError(f"--resume: {path} has no valid {missing[0]!r} entry: not a complete neurocircuit "
                          "checkpoint; move it away to start that run afresh")
    changed = config_differences(state["config"], config)
    if changed or state["seed"] != seed:
        cosine = " (a cosine schedule spans the run's epochs)" if "train.epochs" in changed else ""
        raise ConfigError(f"--resume: {path} was written with different settings: "
                          f"{', '.join(changed) or 'seed'}{cosine} (start a new --out, or set them back)")
    if state["world_size"] != world_size:
        raise ConfigError(f"--resume: the checkpoint was written by {state['world_size']} processes, this "
                          f"run has {world_size} (the data order depends on it)")
    return state
