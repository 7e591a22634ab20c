"""Exact properties of the backward pass through B."""

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from neurocircuit.nn import FeedbackConv2d, FeedbackLinear, convert

CONV_CASES = [
    dict(in_channels=4, out_channels=6, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=(2, 1), padding=(2, 1), dilation=(2, 1)),
    dict(in_channels=4, out_channels=6, kernel_size=3, groups=2, padding=1, bias=False),
    dict(in_channels=4, out_channels=4, kernel_size=3, groups=4, dilation=2),
    dict(in_channels=4, out_channels=6, kernel_size=4, padding="same", dilation=1),
    dict(in_channels=4, out_channels=6, kernel_size=3, padding=1, padding_mode="reflect"),
    dict(in_channels=4, out_channels=6, kernel_size=3, padding=2, padding_mode="circular", stride=2),
]


def _grads(layer, x, g):
    x = x.clone().requires_grad_(True)
    out = layer(x)
    out.backward(g)
    return out, x.grad, layer.weight.grad, None if layer.bias is None else layer.bias.grad


def _twin(plain, rule):
    """A copy of ``plain`` converted to ``rule`` (same forward weights)."""
    clone = nn.Sequential(copy.deepcopy(plain))
    convert(clone, rule, seed=1)
    return clone[0]


def test_bp_linear_equals_autograd_exactly():
    plain = nn.Linear(7, 5).double()
    bp = _twin(plain, "bp")
    x, g = torch.randn(3, 4, 7, dtype=torch.float64), torch.randn(3, 4, 5, dtype=torch.float64)
    for a, b in zip(_grads(plain, x, g), _grads(bp, x, g)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_bp_conv_equals_autograd_exactly(case):
    plain = nn.Conv2d(**case).double()
    bp = _twin(plain, "bp")
    x = torch.randn(2, 4, 11, 10, dtype=torch.float64)
    g = torch.randn_like(plain(x))
    for a, b in zip(_grads(plain, x, g), _grads(bp, x, g)):
        if a is None:
            assert b is None
        else:
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_fa_linear_sends_grad_through_B_and_keeps_local_weight_grad():
    plain = nn.Linear(7, 5).double()
    fa = _twin(plain, "fa")
    B = fa.feedback_weight
    assert B.shape == fa.weight.shape and not torch.equal(B, fa.weight)
    x, g = torch.randn(6, 7, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    _, gx_plain, gw_plain, gb_plain = _grads(plain, x, g)
    out, gx, gw, gb = _grads(fa, x, g)
    torch.testing.assert_close(out, plain(x), rtol=0, atol=0)
    torch.testing.assert_close(gx, g @ B, rtol=0, atol=0)
    torch.testing.assert_close(gw, g.t() @ x, rtol=0, atol=0)
    torch.testing.assert_close(gw, gw_plain, rtol=0, atol=0)
    torch.testing.assert_close(gb, gb_plain, rtol=0, atol=0)
    assert not torch.allclose(gx, gx_plain)


@pytest.mark.parametrize("case", CONV_CASES[:5], ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_fa_conv_input_grad_is_conv2d_input_with_B(case):
    plain = nn.Conv2d(**case).double()
    fa = _twin(plain, "fa")
    x = torch.randn(2, 4, 11, 10, dtype=torch.float64)
    g = torch.randn_like(plain(x))
    _, _, gw_plain, _ = _grads(plain, x, g)
    _, gx, gw, _ = _grads(fa, x, g)
    expected = torch.nn.grad.conv2d_input(x.shape, fa.feedback_weight, g, fa.stride, fa.padding, fa.dilation,
                                          fa.groups)
    torch.testing.assert_close(gx, expected, rtol=0, atol=0)
    torch.testing.assert_close(gw, gw_plain, rtol=0, atol=0)


def test_unbatched_conv_and_linear_inputs():
    conv = FeedbackConv2d(3, 5, 3, padding=1, rule="fa")
    assert conv(torch.randn(3, 8, 8)).shape == (5, 8, 8)
    lin = FeedbackLinear(4, 2, rule="fa")
    assert lin(torch.randn(4)).shape == (2,)


def test_feedback_shape_mismatch_is_an_error():
    from neurocircuit.nn import feedback_linear

    with pytest.raises(ValueError, match="feedback shape"):
        feedback_linear(torch.randn(2, 3), torch.randn(4, 3), None, torch.randn(3, 4))


@pytest.mark.parametrize("layer_fn", [lambda: FeedbackLinear(16, 8, rule="fa"),
                                      lambda: FeedbackConv2d(3, 8, 3, padding=1, rule="kp")])
def test_autocast_bf16_cpu(layer_fn):
    layer = layer_fn()
    x = torch.randn(4, 16) if isinstance(layer, nn.Linear) else torch.randn(2, 3, 8, 8)
    x.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
        assert out.dtype == torch.bfloat16
        loss = out.float().pow(2).mean()
    loss.backward()
    assert layer.weight.grad.dtype == torch.float32 and x.grad.dtype == torch.float32
    assert torch.isfinite(layer.weight.grad).all() and torch.isfinite(x.grad).all()
    # The bf16 input gradient goes through B: compare with the float32 computation.
    x32 = x.detach().clone().requires_grad_(True)
    layer.weight.grad = None
    layer(x32).pow(2).mean().backward()
    assert F.cosine_similarity(x.grad.flatten(), x32.grad.flatten(), dim=0) > 0.99
