"""The torch implementation of the feedback rules described in :mod:`neurocircuit.rules`.

A rule is one small object plugged into the shared layer machinery of :mod:`neurocircuit.nn`; it never
subclasses a layer. Rules are registered by name::

    @register_rule
    @dataclass
    class MyRule(FeedbackRule):
        name: ClassVar[str] = "mine"
        stores_feedback: ClassVar[bool] = True
        def feedback(self, layer): ...

B is kept in the layout of W (see :mod:`neurocircuit.circuit`): the error a dense layer sends down is
``delta @ B`` and perfect alignment is ``B == W``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from ..._toml import shown
from ...errors import ConfigError, UnknownNameError
from ...rules import RuleDescription, check_option, describe, describe_rule

__all__ = [
    "FeedbackRule",
    "RandomFeedback",
    "Backprop",
    "FeedbackAlignment",
    "DirectFeedbackAlignment",
    "UniformSignFeedback",
    "BatchRandomSignFeedback",
    "uniform_like",
    "FixedRandomSignFeedback",
    "KolenPollack",
    "WeightMirror",
    "register_rule",
    "get_rule",
    "list_rules",
    "random_feedback",
    "symmetric_uniform",
]

_REGISTRY: dict[str, type[FeedbackRule]] = {}


def symmetric_uniform(shape: tuple[int, ...] | torch.Size, bound: float,
                      generator: torch.Generator | None = None) -> Tensor:
    """U(-bound, bound) of ``shape`` in float64, drawn on the CPU: a seeded generator gives the same values on every
    device (callers move the result). Every random B, direct matrix and Xavier draw goes through here."""
    return torch.rand(shape, generator=generator, dtype=torch.float64) * (2 * bound) - bound


def random_feedback(weight: Tensor, *, gain: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """A random matrix of W's shape drawn like torch's default layer init, U(-g/sqrt(fan_in), g/sqrt(fan_in)).

    Drawn on the CPU (so a seeded generator gives the same B on every device) and moved to W's device/dtype.
    """
    fan_in = weight[0].numel() if weight.dim() > 1 else weight.numel()
    b = symmetric_uniform(weight.shape, gain / math.sqrt(max(fan_in, 1)), generator)
    return b.to(device=weight.device, dtype=weight.dtype)


_NUMPY_FLOAT = {torch.float32: np.float32, torch.float64: np.float64}


def _rms(weight: Tensor) -> Tensor:
    return torch.linalg.vector_norm(weight.detach()) / math.sqrt(weight.numel())


@dataclass
class FeedbackRule:
    """Base class of feedback rules.

    Class attributes say what the layer machinery must do for the rule:

    ``stores_feedback``
        The layer keeps a ``feedback_weight`` buffer (saved in ``state_dict``, moved by ``.to()``).
    ``learns_with_optimizer``
        After every optimizer step B receives the same update as W (Kolen-Pollack); see
        :class:`neurocircuit.nn.FeedbackOptimizer`.
    ``learns_in_mirror``
        B changes in mirror phases of spontaneous activity (weight mirror).
    ``weight_transport``
        B is read from W itself: the biologically implausible reference.
    ``direct``
        Below the output layer the error comes straight from the output (direct feedback alignment): the layer's
        input receives e @ D through a fixed random D (see :mod:`neurocircuit.torch.nn.direct`); B serves only where
        the layer is the output layer.
    """

    name: ClassVar[str] = ""
    stores_feedback: ClassVar[bool] = False
    learns_with_optimizer: ClassVar[bool] = False
    learns_in_mirror: ClassVar[bool] = False
    weight_transport: ClassVar[bool] = False
    direct: ClassVar[bool] = False

    def init_feedback(self, weight: Tensor, generator: torch.Generator | None = None) -> Tensor | None:
        """Initial content of the ``feedback_weight`` buffer, or None for rules that store none."""
        return None

    def feedback(self, layer: torch.nn.Module) -> Tensor:
        """The matrix (W layout) that carries the error down through ``layer`` in this step."""
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """The rule's options, as given to its constructor."""
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{self.name}({opts})" if opts else self.name


def register_rule(cls: type[FeedbackRule]) -> type[FeedbackRule]:
    """Class decorator that registers a :class:`FeedbackRule` subclass as the torch implementation of the rule
    described under ``cls.name`` (:mod:`neurocircuit.rules`).

    The description's flags (``learns_with_optimizer``, ``learns_in_mirror``, ``weight_transport``) become the
    class's, so they are written once. A class whose rule has no description yet describes itself from its
    docstring, flags and fields (a rule only the torch backend runs).
    """
    if not (isinstance(cls, type) and issubclass(cls, FeedbackRule)) or not cls.name:
        raise TypeError(f"register_rule needs a FeedbackRule subclass with a name, got {cls!r}")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"a rule named {cls.name!r} is already registered ({_REGISTRY[cls.name].__name__})")
    fields = {f.name: f.default for f in dataclasses.fields(cls)}
    try:
        description = describe_rule(cls.name)
    except UnknownNameError:
        summary = (cls.__doc__ or cls.name).strip().splitlines()[0]
        description = describe(RuleDescription(cls.name, summary, "see the torch class " + cls.__name__,
                                               learns_with_optimizer=cls.learns_with_optimizer,
                                               learns_in_mirror=cls.learns_in_mirror,
                                               weight_transport=cls.weight_transport, direct=cls.direct,
                                               options=fields))
    if set(description.options) != set(fields):
        raise TypeError(f"{cls.__name__}'s fields {sorted(fields)} are not the options of rule {cls.name!r} "
                        f"{sorted(description.options)}")
    cls.learns_with_optimizer = description.learns_with_optimizer
    cls.learns_in_mirror = description.learns_in_mirror
    cls.weight_transport = description.weight_transport
    cls.direct = description.direct
    _REGISTRY[cls.name] = cls
    return cls


def list_rules() -> list[str]:
    """Names of the registered rules."""
    return sorted(_REGISTRY)


def get_rule(name: str | FeedbackRule, **options: Any) -> FeedbackRule:
    """The rule called ``name``, constructed with ``options`` (a rule instance passes through)."""
    if isinstance(name, FeedbackRule):
        if options:
            raise ConfigError(f"options {options} given with an already constructed rule {name}")
        return name
    if name not in _REGISTRY:
        raise UnknownNameError(f"unknown rule {name!r} (known: {', '.join(list_rules())})")
    cls = _REGISTRY[name]
    fields = {f.name for f in dataclasses.fields(cls)}
    for key in options:
        if key not in fields:
            raise ConfigError(f"rule {name!r} has no option {key!r} (options: {', '.join(sorted(fields)) or 'none'})")
    rule = cls(**options)  # its own checks first (kp's decay says what it is)
    for key, value in options.items():
        check_option(name, key, value, "get_rule")
    return rule


@register_rule
@dataclass
class Backprop(FeedbackRule):
    """``bp``: B is W itself at every step (weight transport). The reference."""

    name: ClassVar[str] = "bp"

    def feedback(self, layer: torch.nn.Module) -> Tensor:
        return layer.weight.detach()


@dataclass
class RandomFeedback(FeedbackRule):
    """Base of the rules whose B is its own random matrix, drawn like W's default init times ``gain``."""

    stores_feedback: ClassVar[bool] = True
    gain: float = 1.0

    def init_feedback(self, weight: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return random_feedback(weight, gain=self.gain, generator=generator)

    def feedback(self, layer: torch.nn.Module) -> Tensor:
        return layer.feedback_weight


@register_rule
@dataclass
class FeedbackAlignment(RandomFeedback):
    """``fa``: a fixed random B (Lillicrap et al. 2016)."""

    name: ClassVar[str] = "fa"


@register_rule
@dataclass
class DirectFeedbackAlignment(RandomFeedback):
    """``dfa``: every layer below the output sends the output error e down as e @ D, D fixed and random (Nøkland
    2016); the output layer sends its error through its B, as in ``fa``."""

    name: ClassVar[str] = "dfa"


@register_rule
@dataclass
class UniformSignFeedback(FeedbackRule):
    """``usf``: B = sign(W) * s. ``scale=None`` takes s = RMS(W) at each step, so that ||B|| = ||W||."""

    name: ClassVar[str] = "usf"
    scale: float | None = None

    def feedback(self, layer: torch.nn.Module) -> Tensor:
        w = layer.weight.detach()
        magnitude = _rms(w) if self.scale is None else self.scale
        # sign then an in-place scale: measured faster than copysign with a 0-dim tensor on CPU.
        return w.sign().mul_(magnitude)


@register_rule
@dataclass
class BatchRandomSignFeedback(FeedbackRule):
    """``brsf``: B = sign(W) * |R|, |R| ~ U(0, sqrt(3) RMS(W)) drawn afresh at every step (E||B||^2 = ||W||^2)."""

    name: ClassVar[str] = "brsf"

    def feedback(self, layer: torch.nn.Module) -> Tensor:
        w = layer.weight.detach()
        magnitude = uniform_like(w, high=math.sqrt(3.0) * _rms(w))
        return torch.copysign(magnitude, w, out=magnitude)  # in place: one pass less over the weights


_GRID = 1 << 16  # the number of magnitudes uniform_like draws from on the CPU


def uniform_like(weight: Tensor, *, high: float | Tensor = 1.0) -> Tensor:
    """U[0, ``high``) of ``weight``'s shape, dtype and device, drawn from torch's random state.

    On the CPU torch's generator is serial (~8 ns a number: ~90 ms for ResNet-18's 11.7M weights, the whole of
    brsf's cost per step), so the draw is numpy's SFC64, seeded by one draw from torch's generator (so
    ``torch.manual_seed`` and checkpointed RNG states still fix every draw), and takes 16 random bits a number:
    ``high * k / 2**16`` with k uniform on 0 .. 2**16 - 1, converted and scaled in one pass. That is U[0, high) on a
    grid of 65,536 points (a float32 uniform is the same on 2**24 points; mean and variance differ from the
    continuous ones by at most 2**-16 relative), drawn about twice as fast as float32 uniforms, which need 32 bits
    and their own conversion. Elsewhere (CUDA's parallel Philox is fast) this is ``torch.rand_like(weight) * high``
    (``high`` may be a 0-dim tensor there: no device sync).
    """
    if weight.device.type != "cpu" or weight.dtype not in _NUMPY_FLOAT:
        return torch.rand_like(weight).mul_(high)
    seed = int(torch.randint(0, 2**62, (1,)).item())
    grid = np.random.Generator(np.random.SFC64(seed)).integers(0, _GRID, weight.shape, dtype=np.uint16)
    dtype = _NUMPY_FLOAT[weight.dtype]
    return torch.from_numpy(np.multiply(grid, dtype(float(high) / _GRID), dtype=dtype))


@register_rule
@dataclass
class FixedRandomSignFeedback(RandomFeedback):
    """``frsf``: B = sign(W) * |R| with R random and fixed; the buffer keeps R (its magnitudes are used)."""

    name: ClassVar[str] = "frsf"

    def feedback(self, layer: torch.nn.Module) -> Tensor:
        return torch.copysign(layer.feedback_weight, layer.weight.detach())


@register_rule
@dataclass
class KolenPollack(RandomFeedback):
    """``kp``: B starts random and receives, after each optimizer step, the same update as W.

    Both get the same local gradient delta * y^T and the same weight decay from the same optimizer
    settings, so W - B shrinks by (1 - lr * weight_decay) per plain SGD step (Akrout et al. 2019). ``decay``
    gives B its own weight decay instead (see :mod:`neurocircuit.nn.feedback_optim` for what that changes).
    """

    name: ClassVar[str] = "kp"
    decay: float | None = None

    def __post_init__(self) -> None:
        if self.decay is not None and not (isinstance(self.decay, (int, float)) and self.decay >= 0):
            raise ConfigError(f"rule 'kp': decay must be a number >= 0 (B's weight decay) or None, "
                              f"got {shown(self.decay)}")


@register_rule
@dataclass
class WeightMirror(RandomFeedback):
    """``wm``: B starts random, stays fixed while engaged (FA-like) and learns only in mirror phases."""

    name: ClassVar[str] = "wm"
