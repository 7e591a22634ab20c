"""Which random-noise pretraining aligns which layers? Fixed vs fresh noise, shallow vs deep FA MLPs, three set-ups.

Cheon et al. describe fresh noise per batch; here (``simulations/noise_pretraining``) only a fixed, memorised noise set
aligns, and only the readout of a deeper MLP. Their lab's later code uses He initialisation for W and B and
ReLU -> BatchNorm hidden layers. This script runs the package's prenatal phase (``run_prenatal_phase``, the same code
as a simulation's ``kind = "prenatal"`` phase) on 784-h^depth-10 FA MLPs and prints the B-W angle of every layer
after the phase, per set-up, noise kind and seed::

    python benchmarks/noise_alignment_depth.py                   # depth 1 and 3, h = 256, 2 seeds (~10 min, 2 cores)
    python benchmarks/noise_alignment_depth.py --depths 1 3 5 --seeds 3

Set-ups: ``default`` (torch's default uniform init of W, B drawn the same way), ``he`` (He-normal W and B),
``he+bn`` (He-normal W and B, ReLU followed by BatchNorm1d).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
from torch import nn

from neurocircuit.phases import PrenatalPhase
from neurocircuit.torch.nn.layers import FeedbackLinear
from neurocircuit.torch.nn.metrics import weight_alignment
from neurocircuit.torch.phase_runners import run_prenatal_phase

SETUPS = ("default", "he", "he+bn")


def mlp(depth: int, hidden: int, setup: str, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    sizes = [784] + [hidden] * depth + [10]
    modules: list[nn.Module] = []
    for k in range(len(sizes) - 1):
        layer = FeedbackLinear(sizes[k], sizes[k + 1], rule="fa", generator=generator)
        if setup != "default":
            with torch.no_grad():
                std = math.sqrt(2.0 / sizes[k])
                layer.weight.normal_(0.0, std, generator=generator)
                layer.feedback_weight.normal_(0.0, std, generator=generator)
                layer.bias.zero_()
        modules.append(layer)
        if k < len(sizes) - 2:
            modules.append(nn.ReLU())
            if setup == "he+bn":
                modules.append(nn.BatchNorm1d(sizes[k + 1]))
    return nn.Sequential(nn.Flatten(), *modules)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--samples", type=int, default=192000)
    parser.add_argument("--lr", type=float, default=0.01)
    args = parser.parse_args()
    print(f"FA MLP 784-{args.hidden}^depth-10, prenatal phase of {args.samples} N(0,1) samples, batch 64, "
          f"SGD lr {args.lr}; B-W angle per layer after the phase (mean over {args.seeds} seeds, initial ~90)")
    print(f"{'depth':>5} {'set-up':>7} {'noise':>6}  angles W1..Wout (deg)")
    for depth in args.depths:
        for setup in SETUPS:
            for fresh in (False, True):
                angles = []
                for seed in range(args.seeds):
                    model = mlp(depth, args.hidden, setup, seed)
                    phase = PrenatalPhase(samples=args.samples, dataset_size=None if fresh else 6400,
                                          record_every=10**9)
                    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
                    run_prenatal_phase(model, phase, input_shape=(1, 28, 28), n_classes=10, optimizer=optimizer,
                                       generator=torch.Generator().manual_seed(100 + seed), progress=False)
                    angles.append(weight_alignment(model)["weight_angle"].values)
                mean = np.mean(angles, axis=0)
                print(f"{depth:>5} {setup:>7} {'fresh' if fresh else 'fixed':>6}  "
                      + " ".join(f"{a:5.1f}" for a in mean), flush=True)


if __name__ == "__main__":
    main()
