"""Finding and wiring the ``dfa`` layers of a network (:mod:`.direct` holds the maths they use)."""

from __future__ import annotations

from torch import nn

from .direct import DirectFeedbackHub
from .layers import FeedbackLayer

__all__ = ["direct_layers", "wire_direct_feedback"]


def direct_layers(model: nn.Module) -> list[tuple[str, FeedbackLayer]]:
    """(name, layer) of the layers that send the output error down directly (``dfa`` below the output layer)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, FeedbackLayer) and m.sends_direct]


def wire_direct_feedback(model: nn.Module, output: str | None = None) -> DirectFeedbackHub | None:
    """Connect every ``dfa`` layer of ``model`` to its output layer; returns the hub (None: no ``dfa`` layer).

    :func:`~neurocircuit.nn.convert`, :func:`~neurocircuit.build_network` and circuit networks call this; call it
    yourself for a network built from :class:`FeedbackLinear` / :class:`FeedbackConv2d` by hand.

    Parameters
    ----------
    model
        The network.
    output
        Qualified name of the layer whose output error drives the others (default: the last feedback layer in
        module order, the classifier of torchvision's models and of circuit networks).
    """
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
