"""Running a simulation: every (arm, seed) on its backend, one after another or in parallel (``neurocircuit run SIM
--out DIR --jobs N``), merged into one Dataset.

Each run goes to a worker of the local pool the sweeps use (:mod:`neurocircuit.pool`: one thread per worker, workers
that die with this process) and writes the folder the runs write one after another, ``DIR/runs/<arm>-seed<k>/``
(checkpoint, finished phases, ``results.nc``), so ``resume`` continues each where it stopped and a finished run is
read back from its checkpoint, not run again. The workers return their results and
:func:`run_simulation` merges them once, exactly as it merges runs made one after another.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import xarray as xr

from ._version import __version__
from .backends import RESULTS_FILE, get_backend, run_dir
from .errors import ConfigError
from .limits import runs_at_once
from .outdir import identity, owned_folder
from .pool import MAX_WORKERS, START_METHOD, run_in_workers
from .progress import RecordLog, RunProgress, bars_drawn, configure_logging, logging_level, on_record_chain
from .results import attach_config, read_results

__all__ = ["run_simulation", "run_parallel"]

#: Coordinates that label a run's records, times or layers (and so differ between arms), with their attributes
#: (a label has no unit: "1", as for every dimensionless variable).
LABEL_COORDS = {"phase": {"long_name": "phase of the schedule", "units": "1"},
                "weight_phase": {"long_name": "phase of the schedule", "units": "1"},
                "layer_rule": {"long_name": "feedback rule of the layer", "units": "1"}}
#: Attributes of the coordinates every merged results file has.
RUN_COORD_ATTRS = {"arm": {"long_name": "arm (a rule and its settings)", "units": "1"},
                   "seed": {"long_name": "random seed", "units": "1"},
                   "rule": {"long_name": "learning rule of the arm", "units": "1"}}

# The data of the simulation now running in parallel, by key: set before the workers fork, which inherit it
# (loaded once, no copy through a pipe); a spawned worker loads it once for all its runs.
_SHARED: dict[str, Any] = {}


def _run_one(task: dict[str, Any]) -> xr.Dataset:
    """One (arm, seed) run, in a worker."""
    sim = task["sim"]
    if task["log_level"] is not None and logging_level() is None:  # a spawned worker: the parent's log lines
        configure_logging(task["log_level"])
    backend = get_backend(sim.backend)
    if task["key"] not in _SHARED:
        _SHARED.clear()
        _SHARED[task["key"]] = backend.load_data(sim)
    # no progress bars: several processes drawing on one terminal garble it (the parent draws one over the runs);
    # where it does, the records are logged at DEBUG only
    return backend.run_arm(sim, task["arm"], task["seed"], _SHARED[task["key"]], out=task["out"],
                           resume=task["resume"], progress=False, stop_after_steps=task["stop_after_steps"],
                           on_record=on_record_chain(RecordLog(drawn=task["bars"]), task["on_record"]))


def _named(exc: BaseException, label: str, seed: int) -> BaseException:
    """``exc`` with a message that names the run (unless it does already), of the same type where it can be."""
    text = " ".join(str(exc).split())
    message = text if f"{label} seed {seed}" in text else f"arm {label!r} seed {seed}: {text}"
    try:
        return type(exc)(message)
    except Exception:  # an exception class that takes other arguments
        return RuntimeError(f"{type(exc).__name__}: {message}")


def results_stamp(folder: Path | None) -> int | None:
    """The modification time (ns) of a run folder's ``results.nc``, None without one: a run that leaves it as it
    was did no work (a finished run read back on resume), so the progress report leaves it out of the pace it
    predicts the remaining runs' time from. (A finished torch run asked for more epochs trains and rewrites it.)"""
    try:
        return None if folder is None else (folder / RESULTS_FILE).stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _read_back(folder: Path | None, before: int | None) -> bool:
    return before is not None and results_stamp(folder) == before


def run_parallel(sim: Any, runs: Sequence[tuple[Any, int]], out: Path, *, jobs: int, resume: bool = False,
                 progress: bool | None = None, stop_after_steps: int | None = None,
                 on_record: Callable[[str, dict[str, Any]], None] | None = None) -> list[xr.Dataset]:
    """Run every ``(arm, seed)`` of ``runs`` on ``jobs`` worker processes; their results in the order of ``runs``.

    Parameters
    ----------
    sim
        The simulation (a :class:`~neurocircuit.simulation.Simulation`).
    runs
        ``(arm, seed)`` pairs, arms from ``sim.arms``.
    out
        The simulation's output folder: run ``(arm, seed)`` keeps ``out/runs/<arm>-seed<k>/``.
    jobs
        How many runs at a time (at most :data:`neurocircuit.pool.MAX_WORKERS`).
    resume, stop_after_steps
        As for :meth:`~neurocircuit.backends.Backend.run_arm`, for every run (each stops after that many steps).
    progress
        A bar over the finished runs (None: on a terminal); the runs draw none. A log line as each run ends
        (:class:`~neurocircuit.progress.RunProgress`); each run's records are logged in its worker.
    on_record
        Called in the worker with each record (it must pickle: a module-level function).

    Raises
    ------
    The first error of a run, its message naming the arm and seed (the other runs are stopped, with a checkpoint);
    after every run has ended, the first :class:`KeyboardInterrupt` of a run that stopped early.
    """
    backend = get_backend(sim.backend)
    # A process that forks must not have initialised CUDA (checking torch.device may have): runs on a GPU start
    # fresh workers.
    start = "spawn" if backend.on_accelerator(sim) else START_METHOD
    key = f"{os.getpid()}-{id(sim)}"
    _SHARED.clear()
    if start == "fork":
        with runs_at_once(min(jobs, len(runs), MAX_WORKERS)):  # what a run records (Brian2) is counted per worker
            _SHARED[key] = backend.load_data(sim)
    tasks = [{"index": i, "key": key, "sim": sim, "arm": arm, "seed": seed, "out": run_dir(out, arm.label, seed),
              "resume": resume, "stop_after_steps": stop_after_steps, "on_record": on_record,
              "log_level": logging_level(), "bars": bars_drawn(progress),
              "stamp": results_stamp(run_dir(out, arm.label, seed))}
             for i, (arm, seed) in enumerate(runs)]
    results: list[Any] = [None] * len(runs)
    stopped: list[KeyboardInterrupt] = []
    tracker = RunProgress(sim.name, len(runs), progress=progress, workers=min(jobs, MAX_WORKERS))

    def finish(task: dict[str, Any], future: Any) -> None:
        try:
            results[task["index"]] = future.result()
        except KeyboardInterrupt as exc:  # the run saved a checkpoint and stopped; the others go on
            stopped.append(exc)
            return
        except Exception as exc:
            raise _named(exc, task["arm"].label, task["seed"]) from exc
        tracker.finished(f"{task['arm'].label} seed {task['seed']}", run_summary(results[task["index"]]),
                         stored=_read_back(task["out"], task["stamp"]))

    try:
        run_in_workers(_run_one, tasks, jobs, finish, start_method=start)
    except KeyboardInterrupt as exc:  # Ctrl-C here: the workers were stopped
        if str(exc):
            raise
        raise KeyboardInterrupt(f"the runs in {out / 'runs'} keep their last checkpoints; --resume continues "
                                "them") from None
    finally:
        tracker.close()
        _SHARED.clear()
    if stopped:
        raise stopped[0]
    return results


def _last(da: xr.DataArray) -> xr.DataArray:
    """``da`` at the last index of its first dimension where it has a finite value."""
    dim = da.dims[0]
    finite = da.notnull()
    if len(da.dims) > 1:
        finite = finite.any([d for d in da.dims if d != dim])
    return da.isel({dim: int(finite.values.nonzero()[0][-1])})


def run_summary(ds: xr.Dataset) -> str:
    """A run's final test accuracy and largest B-W angle, as a progress line says them ("" where it has neither)."""
    parts = []
    acc = ds.get("test_accuracy")
    if acc is not None and acc.ndim and bool(acc.notnull().any()):
        scale = 1 if acc.attrs.get("units") in ("%", "percent") else 100  # fraction ("1") by default
        parts.append(f"test acc {scale * float(_last(acc).max()):.2f} %")
    angle = ds.get("weight_angle")
    if angle is not None and angle.ndim and bool(angle.notnull().any()):
        parts.append(f"max angle {float(_last(angle).max()):.2f} deg")
    return ", ".join(parts)


def run_simulation(sim: Any, *, out: str | Path | None = None, resume: bool = False,
                   progress: bool | None = None, stop_after_steps: int | None = None,
                   on_record: Callable[[str, dict[str, Any]], None] | None = None, jobs: int = 1,
                   merge: bool = False) -> xr.Dataset:
    """Run every arm of ``sim`` for every seed on its backend and return the results.

    Dims: ``arm`` (labels; coordinate ``rule``), ``seed``, plus the backend's own (``step``, ``layer``, phase
    steps or simulated time). A variable an arm does not have is NaN there. With ``out``, every run keeps its
    checkpoint and results under ``out/runs/`` and ``resume`` continues an interrupted simulation where it stopped.
    ``jobs`` > 1 (needs ``out``) runs that many (arm, seed) runs at a time, each in a worker process with one
    thread (:func:`run_parallel`); the results are those of the same runs one after another with one thread (with
    more threads, float64 angles may differ in the last bits: BLAS sums in another order).
    ``progress``: bars (None: on a terminal), one over the runs and one in the run going on; log lines either way
    (:mod:`neurocircuit.progress`). ``on_record(label, record)`` is called with each record as it is made.

    ``out`` belongs to one simulation (:mod:`neurocircuit.outdir`): it is locked while this runs (another process
    on it is refused at once), and a simulation, settings, arms or seeds other than those it holds are refused in one
    line. ``merge`` (implies ``resume``) adds this run's arms and seeds to those ``out`` holds and returns the
    results of both: those in ``out/results.nc`` that this run did not make are kept.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs must be an integer >= 1, got {jobs!r}")
    if out is None and merge:
        raise ConfigError("merge adds runs to the results in an output folder: give one")
    at_once = min(jobs, len(sim.arms) * len(sim.seeds))
    if at_once > 1:  # validated for one run at a time when loaded: the memory check again, for all of them
        with runs_at_once(at_once):
            get_backend(sim.backend).validate(sim)
    # under torchrun every process takes part in each run: rank 0 alone owns the folder
    if out is None or os.environ.get("RANK", "0") != "0":
        return _run_all(sim, out, resume or merge, progress, stop_after_steps, on_record, jobs)
    backend = get_backend(sim.backend)
    wanted = identity(sim.name, sim.to_dict(), sim.labels, sim.seeds)
    with owned_folder(Path(out), wanted, merge=merge, resumable=backend.resumable):
        results = _run_all(sim, out, resume or merge, progress, stop_after_steps, on_record, jobs)
        return _merged(results, Path(out) / RESULTS_FILE) if merge else results


def _merged(results: xr.Dataset, path: Path) -> xr.Dataset:
    """``results`` over those in ``path`` (the arms and seeds only the file has are kept; this run's replace its)."""
    if not path.is_file():
        return results
    earlier = read_results(path)
    labels = [c for c in (*LABEL_COORDS, "rule") if c in earlier.coords or c in results.coords]
    merged = results.reset_coords([c for c in labels if c in results.coords]).combine_first(
        earlier.reset_coords([c for c in labels if c in earlier.coords]))
    merged.attrs = dict(results.attrs)
    return merged.set_coords([c for c in labels if c in merged.data_vars])


def _run_all(sim: Any, out: str | Path | None, resume: bool, progress: bool | None, stop_after_steps: int | None,
             on_record: Callable[[str, dict[str, Any]], None] | None, jobs: int) -> xr.Dataset:
    """:func:`run_simulation`'s runs, merged."""
    backend = get_backend(sim.backend)
    runs = [(arm, seed) for arm in sim.arms for seed in sim.seeds]
    if jobs > 1 and out is None:
        raise ConfigError(f"jobs = {jobs} runs each (arm, seed) in a worker that writes its own folder under "
                          "OUT/runs/: give an output folder")
    if jobs > 1 and len(runs) > 1:
        datasets = run_parallel(sim, runs, Path(out), jobs=jobs, resume=resume, progress=progress,
                                stop_after_steps=stop_after_steps, on_record=on_record)
    else:
        data = backend.load_data(sim)
        # under torchrun every process takes part in each run: rank 0 alone reports
        tracker = RunProgress(sim.name, len(runs), progress=progress, silent=os.environ.get("RANK", "0") != "0")
        datasets = []
        try:
            for arm, seed in runs:
                folder = None if out is None else run_dir(Path(out), arm.label, seed)
                stamp = results_stamp(folder)
                datasets.append(backend.run_arm(
                    sim, arm, seed, data, resume=resume, progress=progress,
                    out=folder, stop_after_steps=stop_after_steps,
                    on_record=on_record_chain(RecordLog(drawn=bars_drawn(progress)), on_record)))
                tracker.finished(f"{arm.label} seed {seed}", run_summary(datasets[-1]),
                                 stored=_read_back(folder, stamp))
        finally:
            tracker.close()
    # Per-run labels (phase of each record or time, rule of each layer) differ between arms: merged as variables over
    # arm and seed, then made coordinates again.
    datasets = [ds.reset_coords([c for c in LABEL_COORDS if c in ds.coords]) for ds in datasets]
    results = xr.merge([ds.expand_dims(arm=[arm.label], seed=[seed]) for (arm, seed), ds in zip(runs, datasets)],
                       compat="no_conflicts", join="outer", combine_attrs="override")
    results = results.reindex(arm=sim.labels, seed=list(sim.seeds))
    results = backend.finish(results).assign_coords(rule=("arm", [a.rule for a in sim.arms]))
    results = results.set_coords([c for c in LABEL_COORDS if c in results.data_vars])
    for name, attrs in {**RUN_COORD_ATTRS, **LABEL_COORDS}.items():
        if name in results.coords:
            results[name].attrs = {**attrs, **results[name].attrs}
    return attach_config(results, sim.to_dict(), simulation=sim.name, description=sim.description,
                         model=sim.model_name, backend=sim.backend,
                         neurocircuit_version=__version__, python=sys.version.split()[0], **backend.attrs(sim))
