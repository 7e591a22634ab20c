"""What the circuit experiences, step by step: the phase schedule unrolled into per-step arrays.

One *step* of the Brian2 backend is one presentation window (``RateParameters.presentation`` of simulated time):
one data sample, one prenatal noise pattern, or one window of spontaneous activity. The arrays become Brian2
``TimedArray``s, so a whole schedule runs as one ``Network.run`` — phases switch by flags, not by rebuilding, and the
same network runs on the runtime and ``cpp_standalone`` devices (no Python callbacks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from ..phases import EngagedPhase, MirrorPhase, PrenatalPhase

__all__ = ["Protocol", "build_protocol", "protocol_steps", "mirror_phase_name"]


@dataclass
class Protocol:
    """Per-step inputs and flags. ``labels`` is -1 where a step is not a test presentation."""

    stimulus: np.ndarray            # (steps, n_in)
    target: np.ndarray              # (steps, n_out)
    mirror: np.ndarray              # (steps,) 1 during spontaneous activity
    learn_w: np.ndarray             # (steps,) forward plasticity on (engaged learning and prenatal phases)
    learn_b: np.ndarray             # (steps,) Kolen-Pollack feedback plasticity on (engaged learning only)
    phase: np.ndarray               # (steps,) phase name of each step
    labels: np.ndarray              # (steps,) class of a test or validation presentation, else -1
    test_blocks: list[tuple[int, int, int]] = field(default_factory=list)  # (first step, end step, epoch)
    val_blocks: list[tuple[int, int, int]] = field(default_factory=list)  # the same, of the validation set
    test_windows: int = 1           # consecutive windows each test or validation sample is shown for

    @property
    def steps(self) -> int:
        return len(self.mirror)

    def answer_steps(self, start: int, end: int) -> np.ndarray:
        """The last window of each sample of the scored block ``[start, end)``: where its answer is read."""
        return np.arange(start + self.test_windows - 1, end, self.test_windows)

    def continued(self) -> np.ndarray:
        """(steps,) True where a window shows the same scored sample as the window before it."""
        out = np.zeros(self.steps, dtype=bool)
        for start, end, _ in (*self.test_blocks, *self.val_blocks):
            out[start:end] = (np.arange(end - start) % self.test_windows) != 0
        return out


def _blank(n: int, n_in: int, n_out: int, name: str) -> dict[str, np.ndarray]:
    return {"stimulus": np.zeros((n, n_in)), "target": np.zeros((n, n_out)), "mirror": np.zeros(n),
            "learn_w": np.zeros(n), "learn_b": np.zeros(n), "phase": np.full(n, name, dtype=object),
            "labels": np.full(n, -1, dtype=np.int64)}


def mirror_phase_name(phase: EngagedPhase) -> str:
    """The label of the mirror windows interleaved in engaged phase ``phase``."""
    return f"{phase.name}_mirror"


def _interleave(part: dict[str, np.ndarray], phase: EngagedPhase, trained: int) -> dict[str, np.ndarray]:
    """``part`` (training windows) with ``phase.mirror_steps`` mirror windows after every training window whose
    count in the phase (``trained`` before this part, plus its own) is a multiple of ``phase.mirror_every``."""
    n = len(part["mirror"])
    after = np.flatnonzero((trained + np.arange(1, n + 1)) % phase.mirror_every == 0)
    # row of each output window in ``part``, or -1 for a mirror window
    rows = np.insert(np.arange(n), np.repeat(after + 1, phase.mirror_steps), -1)
    out = _blank(len(rows), part["stimulus"].shape[1], part["target"].shape[1], mirror_phase_name(phase))
    data = rows >= 0
    for key in part:
        out[key][data] = part[key][rows[data]]
    out["mirror"][~data] = 1
    return out


def build_protocol(phases: Sequence[EngagedPhase | MirrorPhase | PrenatalPhase], *, n_in: int, n_out: int,
                   train: tuple[np.ndarray, np.ndarray] | None = None,
                   test: tuple[np.ndarray, np.ndarray] | None = None, epochs: int = 1,
                   seed: int = 0, validation: tuple[np.ndarray, np.ndarray] | None = None,
                   interleave: bool = True, test_windows: int = 1) -> Protocol:
    """Unroll ``phases``.

    Engaged phases present every training sample once per epoch (shuffled) and then every test sample and (if
    given) every ``validation`` sample with plasticity off; with ``mirror_every = k`` (and ``interleave``) each
    k-th training presentation of the phase (counted across its epochs, as the torch trainer counts its steps) is
    followed by ``mirror_steps`` windows of spontaneous activity, labelled ``"<phase>_mirror"``, in which only the
    ``wm`` feedback synapses learn. ``interleave = False`` leaves them out: a circuit without ``wm`` synapses
    would only idle through them (the torch backend mirrors only models with ``wm`` layers, too). Each test and
    validation sample is shown for ``test_windows`` consecutive windows (its answer is read at the last: see
    :meth:`Protocol.answer_steps`). Prenatal phases present Gaussian noise patterns with random one-hot targets."""
    if isinstance(test_windows, bool) or not isinstance(test_windows, int) or test_windows < 1:
        raise ConfigError(f"test_windows must be a whole number >= 1, got {test_windows!r}")
    rng = np.random.default_rng(seed)
    parts: list[dict[str, np.ndarray]] = []
    kinds: list[str] = []  # per part: "test", "val" (a block that is scored) or ""
    for phase in phases:
        if isinstance(phase, MirrorPhase):
            part = _blank(phase.steps, n_in, n_out, phase.name)
            part["mirror"][:] = 1
            parts.append(part)
            kinds.append("")
        elif isinstance(phase, PrenatalPhase):
            n = phase.samples
            part = _blank(n, n_in, n_out, phase.name)
            # A fixed set of noise patterns with fixed random labels, presented in shuffled passes (the mapping is
            # memorised, which is what aligns W with B), or fresh patterns at every step (dataset_size "fresh": None).
            pool = phase.dataset_size or n
            patterns = rng.normal(0.0, phase.noise_std, (pool, n_in)) if phase.inputs == "noise" \
                else np.zeros((pool, n_in))
            classes = rng.integers(0, n_out, pool)
            order = np.concatenate([rng.permutation(pool) for _ in range(-(-n // pool))])[:n]
            part["stimulus"] = patterns[order]
            if phase.labels == "random":
                part["target"][np.arange(n), classes[order]] = 1.0
            else:  # the uniform distribution: an error that carries no label information
                part["target"][:] = 1.0 / n_out
            part["learn_w"][:] = 1
            parts.append(part)
            kinds.append("")
        elif isinstance(phase, EngagedPhase):
            if train is None or test is None:
                raise ConfigError(f"phase {phase.name!r}: an engaged phase needs data")
            x_train, y_train = train
            trained = 0  # training presentations of this phase so far: the interleaving counts across epochs
            for _ in range(phase.epochs if phase.epochs is not None else epochs):
                order = rng.permutation(len(x_train))
                part = _blank(len(order), n_in, n_out, phase.name)
                part["stimulus"] = x_train[order].reshape(len(order), -1)
                part["target"][np.arange(len(order)), y_train[order]] = 1.0
                part["learn_w"][:] = 1
                part["learn_b"][:] = 1
                if interleave and phase.mirror_every:
                    part = _interleave(part, phase, trained)
                trained += len(order)
                parts.append(part)
                kinds.append("")
                # The validation block follows the test block, so the test block sits where it always did.
                for kind, (x, y) in (("test", test), ("val", validation)) if validation is not None \
                        else (("test", test),):
                    shown = np.repeat(np.arange(len(x)), test_windows)  # sample of each window
                    block = _blank(len(shown), n_in, n_out, f"{phase.name}_{kind}")
                    block["stimulus"] = x.reshape(len(x), -1)[shown]
                    block["target"][np.arange(len(shown)), np.asarray(y)[shown]] = 1.0
                    block["labels"] = np.asarray(y, dtype=np.int64)[shown]
                    parts.append(block)
                    kinds.append(kind)
        else:  # dispatch is explicit: a kind without a branch here is never run as another
            raise ConfigError(f"phase {phase.name!r}: the brian2 backend has no phase of kind "
                              f"{getattr(phase, 'kind', type(phase).__name__)!r}")
    if not parts:
        raise ConfigError("the schedule has no phases")
    blocks: dict[str, list[tuple[int, int, int]]] = {"test": [], "val": []}
    start = 0
    for part, kind in zip(parts, kinds):
        n = len(part["mirror"])
        if kind and n:
            blocks[kind].append((start, start + n, len(blocks[kind]) + 1))
        start += n
    # One last blank window, so the state at the end of the last real window is recorded at its start.
    parts.append(_blank(1, n_in, n_out, "end"))
    merged = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    return Protocol(**merged, test_blocks=blocks["test"], val_blocks=blocks["val"], test_windows=test_windows)


def protocol_steps(phases: Sequence[EngagedPhase | MirrorPhase | PrenatalPhase], *, sizes: tuple[int, int, int],
                   epochs: int = 1, interleave: bool = True, test_windows: int = 1) -> int:
    """The number of windows :func:`build_protocol` unrolls ``phases`` into, without building it: ``sizes`` are
    the numbers of training, test and validation samples (0 for no validation set)."""
    n_train, n_test, n_val = sizes
    steps = 1  # the closing window
    for phase in phases:
        if isinstance(phase, MirrorPhase):
            steps += phase.steps
        elif isinstance(phase, PrenatalPhase):
            steps += phase.samples
        elif isinstance(phase, EngagedPhase):
            count = phase.epochs if phase.epochs is not None else epochs
            steps += count * (n_train + test_windows * (n_test + n_val))
            if interleave and phase.mirror_every:  # mirror windows after every mirror_every-th training window
                steps += (count * n_train // phase.mirror_every) * phase.mirror_steps
    return steps
