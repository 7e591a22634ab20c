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
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .rules import symmetric_uniform

if TYPE_CHECKING:  # layers.py imports this module
    from .layers import FeedbackLayer

__all__ = ["DirectFeedbackHub", "direct_input", "direct_matrix", "direct_signal", "wire_direct_feedback",
           "direct_layers"]


class DirectFeedbackHub:
    """The output error of the current backward pass, shared by a network's ``dfa`` layers.

    It is also the forward hook on the output layer that captures that error (a callable object rather than a
    closure, so ``copy.deepcopy`` of a model copies hub, hook and layers consistently).
    """

    def __init__(self, output: FeedbackLayer) -> None:
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
    def forward(ctx, out: Tensor, x: Tensor, layer: FeedbackLayer) -> Tensor:  # noqa: ANN001
        ctx.layer, ctx.x_shape, ctx.x_dtype = layer, x.shape, x.dtype
        return out.view_as(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):  # noqa: ANN001, ANN205
        grad_x = None
        if ctx.needs_input_grad[1]:
            grad_x = direct_signal(ctx.layer, ctx.x_shape, grad_out.dtype).to(ctx.x_dtype)
        return grad_out, grad_x, None


def direct_input(out: Tensor, x: Tensor, layer: FeedbackLayer) -> Tensor:
    """``out`` (the layer's output, computed from ``x`` detached) joined to ``x`` so that x's gradient is
    ``e @ D``."""
    return _DirectInput.apply(out, x, layer)


def direct_matrix(layer: FeedbackLayer, n_out: int, input_shape: tuple[int, ...], *,
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


def direct_signal(layer: FeedbackLayer, input_shape: tuple[int, ...] | torch.Size, dtype: torch.dtype) -> Tensor:
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


def direct_layers(model: nn.Module) -> list[tuple[str, FeedbackLayer]]:
    """(name, layer) of the layers that send the output error down directly (``dfa`` below the output layer)."""
    from .layers import FeedbackLayer

    return [(n, m) for n, m in model.named_modules() if isinstance(m, FeedbackLayer) and m.sends_direct]


def wire_direct_feedback(model: nn.Module, output: str | None = None) -> DirectFeedbackHub | None:
    """Connect every ``dfa`` layer of ``model`` to its output layer; returns the hub (None: no ``dfa`` layer).

    :func:`~neurocircuit.nn.convert`, :func:`~neurocircuit.get_model` and circuit networks call this; call it
    yourself for a network built from :class:`FeedbackLinear` / :class:`FeedbackConv2d` by hand.

    Parameters
    ----------
    model
        The network.
    output
        Qualified name of the layer whose output error drives the others (default: the last feedback layer in
        module order, the classifier of torchvision's models and of circuit networks).
    """
    from .layers import FeedbackLayer

    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, FeedbackLayer)]
    if not any(m.rule.direct for _, m in layers):
        return None
    named = dict(layers)
    if output is not None and output not in named:
        raise ValueError(f"wire_direct_feedback: no feedback layer named {output!r} (layers: "
                         f"{', '.join(named)})")
    out_layer = named[output] if output is not None else layers[-1][1]
    hub = DirectFeedbackHub(out_layer)
    for _, m in layers:
        for key, hook in list(m._forward_hooks.items()):  # a previous wiring's hook: rewiring never stacks them
            if isinstance(hook, DirectFeedbackHub):
                del m._forward_hooks[key]
        m.direct_hub = hub if m.rule.direct or m is out_layer else None
    out_layer.register_forward_hook(hub)
    return hub
