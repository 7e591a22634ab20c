"""Limits checked before any work: counts (time steps, recorded samples, training steps, sweep points) and memory.

Every check here is cheap arithmetic on the description (never an allocation to find out) and refuses in one line
that gives the number and the ceiling, as a :class:`~neurocircuit.errors.ConfigError` (or
:class:`~neurocircuit.errors.ShapeError` for data that do not fit a circuit). The ceilings:

- :data:`MAX_SIMULATED_STEPS` time steps of one Brian2 run (10⁹: days of simulation at the numpy target),
- :data:`MAX_RECORDED_SAMPLES` values in one Brian2 monitor (10⁸: 0.8 GB of float64),
- :data:`MAX_TRAINING_STEPS` optimizer (or mirror, prenatal) steps of one torch run (10⁹),
- :data:`MAX_SWEEP_POINTS` points of a sweep run without ``--yes`` (``run_sweep(..., max_points=None)``),
- the memory available on the machine now (psutil's ``available``, else /proc/meminfo's ``MemAvailable``), or
  ``$NEUROCIRCUIT_MEMORY_LIMIT`` where set (bytes, or a number with a unit: ``"512 GiB"``, ``"2 TB"``): a run whose
  estimated need, times :data:`MEMORY_SAFETY_FACTOR` (for what the estimate leaves out: the allocator's slack,
  autograd's and Brian2's workspaces, the interpreter and libraries) and times the runs at a time (``--jobs N``,
  :func:`runs_at_once`), is above it is refused, naming its largest layer or projection.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

from .errors import ConfigError, ShapeError

__all__ = ["MAX_SIMULATED_STEPS", "MAX_RECORDED_SAMPLES", "MAX_TRAINING_STEPS", "MAX_SWEEP_POINTS", "MEMORY_ENV",
           "MEMORY_SAFETY_FACTOR", "check_count", "available_memory", "memory_limit",
           "runs_at_once", "format_bytes", "check_memory", "check_data_fits"]

#: Time steps of one Brian2 run (its whole protocol, at ``brian2.dt``).
MAX_SIMULATED_STEPS = 10**9
#: Values recorded by one Brian2 monitor (time samples x recorded units).
MAX_RECORDED_SAMPLES = 10**8
#: Steps of one torch phase (engaged: epochs x batches; mirror and prenatal: their steps).
MAX_TRAINING_STEPS = 10**9
#: Points of a sweep that run without ``--yes``.
MAX_SWEEP_POINTS = 10_000
#: Environment variable that sets the memory a run may plan for, in place of the machine's.
MEMORY_ENV = "NEUROCIRCUIT_MEMORY_LIMIT"
#: What a run's estimated memory is multiplied by before it is compared with the memory there is: the estimate counts
#: weights, optimizer state and activations only (a 64-30000-30000-10 bp network estimated at 14.4 GB was
#: OOM-killed with 17 GiB available).
MEMORY_SAFETY_FACTOR = 1.5
#: What a Brian2 monitor's samples are multiplied by in the memory estimate: its arrays double their capacity as they
#: fill (brian2's DynamicArray, a C++ vector in standalone), and while one is copied into a buffer twice its size both
#: exist -- up to three times the samples at the peak.
MONITOR_GROWTH = 3.0
_AT_ONCE = [1]  # runs that share the machine's memory (runs_at_once)

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50}


def check_count(count: float, what: str, ceiling: int, hint: str = "") -> int:
    """``count`` (a number of steps or samples) as an int, refused if it is zero (or less) or above ``ceiling``.

    ``what`` names it in the message ("brian2.presentation / brian2.dt"); ``hint`` says which settings change it.
    """
    if not math.isfinite(count) or count > ceiling:
        shown = f"{count:.3g}" if math.isfinite(count) else str(count)
        raise ConfigError(f"{what} is {shown}, above the ceiling of {ceiling:.0e} (neurocircuit.limits)"
                          + (f": {hint}" if hint else ""))
    if count < 1:
        raise ConfigError(f"{what} is {count:.3g}: nothing would run" + (f" ({hint})" if hint else ""))
    return int(count)


def available_memory() -> int:
    """Memory available to a new run now, in bytes (psutil's ``available``, else /proc/meminfo's ``MemAvailable``);
    0 where neither answers."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@contextlib.contextmanager
def runs_at_once(count: int) -> Iterator[None]:
    """Within it, :func:`check_memory` plans for ``count`` runs sharing the memory (``--jobs N``)."""
    _AT_ONCE.append(max(1, int(count)))
    try:
        yield
    finally:
        _AT_ONCE.pop()


def memory_limit() -> tuple[int, str]:
    """(bytes, how to say it): ``$NEUROCIRCUIT_MEMORY_LIMIT`` where set, else the memory available now (0:
    unknown)."""
    text = os.environ.get(MEMORY_ENV, "").strip()
    if not text:
        free = available_memory()
        return free, f"this machine has {format_bytes(free)} available"
    match = re.fullmatch(r"([0-9.]+(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)", text)
    if match is None or match.group(2).lower() not in _UNITS:
        raise ConfigError(f"${MEMORY_ENV} = {text!r}: expected a number of bytes, or a number and a unit like "
                          "'512 GiB'")
    value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"${MEMORY_ENV} = {text!r}: expected a positive size")
    return int(value), f"${MEMORY_ENV} allows {format_bytes(value)}"


def format_bytes(n: float) -> str:
    """``n`` bytes as people write it: "23 GiB" below a TB, decimal "8.0 TB" above (where binary looks odd)."""
    if n >= 10**12:
        return f"{n / 10**12:.1f} TB" if n < 10**15 else f"{n / 10**15:.3g} PB"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value >= 10 else f"{value:.1f} {unit}"
    return f"{int(n)} B"


def check_memory(parts: Sequence[tuple[str, float, str]], what: str) -> None:
    """Refuse a run whose estimated memory, times :data:`MEMORY_SAFETY_FACTOR` and the runs at a time
    (:func:`runs_at_once`), is above :func:`memory_limit`.

    ``parts`` are (name, bytes, how the estimate was made) per layer or projection (and anything else the run
    keeps); ``what`` names the run. The message names the largest part, the totals and the factors.
    """
    total = sum(size for _, size, _ in parts)
    at_once = _AT_ONCE[-1]
    planned = total * MEMORY_SAFETY_FACTOR * at_once
    limit, said = memory_limit()
    if not parts or limit <= 0 or planned <= limit:
        return
    name, size, how = max(parts, key=lambda part: part[1])
    whole = f"; {what} needs {format_bytes(total)} in all" if len(parts) > 1 else ""
    runs = f" and {at_once} runs at a time (--jobs)" if at_once > 1 else ""
    raise ConfigError(f"{name} needs {format_bytes(size)} ({how}){whole}, {format_bytes(planned)} with the safety "
                      f"factor {MEMORY_SAFETY_FACTOR:g} (for what the estimate leaves out){runs}; {said} (set "
                      f"${MEMORY_ENV} to plan for more)")


def check_data_fits(circuit: Any, info: Any) -> None:
    """Refuse data whose inputs or classes do not fit ``circuit`` (a :class:`~neurocircuit.circuit.Circuit`;
    ``info`` a :class:`~neurocircuit.datasets.DatasetInfo`), naming both shapes."""
    size = math.prod(info.input_shape)
    if size != circuit.input.size:
        raise ShapeError(f"dataset {info.name!r} has inputs of shape {tuple(info.input_shape)}, but model "
                         f"{circuit.name!r} expects {circuit.input.shape}")
    if info.n_outputs != circuit.output.size:
        raise ShapeError(f"dataset {info.name!r} has {info.n_outputs} outputs, but model {circuit.name!r} "
                         f"has {circuit.output.size} output units")


def _arrow(proj: Any) -> str:
    return f"projection {proj.source}→{proj.target}"


def _weights(circuit: Any, proj: Any) -> tuple[int, str]:
    """(number of weights, how to say it) of projection ``proj`` of ``circuit``; 0 for a pooling (fixed) one."""
    src, tgt = circuit.population(proj.source), circuit.population(proj.target)
    if proj.kind == "dense":
        return src.size * tgt.size, f"{tgt.size:,}×{src.size:,}"
    if proj.kind == "conv2d":
        kh, kw = proj.kernel_size
        return tgt.shape[0] * (src.shape[0] // proj.groups) * kh * kw, \
            f"{tgt.shape[0]}×{src.shape[0] // proj.groups}×{kh}×{kw}"
    return 0, ""


def torch_memory(circuit: Any, batch_size: int, optimizer_states: int) -> list[tuple[str, float, str]]:
    """The memory a torch network of ``circuit`` needs, roughly, per projection (float32 W, its gradient, B and
    ``optimizer_states`` optimizer buffers of W's size) and for one batch of activations (value, gradient and the
    copy autograd keeps, for every population), as :func:`check_memory` takes it."""
    copies = 3 + optimizer_states
    parts = []
    for proj in circuit.projections:
        count, shape = _weights(circuit, proj)
        if count:
            parts.append((_arrow(proj), 4.0 * copies * count,
                          f"{shape} float32 weights, their gradient, B and {optimizer_states} optimizer state"
                          + ("s" if optimizer_states != 1 else "")))
    units = sum(p.size for p in circuit.populations)
    parts.append(("one batch of activations", 4.0 * 3 * batch_size * units,
                  f"{batch_size} samples × {units:,} units, float32, with gradients"))
    return parts


#: Bytes a Brian2 synapse keeps: its float64 weight, two int32 indices and Brian2's per-synapse bookkeeping.
BYTES_PER_SYNAPSE = 40


def brian_memory(circuit: Any, weight_snapshots: int = 0) -> list[tuple[str, float, str]]:
    """The memory a Brian2 circuit of ``circuit`` needs, roughly: per projection its W and B synapses
    (:data:`BYTES_PER_SYNAPSE` each) and ``weight_snapshots`` float64 snapshots of both, recorded by monitors
    (:data:`MONITOR_GROWTH`)."""
    parts = []
    for proj in circuit.projections:
        count, shape = _weights(circuit, proj)
        snapshots = (f" and {weight_snapshots} snapshots of each (×{MONITOR_GROWTH:g} as a monitor's arrays grow)"
                     if weight_snapshots else "")
        parts.append((_arrow(proj), 2.0 * count * (BYTES_PER_SYNAPSE + 8 * MONITOR_GROWTH * weight_snapshots),
                      f"{shape} W and B synapses{snapshots}"))
    return parts
