"""Linear and Conv2d layers that send the error down through feedback synapses B.

One layer class per operation, shared by every rule: the rule object decides what B is
(:meth:`FeedbackRule.feedback`) and whether the layer stores a ``feedback_weight`` buffer.
Both classes subclass their torch counterparts, so code that looks for ``nn.Linear`` / ``nn.Conv2d``
(weight init loops, torchvision's model code) keeps working.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .direct import direct_input
from .feedback_rules import FeedbackRule, get_rule
from .functional import feedback_conv2d, feedback_linear

__all__ = ["FeedbackLayer", "FeedbackLinear", "FeedbackConv2d", "is_feedback_layer"]


class FeedbackLayer:
    """Machinery shared by :class:`FeedbackLinear` and :class:`FeedbackConv2d` (a mixin).

    Attributes
    ----------
    rule : FeedbackRule
        The rule that governs B.
    feedback_weight : Tensor or None
        The buffer holding B (layout of W) for rules that store one, else None.
    direct_seed : Tensor or None
        For ``dfa``: the seed of the layer's direct feedback matrix (a buffer; see :mod:`neurocircuit.torch.nn.direct`).
    direct_hub : DirectFeedbackHub or None
        For ``dfa`` layers and the output layer they read: the shared output error
        (:func:`~neurocircuit.nn.wire_direct_feedback`).
    """

    weight: nn.Parameter
    rule: FeedbackRule

    def _setup_feedback(self, rule: str | FeedbackRule, generator: torch.Generator | None) -> None:
        self.rule = get_rule(rule)
        self.register_buffer("feedback_weight", None)
        self.register_buffer("direct_seed", None)
        self.direct_hub = None
        self.reset_feedback(generator)

    def reset_feedback(self, generator: torch.Generator | None = None) -> None:
        """Draw B afresh with the rule's initialisation (a no-op for rules that store no B)."""
        b = self.rule.init_feedback(self.weight.detach(), generator)
        self.feedback_weight = b
        if self.rule.direct:
            self.direct_seed = torch.randint(0, 2**62, (), generator=generator)
            self._direct_cache = None

    @property
    def sends_direct(self) -> bool:
        """Whether this layer sends the output error down through its direct matrix (``dfa``, not the output)."""
        return self.rule.direct and (self.direct_hub is None or self.direct_hub.output is not self)

    def _with_feedback(self, x: Tensor, op: Any) -> Tensor:
        """``op(x)``; for a hidden ``dfa`` layer with x's gradient replaced by the direct signal e @ D."""
        if not self.sends_direct:
            return op(x)
        if self.direct_hub is None:
            raise RuntimeError(f"a {type(self).__name__} with rule 'dfa' is not wired to an output layer: call "
                               "neurocircuit.nn.wire_direct_feedback(model) on the network that holds it")
        # x detached: the layer's own op computes no grad @ B for its input; direct_input supplies e @ D instead.
        return direct_input(op(x.detach()), x, self) if x.requires_grad else op(x)

    def current_feedback(self) -> Tensor:
        """B as it carries the error down in this step (for ``bp`` this is W itself)."""
        return self.rule.feedback(self)

    def _feedback_for(self, x: Tensor) -> Tensor:
        """B for a forward pass on ``x``; W's values where no error will be sent to x (no grad mode, or an input
        that needs no gradient, e.g. the image at the first layer): B only shapes x's gradient, and rules
        such as ``brsf`` would otherwise draw millions of random numbers for nothing."""
        if torch.is_grad_enabled() and x.requires_grad:
            return self.current_feedback()
        return self.weight.detach()

    def plain_forward(self, x: Tensor, weight: Tensor) -> Tensor:
        """The layer's operation with ``weight`` and no bias, differentiated by ordinary autograd."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rule={self.rule}"


def is_feedback_layer(module: nn.Module) -> bool:
    """Whether ``module`` is a layer with feedback synapses."""
    return isinstance(module, FeedbackLayer)


class FeedbackLinear(FeedbackLayer, nn.Linear):
    """``nn.Linear`` whose backward pass sends ``grad_out @ B`` to its input.

    Parameters
    ----------
    in_features, out_features, bias, device, dtype
        As for :class:`torch.nn.Linear`.
    rule
        A rule name from :func:`neurocircuit.list_rules` or a :class:`FeedbackRule` instance.
    generator
        Random generator for the initial B (reproducible feedback).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 rule: str | FeedbackRule = "fa", generator: torch.Generator | None = None,
                 device: Any = None, dtype: torch.dtype | None = None) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._setup_feedback(rule, generator)

    def forward(self, x: Tensor) -> Tensor:
        return self._with_feedback(x, self._linear)

    def _linear(self, x: Tensor) -> Tensor:
        return feedback_linear(x, self.weight, self.bias, self._feedback_for(x))

    def plain_forward(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.linear(x, weight)


class FeedbackConv2d(FeedbackLayer, nn.Conv2d):
    """``nn.Conv2d`` whose backward pass sends the error to its input through B.

    Every ``nn.Conv2d`` argument is supported (stride, padding including ``'same'``, dilation, groups,
    padding modes); see :class:`FeedbackLinear` for ``rule`` and ``generator``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", *, rule: str | FeedbackRule = "fa",
                 generator: torch.Generator | None = None, device: Any = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode,
                         device=device, dtype=dtype)
        self._setup_feedback(rule, generator)

    def _pad(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        # String padding and non-zero padding modes become an explicit pad, so the convolution itself
        # (and its backward) only ever sees numeric padding.
        if self.padding_mode == "zeros" and not isinstance(self.padding, str):
            return x, self.padding
        mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
        return F.pad(x, self._reversed_padding_repeated_twice, mode=mode), (0, 0)

    def forward(self, x: Tensor) -> Tensor:
        unbatched = x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        out = self._with_feedback(x, self._conv)
        return out.squeeze(0) if unbatched else out

    def _conv(self, x: Tensor) -> Tensor:
        x, padding = self._pad(x)
        return feedback_conv2d(x, self.weight, self.bias, self._feedback_for(x), self.stride, padding,
                               self.dilation, self.groups)

    def plain_forward(self, x: Tensor, weight: Tensor) -> Tensor:
        x, padding = self._pad(x)
        return F.conv2d(x, weight, None, self.stride, padding, self.dilation, self.groups)
