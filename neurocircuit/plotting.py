"""Figures from results Datasets (any backend, same conventions): learning curves and alignment angles."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from .results import write_atomic  # noqa: E402

__all__ = ["plot_learning_curves", "plot_alignment", "save_figures"]


def _mean_sd(da: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    if "seed" in da.dims:
        return da.mean("seed").values, da.std("seed").values
    return da.values, np.zeros(da.shape)


def _band(ax: plt.Axes, x: np.ndarray, da: xr.DataArray, label: str) -> None:
    mean, sd = _mean_sd(da)
    (line,) = ax.plot(x, mean, label=label)
    if np.any(sd > 0):
        ax.fill_between(x, mean - sd, mean + sd, color=line.get_color(), alpha=0.2, linewidth=0)


def plot_learning_curves(ds: xr.Dataset) -> plt.Figure:
    """Test accuracy and test loss against epoch, one line per rule (mean +- sd over seeds)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    epoch = ds["epoch"].values
    for rule in ds["rule"].values:
        sel = ds.sel(rule=rule)
        _band(axes[0], epoch, 100 * sel["test_accuracy"], str(rule))
        _band(axes[1], epoch, sel["test_loss"], str(rule))
    axes[0].set(xlabel="epoch", ylabel="test accuracy (%)", title="learning curves")
    axes[1].set(xlabel="epoch", ylabel="test loss", yscale="log", title="test loss")
    axes[0].legend(fontsize="small")
    n_seeds = ds.sizes.get("seed", 1)
    fig.suptitle(f"{ds.attrs.get('simulation', '')}: mean ± sd over {n_seeds} seed(s)")
    return fig


def plot_alignment(ds: xr.Dataset, variable: str = "weight_angle") -> plt.Figure:
    """``variable`` (default: angle between B and W^T) against epoch, one panel per layer."""
    layers = list(ds["layer"].values)
    fig, axes = plt.subplots(1, len(layers), figsize=(3.6 * len(layers), 3.6), squeeze=False,
                             constrained_layout=True, sharey=True)
    epoch = ds["epoch"].values
    for ax, layer in zip(axes[0], layers):
        for rule in ds["rule"].values:
            _band(ax, epoch, ds[variable].sel(rule=rule, layer=layer), str(rule))
        ax.set(title=str(layer), xlabel="epoch")
        ax.axhline(90, color="0.7", linewidth=0.8, linestyle=":")
    axes[0][0].set_ylabel(f"{variable.replace('_', ' ')} ({ds[variable].attrs.get('units', '')})")
    axes[0][-1].legend(fontsize="small")
    fig.suptitle(ds[variable].attrs.get("long_name", variable))
    return fig


def save_figures(ds: xr.Dataset, out_dir: str | Path) -> list[Path]:
    """Write learning_curves.png, weight_angle.png and gradient_angle.png into ``out_dir``."""
    out_dir = Path(out_dir)
    figures = {"learning_curves.png": plot_learning_curves(ds), "weight_angle.png": plot_alignment(ds)}
    if "gradient_angle" in ds:
        figures["gradient_angle.png"] = plot_alignment(ds, "gradient_angle")
    written = []
    for name, fig in figures.items():
        written.append(write_atomic(out_dir / name, lambda tmp, fig=fig: fig.savefig(tmp, format="png", dpi=110)))
        plt.close(fig)
    return written
