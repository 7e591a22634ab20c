"""Progress you can follow: bars on a terminal, log lines in a log file.

Library code reports through the package's loggers (``logging.getLogger("neurocircuit...")``) and never prints;
the command line sets the level (``-v``: every record, default: progress, ``--quiet``: warnings and errors) and
installs :class:`LogHandler` (progress on stdout, warnings and errors on stderr). On a terminal (``progress=None``
and stderr a TTY) the runs draw ``tqdm`` bars: one over the runs of a simulation (arms x seeds, with the time
left), one over the steps of the run going on. Elsewhere (a log file) nothing draws a bar: a line as each run ends,
with the time left, and while a run goes on a line at most every :data:`RECORD_INTERVAL` seconds (a record of a
torch run) or every :data:`REPORT_INTERVAL` seconds (the simulated time of a Brian2 run, which has no records until
it ends).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

__all__ = ["RECORD_INTERVAL", "REPORT_INTERVAL", "LogHandler", "RecordLog", "RunProgress", "TimeReport", "HeldWarnings",
           "bars_drawn", "configure_logging", "format_record", "logging_level", "nested", "on_record_chain",
           "progress_bar"]

#: Seconds between two record lines of a run going on, in a log file (a terminal shows a bar instead): long enough
#: that a run of many short runs (the default simulation) logs only a line per run.
RECORD_INTERVAL = 60.0
#: Seconds between two progress lines of a computation without records (a Brian2 network's run), in a log file.
REPORT_INTERVAL = 10.0

_log = logging.getLogger(__name__)
_NESTED: list[bool] = [False]


@contextlib.contextmanager
def nested() -> Iterator[None]:
    """Runs inside a larger job (a sweep's point): their progress lines go to DEBUG, the job reports its own."""
    before, _NESTED[0] = _NESTED[0], True
    try:
        yield
    finally:
        _NESTED[0] = before


def _info() -> int:
    return logging.DEBUG if _NESTED[0] else logging.INFO


def bars_drawn(progress: bool | None) -> bool:
    """Whether bars are drawn: ``progress``, or (None) whether stderr, where they go, is a terminal or a notebook
    (tqdm draws a widget there)."""
    if progress is not None:
        return bool(progress)
    if "ipykernel" in sys.modules:
        return True
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def progress_bar(progress: bool | None, **options: Any) -> Any:
    """A ``tqdm`` bar on stderr, drawn where :func:`bars_drawn` says (not drawn: a bar that does nothing)."""
    from tqdm.auto import tqdm

    return tqdm(disable=not bars_drawn(progress), dynamic_ncols=True, **options)


def _number(x: float) -> str:
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.2f}"


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def format_record(label: str, record: Mapping[str, Any], epochs: int | None = None) -> str:
    """One line for a record: what was measured, nothing for what was not (the record at step 0 has no training
    loss and no speed yet)."""
    parts = [label]
    if _finite(record.get("epoch")):
        parts.append(f"epoch {_number(record['epoch'])}" + (f"/{epochs}" if epochs else ""))
    if "step" in record:
        parts.append(f"step {record['step']}")
    if _finite(record.get("train_loss")):
        parts.append(f"train loss {record['train_loss']:.4f}")
    if _finite(record.get("test_accuracy")):
        parts.append(f"test acc {100 * record['test_accuracy']:.2f} %")
    angles = [a for a in record.get("weight_angle", ()) if _finite(a)]
    if angles:
        parts.append(f"max angle {max(angles):.2f} deg")
    if _finite(record.get("lr")):
        parts.append(f"lr {record['lr']:.3g}")
    if _finite(record.get("images_per_second")) and record["images_per_second"] > 0:
        parts.append(f"{record['images_per_second']:.0f} img/s")
    return "  ".join(parts)


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes} min {s:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class RecordLog:
    """The log lines of one run's records (``on_record(label, record)``; it pickles, for ``--jobs`` workers).

    Every record at DEBUG; where no bar is drawn, one at INFO when :data:`RECORD_INTERVAL` seconds have passed since
    the run's previous INFO line (or its start), so a log file shows a long run going on without a line per epoch.
    """

    def __init__(self, *, drawn: bool = False, interval: float | None = None) -> None:
        self.drawn = drawn
        self.interval = interval
        self.last = time.monotonic()

    def __call__(self, label: str, record: Mapping[str, Any]) -> None:
        now = time.monotonic()
        interval = RECORD_INTERVAL if self.interval is None else self.interval
        due = not self.drawn and record.get("step", 0) and now - self.last >= interval
        if due:
            self.last = now
        logging.getLogger("neurocircuit.runs").log(_info() if due else logging.DEBUG, "%s",
                                                   format_record(label, record, record.get("epochs")))


class RunProgress:
    """Progress over the runs of a simulation (arms x seeds) or the points of a sweep: a bar on a terminal, and a
    line as each ends with its final numbers and the time the remaining ones will take at the pace so far
    (``initial``: how many were done before, as a resumed sweep's finished points; ``workers``: how many runs go
    on at once, as with ``run --jobs``).

    The time left models the pool: each run takes the mean duration of the runs timed so far, those in flight have
    already run since they began, and the runs not begun yet go to whichever worker frees first. A worker's runs are
    taken to end in the order they began (the pool does not say which run a result belongs to).
    """

    def __init__(self, name: str, total: int, *, progress: bool | None = None, unit: str = "run",
                 initial: int = 0, silent: bool = False, workers: int = 1) -> None:
        self.name, self.total, self.done, self.initial = name, total, initial, initial
        self.started, self.silent = time.monotonic(), silent  # silent: no bar, lines at DEBUG (torchrun's rank > 0)
        self.workers = max(1, int(workers))
        self.running = [self.started] * min(self.workers, max(0, total - initial))  # when each run in flight began
        self.waiting = max(0, total - initial) - len(self.running)
        self.durations: list[float] = []
        self.bar = progress_bar(False if silent else progress, total=total, initial=initial, desc=name, unit=unit,
                                leave=False)

    def finished(self, label: str, summary: str = "", *, stored: bool = False) -> None:
        """Run ``label`` ended (``summary``: its final numbers); ``stored``: it had finished before and was read
        back (a resumed run), so it says nothing about the pace of the runs left."""
        now = time.monotonic()
        self.done += 1
        self.bar.update(1)
        # a stored run began when a worker was last freed, and ends at once: the latest start is its own
        began = self.running.pop(-1 if stored else 0) if self.running else now
        if stored:
            self.initial += 1
        else:
            self.durations.append(now - began)
        if self.waiting:  # the freed worker begins the next run
            self.waiting -= 1
            self.running.append(now)
        left = self.time_left(now)
        tail = f"; about {_duration(left)} left" if left is not None else ""
        _log.log(logging.DEBUG if self.silent else _info(), "[%d/%d] %s%s (%s%s)", self.done, self.total, label,
                 f": {summary}" if summary else "", "stored, read back; " * stored + f"{_duration(now - self.started)}"
                 " so far", tail)

    def time_left(self, now: float) -> float | None:
        """Seconds until the last run ends at the pace so far (None: none timed yet, or none left)."""
        if not self.durations or self.done >= self.total:
            return None
        pace = sum(self.durations) / len(self.durations)
        free = [max(now, began + pace) for began in self.running]
        free += [now] * (self.workers - len(free))
        for _ in range(self.waiting):
            free.sort()
            free[0] += pace
        return max(free) - now

    def close(self) -> None:
        self.bar.close()


class TimeReport:
    """Progress of one long computation known as a fraction done (a Brian2 network's simulated time): a bar on a
    terminal, else an INFO line saying how far it is and the time left when it is called (every :attr:`period`
    seconds) with a fraction strictly between 0 and 1, at most once a period."""

    def __init__(self, label: str, total: float, *, unit: str = "s", progress: bool | None = None) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.drawn = bars_drawn(progress)
        self.bar: Any = None
        self.progress = progress
        self.started: float | None = None
        self.last = 0.0

    @property
    def period(self) -> float:
        """How often (wall-clock seconds) to be called."""
        return 1.0 if self.drawn else REPORT_INTERVAL

    def update(self, done: float) -> None:
        """``done`` of ``total`` is done."""
        now = time.monotonic()
        if self.started is None:
            self.started = self.last = now
            if self.drawn:
                self.bar = progress_bar(self.progress, total=round(self.total, 6), desc=self.label, unit=self.unit,
                                        leave=False, bar_format="{l_bar}{bar}| {n:.3g}/{total:.3g} {unit} "
                                                                "[{elapsed}<{remaining}]")
        fraction = done / self.total if self.total > 0 else 1.0
        if self.bar is not None:
            self.bar.n = round(done, 6)
            self.bar.refresh()
            if fraction >= 1:
                self.bar.close()
            return
        # Brian2 also calls at the start and end of each Network.run (a run in two parts: twice at once)
        if 0 < fraction < 1 and now - self.last >= 0.9 * self.period:
            self.last = now
            elapsed = now - self.started
            _log.log(_info(), "%s: %.3g of %.3g %s (%d %%) in %s; about %s left", self.label, done, self.total,
                     self.unit, math.floor(100 * fraction), _duration(elapsed),
                     _duration(elapsed * (1 - fraction) / fraction))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class LogHandler(logging.Handler):
    """Progress and records (below WARNING) on the current ``sys.stdout``, warnings and errors on ``sys.stderr`` (so
    a refused run's stderr is its one error line), printed above any bar being drawn (``tqdm.write``) in the process
    that made the handler (a forked worker writes plainly: the bars it inherited are not its own)."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.pid = os.getpid()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            if os.getpid() == self.pid:
                from tqdm import tqdm

                tqdm.write(message, file=stream)
            else:
                stream.write(message + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno < logging.WARNING else f"neurocircuit: {record.levelname.lower()}: {text}"


def configure_logging(level: int) -> Callable[[], None]:
    """The package's log lines at ``level`` and above through a :class:`LogHandler` (what the command line does;
    replaces the handler an earlier call installed). Returns what undoes it."""
    logger = logging.getLogger("neurocircuit")
    saved = logger.level, list(logger.handlers)
    for handler in [h for h in logger.handlers if isinstance(h, LogHandler)]:
        logger.removeHandler(handler)
    handler = LogHandler()
    handler.setFormatter(_Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)

    def undo() -> None:
        logger.setLevel(saved[0])
        logger.handlers[:] = saved[1]

    return undo


def logging_level() -> int | None:
    """The level of the handler :func:`configure_logging` installed, None if none (a spawned worker sets it up
    again with it)."""
    logger = logging.getLogger("neurocircuit")
    return logger.level if any(isinstance(h, LogHandler) for h in logger.handlers) else None


def on_record_chain(*callbacks: Callable[[str, dict[str, Any]], None] | None) -> Callable[[str, dict[str, Any]],
                                                                                            None]:
    """One ``on_record`` calling each of ``callbacks`` (None skipped) in turn."""
    return _Chain(tuple(c for c in callbacks if c is not None))


class _Chain:
    def __init__(self, callbacks: tuple[Callable[[str, dict[str, Any]], None], ...]) -> None:
        self.callbacks = callbacks

    def __call__(self, label: str, record: dict[str, Any]) -> None:
        for callback in self.callbacks:
            callback(label, record)


class HeldWarnings:
    """Warnings (Python's, and the records of Brian2's loggers) held back while a command's input is validated, so
    that a refusal stays one line: :meth:`folded` gives them as a clause of that line. :meth:`release` (or leaving
    the ``with`` block without an error) shows them as they would have been shown: warnings of accepted input, and
    every warning of a real run after it, are never swallowed.

    Python's warnings are held at ``warnings._showwarnmsg``, which every shown warning passes after the filters, so
    a library that installs its own ``showwarning`` meanwhile (Brian2 routes them to its logger) is held too. The
    records of the ``brian2`` loggers are held by that logger's handlers, if Brian2 was loaded before.
    """

    def __init__(self) -> None:
        self.warnings: list[warnings.WarningMessage] = []
        self.records: list[logging.LogRecord] = []
        self._active = False

    def __enter__(self) -> HeldWarnings:
        self._show = warnings._showwarnmsg  # type: ignore[attr-defined]
        warnings._showwarnmsg = self.warnings.append  # type: ignore[attr-defined]
        self._brian = logging.getLogger("brian2")
        self._handlers = list(self._brian.handlers)
        self._holder = _Holder(self.records)
        for handler in self._handlers:
            self._brian.removeHandler(handler)
        self._brian.addHandler(self._holder)
        self._active = True
        return self

    def _stop(self) -> None:
        if self._active:
            warnings._showwarnmsg = self._show  # type: ignore[attr-defined]
            self._brian.removeHandler(self._holder)
            for handler in self._handlers:
                self._brian.addHandler(handler)
            self._active = False

    def release(self) -> None:
        """The input was accepted (or the error is not a refusal): stop holding, and show what was held."""
        self._stop()
        held, self.warnings, records, self.records = self.warnings, [], self.records, []
        for message in held:
            warnings._showwarnmsg(message)  # type: ignore[attr-defined]
        for record in records:
            logging.getLogger(record.name).handle(record)

    def folded(self) -> str:
        """What was held, as one clause (``""`` if nothing): at most three distinct warnings, each in one line."""
        self._stop()
        seen = dict.fromkeys([f"{w.category.__name__}: {w.message}" for w in self.warnings]
                             + [f"{r.levelname.lower()} from {r.name}: {r.getMessage()}" for r in self.records])
        self.warnings, self.records = [], []
        texts = [" ".join(text.split()) for text in seen]
        more = f" (and {len(texts) - 3} more)" if len(texts) > 3 else ""
        return f" (warned while reading it: {'; '.join(texts[:3])}{more})" if texts else ""

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is None:
            self.release()
        else:
            self._stop()  # the caller folds what was held into its error line, or releases it


class _Holder(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.WARNING)
        self.kept = records

    def emit(self, record: logging.LogRecord) -> None:
        self.kept.append(record)
