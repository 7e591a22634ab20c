"""Test-set transforms as written in simulation files (``"rotate:20"``): parsed here without torch, so the schema
(:mod:`neurocircuit.simulation`) checks them without importing it; :func:`neurocircuit.data.transform_images`
applies them."""

from __future__ import annotations

from .errors import ConfigError

__all__ = ["parse_transform", "TRANSFORM_KINDS"]

#: rotate (degrees), shift (pixels, right and down), scale (factor about the centre).
TRANSFORM_KINDS = ("rotate", "shift", "scale")


def parse_transform(spec: str) -> tuple[str, float]:
    """``"rotate:30"`` -> ("rotate", 30.0); kinds: rotate (degrees), shift (pixels), scale (factor)."""
    kind, _, amount = spec.partition(":")
    if kind not in TRANSFORM_KINDS or not amount:
        raise ConfigError(f"bad transform {spec!r}: use rotate:DEGREES, shift:PIXELS or scale:FACTOR")
    try:
        return kind, float(amount)
    except ValueError:
        raise ConfigError(f"bad transform {spec!r}: {amount!r} is not a number") from None
