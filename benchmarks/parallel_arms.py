"""Run every (arm, seed) of a simulation as its own process, in parallel, then merge and summarise.

    python benchmarks/parallel_arms.py SIMULATION --out DIR [--jobs N] [--only ARM ...] [--set key=value ...]

Each process is ``neurocircuit run SIMULATION --only ARM --set seeds=[SEED]`` with one BLAS thread; the merged
``DIR/results.nc`` has the same layout as a single run's. Meant for machines with many cores (or one GPU
shared by many small runs, ``--set torch.device=cuda``). After an interrupted run, ``--merge-only`` (same
arguments) merges the runs that finished, and the summary names the ones missing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import xarray as xr

from neurocircuit.errors import NeurocircuitError
from neurocircuit.results import write_netcdf
from neurocircuit.simulation import load_simulation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("simulation")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    parser.add_argument("--set", dest="settings", action="append", default=[])
    parser.add_argument("--merge-only", action="store_true", help="run nothing: merge the finished runs in DIR")
    parser.add_argument("--only", action="append", default=[], metavar="ARM",
                        help="run (or merge) only this arm (repeatable)")
    args = parser.parse_args()
    try:
        sim = load_simulation(args.simulation, args.settings)
    except NeurocircuitError as exc:
        print(f"parallel_arms: error: {exc}", file=sys.stderr)
        sys.exit(2)
    labels = [spec.label for spec in sim.arms]
    unknown = [label for label in args.only if label not in labels]
    if unknown:
        print(f"parallel_arms: error: --only {unknown[0]!r}: no such arm in {sim.name} (arms: {', '.join(labels)})",
              file=sys.stderr)
        sys.exit(2)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    jobs = [(label, seed) for label in labels if not args.only or label in args.only for seed in sim.seeds]

    def run(job: tuple[str, int]) -> tuple[str, int, int, str]:
        label, seed = job
        out = args.out / "parts" / f"{label}_seed{seed}"
        cmd = [sys.executable, "-m", "neurocircuit", "run", args.simulation, "--only", label, "--out", str(out),
               "--no-figures", "--quiet"]
        for item in args.settings:
            cmd += ["--set", item]
        cmd += ["--set", f"seeds=[{seed}]"]  # last: a `--set seeds=[...]` above chose the jobs, this one runs one
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        return label, seed, proc.returncode, proc.stderr[-2000:]

    failed = []
    if not args.merge_only:
        with ThreadPoolExecutor(args.jobs) as pool:
            outcomes = list(pool.map(run, jobs))
        failed = [o for o in outcomes if o[2] != 0]
        for label, seed, _, err in failed:
            print(f"{label} seed {seed} failed:\n{err}", file=sys.stderr)
    parts, missing = [], []
    for label, seed in jobs:
        path = args.out / "parts" / f"{label}_seed{seed}" / "results.nc"
        if path.exists():
            with xr.open_dataset(path) as ds:
                parts.append(ds.load())
        else:
            missing.append(f"{label} seed {seed}")
    if not parts:
        print(f"parallel_arms: error: no finished run in {args.out / 'parts'}", file=sys.stderr)
        sys.exit(2)
    merged = xr.merge(parts, compat="no_conflicts", join="outer", combine_attrs="drop_conflicts")
    merged = merged.reindex(arm=[label for label in dict.fromkeys(j[0] for j in jobs) if label in merged["arm"]])
    write_netcdf(merged, args.out / "results.nc")
    last = merged.isel(step=-1)
    print(f"{sim.name}: {sim.model}, {sim.train.epochs} epochs, seeds {list(sim.seeds)}"
          + (f"; not finished: {', '.join(missing)}" if missing else ""))
    print(f"{'arm':<12} {'test error (%)':>16} {'max layer angle (deg)':>22} {'ms/step':>8}")
    for rule in merged["arm"].values:
        r = last.sel(arm=rule)
        err = 100 * (1 - r["test_accuracy"])
        angle = r["weight_angle"].max("layer")
        print(f"{rule!s:<12} {float(err.mean()):8.2f} ± {float(err.std()):4.2f} {float(angle.mean()):13.2f} ± "
              f"{float(angle.std()):4.2f} {1e3 * float(r['seconds_per_step'].mean()):8.2f}")
    sys.exit(1 if failed or missing else 0)


if __name__ == "__main__":
    main()
