"""Selection on the validation set, report on the test set: the best record of a run, the best point of a sweep.

A choice made on the test accuracy it is then reported with is biased upward (the test set chooses and judges).
Here the choice is made on ``val_*`` (``[data] validation``) and the test value at the chosen place is reported.
Results without a validation split (older files, ``validation = 0``) are refused, unless the caller asks for a
selection on test, which is then labelled :data:`ON_TEST` wherever it is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["ON_TEST", "Selection", "NoValidationError", "has_validation", "best_record", "best_point"]

#: The label of a selection made on the test set because the results have no validation split.
ON_TEST = "selected on test (no validation split)"


class NoValidationError(ValueError):
    """The results hold no ``val_*`` values to select on."""


@dataclass(frozen=True)
class Selection:
    """Where a selection landed (``where``: dim -> coordinate value), its validation and test values there (means
    over seeds for a sweep), and what it was selected on: ``"validation"`` or ``"test"`` (see :data:`ON_TEST`)."""

    where: dict[str, Any]
    validation: float
    test: float
    on: str

    @property
    def label(self) -> str:
        """``"selected on validation"`` or :data:`ON_TEST`."""
        return "selected on validation" if self.on == "validation" else ON_TEST


def has_validation(ds: xr.Dataset, metric: str = "accuracy") -> bool:
    """Whether ``ds`` holds a finite ``val_<metric>`` anywhere."""
    name = f"val_{metric}"
    return name in ds.variables and bool(np.isfinite(np.asarray(ds[name].values, dtype=float)).any())


def _chooser(ds: xr.Dataset, metric: str, allow_test: bool) -> tuple[xr.DataArray, str]:
    if has_validation(ds, metric):
        return ds[f"val_{metric}"], "validation"
    if not allow_test:
        raise NoValidationError(f"no val_{metric} in these results (run without [data] validation, or written "
                                "before it existed): selecting on the test set is refused")
    return ds[f"test_{metric}"], "test"


def _higher_is_better(metric: str) -> bool:
    return "loss" not in metric


def best_record(run: xr.Dataset, *, metric: str = "accuracy", dim: str = "step", allow_test: bool = False
                ) -> Selection:
    """The record (along ``dim``) of one run (one arm and seed) with the best ``val_<metric>`` (highest accuracy,
    lowest loss; the first of ties), and ``test_<metric>`` there.

    Raises :class:`NoValidationError` without validation values, unless ``allow_test``: then the test values
    choose, and the selection says so (``on = "test"``).
    """
    chooser, on = _chooser(run, metric, allow_test)
    values = np.asarray(chooser.values, dtype=float)
    if chooser.dims != (dim,):
        raise ValueError(f"best_record needs one run: {chooser.name} has dims {chooser.dims}, expected ({dim!r},)")
    if not np.isfinite(values).any():
        raise ValueError(f"no finite {chooser.name} to select on")
    index = int(np.nanargmax(values) if _higher_is_better(metric) else np.nanargmin(values))
    test = float(run[f"test_{metric}"].isel({dim: index}))
    return Selection({dim: run[dim].values[index].item()}, float(values[index]) if on == "validation" else np.nan,
                     test, on)


def best_point(ds: xr.Dataset, *, metric: str = "accuracy", allow_test: bool = False,
               reduce: tuple[str, ...] = ("seed",)) -> Selection:
    """The point of a sweep (every dim of the final ``val_<metric>`` but ``reduce``, over which it is averaged)
    with the best mean final validation value, and the mean final ``test_<metric>`` there.

    The final value is the last record (``step = -1``) where the variable has a ``step`` dim. Refused without
    validation values unless ``allow_test`` (then labelled, as in :func:`best_record`).
    """
    chooser, on = _chooser(ds, metric, allow_test)
    test = ds[f"test_{metric}"]
    if "step" in chooser.dims:
        chooser, test = chooser.isel(step=-1), test.isel(step=-1)
    dims = [d for d in reduce if d in chooser.dims]
    # a point where any seed diverged (NaN) has no mean: it is never the best
    score, test = chooser.mean(dims, skipna=False), test.mean(dims, skipna=False)
    values = np.asarray(score.values, dtype=float)
    if not np.isfinite(values).any():
        raise ValueError(f"no finite final {chooser.name} to select on")
    flat = int(np.nanargmax(values) if _higher_is_better(metric) else np.nanargmin(values))
    index = dict(zip(score.dims, np.unravel_index(flat, values.shape)))
    where = {str(d): score[d].values[i].item() if d in score.coords else int(i) for d, i in index.items()}
    return Selection(where, float(values[np.unravel_index(flat, values.shape)]) if on == "validation" else np.nan,
                     float(test.isel(index)), on)
