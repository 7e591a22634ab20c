"""The ``paired`` table: final test error per arm over seeds pooled across files, and paired differences to a
reference arm with their 95 % CI."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from ..book import paired_difference
from ..results import edge_with_data
from ..selection import ON_TEST, best_record
from .common import TableError, read_table_file

__all__ = ["SeedRun", "PairedDifference", "ArmRow", "PairedTable", "read_paired_runs", "paired_table",
           "render_paired"]


@dataclass(frozen=True)
class SeedRun:
    """One (arm, seed) of a results file: final test error (%), the test error (%) at the record chosen on
    validation (``best_on_test``: chosen on test, the run has no validation split), the largest layer angle at the
    end (NaN where none was recorded), whether every training loss after the first record was finite (None where
    no loss is recorded: a Brian2 circuit), and the seconds per step (NaN where none was recorded)."""

    error: float
    best: float
    best_on_test: bool
    angle: float
    finite: bool | None
    seconds: float


@dataclass(frozen=True)
class PairedDifference:
    """An arm minus the reference, seed by seed (percentage points): the seeds both share, the differences, their
    mean and sample sd (n - 1), and the 95 % confidence interval of the mean (Student t with n - 1 degrees of
    freedom; ``None`` with one seed)."""

    seeds: tuple[int, ...]
    values: tuple[float, ...]
    mean: float
    sd: float
    ci: tuple[float, float] | None


@dataclass(frozen=True)
class ArmRow:
    """One arm of a :class:`PairedTable`: its seeds, their runs (in seed order) and its paired difference from the
    reference (``None`` for the reference itself and for an arm that shares no seed with it)."""

    arm: str
    seeds: tuple[int, ...]
    runs: tuple[SeedRun, ...]
    difference: PairedDifference | None


@dataclass(frozen=True)
class PairedTable:
    """Every arm's row (in the order the files gave the arms) and the reference arm."""

    ref: str
    rows: tuple[ArmRow, ...]

    @property
    def on_test(self) -> list[str]:
        """``"ARM seed K"`` for every run whose best record was chosen on test."""
        return [f"{row.arm} seed {seed}" for row in self.rows for seed, run in zip(row.seeds, row.runs)
                if run.best_on_test]


_PAIRED_NEEDS = ("arm", "seed", "test_accuracy")


def read_paired_runs(files: Sequence[tuple[str | Path, str]]) -> dict[str, dict[int, SeedRun]]:
    """``{arm: {seed: SeedRun}}`` from every ``(file, tag)``; a non-empty tag labels that file's arms
    ``ARM@TAG``. An arm's seeds are pooled across files; an (arm, seed) without any test accuracy is not in that
    file. Raises :class:`TableError` for a missing or unreadable file, one that is not a results file, and the
    same (arm, seed) in two files."""
    arms: dict[str, dict[int, SeedRun]] = {}
    for path, tag in files:
        data = read_table_file(path, _PAIRED_NEEDS)
        if "sweep" in data.attrs:
            raise TableError(f"{path} is a sweep's results: its table is 'neurocircuit table sweep'")
        extra = [str(d) for d in data["test_accuracy"].dims if d not in ("arm", "seed", "step")]
        if extra:
            raise TableError(f"{path}: test_accuracy has dims beyond arm, seed and step ({', '.join(extra)}): not "
                             "the results of one 'neurocircuit run'")
        for label in data["arm"].values.tolist():
            arm = f"{label}@{tag}" if tag else label
            for seed in data["seed"].values.tolist():
                run = data.sel(arm=label, seed=seed)
                accuracy = run["test_accuracy"].dropna("step")
                if accuracy.size == 0:
                    continue
                if seed in arms.get(arm, {}):
                    raise TableError(f"{arm} seed {seed} is in more than one file (the second: {path})")
                angle = _final_angle(run)
                # the first record precedes any training; a Brian2 circuit records no loss
                loss = run["train_loss"].values[1:] if "train_loss" in run else None
                best = best_record(run.sel(step=accuracy["step"]), allow_test=True)
                arms.setdefault(arm, {})[seed] = SeedRun(
                    error=100 * (1 - accuracy.values[-1]), best=100 * (1 - best.test), best_on_test=best.on == "test",
                    angle=angle, finite=None if loss is None else bool(np.isfinite(loss).all()),
                    seconds=run["seconds_per_step"].item() if "seconds_per_step" in run else math.nan)
    return arms


def _final_angle(run: xr.Dataset) -> float:
    """The largest layer angle at the run's last weight record (along ``step``, or a Brian2 run's
    ``weight_time``); NaN where none was recorded."""
    if "weight_angle" not in run:
        return math.nan
    angle = run["weight_angle"]
    for time in ("step", "weight_time"):
        angle = edge_with_data(angle, time)[0] if time in angle.dims else angle
    return float(angle.max()) if bool(angle.notnull().any()) else math.nan


def paired_table(arms: Mapping[str, Mapping[int, SeedRun]], ref: str = "bp") -> PairedTable:
    """The table of ``arms`` (as :func:`read_paired_runs` returns them) with differences from ``ref``, paired by the
    seeds each arm shares with it. Raises :class:`TableError` if ``ref`` is not one of the arms."""
    if ref not in arms:
        raise TableError(f"no arm {ref!r} in these files (arms: {', '.join(arms)})")
    reference = arms[ref]
    rows = []
    for arm, runs in arms.items():
        seeds = tuple(sorted(runs))
        shared = tuple(s for s in seeds if s in reference)
        difference = None
        if arm != ref and shared:
            values = tuple(runs[s].error - reference[s].error for s in shared)
            mean, low, high, n = paired_difference([runs[s].error for s in shared],
                                                   [reference[s].error for s in shared])
            difference = PairedDifference(shared, values, statistics.fmean(values),
                                          statistics.stdev(values) if n > 1 else 0.0,
                                          (low, high) if n > 1 else None)
        rows.append(ArmRow(arm, seeds, tuple(runs[s] for s in seeds), difference))
    return PairedTable(ref, tuple(rows))


def _finite(runs: Sequence[SeedRun]) -> str:
    return "n/a" if any(r.finite is None for r in runs) else str(all(r.finite for r in runs))


def _mean_sd(values: Sequence[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {sd:.2f}"


def render_paired(table: PairedTable) -> str:
    """The paired table as aligned text: one line per arm, then the notes (selection on test, the interval)."""
    lines = [f"{'arm':<16} {'seeds':<12} {'final error %':>14} {'best-on-val %':>15} {'max angle':>10} "
             f"{'finite':>7} {'ms/step':>8}   - {table.ref} (paired, pp: mean ± sd, 95 % CI)"]
    for row in table.rows:
        diff = ""
        if row.difference is not None:
            d = row.difference
            ci = "n/a" if d.ci is None else f"[{d.ci[0]:+.2f}, {d.ci[1]:+.2f}]"
            diff = (f"{d.mean:.2f} ± {d.sd:.2f}, CI {ci} (" + ", ".join(f"{v:+.2f}" for v in d.values)
                    + f"; seeds {list(d.seeds)})")
        mark = "*" if any(r.best_on_test for r in row.runs) else " "
        lines.append(f"{row.arm:<16} {str(list(row.seeds)):<12} {_mean_sd([r.error for r in row.runs]):>14} "
                     f"{_mean_sd([r.best for r in row.runs]):>14}{mark} {max(r.angle for r in row.runs):>10.2f} "
                     f"{_finite(row.runs):>7} "
                     f"{1e3 * statistics.fmean(r.seconds for r in row.runs):>8.1f}   {diff}")
    if table.on_test:
        lines.append(f"* best record {ON_TEST}: {', '.join(table.on_test)}")
    if any(row.difference is not None for row in table.rows):
        lines.append(f"paired: arm - {table.ref} over the seeds both have; CI: 95 % confidence interval of the mean "
                     "difference (Student t, n - 1 degrees of freedom; n/a with one seed)")
    return "\n".join(lines)


