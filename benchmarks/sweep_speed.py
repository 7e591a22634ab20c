"""Wall time of a 16-point sweep on 2 local worker processes against the same sweep run serially, in one run.

    python benchmarks/sweep_speed.py [--epochs 20]

The points: the default digits simulation (fa and kp, ``--epochs`` epochs) over 4 learning rates x 4 seeds. Both
runs use single-threaded BLAS per point (what each worker gets); the parallel run includes starting the workers.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from neurocircuit.sweep import load_sweep, run_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    sweep = load_sweep("default", [f"train.epochs={args.epochs}", 'rules=["fa","kp"]',
                                   "optimizer.lr=0.01,0.02,0.05,0.1", "seed=0:4"])
    times = {}
    for label, workers in (("serial", 1), ("2 workers", 2)):
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            ds = run_sweep(sweep, out, workers=workers, progress=False)
            times[label] = time.perf_counter() - t0
            assert ds.attrs["failed_points"] == 0
    print(f"{len(sweep.points())}-point sweep (digits, fa+kp, {args.epochs} epochs per point)")
    for label, seconds in times.items():
        print(f"{label:<10} {seconds:7.1f} s")
    print(f"speed-up   {times['serial'] / times['2 workers']:7.2f}x")


if __name__ == "__main__":
    main()
