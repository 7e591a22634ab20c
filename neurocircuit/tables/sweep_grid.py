"""The ``sweep`` table: a grid sweep's final values, failed points named, the best point chosen on validation."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..results import edge_with_data
from ..selection import ON_TEST, NoValidationError, Selection, best_point
from .common import TableError, read_table_file

__all__ = ["RECORD_DIMS", "open_sweep", "select_points", "GridCell", "SweepTable", "sweep_table", "render_sweep"]


def open_sweep(path: str | Path) -> xr.Dataset:
    """Read the ``sweep.nc`` of a grid sweep, refusing (:class:`TableError`) a missing file, a file that is not
    netCDF, one without the sweep's definition and a sweep that is not a grid."""
    ds = read_table_file(path)
    if "sweep" not in ds.attrs or "errors" not in ds.attrs:
        raise TableError(f"{path} is not a sweep.nc (no sweep definition in its attributes)")
    if json.loads(ds.attrs["sweep"]).get("mode") != "grid":
        raise TableError(f"{path}: only grid sweeps have rows and columns")
    return ds


def select_points(ds: xr.Dataset, items: Sequence[str]) -> xr.Dataset:
    """``ds`` at one value of each dimension named by a ``DIM=VALUE`` item (the value read as the coordinate's
    type); an unknown dimension or value is a :class:`TableError`."""
    for item in items:
        dim, sep, value = item.partition("=")
        if not sep or dim not in ds.dims:
            raise TableError(f"--sel {item!r}: expected DIM=VALUE with DIM one of {', '.join(map(str, ds.dims))}")
        coord = ds[dim].values
        try:
            ds = ds.sel({dim: type(coord[0].item())(value) if coord.dtype.kind in "iuf" else value})
        except (KeyError, ValueError):
            raise TableError(f"--sel {item!r}: {dim} has no value {value!r} "
                             f"(values: {', '.join(map(str, coord.tolist()))})") from None
    return ds


@dataclass(frozen=True)
class GridCell:
    """One cell of a sweep grid: the finite final values over the seeds, already shown as
    error where asked; the failures of the cell's points (``"nan at step k"``); and the peak mean training loss
    where it went above the flag (else ``None``)."""

    values: np.ndarray
    failures: tuple[str, ...]
    loss_peak: float | None


@dataclass(frozen=True)
class SweepTable:
    """A grid sweep's table: the row axes, the column axis and its values, one ``(row values, cells)`` per row;
    the variable (``error``: shown as 100 x (1 - var)); and the best point (``None`` for a variable that is not
    ``test_*`` or where nothing finite can be chosen)."""

    rows: tuple[str, ...]
    cols: str
    col_values: tuple[Any, ...]
    lines: tuple[tuple[tuple[Any, ...], tuple[GridCell, ...]], ...]
    var: str
    error: bool
    best: Selection | None


#: Dimensions along which a run records over time: a cell shows each run's last record with data along each.
RECORD_DIMS = ("step", "mirror_step", "weight_time")


def _failure_label(message: str) -> str:
    match = re.search(r"loss became (\w+) at step (\d+)", message)
    return f"{match.group(1)} at step {match.group(2)}" if match else message.split(":", 1)[0]


def _best_point(ds: xr.Dataset, var: str) -> Selection | None:
    if not var.startswith("test_") or var not in ds:
        return None
    try:
        return best_point(ds, metric=var[len("test_"):], allow_test=True)
    except (NoValidationError, ValueError):  # nothing finite to choose from: the table's cells say why
        return None


def sweep_table(ds: xr.Dataset, cols: str, var: str = "test_accuracy", *, error: bool = False,
                loss_flag: float = 10.0) -> SweepTable:
    """The grid of ``ds`` (a grid sweep, see :func:`open_sweep`, maybe narrowed by :func:`select_points`): the
    final ``var`` (each run's last record with data along each of :data:`RECORD_DIMS`) per point, columns over the
    axis ``cols``, rows over every combination of the other axes and of the variable's other dimensions (arms,
    layers: never pooled); only seeds are pooled in each cell. A failed point is named in its cell, and a point
    whose mean training loss in a record window went above ``loss_flag`` carries that peak, since a run can recover
    from a blow-up its final value hides. Unknown ``cols`` or ``var``: :class:`TableError`."""
    axes = [k for k in json.loads(ds.attrs["sweep"])["axes"] if k != "seed"]
    keys = [k for k in axes if k in ds.dims]  # an axis chosen with select_points is a scalar now
    chosen = {k: ds[k].item() for k in axes if k not in ds.dims}
    if cols not in keys:
        raise TableError(f"--cols {cols!r} is not an axis of this sweep (axes: {', '.join(keys)})")
    if var not in ds:
        raise TableError(f"no variable {var!r} in the sweep (variables: "
                         f"{', '.join(sorted(map(str, ds.data_vars)))})")
    last = ds[var]
    for dim in RECORD_DIMS:  # each run's own last record: points of different lengths (steps, epochs) keep theirs
        last = edge_with_data(last, dim)[0] if dim in last.dims else last
    extra = [str(d) for d in last.dims if d not in keys and d != "seed"]
    last = last.assign_coords({d: np.arange(last.sizes[d]) for d in extra if d not in last.coords})
    rows = [k for k in keys if k != cols] + extra
    failed: list[tuple[dict[str, Any], str]] = []
    for entry in json.loads(ds.attrs["errors"]):
        if all(entry["point"].get(k) == v for k, v in chosen.items()):
            failed.append(({k: v for k, v in entry["point"].items() if k in keys}, _failure_label(entry["error"])))
    loss = ds["train_loss"] if "train_loss" in ds else None
    lines = []
    for combo in itertools.product(*(last[k].values.tolist() for k in rows)):
        cells = []
        for value in ds[cols].values.tolist():
            where = dict(zip(rows, combo)) | {cols: value}
            # compared as values, not as text: an axis given as 0,0.9 is stored as 0.0 but its failures say 0
            labels = tuple(label for point, label in failed if all(point.get(k) == where[k] for k in keys))
            values = np.asarray(last.sel(where).values, dtype=float).ravel()
            values = 100 * (1 - values) if error else values
            peak = None
            if loss is not None:
                losses = loss.sel({k: v for k, v in where.items() if k in loss.dims}).values
                worst = float(np.nanmax(losses)) if np.isfinite(losses).any() else 0
                peak = worst if worst > loss_flag else None
            cells.append(GridCell(values[np.isfinite(values)], labels, peak))
        lines.append((tuple(combo), tuple(cells)))
    return SweepTable(tuple(rows), cols, tuple(ds[cols].values.tolist()), tuple(lines), var, error,
                      _best_point(ds, var))


def _grid_cell(cell: GridCell, digits: int) -> str:
    if cell.failures and cell.values.size == 0:
        return ", ".join(cell.failures)
    if cell.values.size == 0:
        text = "—"
    elif cell.values.size == 1:
        text = f"{cell.values[0]:.{digits}f}"
    else:
        text = f"{cell.values.mean():.{digits}f} ± {cell.values.std(ddof=1):.{digits}f}"
    if cell.failures:
        text += f" ({len(cell.failures)} failed: {', '.join(cell.failures)})"
    if cell.loss_peak is not None:
        text += f" (loss to {cell.loss_peak:.0e})"
    return text


def render_sweep(table: SweepTable, digits: int = 2) -> str:
    """The sweep table as markdown (mean ± sd over seeds, sd with n − 1), then its best point."""
    out = ["| " + " | ".join(table.rows) + " | " + " | ".join(f"{table.cols} {v}" for v in table.col_values) + " |",
           "|" + "---|" * (max(len(table.rows), 1) + len(table.col_values))]
    for combo, cells in table.lines:
        out.append("| " + " | ".join(str(c) for c in combo) + " | "
                   + " | ".join(_grid_cell(c, digits) for c in cells) + " |")
    best = table.best
    if best is not None:
        metric = table.var[len("test_"):]
        where = ", ".join(f"{k} = {v}" for k, v in best.where.items())
        name = "error" if table.error else table.var

        def show(v: float) -> str:
            return f"{100 * (1 - v):.{digits}f} %" if table.error else f"{v:.{digits}f}"

        if best.on == "test":
            line = f"best point ({ON_TEST}): {where}: final {name} {show(best.test)} (mean over seeds)"
        else:
            line = (f"best point (selected on final val_{metric}, mean over seeds): {where}: final {name} "
                    f"{show(best.test)} (validation {show(best.validation)})")
        out += ["", line]
    return "\n".join(out)


