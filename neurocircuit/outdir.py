"""An output folder belongs to one simulation: a lock while a process writes it, and a record of what wrote it.

- **The lock** is an OS lock (``fcntl.flock``) on the folder itself, held from the moment ``run`` takes the folder to
  the last file it writes. The kernel drops it when the process ends, however it ends (SIGKILL included), so it is
  never stale; a second process asking for it is refused at once. ``run --jobs N`` workers are forked children: they
  share the parent's lock and never ask for it. Locking the folder rather than a lock file in it leaves nothing
  behind, and avoids the race of removing a lock file another process has open.
- **The owner file** ``OUT/owner.json`` (written atomically) records the simulation's name, its settings (the
  resolved table but arms and seeds) and their hash, the arms (labels and tables) and the seeds. A run into a folder
  with an owner file must match it: another simulation, other settings (but the ones a backend lets a resumed run
  change), or an arm of the same label defined otherwise are refused in one line naming the difference; other
  arms or seeds only with ``merge`` (they are added, and the merged results keep what was there).
- **Folders written before owner files** (none in them) are adopted when what they hold matches: their
  ``results.nc`` (its ``config`` attribute, arms and seeds) or, without one, the run folders under ``runs/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from .backends import RESULTS_FILE, run_dir
from .errors import ConfigError, NeurocircuitError
from .results import write_atomic

__all__ = ["OWNER_NAME", "folder_lock", "identity", "arm_table", "owned_folder", "forget_owner"]

OWNER_NAME = "owner.json"
_FORMAT = 1

# Folders this process holds, by resolved path: (descriptor, depth, pid). The CLI holds the folder across the run and
# the final writes, and run_simulation takes it again inside: a second flock on a new descriptor would refuse us.
_HELD: dict[Path, list[int]] = {}


@contextlib.contextmanager
def folder_lock(folder: Path, what: str = "--out") -> Iterator[None]:
    """Hold the OS lock of ``folder`` (which must exist); a ConfigError at once when another process holds it."""
    key = Path(folder).resolve()
    held = _HELD.get(key)
    if held is not None and held[2] == os.getpid():
        held[1] += 1
        try:
            yield
        finally:
            held[1] -= 1
        return
    fd = os.open(key, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        pid = (_read_owner(key / OWNER_NAME) or {}).get("pid")  # the holder writes it once it has the lock
        raise ConfigError(f"{what} {str(folder)!r} is in use by another neurocircuit process"
                          f"{f' (pid {pid})' if _alive(pid) else ''}: wait for it to end, or choose another "
                          "folder") from None
    _HELD[key] = [fd, 1, os.getpid()]
    try:
        yield
    finally:
        del _HELD[key]
        os.close(fd)  # releases the lock


def _alive(pid: Any) -> bool:
    """Whether ``pid`` names another running process (an owner file's pid may be an earlier run's)."""
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process
    return True


def identity(name: str, config: Mapping[str, Any], labels: Collection[str], seeds: Collection[int]) -> dict[str, Any]:
    """What a simulation run into a folder is: its name, settings (all but arms and seeds) and their hash, the arms
    it runs (labels and their tables) and its seeds."""
    settings = json.loads(json.dumps({k: v for k, v in config.items() if k not in ("arms", "seeds")},
                                     sort_keys=True, default=str))
    text = json.dumps(settings, sort_keys=True)
    tables = {label: arm_table(config.get("arms", []), label) for label in labels}
    return {"format": _FORMAT, "simulation": name, "hash": hashlib.sha256(text.encode()).hexdigest()[:16],
            "settings": settings, "arms": list(labels), "arm_tables": json.loads(json.dumps(tables, default=str)),
            "seeds": list(seeds)}


def arm_table(entries: Any, label: str) -> Any:
    """The table of arm ``label`` in a simulation's ``arms`` list (a bare rule name as ``{rule: name}``)."""
    for entry in entries if isinstance(entries, list) else []:
        if entry == label or (isinstance(entry, Mapping) and entry.get("label", entry.get("rule")) == label):
            return entry if isinstance(entry, Mapping) else {"rule": entry}
    return None


def _read_owner(path: Path) -> dict[str, Any] | None:
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _flat(table: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(table, Mapping):
        return {prefix[:-1]: table}
    out: dict[str, Any] = {}
    for key, value in table.items():
        out.update(_flat(value, f"{prefix}{key}."))
    return out


def _legacy_owner(out: Path) -> dict[str, Any] | None:
    """What a folder written before owner files holds: from its results.nc, else its run folders (None: nothing)."""
    results = out / RESULTS_FILE
    if results.is_file():
        import xarray as xr

        try:
            with xr.open_dataset(results) as ds:
                config = json.loads(ds.attrs["config"])
                held = identity(str(ds.attrs.get("simulation", config.get("name", "?"))), config,
                                [str(a) for a in ds["arm"].values], [int(s) for s in ds["seed"].values])
        except Exception as exc:  # not netCDF, or not a results file of a run
            raise ConfigError(f"{results} is not a readable results file of a neurocircuit run "
                              f"({type(exc).__name__}): move it away, or --overwrite (nc.run: "
                              "overwrite=True)") from None
        return held
    runs = out / "runs"
    # an empty run folder (a run refused before it wrote anything) holds nothing
    folders = sorted(p.name for p in runs.iterdir() if p.is_dir() and any(p.iterdir())) if runs.is_dir() else []
    return {"runs": folders} if folders else None


def _shown(items: Collection[Any]) -> str:
    return "[" + ", ".join(str(i) for i in items) + "]"


def _refusal(out: Path, held: dict[str, Any], wanted: dict[str, Any], *, merge: bool, resumable: Collection[str],
             what: str) -> str | None:
    """One line saying how ``wanted`` differs from what ``out`` holds (None: it may run there)."""
    where = f"{what} {str(out)!r}"
    if "runs" in held:  # an old folder without results.nc: its run folders are all we know
        mine = {run_dir(out, label, seed).name for label in wanted["arms"] for seed in wanted["seeds"]}
        other = [name for name in held["runs"] if name not in mine]
        if other and not merge:
            return (f"{where} holds runs {_shown(other)} that this run does not have (arms {_shown(wanted['arms'])}, "
                    f"seeds {_shown(wanted['seeds'])}): pass --merge (run_simulation: merge=True) to add this run's "
                    "to them, or choose another output folder")
        return None
    if held.get("simulation") != wanted["simulation"]:
        return (f"{where} holds simulation {held.get('simulation')!r}; this run is {wanted['simulation']!r}: choose "
                "another output folder (or --overwrite, nc.run: overwrite=True, to replace it)")
    a, b = _flat(held.get("settings", {})), _flat(wanted["settings"])
    changed = sorted(k for k in set(a) | set(b) if k not in resumable and a.get(k) != b.get(k))
    tables = held.get("arm_tables", {})
    changed += [f"arm {label!r}" for label in wanted["arms"]
                if tables.get(label) is not None and tables[label] != wanted["arm_tables"][label]]
    if changed:
        return (f"{where} holds simulation {wanted['simulation']!r} run with other settings: {', '.join(changed)} "
                "differ (set them back, or choose another output folder)")
    if merge or (sorted(held["arms"]) == sorted(wanted["arms"]) and sorted(held["seeds"]) == sorted(wanted["seeds"])):
        return None
    return (f"{where} holds simulation {held['simulation']!r} with arms {_shown(held['arms'])} and seeds "
            f"{_shown(held['seeds'])}; this run has arms {_shown(wanted['arms'])} and seeds {_shown(wanted['seeds'])}: "
            "pass --merge (run_simulation: merge=True) to add this run's to it (its results.nc keeps what is there), "
            "or choose another output folder")


def _union(first: list[Any], second: list[Any]) -> list[Any]:
    return first + [x for x in second if x not in first]


@contextlib.contextmanager
def owned_folder(out: Path, wanted: dict[str, Any], *, merge: bool = False, resumable: Collection[str] = (),
                 what: str = "--out") -> Iterator[None]:
    """Lock ``out`` (made if missing) and check it holds ``wanted``'s simulation (:func:`identity`), or nothing;
    record it (with ``merge``: the arms and seeds of both) in ``out/owner.json`` for the run. A run refused
    (a :class:`~neurocircuit.errors.NeurocircuitError`) leaves the owner file as it was."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out, what):
        path = out / OWNER_NAME
        previous = path.read_bytes() if path.is_file() else None
        held = _read_owner(path) if previous is not None else _legacy_owner(out)
        if previous is not None and (held is None or held.get("format") != _FORMAT):
            raise ConfigError(f"{path} is not an owner file of this neurocircuit version: move it away, or "
                              "--overwrite (nc.run: overwrite=True)")
        record = dict(wanted)
        if held is not None:
            refusal = _refusal(out, held, wanted, merge=merge, resumable=resumable, what=what)
            if refusal is not None:
                raise ConfigError(refusal)
            if merge and "runs" not in held:
                record["arms"] = _union(held["arms"], wanted["arms"])
                record["seeds"] = _union(held["seeds"], wanted["seeds"])
                record["arm_tables"] = {**held.get("arm_tables", {}), **wanted["arm_tables"]}
        record["pid"] = os.getpid()
        runs = _listing(out / "runs")
        text = (json.dumps(record, indent=1, sort_keys=True) + "\n").encode()
        if text != previous:  # the same owner again (same process): the file is left as it is
            write_atomic(path, lambda tmp: tmp.write_bytes(text))
        try:
            yield
        except NeurocircuitError:
            if _listing(out / "runs") == runs:  # refused before it wrote a run: the folder is as it was
                if previous is None:
                    path.unlink(missing_ok=True)
                elif path.read_bytes() != previous:
                    write_atomic(path, lambda tmp: tmp.write_bytes(previous))
            raise


def _listing(folder: Path) -> list[str]:
    """The files under ``folder``: the empty run folders a refused run made hold nothing of it."""
    return sorted(str(p) for p in folder.rglob("*") if not p.is_dir()) if folder.is_dir() else []


def forget_owner(out: Path) -> None:
    """Remove ``out``'s owner file (``--overwrite`` replaces what the folder held)."""
    (Path(out) / OWNER_NAME).unlink(missing_ok=True)
