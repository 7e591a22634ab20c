"""Feedback rules described once, without any backend: what B is, whether and how it learns, what it needs.

A :class:`RuleDescription` is plain data. Each backend implements the rules it can run:

- the torch backend: one :class:`~neurocircuit.torch.nn.feedback_rules.FeedbackRule` class per rule in
  :mod:`neurocircuit.torch.nn.feedback_rules`;
- the Brian2 backend: one row per rule in :data:`neurocircuit.brian.network.SYNAPSE_RULES`.

Adding a rule means one :func:`describe` call here plus one entry in each backend that supports it; a backend
without an entry refuses the rule by name (see :mod:`neurocircuit.backends`). This module imports no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._toml import expect_number, shown
from .errors import ConfigError, UnknownNameError

__all__ = ["RuleDescription", "describe", "describe_rule", "list_rules", "check_rule", "check_option",
           "OPTION_LOWS"]

#: The range of every rule option, by name: (lowest value, whether it is excluded). A gain or scale is a size
#: (B would be zero or flipped); a decay is a weight decay per unit of learning rate.
OPTION_LOWS = {"gain": (0.0, True), "scale": (0.0, True), "decay": (0.0, False)}


@dataclass(frozen=True)
class RuleDescription:
    """What a feedback rule is, in circuit terms.

    Parameters
    ----------
    name
        The rule's name in circuit and simulation files.
    summary
        One line for ``neurocircuit list``.
    feedback
        What the feedback synapses B carry.
    learning
        How B changes (``"fixed"`` if it never does).
    learns_with_optimizer
        B receives the same local update as W at every training step (Kolen-Pollack).
    learns_in_mirror
        B learns from spontaneous activity in mirror phases (weight mirror).
    weight_transport
        B is read from W itself: the biologically implausible reference.
    sign_transport
        B needs the signs of W at every step (sign-symmetry).
    direct
        Hidden layers get the output error directly, each through its own fixed random matrix (direct feedback
        alignment); only the output layer's B is a feedback projection of the usual kind.
    options
        Option names and their defaults (what a file may give in ``options``).
    """

    name: str
    summary: str
    feedback: str
    learning: str = "fixed"
    learns_with_optimizer: bool = False
    learns_in_mirror: bool = False
    weight_transport: bool = False
    sign_transport: bool = False
    direct: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)


_RULES: dict[str, RuleDescription] = {}


def describe(description: RuleDescription) -> RuleDescription:
    """Register ``description`` under its name (the same description again is a no-op)."""
    old = _RULES.get(description.name)
    if old is not None and old != description:
        raise ValueError(f"a different rule named {description.name!r} is already described")
    _RULES[description.name] = description
    return description


def list_rules() -> list[str]:
    """Names of the described rules."""
    return sorted(_RULES)


def describe_rule(name: str) -> RuleDescription:
    """The description of rule ``name``, or :class:`UnknownNameError` listing the known ones."""
    if not isinstance(name, str) or name not in _RULES:
        raise UnknownNameError(f"unknown rule {name!r} (known: {', '.join(list_rules())})")
    return _RULES[name]


def check_rule(name: Any, options: Mapping[str, Any], where: str) -> RuleDescription:
    """The description of ``name`` if ``options`` are among its options, else an error naming ``where``."""
    if not isinstance(name, str):
        raise ConfigError(f"{where}: rule must be a name, got {name!r}")
    try:
        rule = describe_rule(name)
    except UnknownNameError as exc:
        raise UnknownNameError(f"{where}: {exc}") from None
    for key, value in options.items():
        if key not in rule.options:
            raise ConfigError(f"{where}: rule {name!r} has no option {key!r} "
                              f"(options: {', '.join(sorted(rule.options)) or 'none'})")
        if not (value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))):
            raise ConfigError(f"{where}: option {key!r} of rule {name!r} must be a number, got {shown(value)}")
        check_option(name, key, value, where)
    return rule


def check_option(rule: str, key: str, value: Any, where: str) -> None:
    """Refuse a rule option outside its range (:data:`OPTION_LOWS`): NaN, infinite, or below its lowest value."""
    if value is not None and key in OPTION_LOWS:
        low, strict = OPTION_LOWS[key]
        expect_number(value, f"{where}: option {key!r} of rule {rule!r}", low=low, strict=strict)


_B_DRAWN_LIKE_W = "its own random matrix, drawn like W's initialisation times `gain`"
for _description in (
    RuleDescription("bp", "backprop: B is W itself (weight transport), the reference", "W itself",
                    "follows W exactly", weight_transport=True),
    RuleDescription("fa", "feedback alignment: a fixed random B (Lillicrap et al. 2016)", _B_DRAWN_LIKE_W,
                    options={"gain": 1.0}),
    RuleDescription("dfa", "direct feedback alignment: the output error reaches every hidden layer through its own "
                    "fixed random matrix (Nøkland 2016)", "from the output error population straight to each hidden "
                    "layer's error population: fixed random matrices, drawn like W's initialisation times `gain`",
                    direct=True, options={"gain": 1.0}),
    RuleDescription("usf", "uniform sign-symmetry: B = sign(W) * RMS(W) (or * scale)", "sign(W) times a magnitude",
                    "follows W's signs", sign_transport=True, options={"scale": None}),
    RuleDescription("brsf", "batchwise random-magnitude sign-symmetry: B = sign(W) |R|, R fresh every step",
                    "sign(W) times fresh random magnitudes", "follows W's signs", sign_transport=True),
    RuleDescription("frsf", "fixed random-magnitude sign-symmetry: B = sign(W) |R|, R fixed",
                    "sign(W) times fixed random magnitudes", "follows W's signs", sign_transport=True,
                    options={"gain": 1.0}),
    RuleDescription("kp", "Kolen-Pollack: B gets W's local update and decay, so W - B decays (Akrout et al. 2019)",
                    _B_DRAWN_LIKE_W, "the transposed local update of W and the same weight decay (or its own "
                    "`decay`, a weight decay per unit of learning rate)", learns_with_optimizer=True,
                    options={"gain": 1.0, "decay": None}),
    RuleDescription("wm", "weight mirror: B learns W from spontaneous noise in mirror phases (Akrout et al. 2019)",
                    _B_DRAWN_LIKE_W, "Hebbian, from spontaneous activity in mirror phases; fixed while engaged",
                    learns_in_mirror=True, options={"gain": 1.0}),
):
    describe(_description)
