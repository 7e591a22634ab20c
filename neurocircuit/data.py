"""The one data registry of both backends: scikit-learn's 8x8 digits, Lillicrap's linear teacher task, Fashion-MNIST
from IDX files, and the image data sets of :mod:`neurocircuit.images` (``imagefolder``, ``torchvision:<Class>``,
``synthetic``); transformed test sets for out-of-distribution checks.

Every loader returns ``(train, test, info)``: :class:`torch.utils.data.TensorDataset` s of float32 inputs
(batch first; images as ``(N, 1, H, W)``) and targets (int64 class labels, or float32 for regression), and a
:class:`DatasetInfo`. Networks built from circuits reshape an image to a vector population when the sizes match.

:func:`load_splits` adds a validation set carved from the training set (``[data] validation = 0.1``): drawn with
its own seed (``validation_seed``), not the run's, so every arm and seed sees the same one; stratified by class for
classification; served with the test-time transform (no training augmentation).
"""

from __future__ import annotations

import functools
import gzip
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ._toml import expect, shown
from .datasets import SPLIT_KEYS, TORCHVISION_PREFIX, DatasetInfo, check_dataset_name, list_datasets
from .errors import ConfigError, DataError
from .transforms import parse_transform

__all__ = ["DatasetInfo", "load_digits", "teacher_task", "read_idx", "find_fashion_mnist", "load_fashion_mnist",
           "transform_images", "parse_transform", "loader", "load_dataset", "list_datasets", "check_dataset_name",
           "check_validation", "validation_indices", "split_validation", "load_splits", "loader_options"]


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    expect(test_fraction, (int, float), "data.test_fraction")
    expect(seed, int, "data.split_seed")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"data.test_fraction must be in (0, 1), got {shown(test_fraction)}")
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    return order[n_test:], order[:n_test]


def load_digits(*, test_fraction: float = 0.25, split_seed: int = 0, train_samples: int | None = None,
                test_samples: int | None = None) -> tuple[TensorDataset, TensorDataset, DatasetInfo]:
    """scikit-learn's 1797 8x8 digit images, pixels scaled to [0, 1], shaped ``(N, 1, 8, 8)``. ``train_samples`` /
    ``test_samples`` keep the first N of each split (quick runs, e.g. a Brian2 circuit's first presentations)."""
    from sklearn.datasets import load_digits as _sk_digits

    bunch = _sk_digits()
    x = torch.tensor(bunch.data / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(bunch.target, dtype=torch.int64)
    train, test = _split(len(x), test_fraction, split_seed)
    for key, value in (("train_samples", train_samples), ("test_samples", test_samples)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigError(f"data.{key} must be an int >= 1, got {shown(value)}")
    train, test = train[:train_samples], test[:test_samples]
    return (TensorDataset(x[train], y[train]), TensorDataset(x[test], y[test]),
            DatasetInfo("digits", (1, 8, 8), 10, "classification"))


def teacher_task(*, n_in: int = 30, n_hidden: int = 20, n_out: int = 10, n_train: int = 2000,
                 n_test: int = 500, noise_std: float = 0.0, split_seed: int = 0
                 ) -> tuple[TensorDataset, TensorDataset, DatasetInfo]:
    """Lillicrap et al.'s linear regression task: targets T x from a random linear teacher T (30 -> 10).

    ``n_hidden`` is recorded in the info only (the student's width is the model's business).
    """
    del n_hidden
    rng = np.random.default_rng(split_seed)
    teacher = rng.uniform(-1.0, 1.0, size=(n_out, n_in))
    x = rng.standard_normal((n_train + n_test, n_in))
    y = x @ teacher.T + noise_std * rng.standard_normal((n_train + n_test, n_out))
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    return (TensorDataset(xt[:n_train], yt[:n_train]), TensorDataset(xt[n_train:], yt[n_train:]),
            DatasetInfo("teacher", (n_in,), n_out, "regression"))


_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not, checking its header against its length."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path} is truncated (header)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    body = raw[4 + 4 * ndim:]
    if len(body) != expected:
        raise DataError(f"{path} is truncated or corrupt: header says {shape} ({expected} bytes of data), "
                        f"found {len(body)} bytes")
    return np.frombuffer(body, dtype=dtype).reshape(shape)


#: Where Fashion-MNIST is looked for, after an explicit ``root`` and ``$NEUROCIRCUIT_DATA/fashion-mnist``.
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist", "~/.cache/neurocircuit/FashionMNIST/raw")
_FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                  "t10k-labels-idx1-ubyte")
#: Mean and standard deviation of the Fashion-MNIST training pixels (scaled to [0, 1]).
FASHION_MNIST_STATS = (0.2860, 0.3530)


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def find_fashion_mnist(root: str | Path | None = None, *, download: bool = True) -> dict[str, Path]:
    """The four Fashion-MNIST IDX files: from ``root``, ``$NEUROCIRCUIT_DATA/fashion-mnist``, Debian's
    ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``) or torchvision's download cache, and as a
    last resort a torchvision download. Raises :class:`DataError` saying where it looked, whether a download was
    tried (and why it failed) and which setting changes that."""
    if root is not None:  # an explicit folder is the only place looked at
        files = {stem: _idx_file(Path(root).expanduser(), stem) for stem in _FASHION_FILES}
        if not all(files.values()):
            raise DataError(f"data.root {str(root)!r} does not hold the Fashion-MNIST files "
                            f"{', '.join(_FASHION_FILES)} (.gz or not); no download was tried (with data.root set, "
                            "only that folder is read): unset data.root to use the usual places and a download")
        return files  # type: ignore[return-value]
    candidates = []
    if os.environ.get("NEUROCIRCUIT_DATA"):
        candidates.append(Path(os.environ["NEUROCIRCUIT_DATA"]).expanduser() / "fashion-mnist")
    candidates += [Path(d).expanduser() for d in FASHION_MNIST_DIRS]
    for folder in candidates:
        files = {stem: _idx_file(folder, stem) for stem in _FASHION_FILES}
        if all(files.values()):
            return files  # type: ignore[return-value]
    cache = Path(FASHION_MNIST_DIRS[1]).expanduser().parent.parent
    if download:
        try:
            import torchvision

            torchvision.datasets.FashionMNIST(str(cache), train=True, download=True)
            torchvision.datasets.FashionMNIST(str(cache), train=False, download=True)
            return find_fashion_mnist(cache / "FashionMNIST" / "raw", download=False)
        except Exception as exc:  # no network or a failed download: say so, with what to do instead
            reason = " ".join(str(exc).split())[:160] or "no reason given"
            tried = f"a torchvision download into {cache} was tried and failed ({type(exc).__name__}: {reason})"
    else:
        tried = "no download was tried (data.download = false; true lets torchvision download them)"
    raise DataError(f"Fashion-MNIST not found: looked in {', '.join(map(str, candidates))}"
                    + ("" if os.environ.get("NEUROCIRCUIT_DATA") else " ($NEUROCIRCUIT_DATA is not set)")
                    + f"; {tried}. Put the four IDX files in a folder and set data.root (--data-root) to it, or "
                    "$NEUROCIRCUIT_DATA to a folder holding fashion-mnist/, or apt-get install dataset-fashion-mnist")


def load_fashion_mnist(*, root: str | None = None, download: bool = True, pad: int = 0, normalize: bool = True,
                       train_samples: int | None = None, test_samples: int | None = None, channels: int = 1,
                       image_size: int | None = None, augment: str = "none"
                       ) -> tuple[TensorDataset, TensorDataset, DatasetInfo]:
    """Fashion-MNIST as ``(N, 1, 28 + 2 pad, 28 + 2 pad)`` images in [0, 1], standardised if ``normalize``.

    ``pad = 2`` gives the 32x32 inputs of LeNet-5; ``image_size = 32`` resizes instead (bilinear, as BioTorch's
    benchmark does). ``train_samples`` / ``test_samples`` take the first N. ``channels = 3`` (with ``image_size``
    and ``augment``: none or flip) gives the three-channel images an ImageNet model takes (the deep-network proxy).
    """
    if channels not in (1, 3):
        raise ConfigError(f"data.channels must be 1 or 3, got {shown(channels)}")
    if channels == 1 and augment != "none":
        raise ConfigError("data.augment needs data.channels = 3 (images for ImageNet models)")
    if channels == 1 and image_size is not None and (pad or not isinstance(image_size, int) or image_size < 1):
        raise ConfigError(f"data.image_size must be a positive integer and excludes data.pad, got image_size = "
                          f"{image_size!r}, pad = {pad!r}")
    files = find_fashion_mnist(root, download=download)
    sets = []
    for split, limit in (("train", train_samples), ("t10k", test_samples)):
        images = read_idx(files[f"{split}-images-idx3-ubyte"])
        labels = read_idx(files[f"{split}-labels-idx1-ubyte"])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"Fashion-MNIST {split} files disagree: images {images.shape}, labels {labels.shape}")
        images, labels = images[:limit], labels[:limit]
        x = torch.tensor(images, dtype=torch.float32).div_(255.0).unsqueeze(1)
        if normalize:
            x = (x - FASHION_MNIST_STATS[0]) / FASHION_MNIST_STATS[1]
        if pad:
            x = torch.nn.functional.pad(x, (pad,) * 4, value=float(x.min()))
        if channels == 1 and image_size is not None:
            x = torch.nn.functional.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True,
                                                align_corners=False)
        sets.append(TensorDataset(x, torch.tensor(labels, dtype=torch.int64)))
    side = images.shape[1] + 2 * pad if channels == 3 or image_size is None else image_size
    info = DatasetInfo("fashion_mnist", (1, side, side), 10, "classification")
    if channels == 3:
        from .images import rgb_images

        return rgb_images(sets[0], sets[1], info, image_size=image_size or side, augment=augment)
    return sets[0], sets[1], info


def transform_images(dataset: TensorDataset, spec: str) -> TensorDataset:
    """A copy of an image data set ``(N, C, H, W)`` rotated, shifted (right and down) or scaled about the centre.

    The background is filled with each image's minimum (the blank value after standardisation).
    """
    from torchvision.transforms.v2 import functional as TF

    kind, amount = parse_transform(spec)
    x, y = dataset.tensors
    if x.dim() != 4:
        raise ConfigError(f"transform {spec!r} needs images (N, C, H, W), got inputs of shape {tuple(x.shape)}")
    base = x.amin(dim=(1, 2, 3), keepdim=True)
    shifted = x - base  # so that filling with 0 fills with the background
    angle, translate, scale = 0.0, [0, 0], 1.0
    if kind == "rotate":
        angle = amount
    elif kind == "shift":
        translate = [int(round(amount))] * 2
    else:
        scale = amount
    out = TF.affine(shifted, angle=angle, translate=translate, scale=scale, shear=[0.0, 0.0],
                    interpolation=TF.InterpolationMode.BILINEAR, fill=0.0)
    return TensorDataset(out + base, y)


def loader(name: str) -> Callable[..., tuple[Any, Any, DatasetInfo]]:
    """The loader function of data set ``name`` (:data:`neurocircuit.datasets.DATASET_NAMES` or
    ``torchvision:<Class>``); the image loaders are imported on first use. Its keyword parameters are the data set's
    ``[data]`` options (:func:`loader_options`)."""
    check_dataset_name(name)
    if name.startswith(TORCHVISION_PREFIX):
        from .images import load_torchvision

        return functools.partial(load_torchvision, name[len(TORCHVISION_PREFIX):])
    if name in ("imagefolder", "synthetic"):
        from . import images

        return {"imagefolder": images.load_imagefolder, "synthetic": images.load_synthetic}[name]
    return {"digits": load_digits, "teacher": teacher_task, "fashion_mnist": load_fashion_mnist}[name]


def loader_options(name: str) -> frozenset[str]:
    """The ``[data]`` keys data set ``name`` takes: its loader's keyword parameters plus
    :data:`~neurocircuit.datasets.SPLIT_KEYS`."""
    parameters = inspect.signature(loader(name)).parameters.values()
    return frozenset(SPLIT_KEYS) | {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def load_dataset(name: str, **options: Any) -> tuple[Any, Any, DatasetInfo]:
    """Load a data set by name with loader-specific options (e.g. ``test_fraction``, ``root``, ``image_size``).

    Returns map-style ``(train, test, info)``: :class:`~torch.utils.data.TensorDataset` s for the small sets,
    image data sets (whose training set takes ``(index, seed)`` for reproducible augmentation) for the others.
    """
    if "validation" in options or "validation_seed" in options:
        raise ConfigError("data.validation is a key of load_splits (train, validation, test, info), not of "
                          "load_dataset")
    load = loader(name)
    try:
        return load(**options)
    except TypeError as exc:
        raise ConfigError(f"dataset {name!r}: {exc}") from None


def check_validation(fraction: Any, seed: Any = 0) -> tuple[float, int]:
    """``(fraction, seed)`` of ``[data] validation`` / ``validation_seed`` if valid, else a one-line
    :class:`ConfigError`: the fraction is a finite number in [0, 1), the seed an integer >= 0."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not np.isfinite(fraction) \
            or not 0.0 <= fraction < 1.0:
        raise ConfigError(f"data.validation must be a finite number in [0, 1) (0: no validation split), "
                          f"got {shown(fraction)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"data.validation_seed must be an integer >= 0, got {shown(seed)}")
    return float(fraction), int(seed)


def validation_indices(n: int, fraction: float, seed: int = 0, labels: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` indices (sorted) of ``n`` samples, the validation part ``round(fraction * n)`` of
    them (at least one for ``fraction > 0``).

    With ``labels`` the split is stratified: each class gives the floor or the ceiling of ``fraction`` times its
    count (the ceilings go to the largest remainders, ties drawn at random), so every class keeps its proportion to
    within one sample; without, it is a plain random split. The same ``seed`` gives the same indices on every run.
    Raises :class:`ConfigError` if a class (or the whole set) would keep no training sample.
    """
    fraction, seed = check_validation(fraction, seed)
    rng = np.random.default_rng(seed)
    if labels is None:
        groups = [np.arange(n)]
    else:
        labels = np.asarray(labels)
        if len(labels) != n:
            raise ValueError(f"{len(labels)} labels for {n} samples")
        groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]  # sorted classes: reproducible draws
    total = max(1, int(np.floor(fraction * n + 0.5))) if fraction > 0 else 0
    share = np.array([fraction * len(g) for g in groups])
    counts = np.floor(share).astype(int)
    # the rest of the total, one each to the classes with the largest remainders that can spare a sample
    order = sorted(range(len(groups)), key=lambda k: (-(share[k] - counts[k]), rng.random()))
    for k in [k for k in order if len(groups[k]) - counts[k] > 1][:max(0, total - counts.sum())]:
        counts[k] += 1
    smallest = min(range(len(groups)), key=lambda k: len(groups[k]) - counts[k])
    if counts.sum() < total or len(groups[smallest]) - counts[smallest] < 1:
        which = "the training set" if labels is None else \
            f"class {labels[groups[smallest][0]]} ({len(groups[smallest])} samples)"
        raise ConfigError(f"data.validation = {fraction} ({total} of {n} samples) leaves {which} no training sample")
    val = [rng.permutation(members)[:k] for members, k in zip(groups, counts)]
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    keep = np.ones(n, dtype=bool)
    keep[val_idx] = False
    return np.flatnonzero(keep), val_idx


def _labels(dataset: Any) -> np.ndarray:
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None:
        return tensors[1].numpy()
    from .images import image_labels

    return image_labels(dataset)


def split_validation(train: Any, test: Any, info: DatasetInfo, fraction: float, seed: int = 0
                     ) -> tuple[Any, Any | None]:
    """``(train part, validation part)`` of ``train``; ``(train, None)`` for ``fraction = 0``.

    Classification sets are split per class (:func:`validation_indices`). The validation part is served as the test
    set is: an augmenting training set's part is rebuilt with the test set's transform.
    """
    fraction, seed = check_validation(fraction, seed)
    if fraction == 0:
        return train, None
    labels = _labels(train) if info.task == "classification" else None
    keep, val = validation_indices(len(train), fraction, seed, labels)
    if isinstance(train, TensorDataset) and not getattr(train, "takes_seed", False):
        pick_train, pick_val = torch.from_numpy(keep), torch.from_numpy(val)
        return (TensorDataset(*(t[pick_train] for t in train.tensors)),
                TensorDataset(*(t[pick_val] for t in train.tensors)))
    from .images import split_images

    return split_images(train, test, keep, val)


def load_splits(name: str, *, validation: Any = 0.0, validation_seed: Any = 0, **options: Any
                ) -> tuple[Any, Any | None, Any, DatasetInfo]:
    """``(train, validation, test, info)``: :func:`load_dataset` with ``validation`` (a fraction in [0, 1)) of the
    training set held out, drawn with ``validation_seed``; the validation set is None for ``validation = 0``."""
    fraction, seed = check_validation(validation, validation_seed)
    train, test, info = load_dataset(name, **options)
    train, val = split_validation(train, test, info, fraction, seed)
    return train, val, test, info
