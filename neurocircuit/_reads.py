"""Which settings a run reads: the measurement behind "a setting is honoured or refused, never silently ignored".

Parsed settings (the records of :mod:`neurocircuit.simulation`, :mod:`neurocircuit.phases`, the Brian2 parameters,
and the ``[data]``/``[optimizer]``/rule-option tables) remember, per field, the dotted key of the simulation table
that set it (``train.epochs``, ``arms.1.phases.0.steps``, ``brian2.spiking.tau_trace``). Inside
:func:`recording_reads` every read of such a field by the code that runs the simulation is logged, while reads by
the records' own checks, ``repr``, equality and ``dataclasses`` helpers are not. A test runs a simulation with
every key set and fails on any key that was set but never read (``tests/test_honour.py``).

Outside :func:`recording_reads` the cost is one check of an empty list per attribute read.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

__all__ = ["recording_reads", "note_read", "set_origins", "origins_of", "Tracked", "TrackedDict"]

_LOGS: list[set[str]] = []

# Reads from these functions check or copy a record; they are not the run using a setting.
_INTERNAL_FUNCTIONS = frozenset({"__post_init__", "__repr__", "__eq__", "__hash__", "to_dict",
                                 "_check_plasticity_dt", "__reduce_ex__", "__getstate__", "__deepcopy__"})
_INTERNAL_MODULES = frozenset({"dataclasses", "copy", "copyreg", "pickle", "reprlib", "pprint"})


@contextmanager
def recording_reads() -> Iterator[set[str]]:
    """Collect the dotted keys of every setting read inside the block (nested blocks each collect theirs)."""
    log: set[str] = set()
    _LOGS.append(log)
    try:
        yield log
    finally:
        _LOGS.remove(log)


def note_read(*keys: str) -> None:
    """Log ``keys`` as read (for settings a backend reads from the raw table rather than from a record)."""
    for log in _LOGS:
        log.update(keys)


def _internal_caller(record: Any) -> bool:
    """Whether the read comes from the record's own checks and copies (or a copying module), not from a user."""
    frame = sys._getframe(2)
    return ((frame.f_code.co_name in _INTERNAL_FUNCTIONS and frame.f_locals.get("self") is record)
            or frame.f_globals.get("__name__") in _INTERNAL_MODULES)


def set_origins(record: Any, origins: Mapping[str, str]) -> Any:
    """Attach ``field -> dotted key`` to a parsed record (a :class:`Tracked` dataclass); returns the record."""
    object.__setattr__(record, "_origins", dict(origins))
    return record


def origins_of(record: Any) -> dict[str, str]:
    """The ``field -> dotted key`` map of a record (empty if it has none)."""
    return dict(getattr(record, "__dict__", {}).get("_origins", {}))


class Tracked:
    """Mixin for frozen settings dataclasses: reads of fields that a file set are logged while recording."""

    def __getattribute__(self, name: str) -> Any:
        if _LOGS and name[:1] != "_":
            origins = object.__getattribute__(self, "__dict__").get("_origins")
            if origins and name in origins and not _internal_caller(self):
                note_read(origins[name])
        return object.__getattribute__(self, name)


class TrackedDict(dict):  # type: ignore[type-arg]
    """A settings table (``[data]``, ``[optimizer]``, rule options) whose item reads are logged as
    ``<where>.<key>``. Iterating it is not reading: code that hands every entry on (e.g. as keyword arguments to a
    loader that takes each as a named parameter) calls :meth:`consumed`."""

    def __init__(self, data: Mapping[str, Any] = (), where: str = "") -> None:  # type: ignore[assignment]
        super().__init__(data)
        self.where = where

    def _note(self, key: Any) -> None:
        if _LOGS and key in self:
            note_read(f"{self.where}.{key}")

    def __getitem__(self, key: Any) -> Any:
        self._note(key)
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self._note(key)
        return super().get(key, default)

    def consumed(self, *, without: tuple[str, ...] = ()) -> dict[str, Any]:
        """A plain copy of every entry but ``without``, each logged as read (the receiver takes them all)."""
        out = {k: v for k, v in dict.items(self) if k not in without}
        note_read(*(f"{self.where}.{k}" for k in out))
        return out
