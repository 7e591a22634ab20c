"""Backends: what runs a :class:`~neurocircuit.simulation.Simulation`, registered by name.

A backend declares the rules it implements and, section by section, the settings it honours. Any other setting a
file gives is refused before anything runs, naming the key and the backend — a setting is never silently ignored.
Running a simulation is the same for every backend: each (arm, seed) is run by :meth:`Backend.run_arm` into an
``xarray.Dataset``, and the runs are stacked along ``arm`` (labels, with the rule as a coordinate) and ``seed``.

To add a backend: subclass :class:`Backend`, fill in ``name``, ``honours`` and :meth:`rule_names`, implement
:meth:`prepare` and :meth:`run_arm`, and decorate it with :func:`register_backend`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import xarray as xr

from .errors import ConfigError, UnknownNameError
from .phases import PHASE_KINDS

__all__ = ["Backend", "register_backend", "get_backend", "list_backends", "set_keys", "run_dir",
           "RESULTS_FILE", "SECTIONS"]

#: The sections whose keys a backend declares: top-level keys, arm tables, [train], [mirror], [torch], one per
#: phase kind (a mirror phase also takes every [mirror] key), [data], [optimizer], an arm's rule ``options``, and
#: [brian2] with its sub-tables.
SECTIONS = ("top", "arm", "train", "mirror", "torch", "phase.engaged", "phase.mirror", "phase.prenatal", "data",
            "optimizer", "options", "brian2", "brian2.spiking", "brian2.tau_population")
#: Top-level keys that hold tables or lists: their entries are the settings (walked one by one).
_TABLES = ("data", "optimizer", "train", "mirror", "torch", "phases", "arms", "brian2")

_BACKENDS: dict[str, type[Backend]] = {}


def _did_you_mean(key: str, schema: Iterable[str], allowed: Iterable[str]) -> str:
    """A suggestion for a misspelt key (not for a key of the schema that this backend does not honour)."""
    if key in schema:
        return ""
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def set_keys(raw: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """Every setting a simulation table gives, as ``(section, key, dotted key)`` (see :data:`SECTIONS`).

    The dotted keys are the ones ``--set`` takes and :func:`neurocircuit._reads.recording_reads` logs.
    """
    for key in raw:
        if key not in _TABLES or not isinstance(raw[key], (Mapping, list)):
            yield "top", key, key
    for section in ("train", "mirror", "torch", "data", "optimizer"):
        table = raw.get(section, {})
        if isinstance(table, Mapping):
            for key in table:
                yield section, key, f"{section}.{key}"
    brian = raw.get("brian2", {})
    if isinstance(brian, Mapping):
        for key, value in brian.items():
            if key in ("spiking", "tau_population") and isinstance(value, Mapping):
                for sub in value:
                    yield f"brian2.{key}", sub, f"brian2.{key}.{sub}"
            else:
                yield "brian2", key, f"brian2.{key}"

    def phases(tables: Any, where: str) -> Iterator[tuple[str, str, str]]:
        for i, table in enumerate(tables if isinstance(tables, list) else []):
            if isinstance(table, Mapping):
                for key in table:
                    if key != "kind":
                        yield f"phase.{table.get('kind')}", key, f"{where}.{i}.{key}"

    yield from phases(raw.get("phases"), "phases")
    for i, arm in enumerate(raw.get("arms", []) if isinstance(raw.get("arms"), list) else []):
        if isinstance(arm, Mapping):
            for key, value in arm.items():
                if key == "options" and isinstance(value, Mapping):
                    for option in value:
                        yield "options", option, f"arms.{i}.options.{option}"
                elif key == "mirror" and isinstance(value, Mapping):  # the arm's own [mirror]
                    for setting in value:
                        yield "mirror", setting, f"arms.{i}.mirror.{setting}"
                elif key != "phases":
                    yield "arm", key, f"arms.{i}.{key}"
            yield from phases(arm.get("phases"), f"arms.{i}.phases")


class Backend:
    """Base class of backends. Subclasses set ``name`` and ``honours`` (section -> honoured keys)."""

    name: ClassVar[str] = ""
    honours: ClassVar[Mapping[str, frozenset[str] | None]] = {}
    #: The dotted keys a resumed run may change (they do not change the maths); any other change is refused.
    resumable: frozenset[str] = frozenset()

    def rule_names(self) -> set[str]:
        """The rules this backend implements (each has an entry in the backend's rule table)."""
        raise NotImplementedError

    def honoured(self, raw: Mapping[str, Any]) -> Mapping[str, frozenset[str] | None]:
        """The keys this backend honours in the simulation table ``raw``, by section (:data:`SECTIONS`); ``None``:
        every key the section's own parser accepts (e.g. the rule's options); a section missing here: none.
        Backends whose settings depend on others (a Brian2 variant, a data set's loader) override this."""
        return self.honours

    def refuse_unhonoured(self, raw: Mapping[str, Any], source: str,
                          schema: Mapping[str, frozenset[str]] | None = None) -> None:
        """Refuse every setting of ``raw`` this backend does not honour — all of them at once, in one line naming
        each key, the backend and what it honours there. Runs on the raw table, before any section is parsed, so
        misspelt keys of every section are named together. ``schema``: the keys the schema's records take, by
        section (a real key gets no "did you mean")."""
        schema = schema or {}
        honoured = self.honoured(raw)
        refused = []
        for section, key, where in set_keys(raw):
            if section.startswith("phase.") and section[6:] not in PHASE_KINDS:
                continue  # an unknown phase kind: the phase parser names it
            allowed = honoured.get(section, frozenset())
            if allowed is not None and key not in allowed:
                refused.append((section, where))
        if refused:
            sections = sorted({section for section, _ in refused})
            hint = "; ".join(f"{section}: {', '.join(sorted(honoured.get(section) or ())) or 'nothing'}"
                             for section in sections)
            names = ", ".join(where + _did_you_mean(where.rsplit(".", 1)[-1], schema.get(section, ()),
                                                    honoured.get(section) or ())
                              for section, where in refused)
            raise ConfigError(f"{source}: {names} {'is' if len(refused) == 1 else 'are'} not honoured by the "
                              f"{self.name} backend{self._refusal_context(raw)} (it honours here — {hint})")

    def validate(self, sim: Any) -> None:
        """Refuse every rule this backend does not implement, then :meth:`prepare` (build what the runs need, so bad
        input fails before any work). :func:`~neurocircuit.simulation.parse_simulation` has already refused the
        settings this backend does not honour (:meth:`refuse_unhonoured`), before parsing any section."""
        rules = self.rule_names()
        for arm in sim.arms:
            for rule in (arm.rule, *arm.overrides.values()):
                if rule not in rules:
                    raise ConfigError(f"{sim.source}: arm {arm.label!r}: rule {rule!r} is not implemented by the "
                                      f"{self.name} backend (it implements: {', '.join(sorted(rules))})")
        self.prepare(sim)

    def _refusal_context(self, raw: Mapping[str, Any]) -> str:
        """Words after the backend's name in a refusal (e.g. which variant)."""
        return ""

    def prepare(self, sim: Any) -> None:
        """Check everything a run needs (models, data description, optimizer) without running anything."""

    def load_data(self, sim: Any) -> Any:
        """The data every arm and seed shares (loaded once per simulation)."""
        return None

    def run_arm(self, sim: Any, arm: Any, seed: int, data: Any, *, out: Path | None = None, resume: bool = False,
                progress: bool | None = None, stop_after_steps: int | None = None,
                on_record: Callable[[str, dict[str, Any]], None] | None = None) -> xr.Dataset:
        """Run one arm with one seed; results without the ``arm``/``seed`` dims. ``out``: the run's own folder
        (checkpoints, partial results), ``resume``: continue what is there; ``stop_after_steps``: stop as a signal
        would after that many training steps (backends with checkpoints); ``on_record(label, record)``: called with
        each record as it is taken (backends that record while they run)."""
        raise NotImplementedError

    def attrs(self, sim: Any) -> dict[str, Any]:
        """Backend-specific attributes of the results (units, time convention)."""
        return {}

    def on_accelerator(self, sim: Any) -> bool:
        """Whether ``sim``'s runs use a device other than the CPU (a process that forks workers must not have set one
        up: parallel runs then start fresh workers)."""
        return False

    def finish(self, results: xr.Dataset) -> xr.Dataset:
        """Tidy the merged results of all arms (e.g. fill labels of times an arm did not have)."""
        return results


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Class decorator: register a :class:`Backend` subclass under ``cls.name``."""
    if not cls.name:
        raise TypeError(f"{cls!r} has no name")
    _BACKENDS[cls.name] = cls
    return cls


#: The built-in backends' modules, imported by name when first asked for (so a torch run never imports Brian2): a
#: plugin table, like entry points — this interface module depends on no backend, each backend depends on it.
_BUILTIN = {"torch": "neurocircuit.torch.backend", "brian2": "neurocircuit.brian.backend"}


def list_backends() -> list[str]:
    """Names of the registered backends."""
    return sorted(set(_BUILTIN) | set(_BACKENDS))


def get_backend(name: str, *, where: str = "backend") -> Backend:
    """The backend called ``name``."""
    if name not in _BACKENDS and name in _BUILTIN:
        import importlib

        importlib.import_module(_BUILTIN[name])  # registers it
    if name not in _BACKENDS:
        raise UnknownNameError(f"{where}: unknown backend {name!r} (known: {', '.join(list_backends())})")
    return _BACKENDS[name]()


#: The results file a run writes in its run folder (:func:`run_dir`) and a simulation in its output folder.
RESULTS_FILE = "results.nc"


def run_dir(out: Path, label: str, seed: int) -> Path:
    """Where one (arm, seed) run keeps its checkpoint and results inside a simulation's output folder."""
    safe = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in label)
    return out / "runs" / f"{safe}-seed{seed}"
