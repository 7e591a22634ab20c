"""How fresh must B be? LeNet-5 on Fashion-MNIST with feedback that is W itself, but k steps old.

The control behind the weight-mirror settings (issue: mirroring as a running estimate). An average over mirror
bursts trades noise for lag: B then follows W a few steps late. This measures what lag alone costs, with no
noise at all: every k training steps B is set to an exact copy of W (k = 1 is backprop), next to fa and to three
ways of mirroring every 2 steps: sparse spontaneous activity (each step refreshes only the ~64 active inputs'
columns of B, so the others are several steps old), the same averaged over bursts (decay < 1: more lag), and dense
activity (every column fresh; the shipped LeNet setting), whose estimate is noisier. Same data order, init and
optimizer (SGD momentum 0.9, weight decay 5e-3, constant lr) for every arm; test accuracy after ``--steps``, mean
± sd over seeds; "collapsed" counts runs whose loss went NaN or whose test accuracy fell to chance.

    python benchmarks/feedback_lag.py                  # lr 0.02, 1000 steps, 3 seeds (~12 min on 2 cores)
    python benchmarks/feedback_lag.py --lr 0.005
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from torch.nn import functional as F

import neurocircuit as nc
from neurocircuit.data import load_dataset
from neurocircuit.nn import mirror_layers, mirror_step, weight_alignment
from neurocircuit.phases import MirrorSettings


def run(arm: dict, seed: int, data: tuple, args: argparse.Namespace) -> tuple[float, float, bool]:
    """(test accuracy, final max B-W angle, collapsed) of one arm and seed."""
    (x, y), (xt, yt) = data
    torch.manual_seed(seed)
    rule = arm.get("rule", "wm")
    model = nc.build_network("lenet5", rule=rule, seed=seed)
    layers = mirror_layers(model)
    generator = torch.Generator().manual_seed(seed)
    if "copy_every" in arm:  # exact copies from the start
        with torch.no_grad():
            for _, layer in layers:
                layer.feedback_weight.copy_(layer.weight)
    elif layers:  # every wm arm starts from the same initial mirror phase
        start = MirrorSettings(learning_rate=0.5, decay=0.5, batch_size=256, active_units=64)
        for _ in range(300):
            mirror_step(model, start, generator=generator, layers=layers)
    mirror = MirrorSettings(**arm["mirror"]) if "mirror" in arm else None
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-3)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1000 + seed))
    for step in range(1, args.steps + 1):
        start_index = (step - 1) * args.batch_size % (len(x) - args.batch_size)
        idx = order[start_index:start_index + args.batch_size]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        if not math.isfinite(loss.item()):
            return 0.1, math.nan, True
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if "copy_every" in arm and step % arm["copy_every"] == 0:
            with torch.no_grad():
                for _, layer in layers:
                    layer.feedback_weight.copy_(layer.weight)
        elif mirror is not None and step % arm["every"] == 0:
            mirror_step(model, mirror, generator=generator, layers=layers)
    with torch.no_grad():
        accuracy = (model(xt).argmax(1) == yt).double().mean().item()
    angle = float(np.nanmax(weight_alignment(model)["weight_angle"].values))
    return accuracy, angle, accuracy < 0.15


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", help="comma-separated arm numbers (1-based) to run, e.g. 1,7")
    args = parser.parse_args()
    torch.set_num_threads(2)
    train, test, _ = load_dataset("fashion_mnist", pad=2)
    data = (train.tensors, test.tensors)
    sparse = dict(learning_rate=1.0, decay=1.0, batch_size=256, active_units=64)
    dense = dict(learning_rate=1.0, decay=1.0, batch_size=1024)
    arms = {
        "bp": {"rule": "bp"},
        "W copied every 2 steps": {"copy_every": 2},
        "W copied every 4 steps": {"copy_every": 4},
        "W copied every 10 steps": {"copy_every": 10},
        "wm: sparse burst every 2 (64 active inputs)": {"mirror": sparse, "every": 2},
        "wm: sparse, running average (decay 0.2)": {"mirror": {**sparse, "learning_rate": 0.2, "decay": 0.2},
                                                    "every": 2},
        "wm: dense burst every 2 (shipped)": {"mirror": dense, "every": 2},
        "fa": {"rule": "fa"},
    }
    print(f"LeNet-5, Fashion-MNIST, SGD lr {args.lr} momentum 0.9, {args.steps} steps of {args.batch_size}, "
          f"{args.seeds} seeds")
    print(f"{'arm':<42} {'test accuracy (%)':>18} {'max angle (deg)':>16} {'collapsed':>10}")
    began = time.perf_counter()
    chosen = {int(k) for k in args.only.split(",")} if args.only else set(range(1, len(arms) + 1))
    for number, (label, arm) in enumerate(arms.items(), 1):
        if number not in chosen:
            continue
        runs = [run(arm, seed, data, args) for seed in range(args.seeds)]
        acc = 100 * np.array([r[0] for r in runs])
        angles = np.array([r[1] for r in runs])
        print(f"{label:<42} {acc.mean():>9.2f} ± {acc.std(ddof=1) if len(acc) > 1 else 0:>5.2f} "
              f"{np.nanmean(angles) if np.isfinite(angles).any() else math.nan:>16.1f} "
              f"{sum(r[2] for r in runs):>6d}/{len(runs)}", flush=True)
    print(f"({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
