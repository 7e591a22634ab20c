"""Summaries of the results book: writing them from results (``summarize``), reading and checking them
(``load_book``), and the paired statistics their tables show. See :mod:`neurocircuit.book`."""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._toml import check_keys, read_toml
from ..errors import ConfigError
from ..results import write_atomic

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["BOOK_FOLDER", "BOOK_FILE", "BookError", "Table", "simulation_hash", "summarize", "write_summary",
           "load_book", "paired_difference", "mean_sd", "REFERENCE_ARM", "phase_runs"]

#: Where the summaries live, relative to the repository root (v1 = this storage format).
BOOK_FOLDER = Path("results") / "v1"
#: The generated book, relative to the repository root.
BOOK_FILE = Path("docs") / "results.md"
#: The arm that paired differences are taken against, when a table has it.
REFERENCE_ARM = "bp"

_PROVENANCE_KEYS = ("simulation", "simulation_hash", "neurocircuit_version", "git_commit", "device", "date", "command")
_REGISTRATION_KEYS = ("protocol", "protocol_sha256", "protocol_commit", "run_commits", "follows_protocol",
                      "simulation_as_registered")
_TRANSCRIBED_REQUIRED = ("title", "source", "command", "device", "columns", "rows")
_TRANSCRIBED_OPTIONAL = ("simulation", "date", "note", "library_command")
_TABLE_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


class BookError(ConfigError):
    """A summary file of the results book is malformed, or the book cannot be generated."""


# ----------------------------------------------------------------------------------------------------- summaries


def simulation_hash(sim_dict: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of a resolved simulation table (:meth:`Simulation.to_dict`).

    Canonical: sorted keys, no whitespace, non-JSON values as ``str`` — the same conversion results use for their
    ``config`` attribute, so the table read back from a results file hashes like the one it was written from."""
    text = json.dumps(sim_dict, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _last_valid(values: Any) -> float:
    """The last finite value of a 1-D array (arms may end at different times), NaN when there is none (a float
    either way: np.vectorize takes its output type from the first run, and a None there made the array object)."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    finite = np.flatnonzero(np.isfinite(values))
    return math.nan if finite.size == 0 else float(values[finite[-1]])


def _time_dim(var: xr.DataArray, name: str, allowed: Sequence[str]) -> str:
    rest = [d for d in var.dims if d not in allowed]
    if len(rest) != 1:
        raise BookError(f"variable {name!r} has dims {tuple(var.dims)}: a summary needs arm, seed, one time "
                        f"dimension{' and layer' if 'layer' in allowed else ''}")
    return rest[0]


def _scale(var: xr.DataArray) -> tuple[float, str]:
    """Accuracies stored as fractions are summarised in percent."""
    units = str(var.attrs.get("units", "1"))
    return (100.0, "%") if units in ("1", "") else (1.0, units)


def summarize(results: xr.Dataset, *, table: str, title: str, command: str, settings: Sequence[str] = (),
              device: str | None = None, commit: str | None = None, steps: Sequence[int] = ()) -> dict[str, Any]:
    """The measured summary of a results file (the ``results/v1/measured/<table>.json`` format).

    Parameters
    ----------
    results : xarray.Dataset
        A simulation's results (``neurocircuit run``): dims ``arm`` and ``seed``, a ``config`` attribute.
    table : str
        The table's id (the file name in ``measured/``; letters, digits, ``_ . -``).
    title : str
        The table's heading in the book.
    command : str
        The exact command that produced ``results``.
    settings : sequence of str
        The ``key=value`` settings the run applied to its simulation (``--set``); the stale check resolves the
        simulation with them.
    device : str, optional
        Where it ran; default: the results' ``device`` attribute, else a description of this machine.
    commit : str, optional
        The git commit the run was made at (hex, 7–40 digits, optionally ``+dirty``); default: the commit of the
        checkout this package is imported from.
    steps : sequence of int
        Also store ``test_accuracy`` and ``val_accuracy`` at these values of the ``step`` coordinate, as
        ``<name>_step<k>`` (a learning-speed claim: accuracy after a quarter epoch).

    Returns
    -------
    dict
        ``table``, ``title``, ``kind`` (``"measured"``), ``provenance``, ``metrics`` (names, in column order),
        ``units`` (per metric), ``validation`` (whether the results had a validation split) and ``runs`` (one dict
        per arm × seed: ``arm``, ``seed`` and a value, or None, per metric).
    """
    if not _TABLE_ID.match(table):
        raise BookError(f"table id {table!r}: use letters, digits, '_', '.' and '-' only")
    if commit is not None and not re.fullmatch(r"[0-9a-f]{7,40}(\+dirty)?", commit):
        raise BookError(f"commit {commit!r}: give a git commit (7 to 40 hex digits, optionally '+dirty')")
    if "sweep" in results.attrs:
        raise BookError("a sweep file has no single simulation: summarise one point's results.nc")
    for needed in ("arm", "seed"):
        if needed not in results.dims:
            raise BookError(f"results have no {needed!r} dimension (dims: {', '.join(map(str, results.dims))})")
    if "config" not in results.attrs or "simulation" not in results.attrs:
        raise BookError("results carry no 'config'/'simulation' attributes: summarise a file written by "
                        "'neurocircuit run'")
    sim_dict = json.loads(results.attrs["config"])

    columns: list[tuple[str, str, Any]] = []  # (metric, unit, DataArray over arm × seed)
    for name in ("test_accuracy", "val_accuracy", "twin_test_accuracy"):
        if name in results:
            var = results[name]
            factor, unit = _scale(var)
            dim = _time_dim(var, name, ("arm", "seed"))
            columns.append((f"{name}_final", unit, factor * _reduce_last(var, dim)))
    for k in steps:
        for name in ("test_accuracy", "val_accuracy"):
            if name not in results:
                continue
            var = results[name]
            known = results["step"].values.tolist() if "step" in results.coords else []
            if "step" not in var.dims or k not in set(known):
                raise BookError(f"{name} has no record at step {k} (steps: {', '.join(map(str, known)) or 'none'})")
            factor, unit = _scale(var)
            columns.append((f"{name}_step{k}", unit, factor * var.sel(step=k)))
    validation = "val_accuracy" in results
    if validation:
        columns += _best_on_validation(results)
    for name in sorted(v for v in results.data_vars if v == "weight_angle" or str(v).endswith("_weight_angle")):
        var = results[name]
        if "layer" not in var.dims:
            raise BookError(f"variable {name!r} has no 'layer' dimension")
        dim = _time_dim(var, name, ("arm", "seed", "layer"))
        unit = str(var.attrs.get("units", "degree"))
        for phase, values in _at_phase_ends(results, var, dim):
            columns += [(f"{name}_after_{phase}_{layer}", unit, values.sel(layer=layer))
                        for layer in var["layer"].values]
        last = _reduce_last(var, dim)
        for layer in var["layer"].values:
            columns.append((f"{name}_{layer}", unit, last.sel(layer=layer)))
    for name in sorted(str(v) for v in results.data_vars if str(v).endswith("_rate")):
        var = results[name]
        if str(var.attrs.get("units", "")) == "Hz" and {"arm", "seed"} <= set(var.dims):
            # samples at a fixed interval: their mean is the population's mean rate over the run
            columns.append((f"{name}_mean", "Hz", var.mean([d for d in var.dims if d not in ("arm", "seed")])))
    if not columns:
        raise BookError("results have none of test_accuracy, val_accuracy, twin_test_accuracy, *weight_angle, "
                        "*_rate (Hz)")

    runs = []
    for arm in results["arm"].values:
        for seed in results["seed"].values:
            run: dict[str, Any] = {"arm": str(arm), "seed": int(seed)}
            for metric, _, values in columns:
                value = float(values.sel(arm=arm, seed=seed))
                run[metric] = value if math.isfinite(value) else None
            runs.append(run)
    return {
        "table": table,
        "title": title,
        "kind": "measured",
        "provenance": {
            "simulation": str(results.attrs["simulation"]),
            "simulation_hash": simulation_hash(sim_dict),
            "settings": list(settings),
            "neurocircuit_version": str(results.attrs.get("neurocircuit_version", _package_version())),
            "git_commit": commit or _git_commit(),
            "device": device or str(results.attrs.get("device", "")) or _machine(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": command,
        },
        "metrics": [metric for metric, _, _ in columns],
        "units": {metric: unit for metric, unit, _ in columns},
        "validation": validation,
        "runs": runs,
    }


def _reduce_last(var: xr.DataArray, dim: str) -> xr.DataArray:
    import xarray as xr

    return xr.apply_ufunc(_last_valid, var, input_core_dims=[[dim]], vectorize=True, output_dtypes=[float])


#: Phase labels that name no phase: a time only other arms have, the protocol's closing blank window.
_NO_PHASE = ("", "nan", "None", "end")


def phase_runs(labels: Sequence[Any]) -> list[tuple[str, int]]:
    """The phases of one run's snapshots, in order, as ``(name, first index)``.

    A label ``<phase>_mirror`` / ``_test`` / ``_val`` (interleaved mirror windows, evaluation windows) belongs to
    ``<phase>`` when that phase has snapshots of its own; a label that names no phase (``""``: a time only other arms
    have; ``"end"``: the closing window) neither starts a phase nor ends one."""
    names = [str(v.decode() if isinstance(v, bytes) else v) for v in labels]
    present = set(names)
    for i, name in enumerate(names):
        for suffix in ("_mirror", "_test", "_val"):
            if name.endswith(suffix) and name[:-len(suffix)] in present:
                names[i] = name[:-len(suffix)]
    runs: list[tuple[str, int]] = []
    for i, name in enumerate(names):
        if name not in _NO_PHASE and (not runs or runs[-1][0] != name):
            runs.append((name, i))
    return runs


def _labels_along(results: xr.Dataset, dim: str) -> xr.DataArray | None:
    """The phase labels along ``dim`` (a variable or coordinate ``phase`` / ``*_phase``), or None."""
    for name in sorted(map(str, results.variables)):
        var = results[name]
        if (name == "phase" or name.endswith("_phase")) and dim in var.dims \
                and set(var.dims) <= {"arm", "seed", dim}:
            return var
    return None


def _at_phase_ends(results: xr.Dataset, var: xr.DataArray, dim: str) -> list[tuple[str, xr.DataArray]]:
    """Per phase of the schedule except each run's last: ``var`` (arm × seed × layer) at the first snapshot of
    the next phase — the state the phase ended in, as a snapshot at a window's start records the state before it.
    NaN where a run has no such phase (another arm's schedule)."""
    import numpy as np
    import xarray as xr

    labels = _labels_along(results, dim)
    if labels is None:
        return []
    arms, seeds = results["arm"].values, results["seed"].values
    ends: dict[str, dict[tuple[int, int], int]] = {}
    for i, arm in enumerate(arms):
        for j, seed in enumerate(seeds):
            run = labels.sel({k: v for k, v in (("arm", arm), ("seed", seed)) if k in labels.dims})
            phases = phase_runs(run.transpose(dim).values)
            for (phase, _), (_, start) in zip(phases, phases[1:]):
                ends.setdefault(phase, {})[(i, j)] = start
    out = []
    data = var.transpose("arm", "seed", dim, "layer").values
    for phase, where in ends.items():
        values = np.full((len(arms), len(seeds), data.shape[-1]), np.nan)
        for (i, j), k in where.items():
            values[i, j] = data[i, j, k]
        out.append((phase, xr.DataArray(values, dims=("arm", "seed", "layer"),
                                        coords={"arm": arms, "seed": seeds, "layer": var["layer"].values})))
    return out


def _best_on_validation(results: xr.Dataset) -> list[tuple[str, str, Any]]:
    """Per arm × seed: the best validation accuracy, the epoch (or step) where it was reached — the first such
    record — and the test accuracy there (:func:`neurocircuit.selection.best_record`: the test accuracy never
    chooses)."""
    import numpy as np
    import xarray as xr

    from ..selection import best_record

    val = results["val_accuracy"]
    dim = _time_dim(val, "val_accuracy", ("arm", "seed"))
    if "test_accuracy" not in results or results["test_accuracy"].dims != val.dims:
        raise BookError("val_accuracy needs a test_accuracy over the same dimensions to report the test accuracy "
                        "at the best validation epoch")
    when_name = "epoch" if "epoch" in results.coords and results["epoch"].dims == (dim,) else dim
    shape = (results.sizes["arm"], results.sizes["seed"])
    best, epoch, at = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    for i, arm in enumerate(results["arm"].values):
        for j, seed in enumerate(results["seed"].values):
            run = results[["val_accuracy", "test_accuracy"]].sel(arm=arm, seed=seed)
            if not np.isfinite(np.asarray(run["val_accuracy"].values, dtype=float)).any():
                continue  # this arm has no validation record (e.g. no engaged phase)
            chosen = best_record(run, dim=dim)
            best[i, j], at[i, j] = chosen.validation, chosen.test
            epoch[i, j] = float(results[when_name].sel({dim: chosen.where[dim]}))

    def over_runs(values: np.ndarray) -> xr.DataArray:
        return xr.DataArray(values, dims=("arm", "seed"), coords={"arm": results["arm"], "seed": results["seed"]})

    val_factor, val_unit = _scale(val)
    test_factor, test_unit = _scale(results["test_accuracy"])
    unit_when = str(results[when_name].attrs.get("units", when_name))
    return [("val_accuracy_best", val_unit, val_factor * over_runs(best)),
            (f"{when_name}_at_best_val", unit_when, over_runs(epoch)),
            ("test_accuracy_at_best_val", test_unit, test_factor * over_runs(at))]


def _package_version() -> str:
    from .._version import __version__

    return __version__


def _git_commit() -> str:
    """The commit of the checkout this package is imported from ("+dirty" when its code has uncommitted changes),
    "unknown" outside a git checkout (an installed copy)."""
    root = Path(__file__).resolve().parents[2]  # neurocircuit/book/summaries.py -> the checkout
    if not (root / ".git").exists():
        return "unknown"
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--",
                                "neurocircuit", "models", "simulations"], capture_output=True, text=True,
                               check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "") if head else "unknown"


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"CPU: {cpu}, {os.cpu_count()} cores"
    try:
        import torch

        if torch.cuda.is_available():
            text += f"; GPU: {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return text


def write_summary(summary: Mapping[str, Any], folder: str | Path) -> Path:
    """Write a measured summary to ``folder/measured/<table>.json`` atomically (checked first); returns the path."""
    path = Path(folder) / "measured" / f"{summary.get('table')}.json"
    _check_measured(dict(summary), path)
    text = json.dumps(summary, indent=1, sort_keys=True, allow_nan=False) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# ----------------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Table:
    """One table of the book, as read from its summary file."""

    id: str
    kind: str  # "measured" or "transcribed"
    path: Path
    data: Mapping[str, Any]

    @property
    def title(self) -> str:
        """The table's title, as stored."""
        return str(self.data["title"])


def _check_measured(data: Any, path: Path) -> None:
    def need(cond: bool, what: str) -> None:
        if not cond:
            raise BookError(f"{path}: {what}")

    need(isinstance(data, dict), "a measured summary is a JSON object")
    for key in ("table", "title", "kind", "provenance", "metrics", "runs"):
        need(key in data, f"missing key {key!r}")
    need(data["table"] == path.stem, f"'table' is {data['table']!r} but the file is named {path.name!r}")
    need(data["kind"] == "measured", f"'kind' must be \"measured\", got {data['kind']!r}")
    need(isinstance(data["title"], str), "'title' must be a string")
    prov = data["provenance"]
    need(isinstance(prov, dict), "'provenance' must be an object")
    for key in _PROVENANCE_KEYS:
        need(isinstance(prov.get(key), str), f"provenance key {key!r} missing or not a string")
    settings = prov.get("settings", [])
    need(isinstance(settings, list) and all(isinstance(s, str) for s in settings),
         "provenance 'settings' must be a list of strings")
    metrics = data["metrics"]
    need(isinstance(metrics, list) and metrics and all(isinstance(m, str) for m in metrics),
         "'metrics' must be a non-empty list of strings")
    units = data.get("units", {})
    need(isinstance(units, dict), "'units' must be an object")
    superseded = data.get("superseded_by")  # {"table": id, "because": why}: a later table replaces this one
    need(superseded is None or (isinstance(superseded, dict) and set(superseded) == {"table", "because"}
                                and all(isinstance(v, str) and v for v in superseded.values())),
         "'superseded_by' must be {\"table\": ID, \"because\": WHY}")
    registration = data.get("preregistration", {})  # claim id -> what 'neurocircuit claims' checked with git
    need(isinstance(registration, dict), "'preregistration' must be an object")
    for claim, entry in registration.items():
        need(isinstance(entry, dict) and set(entry) == set(_REGISTRATION_KEYS), f"preregistration[{claim!r}] must "
             f"hold exactly {', '.join(_REGISTRATION_KEYS)}")
        need(all(isinstance(entry[k], str) for k in ("protocol", "protocol_sha256", "protocol_commit"))
             and isinstance(entry["run_commits"], list) and all(isinstance(c, str) for c in entry["run_commits"])
             and isinstance(entry["follows_protocol"], bool) and isinstance(entry["simulation_as_registered"], bool),
             f"preregistration[{claim!r}]: strings, a list of commits and two booleans")
    runs = data["runs"]
    need(isinstance(runs, list) and runs, "'runs' must be a non-empty list")
    for i, run in enumerate(runs):
        need(isinstance(run, dict), f"runs[{i}] must be an object")
        need(isinstance(run.get("arm"), str), f"runs[{i}]: 'arm' missing or not a string")
        need(isinstance(run.get("seed"), int) and not isinstance(run.get("seed"), bool),
             f"runs[{i}]: 'seed' missing or not an integer")
        for metric in metrics:
            value = run.get(metric, None)
            need(value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)),
                 f"runs[{i}]: {metric!r} must be a number or null, got {value!r}")


def _check_transcribed(data: dict[str, Any], path: Path) -> None:
    check_keys(data, (*_TRANSCRIBED_REQUIRED, *_TRANSCRIBED_OPTIONAL), str(path))
    for key in _TRANSCRIBED_REQUIRED:
        if key not in data:
            raise BookError(f"{path}: missing key {key!r}")
    for key in ("title", "source", "command", "device", *_TRANSCRIBED_OPTIONAL):
        if key in data and not isinstance(data[key], str):
            raise BookError(f"{path}: {key!r} must be a string, got {data[key]!r}")
    columns, rows = data["columns"], data["rows"]
    if not (isinstance(columns, list) and columns and all(isinstance(c, str) for c in columns)):
        raise BookError(f"{path}: 'columns' must be a non-empty list of strings")
    if not isinstance(rows, list) or not rows:
        raise BookError(f"{path}: 'rows' must be a non-empty list of lists")
    for i, row in enumerate(rows):
        if not (isinstance(row, list) and all(isinstance(c, str) for c in row)):
            raise BookError(f"{path}: rows[{i}] must be a list of strings (cells exactly as in the source)")
        if len(row) != len(columns):
            raise BookError(f"{path}: rows[{i}] has {len(row)} cells for {len(columns)} columns")


def load_book(folder: str | Path) -> list[Table]:
    """Every table of the book in ``folder`` (``measured/*.json`` then ``transcribed/*.toml``, each by id)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BookError(f"no results book at {folder}: run from the repository root or pass --root")
    tables: list[Table] = []
    for path in sorted((folder / "measured").glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BookError(f"{path}: not valid JSON ({exc})") from None
        _check_measured(data, path)
        tables.append(Table(path.stem, "measured", path, data))
    for path in sorted((folder / "transcribed").glob("*.toml")):
        try:
            data = read_toml(path)
            _check_transcribed(data, path)
        except ConfigError as exc:  # malformed TOML or an unknown key: one error type for the book's files
            raise BookError(str(exc)) from None
        tables.append(Table(path.stem, "transcribed", path, data))
    seen: dict[str, Path] = {}
    for table in tables:
        if table.id in seen:
            raise BookError(f"table id {table.id!r} is used twice: {seen[table.id]} and {table.path}")
        seen[table.id] = table.path
    return tables


# ----------------------------------------------------------------------------------------------------- statistics


def paired_difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float, int]:
    """Mean of ``a - b`` over pairs (seeds) with its 95 % confidence interval from the t-distribution with n - 1
    degrees of freedom: ``(mean, low, high, n)``; the interval is NaN with fewer than two pairs."""
    from scipy import stats

    diffs = [x - y for x, y in zip(a, b, strict=True)]
    n = len(diffs)
    if n == 0:
        return (math.nan, math.nan, math.nan, 0)
    mean = sum(diffs) / n
    if n < 2:
        return (mean, math.nan, math.nan, n)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return (mean, mean - half, mean + half, n)


def mean_sd(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample sd with n - 1, n); nan where undefined (no values; sd of one)."""
    n = len(values)
    if n == 0:
        return (math.nan, math.nan, 0)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return (mean, sd, n)


