"""Backend-independent circuit description: populations, projections, feedback and their rules.

A :class:`Circuit` is a feedforward chain of neuron :class:`Population` s joined by :class:`Projection` s
(forward synapses W). Each plastic projection is paired with :class:`Feedback` synapses B and the name of
the rule that governs B. Nothing here depends on torch or Brian2: backends compile these records.

Convention for B: everywhere in neurocircuit, B is stored in the **layout of W** (out x in for dense,
out x in/groups x kh x kw for convolutions), i.e. it holds the transpose of the paper's B. The error sent
down a dense projection is therefore ``delta @ B`` and perfect alignment means ``B == W``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._toml import check_keys, expect, read_toml
from .errors import ConfigError, ShapeError
from .rules import check_rule

__all__ = [
    "ACTIVATIONS",
    "PROJECTION_KINDS",
    "Population",
    "Projection",
    "Feedback",
    "Circuit",
    "circuit_from_dict",
    "load_circuit_file",
]

#: Activation functions a population may apply to its summed input.
ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid", "softplus", "leaky_relu")

#: Projection kinds. ``dense`` and ``conv2d`` are plastic (they have W, B and a rule);
#: pooling projections are fixed wiring and carry the error down unchanged in form.
PROJECTION_KINDS = ("dense", "conv2d", "maxpool2d", "avgpool2d")
PLASTIC_KINDS = ("dense", "conv2d")


def _pair(value: Any, where: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return (int(value[0]), int(value[1]))
    raise ConfigError(f"{where}: expected an int or a pair of ints, got {value!r}")


@dataclass(frozen=True)
class Population:
    """A named group of rate units.

    Parameters
    ----------
    name
        Identifier, unique in the circuit.
    shape
        ``(n,)`` for a vector of n units, ``(C, H, W)`` for C feature maps of H x W units.
    activation
        One of :data:`ACTIVATIONS`, applied to the population's summed input u: y = phi(u).
    batch_norm
        Normalise the population's activity over the minibatch after its activation, y = BN(phi(u)) (per unit, or per
        feature map of a (C, H, W) population, with a learned scale and shift; the torch backend's BatchNorm1d /
        BatchNorm2d). Not for the input population, which is clamped to data; the Brian2 backend, whose rate
        populations see one sample at a time, refuses it.
    """

    name: str
    shape: tuple[int, ...]
    activation: str = "identity"
    batch_norm: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ConfigError(f"population name must be an identifier, got {self.name!r}")
        shape = tuple(self.shape) if isinstance(self.shape, (list, tuple)) else self.shape
        if (
            not isinstance(shape, tuple)
            or len(shape) not in (1, 3)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
        ):
            raise ShapeError(
                f"population {self.name!r}: shape must be (n,) or (C, H, W) of positive ints, got {self.shape!r}"
            )
        object.__setattr__(self, "shape", shape)
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"population {self.name!r}: unknown activation {self.activation!r} "
                f"(known: {', '.join(ACTIVATIONS)})"
            )
        expect(self.batch_norm, bool, f"population {self.name!r}: batch_norm")

    @property
    def size(self) -> int:
        """Number of units."""
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass(frozen=True)
class Projection:
    """Forward synapses from ``source`` to ``target``.

    ``dense`` connects every source unit (flattened) to every target unit; ``conv2d`` is a 2-D
    convolution with ``kernel_size``, ``stride``, ``padding``, ``dilation`` and ``groups``; the pooling
    kinds are fixed (non-plastic) wiring with ``kernel_size`` and ``stride``.
    """

    name: str
    source: str
    target: str
    kind: str = "dense"
    bias: bool = True
    kernel_size: tuple[int, int] = (1, 1)
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ConfigError(f"projection name must be an identifier, got {self.name!r}")
        where = f"projection {self.name!r}"
        if self.kind not in PROJECTION_KINDS:
            raise ConfigError(f"{where}: unknown kind {self.kind!r} (known: {', '.join(PROJECTION_KINDS)})")
        for attr in ("kernel_size", "padding", "dilation"):
            object.__setattr__(self, attr, _pair(getattr(self, attr), f"{where}: {attr}"))
        # Pooling defaults to non-overlapping windows, convolutions to stride 1, as in torch.
        stride = self.stride if self.stride is not None else (
            self.kernel_size if self.kind.endswith("pool2d") else (1, 1)
        )
        object.__setattr__(self, "stride", _pair(stride, f"{where}: stride"))
        expect(self.groups, int, f"{where}: groups")
        expect(self.bias, bool, f"{where}: bias")
        if self.groups < 1 or min(self.kernel_size + self.stride + self.dilation) < 1 or min(self.padding) < 0:
            raise ConfigError(f"{where}: kernel_size, stride, dilation and groups must be >= 1, padding >= 0")

    @property
    def plastic(self) -> bool:
        """Whether the projection has weights W (and so feedback B and a rule)."""
        return self.kind in PLASTIC_KINDS

    def output_shape(self, source_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape this projection produces from a source of ``source_shape`` (dense: flattened)."""
        if self.kind == "dense":
            raise TypeError("a dense projection's output shape is its target's shape")
        if len(source_shape) != 3:
            raise ShapeError(
                f"projection {self.name!r} ({self.kind}) needs a (C, H, W) source, got shape {source_shape}"
            )
        c, h, w = source_shape
        out = []
        for size, k, s, p, d in zip((h, w), self.kernel_size, self.stride, self.padding, self.dilation):
            span = d * (k - 1) + 1
            if size + 2 * p < span:
                raise ShapeError(
                    f"projection {self.name!r}: kernel {self.kernel_size} does not fit input {source_shape}"
                )
            out.append((size + 2 * p - span) // s + 1)
        return (c, out[0], out[1])


@dataclass(frozen=True)
class Feedback:
    """The feedback synapses B paired with projection ``projection`` and the rule that governs them."""

    projection: str
    rule: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_rule(self.rule, self.options, where=f"feedback of {self.projection!r}")


@dataclass(frozen=True)
class Circuit:
    """A feedforward chain of populations with forward projections and feedback synapses.

    Validated on construction: names are unique, every projection joins known populations, the
    populations form one chain from an input to an output, shapes chain through every projection,
    and every plastic projection has exactly one :class:`Feedback` with a registered rule.

    Parameters
    ----------
    name
        The circuit's name.
    populations, projections
        The records; projections may be given in any order.
    feedback
        Feedback per plastic projection. Missing entries get ``default_rule``.
    default_rule
        Rule for projections without an explicit :class:`Feedback`.
    """

    name: str
    populations: tuple[Population, ...]
    projections: tuple[Projection, ...]
    feedback: tuple[Feedback, ...] = ()
    default_rule: str = "bp"
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "populations", tuple(self.populations))
        object.__setattr__(self, "feedback", tuple(self.feedback))
        where = f"circuit {self.name!r}"
        pops = {}
        for p in self.populations:
            if p.name in pops:
                raise ConfigError(f"{where}: population {p.name!r} defined twice")
            pops[p.name] = p
        if len(pops) < 2:
            raise ConfigError(f"{where}: needs at least two populations")
        incoming: dict[str, Projection] = {}
        names = set(pops)
        for proj in self.projections:
            if proj.name in names:
                raise ConfigError(f"{where}: name {proj.name!r} used twice")
            names.add(proj.name)
            for end in (proj.source, proj.target):
                if end not in pops:
                    raise ConfigError(f"{where}: projection {proj.name!r} refers to unknown population {end!r}")
            if proj.target in incoming:
                raise ConfigError(
                    f"{where}: population {proj.target!r} has two incoming projections "
                    f"({incoming[proj.target].name!r}, {proj.name!r}); circuits are chains"
                )
            incoming[proj.target] = proj
        inputs = [p for p in pops if p not in incoming]
        if len(inputs) != 1:
            raise ConfigError(f"{where}: expected exactly one input population (no incoming projection), "
                              f"found {inputs}")
        if pops[inputs[0]].batch_norm:
            raise ConfigError(f"{where}: population {inputs[0]!r} is the input, clamped to data: batch_norm "
                              "normalises a population's activity after its activation (give it to a later one)")
        # Walk the chain from the input; it must visit every population once.
        outgoing = {}
        for proj in self.projections:
            if proj.source in outgoing:
                raise ConfigError(f"{where}: population {proj.source!r} has two outgoing projections; "
                                  "circuits are chains")
            outgoing[proj.source] = proj
        order, current = [], inputs[0]
        while current in outgoing:
            proj = outgoing[current]
            order.append(proj)
            current = proj.target
        if len(order) != len(self.projections):
            raise ConfigError(f"{where}: projections do not form a single chain from {inputs[0]!r}")
        object.__setattr__(self, "projections", tuple(order))
        for proj in order:
            self._check_shapes(proj, pops[proj.source], pops[proj.target])
        self._fill_feedback()

    def _check_shapes(self, proj: Projection, src: Population, tgt: Population) -> None:
        if proj.kind == "dense":
            if len(tgt.shape) != 1:
                raise ShapeError(f"projection {proj.name!r}: a dense projection needs a vector target, "
                                 f"but {tgt.name!r} has shape {tgt.shape}")
            return
        out = proj.output_shape(src.shape)
        if proj.kind == "conv2d":
            c_in = src.shape[0]
            c_out = tgt.shape[0] if len(tgt.shape) == 3 else None
            if c_in % proj.groups or (c_out is not None and c_out % proj.groups):
                raise ShapeError(f"projection {proj.name!r}: groups={proj.groups} must divide the channels "
                                 f"{c_in} -> {c_out}")
            out = (tgt.shape[0],) + out[1:] if len(tgt.shape) == 3 else out
        if out != tgt.shape:
            raise ShapeError(f"projection {proj.name!r}: {src.name!r} {src.shape} gives shape {out} "
                             f"but {tgt.name!r} has shape {tgt.shape}")

    def _fill_feedback(self) -> None:
        check_rule(self.default_rule, {}, where=f"circuit {self.name!r}: default rule")
        plastic = {p.name for p in self.projections if p.plastic}
        given: dict[str, Feedback] = {}
        for fb in self.feedback:
            if fb.projection not in plastic:
                raise ConfigError(f"circuit {self.name!r}: feedback for {fb.projection!r}, which is not a plastic "
                                  f"projection (plastic: {', '.join(sorted(plastic))})")
            if fb.projection in given:
                raise ConfigError(f"circuit {self.name!r}: two feedback entries for {fb.projection!r}")
            given[fb.projection] = fb
        full = tuple(given.get(p.name, Feedback(p.name, self.default_rule))
                     for p in self.projections if p.plastic)
        object.__setattr__(self, "feedback", full)

    # -- queries -----------------------------------------------------------------------------------
    def population(self, name: str) -> Population:
        """The population called ``name``."""
        for p in self.populations:
            if p.name == name:
                return p
        raise KeyError(name)

    def projection(self, name: str) -> Projection:
        """The projection called ``name``."""
        for p in self.projections:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def input(self) -> Population:
        """The population without incoming projection (clamped to data)."""
        return self.population(self.projections[0].source)

    @property
    def output(self) -> Population:
        """The last population of the chain."""
        return self.population(self.projections[-1].target)

    def feedback_for(self, projection: str) -> Feedback:
        """The :class:`Feedback` record of a plastic projection."""
        for fb in self.feedback:
            if fb.projection == projection:
                return fb
        raise KeyError(projection)

    def with_rules(self, rule: str, overrides: Mapping[str, str] | None = None,
                   options: Mapping[str, Any] | None = None) -> Circuit:
        """A copy where every plastic projection uses ``rule``, except those named in ``overrides``.

        ``options`` are passed to ``rule`` (not to the overriding rules).
        """
        overrides = dict(overrides or {})
        plastic = [p.name for p in self.projections if p.plastic]
        for name in overrides:
            if name not in plastic:
                raise ConfigError(f"circuit {self.name!r}: rule override for unknown projection {name!r} "
                                  f"(plastic projections: {', '.join(plastic)})")
        feedback = tuple(
            Feedback(n, overrides[n]) if n in overrides else Feedback(n, rule, dict(options or {}))
            for n in plastic
        )
        return dataclasses.replace(self, feedback=feedback, default_rule=rule)

    def to_dict(self) -> dict[str, Any]:
        """A plain-dict form that :func:`circuit_from_dict` reads back (and TOML can hold)."""
        return {
            "name": self.name,
            "description": self.description,
            # batch_norm only where set, so that circuits without it keep their dict form
            "populations": [{k: v for k, v in dataclasses.asdict(p).items() if k != "batch_norm" or v}
                            | {"shape": list(p.shape)} for p in self.populations],
            "projections": [
                {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(p).items()}
                for p in self.projections
            ],
            "feedback": {
                "rule": self.default_rule,
                "overrides": {fb.projection: fb.rule for fb in self.feedback if fb.rule != self.default_rule},
            },
        }


_POP_KEYS = ("name", "shape", "activation", "batch_norm")
_PROJ_KEYS = ("name", "source", "target", "kind", "bias", "kernel_size", "stride", "padding", "dilation", "groups")


def _tables(data: Mapping[str, Any], key: str, allowed: tuple[str, ...], required: tuple[str, ...], where: str
            ) -> Iterator[tuple[int, dict[str, Any], str]]:
    """(index, table, location) of each table in the list ``data[key]``, checked for unknown and missing keys."""
    for i, table in enumerate(expect(data[key], list, f"{where}: {key}")):
        w = f"{where}: {key}[{i}]"
        expect(table, dict, w)
        check_keys(table, allowed, w)
        if any(k not in table for k in required):
            raise ConfigError(f"{w}: needs {' and '.join(repr(k) for k in required)}")
        yield i, table, w


def circuit_from_dict(data: Mapping[str, Any], *, where: str = "circuit") -> Circuit:
    """Build a :class:`Circuit` from the dict form used by the TOML files in ``models/``.

    Unknown keys are errors. Projections without a name are called ``W1``, ``W2``, ... in chain order
    of their appearance; ``[feedback]`` may set ``rule``, ``overrides`` (projection -> rule) and ``options``.
    """
    check_keys(data, ("name", "description", "populations", "projections", "feedback"), where)
    for key in ("name", "populations", "projections"):
        if key not in data:
            raise ConfigError(f"{where}: missing key {key!r}")
    name = expect(data["name"], str, f"{where}: name")
    pops = [Population(p["name"], tuple(expect(p["shape"], list, f"{w}: shape")), p.get("activation", "identity"),
                       p.get("batch_norm", False))
            for _, p, w in _tables(data, "populations", _POP_KEYS, ("name", "shape"), where)]
    projs = []
    for i, p, _ in _tables(data, "projections", _PROJ_KEYS, ("source", "target"), where):
        kwargs = dict(p)
        kwargs.setdefault("name", f"W{i + 1}")
        projs.append(Projection(**kwargs))
    fb_table = data.get("feedback", {})
    expect(fb_table, dict, f"{where}: feedback")
    check_keys(fb_table, ("rule", "overrides", "options"), f"{where}: feedback")
    circuit = Circuit(name, tuple(pops), tuple(projs), description=str(data.get("description", "")))
    if fb_table:
        circuit = circuit.with_rules(
            expect(fb_table.get("rule", "bp"), str, f"{where}: feedback.rule"),
            expect(fb_table.get("overrides", {}), dict, f"{where}: feedback.overrides"),
            expect(fb_table.get("options", {}), dict, f"{where}: feedback.options"),
        )
    return circuit


def load_circuit_file(path: str | Path) -> Circuit:
    """Read a circuit TOML file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"circuit file not found: {path}")
    return circuit_from_dict(read_toml(path), where=str(path))
