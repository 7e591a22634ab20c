"""The trainer's records as an ``xarray.Dataset`` in the package's results convention (dims ``step``, ``layer``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["PER_LAYER", "SCALARS", "VAL_SCALARS", "records_dataset"]

#: Per-layer variables of a record: attributes.
PER_LAYER = {
    "weight_angle": {"units": "degree", "long_name": "angle between B and W^T"},
    "norm_ratio": {"units": "1", "long_name": "||B|| / ||W||"},
    "weight_norm": {"units": "1", "long_name": "||W|| (Frobenius)"},
    "gradient_angle": {"units": "degree", "long_name": "angle between error sent through B and through W^T"},
    "update_angle": {"units": "degree", "long_name": "angle between the rule's and backprop's update of W"},
    "effective_dim": {"units": "1", "long_name": "participation ratio of W's singular values"},
}
#: Scalar variables of a record: units.
SCALARS = {"lr": "1", "train_loss": "1", "train_accuracy": "1", "test_loss": "1", "test_accuracy": "1",
           "test_top5": "1", "images_per_second": "1/s", "replica_spread": "1"}
#: Recorded beside ``test_*`` when the trainer has a validation set (``[data] validation``).
VAL_SCALARS = {"val_loss": ("1", "loss on the validation set (held out of the training data)"),
               "val_accuracy": ("1", "top-1 accuracy on the validation set (held out of the training data)"),
               "val_top5": ("1", "top-5 accuracy on the validation set (held out of the training data)")}
_TEST_NAMES = {"test_loss": "loss on the test set", "test_accuracy": "top-1 accuracy on the test set",
               "test_top5": "top-5 accuracy on the test set"}


def records_dataset(records: Sequence[dict[str, Any]], *, layer_names: Sequence[str], steps_per_epoch: int,
                    seconds: float, steps: int, phase: str | None) -> xr.Dataset:
    """The records of an engaged phase (each a dict of the :data:`SCALARS`, optional :data:`VAL_SCALARS` and
    :data:`PER_LAYER` lists) as a Dataset over ``step`` and ``layer``; ``seconds`` of training over ``steps`` give
    ``seconds_per_step``; ``phase``: the engaged phase's name, stored per record."""
    steps_done = [r["step"] for r in records]
    data: dict[str, Any] = {k: ("step", np.array([r[k] for r in records], dtype=float), {"units": u})
                            for k, u in SCALARS.items()}
    for key, name in _TEST_NAMES.items():
        data[key][2]["long_name"] = name
    if "val_accuracy" in records[-1]:  # a run with a validation set records it from its first record
        data.update({k: ("step", np.array([r.get(k, math.nan) for r in records], dtype=float),
                         {"units": u, "long_name": name}) for k, (u, name) in VAL_SCALARS.items()})
    n_layers = len(layer_names)
    for key, attrs in PER_LAYER.items():
        # .get: records from a checkpoint written before a metric existed
        values = np.array([r.get(key, [math.nan] * n_layers) for r in records], dtype=float)
        data[key] = (("step", "layer"), values.reshape(len(records), n_layers), dict(attrs))
    ds = xr.Dataset(data, coords={
        "step": ("step", steps_done, {"long_name": "optimizer steps done"}),
        "epoch": ("step", np.array(steps_done) / steps_per_epoch, {"units": "epoch"}),
        "layer": list(layer_names)})
    ds["seconds_per_step"] = xr.DataArray(seconds / max(steps, 1), attrs={
        "units": "s", "long_name": "wall time of a training step with its mirroring and data loading"})
    ds["images_per_second"].attrs["long_name"] = "training throughput, all processes"
    if phase is not None:  # which phase each record belongs to, as the Brian2 backend labels its times
        ds["phase"] = ("step", np.full(len(steps_done), phase, dtype=object), {"long_name": "phase of the schedule"})
    return ds
