"""The control arm for the weight mirror's gap to backprop: the same run with a perfect mirror.

    python benchmarks/perfect_mirror.py SIMULATION --out DIR [--only ARM] [--set key=value ...]

Runs ``neurocircuit run SIMULATION`` in this process with every mirror step replaced by an exact copy: each ``wm``
layer's B is set to W at the very steps (initial mirror phase, interleaved mirror steps) where the shipped schedule
forms its Hebbian estimate from noise. Same data order, initialisation, optimizer and schedule; B is W as of the
last mirror step — the lag of a mirror that replaces B at every step (``decay = 1``; with ``mirror_follows_lr`` the
real mirror averages more bursts as the learning rate falls, so late in training it lags more than this copy) — with
no estimation noise and no scale error. So wm − wm-perfect (paired by seed) is what the mirror's noisy estimate
costs, and wm-perfect − bp what feedback that old costs. The results file is the usual one; tag it when comparing, e.g.
``python benchmarks/paired_table.py RUNS/results.nc DIR/results.nc@perfect``.
Torch-backend simulations only: the Brian2 circuit's mirror is its own synapses, so another backend is refused.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import neurocircuit.train
import torch
from torch import nn

from neurocircuit.cli import main as cli_main
from neurocircuit.errors import NeurocircuitError
from neurocircuit.nn import mirror_layers
from neurocircuit.simulation import load_simulation
from neurocircuit.torch.nn.layers import FeedbackLayer


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
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if not args or args[0].startswith("-"):
        print("perfect_mirror: error: the first argument must be a simulation (name or .toml file); see --help",
              file=sys.stderr)
        return 2
    settings = [a.split("=", 1)[1] if a.startswith("--set=") else args[i + 1]
                for i, a in enumerate(args) if (a == "--set" and i + 1 < len(args)) or a.startswith("--set=")]
    try:
        backend = load_simulation(args[0], settings).backend
    except NeurocircuitError:
        backend = "torch"  # `neurocircuit run` below names the problem in its own one-line error
    if backend != "torch":
        # Only the torch trainer's mirror steps are replaced: elsewhere the real mirror would run under this name.
        print(f"perfect_mirror: error: backend {backend!r}: only the torch backend's mirror steps can be replaced",
              file=sys.stderr)
        return 2
    neurocircuit.train.mirror_step = copy_step  # the trainer's mirror phase and interleaved steps both call it
    return cli_main(["run", *args])


if __name__ == "__main__":
    sys.exit(main())
