"""The device and the ``torchrun`` process group: which device a run uses, and this process's place in the job.

torch's own helpers do the work (``torch.distributed.init_process_group`` with the environment ``torchrun`` sets,
``DistributedDataParallel`` in the trainer); this module only decides what to call with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError

__all__ = ["DistContext", "resolve_device", "cuda_default", "init_distributed", "release_process_group", "sync_buffers",
           "replica_spread"]


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


def init_distributed(device: torch.device) -> DistContext:
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


@torch.no_grad()
def sync_buffers(model: nn.Module, ctx: DistContext) -> None:
    """Give every rank rank 0's buffers but B (BatchNorm statistics: DDP broadcasts them before each forward, so
    after the last step each rank holds its own; evaluation and checkpoints need one model)."""
    if not ctx.distributed:
        return
    for name, buffer in model.named_buffers():
        if not name.endswith("feedback_weight"):
            dist.broadcast(buffer, src=0)


@torch.no_grad()
def replica_spread(model: nn.Module, ctx: DistContext) -> float:
    """max |x_rank - x_rank'| over every weight, B and buffer (0 on one process): the replicas' drift."""
    if not ctx.distributed:
        return 0.0
    flat = torch.cat([t.detach().reshape(-1).double() for t in model.state_dict().values() if t.is_floating_point()])
    high, low = flat.clone(), flat
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    return float((high - low).max())
