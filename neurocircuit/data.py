"""Data sets that need no download: scikit-learn's 8x8 digits and Lillicrap's linear teacher task.

Every loader returns ``(train, test)`` as :class:`torch.utils.data.TensorDataset` s of float32 inputs
(batch first) and targets (int64 class labels, or float32 for regression), plus a :class:`DatasetInfo`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import TensorDataset

from .errors import ConfigError, UnknownNameError

__all__ = ["DatasetInfo", "load_digits", "teacher_task", "load_dataset", "list_datasets"]


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a data set."""

    name: str
    input_shape: tuple[int, ...]
    n_outputs: int
    task: str  # "classification" or "regression"


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    return order[n_test:], order[:n_test]


def load_digits(*, test_fraction: float = 0.25, split_seed: int = 0
                ) -> tuple[TensorDataset, TensorDataset, DatasetInfo]:
    """scikit-learn's 1797 8x8 digit images, pixels scaled to [0, 1], as 64-vectors."""
    from sklearn.datasets import load_digits as _sk_digits

    bunch = _sk_digits()
    x = torch.tensor(bunch.data / 16.0, dtype=torch.float32)
    y = torch.tensor(bunch.target, dtype=torch.int64)
    train, test = _split(len(x), test_fraction, split_seed)
    return (TensorDataset(x[train], y[train]), TensorDataset(x[test], y[test]),
            DatasetInfo("digits", (64,), 10, "classification"))


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


_LOADERS: dict[str, Callable[..., tuple[TensorDataset, TensorDataset, DatasetInfo]]] = {
    "digits": load_digits,
    "teacher": teacher_task,
}


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return sorted(_LOADERS)


def load_dataset(name: str, **options: object) -> tuple[TensorDataset, TensorDataset, DatasetInfo]:
    """Load a data set by name with loader-specific options (e.g. ``test_fraction``)."""
    if name not in _LOADERS:
        raise UnknownNameError(f"unknown dataset {name!r} (known: {', '.join(list_datasets())})")
    try:
        return _LOADERS[name](**options)
    except TypeError as exc:
        raise ConfigError(f"dataset {name!r}: {exc}") from None
