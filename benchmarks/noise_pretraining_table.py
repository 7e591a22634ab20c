"""The tables of Cheon et al.'s experiment with its controls, from a finished ``noise_pretraining`` run.

    neurocircuit run noise_pretraining --out runs/noise_pretraining     # 8 arms x 3 seeds, ~15 min on 2 cores
    python benchmarks/noise_pretraining_table.py runs/noise_pretraining/results.nc

Prints (mean ± std over seeds): test accuracy at 1/4, 1/2, 1, 3 epochs and at the end; the steps to first reach 80 %
test accuracy; the readout (last layer) B-W angle and ||W|| per layer before and after the noise phase; the effective
dimensionality of W at the end; the accuracy on each out-of-distribution transform; then each of Cheon's claims
as a difference between two arms with its seeds' spread (paired by seed).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import xarray as xr

EPOCHS = (0.25, 0.5, 1.0, 3.0)
THRESHOLD = 0.80


def fmt(values: np.ndarray, scale: float = 100.0, digits: int = 2) -> str:
    values = np.asarray(values, dtype=float) * scale
    if np.isnan(values).all():
        return "—"
    return f"{np.nanmean(values):.{digits}f} ± {np.nanstd(values):.{digits}f}"


def at_epoch(ds: xr.Dataset, epoch: float) -> xr.DataArray:
    """Test accuracy at the first record at or after ``epoch`` (records are every quarter epoch)."""
    reached = ds["epoch"].values >= epoch - 1e-2
    if not reached.any():  # a shorter run
        return xr.full_like(ds["test_accuracy"].isel(step=0), np.nan)
    return ds["test_accuracy"].isel(step=int(np.argmax(reached)))


def steps_to(ds: xr.Dataset, arm: str, threshold: float) -> np.ndarray:
    acc = ds["test_accuracy"].sel(arm=arm).values  # (seed, step)
    steps = ds["step"].values
    return np.array([steps[np.argmax(a >= threshold)] if (a >= threshold).any() else np.nan for a in acc])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results")
    args = parser.parse_args()
    ds = xr.open_dataset(args.results)
    arms = [str(a) for a in ds["arm"].values]
    last = ds["layer"].values[-1]
    print(f"seeds {[int(s) for s in ds['seed'].values]}; test accuracy (%) at epochs {EPOCHS} and at the end "
          f"({float(ds['epoch'].values[-1]):.0f} epochs)")
    print("| arm | " + " | ".join(f"{e:g} ep" for e in EPOCHS) + f" | final | steps to {THRESHOLD:.0%} |")
    print("|---|" + "---|" * (len(EPOCHS) + 2))
    for arm in arms:
        cells = [fmt(at_epoch(ds, e).sel(arm=arm).values) for e in EPOCHS]
        final = fmt(ds["test_accuracy"].sel(arm=arm).isel(step=-1).values)
        print(f"| {arm} | " + " | ".join(cells) + f" | {final} | {fmt(steps_to(ds, arm, THRESHOLD), 1, 0)} |")

    print(f"\nnoise phase: readout ({last}) B-W angle and ||W|| per layer before -> after; effective dim of W at the "
          "end; OOD accuracy (%)")
    transforms = [str(t) for t in ds["transform"].values] if "transform" in ds.dims else []
    print("| arm | angle before -> after | ||W|| before -> after | effective dim | " + " | ".join(transforms) + " |")
    print("|---|---|---|---|" + "---|" * len(transforms))
    for arm in arms:
        row = ds.sel(arm=arm)
        if "prenatal_weight_angle" in ds and not row["prenatal_weight_angle"].isnull().all():
            pre = row["prenatal_weight_angle"].sel(layer=last)
            angle = f"{fmt(pre.isel(prenatal_step=0).values, 1, 1)} -> {fmt(pre.isel(prenatal_step=-1).values, 1, 1)}"
            norms = row["prenatal_weight_norm"]
            norm = " ; ".join(f"{layer}: {fmt(norms.sel(layer=layer).isel(prenatal_step=0).values, 1, 1)} -> "
                              f"{fmt(norms.sel(layer=layer).isel(prenatal_step=-1).values, 1, 1)}"
                              for layer in ds["layer"].values)
        else:
            angle = norm = "no noise phase"
        dims = " ; ".join(f"{layer}: {fmt(row['effective_dim'].sel(layer=layer).isel(step=-1).values, 1, 1)}"
                          for layer in ds["layer"].values)
        ood = [fmt(row["ood_accuracy"].sel(transform=t).values) for t in transforms]
        print(f"| {arm} | {angle} | {norm} | {dims} | " + " | ".join(ood) + " |")

    def diff(a: str, b: str, values: xr.DataArray) -> str:
        if a not in arms or b not in arms:
            return "—"
        return fmt(values.sel(arm=a).values - values.sel(arm=b).values)

    print("\nclaims as paired differences (percentage points, mean ± std over seeds)")
    print("| comparison | 0.25 ep | 1 ep | final | OOD mean |")
    print("|---|---|---|---|---|")
    ood_mean = ds["ood_accuracy"].mean("transform") if transforms else None
    for a, b in (("fa+noise", "fa"), ("fa+noise", "bp"), ("bp+noise", "bp"), ("fa+noise", "bp+noise"),
                 ("fa+noise", "fa+noise-norms"), ("fa+noise-norms", "fa"), ("fa+noise-no-labels", "fa"),
                 ("fa+fresh-noise", "fa")):
        cells = [diff(a, b, at_epoch(ds, 0.25)), diff(a, b, at_epoch(ds, 1.0)),
                 diff(a, b, ds["test_accuracy"].isel(step=-1)),
                 diff(a, b, ood_mean) if ood_mean is not None else "—"]
        print(f"| {a} − {b} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
