"""Phases: what a circuit does when. Backend-independent records, in circuit terms.

- :class:`EngagedPhase` — learning from data (inputs clamped to data, the error from the labels), optionally with
  ``mirror_steps`` mirror steps interleaved every ``mirror_every`` training steps.
- :class:`MirrorPhase` — spontaneous noise in every forward population, independently per layer; the feedback
  pathway copies the forward drive and the ``wm`` feedback synapses learn by a Hebbian rule (Akrout et al.). With
  ``estimate = "exact"`` a mirror step sets B to W instead (the control with no estimation noise).
- :class:`PrenatalPhase` — random-noise inputs with random labels before any data; W learns through the fixed
  feedback (Cheon, Lee & Paik).

A :class:`Schedule` is the ordered tuple of phases. Simulation files write them as ``[[phases]]`` tables (or a
per-arm ``phases`` list) with a ``kind`` key; ``[mirror]`` holds the :class:`MirrorSettings` shared by all mirror
steps, an arm's ``mirror`` table overrides them for that arm (its mirror phases and interleaved mirror steps), and a
mirror phase may override any of them.

Durations are counted in steps here (the torch backend's time unit: one update); a backend with simulated time
maps a step to its own duration.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._reads import Tracked, origins_of, set_origins
from ._toml import check_keys, expect, shown
from .errors import ConfigError

__all__ = ["PHASE_KINDS", "MIRROR_ESTIMATES", "HEBBIAN_KEYS", "MirrorSettings", "refuse_unread_mirror_keys",
           "EngagedPhase", "MirrorPhase", "PrenatalPhase", "Schedule",
           "parse_schedule", "mirror_settings_from_dict"]

NOISE_KINDS = ("gaussian", "uniform")
#: How a mirror step estimates B: from spontaneous noise by the Hebbian rule, or as an exact copy of W.
MIRROR_ESTIMATES = ("hebbian", "exact")
#: The settings only the Hebbian estimate reads (an exact copy has no noise, rate, bound or burst).
HEBBIAN_KEYS = ("noise", "noise_std", "learning_rate", "decay", "normalize", "batch_size", "active_units")


def _positive(value: Any, where: str, *, allow_zero: bool = False) -> None:
    expect(value, (int, float), where)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{where} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {shown(value)}")


@dataclass(frozen=True)
class MirrorSettings(Tracked):
    """How the feedback synapses learn from spontaneous noise (or, as a control, copy W exactly).

    Parameters
    ----------
    estimate
        ``hebbian``: B learns from noise by the rule below (the weight mirror). ``exact``: every mirror step sets B to
        W exactly, with no noise and no scale error — the control that separates what the noisy estimate costs from
        what stale feedback costs. With interleaved mirror steps every k training steps (``mirror_every = k``) it is
        the *lagged mirror*: B is W as of the last multiple of k (k = 1 is backprop). It reads none of the other
        settings, so they are refused next to it.
    noise
        ``gaussian`` or ``uniform``: zero-mean, i.i.d. across units, variance ``noise_std**2``.
    noise_std
        sigma, the noise amplitude of each presynaptic (forward input) unit.
    learning_rate
        eta_B of the Hebbian update dB = eta_B * mean_batch(y x^T), with y = W x the postsynaptic drive.
    decay
        lambda: each active feedback synapse decays by (1 - lambda) per step, so B settles at
        (eta_B sigma^2 / lambda) W — the bound on B.
    normalize
        Also rescale B to ||W|| after every step (a second bound).
    batch_size
        Noise samples per step (a short burst of spontaneous activity).
    active_units
        Sparse spontaneous activity: in each step every presynaptic unit of a layer is active independently
        with probability min(1, active_units / fan_in), else silent, so that about ``active_units`` inputs
        drive each postsynaptic unit (for convolutions the units are input channels and fan_in is channels x
        kernel size). E[x x^T] stays proportional to the identity, so the update is still an unbiased estimate of
        W, but it costs p times less and the active synapses' estimate has less variance (fewer other inputs
        drive y). None: every unit is active in every step, as in the paper. (Grouped convolutions always
        use every channel.)
    """

    estimate: str = "hebbian"
    noise: str = "gaussian"
    noise_std: float = 1.0
    learning_rate: float = 0.05
    decay: float = 0.05
    normalize: bool = False
    batch_size: int = 64
    active_units: int | None = None

    def __post_init__(self) -> None:
        if self.estimate not in MIRROR_ESTIMATES:
            raise ConfigError(f"mirror.estimate: unknown estimate {self.estimate!r} (known: "
                              f"{', '.join(MIRROR_ESTIMATES)})")
        if self.noise not in NOISE_KINDS:
            raise ConfigError(f"mirror.noise: unknown noise {self.noise!r} (known: {', '.join(NOISE_KINDS)})")
        _positive(self.noise_std, "mirror.noise_std")
        _positive(self.learning_rate, "mirror.learning_rate")
        _positive(self.decay, "mirror.decay", allow_zero=True)
        if self.decay > 1:
            raise ConfigError(f"mirror.decay must be <= 1, got {shown(self.decay)}")
        expect(self.normalize, bool, "mirror.normalize")
        if self.decay == 0 and not self.normalize:
            raise ConfigError("mirror: B needs a bound: set mirror.decay > 0 or mirror.normalize = true")
        expect(self.batch_size, int, "mirror.batch_size")
        _positive(self.batch_size, "mirror.batch_size")
        if self.active_units is not None:
            expect(self.active_units, int, "mirror.active_units")
            _positive(self.active_units, "mirror.active_units")


@dataclass(frozen=True)
class EngagedPhase(Tracked):
    """Learning from data for ``epochs`` (None: the simulation's ``train.epochs``), with optional mirroring.

    ``mirror_steps`` mirror steps run after every ``mirror_every`` training steps. With ``mirror_follows_lr``
    the feedback plasticity (learning rate and decay of B together) is scaled by the forward learning rate
    relative to its initial value: B tracks W quickly while W moves fast and averages more noise as W settles.
    """

    name: str = "engaged"
    epochs: int | None = None
    mirror_every: int = 0
    mirror_steps: int = 1
    mirror_follows_lr: bool = False
    kind: str = field(default="engaged", init=False)

    def __post_init__(self) -> None:
        if self.epochs is not None:
            expect(self.epochs, int, f"phase {self.name!r}: epochs")
            _positive(self.epochs, f"phase {self.name!r}: epochs", allow_zero=True)
        expect(self.mirror_every, int, f"phase {self.name!r}: mirror_every")
        _positive(self.mirror_every, f"phase {self.name!r}: mirror_every", allow_zero=True)
        expect(self.mirror_steps, int, f"phase {self.name!r}: mirror_steps")
        _positive(self.mirror_steps, f"phase {self.name!r}: mirror_steps")
        expect(self.mirror_follows_lr, bool, f"phase {self.name!r}: mirror_follows_lr")


@dataclass(frozen=True)
class MirrorPhase(Tracked):
    """``steps`` steps of spontaneous noise that teach the ``wm`` feedback synapses; W is never touched."""

    name: str = "mirror"
    steps: int = 500
    record_every: int = 25
    settings: MirrorSettings = field(default_factory=MirrorSettings)
    kind: str = field(default="mirror", init=False)

    def __post_init__(self) -> None:
        for key in ("steps", "record_every"):
            expect(getattr(self, key), int, f"phase {self.name!r}: {key}")
            _positive(getattr(self, key), f"phase {self.name!r}: {key}")


@dataclass(frozen=True)
class PrenatalPhase(Tracked):
    """Training on random inputs with random labels before any data, feedback fixed (Cheon et al.).

    Parameters
    ----------
    samples
        Number of noise samples presented (steps = samples / batch_size).
    dataset_size
        Number of distinct noise patterns, each with its fixed random label, presented in shuffled passes —
        the network memorises them, and this is what aligns W with B. ``"fresh"`` (None in Python) draws a fresh
        pattern and label for every sample (Cheon et al.'s description; here a control, see docs/phases.md).
    inputs
        ``noise``: N(0, noise_std^2) in the data's input shape; ``zeros``: no input (the labels-only control).
    labels
        ``random``: uniformly random labels; ``uniform``: the target is the uniform distribution over classes,
        i.e. no label signal (the noise-only control).
    learning_rate
        Overrides the optimizer's learning rate for this phase (None: the same).
    keep
        ``all``: the network leaves the phase as trained. ``norms``: the norm-matched control — every weight and
        bias tensor returns to its value before the phase, rescaled to the norm the phase gave it, so the run
        starts with the noise phase's scale (the warm start) but without its alignment.
    """

    name: str = "prenatal"
    samples: int = 192000
    dataset_size: int | str | None = 6400
    batch_size: int = 64
    noise_std: float = 1.0
    inputs: str = "noise"
    labels: str = "random"
    learning_rate: float | None = None
    record_every: int = 25
    keep: str = "all"
    kind: str = field(default="prenatal", init=False)

    def __post_init__(self) -> None:
        w = f"phase {self.name!r}"
        for key in ("samples", "batch_size", "record_every"):
            expect(getattr(self, key), int, f"{w}: {key}")
            _positive(getattr(self, key), f"{w}: {key}")
        if self.dataset_size == "fresh":
            object.__setattr__(self, "dataset_size", None)
        if self.dataset_size is not None:
            if isinstance(self.dataset_size, str):
                raise ConfigError(f"{w}: dataset_size must be a number of patterns or \"fresh\", "
                                  f"got {shown(self.dataset_size)}")
            expect(self.dataset_size, int, f"{w}: dataset_size")
            _positive(self.dataset_size, f"{w}: dataset_size")
        _positive(self.noise_std, f"{w}: noise_std")
        if self.inputs not in ("noise", "zeros"):
            raise ConfigError(f"{w}: inputs must be 'noise' or 'zeros', got {self.inputs!r}")
        if self.labels not in ("random", "uniform"):
            raise ConfigError(f"{w}: labels must be 'random' or 'uniform', got {self.labels!r}")
        if self.learning_rate is not None:
            _positive(self.learning_rate, f"{w}: learning_rate")
        if self.keep not in ("all", "norms"):
            raise ConfigError(f"{w}: keep must be 'all' or 'norms', got {self.keep!r}")

    @property
    def steps(self) -> int:
        """Optimizer steps of the phase."""
        return -(-self.samples // self.batch_size)


Phase = EngagedPhase | MirrorPhase | PrenatalPhase


@dataclass(frozen=True)
class Schedule:
    """An ordered tuple of phases with unique names and at most one engaged phase."""

    phases: tuple[Phase, ...]

    def __post_init__(self) -> None:
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ConfigError(f"phase names must be unique, got {names} (give repeated kinds a 'name')")
        if sum(isinstance(p, EngagedPhase) for p in self.phases) > 1:
            raise ConfigError("a schedule has at most one engaged phase")
        if not self.phases:
            raise ConfigError("a schedule needs at least one phase")

    @property
    def engaged(self) -> EngagedPhase | None:
        """The engaged phase, if any."""
        return next((p for p in self.phases if isinstance(p, EngagedPhase)), None)

    @property
    def mirrors(self) -> bool:
        """Whether any step of it mirrors: a mirror phase, or mirror steps interleaved in the engaged phase."""
        return any(isinstance(p, MirrorPhase) or (isinstance(p, EngagedPhase) and p.mirror_every > 0)
                   for p in self.phases)


_KINDS = {"engaged": EngagedPhase, "mirror": MirrorPhase, "prenatal": PrenatalPhase}
#: The phase kinds a schedule may hold; every backend dispatches on exactly these and refuses any other.
PHASE_KINDS = tuple(_KINDS)
_MIRROR_KEYS = tuple(f.name for f in dataclasses.fields(MirrorSettings))


def mirror_settings_from_dict(table: Mapping[str, Any], where: str = "mirror",
                              base: MirrorSettings | None = None, *, key: str = "mirror") -> MirrorSettings:
    """:class:`MirrorSettings` from a TOML table (unknown keys are errors), on top of ``base``; ``key`` is the
    table's dotted key in the simulation (which setting a read of each field uses)."""
    check_keys(table, _MIRROR_KEYS, where)
    settings = dataclasses.replace(base or MirrorSettings(), **table)
    unread = [k for k in HEBBIAN_KEYS if k in table]
    if settings.estimate == "exact" and unread:
        one = len(unread) == 1
        raise ConfigError(f"{where}: {', '.join(unread)} {'is' if one else 'are'} never read: estimate = \"exact\" "
                          f"sets B to W with no noise (drop {'it' if one else 'them'}, or estimate = \"hebbian\")")
    return set_origins(settings, {**(origins_of(base) if base else {}), **{k: f"{key}.{k}" for k in table}})


def parse_schedule(tables: Sequence[Mapping[str, Any]], *, mirror: MirrorSettings | None = None,
                   where: str = "phases", key: str = "phases") -> Schedule:
    """A :class:`Schedule` from ``[[phases]]`` tables; mirror phases start from the ``mirror`` settings. ``key``:
    the list's dotted key in the simulation (``phases``, ``arms.1.phases``)."""
    phases = []
    for i, table in enumerate(expect(tables, list, where)):
        w = f"{where}[{i}]"
        expect(table, dict, w)
        kind = table.get("kind")
        if kind not in _KINDS:
            raise ConfigError(f"{w}: 'kind' must be one of {', '.join(_KINDS)}, got {kind!r}")
        cls = _KINDS[kind]
        own = [f.name for f in dataclasses.fields(cls) if f.init and f.name != "settings"]
        rest = {k: v for k, v in table.items() if k != "kind"}
        here = f"{key}.{i}"
        if cls is MirrorPhase:
            check_keys(rest, own + list(_MIRROR_KEYS), w)
            settings = mirror_settings_from_dict({k: v for k, v in rest.items() if k in _MIRROR_KEYS}, w, mirror,
                                                 key=here)
            phase: Phase = MirrorPhase(**{k: v for k, v in rest.items() if k in own}, settings=settings)
        else:
            check_keys(rest, own, w)
            phase = cls(**rest)
        phases.append(set_origins(phase, {k: f"{here}.{k}" for k in rest if k in own}))
    return Schedule(tuple(phases))


def refuse_unread_mirror_keys(uses: Sequence[tuple[MirrorSettings, EngagedPhase | None]], where: str) -> None:
    """Refuse the Hebbian settings, and ``mirror_follows_lr``, that only exact mirror steps inherit.

    ``uses``: every mirror step's settings in the simulation, each with the engaged phase that interleaves it (None
    for a mirror phase's). A key set in ``[mirror]`` (or an arm's ``mirror``) that some exact step inherits and no
    Hebbian step reads would be set and never read; so would ``mirror_follows_lr`` where only exact steps follow it.
    """
    read, inherited = set(), set()
    for settings, _ in uses:
        origins = origins_of(settings)
        keys = {origins[k] for k in HEBBIAN_KEYS if k in origins}
        (read if settings.estimate == "hebbian" else inherited).update(keys)
    following = {}  # mirror_follows_lr's key -> whether a Hebbian step follows it
    for settings, engaged in uses:
        if engaged is not None and engaged.mirror_follows_lr:
            key = origins_of(engaged).get("mirror_follows_lr", "mirror_follows_lr")
            following[key] = following.get(key, False) or settings.estimate == "hebbian"
    unread = sorted(inherited - read) + sorted(k for k, hebbian in following.items() if not hebbian)
    if unread:
        one = len(unread) == 1
        raise ConfigError(f"{where}: {', '.join(unread)} {'is' if one else 'are'} never read: every mirror step that "
                          f"would use {'it' if one else 'them'} has estimate = \"exact\" (B set to W, no noise)")
