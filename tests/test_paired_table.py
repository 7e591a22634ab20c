"""benchmarks/paired_table.py: seeds pooled across files, differences paired by seed, bad input in one line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import xarray as xr

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "paired_table.py"


def _results(path: Path, arms: list[str], seeds: list[int], final: dict[tuple[str, int], float]) -> str:
    """A results file with three records per run; the last record's accuracy is ``final[arm, seed]``."""
    shape = (len(arms), len(seeds), 3)
    accuracy = np.full(shape, 0.5)
    for i, arm in enumerate(arms):
        for j, seed in enumerate(seeds):
            accuracy[i, j, 0], accuracy[i, j, 2] = 0.1, final[arm, seed]
    loss = np.ones(shape)
    loss[:, :, 0] = np.nan  # the record before any training
    xr.Dataset(
        {"test_accuracy": (("arm", "seed", "step"), accuracy), "train_loss": (("arm", "seed", "step"), loss),
         "weight_angle": (("arm", "seed", "step", "layer"), np.full(shape + (2,), 3.0)),
         "seconds_per_step": (("arm", "seed"), np.full(shape[:2], 0.02))},
        coords={"arm": arms, "seed": seeds, "step": [0, 10, 20], "layer": ["a", "b"]},
    ).to_netcdf(path)
    return str(path)


def _text(path: Path) -> str:
    path.write_text("not netCDF\n")
    return str(path)


def _other(path: Path) -> str:
    xr.Dataset({"x": ("a", np.arange(3))}).to_netcdf(path)
    return str(path)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False)


def test_seeds_pool_across_files_and_differences_pair_by_seed(tmp_path: Path) -> None:
    first = _results(tmp_path / "a.nc", ["bp", "wm"], [0, 1],
                     {("bp", 0): 0.90, ("bp", 1): 0.92, ("wm", 0): 0.89, ("wm", 1): 0.90})
    second = _results(tmp_path / "b.nc", ["bp", "wm"], [2], {("bp", 2): 0.91, ("wm", 2): 0.91})
    other = _results(tmp_path / "c.nc", ["wm"], [0], {("wm", 0): 0.88})
    done = _run(first, second, f"{other}@big")
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
    assert "[0, 1, 2]" in rows["bp"] and "9.00 ± 1.00" in rows["bp"]  # errors 10, 8, 9
    # wm errors 11, 10, 9: minus bp's 10, 8, 9 -> +1, +2, 0
    assert "10.00 ± 1.00" in rows["wm"] and "1.00 ± 1.00 (+1.00, +2.00, +0.00; seeds [0, 1, 2])" in rows["wm"]
    assert "+2.00; seeds [0])" in rows["wm@big"]  # 12 - 10
    assert re.search(r" 3\.00 +True +20\.0 ", rows["wm"]), rows["wm"]  # max angle, finite losses, ms per step


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    first = _results(tmp_path / "a.nc", ["bp"], [0], {("bp", 0): 0.9})
    for args, message in [([str(tmp_path / "none.nc")], "no results file"),
                          ([first, first], "bp seed 0 is in more than one file"),
                          ([first, "--ref", "kp"], "no arm 'kp'"),
                          ([_text(tmp_path / "text.nc")], "is not a netCDF results file"),
                          ([_other(tmp_path / "other.nc")], "is not a results file of neurocircuit run (no arm, seed")]:
        done = _run(*args)
        assert done.returncode == 2 and message in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
