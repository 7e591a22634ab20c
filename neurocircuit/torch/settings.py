"""The ``[torch]`` section: what only the torch backend has, parsed by the backend as ``brian/`` parses
``[brian2]`` (the backend-neutral schema, :mod:`neurocircuit.simulation`, keeps the raw table)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._reads import Tracked
from .._toml import expect, expect_number
from ..errors import ConfigError
from ..simulation import parse_record

__all__ = ["AMP_MODES", "TorchSettings", "torch_settings"]

#: Autocast modes: ``auto`` = bf16 on CUDA, off on CPU.
AMP_MODES = ("auto", "bf16", "fp16", "off")


@dataclass(frozen=True)
class TorchSettings(Tracked):
    """What only the torch backend has: where and how the maths runs, and how runs are kept.

    Parameters
    ----------
    device
        ``auto`` (the local CUDA device if any, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
    amp
        ``auto`` = bf16 autocast on CUDA, off on CPU; ``bf16``, ``fp16`` or ``off``.
    channels_last, compile
        Memory format and ``torch.compile`` of the network (None, the default: on CUDA only, where compiling removes
        the rule layers' per-layer Python from the step; on the CPU eager mode is as fast and starts at once).
    workers
        DataLoader worker processes per process (0: load in the training process).
    checkpoint_every, log_every
        Checkpoint every N optimizer steps (and at every epoch end and phase end; 0: only those); check the loss for
        NaN/inf every N steps.
    """

    device: str = "auto"
    amp: str = "auto"
    channels_last: bool | None = None
    compile: bool | None = None
    workers: int = 0
    checkpoint_every: int = 1000
    log_every: int = 50

    def __post_init__(self) -> None:
        expect(self.device, str, "torch.device")
        if self.amp not in AMP_MODES:
            raise ConfigError(f"torch.amp: unknown value {self.amp!r} (use {', '.join(AMP_MODES)})")
        if self.channels_last is not None:
            expect(self.channels_last, bool, "torch.channels_last")
        if self.compile is not None:
            expect(self.compile, bool, "torch.compile")
        expect_number(self.workers, "torch.workers", strict=False, integer=True)
        expect_number(self.checkpoint_every, "torch.checkpoint_every", strict=False, integer=True)
        expect_number(self.log_every, "torch.log_every", integer=True)


def torch_settings(sim: Any) -> TorchSettings:
    """The :class:`TorchSettings` of a torch simulation's ``[torch]`` table (its backend section); reads of its
    fields are logged under ``torch.<key>`` like every other record's (:mod:`neurocircuit._reads`)."""
    table = sim.backend_section if sim.backend == "torch" else {}
    return parse_record(TorchSettings, dict(table), sim.source, "torch")
