"""The hostile-input check the test_hostile* files share: a command line refused with exit code 2, one line on stderr
that names the problem, no traceback, and nothing written under the test's folder."""

from __future__ import annotations

import time
from pathlib import Path

from neurocircuit.cli import main


def refused_in_one_line(args: list[str], message: str, folder: Path, capsys) -> float:
    """Run ``args`` (``{tmp}`` read as ``folder``); assert the refusal. Returns the seconds the answer took."""
    args = [a.replace("{tmp}", str(folder)) for a in args]
    before = set(folder.rglob("*"))
    start = time.perf_counter()
    assert main(args) == 2
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("neurocircuit: error:"), err
    assert "Traceback" not in err and message in err, err
    after = set(folder.rglob("*"))
    assert after == before, sorted(map(str, after - before))  # nothing written, no folder made
    return elapsed
