"""The ``angles`` table: a per-layer variable (the B-W angle) over training, one column per record."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from .common import TableError

__all__ = ["LayerColumn", "LayerTable", "layer_table", "render_layers"]


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


