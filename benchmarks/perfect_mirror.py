"""The control arm for the weight mirror's gap to backprop: the same run with a perfect mirror.

    python benchmarks/perfect_mirror.py SIMULATION --out DIR [--only ARM] [--set key=value ...]

Runs ``neurocircuit run SIMULATION`` in this process with every mirror step replaced by an exact copy: each ``wm``
layer's B is set to W at the very steps (initial mirror phase, interleaved mirror steps) where the shipped schedule
forms its Hebbian estimate from noise. Same data order, initialisation, optimizer and schedule; B lags W exactly as
much as the real mirror's B does (it is W as of the last mirror step) but carries no estimation noise and no scale
error. So the difference wm − wm-perfect (paired by seed) is what the mirror's noisy estimate costs, and
wm-perfect − bp what the lag costs. The results file is the usual one; tag it when comparing, e.g.
``python benchmarks/paired_table.py RUNS/results.nc DIR/results.nc@perfect``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import torch
from torch import nn

import neurocircuit.train
from neurocircuit.cli import main as cli_main
from neurocircuit.nn import mirror_layers
from neurocircuit.nn.layers import FeedbackLayer


@torch.no_grad()
def copy_step(model: nn.Module, settings: object = None, *, layers: list[tuple[str, FeedbackLayer]] | None = None,
              **_: object) -> int:
    """``mirror_step``'s signature; sets every mirrored layer's B to W exactly and returns how many it set."""
    layers = mirror_layers(model) if layers is None else layers
    for _, layer in layers:
        layer.feedback_weight.copy_(layer.weight)
    return len(layers)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    neurocircuit.train.mirror_step = copy_step  # the trainer's mirror phase and interleaved steps both call it
    return cli_main(["run", *args])


if __name__ == "__main__":
    sys.exit(main())
