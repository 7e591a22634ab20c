"""Image data sets for deep networks: ImageFolder trees, torchvision data sets, Fashion-MNIST as RGB, synthetic images.

Registered in :mod:`neurocircuit.data` as ``imagefolder``, ``torchvision:<Class>``, ``synthetic`` (and
``fashion_mnist`` with ``channels = 3`` / ``image_size`` / ``augment``). Augmentation is reproducible and
independent of workers and of where a run resumes: the trainer's sampler hands a training set ``(index, seed)``
pairs, and each sample's random crop/flip is drawn from its own seed. A run resumed mid-epoch therefore sees
exactly the batches, crops and flips an uninterrupted run sees.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from ._toml import shown
from .datasets import DatasetInfo
from .errors import ConfigError, DataError

__all__ = ["SeededDataset", "SyntheticImages", "load_imagefolder", "load_torchvision", "load_synthetic", "rgb_images",
           "AUGMENTATIONS", "IMAGENET_MEAN", "IMAGENET_STD", "image_labels", "split_images"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
AUGMENTATIONS = ("imagenet", "flip", "none")


class NormalizeBatch:
    """uint8 images (N, C, H, W) -> float32 scaled to [0, 1] and normalised per channel, on the batch's device: the
    last, per-pixel steps of the image recipe, done once per batch on the GPU instead of per sample in the workers
    (which then also ship a quarter of the bytes)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)

    def __call__(self, x: Tensor) -> Tensor:
        mean, std = self.mean.to(x.device, non_blocking=True), self.std.to(x.device, non_blocking=True)
        return x.to(torch.float32).div_(255.0).sub_(mean).div_(std)


#: The image recipe's per-pixel end (ToDtype + Normalize), applied by the trainer to whole uint8 batches.
NORMALIZE = NormalizeBatch(IMAGENET_MEAN, IMAGENET_STD)


class SeededDataset(Dataset):
    """Applies ``transform`` to ``base[index]``, drawing its randomness from the seed that comes with the index;
    ``batch_transform`` (if any) is what the trainer applies to whole batches on the device after that."""

    takes_seed = True

    def __init__(self, base: Dataset, transform: Callable[[Any], Tensor] | None,
                 batch_transform: Callable[[Tensor], Tensor] | None = None) -> None:
        self.base, self.transform, self.batch_transform = base, transform, batch_transform

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


# splitmix64's finaliser constants as signed 64-bit integers (torch has no uint64 arithmetic)
_MIX_1 = 0xBF58476D1CE4E5B9 - (1 << 64)
_MIX_2 = 0x94D049BB133111EB - (1 << 64)


def flip_decisions(seeds: Tensor) -> Tensor:
    """Whether each sample is flipped, from its augmentation seed: a bit of splitmix64's mix of the seed (int64
    arithmetic, the same on every device), so one sample's flip never depends on which batch or process makes it."""
    z = seeds.to(torch.int64)
    z = (z ^ (z >> 30)) * _MIX_1
    z = (z ^ (z >> 27)) * _MIX_2
    z = z ^ (z >> 31)
    return ((z >> 40) & 1) == 1


class _GrayToRGB(Dataset):
    """(1, H, W) tensors resized to (3, side, side), flipped per sample with ``flip``: the proxy's Fashion-MNIST for
    ImageNet models. :meth:`batch_on_device` makes whole batches from tensors already on the device (index, flip,
    three channels); ``__getitem__`` makes the same samples one at a time."""

    def __init__(self, images: Tensor, labels: Tensor, side: int, *, flip: bool = False) -> None:
        from torch.nn import functional as F

        if images.shape[-1] != side:
            images = F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False)
        self.images, self.labels, self.flip = images.contiguous(), labels, flip
        self.tensors = (self.images, self.labels)
        self.takes_seed = flip  # the sampler's (index, seed) pairs fix every flip

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[Tensor, int]:
        index, seed = item if isinstance(item, tuple) else (item, None)
        image = self.images[index]
        if self.flip:
            flipped = torch.rand(()) < 0.5 if seed is None else flip_decisions(torch.tensor([seed]))[0]
            image = image.flip(-1) if flipped else image
        return image.expand(3, -1, -1), int(self.labels[index])

    def batch_on_device(self, tensors: tuple[Tensor, Tensor], index: Tensor, seeds: Tensor | None
                        ) -> tuple[Tensor, Tensor]:
        """The samples ``index`` (with their augmentation ``seeds``) of ``tensors`` (this data set's, moved to the
        training device): the batch a DataLoader would collate from ``__getitem__``, in a few batched ops."""
        images, labels = tensors
        x = images[index]
        if self.flip:
            flipped = torch.rand(len(index), device=x.device) < 0.5 if seeds is None else flip_decisions(seeds)
            x = torch.where(flipped[:, None, None, None], x.flip(-1), x)
        return x.expand(-1, 3, -1, -1), labels[index]


def _check_augment(augment: str) -> None:
    if augment not in AUGMENTATIONS:
        raise ConfigError(f"data.augment: unknown value {augment!r} (use {', '.join(AUGMENTATIONS)})")


def _transforms(*, image_size: int, val_resize: int, augment: str) -> tuple[Callable, Callable]:
    """Train and val transforms of PIL images to uint8 tensors (the ImageNet recipe by default); scaling and
    normalisation follow on the device (:data:`NORMALIZE`)."""
    from torchvision.transforms import v2 as T

    _check_augment(augment)
    if val_resize < image_size:
        raise ConfigError(f"data.val_resize ({val_resize}) must be >= data.image_size ({image_size})")
    to_tensor = [T.PILToTensor()]  # uint8; NORMALIZE scales and normalises whole batches on the device
    if augment == "imagenet":
        train = [T.RandomResizedCrop(image_size, antialias=True), T.RandomHorizontalFlip()]
    else:
        train = [T.Resize(image_size, antialias=True), T.CenterCrop(image_size)]
        if augment == "flip":
            train.append(T.RandomHorizontalFlip())
    val = [T.Resize(val_resize, antialias=True), T.CenterCrop(image_size)]
    return T.Compose(train + to_tensor), T.Compose(val + to_tensor)


def _pil_loader(path: str) -> Any:
    from PIL import Image

    try:
        with open(path, "rb") as fh:
            image = Image.open(fh)
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def _root(root: str | None, name: str) -> Path:
    if root is None:
        raise DataError(f"data {name!r} needs a folder: set data.root (or --data-root)")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"data root {str(path)!r} is not a folder")
    return path


def _image_folder(root: Path, split: str) -> Dataset:
    from torchvision.datasets import ImageFolder

    folder = root / split
    if not folder.is_dir():
        raise DataError(f"ImageFolder data: {folder} not found (data.root must hold train/ and val/ folders, one "
                        "sub-folder of images per class)")
    try:
        return ImageFolder(str(folder), loader=_pil_loader)
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(f"ImageFolder data in {folder}: {exc}") from None


def load_imagefolder(*, root: str | None = None, image_size: int = 224, val_resize: int = 256,
                     augment: str = "imagenet") -> tuple[Dataset, Dataset, DatasetInfo]:
    """An ImageFolder tree (the ImageNet layout): ``root/train/<class>/*`` and ``root/val/<class>/*``."""
    path = _root(root, "imagefolder")
    train_t, val_t = _transforms(image_size=image_size, val_resize=val_resize, augment=augment)
    train, val = _image_folder(path, "train"), _image_folder(path, "val")
    if train.classes != val.classes:  # type: ignore[attr-defined]
        raise DataError(f"ImageFolder data in {path}: train/ and val/ have different class folders")
    classes = len(train.classes)  # type: ignore[attr-defined]
    return (SeededDataset(train, train_t, NORMALIZE), SeededDataset(val, val_t, NORMALIZE),
            DatasetInfo("imagefolder", (3, image_size, image_size), classes, "classification"))


def load_torchvision(name: str, *, root: str | None = None, download: bool = False, image_size: int = 224,
                     val_resize: int = 256, augment: str = "imagenet") -> tuple[Dataset, Dataset, DatasetInfo]:
    """A torchvision classification data set by class name (``torchvision:CIFAR10``), with the image transforms."""
    import torchvision.datasets as tvd

    path = _root(root, f"torchvision:{name}")
    cls = getattr(tvd, name, None)
    if not isinstance(cls, type):
        raise DataError(f"torchvision has no data set {name!r}")
    train_t, val_t = _transforms(image_size=image_size, val_resize=val_resize, augment=augment)
    sets = []
    for train in (True, False):
        try:
            sets.append(cls(str(path), train=train, download=download))
        except TypeError:
            sets.append(cls(str(path), split="train" if train else "val", download=download))
        except (RuntimeError, OSError) as exc:  # torchvision's "Dataset not found or corrupted", a failed download
            text = " ".join(str(exc).split())[:160]
            tried = (f"a download was tried and failed ({type(exc).__name__}: {text})" if download else
                     f"{text} No download was tried (data.download = false; true lets torchvision download it)")
            raise DataError(f"torchvision:{name} not found in data.root {str(path)!r}: {tried}") from None
    classes = getattr(sets[0], "classes", None)
    if classes is None:
        raise DataError(f"torchvision:{name} does not list its classes; use an ImageFolder tree")
    return (SeededDataset(sets[0], train_t, NORMALIZE), SeededDataset(sets[1], val_t, NORMALIZE),
            DatasetInfo(f"torchvision:{name}", (3, image_size, image_size), len(classes), "classification"))


def load_synthetic(*, image_size: int = 224, val_resize: int | None = None, classes: int = 1000,
                   train_samples: int = 1024, test_samples: int = 256, augment: str = "flip"
                   ) -> tuple[Dataset, Dataset, DatasetInfo]:
    """Random N(0, 1) images with labels ``index % classes``: a stand-in for an image folder (benchmarks, tests, dry
    runs of an ImageNet simulation). Images are drawn at ``val_resize`` (default ``image_size``) and go through the
    same crops as real images: training ``augment`` (imagenet: random resized crop + flip; flip; none), validation a
    center crop to ``image_size``."""
    from torchvision.transforms import v2 as T

    val_resize = image_size if val_resize is None else val_resize
    for key, value in (("image_size", image_size), ("val_resize", val_resize), ("classes", classes),
                       ("train_samples", train_samples), ("test_samples", test_samples)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"data.{key} must be an int >= 1, got {shown(value)}")
    if val_resize < image_size:
        raise ConfigError(f"data.val_resize ({val_resize}) must be >= data.image_size ({image_size})")
    _check_augment(augment)
    fit = [T.Resize(image_size, antialias=True), T.CenterCrop(image_size)] if val_resize != image_size else []
    train_t = {"imagenet": [T.RandomResizedCrop(image_size, antialias=True), T.RandomHorizontalFlip()],
               "flip": [*fit, T.RandomHorizontalFlip()], "none": fit}[augment]
    train = SyntheticImages(train_samples, side=val_resize, num_classes=classes, seed=1)
    val = SyntheticImages(test_samples, side=val_resize, num_classes=classes, seed=2)
    return (SeededDataset(train, T.Compose(train_t) if train_t else None),
            SeededDataset(val, T.CenterCrop(image_size) if val_resize != image_size else None),
            DatasetInfo("synthetic", (3, image_size, image_size), classes, "classification"))


def rgb_images(train: Any, test: Any, info: DatasetInfo, *, image_size: int, augment: str
               ) -> tuple[Dataset, Dataset, DatasetInfo]:
    """Grey images ``(N, 1, H, W)`` as three equal channels of ``image_size`` (Fashion-MNIST for ImageNet models)."""
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
        raise ConfigError(f"data.image_size must be an int >= 1, got {shown(image_size)}")
    _check_augment(augment)
    flip = augment != "none"  # images already of the final size: "imagenet" and "flip" both mean a random flip
    return (_GrayToRGB(*train.tensors, image_size, flip=flip), _GrayToRGB(*test.tensors, image_size),
            DatasetInfo(info.name, (3, image_size, image_size), info.n_outputs, info.task))


def image_labels(dataset: Dataset) -> np.ndarray:
    """The class label of every sample of an image data set of this module, read without loading any image."""
    if isinstance(dataset, _GrayToRGB):
        return dataset.labels.numpy()
    base = dataset.base if isinstance(dataset, SeededDataset) else dataset
    if isinstance(base, SyntheticImages):
        return np.arange(base.size) % base.num_classes
    for attr in ("targets", "labels", "_labels"):  # ImageFolder, most torchvision sets; SVHN, STL10; Flowers102
        values = getattr(base, attr, None)
        if values is not None and len(values) == len(base):  # type: ignore[arg-type]
            return np.asarray(values)
    raise ConfigError(f"data.validation: cannot read the class labels of {type(base).__name__} without loading "
                      "every image; set data.validation = 0 (or use an ImageFolder tree)")


def split_images(train: Dataset, test: Dataset, keep: np.ndarray, val: np.ndarray) -> tuple[Dataset, Dataset]:
    """``train``'s samples ``keep`` (augmented as before) and ``val``, served as ``test`` is (its transform: a
    centre crop, no flip) — a validation set must be judged as the test set is."""
    if isinstance(train, _GrayToRGB):
        side = train.images.shape[-1]
        pick, held = torch.from_numpy(keep), torch.from_numpy(val)
        return (_GrayToRGB(train.images[pick], train.labels[pick], side, flip=train.flip),
                _GrayToRGB(train.images[held], train.labels[held], side, flip=getattr(test, "flip", False)))
    if isinstance(train, SeededDataset) and isinstance(test, SeededDataset):
        return (SeededDataset(Subset(train.base, keep.tolist()), train.transform, train.batch_transform),
                SeededDataset(Subset(train.base, val.tolist()), test.transform, test.batch_transform))
    raise ConfigError(f"data.validation: cannot split a training set of type {type(train).__name__}")
