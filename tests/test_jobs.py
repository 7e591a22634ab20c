"""``neurocircuit run --jobs N``: (arm, seed) runs on the sweep's worker pool, in the same ``runs/<arm>-seed<k>/``
folders as one after another, resumable, merged once into the same results."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import xarray as xr

from neurocircuit.cli import main
from neurocircuit.errors import ConfigError
from neurocircuit.results import read_results
from neurocircuit.runs import run_simulation
from neurocircuit.simulation import load_simulation

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ["train.epochs=2", 'arms=["fa","kp"]', "seeds=[0,1]"]
TIMING = ["seconds_per_step", "images_per_second"]  # wall-clock measurements: the only numbers that may differ
RUNS = ["fa-seed0", "fa-seed1", "kp-seed0", "kp-seed1"]


def _note_pid(label: str, record: dict) -> None:
    """An on_record callback (module level, so it pickles): which process took the record."""
    with open(os.environ["NC_TEST_PIDS"], "a") as f:
        f.write(f"{os.getpid()}\n")


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    # One thread, as each worker has: with two, the float64 angle metrics differ in the last bits (1e-14 deg).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("serial")
        return run_simulation(load_simulation("default", SETTINGS), out=out, progress=False), out
    finally:
        torch.set_num_threads(threads)


def _same(a: xr.Dataset, b: xr.Dataset) -> None:
    xr.testing.assert_identical(a.drop_vars(TIMING), b.drop_vars(TIMING))


def test_jobs_run_in_workers_into_the_same_folders_with_the_serial_results(serial, tmp_path, monkeypatch):
    pids = tmp_path / "pids.txt"
    monkeypatch.setenv("NC_TEST_PIDS", str(pids))
    ds = run_simulation(load_simulation("default", SETTINGS), out=tmp_path / "out", jobs=2, progress=False,
                        on_record=_note_pid)
    workers = {int(p) for p in pids.read_text().split()}
    assert len(workers) == 2 and os.getpid() not in workers  # two worker processes took the records
    _same(ds, serial[0])
    for run in RUNS:
        assert sorted(p.name for p in (tmp_path / "out" / "runs" / run).iterdir()) == \
            sorted(p.name for p in (serial[1] / "runs" / run).iterdir()) == ["checkpoint.pt", "results.nc"]
    with pytest.raises(ConfigError, match="give an output folder"):
        run_simulation(load_simulation("default", SETTINGS), jobs=2)


def test_jobs_resume_stopped_runs_and_do_not_rerun_finished_ones(serial, tmp_path):
    sim = load_simulation("default", SETTINGS)
    with pytest.raises(KeyboardInterrupt):  # every run stops after 10 steps, with a checkpoint
        run_simulation(sim, out=tmp_path, jobs=2, progress=False, stop_after_steps=10)
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == RUNS
    assert all((runs / r / "checkpoint.pt").exists() and not (runs / r / "results.nc").exists() for r in RUNS)
    _same(run_simulation(sim, out=tmp_path, jobs=2, progress=False, resume=True), serial[0])
    # a lost run is run again; the finished ones are read back from their checkpoints, not trained again
    kept = {r: (runs / r / "checkpoint.pt").stat().st_mtime_ns for r in RUNS[:3]}
    for path in (runs / RUNS[3]).iterdir():
        path.unlink()
    _same(run_simulation(sim, out=tmp_path, jobs=2, progress=False, resume=True), serial[0])
    assert {r: (runs / r / "checkpoint.pt").stat().st_mtime_ns for r in RUNS[:3]} == kept
    assert (runs / RUNS[3] / "results.nc").exists()


def test_cli_jobs_merges_once_writes_figures_and_names_a_failing_run(serial, tmp_path, capsys):
    sets = sum((["--set", s] for s in SETTINGS), [])
    assert main(["run", "default", "--out", str(tmp_path), "--quiet", *sets, "--jobs", "2"]) == 0
    ds = read_results(tmp_path / "results.nc")
    assert ds.attrs["command"].endswith("--jobs 2")
    ref = read_results(serial[1] / "runs" / "kp-seed1" / "results.nc")
    assert float(ds["test_accuracy"].sel(arm="kp", seed=1)[-1]) == float(ref["test_accuracy"][-1])
    assert (tmp_path / "learning_curves.png").stat().st_size > 10_000
    capsys.readouterr()
    changed = ["run", "default", "--out", str(tmp_path), "--quiet", *sets, "--set", "optimizer.lr=0.1", "--resume",
               "--jobs", "2"]
    # other settings are refused by the folder, before any run
    assert main(changed) == 2 and "other settings: optimizer.lr differ" in capsys.readouterr().err
    # an error in a worker (here its checkpoint's own check, in a folder that no longer says what wrote it): one line
    # naming the arm and seed, exit 2
    (tmp_path / "owner.json").unlink()
    (tmp_path / "results.nc").unlink()
    assert main(changed) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: arm '" in err and "' seed " in err and "different settings" in err
    assert main(["run", "default", "--out", str(tmp_path / "x"), "--jobs", "0"]) == 2
    assert "--jobs must be >= 1" in capsys.readouterr().err


def test_brian2_runs_in_parallel_too(tmp_path):
    sim = load_simulation("brian2_weight_mirror", ['phases=[{kind="mirror", steps=10}]', 'arms=["wm"]',
                                                   "seeds=[0,1]"])
    xr.testing.assert_identical(run_simulation(sim, out=tmp_path / "a", jobs=2, progress=False),
                                run_simulation(sim, out=tmp_path / "b", progress=False))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_stops_every_worker_with_a_checkpoint_and_starts_no_queued_run(tmp_path):
    args = ["run", "default", "--out", str(tmp_path), "--quiet", "--no-figures", "--set", "train.epochs=300",
            "--set", 'arms=["fa","kp"]', "--set", "seeds=[0,1]", "--jobs", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "neurocircuit", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(tmp_path.glob("runs/*/checkpoint.pt"))) < 2:
        time.sleep(0.05)
    workers = [int(c) for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err and "--resume continues" in err
    assert len(workers) == 2 and not any(Path(f"/proc/{w}").exists() for w in workers)
    # the two running runs saved a checkpoint; the two queued ones never started
    assert sorted(p.parent.name for p in tmp_path.glob("runs/*/checkpoint.pt")) == ["fa-seed0", "fa-seed1"]
