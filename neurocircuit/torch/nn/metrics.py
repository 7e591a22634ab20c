"""Alignment between feedback B and forward W, as ``xarray.Dataset`` s with a ``layer`` dimension."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn
from torch.nn import functional as F

from .direct import direct_signal
from .feedback_rules import Backprop
from .layers import FeedbackLayer

__all__ = ["angle_degrees", "feedback_layers", "participation_ratio", "weight_alignment", "gradient_alignment",
           "update_alignment", "effective_dimensionality", "alignment"]


def angle_degrees(a: Tensor, b: Tensor) -> float:
    """Angle between two tensors seen as flat vectors, in degrees (computed in float64)."""
    a = a.detach().reshape(-1).double()
    b = b.detach().reshape(-1).double()
    denom = a.norm() * b.norm()
    if denom == 0:
        return math.nan
    cos = torch.clamp(a @ b / denom, -1.0, 1.0)
    return math.degrees(math.acos(cos.item()))


def participation_ratio(weight: Tensor) -> float:
    """Effective dimensionality of a weight matrix: (sum s_i^2)^2 / sum s_i^4 over its singular values s_i.

    Convolution kernels are read as (out, in * kh * kw) matrices. 1 for a rank-one W, min(shape) for a W
    whose singular values are all equal.
    """
    w = weight.detach().reshape(weight.shape[0], -1).double()
    # sum s^2 = ||W||_F^2 and sum s^4 = ||W W^T||_F^2: one Gram matrix of the smaller side instead of an SVD.
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    total = torch.trace(gram)
    return (total * total / gram.pow(2).sum()).item() if total > 0 else math.nan


def feedback_layers(model: nn.Module) -> list[tuple[str, FeedbackLayer]]:
    """(qualified name, layer) of every feedback layer in ``model``, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, FeedbackLayer)]


def _layer_coords(layers: list[tuple[str, FeedbackLayer]]) -> dict[str, tuple[str, list[str], dict[str, str]]]:
    return {"layer": ("layer", [n for n, _ in layers],
                      {"long_name": "layer (projection of the circuit)", "units": "1"}),
            "layer_rule": ("layer", [m.rule.name for _, m in layers],
                           {"long_name": "feedback rule of the layer", "units": "1"})}


@torch.no_grad()
def weight_alignment(model: nn.Module) -> xr.Dataset:
    """Angle between B and W (i.e. between the paper's B and W^T), the norm ratio ||B|| / ||W|| and ||W|| (Frobenius),
    per layer.

    A hidden ``dfa`` layer has no B of W's shape (its feedback comes from the output): its angle and ratio are NaN;
    :func:`gradient_alignment` and :func:`update_alignment` measure its alignment.
    """
    layers = feedback_layers(model)
    angles, ratios, norms = [], [], []
    for _, m in layers:
        w = m.weight
        norms.append(w.double().norm().item())
        if m.sends_direct:
            angles.append(math.nan)
            ratios.append(math.nan)
            continue
        b = m.current_feedback()
        angles.append(angle_degrees(b, w))
        ratios.append(b.double().norm().item() / norms[-1] if norms[-1] > 0 else math.nan)
    return xr.Dataset(
        {
            "weight_angle": ("layer", np.array(angles), {"units": "degree", "long_name": "angle between B and W^T"}),
            "norm_ratio": ("layer", np.array(ratios), {"units": "1", "long_name": "||B|| / ||W||"}),
            "weight_norm": ("layer", np.array(norms), {"units": "1", "long_name": "||W|| (Frobenius)"}),
        },
        coords=_layer_coords(layers),
    )


@torch.no_grad()
def effective_dimensionality(model: nn.Module) -> xr.Dataset:
    """:func:`participation_ratio` of every feedback layer's W (Cheon et al.'s effective dimensionality)."""
    layers = feedback_layers(model)
    return xr.Dataset(
        {"effective_dim": ("layer", np.array([participation_ratio(m.weight) for _, m in layers]),
                           {"units": "1", "long_name": "participation ratio of W's singular values"})},
        coords=_layer_coords(layers),
    )


def gradient_alignment(model: nn.Module, inputs: Tensor, targets: Tensor,
                       loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy) -> xr.Dataset:
    """Angle between the error each layer sends down through B and the one W^T would send, on one batch.

    Both are formed from the same error arriving at the layer's output (the one the rule really
    produced); a hidden ``dfa`` layer's error sent down is the output error through its direct matrix. The model
    runs in eval mode here, so BatchNorm statistics are not changed; parameter ``.grad`` fields are not touched.
    """
    layers = feedback_layers(model)
    seen: dict[int, tuple[Tensor, Tensor]] = {}

    def remember(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
        seen[id(module)] = (args[0].detach(), output)

    handles = [m.register_forward_hook(remember) for _, m in layers]
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            loss = loss_fn(model(inputs), targets)
            used = [m for _, m in layers if id(m) in seen]
            grads = torch.autograd.grad(loss, [seen[id(m)][1] for m in used], allow_unused=True)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    grad_of = {id(m): g for m, g in zip(used, grads)}
    angles = []
    for _, m in layers:
        g = grad_of.get(id(m))
        if g is None:
            angles.append(math.nan)
            continue
        x = seen[id(m)][0]
        through_w = _input_grad(m, x, g, m.weight.detach())
        sent = (direct_signal(m, x.shape, through_w.dtype) if m.sends_direct
                else _input_grad(m, x, g, m.current_feedback()))
        angles.append(angle_degrees(sent, through_w))
    return xr.Dataset(
        {"gradient_angle": ("layer", np.array(angles),
                            {"units": "degree", "long_name": "angle between error sent through B and through W^T"})},
        coords=_layer_coords(layers),
    )


def update_alignment(model: nn.Module, inputs: Tensor, targets: Tensor,
                     loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy) -> xr.Dataset:
    """Angle between each layer's weight update under its rule and under backprop, on one batch.

    The rule's gradient of W against the true gradient (every layer's rule swapped for ``bp`` for the second
    pass): the alignment that decides whether a rule descends the loss (Lillicrap et al.'s and Nøkland's
    measure). Eval mode, as in :func:`gradient_alignment`; ``.grad`` fields are not touched.
    """
    layers = feedback_layers(model)
    weights = [m.weight for _, m in layers]
    was_training = model.training
    model.eval()
    rules = [m.rule for _, m in layers]
    try:
        with torch.enable_grad():
            rule_grads = torch.autograd.grad(loss_fn(model(inputs), targets), weights, allow_unused=True)
            for _, m in layers:
                m.rule = Backprop()
            true_grads = torch.autograd.grad(loss_fn(model(inputs), targets), weights, allow_unused=True)
    finally:
        for (_, m), rule in zip(layers, rules):
            m.rule = rule
        model.train(was_training)
    angles = [math.nan if a is None or b is None else angle_degrees(a, b) for a, b in zip(rule_grads, true_grads)]
    return xr.Dataset(
        {"update_angle": ("layer", np.array(angles),
                          {"units": "degree", "long_name": "angle between the rule's and backprop's update of W"})},
        coords=_layer_coords(layers),
    )


def _input_grad(layer: FeedbackLayer, x: Tensor, grad_out: Tensor, matrix: Tensor) -> Tensor:
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = layer.plain_forward(x, matrix.detach().to(x.dtype))
        (gx,) = torch.autograd.grad(out, x, grad_out.to(out.dtype))
    return gx


def alignment(model: nn.Module, inputs: Tensor | None = None, targets: Tensor | None = None,
              loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy) -> xr.Dataset:
    """:func:`weight_alignment`, plus :func:`gradient_alignment` and :func:`update_alignment` when a batch is
    given."""
    if not feedback_layers(model):
        raise ValueError(f"alignment(model): {type(model).__name__} has no feedback layers; convert it first "
                         "(neurocircuit.nn.convert) or build it with neurocircuit.build_network")
    ds = weight_alignment(model)
    if inputs is not None and targets is not None:
        for measure in (gradient_alignment, update_alignment):
            ds = ds.merge(measure(model, inputs, targets, loss_fn), compat="override", join="exact")
    return ds
