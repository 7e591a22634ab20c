"""Sweeps: axes, local workers vs dask, resuming, failing points, bad input, plots."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from neurocircuit.cli import main
from neurocircuit.errors import ConfigError
from neurocircuit.registry import list_simulations
from neurocircuit.results import read_results
from neurocircuit.sweep import Sweep, load_sweep, parse_axis, point_id, run_sweep, validate

ROOT = Path(__file__).resolve().parent.parent
# A small, fast base: the digits MLP, FA only, 2 epochs.
FIXED = ["train.epochs=2", 'arms=["fa"]']
TIMING = ("seconds_per_step", "images_per_second")


def small(*axes: str, mode: str | None = None) -> Sweep:
    return load_sweep("default", [*FIXED, *axes], mode=mode)


def test_axis_syntax() -> None:
    assert parse_axis("optimizer.lr", "0.01,0.1,1").values == (0.01, 0.1, 1)
    assert parse_axis("seed", "0:5").values == (0, 1, 2, 3, 4)
    assert parse_axis("seed", "0:10:4").values == (0, 4, 8)
    assert parse_axis("x", "lin:0:1:5").values == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert parse_axis("x", "log:0.001:1:4").values == (0.001, 0.01, 0.1, 1.0)
    r = parse_axis("x", "random:0:1:3:7").values
    assert len(r) == 3 and all(0 <= v <= 1 for v in r) and r == parse_axis("x", "random:0:1:3:7").values
    assert parse_axis("brian2.tau", "2 ms,4 ms").values == ("2 ms", "4 ms")
    assert parse_axis("optimizer.lr", "0.1") is None  # one value: a fixed setting
    assert parse_axis("arms", '["bp","fa"]') is None
    with pytest.raises(ConfigError, match="empty"):
        parse_axis("seed", "5:2")
    with pytest.raises(ConfigError, match="positive"):
        parse_axis("x", "log:0:1:3")
    grid = small("optimizer.lr=0.01,0.1", "seed=0:3")
    assert len(grid.points()) == 6 and grid.points()[0] == {"optimizer.lr": 0.01, "seed": 0}
    zipped = small("optimizer.lr=0.01,0.1,0.2", "seed=0:3", mode="zip")
    assert zipped.points() == [{"optimizer.lr": v, "seed": s} for v, s in ((0.01, 0), (0.1, 1), (0.2, 2))]
    with pytest.raises(ConfigError, match="same number"):
        small("optimizer.lr=0.01,0.1", "seed=0:3", mode="zip")


def _data_equal(a: xr.Dataset, b: xr.Dataset) -> None:
    assert set(a.data_vars) == set(b.data_vars)
    for var in a.data_vars:
        if var not in TIMING:
            xr.testing.assert_equal(a[var], b[var])


def test_local_workers_and_dask_cluster_give_the_same_dataset(tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    sweep = small("optimizer.lr=0.02,0.1", "seed=0:2")
    local = run_sweep(sweep, tmp_path / "local", workers=2, progress=False)
    assert local["test_accuracy"].dims[:3] == ("optimizer.lr", "arm", "seed")
    assert local.sizes["optimizer.lr"] == 2 and local.sizes["seed"] == 2
    assert np.isfinite(local["test_accuracy"]).all()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        on_dask = run_sweep(sweep, tmp_path / "dask", dask=client, progress=False)
    _data_equal(local, on_dask)
    serial = run_sweep(sweep, tmp_path / "serial", workers=1, progress=False)
    _data_equal(local, serial)
    # the merged file carries the sweep definition
    saved = read_results(tmp_path / "local" / "sweep.nc")
    assert '"optimizer.lr"' in saved.attrs["sweep"] and saved.attrs["failed_points"] == 0


def test_a_failing_point_is_recorded_and_the_others_finish(tmp_path: Path, capsys) -> None:
    sweep = small("optimizer.lr=0.05,1e6")  # lr 1e6 diverges: NaN loss
    done = []
    ds = run_sweep(sweep, tmp_path, workers=1, progress=False, on_point=lambda pid, status: done.append(status))
    assert sorted(done) == ["done", "failed"]
    assert ds.attrs["failed_points"] == 1 and "FloatingPointError" in ds.attrs["errors"]
    record = json.loads((tmp_path / "points" / f"{point_id({'optimizer.lr': 1e6})}.error.json").read_text())
    assert record["point"] == {"optimizer.lr": 1e6} and "FloatingPointError" in record["error"]
    assert np.isfinite(ds["test_accuracy"].sel({"optimizer.lr": 0.05})).all()
    assert ds["test_accuracy"].sel({"optimizer.lr": 1e6}).isnull().all()
    # neurocircuit table sweep names the failure in its cell and prints the other point's final error
    assert main(["table", "sweep", str(tmp_path / "sweep.nc"), "--error", "--cols", "optimizer.lr"]) == 0
    table = capsys.readouterr().out.splitlines()
    error = 100 * (1 - ds["test_accuracy"].sel({"optimizer.lr": 0.05}).isel(step=-1).values.ravel())  # 2 seeds
    arm = str(ds["arm"].values[0])  # the simulation's one arm: a row of its own
    assert table[:2] == ["| arm | optimizer.lr 0.05 | optimizer.lr 1000000.0 |", "|---|---|---|"]
    assert re.fullmatch(rf"\| {arm} \| {error.mean():.2f} ± {error.std(ddof=1):.2f} \| nan at step \d+ \|",
                        table[2]), table
    # running it again retries only the failed point
    again = []
    run_sweep(sweep, tmp_path, workers=1, progress=False, on_point=lambda pid, status: again.append(status))
    assert again == ["failed"]


def test_killed_sweep_reruns_only_the_missing_points(tmp_path: Path) -> None:
    args = ["sweep", "default", *sum((["--set", s] for s in FIXED), []), "--set", "optimizer.lr=0.01,0.02,0.05,0.1",
            "--out", str(tmp_path), "--workers", "1", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "neurocircuit", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    points = tmp_path / "points"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(points.glob("*.nc"))) < 1 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in points.glob("*.nc")}
    assert 1 <= len(finished) < 4
    sweep = load_sweep("default", [*FIXED, "optimizer.lr=0.01,0.02,0.05,0.1"])
    ran = []
    ds = run_sweep(sweep, tmp_path, workers=1, progress=False, on_point=lambda pid, status: ran.append(pid))
    assert len(ran) == 4 - len(finished)
    assert all(f"{pid}.nc" not in finished for pid in ran)
    assert {p.name: p.stat().st_mtime_ns for p in points.glob("*.nc") if p.name in finished} == finished
    assert ds.sizes["optimizer.lr"] == 4 and np.isfinite(ds["test_accuracy"]).all()
    # A point file truncated by a kill is set aside and recomputed, the others are kept.
    victim = next(iter(finished))
    (points / victim).write_bytes((points / victim).read_bytes()[:100])
    ran.clear()
    run_sweep(sweep, tmp_path, workers=1, progress=False, on_point=lambda pid, status: ran.append(pid))
    assert ran == [victim[:-3]] and (points / f"{victim}.corrupt").exists()


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux-only")
def test_sweep_workers_die_with_a_killed_sweep_and_are_capped(tmp_path: Path, monkeypatch) -> None:
    args = ["sweep", "default", "--set", "train.epochs=200", "--set", 'arms=["fa"]', "--set", "seeds=[0]",
            "--set", "optimizer.lr=0.01,0.02", "--out", str(tmp_path), "--workers", "1000", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "neurocircuit", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(_children(proc.pid)) < 2:
        time.sleep(0.05)
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(workers) == 2  # --workers 1000 for 2 points: 2 processes
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), "the sweep's workers outlived it"


def test_bad_axes_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cases = [(["--set", "optimizr.lr=0.1,0.2"], "optimizr"),
             (["--set", "train.epochs=1,x"], "epochs"),
             (["--set", "seed=5:2"], "empty"),
             (["--set", "optimizer.lr=0.1"], "at least one axis"),
             (["--set", "arms.7.rule=a,b"], "not an index"),
             (["--set", "seed=0:2", "--dask", "bogus://x"], "cannot reach the dask scheduler")]
    for extra, needle in cases:
        assert main(["sweep", "default", *extra, "--out", str(tmp_path / "o")]) == 2, extra
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err, (extra, err)
    assert main(["sweep", "default", "--set", "seed=0:2", "--workers", "0", "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o" / "points").exists() or not list((tmp_path / "o" / "points").iterdir())


def test_shipped_sweeps_validate() -> None:
    names = [n for n in list_simulations() if n.startswith("sweep_")]
    assert {"sweep_wm_noise_lr", "sweep_kp_decay_lr", "sweep_prenatal_samples", "sweep_brian2_tau_noise",
            "sweep_wm_robustness", "sweep_wm_robustness_mlp"} <= set(names)
    for name in names:
        sweep = load_sweep(name)
        validate(sweep)
        assert len(sweep.points()) >= 4


def test_a_command_line_setting_replaces_the_files_axis_on_its_key(tmp_path: Path) -> None:
    sweep = load_sweep("sweep_wm_robustness", ["optimizer.lr=0.02", "mirror.noise_std=0.5,2.0"])
    assert [a.key for a in sweep.axes] == ["mirror.learning_rate", "mirror.noise_std"]
    assert sweep.axes[1].values == (0.5, 2.0) and len(sweep.points()) == 4
    assert "optimizer.lr=0.02" in sweep.fixed
    from neurocircuit.sweep_points import _base_table, _point_table

    base = _base_table(sweep)
    assert {_point_table(base, point)[0]["optimizer"]["lr"] for point in sweep.iter_points()} == {0.02}
    # in a sweep file, a key that is both an axis and a fixed setting is refused
    clash = tmp_path / "clash.toml"
    clash.write_text('kind = "sweep"\nsimulation = "default"\nset = ["optimizer.lr=0.1"]\n'
                     '[axes]\n"optimizer.lr" = [0.01, 0.02]\n')
    with pytest.raises(ConfigError, match="'optimizer.lr' is both an axis and a fixed setting"):
        load_sweep(str(clash))


def test_brian2_sweep_and_plots(tmp_path: Path) -> None:
    code = main(["sweep", "brian2_weight_mirror", "--set", "brian2.tau=1 ms,2 ms", "--set",
                 'phases=[{kind="mirror", steps=10}]', "--out", str(tmp_path), "--workers", "2", "--quiet"])
    assert code == 0
    ds = read_results(tmp_path / "sweep.nc")
    # swept quantities are numbers in SI units (plotted on a numeric axis), not text
    assert list(ds["brian2.tau"].values) == [0.001, 0.002] and ds["brian2.tau"].attrs["units"] == "s"
    assert ds["weight_angle"].attrs["units"] == "degree" and ds["weight_time"].attrs["units"] == "s"
    assert main(["plot", str(tmp_path / "sweep.nc"), "--var", "weight_angle", "--x", "brian2.tau", "--sel",
                 "layer=W2", "--sel", "weight_time=last", "--out", str(tmp_path / "line.png")]) == 0
    assert (tmp_path / "line.png").stat().st_size > 1000
    assert main(["plot", str(tmp_path / "sweep.nc"), "--var", "weight_angle", "--x", "brian2.tau", "--y", "layer",
                 "--out", str(tmp_path / "heat.png")]) == 0
    assert main(["plot", str(tmp_path / "sweep.nc"), "--var", "nope", "--x", "brian2.tau",
                 "--out", str(tmp_path / "x.png")]) == 2
