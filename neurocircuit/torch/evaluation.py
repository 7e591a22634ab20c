"""Evaluating a network on a held-out set: loss, top-1 and top-5 accuracy, sharded over the ranks and summed."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Dataset

from .distributed import DistContext
from .sampling import BatchServer, ShardSampler

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, *, batches: BatchServer, ctx: DistContext,
             loss_fn: Callable[..., Tensor], classification: bool, n_classes: int, batch_size: int,
             max_batches: int | None = None, amp_dtype: torch.dtype | None = None) -> dict[str, float]:
    """Loss, top-1 and top-5 accuracy (NaN for regression) of ``model`` on ``dataset``, keys ``test_*``; every rank
    evaluates its shard and the sums are all-reduced. ``max_batches``: only the first batches of each shard. The
    model is left in training mode."""
    model.eval()
    device = batches.device
    sampler = ShardSampler(len(dataset), num_replicas=ctx.world_size, rank=ctx.rank)  # type: ignore[arg-type]
    k = min(5, n_classes)
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    for i, (x, y) in enumerate(batches.loader(dataset, sampler, batch_size=batch_size)):
        if max_batches is not None and i >= max_batches:
            break
        x, y = batches.to_device(x, y, dataset)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            output = model(x)
        n = float(len(y))
        top1 = top5 = torch.zeros((), dtype=torch.float64, device=device)
        if classification:
            hits = output.topk(k, dim=-1).indices == y[:, None]
            top1, top5 = hits[:, 0].sum().double(), hits.any(-1).sum().double()
        sums += torch.stack([loss_fn(output.float(), y).double() * n, top1, top5,
                             torch.tensor(n, dtype=torch.float64, device=device)])
    if ctx.distributed:
        dist.all_reduce(sums)
    model.train()
    loss, top1, top5, n = sums.tolist()
    return {"test_loss": loss / n, "test_accuracy": top1 / n if classification else math.nan,
            "test_top5": top5 / n if classification else math.nan}
