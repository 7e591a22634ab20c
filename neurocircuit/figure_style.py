"""What every figure of a run shares: one colour per arm, markers where a curve has few points, labelled
reference lines, phases marked on time axes, readable labels (``Wᵀ``, ``long_name (units)``), and the check that
no panel is empty.

Phase labels are read wherever the results keep them: a data variable or a coordinate named ``phase`` (or
``<something>_phase``) along the x dimension, per arm and seed or shared.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.collections import Collection, PathCollection, QuadMesh  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

__all__ = ["MARKER_MAX", "arm_colours", "pretty", "axis_label", "percent", "marker", "reference_line",
           "phase_labels", "phase_segments", "mark_phases", "empty_panels"]

#: Curves with at most this many finite points are drawn with a marker on each (one point is invisible as a line).
MARKER_MAX = 10
#: gid of the artists that frame data (reference lines, phase shading): they never make a panel non-empty.
FRAME = "frame"
# labels that mark no phase: a time no arm reached (merged arms), the protocol's closing blank window
_NO_PHASE = ("", "nan", "None", "end")
_PHASE_COLOURS = ("0.93", "#e8f0fa", "#faf0e6", "#eef7ee")


def arm_colours(labels: Sequence[object]) -> dict[str, tuple[float, ...]]:
    """One colour per arm, by its position in the run (the same in every figure of a run)."""
    cycle = plt.get_cmap("tab10").colors
    return {str(label): cycle[i % len(cycle)] for i, label in enumerate(labels)}


def pretty(text: str) -> str:
    """Text for a title or label: ``W^T`` as ``Wᵀ``."""
    return str(text).replace("W^T", "Wᵀ").replace("B^T", "Bᵀ")


def axis_label(da: xr.DataArray, name: str) -> str:
    """``long_name (units)`` of a coordinate or variable, falling back to its name; units ``1`` are left out."""
    label = pretty(str(da.attrs.get("long_name") or name))
    units = str(da.attrs.get("units", ""))
    return f"{label} ({units})" if units and units not in ("1", label) else label


def percent(da: xr.DataArray) -> xr.DataArray:
    """An accuracy in %, whether it is stored as a fraction (units ``1``) or already in % (units ``%``)."""
    if str(da.attrs.get("units", "1")).strip() in ("%", "percent"):
        return da
    return 100 * da


def marker(n_points: int) -> str | None:
    """A marker for a curve of ``n_points`` finite points, none for a longer one."""
    return "o" if n_points <= MARKER_MAX else None


def reference_line(ax: plt.Axes, y: float, text: str) -> None:
    """A horizontal reference line at ``y``, labelled on the axes (not in the arms' legend)."""
    ax.axhline(y, color="0.45", linewidth=0.9, linestyle=":", gid=FRAME, zorder=1)
    ax.annotate(text, (0.01, y), xycoords=("axes fraction", "data"), xytext=(0, 2), textcoords="offset points",
                fontsize="x-small", color="0.35", va="bottom", gid=FRAME)


def phase_labels(ds: xr.Dataset, x_dim: str) -> xr.DataArray | None:
    """The phase label of each point along ``x_dim`` (a data variable or a coordinate), or None."""
    for name in [*map(str, ds.coords), *map(str, ds.data_vars)]:
        da = ds[name]
        if (name == "phase" or name.endswith("_phase")) and x_dim in da.dims and name not in ds.dims \
                and set(da.dims) <= {"arm", "seed", x_dim}:
            return da
    return None


def _short(name: str) -> str:
    """A phase's evaluation windows (``<engaged>_test``, ``<engaged>_val``) as ``test`` / ``val``."""
    return name.rsplit("_", 1)[1] if name.endswith(("_test", "_val")) else name


def phase_segments(labels: np.ndarray, x: np.ndarray) -> list[tuple[str, float, float]]:
    """Consecutive runs of one phase label as ``(name, start, end)``; a segment ends where the next begins.
    Evaluation windows are named ``test`` / ``val``."""
    names = [_short(str(v.decode() if isinstance(v, bytes) else v)) for v in np.asarray(labels).ravel()]
    # Mirror windows interleaved in an engaged phase (Brian2's "<phase>_mirror") belong to that phase: marking each
    # would draw a line at every snapshot that lands on one.
    present = set(names)
    names = [n[:-len("_mirror")] if n.endswith("_mirror") and n[:-len("_mirror")] in present else n for n in names]
    for i in range(1, len(names)):  # a time only other arms have ("") does not split this arm's phase
        if names[i] == "":
            names[i] = names[i - 1]
    x = np.asarray(x, dtype=float)
    segments: list[tuple[str, float, float]] = []
    start = 0
    for i in range(1, len(names) + 1):
        if i == len(names) or names[i] != names[start]:
            if names[start] not in _NO_PHASE:
                segments.append((names[start], float(x[start]), float(x[min(i, len(x) - 1)])))
            start = i
    return segments


def _arm_segments(labels: xr.DataArray, arm: object, x: np.ndarray) -> list[tuple[str, float, float]]:
    da = labels.sel(arm=arm) if "arm" in labels.dims else labels
    da = da.isel(seed=0) if "seed" in da.dims else da  # phases are timed by the schedule, not the seed
    return phase_segments(da.values, x)


def mark_phases(ax: plt.Axes, labels: xr.DataArray | None, x: np.ndarray, arms: Sequence[object] = (),
                colours: dict[str, tuple[float, ...]] | None = None, names: bool = True, on_image: bool = False
                ) -> None:
    """Mark the phases on a time axis: shaded and named where every arm runs the same schedule; otherwise the
    start of each phase after the first as a dashed line in its arm's colour, named ``arm: phase``. ``on_image``:
    a heat map hides shading, so each phase after the first starts at a dashed line, its name on a white box."""
    if labels is None:
        return
    if on_image:
        segments = phase_segments(labels.values, x)
        if len({name for name, _, _ in segments}) < 2:
            return
        span = (float(np.nanmax(x)) - float(np.nanmin(x))) or 1.0
        for k, (name, start, end) in enumerate(segments):
            if k:
                ax.axvline(start, color="k", linestyle="--", linewidth=0.8, gid=FRAME)
            if (end - start) / span < 0.1:
                continue  # too narrow to name
            ax.annotate(name, (start, 0.98), xycoords=("data", "axes fraction"), xytext=(2, 0),
                        textcoords="offset points", ha="left", va="top", fontsize="xx-small", gid=FRAME,
                        bbox={"facecolor": "white", "alpha": 0.75, "linewidth": 0, "pad": 1})
        return
    per_arm = {str(a): _arm_segments(labels, a, x) for a in arms} if "arm" in labels.dims else \
        {"": phase_segments(labels.values, x)}
    distinct = {tuple(s) for s in per_arm.values()}
    if len(distinct) == 1:
        segments = next(iter(distinct))
        if len({name for name, _, _ in segments}) < 2:
            return  # one phase only: nothing to mark
        palette = {name: _PHASE_COLOURS[i % len(_PHASE_COLOURS)]
                   for i, name in enumerate(dict.fromkeys(n for n, _, _ in segments))}
        span = (float(np.nanmax(x)) - float(np.nanmin(x))) or 1.0
        for name, start, end in segments:
            ax.axvspan(start, end, color=palette[name], zorder=0, linewidth=0, gid=FRAME)
            if names and (end - start) / span > 0.12:
                ax.annotate(name, ((start + end) / 2, 0.99), xycoords=("data", "axes fraction"), ha="center",
                            va="top", fontsize="x-small", color="0.35", gid=FRAME)
        return
    for arm, segments in per_arm.items():
        colour = (colours or {}).get(arm, "0.5")
        # on curves, the learning phases only: an evaluation window changes no weight
        segments = [s for s in segments if s[0] not in ("test", "val")]
        for name, start, _ in segments[1:]:
            ax.axvline(start, color=colour, linestyle="--", linewidth=0.9, gid=FRAME, zorder=1)
            if names:
                ax.annotate(f"{arm}: {name}", (start, 0.99), xycoords=("data", "axes fraction"), rotation=90,
                            ha="right", va="top", fontsize="x-small", color=colour, gid=FRAME)


def _finite(values: object) -> bool:
    array = np.ma.filled(np.ma.asarray(values, dtype=float), np.nan)
    return bool(np.isfinite(array).any())


def _has_data(ax: plt.Axes) -> bool:
    for artist in ax.get_children():
        if artist.get_gid() == FRAME or not artist.get_visible():
            continue
        if isinstance(artist, Line2D):
            xy = np.ma.filled(np.ma.asarray(artist.get_xydata(), dtype=float), np.nan)
            if xy.size and np.isfinite(xy).all(axis=1).any():
                return True
        elif isinstance(artist, (AxesImage, QuadMesh)):
            if _finite(artist.get_array()):
                return True
        elif isinstance(artist, PathCollection):  # scatter: the points are the offsets
            if artist.get_offsets().size and _finite(artist.get_offsets()):
                return True
        elif isinstance(artist, Collection):  # bands
            if any(p.vertices.size and _finite(p.vertices) for p in artist.get_paths()):
                return True
        elif isinstance(artist, Rectangle) and artist is not ax.patch and np.isfinite(artist.get_height()):
            return True
    return False


def empty_panels(fig: plt.Figure) -> list[str]:
    """The panels of ``fig`` (visible axes other than colour bars) that draw no finite data, by title (or
    position): reference lines and phase shading do not count as data."""
    empty = []
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible() or ax.get_label() == "<colorbar>":
            continue
        if not _has_data(ax):
            empty.append(ax.get_title() or f"axes {i}")
    return empty
