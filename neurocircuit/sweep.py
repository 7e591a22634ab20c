"""Parameter sweeps over any simulation setting: resumable, on local worker processes or a dask cluster.

A sweep is a simulation plus *axes*: a dotted key of the simulation file (``mirror.noise_std``,
``optimizer.lr``, ``brian2.tau``, ``arms.2.phases.0.samples`` — integers index lists; ``seed`` sets ``seeds``)
and its values. Grid sweeps take every combination; zipped sweeps (``mode = "zip"``) walk the axes together.

On the command line (``neurocircuit sweep SIM --set KEY=VALUES``), VALUES is one of::

    a,b,c                      a list (each item read as TOML, else as a string: "2 ms" needs no quotes)
    start:stop[:step]          an integer range, stop excluded (seed=0:5 -> 0 1 2 3 4)
    lin:start:stop:n           n evenly spaced numbers, both ends included
    log:start:stop:n           n log-spaced numbers from start to stop
    random:low:high:n[:seed]   n uniform random numbers (lograndom: log-uniform)

and a single value is a fixed setting, as in ``neurocircuit run --set``. In a sweep file (``kind = "sweep"``),
``[axes]`` maps keys to a list or to ``{ range = [start, stop, step] }``, ``{ lin = [a, b, n] }``,
``{ log = [a, b, n] }``, ``{ random = [low, high, n], seed = 0, log = false }``.

Every point's result is written to ``OUT/points/<id>.nc`` (atomically) as soon as it finishes; a failing point writes
``OUT/points/<id>.error.json`` (the error and the point's settings) instead and never stops the others. Running the
same sweep again skips finished points and retries failed ones. The merged Dataset (``OUT/sweep.nc``) has one
dimension per axis (zip: one ``point`` dimension with the axes as coordinates) plus the simulation's own, the sweep
definition in ``attrs["sweep"]`` and the failures in ``attrs["errors"]``.

Swept values are stored as numbers where they are quantities, in SI base units with a ``units`` attribute: an axis
``brian2.tau = 1 ms, 2 ms`` becomes the coordinate ``[0.001, 0.002]`` with ``units = "s"`` (a rate, "20 Hz" or
"0.02 / ms", becomes 20.0 with ``units = "Hz"``). Numbers stay numbers; text that is not a quantity (rule names,
say) stays text.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import tomllib

from ._toml import check_keys, expect, loads_bounded, read_toml
from .axis_values import Span, drawn, int_range, spaced
from .errors import ConfigError, NeurocircuitError
from .limits import MAX_SWEEP_POINTS
from .pool import MAX_WORKERS, SINGLE_THREAD_ENV, run_in_workers
from .registry import simulation_file
from .simulation import _is_int
from .sweep_points import _base_table, _point_table, _prepare, point_id, validate

__all__ = ["Axis", "Sweep", "parse_axis", "axis_from_toml", "load_sweep", "run_sweep", "merge_points",
           "point_id", "quantity_value", "MODES"]

MODES = ("grid", "zip")
_log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Axis:
    """One swept key and its values (TOML scalars; a rule's values are a :class:`~neurocircuit.axis_values.Span`,
    made as they are read)."""

    key: str
    values: tuple[Any, ...] | Span

    def __post_init__(self) -> None:
        if not self.values:
            raise ConfigError(f"sweep axis {self.key!r} has no values")
        if self.values.repeats() if isinstance(self.values, Span) else \
                len(set(map(repr, self.values))) != len(self.values):
            raise ConfigError(f"sweep axis {self.key!r} repeats a value: {list(self.values)}")


@dataclass(frozen=True)
class Sweep:
    """A simulation (name or path), its axes, how they combine, and fixed ``key=value`` settings."""

    simulation: str
    axes: tuple[Axis, ...]
    mode: str = "grid"
    fixed: tuple[str, ...] = ()
    name: str = "sweep"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"sweep mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not self.axes:
            raise ConfigError("a sweep needs at least one axis (--set KEY=V1,V2,... or [axes])")
        keys = [a.key for a in self.axes]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"sweep axes repeat a key: {keys}")
        if self.mode == "zip" and len({len(a.values) for a in self.axes}) != 1:
            raise ConfigError("zipped sweep axes need the same number of values: "
                              + ", ".join(f"{a.key} ({len(a.values)})" for a in self.axes))

    def count(self) -> int:
        """The number of points, from the axes' lengths (no point is made)."""
        if self.mode == "zip":
            return len(self.axes[0].values)
        count = 1
        for axis in self.axes:
            count *= len(axis.values)
        return count

    def iter_points(self) -> Iterator[dict[str, Any]]:
        """Every point as {key: value}, in a fixed order (grid: the last axis varies fastest), one at a time."""
        keys = [a.key for a in self.axes]
        combined = zip(*(a.values for a in self.axes)) if self.mode == "zip" else \
            itertools.product(*(a.values for a in self.axes))
        return (dict(zip(keys, values)) for values in combined)

    def points(self) -> list[dict[str, Any]]:
        """Every point as {key: value}, in a fixed order."""
        return list(self.iter_points())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "axes": {a.key: list(a.values) for a in self.axes}}


def _scalar(text: str) -> Any:
    try:
        return loads_bounded(f"v = {text}", f"--set value {text[:40]!r}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()


def _number(text: str, where: str) -> float:
    value = _scalar(text)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: {text!r} is not a number")
    return value


def parse_axis(key: str, text: str) -> Axis | None:
    """An axis from the command-line syntax (see the module docstring); None for a single fixed value."""
    where = f"--set {key}={text}"
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"{where}: bad key {key!r}")
    if text.lstrip().startswith(("[", "{", '"', "'")) and not isinstance(_scalar(text), str):
        return None  # one TOML array / table / quoted string: a fixed setting
    head, _, rest = text.partition(":")
    if head in ("lin", "log") and rest:
        parts = rest.split(":")
        if len(parts) != 3:
            raise ConfigError(f"{where}: use {head}:START:STOP:N")
        n = _number(parts[2], where)
        if not isinstance(n, int):
            raise ConfigError(f"{where}: N must be an integer")
        return Axis(key, spaced(head, _number(parts[0], where), _number(parts[1], where), n, where))
    if head in ("random", "lograndom") and rest:
        parts = rest.split(":")
        if len(parts) not in (3, 4):
            raise ConfigError(f"{where}: use {head}:LOW:HIGH:N[:SEED]")
        n = _number(parts[2], where)
        seed = _number(parts[3], where) if len(parts) == 4 else 0
        if not isinstance(n, int) or not isinstance(seed, int):
            raise ConfigError(f"{where}: N and SEED must be integers")
        return Axis(key, drawn(_number(parts[0], where), _number(parts[1], where), n, seed, head == "lograndom",
                               where))
    if "," in text:
        return Axis(key, tuple(_scalar(item) for item in text.split(",") if item.strip()))
    if ":" in text and all(_is_int(p) for p in text.split(":")) and len(text.split(":")) in (2, 3):
        nums = [int(p) for p in text.split(":")]
        return Axis(key, int_range(*nums, *([1] if len(nums) == 2 else []), where=where))
    return None


def axis_from_toml(key: str, value: Any, where: str = "axes") -> Axis:
    """An axis from a sweep file's ``[axes]`` entry."""
    w = f"{where}.{key}"
    if isinstance(value, list):
        return Axis(key, tuple(value))
    expect(value, dict, w)
    check_keys(value, ("range", "lin", "log", "random", "seed"), w)
    kinds = [k for k in ("range", "lin", "log", "random") if k in value]
    if len(kinds) != 1:
        raise ConfigError(f"{w}: give exactly one of range, lin, log, random")
    kind, args = kinds[0], expect(value[kinds[0]], list, f"{w}.{kinds[0]}")
    if kind == "range":
        if not 1 <= len(args) <= 3 or not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
            raise ConfigError(f"{w}.range: expected [start, stop(, step)] integers, got {args}")
        return Axis(key, int_range(*([0] if len(args) == 1 else []), *args, *([1] if len(args) < 3 else []),
                                   where=f"{w}.range"))
    if len(args) != 3 or not isinstance(args[2], int):
        raise ConfigError(f"{w}.{kind}: expected [start, stop, n], got {args}")
    if kind == "random":
        log = bool(value.get("log", False)) if "log" in value else False
        return Axis(key, drawn(float(args[0]), float(args[1]), args[2], int(value.get("seed", 0)), log, w))
    return Axis(key, spaced(kind, float(args[0]), float(args[1]), args[2], w))


def load_sweep(target: str | Path, settings: Iterable[str] = (), *, mode: str | None = None) -> Sweep:
    """A sweep from a sweep file (``kind = "sweep"``) or a simulation, plus ``KEY=VALUES`` settings: those with
    several values become axes, single values fixed settings; either replaces an axis of the file on that key."""
    raw = read_toml(simulation_file(target))
    axes: list[Axis] = []
    fixed: list[str] = []
    name = "sweep"
    simulation = str(target)
    if raw.get("kind") == "sweep":
        where = f"sweep {str(target)!r}"
        check_keys(raw, ("kind", "name", "description", "simulation", "mode", "axes", "set"), where)
        simulation = expect(raw.get("simulation"), str, f"{where}: simulation")
        # a simulation beside the sweep file wins: a bare name over a shipped one, a relative path over the cwd
        folder = Path(simulation_file(target)).parent
        is_path = any(c in simulation for c in "/\\") or simulation.endswith(".toml")
        beside = folder / (simulation if is_path else f"{simulation}.toml")
        if not Path(simulation).is_absolute() and beside.is_file():
            simulation = str(beside)
        axes = [axis_from_toml(k, v, f"{where}: axes") for k, v in expect(raw.get("axes", {}), dict,
                                                                           f"{where}: axes").items()]
        fixed = [expect(s, str, f"{where}: set") for s in expect(raw.get("set", []), list, f"{where}: set")]
        mode = mode or raw.get("mode", "grid")
        name = str(raw.get("name", name))
        both = sorted({s.partition("=")[0].strip() for s in fixed} & {a.key for a in axes})
        if both:
            raise ConfigError(f"{where}: {', '.join(map(repr, both))} is both an axis and a fixed setting in 'set'")
    for item in settings:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects KEY=VALUES, got {item!r}")
        axis = parse_axis(key.strip(), text)
        if axis is None:
            # the command line overrides the file: one value on a key the file sweeps replaces that axis
            axes = [a for a in axes if a.key != key.strip()]
            fixed.append(item)
        else:
            axes = [a for a in axes if a.key != axis.key] + [axis]
    return Sweep(simulation, tuple(axes), mode or "grid", tuple(fixed), name)


def _run_point(task: dict[str, Any]) -> dict[str, Any]:
    """Run one point (in a worker): returns {"id", "dataset"} or {"id", "error"}. Never raises."""
    for key, value in SINGLE_THREAD_ENV.items():
        os.environ.setdefault(key, value)
    try:
        import torch

        torch.set_num_threads(1)
        raw, where = _point_table(task["base"], task["point"])
        return {"id": task["id"], "dataset": _prepare(raw, where)().load()}
    except Exception as exc:  # a failing point is recorded, the sweep goes on
        return {"id": task["id"], "point": task["point"],
                "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}


def _set_aside_corrupt(folder: Path, pid: str) -> bool:
    """True if ``points/<pid>.nc`` is readable; a file that is not (truncated by a kill, say) is renamed to
    ``<pid>.nc.corrupt`` so the point is recomputed."""
    from .results import read_results

    path = folder / f"{pid}.nc"
    if not path.exists():
        return False
    try:
        read_results(path)
        return True
    except NeurocircuitError:
        path.replace(folder / f"{pid}.nc.corrupt")
        _log.warning("sweep point file %s was unreadable: moved to %s.corrupt, recomputing", path, path.name)
        return False


def run_sweep(sweep: Sweep, out: str | Path, *, workers: int | None = None, dask: str | Any | None = None,
              progress: bool | None = None, on_point: Callable[[str, str], None] | None = None,
              max_points: int | None = MAX_SWEEP_POINTS) -> Any:
    """Run the points not yet finished and return the merged Dataset (also written to ``out/sweep.nc``).

    ``workers``: local processes (default: all cores; 1 runs in this process). ``dask``: a scheduler address or a
    ``distributed.Client`` to run on instead. ``on_point(id, status)`` is called as each point ends. A sweep of
    more than ``max_points`` points is refused before anything is parsed or written (None: no ceiling; the command
    line's ``--yes``).
    """
    from .progress import RunProgress
    from .results import write_atomic, write_netcdf

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} exists and is not a folder")
    count = sweep.count()
    if max_points is not None and count > max_points:
        raise ConfigError(f"the sweep has {count:,} points, more than {max_points:,} (neurocircuit.limits."
                          "MAX_SWEEP_POINTS): pass --yes (run_sweep(..., max_points=None)) to run them all")
    validate(sweep)
    if isinstance(dask, str):
        _check_reachable(dask)  # before anything is written
    _log.info("sweep %r over %s: %d points (%s of %s) on %s", sweep.name, sweep.simulation, count,
              sweep.mode, ", ".join(f"{a.key} x{len(a.values)}" for a in sweep.axes),
              f"dask {dask}" if dask is not None else f"{workers or 'all'} local workers")
    folder = out / "points"
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "sweep.json", lambda p: p.write_text(json.dumps(sweep.to_dict(), indent=2, default=str)))
    done = {pid for point in sweep.iter_points() if _set_aside_corrupt(folder, pid := point_id(point))}
    base = _base_table(sweep)
    # tasks made as they are handed out: a large sweep never holds every point's table
    todo = ({"id": pid, "base": base, "point": point} for point in sweep.iter_points()
            if (pid := point_id(point)) not in done)
    # No more processes than pending points, nor than MAX_WORKERS.
    processes = min(workers or os.cpu_count() or 1, count - len(done), MAX_WORKERS)
    tracker = RunProgress(sweep.name, count, progress=progress, unit="point", initial=len(done),
                          workers=1 if dask is not None else processes)

    def finish(result: dict[str, Any]) -> None:
        pid = result["id"]
        error_file = folder / f"{pid}.error.json"
        if "error" in result:
            # the point's settings too: the id alone does not tell a reader of the folder which point failed
            record = {"error": result["error"], "point": result["point"]}
            write_atomic(error_file, lambda p: p.write_text(json.dumps(record, default=str)))
            status = "failed"
        else:
            write_netcdf(result["dataset"], folder / f"{pid}.nc")
            error_file.unlink(missing_ok=True)
            status = "done"
        tracker.finished(f"point {pid}", status)
        if on_point is not None:
            on_point(pid, status)

    try:
        if dask is not None:
            _run_dask(todo, dask, finish)
        else:
            if processes <= 1:
                _run_serial(todo, finish)
            else:
                _run_local(todo, processes, finish)
    finally:
        tracker.close()
    ds = merge_points(sweep, folder)
    write_netcdf(ds, out / "sweep.nc")
    return ds


def _run_serial(todo: Iterable[dict[str, Any]], finish: Callable[[dict[str, Any]], None]) -> None:
    import torch

    threads = torch.get_num_threads()
    try:
        for task in todo:
            finish(_run_point(task))
    finally:
        torch.set_num_threads(threads)


def _run_local(todo: Iterable[dict[str, Any]], workers: int, finish: Callable[[dict[str, Any]], None]) -> None:
    run_in_workers(_run_point, todo, workers, lambda task, future: finish(future.result()))


def _run_dask(todo: Iterable[dict[str, Any]], dask: str | Any, finish: Callable[[dict[str, Any]], None]) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError:  # pragma: no cover - an install without the extra
        raise ConfigError("--dask needs dask.distributed: pip install 'neurocircuit[sweep]'") from None
    if not isinstance(dask, Client):
        _check_reachable(str(dask))
    try:
        # Not the process-wide default client: xarray would then take distributed locks for every file this
        # process writes, and a failed connection would stay registered.
        client = dask if isinstance(dask, Client) else Client(dask, timeout="20s", set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise ConfigError(f"--dask {dask!r}: cannot reach the dask scheduler ({' '.join(str(exc).split())})") from None
    try:
        futures = client.map(_run_point, list(todo), pure=False)  # dask maps lists, not iterators
        for future in as_completed(futures):
            finish(future.result())
    finally:
        if not isinstance(dask, Client):
            client.close()


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A TCP connection to the scheduler first: an unreachable address is one error line at once (a dask Client that
    fails to connect retries for its whole timeout and complains again from its destructor)."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--dask {address!r}: cannot reach the dask scheduler (expected an address like "
                          "tcp://HOST:PORT)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(f"--dask {address!r}: cannot reach the dask scheduler ({exc.strerror or exc})") from None


def quantity_value(text: str) -> tuple[float, str] | None:
    """A quantity written as Brian2 reads it ("5 ms", "0.02 / ms", "20 Hz") as its value in SI base units and
    those units (``(0.005, "s")``, ``(20.0, "Hz")``); None for text that is not a number with units."""
    if not any(c.isalpha() for c in text):
        return None
    import brian2

    from .brian.parameters import read_quantity

    quantity = read_quantity(text.strip())
    if quantity is None:
        return None
    units = str(brian2.get_dimensions(quantity))
    return float(quantity), {"s^-1": "Hz", "1": ""}.get(units, units)


def _numeric_axis(axis: Axis) -> tuple[list[Any], dict[str, str]]:
    """The axis's values as stored in the merged Dataset and the coordinate's attrs: quantities (every value a
    number with units of the same dimension, all distinct) in SI base units with ``units``; anything else as is."""
    if not all(isinstance(v, str) for v in axis.values):
        return list(axis.values), {}
    read = [quantity_value(v) for v in axis.values]
    if any(q is None for q in read) or len({q[1] for q in read}) != 1 or len({q[0] for q in read}) != len(read):
        return list(axis.values), {}  # categorical text (or quantities that do not share units)
    units = read[0][1]
    return [q[0] for q in read], ({"units": units} if units else {})


def merge_points(sweep: Sweep, folder: str | Path) -> Any:
    """One Dataset from the point files: one dimension per axis (zip: ``point``), NaN where a point failed."""
    import xarray as xr

    from .results import read_results

    folder = Path(folder)
    parts, errors = [], []
    for index, point in enumerate(sweep.points()):
        pid = point_id(point)
        path = folder / f"{pid}.nc"
        if not path.exists():
            error_file = folder / f"{pid}.error.json"
            message = json.loads(error_file.read_text())["error"] if error_file.exists() else "not run"
            errors.append({"point": point, "error": message})
            continue
        ds = read_results(path)
        ds.attrs = {}
        if sweep.mode == "zip":
            ds = ds.expand_dims(point=[index]).assign_coords({a.key: ("point", [point[a.key]])
                                                              for a in sweep.axes if a.key != "seed"})
        else:
            ds = ds.expand_dims({a.key: [point[a.key]] for a in sweep.axes if a.key != "seed"})
        parts.append(ds)
    if not parts:
        raise NeurocircuitError(f"no point of the sweep finished ({len(errors)} failed); see {folder}")
    merged = xr.merge(parts, join="outer", compat="no_conflicts", combine_attrs="override")
    merged.attrs = {}
    # Every point of the definition has its place, failed ones as NaN.
    if sweep.mode == "zip":
        merged = merged.reindex(point=range(sweep.count()))
        merged = merged.assign_coords({a.key: ("point", list(a.values)) for a in sweep.axes if a.key != "seed"})
    else:
        merged = merged.reindex({a.key: list(a.values) for a in sweep.axes})
    stored = {a.key: _numeric_axis(a) for a in sweep.axes if a.key != "seed"}
    for key, (values, attrs) in stored.items():
        merged = merged.assign_coords({key: ("point" if sweep.mode == "zip" else key, values, attrs)})
    # failures name their points by the stored values, so that they match the coordinates
    as_stored = {key: dict(zip(axis.values, stored[key][0])) for axis in sweep.axes if (key := axis.key) in stored}
    errors = [{**e, "point": {k: as_stored[k][v] if k in as_stored else v for k, v in e["point"].items()}}
              for e in errors]
    merged.attrs["sweep"] = json.dumps(sweep.to_dict(), default=str)
    merged.attrs["errors"] = json.dumps(errors, default=str)
    merged.attrs["points"] = sweep.count()
    merged.attrs["failed_points"] = len(errors)
    return merged

