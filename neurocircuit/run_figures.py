"""The figures ``neurocircuit run`` writes (any backend, same conventions): learning curves, alignment angles per
layer, out-of-distribution accuracy, and the sampled activity of a Brian2 circuit.

Every figure of one run gives an arm the same colour. Seeds are the one dimension these figures reduce: the mean
with the sd as a band, said in the title with n; any other dimension is an error, never averaged away. Panels
carry information only: one that is the same for every rule by construction, or measures a signal no rule uses,
is left out and the title says which and why.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

from .figure_style import (
    MARKER_MAX,
    arm_colours,
    axis_label,
    mark_phases,
    marker,
    percent,
    phase_labels,
    pretty,
    reference_line,
)
from .results import write_atomic

__all__ = ["plot_learning_curves", "plot_alignment", "plot_ood", "plot_activity", "run_figures", "save_figures",
           "seed_note"]

_PER_LAYER = ("weight_angle", "gradient_angle", "update_angle", "effective_dim")
_PHASE_ANGLES = ("_weight_angle", "_gradient_angle", "_update_angle")


def seed_note(ds: xr.Dataset | xr.DataArray) -> str:
    """What a figure that reduces the seeds shows, for its title."""
    if "seed" not in ds.dims:
        return "one run"
    n = ds.sizes["seed"]
    return f"mean ± sd over seed (n={n})" if n > 1 else f"seed {ds['seed'].values[0]} (one seed: no band)"


def _mean_sd(da: xr.DataArray, along: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd over ``seed`` of a curve along ``along``; any other dimension is a bug of the caller, never
    averaged away."""
    other = [d for d in da.dims if d not in ("seed", along)]
    if other:
        raise ValueError(f"{da.name}: a curve along {along} still has dims {other}; select them first")
    if "seed" in da.dims:
        return da.mean("seed").transpose(along).values, da.std("seed").transpose(along).values
    return da.transpose(along).values, np.zeros(da.sizes[along])


def _band(ax: plt.Axes, x: np.ndarray, da: xr.DataArray, label: str, along: str, colour: object,
          linestyle: str = "-") -> None:
    """The mean over seeds as a line (with markers where it has few points) and the sd as a band."""
    if bool(da.isnull().all()):
        return  # this arm has no such variable (e.g. a phase it did not run)
    mean, sd = _mean_sd(da, along)
    # arms merged over different times (Brian2 schedules) are NaN at the others' times: join the arm's own points
    keep = np.isfinite(mean)
    x, mean, sd = np.asarray(x)[keep], mean[keep], sd[keep]
    ax.plot(x, mean, label=label, color=colour, linestyle=linestyle, marker=marker(int(keep.sum())), markersize=4)
    if np.any(sd > 0):
        ax.fill_between(x, mean - sd, mean + sd, color=colour, alpha=0.2, linewidth=0)


def _arm_legend(fig: plt.Figure, colours: dict[str, tuple[float, ...]], extra: list[Line2D] = ()) -> None:
    """One legend of the arms (and line styles) beside the panels, where it hides no data."""
    handles = [Line2D([], [], color=c, label=a) for a, c in colours.items()] + list(extra)
    fig.legend(handles=handles, loc="outside right center", fontsize="small", title="arm", title_fontsize="small")


def _log_ticks(ax: plt.Axes, values: np.ndarray) -> None:
    """A log axis with plain-number ticks (0.2, 0.5, 1, 2: not 2×10⁰)."""
    finite = values[np.isfinite(values) & (values > 0)]
    if not finite.size or finite.max() / finite.min() < 4:
        return  # within a factor of 4 a linear axis reads better
    ax.set_yscale("log")
    low, high = np.floor(np.log10(finite.min())), np.ceil(np.log10(finite.max()))
    ticks = [m * 10.0**e for e in np.arange(low, high + 1) for m in (1, 2, 3, 5)]
    ticks = [t for t in ticks if finite.min() / 1.3 <= t <= finite.max() * 1.3]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_minor_formatter(NullFormatter())


def plot_learning_curves(ds: xr.Dataset) -> plt.Figure:
    """Test accuracy against epoch; the final test accuracy of each arm, every seed a dot, zoomed to the data;
    training (solid) and test (dashed) loss against epoch. One colour per arm; the curves are the mean over seeds
    with the sd as a band (the title says so, with n)."""
    colours = arm_colours(ds["arm"].values)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), constrained_layout=True,
                             gridspec_kw={"width_ratios": [1.2, 0.8, 1.2]})
    epoch = ds["epoch"].values
    accuracy = percent(ds["test_accuracy"])
    losses = [(v, style) for v, style in (("train_loss", "-"), ("test_loss", "--"))
              if v in ds and bool(ds[v].notnull().any())]
    for arm, colour in colours.items():
        _band(axes[0], epoch, accuracy.sel(arm=arm), arm, "step", colour)
        for var, style in losses:
            _band(axes[2], epoch, ds[var].sel(arm=arm), arm, "step", colour, style)
    axes[0].set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy")
    if len(epoch) <= MARKER_MAX and np.isfinite(epoch).any():  # a few points: show where training starts
        for ax in (axes[0], axes[2]):
            ax.set_xlim(min(0.0, np.nanmin(epoch)) - 0.05 * max(np.nanmax(epoch), 1), 1.05 * max(np.nanmax(epoch), 1))
    _final_accuracy(axes[1], accuracy, colours)
    loss_values = np.concatenate([ds[v].values.ravel() for v, _ in losses]) if losses else np.array([])
    _log_ticks(axes[2], loss_values)
    names = " and ".join({"train_loss": "training", "test_loss": "test"}[v] for v, _ in losses)
    axes[2].set(xlabel="epoch", ylabel=axis_label(xr.DataArray(attrs={"units": "1"}), "loss"),
                title=f"{names} loss" if losses else "loss: not recorded")
    styles = [Line2D([], [], color="0.3", linestyle=s, label={"train_loss": "training loss",
                                                              "test_loss": "test loss"}[v]) for v, s in losses]
    _arm_legend(fig, colours, styles if len(losses) > 1 else [])
    fig.suptitle(f"{ds.attrs.get('simulation', '')}: {seed_note(ds)}")
    return fig


def _final_accuracy(ax: plt.Axes, accuracy: xr.DataArray, colours: dict[str, tuple[float, ...]]) -> None:
    """The last test accuracy of each run (dots), the mean over seeds ± sd (bar), on an axis zoomed to them."""
    shown = []
    for i, (arm, colour) in enumerate(colours.items()):
        da = accuracy.sel(arm=arm)
        da = da.expand_dims(seed=[0]) if "seed" not in da.dims else da
        finals = np.array([_last_finite(da.isel(seed=k).values) for k in range(da.sizes["seed"])])
        finals = finals[np.isfinite(finals)]
        if not finals.size:
            continue
        jitter = np.linspace(-0.12, 0.12, finals.size) if finals.size > 1 else np.zeros(1)
        ax.scatter(i + jitter, finals, color=colour, s=16, zorder=3)
        ax.errorbar(i, finals.mean(), yerr=finals.std(ddof=1) if finals.size > 1 else 0, color=colour,
                    marker="_", markersize=18, capsize=3, zorder=2)
        shown.extend(finals)
    ax.set_xticks(range(len(colours)), list(colours), rotation=30 if len(colours) > 4 else 0)
    ax.set_xlim(-0.6, len(colours) - 0.4)
    if shown:
        low, high = min(shown), max(shown)
        pad = max(0.5, 0.15 * (high - low))
        ax.set_ylim(max(0.0, low - pad), high + pad)
    ax.set(ylabel="test accuracy (%)", title="final test accuracy\n(dots: seeds; bar: mean ± sd)")


def _last_finite(values: np.ndarray) -> float:
    finite = np.flatnonzero(np.isfinite(values))
    return float(values[finite[-1]]) if finite.size else float("nan")


def _left_out(ds: xr.Dataset, variable: str, layers: list[str]) -> dict[str, str]:
    """The layers whose panel of ``variable`` would carry no information, with the reason."""
    da = ds[variable]
    out = {layer: "no data" for layer in layers if bool(da.sel(layer=layer).isnull().all())}
    if variable.endswith("gradient_angle") and len(layers) > 1:
        out[layers[0]] = "the error it sends goes into the input, which no rule learns from"
    if variable.endswith("update_angle") and len(layers) > 1:
        last = da.sel(layer=layers[-1]).values
        if np.isfinite(last).any() and np.nanmax(np.abs(last)) < 1e-3:
            out[layers[-1]] = "the output layer's update is backprop's for every rule (0°)"
    return out


def plot_alignment(ds: xr.Dataset, variable: str = "weight_angle") -> plt.Figure | None:
    """``variable`` (default: angle between B and Wᵀ) against epoch, or against the time or steps of the phase it
    belongs to (``mirror_weight_angle`` over ``mirror_step``, Brian2's ``weight_time``), one panel per layer, one
    line per arm (the mean over seeds, the sd as a band; the title says so, with n). Layers whose panel carries no
    information are left out and named in the title; None when none is left."""
    layers = [str(v) for v in ds["layer"].values]
    dropped = _left_out(ds, variable, layers)
    shown = [layer for layer in layers if layer not in dropped]
    if not shown:
        return None
    degrees = ds[variable].attrs.get("units") == "degree"
    fig, axes = plt.subplots(1, len(shown), figsize=(max(7.5, 1.6 + 3.6 * len(shown)), 3.8), squeeze=False,
                             constrained_layout=True, sharey=degrees)
    x_dim = next(d for d in ds[variable].dims if d not in ("arm", "seed", "layer"))
    x, x_label = (ds["epoch"].values, "epoch") if x_dim == "step" else (ds[x_dim].values,
                                                                      axis_label(ds[x_dim], x_dim))
    colours = arm_colours(ds["arm"].values)
    phases = phase_labels(ds, x_dim)
    for ax, layer in zip(axes[0], shown):
        for arm, colour in colours.items():
            _band(ax, x, ds[variable].sel(arm=arm, layer=layer), arm, x_dim, colour)
        mark_phases(ax, phases, x, list(colours), colours)
        ax.set(title=layer, xlabel=x_label)
        if degrees:
            reference_line(ax, 90, "90°: orthogonal")
            ax.set_ylim(-3, 100)
    units = ds[variable].attrs.get("units", "")
    axes[0][0].set_ylabel(variable.replace("_", " ") + (f" ({units})" if units and units != "1" else ""))
    _arm_legend(fig, colours)
    title = f"{pretty(ds[variable].attrs.get('long_name', variable))}: {seed_note(ds[variable])}"
    notes = [f"{layer} not shown: {why}" for layer, why in dropped.items()]
    _title(fig, [title, *notes])
    return fig


def _title(fig: plt.Figure, lines: list[str]) -> None:
    """A suptitle of several lines, each wrapped to the figure's width."""
    width = int(fig.get_figwidth() * 11)
    fig.suptitle("\n".join(textwrap.fill(line, width) for line in lines), fontsize="medium")


def plot_ood(ds: xr.Dataset) -> plt.Figure:
    """Final test accuracy on the original and the transformed test sets, bars per arm: the mean over seeds with
    the sd as an error bar (the title says so, with n)."""
    colours = arm_colours(ds["arm"].values)
    rules = list(colours)
    labels = ["original"] + [str(t) for t in ds["transform"].values]
    fig, ax = plt.subplots(figsize=(2.4 + 1.1 * len(labels) * max(1, len(rules)) / 3, 3.8), constrained_layout=True)
    width = 0.8 / len(rules)
    final = percent(ds["test_accuracy"]).isel(step=-1)
    ood = percent(ds["ood_accuracy"])
    for i, rule in enumerate(rules):
        vals = [final.sel(arm=rule)] + [ood.sel(arm=rule, transform=t) for t in ds["transform"]]
        means, sds = zip(*(_mean_sd(v.expand_dims(bar=[0]), "bar") for v in vals))
        means, sds = [float(m[0]) for m in means], [float(sd[0]) for sd in sds]
        ax.bar(np.arange(len(labels)) + (i - (len(rules) - 1) / 2) * width, means, width, yerr=sds, label=rule,
               color=colours[rule])
    ax.set_xticks(np.arange(len(labels)), labels)
    ax.set(ylabel="test accuracy (%)", title=f"out-of-distribution test sets\n{seed_note(ds['ood_accuracy'])}")
    _arm_legend(fig, colours)
    return fig


def _activity_columns(ds: xr.Dataset) -> tuple[list[str], list[str]]:
    """The activity variables worth a column, and a note for each left out (an input's error, a silent one)."""
    names = [str(v)[:-2] for v in ds.data_vars if str(v).endswith("_y") and "time" in ds[v].dims]
    columns, notes = [], []
    for k, name in enumerate(names):
        columns.append(f"{name}_y")
        delta = ds.get(f"{name}_delta")
        if delta is None:
            continue
        if k == 0:
            notes.append(f"{name} δ not shown: the error sent into the input, which no rule learns from")
        elif not bool((np.abs(delta) > 0).any()):
            notes.append(f"{name} δ not shown: 0 throughout")
        else:
            columns.append(f"{name}_delta")
    return columns, notes


def _pick(labels: xr.DataArray | None, seed: dict[str, int], arm: str, times: np.ndarray) -> xr.DataArray | None:
    """The phase labels of one arm and seed at ``times`` (labels per arm and seed, or shared)."""
    if labels is None:
        return None
    labels = labels.isel({k: v for k, v in seed.items() if k in labels.dims})
    labels = labels.sel(arm=arm) if arm and "arm" in labels.dims else labels
    return labels.sel(time=times)


def plot_activity(ds: xr.Dataset) -> plt.Figure:
    """Sampled activity of every arm (Brian2 results; the first seed): a row per arm, a heat map per forward
    population (y) and error population (δ) with a colour bar shared down the column, simulated time on x and the
    phases marked."""
    columns, notes = _activity_columns(ds)
    arms = [str(a) for a in ds["arm"].values] if "arm" in ds.dims else [""]
    fig, axes = plt.subplots(len(arms), len(columns), figsize=(1.0 + 3.2 * len(columns), 1.6 + 2.3 * len(arms)),
                             squeeze=False, constrained_layout=True)
    seed = {"seed": 0} if "seed" in ds.dims else {}
    phases = phase_labels(ds, "time")
    for col, var in enumerate(columns):
        name, kind = var.rsplit("_", 1)
        # a robust limit: a few large values (mirror noise) would fade every other arm's activity to white
        magnitude = np.abs(ds[var].isel(seed).values)
        limit = float(np.nanpercentile(magnitude, 99.5)) if np.isfinite(magnitude).any() else 1.0
        limit = limit or float(np.nanmax(magnitude)) or 1.0
        image = None
        for row, arm in enumerate(arms):
            ax = axes[row][col]
            da = ds[var].isel(seed)
            da = (da.sel(arm=arm) if arm else da).dropna("time", how="all")
            times = da["time"].values
            if not times.size:
                ax.set_axis_off()
                continue
            image = ax.imshow(da.transpose("time", ...).values.T, aspect="auto", cmap="RdBu_r", vmin=-limit,
                              vmax=limit, interpolation="nearest",
                              extent=(times[0], times[-1], da.shape[1] - 0.5, -0.5))
            mark_phases(ax, _pick(phases, seed, arm, times), times, on_image=True)
            label = f"{name} activity y" if kind == "y" else f"{name} error δ"
            ax.set(title=f"{arm}: {label}" if arm else label, ylabel="recorded neuron" if col == 0 else "",
                   xlabel=axis_label(ds["time"], "time") if row == len(arms) - 1 else "")
        if image is not None:
            # arrows: colours saturate beyond the 99.5th percentile
            fig.colorbar(image, ax=list(axes[:, col]), location="bottom", shrink=0.85, aspect=30, extend="both",
                         label=f"{name} {'y' if kind == 'y' else 'δ'} (rate)")
    title = "sampled activity of every arm" + (f", seed {ds['seed'].values[0]}"
                                               + (f" (first of {ds.sizes['seed']})" if ds.sizes["seed"] > 1 else "")
                                               if seed else "")
    _title(fig, [title, *notes])
    return fig


def run_figures(ds: xr.Dataset) -> dict[str, plt.Figure]:
    """The figures a results Dataset supports, by file name: learning_curves.png, one per per-layer variable
    (weight_angle, gradient_angle, update_angle, effective_dim, <phase>_weight_angle...) with a panel left,
    activity.png (Brian2) and ood_accuracy.png."""
    figures: dict[str, plt.Figure | None] = {}
    if "step" in ds.dims and "test_accuracy" in ds:
        figures["learning_curves.png"] = plot_learning_curves(ds)
    for var in map(str, ds.data_vars):
        over_time = "twin_phase" not in ds[var].dims  # the torch twin's end-of-phase angles are a table
        if (var in _PER_LAYER or var.endswith(_PHASE_ANGLES)) and "layer" in ds[var].dims and over_time:
            figures[f"{var}.png"] = plot_alignment(ds, var)
    if any(str(v).endswith("_y") and "time" in ds[v].dims for v in ds.data_vars):
        figures["activity.png"] = plot_activity(ds)
    if "ood_accuracy" in ds:
        figures["ood_accuracy.png"] = plot_ood(ds)
    return {name: fig for name, fig in figures.items() if fig is not None}


def save_figures(ds: xr.Dataset, out_dir: str | Path) -> list[Path]:
    """Write the figures of :func:`run_figures` into ``out_dir`` as PNG, atomically."""
    written = []
    for name, fig in run_figures(ds).items():
        written.append(write_atomic(Path(out_dir) / name,
                                    lambda tmp, fig=fig: fig.savefig(tmp, format="png", dpi=110)))
        plt.close(fig)
    return written
