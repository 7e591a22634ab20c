"""The results book's commands of ``neurocircuit``: ``report`` (regenerate the book), ``summarize`` (store a results
file as a measured table) and ``claims`` (run, resuming, or store the pre-registered claims' runs)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from .errors import NeurocircuitError

__all__ = ["add_book_arguments", "BOOK_COMMANDS"]


def add_book_arguments(sub: argparse._SubParsersAction) -> None:
    """Add ``report``, ``summarize`` and ``claims`` to the CLI's subcommands."""
    report = sub.add_parser("report", help="regenerate the results book (docs/results.md) and the README's tables "
                                           "from the summaries in results/v1/")
    report.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 naming the first difference if a file differs")
    report.add_argument("--root", type=Path, default=Path("."), help="the repository root (default: here)")
    summ = sub.add_parser("summarize", help="store a results file as a measured table of the results book "
                                            "(results/v1/measured/TABLE.json)")
    summ.add_argument("results", type=Path, help="the results.nc of a 'neurocircuit run'")
    summ.add_argument("--table", required=True, help="the table's id (its file name)")
    summ.add_argument("--title", required=True, help="the table's heading in the book")
    summ.add_argument("--command", dest="run_command", metavar="COMMAND",
                      help="the exact command that produced RESULTS (default: the one 'neurocircuit run' recorded in "
                           "it)")
    summ.add_argument("--set", dest="settings", action="append", default=None, metavar="KEY=VALUE",
                      help="a setting that command applied (repeatable): the stale check resolves the simulation "
                           "with them (default: the ones recorded in RESULTS)")
    summ.add_argument("--device", help="where it ran (default: the results' device attribute, else this machine)")
    summ.add_argument("--commit", help="the git commit the run was made at (default: this checkout's)")
    summ.add_argument("--steps", default="", metavar="K,K,...",
                      help="also store test_accuracy (and val_accuracy) at these steps, as test_accuracy_stepK")
    summ.add_argument("--root", type=Path, default=Path("."), help="the repository root (default: here)")
    claims = sub.add_parser("claims", help="run (resuming) or store the pre-registered claims' runs "
                                           "(results/v1/protocol/): each run into OUT/TABLE")
    claims.add_argument("claims", nargs="*", help="claim ids (default: every protocol)")
    claims.add_argument("--out", type=Path, required=True, help="where the runs' folders go (OUT/TABLE)")
    claims.add_argument("--summarize", action="store_true",
                        help="store every finished run in the book and regenerate it, instead of running")
    claims.add_argument("--table", dest="tables", action="append", default=[], metavar="TABLE",
                        help="only this run of the chosen claims (repeatable), e.g. prereg_resnet18_kp")
    claims.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    claims.add_argument("--root", type=Path, default=Path("."), help="the repository root (default: here)")


def _cmd_report(args: argparse.Namespace) -> int:
    from .book import first_difference, render_outputs, write_outputs

    if args.check:
        for path, text in render_outputs(args.root).items():
            difference = first_difference(path, text)
            if difference is not None:
                print(f"neurocircuit: {difference}", file=sys.stderr)
                return 1
        return 0
    changed = write_outputs(args.root)
    for path in changed:
        print(f"wrote {path}")
    if not changed:
        print("the results book and the README's tables are up to date")
    return 0


def _cmd_summarize(args: argparse.Namespace) -> int:
    from .book import BOOK_FOLDER, stale_reason, summarize, write_summary
    from .results import read_results
    from .simulation import parse_setting

    if not args.results.is_file():
        raise NeurocircuitError(f"results file not found: {args.results}")
    results = read_results(args.results)
    command = args.run_command or results.attrs.get("command")
    if not command:
        raise NeurocircuitError(f"{args.results} records no command (made before runs recorded theirs): give "
                                "--command and the --set settings it used")
    settings = args.settings
    if settings is None:
        settings = json.loads(results.attrs["settings"]) if "settings" in results.attrs else []
    for item in settings:
        parse_setting(item)
    try:
        steps = [int(k) for k in args.steps.split(",") if k.strip()]
    except ValueError:
        raise NeurocircuitError(f"--steps {args.steps!r}: give integers separated by commas (e.g. 117,422)") from None
    summary = summarize(results, table=args.table, title=args.title, command=command, settings=settings,
                        device=args.device, commit=args.commit, steps=steps)
    print(f"wrote {write_summary(summary, args.root / BOOK_FOLDER)}; run 'neurocircuit report' to regenerate the book")
    stale = stale_reason(summary)
    if stale is not None:
        print(f"note: the book will mark this table stale: {stale}")
    return 0


def _cmd_claims(args: argparse.Namespace) -> int:
    import shlex
    import subprocess

    from .book.preregistered import attach_registration, commands, record_start, start_commits

    for label, argv, folder, table in commands(args.root, args.out, args.claims, summarize=args.summarize,
                                                  tables=args.tables):
        if not argv:
            print(f"{label}: not complete, not stored", flush=True)
            continue
        line = [sys.executable, "-m", "neurocircuit", *argv]
        print(shlex.join(line), flush=True)
        if args.dry_run:
            continue
        if folder is not None and table is None:
            record_start(folder, args.root)  # every (re)start, refused from a dirty checkout
        elif folder is not None:
            start_commits(folder)  # a summary names the commits its run started at
        done = subprocess.run(line, cwd=args.root, check=False)
        if done.returncode != 0:
            return done.returncode
        if table is not None and folder is not None:
            print(f"checked {attach_registration(table, folder, args.root.resolve())} against its protocols")
    return 0


#: command name -> what runs it (returns the exit code)
BOOK_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "report": _cmd_report, "summarize": _cmd_summarize, "claims": _cmd_claims}
