"""``neurocircuit claims``: run the pre-registered claims' runs (results/v1/protocol/) and store them in the book.

    neurocircuit claims [CLAIM ...] --out runs/prereg                 # run or resume every run
    neurocircuit claims [CLAIM ...] --out runs/prereg --summarize     # store the finished runs, regenerate the book
    neurocircuit claims --dry-run --out runs/prereg                   # print the commands only

Each run of a claim goes to ``OUT/<table>``, running its protocol's ``command`` as written (only ``--out`` changes),
resuming where it stopped (``neurocircuit run --resume``), so the work need not happen in one go. The commit the run
started at is kept in ``OUT/<table>.commit`` (refused from a checkout with uncommitted changes: a result must name
the code that made it) and becomes the summary's commit; the book voids a result whose commit does not descend from
its protocol's last change. ``--summarize`` stores every run whose arms and seeds are all there as
``results/v1/measured/<table>.json`` (with accuracy at the steps its comparisons read) and runs
``neurocircuit report``.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .claims import Claim, load_claims
from .summaries import BOOK_FOLDER, BookError

__all__ = ["commands", "record_start", "start_commit", "run_arguments", "protocol_arguments", "steps_read"]


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
            for metric in comparison.metrics.values():
                found = re.search(r"_step(\d+)$", metric)
                if found:
                    steps.add(int(found.group(1)))
    return sorted(steps)


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BookError(f"git {' '.join(args)} failed in {root}: {done.stderr.strip() or done.returncode}")
    return done.stdout.strip()


def start_commit(folder: Path) -> str:
    """The commit the run in ``folder`` started at (:func:`record_start`)."""
    record = folder.parent / f"{folder.name}.commit"
    if not record.is_file():
        raise BookError(f"{record} is missing: the run's start commit was not recorded (start it with "
                        "'neurocircuit claims')")
    return record.read_text().split()[0]


def record_start(folder: Path, root: Path) -> str:
    """Record the commit of the checkout at ``root`` as the start of the run in ``folder`` (kept from the first
    start on); a checkout with uncommitted changes is refused: a result must name the code that made it."""
    record = folder.parent / f"{folder.name}.commit"
    if record.is_file():
        return start_commit(folder)
    if _git(root, "status", "--porcelain", "--untracked-files=no"):
        raise BookError(f"{root} has uncommitted changes: commit them, so that the results name the code that made "
                        "them")
    commit = _git(root, "rev-parse", "HEAD")
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(commit + "\n")
    return commit


def _complete(folder: Path, run: Mapping[str, Any]) -> bool:
    import numpy as np
    import xarray as xr

    path = folder / "results.nc"
    if not path.is_file():
        return False
    with xr.open_dataset(path) as ds:
        if not (set(run["arms"]) <= set(map(str, ds["arm"].values))
                and set(run["seeds"]) <= set(map(int, ds["seed"].values))):
            return False
        acc = ds["test_accuracy"].sel(arm=list(run["arms"]), seed=list(run["seeds"]))
        last = acc.isel({acc.dims[-1]: -1}) if acc.ndim > 2 else acc
        return bool(np.isfinite(last.values).all())


def commands(root: Path, out: Path, claim_ids: Sequence[str] = (), *, summarize: bool = False
             ) -> list[tuple[str, list[str], Path | None]]:
    """What ``neurocircuit claims`` runs, in order: ``(label, argv after 'neurocircuit', folder)``. Running: each
    run of the chosen claims (every protocol by default) as its protocol writes it, into ``out/<table>``, resuming
    a folder that has begun; ``folder`` is where the start commit is recorded (:func:`record_start`) before it runs.
    ``summarize``: ``neurocircuit summarize`` of each complete run (``folder`` None; incomplete runs are skipped with
    argv empty), then ``neurocircuit report``."""
    claims = load_claims(root / BOOK_FOLDER)
    known = {c.id: c for c in claims}
    unknown = [c for c in claim_ids if c not in known]
    if unknown:
        raise BookError(f"no protocol {unknown[0]!r} (protocols: {', '.join(known) or 'none'})")
    out_list: list[tuple[str, list[str], Path | None]] = []
    for claim in [known[c] for c in claim_ids] if claim_ids else claims:
        for run in claim.runs:
            folder, label = out / run["table"], f"{claim.id}/{run['table']}"
            if not summarize:
                resume = ["--resume"] if (folder / "owner.json").is_file() else []
                out_list.append((label, ["run", *run_arguments(run, folder), *resume], folder))
                continue
            if not _complete(folder, run):
                out_list.append((label, [], None))
                continue
            seeds = run["seeds"]
            argv = ["summarize", str(folder / "results.nc"), "--table", run["table"], "--title",
                    f"Pre-registered claim {claim.id}: {run['simulation']} ({', '.join(run['arms'])}), "
                    f"seeds {seeds[0]}–{seeds[-1]}", "--commit", start_commit(folder), "--root", str(root)]
            steps = steps_read(claim, run["table"])
            out_list.append((label, argv + (["--steps", ",".join(map(str, steps))] if steps else []), None))
    if summarize:
        out_list.append(("book", ["report", "--root", str(root)], None))
    return out_list
