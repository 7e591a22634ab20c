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
#: Xavier-uniform, U(+-sqrt(6 / (fan_in + fan_out))), biases 0 (BioTorch's benchmark protocol). ``he``: W and B
#: He-normal, N(0, 2 / fan_in), biases 0 (the set-up of Cheon et al.'s later code for prenatal noise).
#: ``train.init`` names one.
INIT_SCHEMES = ("default", "xavier", "he")


def _fans(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a dense (out x in) or convolution (out x in/groups x kh x kw) weight."""
    receptive = weight[0][0].numel() if weight.dim() > 2 else 1
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def _draw(scheme: str, weight: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One tensor of W's shape drawn by ``scheme``, in float64 on the CPU: a seeded generator gives the same values on
    every device (as every random B of the package)."""
    fan_in, fan_out = _fans(weight)
    if scheme == "xavier":
        return symmetric_uniform(weight.shape, math.sqrt(6.0 / (fan_in + fan_out)), generator)
    return torch.randn(weight.shape, generator=generator, dtype=torch.float64) * math.sqrt(2.0 / fan_in)


@torch.no_grad()
def initialize(model: nn.Module, scheme: str = "default", *, seed: int | None = None) -> nn.Module:
    """Re-initialise every feedback layer's W, b and stored B with ``scheme`` (in module order, W then B, drawn on the
    CPU from ``seed``; None: torch's global RNG). ``default`` leaves the model as built. B is a draw independent of
    W's; it keeps its rule's structure where the rule derives B from W at every step (``bp``, ``usf``, ``brsf``: no
    stored B to draw) and ``dfa``'s direct matrices keep their own draw.

    Dense and convolution layers alike, in circuits and converted torchvision models (fan_in of a convolution:
    input channels per group x kernel height x kernel width). ``he`` is fan-in mode on every layer, also where
    torchvision's own init of a ResNet uses fan-out.
    """
    if scheme not in INIT_SCHEMES:
        raise ConfigError(f"unknown initialisation {scheme!r} (known: {', '.join(INIT_SCHEMES)})")
    if scheme == "default":
        return model
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    for module in model.modules():
        if not isinstance(module, FeedbackLayer):
            continue
        for tensor in (module.weight, module.feedback_weight):
            if tensor is not None:
                tensor.copy_(_draw(scheme, tensor, generator))
        if module.bias is not None:
            module.bias.zero_()
    return model
