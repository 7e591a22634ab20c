"""The ``neurocircuit`` command: ``run`` a simulation, ``train`` a deep network, ``sweep`` settings, ``plot``
results, ``list`` what is available.

Bad input (unknown names, malformed or mistyped files, shapes that do not chain, missing files) ends with
one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import NeurocircuitError

if TYPE_CHECKING:  # the CLI imports the heavy modules only when a command needs them
    import xarray as xr

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neurocircuit", description="Learning without weight transport.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a simulation file and write results.nc and figures")
    run.add_argument("simulation", nargs="?", default="default",
                     help="a simulation name (see 'neurocircuit list') or a path to a TOML file; "
                          "default: the embedded digits comparison")
    run.add_argument("--out", required=True, type=Path, help="output folder")
    run.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                     help="override a simulation key, e.g. --set train.epochs=5 (repeatable)")
    run.add_argument("--only", metavar="LABELS", help="run only these arms (comma-separated rule labels)")
    run.add_argument("--no-figures", action="store_true", help="write results.nc only")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.add_parser("list", help="list models, rules, data sets and simulations")
    sweep = sub.add_parser("sweep", help="run a simulation over a grid (or zip) of settings; resumable")
    sweep.add_argument("target", help="a sweep file (kind = \"sweep\") or a simulation name/path")
    sweep.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUES",
                       help="an axis (a,b,c | start:stop | lin:a:b:n | log:a:b:n | random:lo:hi:n[:seed]) or, "
                            "with one value, a fixed setting; repeatable")
    sweep.add_argument("--zip", action="store_true", help="walk the axes together instead of their grid")
    sweep.add_argument("--out", required=True, type=Path, help="output folder (points/, sweep.nc)")
    sweep.add_argument("--workers", type=int, help="local worker processes (default: all cores; 1: serial)")
    sweep.add_argument("--dask", metavar="ADDRESS", help="run on this dask.distributed scheduler instead")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    plot = sub.add_parser("plot", help="plot a variable of a results or sweep file over one or two dimensions")
    plot.add_argument("results", type=Path, help="results.nc or sweep.nc")
    plot.add_argument("--var", required=True, help="the variable, e.g. weight_angle or test_accuracy")
    plot.add_argument("--x", required=True, help="dimension on the x axis")
    plot.add_argument("--y", help="second dimension: a heat map")
    plot.add_argument("--sel", action="append", default=[], metavar="DIM=VALUE",
                      help="pick one value of another dimension (default: the last step/time, mean over the rest)")
    plot.add_argument("--out", required=True, type=Path, help="PNG file to write")
    deep = sub.add_parser("train", help="train a torchvision network (ResNet-18/50, ...) with a rule; works under "
                                        "torchrun for many GPUs/nodes")
    deep.add_argument("simulation", nargs="?", default=None,
                      help="a deep simulation name or TOML path (e.g. imagenet_resnet18); default: flags only")
    deep.add_argument("--arm", help="which arm of the simulation to run (its rule label)")
    deep.add_argument("--out", required=True, type=Path, help="output folder (results.nc, checkpoint.pt)")
    deep.add_argument("--model", help="torchvision model name, e.g. resnet50")
    deep.add_argument("--rule", help="rule of every converted layer (bp, fa, usf, brsf, frsf, kp, wm)")
    deep.add_argument("--data", help="imagefolder, fashion_mnist, synthetic or torchvision:<Class>")
    deep.add_argument("--data-root", help="data folder (ImageFolder: the one with train/ and val/)")
    deep.add_argument("--epochs", type=int)
    deep.add_argument("--batch-size", type=int, help="images per process per step")
    deep.add_argument("--workers", type=int, help="data loader workers per process")
    deep.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if it exists")
    deep.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                      help="override any train key, e.g. --set lr_schedule=cosine --set mirror.noise_std=0.5")
    deep.add_argument("--no-figures", action="store_true", help="write results.nc only")
    deep.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch lines")
    return parser


def _cmd_list() -> None:
    from .data import list_datasets
    from .registry import list_models, list_simulations, load_model
    from .rules import get_rule, list_rules

    print("models:")
    for name in list_models():
        print(f"  {name:<24} {load_model(name).description}")
    print("rules:")
    for name in list_rules():
        doc = (type(get_rule(name)).__doc__ or "").strip().splitlines()[0]
        print(f"  {name:<24} {doc}")
    print("datasets:")
    for name in list_datasets():
        print(f"  {name}")
    print("simulations:")
    for name in list_simulations():
        print(f"  {name}")


def _simulation_kind(name: str) -> str | None:
    from ._toml import read_toml
    from .registry import simulation_file

    return read_toml(simulation_file(name)).get("kind")


def _cmd_run_brian(args: argparse.Namespace, only: list[str] | None) -> None:
    from .brian.simulation import load_brian_simulation, run_brian_simulation
    from .plotting import save_figures
    from .results import write_netcdf

    sim = load_brian_simulation(args.simulation, args.settings, only)
    if args.out.exists() and not args.out.is_dir():
        raise NeurocircuitError(f"--out {str(args.out)!r} exists and is not a folder")
    print(f"running {sim.name!r} (Brian2, {sim.variant}, {sim.params.device}/{sim.params.target}): model "
          f"{sim.model}, rules {', '.join(a.label for a in sim.arms)}, seeds {list(sim.seeds)}")
    ds = run_brian_simulation(sim)
    path = write_netcdf(ds, args.out / "results.nc")
    figures = [] if args.no_figures else save_figures(ds, args.out)
    print(brian_summary_table(ds))
    print(f"wrote {path}" + "".join(f"\nwrote {f}" for f in figures))


def brian_summary_table(ds: xr.Dataset) -> str:
    """Per rule, mean ± sd over seeds: the final B-W angle of every layer, and the final test accuracy."""
    layers = [str(v) for v in ds["layer"].values]
    head = f"{'rule':<12} " + " ".join(f"{'angle ' + n + ' (deg)':>20}" for n in layers)
    has_acc = "test_accuracy" in ds
    lines = [head + (f" {'test acc (%)':>15}" if has_acc else "")]
    for rule in ds["rule"].values:
        # arms may end at different times: the last snapshot each arm has
        r = ds["weight_angle"].sel(rule=rule).dropna("weight_time", how="all").isel(weight_time=-1)
        cells = [f"{float(r.sel(layer=n).mean()):13.2f} ± {float(r.sel(layer=n).std()):4.2f}" for n in layers]
        line = f"{rule!s:<12} " + " ".join(cells)
        if has_acc:
            acc = 100 * ds["test_accuracy"].sel(rule=rule).dropna("step", how="all").isel(step=-1)
            line += f" {float(acc.mean()):8.2f} ± {float(acc.std()):4.2f}"
        lines.append(line)
    return "\n".join(lines)


def _cmd_run(args: argparse.Namespace) -> None:
    from .plotting import save_figures
    from .results import write_netcdf
    from .simulation import load_simulation, run_simulation

    only = [x for x in args.only.split(",") if x] if args.only else None
    kind = _simulation_kind(args.simulation)
    if kind == "deep":
        raise NeurocircuitError(f"{args.simulation!r} is a deep-network simulation: run it with "
                                f"'neurocircuit train {args.simulation} --arm ARM ...'")
    if kind == "sweep":
        raise NeurocircuitError(f"{args.simulation!r} is a sweep: run it with 'neurocircuit sweep {args.simulation} "
                                "--out DIR'")
    if kind == "brian2":
        _cmd_run_brian(args, only)
        return
    sim = load_simulation(args.simulation, args.settings, only)
    if args.out.exists() and not args.out.is_dir():
        raise NeurocircuitError(f"--out {str(args.out)!r} exists and is not a folder")
    print(f"running {sim.name!r}: model {sim.model}, rules {', '.join(r.label for r in sim.rules)}, "
          f"seeds {list(sim.seeds)}, {sim.train.epochs} epochs")
    ds = run_simulation(sim, progress=False if args.quiet else None)
    path = write_netcdf(ds, args.out / "results.nc")
    figures = [] if args.no_figures else save_figures(ds, args.out)
    print(summary_table(ds))
    print(f"wrote {path}" + "".join(f"\nwrote {f}" for f in figures))


def _cmd_train(args: argparse.Namespace) -> None:
    import dataclasses
    import os

    from .deep.config import load_deep_simulation
    from .deep.engine import train
    from .plotting import save_figures

    flags = {"model": args.model, "rule": args.rule, "data": args.data, "data_root": args.data_root,
             "epochs": args.epochs, "batch_size": args.batch_size, "workers": args.workers}
    sim = load_deep_simulation(args.simulation, args.settings)
    config = sim.arm(args.arm)
    config = dataclasses.replace(config, **{k: v for k, v in flags.items() if v is not None})
    label = args.arm or (args.rule if args.simulation is None or len(sim.arms) > 1 else next(iter(sim.arms)))
    rank0 = int(os.environ.get("RANK", "0")) == 0

    def report(record: dict) -> None:
        if not args.quiet:
            print(f"epoch {record['epoch']:>3}  step {record['step']:>7}  train loss {record['train_loss']:.4f}  "
                  f"top-1 {100 * record['test_accuracy']:6.2f} %  top-5 {100 * record['test_top5']:6.2f} %  "
                  f"max angle {max(record['weight_angle'], default=float('nan')):6.2f} deg  "
                  f"{record['images_per_second']:8.1f} img/s", flush=True)

    if rank0 and not args.quiet:
        print(f"training {config.model} with rule {config.rule!r} on {config.data} for {config.epochs} epochs "
              f"-> {args.out}", flush=True)
    ds = train(config, args.out, resume=args.resume, label=label or config.rule,
               progress=False if args.quiet else None, on_epoch=report)
    if rank0:
        figures = [] if args.no_figures else save_figures(ds, args.out)
        print(f"wrote {args.out / 'results.nc'}" + "".join(f"\nwrote {f}" for f in figures))


def _cmd_sweep(args: argparse.Namespace) -> None:
    from .sweep import load_sweep, run_sweep

    if args.workers is not None and args.workers < 1:
        raise NeurocircuitError(f"--workers must be >= 1, got {args.workers}")
    sweep = load_sweep(args.target, args.settings, mode="zip" if args.zip else None)
    n = len(sweep.points())
    where = f"dask {args.dask}" if args.dask else f"{args.workers or 'all'} local workers"
    print(f"sweep {sweep.name!r} over {sweep.simulation}: {n} points ({sweep.mode} of "
          + ", ".join(f"{a.key} x{len(a.values)}" for a in sweep.axes) + f") on {where}", flush=True)
    ds = run_sweep(sweep, args.out, workers=args.workers, dask=args.dask, progress=False if args.quiet else None)
    failed = ds.attrs.get("failed_points", 0)
    print(f"{n - failed} points finished, {failed} failed" + (f" (see {args.out / 'points'}/*.error.json)"
                                                             if failed else ""))
    print(f"wrote {args.out / 'sweep.nc'}")


def _cmd_plot(args: argparse.Namespace) -> None:
    from .plotting import plot_over, save_figure
    from .results import read_results

    if not args.results.is_file():
        raise NeurocircuitError(f"results file not found: {args.results}")
    ds = read_results(args.results)
    fig = plot_over(ds, args.var, args.x, args.y, dict(item.partition("=")[::2] for item in args.sel))
    print(f"wrote {save_figure(fig, args.out)}")


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    # An error raised in a DataLoader worker arrives wrapped with the worker's traceback: keep its last line.
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(text.split())


def summary_table(ds: xr.Dataset) -> str:
    """Per rule, mean ± sd over seeds: final test accuracy, B-W angle of the top layer and the largest over
    layers, step time (or, without training, the final angle of each phase)."""
    if "step" not in ds.dims:
        angle_vars = [v for v in ds.data_vars if v.endswith("_weight_angle")]
        lines = [f"{'rule':<20} " + " ".join(f"{v:>24}" for v in angle_vars)]
        for rule in ds["rule"].values:
            cells = [ds[v].sel(rule=rule).isel({ds[v].dims[-2]: -1}).max("layer") for v in angle_vars]
            lines.append(f"{rule!s:<20} " + " ".join(f"{float(c.mean()):17.2f} ± {float(c.std()):4.2f}"
                                                     for c in cells))
        return "\n".join(lines)
    last = ds.isel(step=-1)
    top = str(ds["layer"].values[-1])
    lines = [f"{'rule':<20} {'test acc (%)':>15} {'angle B-W ' + top + ' (deg)':>22} {'max angle (deg)':>16} "
             f"{'ms/step':>9}"]
    for rule in ds["rule"].values:
        r = last.sel(rule=rule)
        acc, angle = 100 * r["test_accuracy"], r["weight_angle"]
        lines.append(f"{rule!s:<20} {float(acc.mean()):8.2f} ± {float(acc.std()):4.2f} "
                     f"{float(angle.sel(layer=top).mean()):15.2f} ± {float(angle.sel(layer=top).std()):4.2f} "
                     f"{float(angle.max('layer').mean()):16.2f} {1e3 * float(r['seconds_per_step'].mean()):9.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neurocircuit`` console command; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            _cmd_list()
        elif args.command == "train":
            _cmd_train(args)
        elif args.command == "sweep":
            _cmd_sweep(args)
        elif args.command == "plot":
            _cmd_plot(args)
        else:
            _cmd_run(args)
    except (NeurocircuitError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"neurocircuit: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:
        print(f"neurocircuit: stopped: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print(f"neurocircuit: interrupted{': ' + _one_line(exc) if str(exc) else ''}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
