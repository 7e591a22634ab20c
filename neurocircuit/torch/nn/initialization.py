"""Initialisation schemes for a network's forward and feedback weights, beyond torch's layer defaults."""

from __future__ import annotations

import math

import torch
from torch import nn

from ...errors import ConfigError
from .feedback_rules import symmetric_uniform
from .layers import FeedbackLayer

__all__ = ["INIT_SCHEMES", "initialize"]

#: ``default``: torch's layer init for W and b, B drawn like W (U(+-gain / sqrt(fan_in))). ``xavier``: W and B
#: Xavier-uniform, U(+-sqrt(6 / (fan_in + fan_out))), biases 0 (BioTorch's benchmark protocol).
#: ``train.init`` names one.
INIT_SCHEMES = ("default", "xavier")


def _xavier_bound(weight: torch.Tensor) -> float:
    receptive = weight[0][0].numel() if weight.dim() > 2 else 1
    fan_in, fan_out = weight.shape[1] * receptive, weight.shape[0] * receptive
    return math.sqrt(6.0 / (fan_in + fan_out))


@torch.no_grad()
def initialize(model: nn.Module, scheme: str = "default", *, seed: int | None = None) -> nn.Module:
    """Re-initialise every feedback layer's W, b and stored B with ``scheme`` (in module order, drawn on the CPU
    from ``seed``; None: torch's global RNG). ``default`` leaves the model as built. B keeps its rule's sign
    structure where the rule derives B from W at every step (``bp``, ``usf``, ``brsf``) and ``dfa``'s direct matrices
    keep their own draw."""
    if scheme not in INIT_SCHEMES:
        raise ConfigError(f"unknown initialisation {scheme!r} (known: {', '.join(INIT_SCHEMES)})")
    if scheme == "default":
        return model
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    for module in model.modules():
        if not isinstance(module, FeedbackLayer):
            continue
        bound = _xavier_bound(module.weight)
        for tensor in (module.weight, module.feedback_weight):
            if tensor is not None:
                tensor.copy_(symmetric_uniform(tensor.shape, bound, generator))
        if module.bias is not None:
            module.bias.zero_()
    return model
