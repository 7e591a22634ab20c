"""Data order and batching: resumable shuffled epochs, evaluation shards, and in-memory batches.

torch's ``DistributedSampler`` is not used for training: it cannot start part-way into an epoch (exact resume
mid-epoch) and pads the last shard with repeated samples; :class:`ResumableSampler` draws the same permutation a
shuffling ``DataLoader`` would, so one process sees exactly that loader's batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset

__all__ = ["sample_seed", "ResumableSampler", "ShardSampler", "IndexedDataset", "in_memory_tensors", "TensorBatches",
           "BatchMaker", "BatchServer"]


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


class IndexedDataset(Dataset):
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


def in_memory_tensors(dataset: Dataset) -> tuple[tuple[Tensor, ...], BatchMaker | None] | None:
    """The tensors of an in-memory data set and, if it augments, its batched ``batch_on_device`` (else None: a
    ``TensorDataset`` served as is); None for a data set that needs the per-sample path."""
    if isinstance(dataset, IndexedDataset):
        dataset = dataset.base
    maker = getattr(dataset, "batch_on_device", None)
    if maker is not None:
        return tuple(dataset.tensors), maker  # type: ignore[attr-defined]
    if isinstance(dataset, TensorDataset) and not getattr(dataset, "takes_seed", False):
        return tuple(dataset.tensors), None
    return None


class TensorBatches:
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


class BatchServer:
    """Serves a data set's batches on ``device``: in-memory tensors indexed there batch by batch (augmenting whole
    batches there) instead of fetched and collated sample by sample — the same batches in the same order — or,
    otherwise and with ``workers``, a ``DataLoader``; then the data set's ``batch_transform`` and the memory format."""

    def __init__(self, device: torch.device, *, workers: int = 0, channels_last: bool = False) -> None:
        self.device, self.workers, self.channels_last = device, workers, channels_last
        self._device_tensors: dict[int, tuple[Tensor, ...]] = {}  # in-memory data sets, moved to the device once

    def loader(self, dataset: Dataset, sampler: Sampler, *, batch_size: int, train: bool = False
               ) -> Iterable[tuple[Tensor, Tensor]]:
        """The batches of ``dataset`` in ``sampler``'s order (inputs not yet through :meth:`to_device`)."""
        in_memory = in_memory_tensors(dataset)
        if in_memory is not None and not self.workers:
            tensors, make = in_memory
            key = id(tensors[0])
            if key not in self._device_tensors:
                self._device_tensors[key] = tuple(t.to(self.device) for t in tensors)
            return TensorBatches(self._device_tensors[key], sampler, batch_size, make)
        # A training loader draws its workers' base seed from its own generator, not from the global RNG that the
        # rules use (the order and augmentation come from the sampler's seeds).
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=self.workers,
                          pin_memory=self.device.type == "cuda", prefetch_factor=4 if self.workers else None,
                          generator=torch.Generator() if train else None)

    def to_device(self, x: Tensor, y: Tensor, dataset: Dataset) -> tuple[Tensor, Tensor]:
        """A batch of ``dataset`` on the device, through its ``batch_transform`` and in the memory format."""
        x = x.to(self.device, non_blocking=True)
        base = dataset.base if isinstance(dataset, IndexedDataset) else dataset
        batch_transform = getattr(base, "batch_transform", None)
        if batch_transform is not None:  # e.g. uint8 images scaled and normalised here, a batch at a time
            x = batch_transform(x)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device, non_blocking=True)

    def first(self, dataset: Dataset, n: int) -> tuple[Tensor, Tensor]:
        """The first ``n`` samples of ``dataset``, on the device (e.g. the fixed batch alignment is measured on)."""
        x, y = next(iter(DataLoader(dataset, batch_size=n)))
        return self.to_device(x, y, dataset)
