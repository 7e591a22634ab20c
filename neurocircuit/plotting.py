"""Figures from results Datasets (any backend, same conventions): any variable over one or two dimensions
(:func:`plot_over`, ``neurocircuit plot``), and the figures of a run (:mod:`neurocircuit.run_figures`).

No figure averages a dimension it does not name: the figures ``run`` writes show the mean over seeds with the sd
as a band and say so in their titles, and :func:`plot_over` draws every other dimension as lines (or panels) unless
it is selected or averaged on request.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from .errors import ConfigError  # noqa: E402
from .figure_style import axis_label, reference_line  # noqa: E402
from .results import edge_with_data, write_atomic  # noqa: E402
from .run_figures import plot_activity, plot_alignment, plot_learning_curves, plot_ood, save_figures  # noqa: E402

__all__ = ["plot_learning_curves", "plot_alignment", "plot_ood", "plot_activity", "plot_over", "save_figure",
           "save_figures", "MAX_LINES"]


#: More lines than this in one ``plot_over`` figure (or heat-map panels) are refused: choose with --sel or --mean.
MAX_LINES = 12


def _display(values: np.ndarray, units: str) -> tuple[np.ndarray, str]:
    """Values and units to show: seconds below 1 s are shown in ms (a tau of 0.002 s reads as 2 ms)."""
    values = np.asarray(values)
    if units == "s" and _numeric(values) and values.size and np.nanmax(np.abs(values)) < 1:
        return values * 1e3, "ms"
    return values, units


def _numeric(values: np.ndarray) -> bool:
    dtype = np.asarray(values).dtype
    return np.issubdtype(dtype, np.number) and not np.issubdtype(dtype, np.bool_)


def _format(value: object, units: str = "") -> str:
    """One coordinate value with its units, for titles and legends."""
    if _numeric(np.asarray(value)):
        shown, units = _display(np.asarray([value], dtype=float), units)
        text = f"{shown[0]:.4g}"
        return f"{text} {units}" if units and units != "1" else text
    return str(value.decode() if isinstance(value, bytes) else value)


def _dim_of(da: xr.DataArray, name: str, variable: str, flag: str) -> str:
    """The dimension ``name`` stands for: a dimension of ``da`` or a coordinate along one (``epoch`` along
    ``step``, a zipped sweep's axis along ``point``)."""
    if name in da.dims:
        return name
    if name in da.coords and da[name].ndim == 1:
        return str(da[name].dims[0])
    along = [str(c) for c in da.coords if c not in da.dims and da[c].ndim == 1]
    raise ConfigError(f"{flag}: no dimension {name!r} in {variable} (dims: {', '.join(map(str, da.dims)) or 'none'}"
                      + (f"; coordinates along them: {', '.join(along)})" if along else ")"))


def _choices(values: np.ndarray, units: str, limit: int = 16) -> str:
    shown = [_format(v, units) for v in values[:limit]]
    return ", ".join(shown) + (f", ... ({len(values)} values)" if len(values) > limit else "")


def _select_edge(da: xr.DataArray, name: str, text: str, variable: str) -> tuple[xr.DataArray, str]:
    """``da`` at the ``first`` / ``last`` position along ``name`` where each of its series (every combination of the
    other dims) has a finite value, and the title's words for it. Series that end (or begin) at different places --
    arms of different lengths, sweep points of different durations -- each keep their own, and the title gives the
    range, so that no series is dropped for another's longer one."""
    coord = da[name]
    dim, units = str(coord.dims[0]), str(coord.attrs.get("units", ""))
    picked, used = edge_with_data(da, dim, first=text == "first")
    if not used.size:
        raise ConfigError(f"--sel {name}={text}: {variable} has no finite value along {name}")
    if used.size == 1:
        index = int(used[0])
        return da.isel({dim: index}), f"{name} = {_format(coord.values[index], units)} ({text})"
    low, high = (_format(coord.values[i], units) for i in (used[0], used[-1]))
    return picked, f"{name} = each one's {text} with data ({low} … {high})"


def _match(da: xr.DataArray, name: str, text: str, variable: str) -> int:
    """The index along ``name`` of the value ``text``: its text, a number, or a quantity in the coordinate's units
    ("2 ms" on a coordinate in s)."""
    coord = da[name]
    values, units = coord.values, str(coord.attrs.get("units", ""))
    for i, value in enumerate(values):
        if _format(value) == text or str(value) == text:
            return i
    target = _number(text, units)
    if target is not None and _numeric(values):
        close = np.flatnonzero(np.isclose(values.astype(float), target, rtol=1e-6, atol=0))
        if close.size:
            return int(close[0])
    raise ConfigError(f"--sel {name}={text}: no such value of {name} (values: {_choices(values, units)}; "
                      "or first, last)")


_PREFIXES = {"": 1.0, "k": 1e3, "M": 1e6, "m": 1e-3, "u": 1e-6, "µ": 1e-6, "n": 1e-9}


def _number(text: str, units: str) -> float | None:
    """``text`` as a number in ``units``: a plain number, or a quantity such as "2 ms" when ``units`` is its SI
    unit (swept quantities are stored in SI units, see :func:`neurocircuit.sweep.quantity_value`)."""
    try:
        return float(text)
    except ValueError:
        pass
    if not units or units == "1" or not any(c.isalpha() for c in text):
        return None
    number, _, unit = text.strip().partition(" ")
    prefix = unit.strip()[:-len(units)] if unit.strip().endswith(units) else None
    # "440 ms", "0.44 s" on a coordinate in s: the common prefixes without importing Brian2 (seconds to import)
    if prefix is not None and prefix in _PREFIXES:
        try:
            return float(number) * _PREFIXES[prefix]
        except ValueError:
            pass
    from .sweep import quantity_value

    quantity = quantity_value(text)
    return quantity[0] if quantity is not None and quantity[1] == units else None


def plot_over(ds: xr.Dataset, variable: str, x: str, y: str | None = None,
              select: Mapping[str, str] | None = None, mean: Sequence[str] = (),
              max_lines: int = MAX_LINES) -> plt.Figure:
    """``variable`` against ``x`` (lines), or as a heat map over ``x`` and ``y``, hiding no dimension.

    Parameters
    ----------
    ds
        A results or sweep Dataset.
    variable
        The data variable to draw.
    x, y
        Dimensions, or coordinates along one (``epoch`` along ``step``). Numeric coordinates are drawn on numeric
        axes (log-scaled where they span two decades or more), text ones as evenly spaced categories; axis labels
        come from the coordinates' ``long_name`` and ``units``.
    select
        ``{dim: value}``: draw only that value of ``dim`` (matched as text, as a number, as a quantity like
        "2 ms", or ``first`` / ``last``: each series' first / last value with data, the range named where series
        end at different places). Named in the title.
    mean
        Dimensions to reduce: the mean is drawn, with the sd over them as a band (lines) or in each cell (heat
        map), and the title says so with n.
    max_lines
        Every other dimension is drawn: one line per combination of its values (heat map: one panel each), with
        a legend. More combinations than this are refused.

    Returns
    -------
    matplotlib.figure.Figure
        The figure; its suptitle names the variable, every selection (dims of one value included) and any mean.

    Raises
    ------
    ConfigError
        An unknown variable, dimension or value (the message names the choices), a dimension used twice, or too
        many lines to draw.
    """
    if variable not in ds.data_vars:
        raise ConfigError(f"--var: no variable {variable!r} (variables: {', '.join(sorted(map(str, ds.data_vars)))})")
    da = ds[variable]
    xdim = _dim_of(da, x, variable, "--x")
    ydim = _dim_of(da, y, variable, "--y") if y is not None else None
    if ydim == xdim:
        raise ConfigError(f"--x {x} and --y {y} are the same dimension ({xdim}): a heat map needs two")
    on_axes = {xdim, ydim} - {None}
    chosen: list[str] = []
    used: dict[str, str] = {}
    # values first, then first/last, so that "last" means the last with data among the selected values
    for name, text in sorted((select or {}).items(), key=lambda item: item[1] in ("first", "last")):
        dim = _dim_of(da, name, variable, "--sel")
        if dim in on_axes:
            raise ConfigError(f"--sel {name}: {dim} is on an axis; select another dimension or plot against it")
        if dim in used:
            raise ConfigError(f"--sel {name}: {dim} is already selected (by --sel {used[dim]})")
        used[dim] = name
        if str(text) in ("first", "last"):
            da, words = _select_edge(da, name, str(text), variable)
            chosen.append(words)
            continue
        index = _match(da, name, str(text), variable)
        chosen.append(f"{name} = {_format(da[name].values[index], str(da[name].attrs.get('units', '')))}")
        da = da.isel({dim: index})
    means = list(dict.fromkeys(mean))
    for dim in means:
        if dim not in ds[variable].dims:
            _dim_of(ds[variable], dim, variable, "--mean")  # an unknown name: the error lists the dims
            raise ConfigError(f"--mean {dim}: give the dimension {ds[variable][dim].dims[0]!r}, not its coordinate")
        if dim in on_axes:
            raise ConfigError(f"--mean {dim}: {dim} is on an axis")
        if dim in used:
            raise ConfigError(f"--mean {dim}: {dim} is already selected (by --sel {used[dim]})")
    spread = None
    note = ""
    if means:
        n = int(np.prod([da.sizes[d] for d in means]))
        spread = da.std(means) if n > 1 else None
        da = da.mean(means).assign_attrs(ds[variable].attrs)
        note = f"mean ± sd over {' × '.join(means)} (n={n})" if n > 1 else f"{' × '.join(means)}: n=1, no spread"
    # dimensions of one value are selections too: named in the title, not in a legend
    for dim in [d for d in da.dims if d not in on_axes and da.sizes[d] == 1]:
        chosen.append(f"{dim} = {_format(da[dim].values[0], str(da[dim].attrs.get('units', '')))}"
                      if dim in da.coords else f"{dim} = 0")
        da = da.isel({dim: 0})
        spread = spread.isel({dim: 0}) if spread is not None else None
    rest = [str(d) for d in da.dims if d not in on_axes]
    combos = list(itertools.product(*(range(da.sizes[d]) for d in rest)))
    if len(combos) > max_lines:
        sizes = " × ".join(f"{d} ({da.sizes[d]})" for d in rest)
        raise ConfigError(f"{variable} against {x}{' and ' + y if y else ''}: {len(combos)} combinations of {sizes} to "
                          f"draw as {'panels' if y else 'lines'} (at most {max_lines}): choose values with "
                          f"--sel DIM=VALUE or average with --mean DIM for some of {', '.join(rest)}")
    title = [str(variable)] + ([", ".join(chosen)] if chosen else []) + ([note] if note else [])
    if y is None:
        fig = _lines(da, spread, variable, x, xdim, rest, combos)
    else:
        fig = _heat_maps(da, spread, variable, x, y, xdim, str(ydim), rest, combos)
    fig.suptitle("\n".join(title))
    return fig


def _label(da: xr.DataArray, rest: list[str], combo: tuple[int, ...]) -> str:
    return ", ".join(f"{d}={_format(da[d].values[i], str(da[d].attrs.get('units', '')))}" if d in da.coords
                     else f"{d}={i}" for d, i in zip(rest, combo))


def _coordinate(da: xr.DataArray, name: str, dim: str) -> tuple[np.ndarray, str, bool]:
    """Positions along an axis, its label, and whether it is numeric (text coordinates: 0, 1, 2...)."""
    coord = da[name] if name in da.coords else xr.DataArray(np.arange(da.sizes[dim]), dims=dim)
    values, units = _display(coord.values, str(coord.attrs.get("units", "")))
    label = axis_label(coord.assign_attrs(units=units), name)
    return values, label, _numeric(values)


def _log_scale(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    return finite.size > 2 and bool(np.all(finite > 0)) and finite.max() / finite.min() >= 100


def _lines(da: xr.DataArray, spread: xr.DataArray | None, variable: str, x: str, xdim: str, rest: list[str],
           combos: list[tuple[int, ...]]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6.4, 4.6), constrained_layout=True)
    xs, xlabel, numeric = _coordinate(da, x, xdim)
    positions = xs.astype(float) if numeric else np.arange(len(xs), dtype=float)
    order = np.argsort(positions, kind="stable")  # a zipped or random axis need not be sorted
    for i, combo in enumerate(combos):
        where = dict(zip(rest, combo))
        line_data = da.isel(where).transpose(xdim).values[order]
        sd = spread.isel(where).transpose(xdim).values[order] if spread is not None else None
        label = _label(da, rest, combo) if rest else variable
        if not np.isfinite(line_data.astype(float)).any():
            label += " (no data)"  # e.g. an arm without the phase this variable belongs to
        if not numeric:  # categories have no order: points (side by side, sd as error bars), no joining line
            dodge = (i - (len(combos) - 1) / 2) * min(0.1, 0.6 / len(combos))
            ax.errorbar(positions[order] + dodge, line_data, yerr=sd, fmt="o", markersize=4, capsize=3, label=label)
            continue
        (line,) = ax.plot(positions[order], line_data, marker="o" if len(xs) <= 12 else None, markersize=3,
                          label=label)
        if sd is not None:
            ax.fill_between(positions[order], line_data - sd, line_data + sd, color=line.get_color(), alpha=0.2,
                            linewidth=0)
    if not numeric:
        ax.set_xticks(np.arange(len(xs)), [_format(v) for v in xs])
    elif _log_scale(positions):
        ax.set_xscale("log")
    if da.attrs.get("units") == "degree":
        reference_line(ax, 90, "90°: orthogonal")
    ax.set(xlabel=xlabel, ylabel=axis_label(da, variable))
    if rest:
        ax.legend(fontsize="small", title=", ".join(rest), title_fontsize="small")
    return fig


def _edges(centres: np.ndarray, log: bool) -> np.ndarray:
    """Cell edges around sorted numeric centres (geometric midpoints on a log axis)."""
    c = np.log10(centres) if log else centres.astype(float)
    if c.size == 1:
        inner, step = np.array([]), 1.0
        edges = np.array([c[0] - step / 2, c[0] + step / 2])
    else:
        inner = (c[1:] + c[:-1]) / 2
        edges = np.concatenate([[c[0] - (inner[0] - c[0])], inner, [c[-1] + (c[-1] - inner[-1])]])
    return 10**edges if log else edges


def _heat_maps(da: xr.DataArray, spread: xr.DataArray | None, variable: str, x: str, y: str, xdim: str, ydim: str,
               rest: list[str], combos: list[tuple[int, ...]]) -> plt.Figure:
    cols = min(len(combos), 3)
    rows = -(-len(combos) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.4 * cols, 4.4 * rows + 0.5), squeeze=False,
                             constrained_layout=True)
    xs, xlabel, x_numeric = _coordinate(da, x, xdim)
    ys, ylabel, y_numeric = _coordinate(da, y, ydim)
    xo = np.argsort(xs, kind="stable") if x_numeric else np.arange(len(xs))
    yo = np.argsort(ys, kind="stable") if y_numeric else np.arange(len(ys))
    x_log, y_log = x_numeric and _log_scale(xs.astype(float)), y_numeric and _log_scale(ys.astype(float))
    x_edges = _edges(xs[xo], x_log) if x_numeric else np.arange(len(xs) + 1) - 0.5
    y_edges = _edges(ys[yo], y_log) if y_numeric else np.arange(len(ys) + 1) - 0.5
    x_mid = xs[xo].astype(float) if x_numeric else np.arange(len(xs), dtype=float)
    y_mid = ys[yo].astype(float) if y_numeric else np.arange(len(ys), dtype=float)
    finite = da.values[np.isfinite(da.values)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    mesh = None
    for ax, combo in zip(axes.flat, combos):
        where = dict(zip(rest, combo))
        grid = da.isel(where).transpose(ydim, xdim).values[np.ix_(yo, xo)]
        sd = spread.isel(where).transpose(ydim, xdim).values[np.ix_(yo, xo)] if spread is not None else None
        mesh = ax.pcolormesh(x_edges, y_edges, grid, cmap="viridis", vmin=vmin, vmax=vmax)
        for (i, j), value in np.ndenumerate(grid):
            text = f"{value:.3g}" + (f"\n± {sd[i, j]:.2g}" if sd is not None else "")
            bright = np.isfinite(value) and (value - vmin) > 0.6 * (vmax - vmin)  # viridis is yellow up there
            ax.text(x_mid[j], y_mid[i], text, ha="center", va="center", color="k" if bright else "w",
                    fontsize="small")
        if x_log:
            ax.set_xscale("log")
        if y_log:
            ax.set_yscale("log")
        ax.set_xticks(x_mid, [_format(v) for v in xs[xo]])
        ax.set_yticks(y_mid, [_format(v) for v in ys[yo]])
        ax.minorticks_off()
        ax.set(xlabel=xlabel, ylabel=ylabel, title=_label(da, rest, combo) if rest else "")
    for ax in axes.flat[len(combos):]:
        ax.set_visible(False)
    fig.colorbar(mesh, ax=axes, label=axis_label(da, variable))
    return fig


def save_figure(fig: plt.Figure, path: str | Path) -> Path:
    """Write one figure as PNG atomically and close it."""
    written = write_atomic(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return written
