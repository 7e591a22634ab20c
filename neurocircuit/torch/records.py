"""The trainer's records as an ``xarray.Dataset`` in the package's results convention (dims ``step``, ``layer``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["PER_LAYER", "SCALARS", "VAL_SCALARS", "LAYER_ATTRS", "PHASE_ATTRS", "records_dataset",
           "ood_dataset"]

#: Per-layer variables of a record: attributes.
PER_LAYER = {
    "weight_angle": {"units": "degree", "long_name": "angle between B and Wᵀ"},
    "norm_ratio": {"units": "1", "long_name": "||B|| / ||W||"},
    "weight_norm": {"units": "1", "long_name": "||W|| (Frobenius)"},
    "gradient_angle": {"units": "degree", "long_name": "angle between error sent through B and through Wᵀ"},
    "update_angle": {"units": "degree", "long_name": "angle between the rule's and backprop's update of W"},
    "effective_dim": {"units": "1", "long_name": "participation ratio of W's singular values"},
}
#: Scalar variables of a record: (units, long_name). Accuracies are fractions correct (units "1"), as every results
#: file stores them; consoles and figures show them in percent and say so.
SCALARS = {"lr": ("1", "learning rate of the optimizer"),
           "train_loss": ("1", "training loss (mean over the batches since the last record)"),
           "train_accuracy": ("1", "top-1 accuracy on the training batches since the last record (fraction)"),
           "test_loss": ("1", "loss on the test set"),
           "test_accuracy": ("1", "top-1 accuracy on the test set (fraction)"),
           "test_top5": ("1", "top-5 accuracy on the test set (fraction)"),
           "images_per_second": ("1/s", "training throughput, all processes"),
           "replica_spread": ("1", "largest difference of a parameter between processes (0: replicas agree)")}
#: Recorded beside ``test_*`` when the trainer has a validation set (``[data] validation``).
VAL_SCALARS = {"val_loss": ("1", "loss on the validation set (held out of the training data)"),
               "val_accuracy": ("1", "top-1 accuracy on the validation set (held out of the training data; "
                                     "fraction)"),
               "val_top5": ("1", "top-5 accuracy on the validation set (held out of the training data; fraction)")}
#: Attributes of the label coordinates (CF: a label has no unit; "1" says so, as for every dimensionless variable).
LAYER_ATTRS = {"long_name": "layer (projection of the circuit)", "units": "1"}
PHASE_ATTRS = {"long_name": "phase of the schedule", "units": "1"}


def records_dataset(records: Sequence[dict[str, Any]], *, layer_names: Sequence[str], steps_per_epoch: int,
                    seconds: float, steps: int, phase: str | None) -> xr.Dataset:
    """The records of an engaged phase (each a dict of the :data:`SCALARS`, optional :data:`VAL_SCALARS` and
    :data:`PER_LAYER` lists) as a Dataset over ``step`` and ``layer``; ``seconds`` of training over ``steps`` give
    ``seconds_per_step``; ``phase``: the engaged phase's name, stored per record."""
    steps_done = [r["step"] for r in records]
    data: dict[str, Any] = {k: ("step", np.array([r[k] for r in records], dtype=float),
                                {"units": u, "long_name": name}) for k, (u, name) in SCALARS.items()}
    if "val_accuracy" in records[-1]:  # a run with a validation set records it from its first record
        data.update({k: ("step", np.array([r.get(k, math.nan) for r in records], dtype=float),
                         {"units": u, "long_name": name}) for k, (u, name) in VAL_SCALARS.items()})
    n_layers = len(layer_names)
    for key, attrs in PER_LAYER.items():
        # .get: records from a checkpoint written before a metric existed
        values = np.array([r.get(key, [math.nan] * n_layers) for r in records], dtype=float)
        data[key] = (("step", "layer"), values.reshape(len(records), n_layers), dict(attrs))
    # epoch keeps units "epoch" (the results book's summaries take a metric's units from it)
    coords = {"step": ("step", steps_done, {"long_name": "optimizer steps done", "units": "1"}),
              "epoch": ("step", np.array(steps_done) / steps_per_epoch,
                        {"long_name": "epochs of training done", "units": "epoch"}),
              "layer": ("layer", list(layer_names), LAYER_ATTRS)}
    if phase is not None:  # which phase each record belongs to, as the Brian2 backend labels its times
        coords["phase"] = ("step", np.full(len(steps_done), phase, dtype=object), dict(PHASE_ATTRS))
    ds = xr.Dataset(data, coords=coords)
    ds["seconds_per_step"] = xr.DataArray(seconds / max(steps, 1), attrs={
        "units": "s", "long_name": "wall time of a training step with its mirroring and data loading"})
    return ds


def ood_dataset(names: Sequence[str], accuracies: Sequence[float]) -> xr.Dataset:
    """``ood_accuracy`` over ``transform``: the accuracy on each transformed test set at the end of a run."""
    return xr.Dataset(
        {"ood_accuracy": ("transform", np.asarray(accuracies, dtype=float), {
            "units": "1", "long_name": "top-1 accuracy on the transformed test set at the end (fraction)"})},
        coords={"transform": ("transform", list(names), {"long_name": "transform of the test set", "units": "1"})})
