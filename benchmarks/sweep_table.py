"""A grid sweep's final values as a markdown table: rows over some axes, columns over one, failed points named.

    neurocircuit sweep sweep_wm_robustness --out runs/wm_robust --workers 2
    python benchmarks/sweep_table.py runs/wm_robust/sweep.nc --error --cols optimizer.lr

Each cell is the variable (default ``test_accuracy``; ``--error`` prints 100 x (1 - accuracy), the test error in %)
at the last record of the point, mean ± std over seeds (and arms, if the sweep has several: select one with
``--sel arm=wm``). Where a window's mean training loss went above ``--loss-flag`` (default 10) the cell says how far,
because a run can recover from a blow-up that its final value hides. A failed point prints its error: the NaN stop
as "nan at step k". The rows are every combination of the other axes.

Below the table, for a ``test_*`` variable, the sweep's best point: the one with the best final ``val_*`` (mean over
seeds), with its test value. A sweep without a validation split (``[data] validation = 0``, or older files) has
its best point chosen on test and the line says so: "selected on test (no validation split)".
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from pathlib import Path

import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, not an installed one
from neurocircuit.selection import ON_TEST, NoValidationError, best_point  # noqa: E402


def fail(message: str) -> None:
    """Bad input: one line on stderr, exit code 2."""
    print(f"sweep_table: error: {message}", file=sys.stderr)
    sys.exit(2)


def failure_label(message: str) -> str:
    match = re.search(r"loss became (\w+) at step (\d+)", message)
    return f"{match.group(1)} at step {match.group(2)}" if match else message.split(":", 1)[0]


def cell(values: np.ndarray, digits: int) -> str:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return "—"
    if values.size == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"


def table(ds: xr.Dataset, var: str, cols: str, error: bool, loss_flag: float, digits: int) -> str:
    axes = [k for k in json.loads(ds.attrs["sweep"])["axes"] if k != "seed"]
    keys = [k for k in axes if k in ds.dims]  # an axis chosen with --sel is a scalar now
    chosen = {k: ds[k].item() for k in axes if k not in ds.dims}
    if cols not in keys:
        fail(f"--cols {cols!r} is not an axis of this sweep (axes: {', '.join(keys)})")
    if var not in ds:
        fail(f"no variable {var!r} in the sweep (variables: {', '.join(sorted(map(str, ds.data_vars)))})")
    failed: dict[str, list[str]] = {}  # failures by point without its seed (a seed axis is averaged over)
    for entry in json.loads(ds.attrs["errors"]):
        if any(entry["point"][k] != v for k, v in chosen.items()):
            continue
        point = {k: v for k, v in entry["point"].items() if k in keys}
        failed.setdefault(json.dumps(point, sort_keys=True), []).append(failure_label(entry["error"]))
    rows = [k for k in keys if k != cols]
    last = ds[var].isel(step=-1) if "step" in ds[var].dims else ds[var]
    loss = ds["train_loss"] if "train_loss" in ds else None
    lines = ["| " + " | ".join(rows) + " | " + " | ".join(f"{cols} {v}" for v in ds[cols].values) + " |",
             "|" + "---|" * (max(len(rows), 1) + ds.sizes[cols])]
    for combo in itertools.product(*(ds[k].values.tolist() for k in rows)):
        cells = []
        for value in ds[cols].values.tolist():
            where = dict(zip(rows, combo)) | {cols: value}
            labels = failed.get(json.dumps({k: where[k] for k in keys}, sort_keys=True), [])
            values = np.asarray(last.sel(where).values, dtype=float).ravel()
            if labels and not np.isfinite(values).any():
                cells.append(", ".join(labels))
                continue
            text = cell(100 * (1 - values) if error else values, digits)
            if labels:
                text += f" ({len(labels)} failed: {', '.join(labels)})"
            if loss is not None:
                worst = float(np.nanmax(loss.sel(where).values)) if np.isfinite(loss.sel(where).values).any() else 0
                if worst > loss_flag:
                    text += f" (loss to {worst:.0e})"
            cells.append(text)
        lines.append("| " + " | ".join(str(c) for c in combo) + " | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def best_line(ds: xr.Dataset, var: str, error: bool, digits: int) -> str | None:
    """The sweep's best point chosen on the validation counterpart of ``var`` (a ``test_*`` variable), with its
    test value; chosen on test, and labelled so, where the sweep has no validation values. None for other vars."""
    if not var.startswith("test_") or var not in ds:
        return None
    metric = var[len("test_"):]
    try:
        best = best_point(ds, metric=metric, allow_test=True)
    except (NoValidationError, ValueError):  # nothing finite to choose from: the table says why
        return None
    where = ", ".join(f"{k} = {v}" for k, v in best.where.items())
    show = (lambda v: f"{100 * (1 - v):.{digits}f} %") if error else (lambda v: f"{v:.{digits}f}")
    name = f"{'error' if error else var}"
    if best.on == "test":
        return f"best point ({ON_TEST}): {where}: final {name} {show(best.test)} (mean over seeds)"
    return (f"best point (selected on final val_{metric}, mean over seeds): {where}: final {name} "
            f"{show(best.test)} (validation {show(best.validation)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path, help="OUT/sweep.nc of a grid sweep")
    parser.add_argument("--var", default="test_accuracy")
    parser.add_argument("--cols", required=True, help="the axis whose values are the columns")
    parser.add_argument("--error", action="store_true", help="print 100 x (1 - var): test error in %%")
    parser.add_argument("--sel", action="append", default=[], metavar="DIM=VALUE", help="e.g. arm=wm; repeatable")
    parser.add_argument("--loss-flag", type=float, default=10.0,
                        help="flag a point whose mean training loss in a record window went above this")
    parser.add_argument("--digits", type=int, default=2)
    args = parser.parse_args()
    if not args.sweep.is_file():
        fail(f"no such file: {args.sweep}")
    try:
        ds = xr.open_dataset(args.sweep)
    except (OSError, ValueError) as exc:
        fail(f"{args.sweep} is not a netCDF file: {str(exc).splitlines()[0]}")
    if "sweep" not in ds.attrs or "errors" not in ds.attrs:
        fail(f"{args.sweep} is not a sweep.nc (no sweep definition in its attributes)")
    if json.loads(ds.attrs["sweep"]).get("mode") != "grid":
        fail("only grid sweeps have rows and columns")
    for item in args.sel:
        dim, sep, value = item.partition("=")
        if not sep or dim not in ds.dims:
            fail(f"--sel {item!r}: expected DIM=VALUE with DIM one of {', '.join(map(str, ds.dims))}")
        coord = ds[dim].values
        try:
            ds = ds.sel({dim: type(coord[0].item())(value) if coord.dtype.kind in "iuf" else value})
        except (KeyError, ValueError):
            fail(f"--sel {item!r}: {dim} has no value {value!r} (values: {', '.join(map(str, coord.tolist()))})")
    print(table(ds, args.var, args.cols, args.error, args.loss_flag, args.digits))
    line = best_line(ds, args.var, args.error, args.digits)
    if line:
        print("\n" + line)


if __name__ == "__main__":
    main()
