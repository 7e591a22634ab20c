"""``neurocircuit claims``: run the pre-registered claims' runs (results/v1/protocol/) and store them in the book.

    neurocircuit claims [CLAIM ...] --out runs/prereg                 # run or resume every run
    neurocircuit claims [CLAIM ...] --out runs/prereg --summarize     # store the finished runs, regenerate the book
    neurocircuit claims --dry-run --out runs/prereg                   # print the commands only

Each run of a claim goes to ``OUT/<table>``, running its protocol's ``command`` as written (only ``--out`` changes),
resuming where it stopped (``neurocircuit run --resume``), so the work need not happen in one go. Every (re)start
appends the checkout's commit to ``OUT/<table>.commit`` and is refused from a checkout with uncommitted changes: a
result must name the code that made it. ``--summarize`` stores every run whose arms and seeds are all there as
``results/v1/measured/<table>.json`` (with accuracy at the steps its comparisons read) and, per claim that reads it,
what git says (:func:`registration`): the protocol's last commit and file hash, whether every start commit descends
from that commit, and whether the simulation resolves as it did then. A shallow clone is refused: it cannot tell.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..backends import RESULTS_FILE
from .claims import Claim, load_claims, protocol_sha256, readers
from .summaries import BOOK_FOLDER, BookError, simulation_hash, write_summary

__all__ = ["commands", "record_start", "start_commits", "registration", "attach_registration", "run_arguments",
           "protocol_arguments", "steps_read"]


def run_arguments(run: Mapping[str, Any], out: Path) -> list[str]:
    """``neurocircuit run`` arguments of one protocol run: its ``command`` as written (up to a ``;``), with the
    output folder replaced by ``out``."""
    words = shlex.split(str(run["command"]).split(";")[0])
    if words[:2] != ["neurocircuit", "run"] or "--out" not in words[:-1]:
        raise BookError(f"run {run['table']!r}: its command is not 'neurocircuit run ... --out DIR'")
    words[words.index("--out") + 1] = str(out)
    return words[2:]


def protocol_arguments(run: Mapping[str, Any]) -> tuple[str, list[str], list[str]]:
    """(simulation, arms, settings) as ``run_arguments`` passes them — to check a protocol's command against its
    own fields."""
    words = run_arguments(run, Path("OUT"))
    arms = [words[i + 1] for i, w in enumerate(words) if w == "--arm"]
    settings = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    return words[0], arms, settings


def steps_read(claim: Claim, table: str) -> list[int]:
    """The steps whose accuracy the claim's comparisons of ``table`` read (metrics ``*_step<k>``)."""
    steps = set()
    for comparison in claim.comparisons:
        if comparison.table == table:
            for metric in comparison.metrics:
                found = re.search(r"_step(\d+)$", metric)
                if found:
                    steps.add(int(found.group(1)))
    return sorted(steps)


def _git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise BookError(f"git {' '.join(args)} failed in {root}: {done.stderr.strip() or done.returncode}")
    return done


def _record(folder: Path) -> Path:
    return folder.parent / f"{folder.name}.commit"


def start_commits(folder: Path) -> list[str]:
    """The commits the run in ``folder`` was (re)started at (:func:`record_start`), first first."""
    record = _record(folder)
    if not record.is_file():
        raise BookError(f"{record} is missing: the run's start commits were not recorded (start it with "
                        "'neurocircuit claims')")
    return record.read_text().split()


def record_start(folder: Path, root: Path) -> str:
    """Append the commit of the checkout at ``root`` to the run's start record; a checkout with uncommitted changes
    is refused at every start."""
    if _git(root, "status", "--porcelain", "--untracked-files=no").stdout.strip():
        raise BookError(f"{root} has uncommitted changes: commit them, so that the results name the code that made "
                        "them")
    commit = _git(root, "rev-parse", "HEAD").stdout.strip()
    record = _record(folder)
    record.parent.mkdir(parents=True, exist_ok=True)
    with record.open("a") as handle:
        handle.write(commit + "\n")
    return commit


def _simulation_then(run: Mapping[str, Any], commit: str, root: Path) -> str | None:
    """The hash the run's simulation resolved to at ``commit`` (None: no such file then)."""
    from ..simulation import load_simulation

    shipped = f"simulations/{run['simulation']}.toml"
    text = _git(root, "show", f"{commit}:{shipped}", check=False)
    if text.returncode != 0:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{run['simulation']}.toml"
        path.write_text(text.stdout, encoding="utf-8")
        return simulation_hash(load_simulation(str(path), list(run["settings"])).to_dict())


def registration(claim: Claim, run: Mapping[str, Any], run_commits: Sequence[str], stored_hash: str,
                 root: Path) -> dict[str, Any]:
    """What git says of a run for ``claim`` (the summary's ``preregistration`` entry)."""
    if _git(root, "rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        raise BookError(f"{root} is a shallow clone: git cannot tell whether the runs followed their protocols "
                        "(git fetch --unshallow)")
    relative = claim.path.resolve().relative_to(root.resolve())
    if _git(root, "status", "--porcelain", "--", str(relative)).stdout.strip():
        raise BookError(f"{relative} has uncommitted changes: a protocol is checked as committed")
    commit = _git(root, "log", "-1", "--format=%H", "--", str(relative)).stdout.strip()
    if not commit:
        raise BookError(f"{relative} was never committed: commit the protocol before its runs")
    follows = all(_git(root, "merge-base", "--is-ancestor", commit, c, check=False).returncode == 0
                  for c in run_commits)
    return {"protocol": claim.path.name, "protocol_sha256": protocol_sha256(claim.path), "protocol_commit": commit,
            "run_commits": list(run_commits), "follows_protocol": bool(run_commits) and follows,
            "simulation_as_registered": _simulation_then(run, commit, root) == stored_hash}


def attach_registration(table: str, folder: Path, root: Path) -> Path:
    """Add, to the stored summary of ``table``, the registration of every claim that reads it; returns its path."""
    claims = load_claims(root / BOOK_FOLDER)
    run = next(r for c in claims for r in c.runs if r["table"] == table)
    path = root / BOOK_FOLDER / "measured" / f"{table}.json"
    summary = json.loads(path.read_text(encoding="utf-8"))
    commits = start_commits(folder)
    summary["preregistration"] = {
        claim.id: registration(claim, run, commits, summary["provenance"]["simulation_hash"], root)
        for claim in readers(claims, table)}
    return write_summary(summary, root / BOOK_FOLDER)


def _complete(folder: Path, run: Mapping[str, Any]) -> bool:
    """Whether every arm and seed of the run has a final test accuracy in ``folder/results.nc``."""
    import numpy as np
    import xarray as xr

    from .summaries import _reduce_last, _time_dim

    path = folder / RESULTS_FILE
    if not path.is_file():
        return False
    with xr.open_dataset(path) as ds:
        if "test_accuracy" not in ds or not (set(run["arms"]) <= set(map(str, ds["arm"].values))
                                             and set(run["seeds"]) <= set(map(int, ds["seed"].values))):
            return False
        acc = ds["test_accuracy"].sel(arm=list(run["arms"]), seed=list(run["seeds"]))
        last = _reduce_last(acc, _time_dim(acc, "test_accuracy", ("arm", "seed")))
        return bool(np.isfinite(last.values).all())


def commands(root: Path, out: Path, claim_ids: Sequence[str] = (), *, summarize: bool = False,
             tables: Sequence[str] = ()) -> list[tuple[str, list[str], Path | None, str | None]]:
    """What ``neurocircuit claims`` does, in order: ``(label, argv after 'neurocircuit', folder, table)``.

    Running: each run of the chosen claims (every protocol by default) as its protocol writes it, into
    ``out/<table>``, resuming a folder that has begun; record its start (:func:`record_start`) in ``folder`` before
    it runs. ``summarize``: ``neurocircuit summarize`` of each complete run (argv empty for an incomplete one), then
    attach its registration (:func:`attach_registration`) for ``table``; last ``neurocircuit report``. ``tables``
    narrows either to those runs (say, one half of a claim whose other half is stored)."""
    root, out = root.resolve(), out.resolve()
    claims = load_claims(root / BOOK_FOLDER)
    if not claims:
        raise BookError(f"no protocols in {root / BOOK_FOLDER / 'protocol'}: run from the repository root or pass "
                        "--root")
    known = {c.id: c for c in claims}
    unknown = [c for c in claim_ids if c not in known]
    if unknown:
        raise BookError(f"no protocol {unknown[0]!r} (protocols: {', '.join(known) or 'none'})")
    chosen = [known[c] for c in claim_ids] if claim_ids else claims
    runs_there = [run["table"] for claim in chosen for run in claim.runs]
    missing = [t for t in tables if t not in runs_there]
    if missing:
        raise BookError(f"no run {missing[0]!r} in the chosen protocols (runs: {', '.join(runs_there)})")
    steps_out: list[tuple[str, list[str], Path | None, str | None]] = []
    for claim in chosen:
        for run in [r for r in claim.runs if not tables or r["table"] in tables]:
            folder, label = out / run["table"], f"{claim.id}/{run['table']}"
            if not summarize:
                resume = ["--resume"] if (folder / "owner.json").is_file() else []
                steps_out.append((label, ["run", *run_arguments(run, folder), *resume], folder, None))
                continue
            if not _complete(folder, run):
                steps_out.append((label, [], None, None))
                continue
            seeds = run["seeds"]
            commits = start_commits(folder) if _record(folder).is_file() else ["UNRECORDED"]
            argv = ["summarize", str(folder / RESULTS_FILE), "--table", run["table"], "--title",
                    f"Pre-registered claim {claim.id}: {run['simulation']} ({', '.join(run['arms'])}), "
                    f"seeds {seeds[0]}–{seeds[-1]}", "--commit", commits[0], "--root", str(root)]
            steps = steps_read(claim, run["table"])
            steps_out.append((label, argv + (["--steps", ",".join(map(str, steps))] if steps else []), folder,
                              run["table"]))
    if summarize:
        steps_out.append(("book", ["report", "--root", str(root)], None, None))
    return steps_out
