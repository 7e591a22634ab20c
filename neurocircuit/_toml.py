"""Strict reading of TOML tables: every key is either known or an error that names it."""

from __future__ import annotations

import difflib
import math
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["read_toml", "check_keys", "expect", "expect_number", "shown"]


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, turning a syntax error into a :class:`ConfigError` that names the file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {exc.start}): TOML files are UTF-8") from None


def check_keys(table: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """Raise :class:`ConfigError` for the first key of ``table`` not in ``allowed``, suggesting a fix."""
    allowed = list(allowed)
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(sorted(allowed))})"
            raise ConfigError(f"{where}: unknown key {key!r}{hint}")


def expect(value: Any, types: type | tuple[type, ...], where: str) -> Any:
    """Return ``value`` if it is an instance of ``types`` (bool is never an int here), else raise."""
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in _as_tuple(types))
    if not ok:
        names = " or ".join(t.__name__ for t in _as_tuple(types))
        raise ConfigError(f"{where}: expected {names}, got {shown(value)}")
    return value


def expect_number(value: Any, where: str, *, low: float = 0.0, strict: bool = True, integer: bool = False) -> Any:
    """``value`` if it is a finite number above ``low`` (or equal, unless ``strict``), else a ConfigError."""
    expect(value, int if integer else (int, float), where)
    if not math.isfinite(value) or value < low or (strict and value == low):
        raise ConfigError(f"{where} must be a finite number {'>' if strict else '>='} {low:g}, got {shown(value)}")
    return value


def shown(value: Any) -> str:
    """``value`` as an error message quotes it: its repr, and for a string that reads as a number (``"0.05"``,
    quoted in TOML or ``--set``) a note that it is a string, since the repr alone looks like the number."""
    if isinstance(value, str):
        try:
            float(value.strip())
        except ValueError:
            return repr(value)
        return f"{value!r} (a string: write {value.strip()} without quotes for a number)"
    return repr(value)


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)
