"""Per-layer B-W angle (or another per-layer variable) over training, as a markdown table, from results files.

    neurocircuit run resnet18_fashion_mnist --only kp --set train.epochs=5 --out runs/r18_kp
    python benchmarks/layer_angles.py runs/r18_kp/results.nc [runs/other/results.nc ...] [--var weight_angle]

One row per layer, one column per record (its epoch) for every (file, arm); over several seeds each cell is
mean ± std. A layer that an arm does not record (NaN throughout) prints as a dash.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import xarray as xr


def fail(message: str) -> None:
    """Bad input: one line on stderr, exit code 2."""
    print(f"layer_angles: error: {message}", file=sys.stderr)
    sys.exit(2)


def cell(values: np.ndarray, digits: int) -> str:
    values = np.asarray(values, dtype=float)
    if np.isnan(values).all():
        return "—"
    if values.size == 1:
        return f"{np.nanmean(values):.{digits}f}"
    return f"{np.nanmean(values):.{digits}f} ± {np.nanstd(values):.{digits}f}"


def table(paths: list[Path], var: str, digits: int) -> str:
    columns: list[tuple[str, xr.DataArray]] = []
    layers: list[str] = []
    for path in paths:
        with xr.open_dataset(path) as ds:
            if var not in ds:
                fail(f"{path} has no variable {var!r} (has: {', '.join(map(str, ds.data_vars))})")
            data = ds[var].load()
            epochs = ds["epoch"].load()
        if "layer" not in data.dims:
            fail(f"{var!r} in {path} is not per layer (dims {data.dims})")
        layers += [str(layer) for layer in data["layer"].values if str(layer) not in layers]
        for arm in data["arm"].values:
            by_arm = data.sel(arm=arm)
            for step in range(by_arm.sizes["step"]):
                columns.append((f"{path.parent.name}/{arm} ep {float(epochs[step]):g}", by_arm.isel(step=step)))
    lines = ["| layer | " + " | ".join(name for name, _ in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for layer in layers:
        cells = [cell(column.sel(layer=layer).values, digits) if layer in column["layer"] else "—"
                 for _, column in columns]
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", type=Path, help="results.nc files")
    parser.add_argument("--var", default="weight_angle", help="a per-layer variable (default: weight_angle)")
    parser.add_argument("--digits", type=int, default=1)
    args = parser.parse_args()
    missing = [str(p) for p in args.results if not p.is_file()]
    if missing:
        fail(f"no such file: {', '.join(missing)}")
    print(table(args.results, args.var, args.digits))


if __name__ == "__main__":
    main()
