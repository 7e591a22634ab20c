"""Build a torch network from a :class:`~neurocircuit.circuit.Circuit` (the rate model's steady state)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ...circuit import Circuit, Projection
from .feedback_rules import get_rule
from .layers import FeedbackConv2d, FeedbackLinear
from .wiring import wire_direct_feedback

__all__ = ["ACTIVATION_FUNCTIONS", "CircuitNetwork", "network_from_circuit"]

#: torch functions for :data:`neurocircuit.circuit.ACTIVATIONS`.
ACTIVATION_FUNCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "identity": lambda u: u,
    "relu": F.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
    "leaky_relu": F.leaky_relu,
}


class CircuitNetwork(nn.Module):
    """The steady state of a circuit's rate dynamics, y_l = phi(W_l y_{l-1} + b_l), as a batched network.

    Each projection is a submodule named like the projection, so layer names in metrics and
    ``state_dict`` keys are the circuit's projection names. A population with ``batch_norm`` has its
    ``nn.BatchNorm1d`` (vector) or ``nn.BatchNorm2d`` (feature maps) in :attr:`batch_norm` under its name,
    applied after its activation: y_l = BN(phi(W_l y_{l-1} + b_l)).
    """

    def __init__(self, circuit: Circuit, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.circuit = circuit
        for proj in circuit.projections:
            self.add_module(proj.name, self._make_layer(circuit, proj, generator))
        self.batch_norm = nn.ModuleDict({
            pop.name: nn.BatchNorm1d(pop.size) if len(pop.shape) == 1 else nn.BatchNorm2d(pop.shape[0])
            for pop in circuit.populations if pop.batch_norm})
        wire_direct_feedback(self)  # dfa: the output population's error projects onto every hidden layer

    @staticmethod
    def _make_layer(circuit: Circuit, proj: Projection, generator: torch.Generator | None) -> nn.Module:
        src, tgt = circuit.population(proj.source), circuit.population(proj.target)
        if proj.kind == "maxpool2d":
            return nn.MaxPool2d(proj.kernel_size, proj.stride, proj.padding, proj.dilation)
        if proj.kind == "avgpool2d":
            return nn.AvgPool2d(proj.kernel_size, proj.stride, proj.padding)
        fb = circuit.feedback_for(proj.name)
        rule = get_rule(fb.rule, **dict(fb.options))
        if proj.kind == "dense":
            return FeedbackLinear(src.size, tgt.size, proj.bias, rule=rule, generator=generator)
        return FeedbackConv2d(src.shape[0], tgt.shape[0], proj.kernel_size, proj.stride, proj.padding,
                              proj.dilation, proj.groups, proj.bias, rule=rule, generator=generator)

    def populations(self, x: Tensor) -> dict[str, Tensor]:
        """Activity of every population for input ``x`` (batch first), input included."""
        circuit = self.circuit
        activity = {circuit.input.name: x}
        for proj in circuit.projections:
            layer = getattr(self, proj.name)
            if proj.kind == "dense" and x.dim() > 2:
                x = x.flatten(1)
            x = ACTIVATION_FUNCTIONS[circuit.population(proj.target).activation](layer(x))
            if proj.target in self.batch_norm:
                x = self.batch_norm[proj.target](x)
            activity[proj.target] = x
        return activity

    def forward(self, x: Tensor) -> Tensor:
        expected = self.circuit.input.shape
        if tuple(x.shape[1:]) != expected and x[0].numel() != self.circuit.input.size:
            raise ValueError(f"input of shape {tuple(x.shape)} does not fit circuit {self.circuit.name!r}, "
                             f"whose input population has shape {expected} (batch first)")
        if tuple(x.shape[1:]) != expected:
            x = x.reshape(x.shape[0], *expected)
        return self.populations(x)[self.circuit.output.name]


def network_from_circuit(circuit: Circuit, *, seed: int | None = None) -> CircuitNetwork:
    """A :class:`CircuitNetwork` for ``circuit``; ``seed`` fixes both W's init and B's draw.

    The seed is applied to a forked RNG, so torch's global random state is left untouched.
    """
    if seed is None:
        return CircuitNetwork(circuit)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CircuitNetwork(circuit, generator=torch.Generator().manual_seed(seed + 1))
