"""Swap the Linear and Conv2d layers of any ``nn.Module`` for feedback layers, keeping W."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ...errors import ConfigError
from .feedback_rules import FeedbackRule, get_rule
from .layers import FeedbackConv2d, FeedbackLayer, FeedbackLinear
from .wiring import wire_direct_feedback

__all__ = ["ConvertedLayer", "ConversionReport", "convert"]


@dataclass(frozen=True)
class ConvertedLayer:
    """One layer that :func:`convert` swapped: its qualified name, kind, rule and weight shape."""

    name: str
    kind: str
    rule: str
    weight_shape: tuple[int, ...]


@dataclass
class ConversionReport:
    """What :func:`convert` did. ``skipped`` lists modules with weights that were left alone, and why."""

    layers: list[ConvertedLayer] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.layers)

    def count(self, kind: str | None = None, rule: str | None = None) -> int:
        """Number of converted layers of ``kind`` ('Linear'/'Conv2d') and/or ``rule``."""
        return sum((kind is None or c.kind == kind) and (rule is None or c.rule == rule) for c in self.layers)

    def summary(self) -> str:
        """A plain-text table, one converted layer per line."""
        width = max([len(c.name) for c in self.layers] + [5])
        lines = [f"{'layer':<{width}}  {'kind':<6}  {'rule':<6}  weight shape"]
        lines += [f"{c.name:<{width}}  {c.kind:<6}  {c.rule:<6}  {tuple(c.weight_shape)}" for c in self.layers]
        lines += [f"skipped {name}: {why}" for name, why in self.skipped]
        return "\n".join(lines)


# Normalisation layers have per-channel gains, not synapses: they learn as they are, not reported.
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
# Weighted layers convert() does not handle; they are reported as skipped.
_OTHER_WEIGHTED = (nn.Linear, nn.Conv2d, nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                   nn.ConvTranspose3d)


def _swap(old: nn.Module, rule: FeedbackRule, generator: torch.Generator | None) -> FeedbackLayer:
    # Build on the meta device, then adopt the old Parameter objects: no copy, and an optimizer that
    # already holds them keeps working.
    if isinstance(old, nn.Linear):
        new = FeedbackLinear(old.in_features, old.out_features, old.bias is not None, rule=rule, device="meta")
    else:
        new = FeedbackConv2d(old.in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
                             old.dilation, old.groups, old.bias is not None, old.padding_mode, rule=rule,
                             device="meta")
    new.weight = old.weight
    new.bias = old.bias
    new.train(old.training)
    new.reset_feedback(generator)
    return new


def convert(module: nn.Module, rule: str | FeedbackRule = "fa", *,
            overrides: Mapping[str, str | FeedbackRule] | None = None,
            options: Mapping[str, Any] | None = None, seed: int | None = None) -> ConversionReport:
    """Replace, in place, every ``nn.Linear`` and ``nn.Conv2d`` inside ``module`` by a feedback layer.

    Forward weights and biases are kept (the same Parameter objects), so the forward output is unchanged.
    Layers that are already feedback layers are converted again to the new rule, with a fresh B. ``dfa`` layers
    are wired to the last converted layer, whose error they receive (:func:`~neurocircuit.nn.wire_direct_feedback`).

    Parameters
    ----------
    module
        Any module, e.g. ``torchvision.models.resnet18()``. Its own type is not changed; to convert a
        bare ``nn.Linear``, wrap it in ``nn.Sequential``.
    rule
        Rule for every layer (name or instance).
    overrides
        Qualified layer name or shell-style pattern -> rule, e.g. ``{"fc": "bp", "layer4.*": "kp"}``.
        A pattern that matches no layer is an error (it is most likely a typo).
    options
        Options for ``rule`` when it is given by name, e.g. ``{"gain": 0.5}``.
    seed
        Seed of the generator that draws the random B's, in module order. None uses torch's global RNG.

    Returns
    -------
    ConversionReport
        The converted layers with their rules, and modules with weights that were skipped.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"convert(module, ...): module must be a torch nn.Module, got {type(module).__name__} "
                        f"{module!r} (for a torchvision model by name use neurocircuit.build_network(name, rule=...))")
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        raise TypeError(f"convert() swaps layers inside a module; wrap the {type(module).__name__} in "
                        "nn.Sequential, or build a FeedbackLinear/FeedbackConv2d directly")
    default = get_rule(rule, **dict(options or {}))
    overrides = dict(overrides or {})
    resolved = {pattern: get_rule(r) for pattern, r in overrides.items()}
    used: set[str] = set()
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    report = ConversionReport()
    for name, child in list(module.named_modules()):
        if not name:
            continue
        plain = type(child) in (nn.Linear, nn.Conv2d) or isinstance(child, FeedbackLayer)
        if not plain:
            if isinstance(child, _OTHER_WEIGHTED):
                report.skipped.append((name, f"{type(child).__name__} is not a plain Linear/Conv2d"))
            elif any(p.requires_grad for p in child.parameters(recurse=False)) and not isinstance(child, _NORMS):
                # LSTM, GRU, MultiheadAttention, embeddings, ...: they keep learning by backprop (weight transport)
                report.skipped.append((name, f"{type(child).__name__} has weights convert() cannot give feedback "
                                             "synapses; it keeps backprop"))
            continue
        chosen = default
        for pattern, r in resolved.items():
            if fnmatch.fnmatchcase(name, pattern):
                chosen = r
                used.add(pattern)
        # A fresh rule object per layer, so rule state (if a user rule keeps any) is never shared.
        layer_rule = type(chosen)(**chosen.options())
        new = _swap(child, layer_rule, generator)
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attr, new)
        report.layers.append(ConvertedLayer(name, "Linear" if isinstance(new, nn.Linear) else "Conv2d",
                                            layer_rule.name, tuple(new.weight.shape)))
    unused = sorted(set(overrides) - used)
    if unused:
        names = ", ".join(c.name for c in report.layers[:8])
        raise ConfigError(f"override pattern {unused[0]!r} matches no Linear/Conv2d layer (layers: {names}, ...)")
    wire_direct_feedback(module)  # dfa layers read the error of the last layer (the classifier)
    return report
