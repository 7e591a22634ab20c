"""Kolen-Pollack learning of B for any torch optimizer.

After each step of the user's optimizer, every ``kp`` layer's B is stepped by a *twin* of that optimizer:
same class, same hyperparameters (copied from the matching param group at every step, so LR schedules
apply), its own state, and as gradient the very gradient W received, the local delta * y^T. B therefore
gets the transposed copy of W's local update and the same weight decay. For plain SGD with learning
rate eta and weight decay lambda this is exactly Akrout et al.'s rule, and W - B shrinks by
(1 - eta * lambda) per step; with momentum it shrinks at least as fast, and adaptive optimizers (Adam)
apply the same kind of update to both.

A ``kp`` rule with its own ``decay`` gives B that weight decay instead of W's (``KolenPollack(decay=...)``). With
plain SGD, B_{t+1} = (1 - eta lambda_B) B_t - eta g_t while W_{t+1} = (1 - eta lambda) W_t - eta g_t, so B is
B_0's random part fading as (1 - eta lambda_B)^t plus W's updates remembered over ~1 / (eta lambda_B) steps instead
of W's ~1 / (eta lambda). A larger lambda_B erases B's random start sooner, but not W's, and B shrinks: measured on
the 784-1000-1000-10 MLP it aligns worse and learns worse than the shared decay (README). lambda_B = lambda is
Akrout et al.'s rule, where W - B itself decays as (1 - eta lambda)^t.

Steps that the optimizer skips (e.g. ``GradScaler`` on inf/NaN gradients) are skipped for B too, because
the twin runs from the optimizer's step post-hook.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from ...errors import NoAlignmentWarning
from .layers import FeedbackLayer

__all__ = ["FeedbackOptimizer", "attach_feedback_learning"]


class FeedbackOptimizer:
    """Steps the B of every Kolen-Pollack layer of ``model`` alongside ``optimizer``.

    Create it after the model is on its final device and after the optimizer (like the optimizer
    itself). It hooks into ``optimizer.step`` unless ``hook=False``, in which case call :meth:`step`
    right after each ``optimizer.step()``.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, hook: bool = True) -> None:
        self.optimizer = optimizer
        layers = {id(m.weight): m for m in model.modules()
                  if isinstance(m, FeedbackLayer) and m.rule.learns_with_optimizer}
        # One twin group per (optimizer group, B's own decay): (source group index, decay or None, pairs).
        self._groups: list[tuple[int, float | None, list[tuple[nn.Parameter, FeedbackLayer]]]] = []
        found = set()
        twin_groups = []
        for index, group in enumerate(optimizer.param_groups):
            pairs = [(p, layers[id(p)]) for p in group["params"] if id(p) in layers]
            found.update(id(p) for p, _ in pairs)
            decays = list(dict.fromkeys(_own_decay(layer) for _, layer in pairs))
            for decay in decays:
                chosen = [(p, layer) for p, layer in pairs if _own_decay(layer) == decay]
                self._groups.append((index, decay, chosen))
                twin_groups.append({**_hyper(group, decay), "params": [layer.feedback_weight for _, layer in chosen]})
        missing = [n for n, m in model.named_modules() if isinstance(m, FeedbackLayer)
                   and m.rule.learns_with_optimizer and id(m.weight) not in found]
        if missing:
            raise ValueError(f"Kolen-Pollack layers whose weight the optimizer does not hold: {missing}")
        self.layers = [layer for _, _, pairs in self._groups for _, layer in pairs]
        if any(not group.get("weight_decay") for group in twin_groups):
            # The decay is KP's only alignment force: without it B's random start never fades.
            warnings.warn("Kolen-Pollack layers with optimizer weight_decay = 0: W - B never shrinks, so B never "
                          "aligns with W (set optimizer.weight_decay > 0, or the kp rule's own decay)",
                          NoAlignmentWarning, stacklevel=2)
        self.twin = _make_twin(type(optimizer), twin_groups) if self.layers else None
        self._handle = optimizer.register_step_post_hook(self._after_step) if hook and self.layers else None

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.step()

    @torch.no_grad()
    def step(self) -> None:
        """Give every KP layer's B the update its W just received (same gradient, same settings)."""
        if self.twin is None:
            return
        for (index, decay, pairs), twin_group in zip(self._groups, self.twin.param_groups):
            twin_group.update(_hyper(self.optimizer.param_groups[index], decay))
            for b, (w, layer) in zip(twin_group["params"], pairs):
                if layer.feedback_weight is not b:
                    raise RuntimeError("a Kolen-Pollack layer's B was replaced (model moved with .to() after "
                                       "FeedbackOptimizer was made?); create the FeedbackOptimizer again")
                b.grad = w.grad
        self.twin.step()
        for twin_group in self.twin.param_groups:
            for b in twin_group["params"]:
                b.grad = None

    def remove(self) -> None:
        """Stop following the optimizer."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def state_dict(self) -> dict[str, Any]:
        """The twin optimizer's state (momentum etc. of B), for checkpoints."""
        return self.twin.state_dict() if self.twin is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if self.twin is not None:
            self.twin.load_state_dict(state)


# Implementation choices, not maths: the twin may pick its own (see _make_twin).
_IMPLEMENTATION_KEYS = ("params", "foreach", "fused")


def _hyper(group: dict[str, Any], decay: float | None = None) -> dict[str, Any]:
    """The group's hyperparameters for B: W's, with B's own weight decay where the rule gives one."""
    hyper = {k: v for k, v in group.items() if k not in _IMPLEMENTATION_KEYS}
    if decay is not None:
        hyper["weight_decay"] = decay
    return hyper


def _own_decay(layer: FeedbackLayer) -> float | None:
    decay = getattr(layer.rule, "decay", None)
    return None if decay is None else float(decay)


def _make_twin(cls: type[torch.optim.Optimizer], groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    # The fused kernels (SGD, Adam, AdamW, ... on CPU and CUDA) do the same update in one pass, which keeps
    # KP's extra cost per step small; optimizers without them fall back to their default implementation.
    try:
        return cls(groups, fused=True)
    except (TypeError, RuntimeError, ValueError):
        return cls(groups)


def attach_feedback_learning(model: nn.Module, optimizer: torch.optim.Optimizer) -> FeedbackOptimizer:
    """Make ``optimizer.step()`` also train the B of every rule that learns with the optimizer (``kp``)."""
    return FeedbackOptimizer(model, optimizer)
