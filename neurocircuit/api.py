"""The Python entry point: :func:`run`, what ``neurocircuit run`` does, for a script or a notebook.

::

    import neurocircuit as nc

    ds = nc.run("default", model=my_circuit, arms=["bp", "kp"], overrides={"train.epochs": 1})
    ds["weight_angle"].sel(layer="W1").plot.line(x="step", hue="arm")

It returns the results :class:`xarray.Dataset` and writes nothing unless given ``out=``: then the folder
``neurocircuit run --out`` writes (``results.nc``, every run's ``runs/<arm>-seed<k>/``), and the figures too with
``figures=True``.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import xarray as xr

from ._toml import check_bounded
from .backends import RESULTS_FILE
from .circuit import Circuit
from .errors import ConfigError, NeurocircuitError
from .outdir import folder_lock, forget_owner
from .results import first_missing_folder, prepare_output, remove_empty_folders, write_netcdf
from .runs import run_simulation
from .simulation import Simulation, parse_simulation, read_simulation, set_key

__all__ = ["run"]

_KEYWORDS = ("model", "arms", "overrides", "out", "resume", "overwrite", "jobs", "figures", "progress")
# keywords of the command line that are settings here: say which key to override instead
_SHORTCUTS = {"epochs": "train.epochs", "batch_size": "train.batch_size", "data": "data.name",
              "seed": "seed", "seeds": "seeds", "backend": "backend", "workers": "torch.workers"}


def _plain(value: Any, key: str) -> Any:
    """``value`` as a simulation table holds it: tuples as lists, paths as strings, numpy scalars as numbers, a
    Circuit as its table."""
    if isinstance(value, Circuit):
        return value.to_dict()
    if isinstance(value, Path):
        return str(value)
    if type(value).__module__ == "numpy" and hasattr(value, "item"):  # np.float64 from np.linspace, np.int64
        return value.item() if getattr(value, "ndim", 0) == 0 else _plain(value.tolist(), key)
    if isinstance(value, (list, tuple)):
        return [_plain(v, key) for v in value]
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise ConfigError(f"overrides[{key!r}]: table keys must be strings, got {list(value)!r}")
        return {k: _plain(v, f"{key}.{k}") for k, v in value.items()}
    if value is None or not isinstance(value, (str, int, float, bool)):
        raise ConfigError(f"overrides[{key!r}]: a setting is a string, number, bool, list or table, got "
                          f"{type(value).__name__}")
    return value


def _table(simulation: str | Path | Mapping[str, Any] | Simulation) -> tuple[dict[str, Any], str, list[str] | None]:
    """The simulation's table, its source for messages, and the arms a given Simulation was narrowed to."""
    if isinstance(simulation, Simulation):
        raw = simulation.to_dict()
        listed = raw.get("arms") if isinstance(raw.get("arms"), list) else []
        return raw, simulation.source, simulation.labels if len(simulation.arms) < len(listed) else None
    if isinstance(simulation, Mapping):
        check_bounded(dict(simulation), "simulation table")  # before deepcopy, which recurses as deep as it nests
        raw = {k: (v if isinstance(v, Circuit) else copy.deepcopy(v)) for k, v in simulation.items()}
        return raw, "simulation table", None
    if isinstance(simulation, (str, Path)):
        source = str(simulation) if str(simulation).endswith(".toml") else f"simulation {str(simulation)!r}"
        return read_simulation(simulation), source, None
    raise ConfigError(f"run: simulation must be a name, a path, a table (dict) or a Simulation, got "
                      f"{type(simulation).__name__}")


def _check_out(out: Path, resume: bool, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out {str(out)!r} exists and is not a folder")
    if resume and overwrite:
        raise ConfigError("resume continues what is in out and overwrite replaces it: choose one")
    existing = [p for p in (out / RESULTS_FILE, out / "runs") if p.exists()]
    if existing and not (resume or overwrite):
        raise ConfigError(f"{existing[0]} exists: pass resume=True to continue that run, overwrite=True to replace "
                          "it, or choose another out")


def run(simulation: str | Path | Mapping[str, Any] | Simulation, *, model: str | Path | Circuit | None = None,
        arms: str | Iterable[str] | None = None, overrides: Mapping[str, Any] | None = None,
        out: str | Path | None = None, resume: bool = False, overwrite: bool = False, jobs: int = 1,
        figures: bool = False, progress: bool | None = None, **unknown: Any) -> xr.Dataset:
    """Run a simulation from Python: every arm for every seed on its backend, the results as one Dataset.

    Parameters
    ----------
    simulation
        A simulation's name (``"default"``: ``neurocircuit list``), the path of a simulation file (a model path in it
        is read from the file's folder), its table as a dict (the TOML file's keys; ``model`` may be a
        :class:`~neurocircuit.circuit.Circuit`), or a :class:`~neurocircuit.simulation.Simulation`.
    model
        The model instead of the simulation's: a :class:`~neurocircuit.circuit.Circuit` built in Python (kept in the
        table, and so in the results' ``config`` attribute, as :meth:`Circuit.to_dict`), a circuit's name or path, or
        a torchvision classifier's name (torch backend). Both backends run a Circuit.
    arms
        The labels of the arms to run (one label, or several), in the simulation's order; None: every arm.
    overrides
        Settings by dotted key, as ``--set`` takes them but with Python values: ``{"train.epochs": 2, "seeds": [0, 1],
        "brian2.tau": "5 ms", "phases.0.steps": 100, "arms": ["bp", "fa"]}`` (see
        :func:`neurocircuit.simulation.set_key`). Applied after ``model``, before ``arms`` selects.
    out
        A folder for the files ``neurocircuit run --out`` writes: ``results.nc`` and, per run, a checkpoint and its
        results under ``runs/`` (so ``resume=True`` continues an interrupted simulation). None: nothing is written.
    resume, overwrite
        With ``out``: continue the runs in it, or replace them (without either, an ``out`` that holds results is an
        error).
    jobs
        How many (arm, seed) runs at a time, each in its own worker process (needs ``out``).
    figures
        With ``out``: also save the figures ``neurocircuit run`` saves (:func:`neurocircuit.plotting.save_figures`).
        Off by default: from Python one plots the Dataset one wants.
    progress
        Progress bars (None: on a terminal or in a notebook). Without bars, progress goes to the ``neurocircuit``
        loggers at INFO: ``logging.basicConfig(level=logging.INFO)`` shows it.

    Returns
    -------
    xarray.Dataset
        Dims ``arm`` (labels; coordinate ``rule``) and ``seed``, plus the backend's own; the simulation's table as
        JSON in ``attrs["config"]``.

    Raises
    ------
    ConfigError, UnknownNameError, ShapeError, DataError
        For a bad argument, key or value, in one line naming it, before anything runs or is written.
    """
    if unknown:
        name = next(iter(unknown))
        hint = (f" (a setting: overrides={{{_SHORTCUTS[name]!r}: ...}})" if name in _SHORTCUTS
                else " (choose arms by label: arms=[...])" if name == "rule"
                else f" (keywords: {', '.join(_KEYWORDS)})")
        raise ConfigError(f"run: unknown keyword {name!r}{hint}")
    raw, source, kept = _table(simulation)
    if model is not None:
        if not isinstance(model, (str, Path, Circuit)):
            raise ConfigError(f"run: model must be a Circuit, a circuit's name or path, or a torchvision "
                              f"classifier's name, got {type(model).__name__}")
        if overrides and "model" in overrides:
            raise ConfigError("run: model is given twice (model= and overrides['model']): give it once")
        raw["model"] = _plain(model, "model")
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ConfigError(f"run: overrides must be a dict of dotted keys to values, e.g. {{'train.epochs': 2}}, "
                          f"got {type(overrides).__name__}")
    for key, value in (overrides or {}).items():
        if not isinstance(key, str):
            raise ConfigError(f"run: overrides keys are dotted setting names (strings), got {key!r}")
        try:
            set_key(raw, key, _plain(value, key))
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("--set", "overrides", 1)) from None
    if isinstance(arms, str):
        arms = [arms]
    elif arms is not None:
        arms = list(arms)
        if not all(isinstance(a, str) for a in arms):
            raise ConfigError(f"run: arms are labels (strings), got {arms!r}")
    elif kept is not None and not (overrides and "arms" in overrides):
        arms = kept  # a Simulation narrowed with select() stays narrowed
    sim = parse_simulation(raw, source=source).select(arms)
    for flag, value in (("resume", resume), ("overwrite", overwrite), ("figures", figures)):
        if not isinstance(value, bool):
            raise ConfigError(f"run: {flag} must be True or False, got {value!r}")
        if value and out is None:
            raise ConfigError(f"run: {flag}=True needs an output folder (out=...)")
    if out is None:
        return run_simulation(sim, progress=progress, jobs=jobs)
    if not isinstance(out, (str, Path)):
        raise ConfigError(f"run: out must be a folder's path, got {type(out).__name__}")
    out = Path(out)
    _check_out(out, resume, overwrite)
    created = first_missing_folder(out)
    prepare_output(out, "out")
    with folder_lock(out, "out"):  # the folder is this call's until its results are written
        if overwrite:
            (out / RESULTS_FILE).unlink(missing_ok=True)
            shutil.rmtree(out / "runs", ignore_errors=True)
            forget_owner(out)
        try:
            ds = run_simulation(sim, out=out, resume=resume, progress=progress, jobs=jobs)
        except NeurocircuitError:
            # refused once running (data missing or not fitting the model): the folders this call made and left
            # empty go
            if created is not None:
                remove_empty_folders(created)
            raise
        write_netcdf(ds, out / RESULTS_FILE)
    if figures:
        from .plotting import save_figures

        save_figures(ds, out)
    return ds
