"""The local worker pool that sweeps (``neurocircuit sweep --workers N``) and parallel runs (``neurocircuit run
--jobs N``) share: one process per task at a time, one BLAS/torch thread per process, workers that die with the
process that started them, and a stop that lets a training run save its checkpoint.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["MAX_WORKERS", "START_METHOD", "SINGLE_THREAD_ENV", "run_in_workers"]

#: Upper bound on local worker processes, whatever a caller asks (each holds a copy of torch and the data).
MAX_WORKERS = 64
# fork where the platform has it: a forked worker starts at once, without importing torch again, and inherits data the
# parent loaded (workers set one thread; a caller whose parent set up CUDA must ask for spawn, as runs.py does).
START_METHOD = "fork" if os.name == "posix" and sys.platform != "darwin" else "spawn"
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


_STOP: list[Any] = []  # in a worker: the pool's stop event (set: start no further task)


def _worker_init(stop: Any) -> None:
    _STOP[:] = [stop]
    for key, value in SINGLE_THREAD_ENV.items():
        os.environ[key] = value
    torch = sys.modules.get("torch")  # forked after the parent imported torch: the variables come too late
    if torch is not None:
        torch.set_num_threads(1)
    # Ctrl-C reaches every process of the terminal's group: an idle worker ignores it (a training run installs its
    # own handler, saves a checkpoint and stops); the parent stops the pool (see run_in_workers).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()


def _die_with_parent() -> None:
    """Linux: the kernel sends this worker SIGKILL when the process that forked it dies (kill -9 of a sweep
    leaves no orphans holding memory). Elsewhere a no-op; the pool's own shutdown covers normal exits."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - no prctl
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def _guarded(function: Callable[[Any], Any], task: Any) -> Any:
    """``function(task)`` in a worker, unless the pool is stopping (a task already queued to this worker)."""
    if _STOP and _STOP[0].is_set():
        raise KeyboardInterrupt("not started: the pool was stopped")
    try:
        return function(task)
    except KeyboardInterrupt as exc:
        # Ctrl-C or SIGTERM stopped this run: the task queued next must not start before the parent stops the pool
        if getattr(exc, "signalled", False) and _STOP:
            _STOP[0].set()
        raise


def run_in_workers(function: Callable[[Any], Any], tasks: Iterable[Any], workers: int,
                   finish: Callable[[Any, Any], None], *, start_method: str = START_METHOD) -> None:
    """Run ``function(task)`` for every task on ``workers`` local processes (at most :data:`MAX_WORKERS`) and call
    ``finish(task, future)`` here as each ends, in the order they end (``future.result()`` returns or raises).

    If ``finish`` or this process raises (an error, Ctrl-C), no further task starts and every worker gets SIGTERM:
    a training run saves a checkpoint at its next step and stops, an idle worker exits; then the exception goes on.
    ``function`` and the tasks must pickle (``spawn``: by reference to an importable module).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context(start_method)
    stop = context.Event()
    pool = ProcessPoolExecutor(max_workers=max(1, min(workers, MAX_WORKERS)), mp_context=context,
                               initializer=_worker_init, initargs=(stop,))
    try:
        futures = {pool.submit(_guarded, function, task): task for task in tasks}
        for future in as_completed(futures):
            finish(futures[future], future)
    except BaseException:
        # The pool hands tasks to its workers ahead of time, beyond what cancelling futures can take back: the
        # event tells a worker not to start them.
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        # The pool's own list of its processes: there is no public one (multiprocessing.active_children() would
        # take every child of this process).
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            if process.is_alive():
                process.terminate()
        pool.shutdown(wait=True)
        raise
    pool.shutdown()
