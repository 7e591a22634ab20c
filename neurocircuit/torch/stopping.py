"""Stopping a run cleanly: SIGINT/SIGTERM become a request the training loop honours between steps."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["StopFlag", "TrainingInterrupted"]


class TrainingInterrupted(KeyboardInterrupt):
    """The run was asked to stop (signal or ``stop_after_steps``) and saved a checkpoint first; ``signalled``: by a
    signal (a worker pool then starts no further task in that process)."""

    def __init__(self, message: str = "", *, signalled: bool = False) -> None:
        super().__init__(message)
        self.signalled = signalled



class StopFlag:
    """Turns SIGINT/SIGTERM into a request the loop honours between steps (after saving a checkpoint).
    A second SIGINT interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopFlag]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        try:
            yield self
        finally:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)

