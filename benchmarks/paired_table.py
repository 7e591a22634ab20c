"""Final test error per arm over seeds from any number of results files, and each arm's difference from a reference
arm paired by seed.

    python benchmarks/paired_table.py RUN1/results.nc RUN2/results.nc ... [--ref bp]
    python benchmarks/paired_table.py A/results.nc B/results.nc@b4096   # B's arms as wm@b4096, ...

Files may hold different arms and different seeds of the same arm (e.g. seeds 0-2 from one run, 3-4 from another):
an arm's seeds are pooled across files; the same (arm, seed) twice is an error. ``FILE@TAG`` labels that file's
arms ``ARM@TAG`` (runs of one arm under other settings). Per arm: final test error (%) mean
± sd over seeds, the test error of the best record chosen on the validation set (``val_accuracy``; BioTorch
reports a best epoch, chosen on test; a run without a validation split is chosen on test and its cell is marked
``*`` with a note below the table), the largest layer angle between B and W
at the end, whether any record's training loss was not finite, and seconds per step; then, for every seed the arm
shares with the reference, arm − reference in pp, with its mean ± sd. The sd is the sample sd (n - 1).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, not an installed one
from neurocircuit.selection import ON_TEST, best_record  # noqa: E402


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {sd:.2f}"


def collect(files: list[tuple[Path, str]]) -> dict[str, dict[int, dict[str, float]]]:
    """{arm: {seed: {"error", "best", "angle", "finite", "seconds"}}} from every (file, tag)."""
    arms: dict[str, dict[int, dict[str, float]]] = {}
    for path, tag in files:
        try:
            data = xr.open_dataset(path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path} is not a netCDF results file ({type(exc).__name__})") from exc
        missing = [v for v in ("arm", "seed", "test_accuracy", "train_loss") if v not in data.variables]
        if missing:
            data.close()
            raise ValueError(f"{path} is not a results file of neurocircuit run (no {', '.join(missing)})")
        with data:
            for label in data["arm"].values.tolist():
                arm = f"{label}@{tag}" if tag else label
                for seed in data["seed"].values.tolist():
                    run = data.sel(arm=label, seed=seed)
                    accuracy = run["test_accuracy"].dropna("step")
                    if accuracy.size == 0:
                        continue  # this (arm, seed) is not in this file
                    if seed in arms.get(arm, {}):
                        raise ValueError(f"{arm} seed {seed} is in more than one file (the second: {path})")
                    angle = run["weight_angle"].isel(step=-1).max().item() if "weight_angle" in run else math.nan
                    loss = run["train_loss"].values[1:]  # the first record precedes any training
                    best = best_record(run.sel(step=accuracy["step"]), allow_test=True)
                    arms.setdefault(arm, {})[seed] = {
                        "error": 100 * (1 - accuracy.values[-1]), "best": 100 * (1 - best.test),
                        "best_on_test": best.on == "test",
                        "angle": angle, "finite": bool(np.isfinite(loss).all()),
                        "seconds": run["seconds_per_step"].item() if "seconds_per_step" in run else math.nan}
    return arms


def fail(message: str) -> None:
    """Bad input: one line on stderr, exit code 2."""
    print(f"paired_table.py: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", metavar="FILE[@TAG]")
    parser.add_argument("--ref", default="bp", help="the arm the differences are taken from")
    args = parser.parse_args()
    files = []
    for spec in args.files:
        path, _, tag = spec.partition("@")
        if not Path(path).is_file():
            fail(f"no results file {path!r}")
        files.append((Path(path), tag))
    try:
        arms = collect(files)
    except (ValueError, KeyError, OSError) as exc:
        fail(f"{exc}")
    if args.ref not in arms:
        fail(f"no arm {args.ref!r} in these files (arms: {', '.join(arms)})")
    ref = arms[args.ref]
    print(f"{'arm':<16} {'seeds':<12} {'final error %':>14} {'best-on-val %':>15} {'max angle':>10} {'finite':>7} "
          f"{'ms/step':>8}   {'- ' + args.ref + ' (paired, pp)'}")
    for arm, runs in arms.items():
        seeds = sorted(runs)
        rows = [runs[s] for s in seeds]
        shared = [s for s in seeds if s in ref]
        paired = [runs[s]["error"] - ref[s]["error"] for s in shared]
        diff = "" if arm == args.ref or not paired else (
            _mean_sd(paired) + " (" + ", ".join(f"{d:+.2f}" for d in paired) + f"; seeds {shared})")
        mark = "*" if any(r["best_on_test"] for r in rows) else " "
        print(f"{arm:<16} {str(seeds):<12} {_mean_sd([r['error'] for r in rows]):>14} "
              f"{_mean_sd([r['best'] for r in rows]):>14}{mark} {max(r['angle'] for r in rows):>10.2f} "
              f"{str(all(r['finite'] for r in rows)):>7} {1e3 * statistics.fmean(r['seconds'] for r in rows):>8.1f}"
              f"   {diff}")
    on_test = [f"{arm} seed {seed}" for arm, runs in arms.items() for seed, r in sorted(runs.items())
               if r["best_on_test"]]
    if on_test:
        print(f"* best record {ON_TEST}: {', '.join(on_test)}")


if __name__ == "__main__":
    main()
