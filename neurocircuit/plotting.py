"""Figures from results Datasets (any backend, same conventions): learning curves and alignment angles."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from .results import write_atomic  # noqa: E402

__all__ = ["plot_learning_curves", "plot_alignment", "plot_ood", "plot_activity", "plot_over", "save_figure",
           "save_figures"]


def _mean_sd(da: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    if "seed" in da.dims:
        return da.mean("seed").values, da.std("seed").values
    return da.values, np.zeros(da.shape)


def _band(ax: plt.Axes, x: np.ndarray, da: xr.DataArray, label: str) -> None:
    if bool(da.isnull().all()):
        return  # this arm has no such variable (e.g. a phase it did not run)
    mean, sd = _mean_sd(da)
    (line,) = ax.plot(x, mean, label=label)
    if np.any(sd > 0):
        ax.fill_between(x, mean - sd, mean + sd, color=line.get_color(), alpha=0.2, linewidth=0)


def plot_learning_curves(ds: xr.Dataset) -> plt.Figure:
    """Test accuracy and test loss against epoch, one line per arm (mean +- sd over seeds)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    epoch = ds["epoch"].values
    for rule in ds["arm"].values:
        sel = ds.sel(arm=rule)
        _band(axes[0], epoch, 100 * sel["test_accuracy"], str(rule))
        _band(axes[1], epoch, sel["test_loss"], str(rule))
    axes[0].set(xlabel="epoch", ylabel="test accuracy (%)", title="learning curves")
    axes[1].set(xlabel="epoch", ylabel="test loss", yscale="log", title="test loss")
    axes[0].legend(fontsize="small")
    n_seeds = ds.sizes.get("seed", 1)
    fig.suptitle(f"{ds.attrs.get('simulation', '')}: mean ± sd over {n_seeds} seed(s)")
    return fig


def plot_alignment(ds: xr.Dataset, variable: str = "weight_angle") -> plt.Figure:
    """``variable`` (default: angle between B and W^T) against epoch, or against the steps of the phase it
    belongs to (``mirror_weight_angle`` over ``mirror_step``), one panel per layer."""
    layers = list(ds["layer"].values)
    fig, axes = plt.subplots(1, len(layers), figsize=(3.6 * len(layers), 3.6), squeeze=False,
                             constrained_layout=True, sharey=True)
    x_dim = next(d for d in ds[variable].dims if d not in ("arm", "seed", "layer"))
    x, x_label = (ds["epoch"].values, "epoch") if x_dim == "step" else (ds[x_dim].values, x_dim.replace("_", " "))
    if x_dim != "step" and ds[x_dim].attrs.get("units"):
        x_label += f" ({ds[x_dim].attrs['units']})"
    for ax, layer in zip(axes[0], layers):
        for rule in ds["arm"].values:
            _band(ax, x, ds[variable].sel(arm=rule, layer=layer), str(rule))
        ax.set(title=str(layer), xlabel=x_label)
        if ds[variable].attrs.get("units") == "degree":
            ax.axhline(90, color="0.7", linewidth=0.8, linestyle=":")
    axes[0][0].set_ylabel(f"{variable.replace('_', ' ')} ({ds[variable].attrs.get('units', '')})")
    axes[0][-1].legend(fontsize="small")
    fig.suptitle(ds[variable].attrs.get("long_name", variable))
    return fig


def plot_ood(ds: xr.Dataset) -> plt.Figure:
    """Final test accuracy on the original and the transformed test sets, bars per arm (mean +- sd)."""
    rules = [str(r) for r in ds["arm"].values]
    labels = ["original"] + [str(t) for t in ds["transform"].values]
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(labels) * max(1, len(rules)) / 3, 3.8), constrained_layout=True)
    width = 0.8 / len(rules)
    final = ds["test_accuracy"].isel(step=-1)
    for i, rule in enumerate(rules):
        vals = [final.sel(arm=rule)] + [ds["ood_accuracy"].sel(arm=rule, transform=t) for t in ds["transform"]]
        means = [100 * float(v.mean()) for v in vals]
        sds = [100 * float(v.std()) if "seed" in v.dims else 0.0 for v in vals]
        ax.bar(np.arange(len(labels)) + (i - (len(rules) - 1) / 2) * width, means, width, yerr=sds, label=rule)
    ax.set_xticks(np.arange(len(labels)), labels)
    ax.set(ylabel="test accuracy (%)", title="out-of-distribution test sets")
    ax.legend(fontsize="small")
    return fig


def plot_activity(ds: xr.Dataset) -> plt.Figure:
    """Sampled activity of every forward and error population of the first arm and seed (Brian2 results):
    one heat map per population, time on x, the phase of each time as a strip above."""
    names = [str(v)[:-2] for v in ds.data_vars if str(v).endswith("_y") and "time" in ds[v].dims]
    fig, axes = plt.subplots(2, len(names), figsize=(3.4 * len(names), 5.2), squeeze=False, constrained_layout=True)
    first = {d: 0 for d in ("arm", "seed") if d in ds.dims}
    times = ds["time"].values
    for col, name in enumerate(names):
        for row, var in enumerate(("y", "delta")):
            da = ds[f"{name}_{var}"].isel(first).dropna("time", how="all")
            ax = axes[row][col]
            limit = float(np.nanmax(np.abs(da.values))) or 1.0
            ax.imshow(da.values.T, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest",
                      extent=(times[0], times[min(len(times), da.sizes["time"]) - 1], da.shape[1] - 0.5, -0.5))
            ax.set(title=f"{name} {'y' if var == 'y' else 'delta'}", xlabel="time (s)" if row else "",
                   ylabel="unit" if col == 0 else "")
    title = "activity"
    if "arm" in ds.dims:
        title += f" ({ds['arm'].values[0]}"
        title += f", seed {ds['seed'].values[0]})" if "seed" in ds.dims else ")"
    fig.suptitle(title)
    return fig


_TIME_DIMS = ("step", "weight_time", "time", "mirror_step", "prenatal_step")


def plot_over(ds: xr.Dataset, variable: str, x: str, y: str | None = None,
              select: dict[str, str] | None = None) -> plt.Figure:
    """``variable`` against dimension ``x`` (a line, mean ± sd over seeds), or as a heat map over ``x`` and ``y``.

    Other dimensions: ``select`` picks a value (matched as text), time-like ones (step, time...) take their last
    value, ``seed`` gives the mean (and the sd band of a line), and any others are averaged.
    """
    from .errors import ConfigError

    if variable not in ds:
        raise ConfigError(f"--var: no variable {variable!r} (variables: {', '.join(map(str, ds.data_vars))})")
    da = ds[variable]
    for dim in (x, y):
        if dim is not None and dim not in da.dims:
            raise ConfigError(f"no dimension {dim!r} in {variable} (dims: {', '.join(map(str, da.dims))})")
    for dim, text in (select or {}).items():
        if dim not in da.dims:
            raise ConfigError(f"--sel: no dimension {dim!r} in {variable} (dims: {', '.join(map(str, da.dims))})")
        matches = [i for i, v in enumerate(da[dim].values) if str(v) == text or _same_number(v, text)]
        if not matches:
            raise ConfigError(f"--sel {dim}={text}: no such value (values: {list(map(str, da[dim].values))})")
        da = da.isel({dim: matches[0]})
    keep = {x, y, "seed"}
    for dim in list(da.dims):
        if dim in keep:
            continue
        if dim in _TIME_DIMS:
            da = da.dropna(dim, how="all").isel({dim: -1})
        else:
            da = da.mean(dim)
    fig, ax = plt.subplots(figsize=(5.5, 4.2), constrained_layout=True)
    label = f"{variable} ({da.attrs.get('units', ds[variable].attrs.get('units', ''))})"
    if y is None:
        xs = da[x].values
        _band(ax, xs if np.issubdtype(np.asarray(xs).dtype, np.number) else np.arange(len(xs)), da, variable)
        if not np.issubdtype(np.asarray(xs).dtype, np.number):
            ax.set_xticks(np.arange(len(xs)), [str(v) for v in xs])
        elif len(xs) > 2 and np.all(np.asarray(xs) > 0) and xs.max() / xs.min() >= 100:
            ax.set_xscale("log")
        ax.set(xlabel=x, ylabel=label)
    else:
        grid = da.mean("seed") if "seed" in da.dims else da
        grid = grid.transpose(y, x)
        image = ax.imshow(grid.values, origin="lower", aspect="auto", cmap="viridis")
        ax.set_xticks(np.arange(grid.sizes[x]), [_tick(v) for v in grid[x].values])
        ax.set_yticks(np.arange(grid.sizes[y]), [_tick(v) for v in grid[y].values])
        for (i, j), value in np.ndenumerate(grid.values):
            ax.text(j, i, f"{value:.3g}", ha="center", va="center", color="w", fontsize="small")
        fig.colorbar(image, ax=ax, label=label)
        ax.set(xlabel=x, ylabel=y)
    ax.set_title(variable.replace("_", " "))
    return fig


def _tick(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, (float, np.floating)) else str(value)


def _same_number(value: object, text: str) -> bool:
    try:
        return float(value) == float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def save_figure(fig: plt.Figure, path: str | Path) -> Path:
    """Write one figure as PNG atomically and close it."""
    written = write_atomic(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return written


def save_figures(ds: xr.Dataset, out_dir: str | Path) -> list[Path]:
    """Write the figures a results Dataset supports into ``out_dir``: learning_curves.png, one PNG per
    per-layer variable (weight_angle, gradient_angle, update_angle, effective_dim, <phase>_weight_angle) and
    ood_accuracy.png."""
    out_dir = Path(out_dir)
    figures = {}
    if "step" in ds.dims:
        figures["learning_curves.png"] = plot_learning_curves(ds)
    for var in ds.data_vars:
        per_layer = var in ("weight_angle", "gradient_angle", "update_angle", "effective_dim")
        over_time = "twin_phase" not in ds[var].dims  # the torch twin's end-of-phase angles are a table
        phase_angle = var.endswith(("_weight_angle", "_gradient_angle", "_update_angle"))
        if (per_layer or phase_angle) and "layer" in ds[var].dims and over_time:
            figures[f"{var}.png"] = plot_alignment(ds, var)
    if any(str(v).endswith("_y") and "time" in ds[v].dims for v in ds.data_vars):
        figures["activity.png"] = plot_activity(ds)
    if "ood_accuracy" in ds:
        figures["ood_accuracy.png"] = plot_ood(ds)
    written = []
    for name, fig in figures.items():
        written.append(write_atomic(out_dir / name, lambda tmp, fig=fig: fig.savefig(tmp, format="png", dpi=110)))
        plt.close(fig)
    return written
