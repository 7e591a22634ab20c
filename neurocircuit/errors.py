"""Exceptions raised for bad input. The CLI turns each into a one-line message and exit code 2."""

from __future__ import annotations

__all__ = ["NeurocircuitError", "ConfigError", "ShapeError", "UnknownNameError", "DataError",
           "NoAlignmentWarning", "FeedbackScaleWarning"]


class NeurocircuitError(Exception):
    """Base class of every error that describes bad input rather than a bug."""


class ConfigError(NeurocircuitError, ValueError):
    """A circuit or simulation description is malformed (missing or mistyped key, bad value)."""


class ShapeError(NeurocircuitError, ValueError):
    """Population shapes do not chain through a projection, or a tensor has the wrong shape."""


class UnknownNameError(NeurocircuitError, KeyError):
    """A rule, model, simulation or data set name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class DataError(NeurocircuitError, OSError):
    """A data set is missing or unreadable."""


class NoAlignmentWarning(UserWarning):
    """A setting switches a rule's alignment force off (e.g. Kolen-Pollack without decay): B will not follow W."""


class FeedbackScaleWarning(UserWarning):
    """A setting makes B settle at a multiple of W far from 1 (e.g. a weight mirror whose noise amplitude, learning
    rate and decay do not balance): the error each such layer sends down is scaled by that multiple."""
