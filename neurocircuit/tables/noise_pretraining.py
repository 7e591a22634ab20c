"""The ``noise-pretraining`` tables: Cheon et al.'s experiment with its controls."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from .common import TableError

__all__ = ["NOISE_EPOCHS", "NOISE_THRESHOLD", "NOISE_CLAIMS", "NOISE_NEEDS", "NoisePretrainingTables",
           "noise_pretraining_tables", "render_noise_pretraining"]


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
