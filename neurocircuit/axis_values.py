"""The values of a sweep axis written as a rule (``start:stop:step``, ``lin:``, ``log:``, ``random:``), computed on
demand: an axis knows its length at once and makes a value only when asked, so a sweep counts its points before it
builds any (:mod:`neurocircuit.sweep`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ._toml import expect_seed
from .errors import ConfigError

__all__ = ["Span", "int_range", "spaced", "drawn"]

#: Random values are drawn only when read; below this many, all of them when the axis is made, too, to refuse
#: repeats at once.
_DRAW_EAGERLY = 10_000
#: Random values are drawn (and kept) this many at a time, so an axis of 10^14 values costs no more than a small one.
_CHUNK = 4096


def _rounded(value: float) -> float:
    return float(f"{value:.12g}")


class Span(Sequence):
    """A read-only sequence of ``length`` values, value ``i`` made by ``item(i)`` when read. It equals any sequence
    (a tuple, a list) with the same values, as the tuple of its values would."""

    def __init__(self, length: int, item: Callable[[int], Any], rule: str,
                 repeats: Callable[[], bool] = lambda: False) -> None:
        self._length, self._item, self.rule, self._repeats = length, item, rule, repeats

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(self._length)))
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError(index)
        return self._item(index)

    def __iter__(self) -> Iterator[Any]:
        return (self._item(i) for i in range(self._length))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(other) == self._length and all(a == b for a, b in zip(self, other))

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self)) if self._length <= 10 else f"<{self._length:,} values: {self.rule}>"

    def repeats(self) -> bool:
        """True if two values are the same (as an axis must not have)."""
        return self._repeats()


def int_range(start: int, stop: int, step: int, where: str) -> Span:
    """``range(start, stop, step)``; a zero step or an empty range refused."""
    if step == 0:
        raise ConfigError(f"{where}: the step of a range must not be 0")
    values = range(start, stop, step)
    if not values:
        raise ConfigError(f"{where}: the range {start}:{stop}:{step} is empty")
    return Span(len(values), values.__getitem__, f"range {start}:{stop}:{step}")


def spaced(kind: str, start: float, stop: float, n: int, where: str) -> Span:
    """``n`` evenly (``lin``) or log-evenly (``log``) spaced values from ``start`` to ``stop``, both included, each
    rounded to 12 significant digits."""
    if n < 1:
        raise ConfigError(f"{where}: needs at least 1 value, got {n}")
    if not (math.isfinite(start) and math.isfinite(stop)):
        raise ConfigError(f"{where}: the ends must be finite numbers, got {start} and {stop}")
    rule = f"{kind}:{start}:{stop}:{n}"
    if kind == "log":
        if start <= 0 or stop <= 0:
            raise ConfigError(f"{where}: log spacing needs positive ends, got {start} and {stop}")
        a, b = math.log10(start), math.log10(stop)

        def item(i: int) -> float:
            return _rounded(10 ** (a + (b - a) * i / (n - 1) if n > 1 else a))
    else:
        def item(i: int) -> float:
            return _rounded(start + (stop - start) * i / (n - 1) if n > 1 else start)

    # the gaps are smallest (after rounding) at one end or the other: a repeat shows there first
    return Span(n, item, rule, lambda: n > 1 and (item(0) == item(1) or item(n - 2) == item(n - 1)))


def drawn(low: float, high: float, n: int, seed: int, log: bool, where: str) -> Span:
    """``n`` uniform (``log``: log-uniform) random values in [low, high) from ``seed``, drawn when read
    (:data:`_CHUNK` at a time, the last chunk read kept): those of ``numpy.random.default_rng(seed).uniform(low,
    high, n)`` (``log``: 10 to the power of its values between the ends' logarithms), however large ``n``."""
    if n < 1 or not low < high:
        raise ConfigError(f"{where}: random values need low < high and n >= 1")
    if log and low <= 0:
        raise ConfigError(f"{where}: log-uniform values need low > 0")
    expect_seed(seed, f"{where}: SEED")
    ends = (math.log10(low), math.log10(high)) if log else (low, high)
    cache: dict[int, Any] = {}  # the one chunk last read: memory stays bounded whatever n is

    def chunk(c: int) -> Any:
        if c not in cache:
            import numpy as np

            # Value i is the generator's i-th double (one 64-bit output each), so jumping to c * _CHUNK and drawing
            # there gives exactly what default_rng(seed).uniform(*ends, n) gives (tests/test_hostile_limits.py).
            bits = np.random.PCG64(seed)
            bits.advance(c * _CHUNK)
            cache.clear()
            cache[c] = np.random.Generator(bits).uniform(*ends, min(_CHUNK, n - c * _CHUNK))
        return cache[c]

    def item(i: int) -> float:
        value = chunk(i // _CHUNK)[i % _CHUNK]
        return _rounded(10 ** value if log else value)

    def repeats() -> bool:
        return n <= _DRAW_EAGERLY and len({item(i) for i in range(n)}) < n

    return Span(n, item, f"{'lograndom' if log else 'random'}:{low}:{high}:{n}:{seed}", repeats)
