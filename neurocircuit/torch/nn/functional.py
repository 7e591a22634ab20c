"""Pure functions: forward through W, error down through B.

``feedback_linear`` and ``feedback_conv2d`` compute exactly what ``F.linear`` / ``F.conv2d`` compute in the
forward pass. In the backward pass the input gradient is formed with the feedback matrix ``feedback``
(layout of W) instead of ``weight``, while the weight and bias gradients are the ordinary local ones
(delta * y^T, or its convolutional correlation). The backward costs what backprop's costs: the same
kernels, only fed B instead of W.

Under autocast the inputs are cast to the autocast dtype once, in the forward, and saved in that dtype (as
autocast does for the native ops), so the backward runs the same low-precision kernels as backprop's
and returns each gradient in the dtype of its input.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["feedback_linear", "feedback_conv2d"]

# The resolved overload: calling it skips the per-call overload lookup of ``torch.ops.aten.<name>``.
_convolution_backward = torch.ops.aten.convolution_backward.default


def _autocast(x: Tensor, weight: Tensor, bias: Tensor | None, feedback: Tensor
              ) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    """Cast the operands to the active autocast dtype of x's device (unchanged when autocast is off)."""
    device = x.device.type
    if not torch.is_autocast_enabled(device):
        return x, weight, bias, feedback
    dtype = torch.get_autocast_dtype(device)
    # (Dynamo cannot trace data pointers; compiled graphs cast B themselves.)
    same = (not torch.compiler.is_compiling() and feedback.data_ptr() == weight.data_ptr()
            and feedback.stride() == weight.stride())
    weight = weight.to(dtype)
    # Under bp, B is W itself: cast it once.
    feedback = weight if same else feedback.to(dtype)
    return x.to(dtype), weight, None if bias is None else bias.to(dtype), feedback


class _FeedbackLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, feedback: Tensor) -> Tensor:  # noqa: ANN001
        ctx.dtypes = (x.dtype, weight.dtype, bias.dtype if bias is not None else None)
        x, weight, bias, feedback = _autocast(x, weight, bias, feedback)
        out = torch.nn.functional.linear(x, weight, bias)
        ctx.save_for_backward(x, feedback)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):  # noqa: ANN001, ANN205
        x, feedback = ctx.saved_tensors
        dt = grad_out.dtype
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad_out @ feedback.to(dt)).to(ctx.dtypes[0])
        if ctx.needs_input_grad[1]:
            g2 = grad_out.reshape(-1, grad_out.shape[-1])
            grad_w = (g2.t() @ x.reshape(-1, x.shape[-1]).to(dt)).to(ctx.dtypes[1])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.reshape(-1, grad_out.shape[-1]).sum(0).to(ctx.dtypes[2])
        return grad_x, grad_w, grad_b, None


class _FeedbackConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, feedback: Tensor,  # noqa: ANN001
                stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int],
                groups: int) -> Tensor:
        ctx.dtypes = (x.dtype, weight.dtype, bias.dtype if bias is not None else None)
        x, weight, bias, feedback = _autocast(x, weight, bias, feedback)
        out = torch.nn.functional.conv2d(x, weight, bias, stride, padding, dilation, groups)
        ctx.save_for_backward(x, feedback)
        ctx.conv = (list(stride), list(padding), list(dilation), groups)
        ctx.weight_shape = weight.shape
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):  # noqa: ANN001, ANN205
        x, feedback = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv
        dt = grad_out.dtype
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
        # One fused call, as autograd makes for backprop; ``feedback`` stands where W would. The weight
        # gradient depends only on x and grad_out, never on the weight values.
        grad_x, grad_w, grad_b = _convolution_backward(
            grad_out, x.to(dt), feedback.to(dt), [ctx.weight_shape[0]] if ctx.has_bias else None,
            stride, padding, dilation, False, [0, 0], groups, mask,
        )
        grad_x = grad_x.to(ctx.dtypes[0]) if mask[0] else None
        grad_w = grad_w.to(ctx.dtypes[1]) if mask[1] else None
        grad_b = grad_b.to(ctx.dtypes[2]) if mask[2] else None
        return grad_x, grad_w, grad_b, None, None, None, None, None


def feedback_linear(x: Tensor, weight: Tensor, bias: Tensor | None, feedback: Tensor) -> Tensor:
    """``F.linear(x, weight, bias)`` whose input gradient is ``grad_out @ feedback``.

    Parameters
    ----------
    x
        Input of shape ``(..., in_features)``.
    weight, feedback
        Forward and feedback matrices, both ``(out_features, in_features)``.
    bias
        Optional ``(out_features,)``.
    """
    if feedback.shape != weight.shape:
        raise ValueError(f"feedback shape {tuple(feedback.shape)} differs from weight shape {tuple(weight.shape)}")
    return _FeedbackLinear.apply(x, weight, bias, feedback.detach())


def feedback_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, feedback: Tensor,
                    stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0),
                    dilation: tuple[int, int] = (1, 1), groups: int = 1) -> Tensor:
    """``F.conv2d`` whose input gradient is the transposed convolution of the error with ``feedback``.

    ``padding`` must be numeric (callers pad explicitly for string padding or non-zero padding modes).
    """
    if feedback.shape != weight.shape:
        raise ValueError(f"feedback shape {tuple(feedback.shape)} differs from weight shape {tuple(weight.shape)}")
    return _FeedbackConv2d.apply(x, weight, bias, feedback.detach(), tuple(stride), tuple(padding),
                                 tuple(dilation), groups)
