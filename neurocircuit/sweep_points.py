"""A sweep's points as simulation tables, and which of them are parsed before the sweep runs
(:mod:`neurocircuit.sweep`): the first point, then each value of each axis once, at most
:data:`CHECKED_UP_FRONT` of them; every other point is parsed as it runs, and a bad one fails alone, as a failed
point."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .errors import NeurocircuitError

__all__ = ["point_id", "validate", "CHECKED_UP_FRONT"]

#: Points whose simulation is parsed before a sweep starts: the first, then each value of each axis once (the
#: other axes at their first value), at most this many; any other point is parsed as it runs (and fails alone).
CHECKED_UP_FRONT = 200


def point_id(point: Mapping[str, Any]) -> str:
    """A stable file name for a point: a hash of its settings."""
    text = json.dumps({k: point[k] for k in sorted(point)}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _prepare(raw: Mapping[str, Any], where: str) -> Callable[[], Any]:
    """Parse a point's simulation table (errors name the point) and return what runs it."""
    from .progress import nested
    from .runs import run_simulation
    from .simulation import parse_simulation

    sim = parse_simulation(raw, source=where)

    def run() -> Any:
        with nested():  # the sweep logs a line per point, not the lines of the point's runs
            return run_simulation(sim, progress=False)

    return run


def _base_table(sweep: Any) -> dict[str, Any]:
    from .simulation import apply_settings, read_simulation

    return apply_settings(read_simulation(sweep.simulation), sweep.fixed)


def _point_table(base: Mapping[str, Any], point: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The simulation table of ``point`` (``base`` with the point's settings) and the label errors give it."""
    from .simulation import set_key

    raw = copy.deepcopy(base)
    for key, value in point.items():
        set_key(raw, key, value)
    return raw, f"sweep point {json.dumps(point, default=str)}"


def _parse_point(raw: dict[str, Any], where: str) -> None:
    try:
        _prepare(raw, where)
    except NeurocircuitError as exc:
        raise type(exc)(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None


def _probes(sweep: Any) -> Iterator[dict[str, Any]]:
    """The first point, then (grid) each other value of each axis with the other axes at their first values, or
    (zip) the next points."""
    if sweep.mode == "zip":
        yield from sweep.iter_points()
        return
    first = {a.key: a.values[0] for a in sweep.axes}
    yield first
    for axis in sweep.axes:
        for value in itertools.islice(axis.values, 1, None):
            yield {**first, axis.key: value}


def validate(sweep: Any, limit: int = CHECKED_UP_FRONT) -> None:
    """Parse the simulation of the first point and of each value of each axis (at most ``limit`` points), so a bad
    key or value fails before anything runs; any other point is parsed as it runs."""
    base = _base_table(sweep)
    for point in itertools.islice(_probes(sweep), limit):
        _parse_point(*_point_table(base, point))
