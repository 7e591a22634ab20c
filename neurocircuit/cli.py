"""The ``neurocircuit`` command: ``run`` any simulation on its backend (``train`` is the same command, for
``torchrun -m neurocircuit train``), ``sweep`` settings, ``plot`` results, ``list`` what is available,
``summarize`` a results file into the results book, ``report`` (regenerate) the book, run and store the pre-registered
``claims`` (:mod:`neurocircuit.cli_book`) and print a report ``table`` (paired differences, sweep grids, per-layer
angles, the noise-pretraining tables).

Bad input (unknown names, malformed or mistyped files, settings a backend does not honour, shapes that do not
chain, missing files) ends with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cli_book import BOOK_COMMANDS, add_book_arguments
from .errors import NeurocircuitError
from .progress import HeldWarnings

if TYPE_CHECKING:  # the CLI imports the heavy modules only when a command needs them
    import xarray as xr

__all__ = ["main", "summary_table"]

_log = logging.getLogger(__name__)


def _add_verbosity(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true",
                       help="log more: every record of every run (default: progress lines, one as each run ends)")
    group.add_argument("--quiet", action="store_true",
                       help="no progress bars; log warnings and errors only (the results are still printed)")


def _configure_logging(args: argparse.Namespace) -> Callable[[], None]:
    """The package's log lines (progress on stdout, warnings and errors on stderr): progress (INFO) by default, more
    with -v, warnings and errors only with --quiet. Returns what undoes it (main() called from Python leaves logging
    as it found it)."""
    from .progress import configure_logging

    return configure_logging(logging.WARNING if getattr(args, "quiet", False)
                      else logging.DEBUG if getattr(args, "verbose", False) else logging.INFO)


def _add_run_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument("simulation", nargs="?", default="default",
                     help="a simulation name (see 'neurocircuit list') or a path to a TOML file; "
                          "default: the embedded digits comparison")
    run.add_argument("--out", required=True, type=Path, help="output folder (results.nc, figures, runs/)")
    run.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                     help="override a simulation key, e.g. --set train.epochs=5 --set phases.0.steps=100 "
                          "(repeatable; values are TOML)")
    run.add_argument("--arm", action="append", metavar="LABEL", help="run only this arm (repeatable)")
    run.add_argument("--only", metavar="LABELS", help="run only these arms (comma-separated labels)")
    run.add_argument("--resume", action="store_true",
                     help="continue an interrupted run from the checkpoints in OUT/runs/")
    run.add_argument("--overwrite", action="store_true",
                     help="replace the results and checkpoints already in OUT (default: refuse to)")
    run.add_argument("--merge", action="store_true",
                     help="add this run's arms and seeds to the simulation in OUT (same settings), resuming those "
                          "it has: OUT/results.nc keeps what was there. OUT belongs to the simulation that wrote it "
                          "(OUT/owner.json): --resume with other arms or seeds is refused without --merge")
    run.add_argument("--jobs", type=int, default=1, metavar="N",
                     help="run N (arm, seed) runs at a time, each in a worker process with one thread, into the "
                          "same OUT/runs/ folders; one merged results.nc (default: 1, one after another here)")
    run.add_argument("--no-figures", action="store_true", help="write results.nc only")
    _add_verbosity(run)
    shortcuts = run.add_argument_group("shortcuts for --set")
    shortcuts.add_argument("--model", help="= --set model=NAME (a circuit or a torchvision classifier)")
    shortcuts.add_argument("--rule", help="= --set 'arms=[\"RULE\"]' (one plain arm, without the file's arms' own "
                                          "phases: --arm LABEL runs one of those)")
    shortcuts.add_argument("--data", help="= --set data.name=NAME (the file's other [data] keys stay: --set "
                                          "'data={name=\"NAME\"}' replaces the table)")
    shortcuts.add_argument("--data-root", help="= --set data.root=FOLDER")
    shortcuts.add_argument("--epochs", type=int, help="= --set train.epochs=N")
    shortcuts.add_argument("--batch-size", type=int, help="= --set train.batch_size=N")
    shortcuts.add_argument("--workers", type=int, help="= --set torch.workers=N")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neurocircuit", description="Learning without weight transport.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run_arguments(sub.add_parser("run", help="run any simulation on its backend; write results.nc and figures"))
    _add_run_arguments(sub.add_parser("train", help="the same as run (for 'torchrun -m neurocircuit train ...')"))
    sub.add_parser("list", help="list models, rules, data sets, backends and simulations")
    sweep = sub.add_parser("sweep", help="run a simulation over a grid (or zip) of settings; resumable")
    sweep.add_argument("target", help="a sweep file (kind = \"sweep\") or a simulation name/path")
    sweep.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUES",
                       help="an axis (a,b,c | start:stop | lin:a:b:n | log:a:b:n | random:lo:hi:n[:seed]) or, "
                            "with one value, a fixed setting; repeatable")
    sweep.add_argument("--zip", action="store_true", help="walk the axes together instead of their grid")
    sweep.add_argument("--out", required=True, type=Path, help="output folder (points/, sweep.nc)")
    sweep.add_argument("--workers", type=int, help="local worker processes (default: all cores; 1: serial)")
    sweep.add_argument("--dask", metavar="ADDRESS", help="run on this dask.distributed scheduler instead")
    sweep.add_argument("--yes", action="store_true",
                       help="run a sweep of more points than neurocircuit.limits.MAX_SWEEP_POINTS (10,000)")
    _add_verbosity(sweep)
    plot = sub.add_parser("plot", help="plot a variable of a results or sweep file over one or two dimensions",
                          description="Every dimension of the variable that is on no axis is selected (--sel), "
                                      "averaged with its sd shown (--mean), or drawn as lines (heat map: panels) with "
                                      "a legend; more than 12 lines are refused.")
    plot.add_argument("results", type=Path, help="results.nc or sweep.nc")
    plot.add_argument("--var", required=True, help="the variable, e.g. weight_angle or test_accuracy")
    plot.add_argument("--x", required=True, help="dimension (or coordinate along one, e.g. epoch) on the x axis")
    plot.add_argument("--y", help="second dimension: a heat map")
    plot.add_argument("--sel", action="append", default=[], metavar="DIM=VALUE",
                      help="draw only this value of a dimension (a label, a number, a quantity such as '2 ms', or "
                           "first/last: each series' first/last with data); repeatable")
    plot.add_argument("--mean", action="append", default=[], metavar="DIM",
                      help="average over this dimension, drawing the sd as a band; repeatable")
    plot.add_argument("--out", required=True, type=Path, help="PNG file to write")
    add_book_arguments(sub)
    _add_table_arguments(sub)
    return parser


def _add_table_arguments(sub: argparse._SubParsersAction) -> None:
    table = sub.add_parser("table", help="print a report table from results files (paired, sweep, angles, "
                                         "noise-pretraining)")
    kinds = table.add_subparsers(dest="kind", required=True, metavar="KIND")
    paired = kinds.add_parser(
        "paired", help="final test error per arm over seeds, and each arm minus a reference arm paired by seed",
        description="Per arm, seeds pooled across files (the same arm and seed twice is an error): final test error "
                    "(%) mean ± sd, the test error at the record chosen on validation (marked * where chosen on "
                    "test: no validation split), the largest final B-W angle, whether every training loss was "
                    "finite (n/a for a Brian2 circuit, which records none), ms per step; then arm - reference in pp "
                    "for the seeds both have, mean ± sd (n - 1) and the 95 % confidence interval of the mean "
                    "(Student t, n - 1 degrees of freedom; n/a with one seed).")
    paired.add_argument("files", nargs="+", metavar="FILE[@TAG]",
                        help="results.nc files; FILE@TAG labels that file's arms ARM@TAG")
    paired.add_argument("--ref", default="bp", help="the arm the differences are taken from (default: bp)")
    sweep = kinds.add_parser(
        "sweep", help="a grid sweep's final values as a markdown table, and its best point chosen on validation",
        description="Rows: every combination of the other axes and of VAR's other dimensions (arm, layer: never "
                    "pooled; --sel narrows). Each cell: each run's last VAR with data (along step, mirror_step, "
                    "weight_time), mean ± "
                    "sd over seeds (n - 1), a failed point's error ('nan at step k'), the peak training loss where it "
                    "went above --loss-flag. Below: "
                    "for a test_* variable, the point with the best final val_* (chosen on test, and labelled so, "
                    "without a validation split).")
    sweep.add_argument("files", nargs=1, metavar="FILE", help="the sweep.nc of a grid sweep")
    sweep.add_argument("--cols", required=True, help="the axis whose values are the columns")
    sweep.add_argument("--var", default="test_accuracy", help="the variable (default: test_accuracy)")
    sweep.add_argument("--error", action="store_true", help="print 100 x (1 - var): test error in %%")
    sweep.add_argument("--sel", action="append", default=[], metavar="DIM=VALUE", help="e.g. arm=wm; repeatable")
    sweep.add_argument("--loss-flag", type=float, default=10.0,
                       help="flag a point whose mean training loss in a record window went above this (default: 10)")
    sweep.add_argument("--digits", type=int, default=2)
    angles = kinds.add_parser(
        "angles", help="a per-layer variable (the B-W angle) over training: one row per layer, one column per record",
        description="One column per record for every (file, arm), headed FOLDER/ARM ep EPOCH; each cell mean ± sd "
                    "over seeds; a layer an arm does not record prints as a dash.")
    angles.add_argument("files", nargs="+", metavar="FILE", help="results.nc files")
    angles.add_argument("--var", default="weight_angle", help="a per-layer variable (default: weight_angle)")
    angles.add_argument("--digits", type=int, default=1)
    noise = kinds.add_parser(
        "noise-pretraining", help="the tables of a noise_pretraining run (Cheon et al. with its controls)",
        description="Test accuracy at 1/4, 1/2, 1, 3 epochs and at the end, steps to 80 %; the readout's B-W "
                    "angle and ||W|| per layer before and after the noise phase, effective dimension, OOD accuracy; "
                    "Cheon's claims as differences between arms paired by seed (mean ± sd over seeds).")
    noise.add_argument("files", nargs=1, metavar="FILE", help="the results.nc of a noise_pretraining run")


def _cmd_list() -> None:
    from .backends import list_backends
    from .data import list_datasets
    from .registry import list_circuits, list_simulations, load_circuit
    from .rules import describe_rule, list_rules

    print("models (circuits; any torchvision classifier name works too):")
    for name in list_circuits():
        print(f"  {name:<24} {load_circuit(name).description}")
    print("rules:")
    for name in list_rules():
        print(f"  {name:<24} {describe_rule(name).summary}")
    print("datasets:")
    for name in list_datasets():
        print(f"  {name}")
    print("backends:")
    for name in list_backends():
        print(f"  {name}")
    print("simulations:")
    for name in list_simulations():
        print(f"  {name}")


def _shortcut_settings(args: argparse.Namespace) -> list[str]:
    """The shortcut flags as ``--set`` items (applied before the explicit ``--set`` items)."""
    import json

    out = []
    for flag, key in (("model", "model"), ("data", "data.name"), ("data_root", "data.root"),
                      ("epochs", "train.epochs"), ("batch_size", "train.batch_size"), ("workers", "torch.workers")):
        value = getattr(args, flag)
        if value is not None:
            out.append(f"{key}={json.dumps(value)}")
    if args.rule is not None:
        out.append(f"arms=[{json.dumps(args.rule)}]")
    return out


def _cmd_run(args: argparse.Namespace) -> None:
    import contextlib
    import os

    from .backends import RESULTS_FILE
    from .outdir import folder_lock
    from .results import first_missing_folder, prepare_output
    from .simulation import load_simulation

    if args.jobs < 1:
        raise NeurocircuitError(f"--jobs must be >= 1, got {args.jobs}")
    if args.jobs > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise NeurocircuitError("--jobs runs each (arm, seed) in its own process; under torchrun every process "
                                "takes part in each run: use one or the other")
    arms = list(args.arm or [])
    if args.only is not None:
        arms += [x.strip() for x in args.only.split(",") if x.strip()]
        if not arms:
            raise NeurocircuitError(f"--only {args.only!r} names no arm")
    sim = load_simulation(args.simulation, [*_shortcut_settings(args), *args.settings],
                          arms if (args.arm or args.only is not None) else None)
    if args.out.exists() and not args.out.is_dir():
        raise NeurocircuitError(f"--out {str(args.out)!r} exists and is not a folder")
    if (args.resume or args.merge) and args.overwrite:
        flag = "--resume" if args.resume else "--merge"
        raise NeurocircuitError(f"{flag} continues what is in --out and --overwrite replaces it: choose one")
    existing = [p for p in (args.out / RESULTS_FILE, args.out / "runs") if p.exists()]
    if existing and not (args.resume or args.overwrite or args.merge):
        raise NeurocircuitError(f"{existing[0]} exists: pass --resume to continue that run, --overwrite to replace "
                                "it, or choose another --out")
    rank0 = int(os.environ.get("RANK", "0")) == 0
    created = first_missing_folder(args.out)
    if rank0:
        prepare_output(args.out)
    # the folder is this process's from here to the last file written (rank 0's under torchrun)
    with folder_lock(args.out) if rank0 else contextlib.nullcontext():
        _run_locked(args, sim, created, rank0)


def _run_locked(args: argparse.Namespace, sim: Any, created: Path | None, rank0: bool) -> None:
    from .backends import RESULTS_FILE
    from .outdir import forget_owner
    from .plotting import save_figures
    from .results import remove_empty_folders, write_netcdf
    from .runs import run_simulation

    if rank0:
        if args.overwrite:
            import shutil

            (args.out / RESULTS_FILE).unlink(missing_ok=True)
            shutil.rmtree(args.out / "runs", ignore_errors=True)
            forget_owner(args.out)
    args.held.release()  # the input is accepted: what it warned of is shown, and the run's warnings as they come
    if rank0:
        _log.info("running %r on %s: model %s, arms %s, seeds %s%s", sim.name, sim.backend, sim.model_name,
                  ", ".join(sim.labels), list(sim.seeds), f", {args.jobs} runs at a time" if args.jobs > 1 else "")
    try:
        ds = run_simulation(sim, out=args.out, resume=args.resume, progress=False if args.quiet else None,
                            jobs=args.jobs, merge=args.merge)
    except NeurocircuitError:
        # refused once running (data missing or not fitting the model): the folders this run made and left empty go
        if rank0 and created is not None:
            remove_empty_folders(created)
        raise
    if not rank0:
        return
    # what made this file, for its provenance in the results book (neurocircuit summarize reads both)
    ds.attrs["command"] = args.command_line
    ds.attrs["settings"] = json.dumps([*_shortcut_settings(args), *args.settings])
    path = write_netcdf(ds, args.out / RESULTS_FILE)
    figures = [] if args.no_figures else save_figures(ds, args.out)
    print(summary_table(ds))
    print(f"wrote {path}" + "".join(f"\nwrote {f}" for f in figures))


def _cmd_sweep(args: argparse.Namespace) -> None:
    from .limits import MAX_SWEEP_POINTS
    from .sweep import load_sweep, run_sweep

    if args.workers is not None and args.workers < 1:
        raise NeurocircuitError(f"--workers must be >= 1, got {args.workers}")
    sweep = load_sweep(args.target, args.settings, mode="zip" if args.zip else None)
    n = sweep.count()  # from the axes' lengths: a large sweep is refused before any point is made
    args.held.release()
    ds = run_sweep(sweep, args.out, workers=args.workers, dask=args.dask, progress=False if args.quiet else None,
                   max_points=None if args.yes else MAX_SWEEP_POINTS)
    failed = ds.attrs.get("failed_points", 0)
    print(f"{n - failed} points finished, {failed} failed" + (f" (see {args.out / 'points'}/*.error.json)"
                                                             if failed else ""))
    print(f"wrote {args.out / 'sweep.nc'}")


def _cmd_plot(args: argparse.Namespace) -> None:
    from .plotting import plot_over, save_figure
    from .results import first_missing_folder, prepare_output, read_results, remove_empty_folders

    if not args.results.is_file():
        raise NeurocircuitError(f"results file not found: {args.results}")
    if args.y is not None and args.y == args.x:
        raise NeurocircuitError(f"--x and --y are both {args.x!r}: a heat map needs two different dimensions")
    if args.out.is_dir():
        raise NeurocircuitError(f"--out {str(args.out)!r} is a folder: give the PNG file to write")
    select: dict[str, str] = {}
    for item in args.sel:
        dim, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not dim or not value:
            raise NeurocircuitError(f"--sel expects DIM=VALUE, got {item!r}")
        if dim in select:
            raise NeurocircuitError(f"--sel {dim} is given twice ({dim}={select[dim]}, {dim}={value}): pick one")
        select[dim] = value
    created = first_missing_folder(args.out.parent)
    prepare_output(args.out.parent)
    try:
        fig = plot_over(read_results(args.results), args.var, args.x, args.y, select, args.mean)
    except NeurocircuitError:  # a refused plot leaves no folder behind
        if created is not None:
            remove_empty_folders(created)
        raise
    print(f"wrote {save_figure(fig, args.out)}")


def _cmd_table(args: argparse.Namespace) -> None:
    from . import tables

    if args.kind == "paired":
        files = []
        for spec in args.files:
            path, _, tag = spec.partition("@")
            files.append((Path(path), tag))
        print(tables.render_paired(tables.paired_table(tables.read_paired_runs(files), args.ref)))
    elif args.kind == "sweep":
        ds = tables.select_points(tables.open_sweep(args.files[0]), args.sel)
        table = tables.sweep_table(ds, args.cols, args.var, error=args.error, loss_flag=args.loss_flag)
        print(tables.render_sweep(table, args.digits))
    elif args.kind == "angles":
        runs = [(Path(f).parent.name, tables.read_table_file(f)) for f in args.files]
        print(tables.render_layers(tables.layer_table(runs, args.var), args.digits))
    else:
        what = "a results file of a noise-pretraining run"
        results = tables.read_table_file(args.files[0], tables.NOISE_NEEDS, what)
        print(tables.render_noise_pretraining(tables.noise_pretraining_tables(results)))


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    # An error raised in a DataLoader worker arrives wrapped with the worker's traceback: keep its last line.
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(text.split())


def summary_table(ds: xr.Dataset) -> str:
    """Per arm, mean ± sd over seeds: final test accuracy, B-W angle of the top layer and the largest over layers,
    step time; without training, the final angle of each phase (Brian2: of every layer, and test accuracy)."""
    if "weight_time" in ds.dims:
        return _brian_summary_table(ds)
    if "step" not in ds.dims:
        angle_vars = [v for v in ds.data_vars if v.endswith("_weight_angle")]
        lines = [f"{'arm':<20} " + " ".join(f"{v:>24}" for v in angle_vars)]
        for arm in ds["arm"].values:
            cells = [ds[v].sel(arm=arm).isel({ds[v].dims[-2]: -1}).max("layer") for v in angle_vars]
            lines.append(f"{arm!s:<20} " + " ".join(f"{float(c.mean()):17.2f} ± {float(c.std()):4.2f}"
                                                    for c in cells))
        return "\n".join(lines)
    last = ds.isel(step=-1)
    top = str(ds["layer"].values[-1])
    val = "val_accuracy" in ds  # runs with a validation split: its final accuracy beside the test one
    lines = [f"{'arm':<20} {'test acc (%)':>15} " + (f"{'val acc (%)':>15} " if val else "")
             + f"{'angle B-W ' + top + ' (deg)':>22} {'max angle (deg)':>16} {'ms/step':>9}"]
    for arm in ds["arm"].values:
        r = last.sel(arm=arm)
        acc, angle = 100 * r["test_accuracy"], r["weight_angle"]
        val_cell = f"{float(100 * r['val_accuracy'].mean()):8.2f} ± {float(100 * r['val_accuracy'].std()):4.2f} " \
            if val else ""
        lines.append(f"{arm!s:<20} {float(acc.mean()):8.2f} ± {float(acc.std()):4.2f} {val_cell}"
                     f"{float(angle.sel(layer=top).mean()):15.2f} ± {float(angle.sel(layer=top).std()):4.2f} "
                     f"{float(angle.max('layer').mean()):16.2f} {1e3 * float(r['seconds_per_step'].mean()):9.2f}")
    return "\n".join(lines)


def _brian_summary_table(ds: xr.Dataset) -> str:
    layers = [str(v) for v in ds["layer"].values]
    head = f"{'arm':<12} " + " ".join(f"{'angle ' + n + ' (deg)':>20}" for n in layers)
    has_acc, has_twin, has_val = "test_accuracy" in ds, "twin_test_accuracy" in ds, "val_accuracy" in ds
    lines = [head + (f" {'test acc (%)':>15}" if has_acc else "") + (f" {'val acc (%)':>15}" if has_val else "")
             + (f" {'twin (%)':>15}" if has_twin else "")]
    for arm in ds["arm"].values:
        # arms may end at different times: the last snapshot each arm has
        r = ds["weight_angle"].sel(arm=arm).dropna("weight_time", how="all").isel(weight_time=-1)
        cells = [f"{float(r.sel(layer=n).mean()):13.2f} ± {float(r.sel(layer=n).std()):4.2f}" for n in layers]
        line = f"{arm!s:<12} " + " ".join(cells)
        if has_acc:
            acc = 100 * ds["test_accuracy"].sel(arm=arm).dropna("step", how="all").isel(step=-1)
            line += f" {float(acc.mean()):8.2f} ± {float(acc.std()):4.2f}"
        if has_val:
            val = 100 * ds["val_accuracy"].sel(arm=arm).dropna("step", how="all").isel(step=-1)
            line += f" {float(val.mean()):8.2f} ± {float(val.std()):4.2f}"
        if has_twin:
            twin = 100 * ds["twin_test_accuracy"].sel(arm=arm).dropna("step", how="all").isel(step=-1)
            line += f" {float(twin.mean()):8.2f} ± {float(twin.std()):4.2f}"
        lines.append(line)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neurocircuit`` console command; returns the exit code."""
    args = _parser().parse_args(argv)
    args.command_line = "neurocircuit " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    restore_logging = _configure_logging(args)
    # a refusal of run/sweep input stays one line: library warnings while it is read are folded into it
    args.held = held = HeldWarnings()
    try:
        if args.command in ("run", "train", "sweep"):
            held.__enter__()
        if args.command == "list":
            _cmd_list()
        elif args.command == "sweep":
            _cmd_sweep(args)
        elif args.command == "plot":
            _cmd_plot(args)
        elif args.command in BOOK_COMMANDS:
            return BOOK_COMMANDS[args.command](args)
        elif args.command == "table":
            _cmd_table(args)
        else:
            _cmd_run(args)
    except (NeurocircuitError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"neurocircuit: error: {_one_line(exc)}{held.folded()}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:
        print(f"neurocircuit: stopped: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print(f"neurocircuit: interrupted{': ' + _one_line(exc) if str(exc) else ''}", file=sys.stderr)
        return 130
    finally:
        held.release()  # what no error line took (an unexpected error's traceback follows) is shown
        restore_logging()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
