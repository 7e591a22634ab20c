"""Report tables from results files, as data and as text (``neurocircuit table KIND FILE...``).

Four kinds, each a function that computes the table as a small record and a ``render_*`` function that writes it:

- :func:`paired_table` (``paired``): per arm over seeds pooled from any number of ``results.nc`` files, the final
  test error, the test error at the record chosen on validation, the largest final B-W angle, whether every training
  loss stayed finite and the step time; and each arm's difference from a reference arm, paired by seed, with the
  95 % confidence interval of its mean (Student t, n - 1 degrees of freedom).
- :func:`sweep_table` (``sweep``): a grid sweep's final values with rows over some axes and columns over one, failed
  points named, and the sweep's best point chosen on validation.
- :func:`layer_table` (``angles``): a per-layer variable (the B-W angle) over training, one column per record.
- :func:`noise_pretraining_tables` (``noise-pretraining``): the tables of Cheon et al.'s experiment with its controls.

Nothing here imports torch or Brian2: tables are read from the files the backends wrote.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .book import paired_difference
from .errors import NeurocircuitError
from .results import read_results
from .selection import ON_TEST, NoValidationError, Selection, best_point, best_record

__all__ = ["TableError", "SeedRun", "PairedDifference", "ArmRow", "PairedTable", "read_paired_runs", "paired_table",
           "render_paired", "open_sweep", "select_points", "GridCell", "SweepTable", "sweep_table", "render_sweep",
           "LayerColumn", "LayerTable", "layer_table", "render_layers", "NOISE_EPOCHS", "NOISE_THRESHOLD",
           "NOISE_CLAIMS", "NOISE_NEEDS", "NoisePretrainingTables", "noise_pretraining_tables",
           "render_noise_pretraining", "read_table_file"]


class TableError(NeurocircuitError, ValueError):
    """A file or an option a table cannot be made from."""


def read_table_file(path: str | Path, needs: Sequence[str] = (), what: str = "a results file of neurocircuit run"
                    ) -> xr.Dataset:
    """Read ``path`` into memory, refusing a missing file, a file that is not netCDF, or one without the
    variables (or dimensions) ``needs``, each with a one-line :class:`TableError`."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"no such file: {path}")
    try:
        ds = read_results(path)
    except NeurocircuitError:
        raise TableError(f"{path} is not a netCDF results file") from None
    missing = [name for name in needs if name not in ds.variables and name not in ds.dims]
    if missing:
        raise TableError(f"{path} is not {what} (no {', '.join(missing)})")
    return ds


# ------------------------------------------------------------------------------------------------------- paired


@dataclass(frozen=True)
class SeedRun:
    """One (arm, seed) of a results file: final test error (%), the test error (%) at the record chosen on
    validation (``best_on_test``: chosen on test, the run has no validation split), the largest layer angle at the
    end (NaN where none was recorded), whether every training loss after the first record was finite, and the
    seconds per step (NaN where none was recorded)."""

    error: float
    best: float
    best_on_test: bool
    angle: float
    finite: bool
    seconds: float


@dataclass(frozen=True)
class PairedDifference:
    """An arm minus the reference, seed by seed (percentage points): the seeds both share, the differences, their
    mean and sample sd (n - 1), and the 95 % confidence interval of the mean (Student t with n - 1 degrees of
    freedom; ``None`` with one seed)."""

    seeds: tuple[int, ...]
    values: tuple[float, ...]
    mean: float
    sd: float
    ci: tuple[float, float] | None


@dataclass(frozen=True)
class ArmRow:
    """One arm of a :class:`PairedTable`: its seeds, their runs (in seed order) and its paired difference from the
    reference (``None`` for the reference itself and for an arm that shares no seed with it)."""

    arm: str
    seeds: tuple[int, ...]
    runs: tuple[SeedRun, ...]
    difference: PairedDifference | None


@dataclass(frozen=True)
class PairedTable:
    """Every arm's row (in the order the files gave the arms) and the reference arm."""

    ref: str
    rows: tuple[ArmRow, ...]

    @property
    def on_test(self) -> list[str]:
        """``"ARM seed K"`` for every run whose best record was chosen on test."""
        return [f"{row.arm} seed {seed}" for row in self.rows for seed, run in zip(row.seeds, row.runs)
                if run.best_on_test]


_PAIRED_NEEDS = ("arm", "seed", "test_accuracy", "train_loss")


def read_paired_runs(files: Sequence[tuple[str | Path, str]]) -> dict[str, dict[int, SeedRun]]:
    """``{arm: {seed: SeedRun}}`` from every ``(file, tag)``; a non-empty tag labels that file's arms
    ``ARM@TAG``. An arm's seeds are pooled across files; an (arm, seed) without any test accuracy is not in that
    file. Raises :class:`TableError` for a missing or unreadable file, one that is not a results file, and the
    same (arm, seed) in two files."""
    arms: dict[str, dict[int, SeedRun]] = {}
    for path, tag in files:
        data = read_table_file(path, _PAIRED_NEEDS)
        for label in data["arm"].values.tolist():
            arm = f"{label}@{tag}" if tag else label
            for seed in data["seed"].values.tolist():
                run = data.sel(arm=label, seed=seed)
                accuracy = run["test_accuracy"].dropna("step")
                if accuracy.size == 0:
                    continue
                if seed in arms.get(arm, {}):
                    raise TableError(f"{arm} seed {seed} is in more than one file (the second: {path})")
                angle = run["weight_angle"].isel(step=-1).max().item() if "weight_angle" in run else math.nan
                loss = run["train_loss"].values[1:]  # the first record precedes any training
                best = best_record(run.sel(step=accuracy["step"]), allow_test=True)
                arms.setdefault(arm, {})[seed] = SeedRun(
                    error=100 * (1 - accuracy.values[-1]), best=100 * (1 - best.test), best_on_test=best.on == "test",
                    angle=angle, finite=bool(np.isfinite(loss).all()),
                    seconds=run["seconds_per_step"].item() if "seconds_per_step" in run else math.nan)
    return arms


def paired_table(arms: Mapping[str, Mapping[int, SeedRun]], ref: str = "bp") -> PairedTable:
    """The table of ``arms`` (as :func:`read_paired_runs` returns them) with differences from ``ref``, paired by the
    seeds each arm shares with it. Raises :class:`TableError` if ``ref`` is not one of the arms."""
    if ref not in arms:
        raise TableError(f"no arm {ref!r} in these files (arms: {', '.join(arms)})")
    reference = arms[ref]
    rows = []
    for arm, runs in arms.items():
        seeds = tuple(sorted(runs))
        shared = tuple(s for s in seeds if s in reference)
        difference = None
        if arm != ref and shared:
            values = tuple(runs[s].error - reference[s].error for s in shared)
            mean, low, high, n = paired_difference([runs[s].error for s in shared],
                                                   [reference[s].error for s in shared])
            difference = PairedDifference(shared, values, statistics.fmean(values),
                                          statistics.stdev(values) if n > 1 else 0.0,
                                          (low, high) if n > 1 else None)
        rows.append(ArmRow(arm, seeds, tuple(runs[s] for s in seeds), difference))
    return PairedTable(ref, tuple(rows))


def _mean_sd(values: Sequence[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {sd:.2f}"


def render_paired(table: PairedTable) -> str:
    """The paired table as aligned text: one line per arm, then the notes (selection on test, the interval)."""
    lines = [f"{'arm':<16} {'seeds':<12} {'final error %':>14} {'best-on-val %':>15} {'max angle':>10} "
             f"{'finite':>7} {'ms/step':>8}   - {table.ref} (paired, pp: mean ± sd, 95 % CI)"]
    for row in table.rows:
        diff = ""
        if row.difference is not None:
            d = row.difference
            ci = "n/a" if d.ci is None else f"[{d.ci[0]:+.2f}, {d.ci[1]:+.2f}]"
            diff = (f"{d.mean:.2f} ± {d.sd:.2f}, CI {ci} (" + ", ".join(f"{v:+.2f}" for v in d.values)
                    + f"; seeds {list(d.seeds)})")
        mark = "*" if any(r.best_on_test for r in row.runs) else " "
        lines.append(f"{row.arm:<16} {str(list(row.seeds)):<12} {_mean_sd([r.error for r in row.runs]):>14} "
                     f"{_mean_sd([r.best for r in row.runs]):>14}{mark} {max(r.angle for r in row.runs):>10.2f} "
                     f"{str(all(r.finite for r in row.runs)):>7} "
                     f"{1e3 * statistics.fmean(r.seconds for r in row.runs):>8.1f}   {diff}")
    if table.on_test:
        lines.append(f"* best record {ON_TEST}: {', '.join(table.on_test)}")
    if any(row.difference is not None for row in table.rows):
        lines.append(f"paired: arm - {table.ref} over the seeds both have; CI: 95 % confidence interval of the mean "
                     "difference (Student t, n - 1 degrees of freedom; n/a with one seed)")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------------- sweep


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
    """One cell of a sweep grid: the finite final values over the reduced dims (seeds, arms), already shown as
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
    """The grid of ``ds`` (a grid sweep, see :func:`open_sweep`, maybe narrowed by :func:`select_points`): the final
    ``var`` (at the last record) per point, columns over the axis ``cols``, rows over every combination of the other
    axes; seeds (and any other dimension left) are pooled in each cell. A failed point is named in its cell, and a
    point whose mean training loss in a record window went above ``loss_flag`` carries that peak, since a run can
    recover from a blow-up its final value hides. Unknown ``cols`` or ``var``: :class:`TableError`."""
    axes = [k for k in json.loads(ds.attrs["sweep"])["axes"] if k != "seed"]
    keys = [k for k in axes if k in ds.dims]  # an axis chosen with select_points is a scalar now
    chosen = {k: ds[k].item() for k in axes if k not in ds.dims}
    if cols not in keys:
        raise TableError(f"--cols {cols!r} is not an axis of this sweep (axes: {', '.join(keys)})")
    if var not in ds:
        raise TableError(f"no variable {var!r} in the sweep (variables: "
                         f"{', '.join(sorted(map(str, ds.data_vars)))})")
    rows = [k for k in keys if k != cols]
    failed: list[tuple[dict[str, Any], str]] = []
    for entry in json.loads(ds.attrs["errors"]):
        if all(entry["point"].get(k) == v for k, v in chosen.items()):
            failed.append(({k: v for k, v in entry["point"].items() if k in keys}, _failure_label(entry["error"])))
    last = ds[var].isel(step=-1) if "step" in ds[var].dims else ds[var]
    loss = ds["train_loss"] if "train_loss" in ds else None
    lines = []
    for combo in itertools.product(*(ds[k].values.tolist() for k in rows)):
        cells = []
        for value in ds[cols].values.tolist():
            where = dict(zip(rows, combo)) | {cols: value}
            # compared as values, not as text: an axis given as 0,0.9 is stored as 0.0 but its failures say 0
            labels = tuple(label for point, label in failed if all(point.get(k) == where[k] for k in keys))
            values = np.asarray(last.sel(where).values, dtype=float).ravel()
            values = 100 * (1 - values) if error else values
            peak = None
            if loss is not None:
                losses = loss.sel(where).values
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
        text = f"{cell.values.mean():.{digits}f} ± {cell.values.std():.{digits}f}"
    if cell.failures:
        text += f" ({len(cell.failures)} failed: {', '.join(cell.failures)})"
    if cell.loss_peak is not None:
        text += f" (loss to {cell.loss_peak:.0e})"
    return text


def render_sweep(table: SweepTable, digits: int = 2) -> str:
    """The sweep table as markdown (mean ± sd over the pooled values, population sd), then its best point."""
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


# ------------------------------------------------------------------------------------------------------- angles


@dataclass(frozen=True)
class LayerColumn:
    """One record of one arm of one run: its heading and, per layer the arm records, the values over seeds."""

    name: str
    values: dict[str, np.ndarray]


@dataclass(frozen=True)
class LayerTable:
    """A per-layer variable over training: the layers (in first-seen order) and one column per record."""

    var: str
    layers: tuple[str, ...]
    columns: tuple[LayerColumn, ...]


def layer_table(runs: Sequence[tuple[str, xr.Dataset]], var: str = "weight_angle") -> LayerTable:
    """One column per (run, arm, record) of ``var`` in each ``(name, results)`` of ``runs``, headed ``NAME/ARM ep
    E``. A run without ``var`` or whose ``var`` is not per layer is a :class:`TableError`."""
    columns: list[LayerColumn] = []
    layers: list[str] = []
    for name, ds in runs:
        source = ds.encoding.get("source", name)  # the file, where the results were read from one
        if var not in ds:
            raise TableError(f"{source} has no variable {var!r} (has: {', '.join(map(str, ds.data_vars))})")
        data = ds[var]
        if "layer" not in data.dims or "arm" not in data.dims or "step" not in data.dims or "epoch" not in ds:
            raise TableError(f"{var!r} in {source} is not per layer and record (dims {data.dims})")
        epochs = ds["epoch"].values
        names = [str(layer) for layer in data["layer"].values]
        layers += [layer for layer in names if layer not in layers]
        for arm in data["arm"].values:
            by_arm = data.sel(arm=arm)
            for step in range(by_arm.sizes["step"]):
                record = by_arm.isel(step=step)
                columns.append(LayerColumn(f"{name}/{arm} ep {float(epochs[step]):g}",
                                           {layer: np.asarray(record.isel(layer=i).values, dtype=float)
                                            for i, layer in enumerate(names)}))
    return LayerTable(var, tuple(layers), tuple(columns))


def _spread(values: np.ndarray, digits: int) -> str:
    if np.isnan(values).all():
        return "—"
    if values.size == 1:
        return f"{np.nanmean(values):.{digits}f}"
    return f"{np.nanmean(values):.{digits}f} ± {np.nanstd(values):.{digits}f}"


def render_layers(table: LayerTable, digits: int = 1) -> str:
    """The layer table as markdown: mean ± sd over seeds (population sd, NaN ignored); a dash where a layer has no
    value."""
    lines = ["| layer | " + " | ".join(c.name for c in table.columns) + " |",
             "|---|" + "---:|" * len(table.columns)]
    for layer in table.layers:
        cells = [_spread(c.values[layer], digits) if layer in c.values else "—" for c in table.columns]
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- noise pretraining

#: The epochs at which the noise-pretraining table reads the test accuracy (the first record at or after each).
NOISE_EPOCHS = (0.25, 0.5, 1.0, 3.0)
#: The test accuracy whose first crossing the table counts steps to.
NOISE_THRESHOLD = 0.80
#: Cheon et al.'s claims and their controls, as (arm, arm it is compared with).
NOISE_CLAIMS = (("fa+noise", "fa"), ("fa+noise", "bp"), ("bp+noise", "bp"), ("fa+noise", "bp+noise"),
                ("fa+noise", "fa+noise-norms"), ("fa+noise-norms", "fa"), ("fa+noise-no-labels", "fa"),
                ("fa+fresh-noise", "fa"))

#: What the noise-pretraining tables read (variables or dimensions).
NOISE_NEEDS = ("arm", "seed", "step", "epoch", "layer", "test_accuracy", "effective_dim")


@dataclass(frozen=True)
class NoisePretrainingTables:
    """The noise-pretraining tables; every value is an array over seeds (accuracies as fractions, angles in
    degrees). ``accuracy``: per arm, the test accuracy at each of :data:`NOISE_EPOCHS`, at the end, and the steps
    to :data:`NOISE_THRESHOLD`. ``noise_phase``: per arm, the readout's angle and every layer's ||W|` before and after
    the noise phase (``None``: the arm has none), the effective dimension per layer at the end, the accuracy per
    out-of-distribution transform. ``claims``: per pair of :data:`NOISE_CLAIMS`, the paired differences at 0.25 and
    1 epoch, at the end and of the mean OOD accuracy (``None`` where an arm or the OOD accuracy is missing)."""

    seeds: tuple[int, ...]
    final_epoch: float
    readout: str
    layers: tuple[str, ...]
    transforms: tuple[str, ...]
    accuracy: tuple[tuple[str, tuple[np.ndarray, ...], np.ndarray, np.ndarray], ...]
    noise_phase: tuple[tuple[str, tuple[np.ndarray, np.ndarray] | None,
                             tuple[tuple[np.ndarray, np.ndarray], ...] | None, tuple[np.ndarray, ...],
                             tuple[np.ndarray, ...]], ...]
    claims: tuple[tuple[str, str, tuple[np.ndarray | None, ...]], ...]


def _at_epoch(ds: xr.Dataset, epoch: float) -> xr.DataArray:
    """Test accuracy at the first record at or after ``epoch`` (NaN for a run that ends before it)."""
    reached = ds["epoch"].values >= epoch - 1e-2
    if not reached.any():
        return xr.full_like(ds["test_accuracy"].isel(step=0), np.nan)
    return ds["test_accuracy"].isel(step=int(np.argmax(reached)))


def _steps_to(ds: xr.Dataset, arm: str, threshold: float) -> np.ndarray:
    accuracy = ds["test_accuracy"].sel(arm=arm).values  # (seed, step)
    steps = ds["step"].values
    return np.array([steps[np.argmax(a >= threshold)] if (a >= threshold).any() else np.nan for a in accuracy])


def _values(data: xr.DataArray) -> np.ndarray:
    return np.asarray(data.values, dtype=float)


def noise_pretraining_tables(ds: xr.Dataset) -> NoisePretrainingTables:
    """The tables of a finished ``noise_pretraining`` run (or any run with its arms: a claim whose arms are missing
    is left empty). Raises :class:`TableError` where ``ds`` lacks what the tables read."""
    missing = [name for name in NOISE_NEEDS if name not in ds.variables and name not in ds.dims]
    if missing:
        raise TableError(f"not a results file of a noise-pretraining run (no {', '.join(missing)})")
    arms = [str(a) for a in ds["arm"].values]
    layers = tuple(str(layer) for layer in ds["layer"].values)
    readout = ds["layer"].values[-1]
    transforms = tuple(str(t) for t in ds["transform"].values) if "transform" in ds.dims else ()
    final = ds["test_accuracy"].isel(step=-1)
    accuracy = tuple((arm, tuple(_values(_at_epoch(ds, e).sel(arm=arm)) for e in NOISE_EPOCHS),
                      _values(final.sel(arm=arm)), _steps_to(ds, arm, NOISE_THRESHOLD)) for arm in arms)
    phase = []
    for arm in arms:
        row = ds.sel(arm=arm)
        angle = norms = None
        if "prenatal_weight_angle" in ds and not row["prenatal_weight_angle"].isnull().all():
            pre = row["prenatal_weight_angle"].sel(layer=readout)
            angle = (_values(pre.isel(prenatal_step=0)), _values(pre.isel(prenatal_step=-1)))
            norm = row["prenatal_weight_norm"]
            norms = tuple((_values(norm.sel(layer=layer).isel(prenatal_step=0)),
                           _values(norm.sel(layer=layer).isel(prenatal_step=-1))) for layer in ds["layer"].values)
        dims = tuple(_values(row["effective_dim"].sel(layer=layer).isel(step=-1)) for layer in ds["layer"].values)
        ood = tuple(_values(row["ood_accuracy"].sel(transform=t)) for t in transforms)
        phase.append((arm, angle, norms, dims, ood))
    ood_mean = ds["ood_accuracy"].mean("transform") if transforms else None

    def diff(a: str, b: str, values: xr.DataArray | None) -> np.ndarray | None:
        if values is None or a not in arms or b not in arms:
            return None
        return _values(values.sel(arm=a)) - _values(values.sel(arm=b))

    claims = tuple((a, b, (diff(a, b, _at_epoch(ds, 0.25)), diff(a, b, _at_epoch(ds, 1.0)), diff(a, b, final),
                           diff(a, b, ood_mean))) for a, b in NOISE_CLAIMS)
    return NoisePretrainingTables(tuple(int(s) for s in ds["seed"].values), float(ds["epoch"].values[-1]),
                                  str(readout), layers, transforms, accuracy, tuple(phase), claims)


def _fmt(values: np.ndarray | None, scale: float = 100.0, digits: int = 2) -> str:
    if values is None:
        return "—"
    values = np.asarray(values, dtype=float) * scale
    if np.isnan(values).all():
        return "—"
    return f"{np.nanmean(values):.{digits}f} ± {np.nanstd(values):.{digits}f}"


def render_noise_pretraining(tables: NoisePretrainingTables) -> str:
    """The three noise-pretraining tables as markdown, each value mean ± sd over seeds (population sd, NaN
    ignored): accuracies in %, angles and norms as recorded, the claims in percentage points."""
    lines = [f"seeds {list(tables.seeds)}; test accuracy (%) at epochs {NOISE_EPOCHS} and at the end "
             f"({tables.final_epoch:.0f} epochs)",
             "| arm | " + " | ".join(f"{e:g} ep" for e in NOISE_EPOCHS)
             + f" | final | steps to {NOISE_THRESHOLD:.0%} |",
             "|---|" + "---|" * (len(NOISE_EPOCHS) + 2)]
    for arm, at, final, steps in tables.accuracy:
        lines.append(f"| {arm} | " + " | ".join(_fmt(v) for v in at) + f" | {_fmt(final)} | {_fmt(steps, 1, 0)} |")
    lines += ["", f"noise phase: readout ({tables.readout}) B-W angle and ||W|| per layer before -> after; effective "
                  "dim of W at the end; OOD accuracy (%)",
              "| arm | angle before -> after | ||W|| before -> after | effective dim | "
              + " | ".join(tables.transforms) + " |",
              "|---|---|---|---|" + "---|" * len(tables.transforms)]
    for arm, angle, norms, dims, ood in tables.noise_phase:
        if angle is None or norms is None:
            angle_text = norm_text = "no noise phase"
        else:
            angle_text = f"{_fmt(angle[0], 1, 1)} -> {_fmt(angle[1], 1, 1)}"
            norm_text = " ; ".join(f"{layer}: {_fmt(before, 1, 1)} -> {_fmt(after, 1, 1)}"
                                   for layer, (before, after) in zip(tables.layers, norms))
        dim_text = " ; ".join(f"{layer}: {_fmt(d, 1, 1)}" for layer, d in zip(tables.layers, dims))
        lines.append(f"| {arm} | {angle_text} | {norm_text} | {dim_text} | " + " | ".join(_fmt(v) for v in ood)
                     + " |")
    lines += ["", "claims as paired differences (percentage points, mean ± std over seeds)",
              "| comparison | 0.25 ep | 1 ep | final | OOD mean |", "|---|---|---|---|---|"]
    for a, b, cells in tables.claims:
        lines.append(f"| {a} − {b} | " + " | ".join(_fmt(c) for c in cells) + " |")
    return "\n".join(lines)
