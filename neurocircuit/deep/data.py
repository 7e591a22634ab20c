"""Image data for deep training: ImageFolder trees, torchvision data sets, the Fashion-MNIST proxy, synthetic images.

Augmentation is reproducible and independent of workers and of where a run resumes: the sampler hands the
data set ``(index, seed)`` pairs, and each sample's random crop/flip is drawn from its own seed (a function of
the run seed, the epoch and the index). A run resumed mid-epoch therefore sees exactly the batches, crops and
flips an uninterrupted run sees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler, Sampler

from ..errors import DataError
from .config import DeepConfig

__all__ = ["ImageData", "SeededDataset", "ResumableSampler", "ShardSampler", "SyntheticImages", "load_image_data",
           "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ImageData:
    """Train and validation sets (items ``(image, label)``; train items are addressed by ``(index, seed)``)."""

    train: Dataset
    val: Dataset
    num_classes: int
    description: str


class SeededDataset(Dataset):
    """Applies ``transform`` to ``base[index]``, drawing its randomness from the seed that comes with the index."""

    def __init__(self, base: Dataset, transform: Callable[[Any], Tensor] | None) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[Tensor, int]:
        index, seed = item if isinstance(item, tuple) else (item, None)
        image, label = self.base[index]
        if self.transform is not None:
            if seed is None:
                image = self.transform(image)
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    image = self.transform(image)
        return image, label


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of sample ``index`` in ``epoch`` (a fixed mixing of the three numbers)."""
    return ((seed * 1_000_003 + epoch) * 998_244_353 + index * 2_654_435_761) % (2**63 - 1)


class ResumableSampler(DistributedSampler):
    """:class:`~torch.utils.data.DistributedSampler` (per-epoch shuffle, one shard per rank) that can start
    part-way into an epoch and yields ``(index, augmentation seed)`` pairs."""

    def __init__(self, dataset: Dataset, *, num_replicas: int, rank: int, seed: int, shuffle: bool = True) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=True)
        self.start = 0

    def set_position(self, epoch: int, start: int) -> None:
        """Serve epoch ``epoch`` from its ``start``-th sample of this rank's shard on."""
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        indices = list(super().__iter__())
        for index in indices[self.start:]:
            yield index, sample_seed(self.seed, self.epoch, index)

    def __len__(self) -> int:
        return self.num_samples - self.start


class ShardSampler(Sampler[int]):
    """Every ``num_replicas``-th index from ``rank`` on, in order, without padding (for evaluation)."""

    def __init__(self, size: int, *, num_replicas: int, rank: int) -> None:
        self.indices = range(rank, size, num_replicas)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class SyntheticImages(Dataset):
    """``size`` random images of shape (3, side, side) with labels ``index % num_classes``; the same on every
    call (each image is drawn from its own generator)."""

    def __init__(self, size: int, *, side: int, num_classes: int, seed: int = 0) -> None:
        self.size, self.side, self.num_classes, self.seed = size, side, num_classes, seed

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        return torch.randn((3, self.side, self.side), generator=g), index % self.num_classes


class _GrayToRGB(Dataset):
    """(1, H, W) tensors resized to (3, side, side): the proxy's Fashion-MNIST for ImageNet models."""

    def __init__(self, images: Tensor, labels: Tensor, side: int) -> None:
        from torch.nn import functional as F

        if images.shape[-1] != side:
            images = F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False)
        self.images, self.labels = images.contiguous(), labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index].expand(3, -1, -1), int(self.labels[index])


def _transforms(config: DeepConfig, *, tensors: bool) -> tuple[Callable | None, Callable | None]:
    """Train and val transforms. ``tensors``: the inputs are already normalised tensors of the final size."""
    from torchvision.transforms import v2 as T

    if tensors:
        flip = T.RandomHorizontalFlip() if config.augment != "none" else None
        return flip, None
    to_tensor = [T.PILToTensor(), T.ToDtype(torch.float32, scale=True), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    size = config.image_size
    if config.augment == "imagenet":
        train = [T.RandomResizedCrop(size, antialias=True), T.RandomHorizontalFlip()]
    else:
        train = [T.Resize(size, antialias=True), T.CenterCrop(size)]
        if config.augment == "flip":
            train.append(T.RandomHorizontalFlip())
    val = [T.Resize(config.val_resize, antialias=True), T.CenterCrop(size)]
    return T.Compose(train + to_tensor), T.Compose(val + to_tensor)


def _pil_loader(path: str) -> Any:
    from PIL import Image

    try:
        with open(path, "rb") as fh:
            image = Image.open(fh)
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def _image_folder(root: Path, split: str) -> Dataset:
    from torchvision.datasets import ImageFolder

    folder = root / split
    if not folder.is_dir():
        raise DataError(f"ImageFolder data: {folder} not found (data_root must hold train/ and val/ folders, one "
                        "sub-folder of images per class)")
    try:
        return ImageFolder(str(folder), loader=_pil_loader)
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(f"ImageFolder data in {folder}: {exc}") from None


def load_image_data(config: DeepConfig) -> ImageData:
    """The train/val sets of ``config.data`` with the config's transforms, or a :class:`DataError`."""
    if config.data == "synthetic":
        train_t, _ = _transforms(config, tensors=True)
        side, n = config.image_size, 1000
        train = SyntheticImages(max(64 * config.batch_size, 1024), side=side, num_classes=n, seed=1)
        val = SyntheticImages(max(4 * config.batch_size, 256), side=side, num_classes=n, seed=2)
        return ImageData(SeededDataset(train, train_t), val, n, f"synthetic {side}x{side} images, {n} classes")
    if config.data == "fashion_mnist":
        from ..data import load_fashion_mnist

        train_set, test_set, info = load_fashion_mnist(root=config.data_root, download=config.download)
        side = config.image_size
        train = _GrayToRGB(*train_set.tensors, side)
        val = _GrayToRGB(*test_set.tensors, side)
        train_t, _ = _transforms(config, tensors=True)
        return ImageData(SeededDataset(train, train_t), val, info.n_outputs,
                         f"Fashion-MNIST resized to {side}x{side}, 3 channels")
    if config.data_root is None:
        raise DataError(f"data {config.data!r} needs a data root (--data-root or train.data_root)")
    root = Path(config.data_root).expanduser()
    if not root.is_dir():
        raise DataError(f"data root {str(root)!r} is not a folder")
    train_t, val_t = _transforms(config, tensors=False)
    if config.data == "imagefolder":
        train, val = _image_folder(root, "train"), _image_folder(root, "val")
        if train.classes != val.classes:  # type: ignore[attr-defined]
            raise DataError(f"ImageFolder data in {root}: train/ and val/ have different class folders")
        classes = len(train.classes)  # type: ignore[attr-defined]
    else:
        train, val, classes = _torchvision_dataset(config.data.partition(":")[2], root, config.download)
    return ImageData(SeededDataset(train, train_t), SeededDataset(val, val_t), classes, f"{config.data} in {root}")


def _torchvision_dataset(name: str, root: Path, download: bool) -> tuple[Dataset, Dataset, int]:
    import torchvision.datasets as tvd

    cls = getattr(tvd, name, None)
    if not isinstance(cls, type):
        raise DataError(f"torchvision has no data set {name!r}")
    sets = []
    for train in (True, False):
        try:
            sets.append(cls(str(root), train=train, download=download))
        except TypeError:
            sets.append(cls(str(root), split="train" if train else "val", download=download))
        except RuntimeError as exc:  # torchvision's "Dataset not found or corrupted"
            raise DataError(f"torchvision:{name} in {root}: {exc}") from None
    classes = getattr(sets[0], "classes", None)
    if classes is None:
        raise DataError(f"torchvision:{name} does not list its classes; use an ImageFolder tree")
    return sets[0], sets[1], len(classes)

