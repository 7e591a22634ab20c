"""The names of the data registry, without torch: the schema checks ``[data] name`` and the backends check a data
set's options before any loader (and torch) is imported. The loaders themselves, and each one's options
(:func:`neurocircuit.data.loader_options`), are in :mod:`neurocircuit.data`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import UnknownNameError

__all__ = ["DATASET_NAMES", "TORCHVISION_PREFIX", "SPLIT_KEYS", "DatasetInfo", "list_datasets", "check_dataset_name"]

#: Data sets with a loader in :mod:`neurocircuit.data`; any torchvision data set is ``torchvision:<Class>``.
DATASET_NAMES = ("digits", "fashion_mnist", "imagefolder", "synthetic", "teacher")
TORCHVISION_PREFIX = "torchvision:"
#: ``[data]`` keys every data set takes besides its loader's options: the validation split (``load_splits``).
SPLIT_KEYS = ("name", "validation", "validation_seed")


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a data set."""

    name: str
    input_shape: tuple[int, ...]
    n_outputs: int
    task: str  # "classification" or "regression"


def list_datasets() -> list[str]:
    """Names accepted by :func:`neurocircuit.data.load_dataset` (plus ``torchvision:<Class>``)."""
    return sorted(DATASET_NAMES) + [f"{TORCHVISION_PREFIX}<Class>"]


def check_dataset_name(name: Any, where: str = "data.name") -> str:
    """``name`` if the data registry knows it, else an :class:`UnknownNameError` naming ``where``."""
    if isinstance(name, str) and (name in DATASET_NAMES or (name.startswith(TORCHVISION_PREFIX)
                                                            and len(name) > len(TORCHVISION_PREFIX))):
        return name
    raise UnknownNameError(f"{where}: unknown dataset {name!r} (known: {', '.join(list_datasets())})")
