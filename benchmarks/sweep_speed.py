"""Wall time of a 16-point sweep on 2 local worker processes against the same sweep run serially, in one run.

    python benchmarks/sweep_speed.py [--epochs 20] [--seeds 4]
    python benchmarks/sweep_speed.py --epochs 1 --seeds 1      # smallest: 4 points (smoke test)

The points: the default digits simulation (fa and kp, ``--epochs`` epochs) over 4 learning rates x ``--seeds``
seeds. Both runs use single-threaded BLAS per point (what each worker gets); the parallel run includes starting the
workers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, not an installed one
from neurocircuit.sweep import load_sweep, run_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=4, help="seeds per learning rate")
    args = parser.parse_args()
    for name in ("epochs", "seeds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    sweep = load_sweep("default", [f"train.epochs={args.epochs}", 'arms=["fa","kp"]',
                                   "optimizer.lr=0.01,0.02,0.05,0.1", f"seed=0:{args.seeds}"])
    # one untimed point first: the process's one-off costs (data set, first torch calls) would fall on the serial run
    with tempfile.TemporaryDirectory() as out:
        run_sweep(load_sweep("default", ["train.epochs=1", 'arms=["fa"]', "seed=0:1"]), out, workers=1,
                  progress=False)
    times = {}
    for label, workers in (("serial", 1), ("2 workers", 2)):
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            ds = run_sweep(sweep, out, workers=workers, progress=False)
            times[label] = time.perf_counter() - t0
            if ds.attrs["failed_points"]:  # a failed point would time nothing
                sys.exit(f"sweep_speed: {ds.attrs['failed_points']} point(s) of the {label} sweep failed")
    print(f"{len(sweep.points())}-point sweep (digits, fa+kp, {args.epochs} epochs per point)")
    for label, seconds in times.items():
        print(f"{label:<10} {seconds:7.1f} s")
    print(f"speed-up   {times['serial'] / times['2 workers']:7.2f}x")


if __name__ == "__main__":
    main()
