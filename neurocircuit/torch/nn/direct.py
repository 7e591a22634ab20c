"""Direct feedback alignment (Nøkland 2016): every hidden layer receives the output error through its own matrix.

In circuit terms the output error population projects straight onto the error population below every hidden
layer. In a network: the error e = dL/dy_out at the output layer's output is captured during the backward pass
(a forward hook on that layer), and every other ``dfa`` layer sends ``e @ D`` down to its input instead of
``grad_out @ B``. D is a fixed random matrix of shape (e's size, the layer's input size), drawn like the
initial W of a layer from that input straight to the output, times ``gain``. What reaches the layer below then
passes through that layer's nonlinearity (and any normalisation) by ordinary autograd, so a hidden layer's
delta is (D e) * phi'(u) — Nøkland's rule. The output layer itself sends its error down through its own B,
which is what DFA and FA both do there. Through residual connections the injected signals add up as autograd
adds the gradients of a tensor with several consumers.

D depends on the input size, which a convolution only knows at its first call, so a layer keeps a seed (the
``direct_seed`` buffer, saved with the model) and draws D from it when it first needs it. D has (output size x
input size) entries: cheap for 10 classes, large for a 1000-class ImageNet network's early layers.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .feedback_rules import symmetric_uniform

# layers.py uses this module's autograd function, so a layer here is typed as the nn.Module it is (a FeedbackLayer);
# finding and wiring the dfa layers of a network is in wiring.py, above layers.py.

__all__ = ["DirectFeedbackHub", "direct_input", "direct_matrix", "direct_signal"]


class DirectFeedbackHub:
    """The output error of the current backward pass, shared by a network's ``dfa`` layers.

    It is also the forward hook on the output layer that captures that error (a callable object rather than a
    closure, so ``copy.deepcopy`` of a model copies hub, hook and layers consistently).
    """

    def __init__(self, output: nn.Module) -> None:
        self.output = output
        self.error: Tensor | None = None

    def __call__(self, module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> Tensor:
        return _CaptureError.apply(output, self) if output.requires_grad else output


class _CaptureError(torch.autograd.Function):
    @staticmethod
    def forward(ctx, out: Tensor, hub: DirectFeedbackHub) -> Tensor:  # noqa: ANN001
        ctx.hub = hub
        return out.view_as(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):  # noqa: ANN001, ANN205
        ctx.hub.error = grad_out.detach().reshape(grad_out.shape[0], -1)
        return grad_out, None


class _DirectInput(torch.autograd.Function):
    """Identity on the layer's output; in the backward the layer's input receives ``e @ D`` (not ``grad @ B``)."""

    @staticmethod
    def forward(ctx, out: Tensor, x: Tensor, layer: nn.Module) -> Tensor:  # noqa: ANN001
        ctx.layer, ctx.x_shape, ctx.x_dtype = layer, x.shape, x.dtype
        return out.view_as(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):  # noqa: ANN001, ANN205
        grad_x = None
        if ctx.needs_input_grad[1]:
            grad_x = direct_signal(ctx.layer, ctx.x_shape, grad_out.dtype).to(ctx.x_dtype)
        return grad_out, grad_x, None


def direct_input(out: Tensor, x: Tensor, layer: nn.Module) -> Tensor:
    """``out`` (the layer's output, computed from ``x`` detached) joined to ``x`` so that x's gradient is
    ``e @ D``."""
    return _DirectInput.apply(out, x, layer)


def direct_matrix(layer: nn.Module, n_out: int, input_shape: tuple[int, ...], *,
                  device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """The layer's direct feedback matrix D, of shape ``(n_out, prod(input_shape))`` (one input sample's shape).

    Drawn on the CPU in float64 from the layer's ``direct_seed`` as U(-g/sqrt(n_in), g/sqrt(n_in)) with g the
    rule's gain, then cached on ``device`` in ``dtype``: the same D on every device and after a resume.
    """
    seed = int(layer.direct_seed)
    n_in = math.prod(input_shape)
    device = torch.device("cpu") if device is None else device
    key = (seed, n_out, n_in, device, dtype)
    cached = getattr(layer, "_direct_cache", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    generator = torch.Generator().manual_seed(seed)
    d = symmetric_uniform((n_out, n_in), layer.rule.gain / math.sqrt(n_in), generator).to(device=device, dtype=dtype)
    layer._direct_cache = (key, d)
    return d


def direct_signal(layer: nn.Module, input_shape: tuple[int, ...] | torch.Size, dtype: torch.dtype) -> Tensor:
    """``e @ D`` shaped like the layer's input: what a hidden ``dfa`` layer sends down in this backward pass."""
    hub: DirectFeedbackHub | None = getattr(layer, "direct_hub", None)
    error = None if hub is None else hub.error
    if error is None:
        raise RuntimeError("a dfa layer's input gradient needs the output layer's error, which has not arrived in "
                           "this backward pass: the loss must depend on the output layer's output")
    if error.shape[0] != input_shape[0]:
        raise RuntimeError(f"dfa: the output error has batch size {error.shape[0]} but the layer's input has "
                           f"{input_shape[0]} (a dfa layer's input must be batch first)")
    d = direct_matrix(layer, error.shape[1], tuple(input_shape[1:]), device=error.device, dtype=dtype)
    return (error.to(dtype) @ d).reshape(input_shape)
