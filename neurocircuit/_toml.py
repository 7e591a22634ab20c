"""Strict reading of TOML tables: every key is either known or an error that names it."""

from __future__ import annotations

import difflib
import math
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["read_toml", "loads_bounded", "check_bounded", "check_keys", "close_name", "expect", "expect_number",
           "expect_seed", "expect_finite", "shown", "MAX_DEPTH", "MAX_SEED"]

#: How deep tables and lists may nest in a simulation (real ones nest a few levels; a deeper one is an accident or
#: an attack that would exhaust Python's recursion in the parser or in a copy).
MAX_DEPTH = 32
#: Seeds are drawn into numpy's and Brian2's generators, which take at most 32-bit seeds.
MAX_SEED = 2**32 - 1
_INT64 = (-(2**63), 2**63 - 1)


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, turning a syntax error into a :class:`ConfigError` that names the file."""
    path = Path(path)
    try:
        return loads_bounded(path.read_bytes().decode(), str(path))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {exc.start}): TOML files are UTF-8") from None


def loads_bounded(text: str, where: str) -> dict[str, Any]:
    """``tomllib.loads(text)``, with nesting deeper than :data:`MAX_DEPTH` and integers wider than 64 bits refused
    in one line naming ``where`` (a syntax error is still a ``TOMLDecodeError``, for the caller to word)."""
    try:
        table = tomllib.loads(text)
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise ConfigError(f"{where}: tables or lists nested more than {MAX_DEPTH} levels deep") from None
    except tomllib.TOMLDecodeError:
        raise
    except ValueError as exc:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        if "integer string conversion" in str(exc):  # said as any integer wider than 64 bits is
            digits = re.search(r"has (\d+) digits", str(exc))
            raise ConfigError(f"{where}: the integer of {digits.group(1) if digits else 'more than 4300'} digits "
                              "does not fit in 64 bits") from None
        raise ConfigError(f"{where}: {' '.join(str(exc).split(';')[0].split())}") from None
    check_bounded(table, where)
    return table


def check_bounded(value: Any, where: str) -> None:
    """Refuse tables and lists nested more than :data:`MAX_DEPTH` levels deep and integers wider than 64 bits
    (walked without recursion, so any depth is answered in one line)."""
    todo = [(value, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, Mapping | list | tuple):
            if depth >= MAX_DEPTH:
                raise ConfigError(f"{where}: tables or lists nested more than {MAX_DEPTH} levels deep")
            todo.extend((v, depth + 1) for v in (item.values() if isinstance(item, Mapping) else item))
        elif isinstance(item, int) and not isinstance(item, bool) and not _INT64[0] <= item <= _INT64[1]:
            raise ConfigError(f"{where}: the integer {_short(item)} does not fit in 64 bits")


def check_keys(table: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """Raise :class:`ConfigError` for the first key of ``table`` not in ``allowed``, suggesting a fix."""
    allowed = list(allowed)
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r}{close_name(key, allowed)}")


def close_name(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the known name closest to a misspelt ``name``, else `` (allowed: ...)``."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(known)})"


def expect(value: Any, types: type | tuple[type, ...], where: str) -> Any:
    """Return ``value`` if it is an instance of ``types`` (bool is never an int here), else raise."""
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in _as_tuple(types))
    if not ok:
        names = " or ".join(t.__name__ for t in _as_tuple(types))
        raise ConfigError(f"{where}: expected {names}, got {shown(value)}")
    return value


def expect_number(value: Any, where: str, *, low: float = 0.0, strict: bool = True, integer: bool = False,
                  high: float | None = None) -> Any:
    """``value`` if it is a finite number above ``low`` (or equal, unless ``strict``) and at most ``high``, else a
    ConfigError: the one validator of every numeric setting's kind (a count, a rate, a fraction, a probability)."""
    expect(value, int if integer else (int, float), where)
    if not math.isfinite(value) or value < low or (strict and value == low):
        raise ConfigError(f"{where} must be a finite number {'>' if strict else '>='} {low:g}"
                          f"{'' if high is None else f' and <= {high:g}'}, got {shown(value)}")
    if high is not None and value > high:
        raise ConfigError(f"{where} must be <= {high:g}, got {shown(value)}")
    return value


def expect_seed(value: Any, where: str) -> int:
    """``value`` if it is an integer seed in [0, :data:`MAX_SEED`], else a ConfigError."""
    expect(value, int, where)
    if not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{where}: a seed must be an integer from 0 to 2**32 - 1, got {_short(value)}")
    return value


def expect_finite(value: Any, where: str) -> Any:
    """``value`` if every number in it (a number, or a list or tuple of them) is finite, else a ConfigError."""
    for item in value if isinstance(value, list | tuple) else (value,):
        if isinstance(item, float) and not math.isfinite(item):
            raise ConfigError(f"{where} must be finite, got {shown(value)}")
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


def _short(number: int) -> str:
    text = str(number)
    return text if len(text) <= 24 else f"{text[:10]}...({len(text)} digits)"


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)
