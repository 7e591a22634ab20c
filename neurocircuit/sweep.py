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

import copy
import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import tomllib

from ._toml import check_keys, expect, expect_seed, loads_bounded, read_toml
from .errors import ConfigError, NeurocircuitError
from .pool import MAX_WORKERS, SINGLE_THREAD_ENV, run_in_workers
from .registry import simulation_file
from .simulation import _is_int

__all__ = ["Axis", "Sweep", "parse_axis", "axis_from_toml", "load_sweep", "run_sweep", "merge_points",
           "point_id", "quantity_value", "MODES"]

MODES = ("grid", "zip")
_log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Axis:
    """One swept key and its values (TOML scalars)."""

    key: str
    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise ConfigError(f"sweep axis {self.key!r} has no values")
        if len(set(map(repr, self.values))) != len(self.values):
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

    def points(self) -> list[dict[str, Any]]:
        """Every point as {key: value}, in a fixed order."""
        if self.mode == "zip":
            return [{a.key: a.values[i] for a in self.axes} for i in range(len(self.axes[0].values))]
        points: list[dict[str, Any]] = [{}]
        for axis in self.axes:
            points = [{**p, axis.key: v} for p in points for v in axis.values]
        return points

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


def _spaced(kind: str, start: float, stop: float, n: int, where: str) -> list[float]:
    if n < 1:
        raise ConfigError(f"{where}: needs at least 1 value, got {n}")
    if kind == "log":
        if start <= 0 or stop <= 0:
            raise ConfigError(f"{where}: log spacing needs positive ends, got {start} and {stop}")
        start, stop = math.log10(start), math.log10(stop)
    values = [start + (stop - start) * i / (n - 1) if n > 1 else start for i in range(n)]
    values = [10**v for v in values] if kind == "log" else values
    return [float(f"{v:.12g}") for v in values]


def _random(low: float, high: float, n: int, seed: int, log: bool, where: str) -> list[float]:
    import numpy as np

    if n < 1 or not low < high:
        raise ConfigError(f"{where}: random values need low < high and n >= 1")
    expect_seed(seed, f"{where}: SEED")
    rng = np.random.default_rng(seed)
    if log:
        if low <= 0:
            raise ConfigError(f"{where}: log-uniform values need low > 0")
        return [float(f"{v:.12g}") for v in 10 ** rng.uniform(math.log10(low), math.log10(high), n)]
    return [float(f"{v:.12g}") for v in rng.uniform(low, high, n)]


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
        return Axis(key, tuple(_spaced(head, _number(parts[0], where), _number(parts[1], where), n, where)))
    if head in ("random", "lograndom") and rest:
        parts = rest.split(":")
        if len(parts) not in (3, 4):
            raise ConfigError(f"{where}: use {head}:LOW:HIGH:N[:SEED]")
        n = _number(parts[2], where)
        seed = _number(parts[3], where) if len(parts) == 4 else 0
        if not isinstance(n, int) or not isinstance(seed, int):
            raise ConfigError(f"{where}: N and SEED must be integers")
        return Axis(key, tuple(_random(_number(parts[0], where), _number(parts[1], where), n, seed,
                                       head == "lograndom", where)))
    if "," in text:
        return Axis(key, tuple(_scalar(item) for item in text.split(",") if item.strip()))
    if ":" in text and all(_is_int(p) for p in text.split(":")) and len(text.split(":")) in (2, 3):
        nums = [int(p) for p in text.split(":")]
        if nums[2:] == [0]:
            raise ConfigError(f"{where}: a range's step must not be 0")
        values = tuple(range(*nums))
        if not values:
            raise ConfigError(f"{where}: the range {text!r} is empty")
        return Axis(key, values)
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
        if args[2:] == [0]:
            raise ConfigError(f"{w}.range: a range's step must not be 0")
        return Axis(key, tuple(range(*args)))
    if len(args) != 3 or not isinstance(args[2], int):
        raise ConfigError(f"{w}.{kind}: expected [start, stop, n], got {args}")
    if kind == "random":
        log = bool(value.get("log", False)) if "log" in value else False
        return Axis(key, tuple(_random(float(args[0]), float(args[1]), args[2], int(value.get("seed", 0)), log, w)))
    return Axis(key, tuple(_spaced(kind, float(args[0]), float(args[1]), args[2], w)))


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


def point_id(point: Mapping[str, Any]) -> str:
    """A stable file name for a point: a hash of its settings."""
    text = json.dumps({k: point[k] for k in sorted(point)}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _prepare(raw: Mapping[str, Any], where: str) -> Callable[[], Any]:
    """Parse a point's simulation table (errors name the point) and return what runs it."""
    from .progress import nested
    from .runs import run_simulation
    from .simulation import parse_simulation

    sim = parse_simulation(raw, source=where)

    def run() -> Any:
        with nested():  # the sweep logs a line per point, not the lines of the point's runs
            return run_simulation(sim, progress=False)

    return run


def _point_tables(sweep: Sweep) -> dict[str, tuple[dict[str, Any], str]]:
    """Every point's simulation table and label, by point id, each parsed once so that a bad key or value fails
    before anything runs."""
    from .simulation import apply_settings, read_simulation, set_key

    base = apply_settings(read_simulation(sweep.simulation), sweep.fixed)
    tables = {}
    for point in sweep.points():
        raw = copy.deepcopy(base)
        for key, value in point.items():
            set_key(raw, key, value)
        where = f"sweep point {json.dumps(point, default=str)}"
        try:
            _prepare(raw, where)
        except NeurocircuitError as exc:
            raise type(exc)(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None
        tables[point_id(point)] = (raw, where)
    return tables


def validate(sweep: Sweep) -> None:
    """Build every point's simulation now, so a bad key or value fails before anything runs."""
    _point_tables(sweep)


def _run_point(task: dict[str, Any]) -> dict[str, Any]:
    """Run one point (in a worker): returns {"id", "dataset"} or {"id", "error"}. Never raises."""
    for key, value in SINGLE_THREAD_ENV.items():
        os.environ.setdefault(key, value)
    try:
        import torch

        torch.set_num_threads(1)
        return {"id": task["id"], "dataset": _prepare(task["raw"], task["where"])().load()}
    except Exception as exc:  # a failing point is recorded, the sweep goes on
        return {"id": task["id"], "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}


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
              progress: bool | None = None, on_point: Callable[[str, str], None] | None = None) -> Any:
    """Run the points not yet finished and return the merged Dataset (also written to ``out/sweep.nc``).

    ``workers``: local processes (default: all cores; 1 runs in this process). ``dask``: a scheduler address or a
    ``distributed.Client`` to run on instead. ``on_point(id, status)`` is called as each point ends.
    """
    from .progress import RunProgress
    from .results import write_atomic, write_netcdf

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} exists and is not a folder")
    tables = _point_tables(sweep)
    if isinstance(dask, str):
        _check_reachable(dask)  # before anything is written
    _log.info("sweep %r over %s: %d points (%s of %s) on %s", sweep.name, sweep.simulation, len(sweep.points()),
              sweep.mode, ", ".join(f"{a.key} x{len(a.values)}" for a in sweep.axes),
              f"dask {dask}" if dask is not None else f"{workers or 'all'} local workers")
    folder = out / "points"
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "sweep.json", lambda p: p.write_text(json.dumps(sweep.to_dict(), indent=2, default=str)))
    points = sweep.points()
    todo = [{"id": pid, "raw": raw, "where": where} for pid, (raw, where) in tables.items()
            if not _set_aside_corrupt(folder, pid)]
    tracker = RunProgress(sweep.name, len(points), progress=progress, unit="point", initial=len(points) - len(todo))

    settings = {point_id(point): point for point in points}

    def finish(result: dict[str, Any]) -> None:
        pid = result["id"]
        error_file = folder / f"{pid}.error.json"
        if "error" in result:
            # the point's settings too: the id alone does not tell a reader of the folder which point failed
            record = {"error": result["error"], "point": settings[pid]}
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
            # No more processes than pending points, nor than MAX_WORKERS.
            count = min(workers or os.cpu_count() or 1, len(todo), MAX_WORKERS)
            if count <= 1:
                _run_serial(todo, finish)
            else:
                _run_local(todo, count, finish)
    finally:
        tracker.close()
    ds = merge_points(sweep, folder)
    write_netcdf(ds, out / "sweep.nc")
    return ds


def _run_serial(todo: list[dict[str, Any]], finish: Callable[[dict[str, Any]], None]) -> None:
    import torch

    threads = torch.get_num_threads()
    try:
        for task in todo:
            finish(_run_point(task))
    finally:
        torch.set_num_threads(threads)


def _run_local(todo: list[dict[str, Any]], workers: int, finish: Callable[[dict[str, Any]], None]) -> None:
    run_in_workers(_run_point, todo, workers, lambda task, future: finish(future.result()))


def _run_dask(todo: list[dict[str, Any]], dask: str | Any, finish: Callable[[dict[str, Any]], None]) -> None:
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
        futures = client.map(_run_point, todo, pure=False)
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
        merged = merged.reindex(point=range(len(sweep.points())))
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
    merged.attrs["points"] = len(sweep.points())
    merged.attrs["failed_points"] = len(errors)
    return merged

