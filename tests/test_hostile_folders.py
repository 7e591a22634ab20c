"""Output folders and resume under hostile and unlucky use (issue 31): a resumed run is the uninterrupted one bit for
bit for every rule, a folder belongs to one simulation, a second process on it is refused at once, and a full disk
is one line that keeps what was on disk."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import xarray as xr

from neurocircuit.runs import run_simulation
from neurocircuit.simulation import load_simulation
from neurocircuit.torch.nn.feedback_rules import list_rules

ROOT = Path(__file__).resolve().parents[1]
TIMING = ["seconds_per_step", "images_per_second"]  # wall-clock measurements: the only numbers that may differ
#: Two epochs of 6 steps, a record every 2: a stop at step 3 resumes mid-epoch, between records, before an epoch end.
SMALL = ["train.epochs=2", "train.steps_per_epoch=6", "train.record_every=2", "train.alignment_samples=32",
         "seeds=[0]"]


def _arm(rule: str) -> str:
    # wm with interleaved mirror steps, so its mirror generator is resumed too
    return '{ rule = "wm", phases = [{ kind = "engaged", mirror_every = 2 }] }' if rule == "wm" else f'"{rule}"'


@pytest.mark.parametrize("rule", list_rules())
def test_a_stopped_and_resumed_run_is_the_uninterrupted_one_for_every_rule(rule, tmp_path):
    sim = load_simulation("default", [*SMALL, f"arms=[{_arm(rule)}]"])
    whole = run_simulation(sim, out=tmp_path / "whole", progress=False)
    with pytest.raises(KeyboardInterrupt, match="stopped at step 3"):
        run_simulation(sim, out=tmp_path / "parts", progress=False, stop_after_steps=3)
    resumed = run_simulation(sim, out=tmp_path / "parts", progress=False, resume=True)
    xr.testing.assert_identical(whole.drop_vars(TIMING), resumed.drop_vars(TIMING))
    label = sim.labels[0]
    weights = [torch.load(tmp_path / part / "runs" / f"{label}-seed0" / "checkpoint.pt", weights_only=True)["model"]
               for part in ("whole", "parts")]
    assert weights[0].keys() == weights[1].keys()
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key


# ------------------------------------------------------------------------------------------- an owned folder
TINY = ["--set", "seeds=[0]", "--set", "train.epochs=1", "--set", "train.steps_per_epoch=2", "--set",
        "train.alignment_samples=16", "--quiet", "--no-figures"]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("neurocircuit: error:") and "Traceback" not in err, err
    return err


def test_resume_into_another_simulations_folder_is_refused_and_merge_keeps_what_is_there(tmp_path, capsys):
    from neurocircuit.cli import main
    from neurocircuit.results import read_results

    out = str(tmp_path / "out")
    assert main(["run", "default", "--arm", "bp", *TINY, "--out", out]) == 0
    results = tmp_path / "out" / "results.nc"
    before = results.read_bytes()
    # the same simulation with other arms, another simulation, other settings: one line each, results untouched
    assert main(["run", "default", "--arm", "kp", *TINY, "--resume", "--out", out]) == 2
    assert "holds simulation 'default' with arms [bp] and seeds [0]; this run has arms [kp]" in _one_line(capsys)
    assert main(["run", "default", "--arm", "bp", *TINY, "--set", 'name="other"', "--resume", "--out", out]) == 2
    assert "holds simulation 'default'; this run is 'other'" in _one_line(capsys)
    assert main(["run", "default", "--arm", "bp", *TINY, "--set", "optimizer.lr=0.5", "--resume", "--out", out]) == 2
    assert "other settings: optimizer.lr differ" in _one_line(capsys)
    assert main(["run", "default", "--arm", "kp", *TINY, "--merge", "--set", "optimizer.lr=0.5", "--out", out]) == 2
    assert "other settings: optimizer.lr differ" in _one_line(capsys)
    assert results.read_bytes() == before
    # a folder written before owner files: judged by its results.nc
    owner = tmp_path / "out" / "owner.json"
    saved = owner.read_bytes()
    owner.unlink()
    assert main(["run", "default", "--arm", "kp", *TINY, "--resume", "--out", out]) == 2
    assert "this run has arms [kp]" in _one_line(capsys)
    assert not owner.exists() and results.read_bytes() == before  # a refusal leaves the folder as it was
    owner.write_bytes(saved)
    # --merge adds kp; the merged file keeps bp's results as they were
    assert main(["run", "default", "--arm", "kp", *TINY, "--merge", "--out", out]) == 0
    merged, earlier = read_results(results), xr.open_dataset(tmp_path / "out" / "runs" / "bp-seed0" / "results.nc")
    assert list(merged["arm"].values) == ["bp", "kp"] and list(merged["rule"].values) == ["bp", "kp"]
    assert merged["test_accuracy"].sel(arm="bp", seed=0).values.tolist() == earlier["test_accuracy"].values.tolist()
    assert json.loads(owner.read_text())["arms"] == ["bp", "kp"]
    # and plain --resume of what the folder now holds goes on
    assert main(["run", "default", "--only", "bp,kp", *TINY, "--resume", "--out", out]) == 0


def test_a_second_process_on_the_same_folder_is_refused_at_once_and_a_killed_holder_leaves_no_lock(tmp_path, capsys):
    from neurocircuit.cli import main

    out = tmp_path / "out"
    # a real second neurocircuit process, running long enough to be caught holding the folder
    proc = subprocess.Popen([sys.executable, "-m", "neurocircuit", "run", "default", "--arm", "bp", "--set",
                             "seeds=[0]", "--set", "train.epochs=1000", "--quiet", "--no-figures", "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (out / "runs").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        started = time.monotonic()
        assert main(["run", "default", "--arm", "bp", *TINY, "--resume", "--out", str(out)]) == 2
        assert time.monotonic() - started < 5  # at once, not after the other run
        assert f"--out '{out}' is in use by another neurocircuit process (pid {proc.pid})" in _one_line(capsys)
    finally:
        proc.kill()  # SIGKILL: no handler runs, the kernel drops the lock
        proc.wait()
    assert main(["run", "default", "--arm", "bp", *TINY, "--overwrite", "--out", str(out)]) == 0


def test_a_lock_held_by_any_process_refuses_the_api_too(tmp_path):
    import neurocircuit as nc
    from neurocircuit.errors import ConfigError

    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], "
                               "os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); "
                               "time.sleep(60)", str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match="is in use by another neurocircuit process"):
            nc.run("default", arms="bp", overrides={"seeds": [0], "train.epochs": 1}, out=out)
    finally:
        holder.kill()
        holder.wait()
    assert not any(out.iterdir())  # refused before anything was written


# ----------------------------------------------------------------------------------------------- a full disk
def test_a_checkpoint_that_fills_the_disk_is_one_line_and_keeps_the_previous_one(tmp_path, capsys, monkeypatch):
    from neurocircuit.cli import main
    from neurocircuit.torch import checkpoint

    saves = []
    real_save = torch.save

    def save(state, path):
        saves.append(path)
        if len(saves) == 2:  # the second checkpoint: the disk is full half-way through it
            Path(path).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(state, path)

    monkeypatch.setattr(checkpoint.torch, "save", save)
    out = tmp_path / "out"
    args = ["run", "default", "--arm", "bp", *TINY, "--set", "train.epochs=2", "--out", str(out)]
    assert main(args) == 2
    path = out / "runs" / "bp-seed0" / "checkpoint.pt"
    assert _one_line(capsys) == (f"neurocircuit: error: writing checkpoint {path} failed: No space left on device; "
                                 "the previous checkpoint is kept")
    assert torch.load(path, weights_only=True)["step"] == 2  # the epoch-1 checkpoint, whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]  # no temporary file left
    # too little room is refused before writing
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 1000))
    assert main([*args, "--resume"]) == 2
    assert "refused: it needs about 1.1 MiB and the disk has 0.0 MiB free; the previous checkpoint is kept" in \
        _one_line(capsys)
    assert torch.load(path, weights_only=True)["step"] == 2


def test_a_run_refused_at_its_first_checkpoint_leaves_the_folder_to_any_simulation(tmp_path, capsys, monkeypatch):
    from neurocircuit.cli import main
    from neurocircuit.torch import checkpoint

    out = tmp_path / "out"
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 1000))
    assert main(["run", "default", "--arm", "bp", *TINY, "--out", str(out)]) == 2
    assert "the disk has 0.0 MiB free" in _one_line(capsys)
    assert not (out / "owner.json").exists()  # only an empty run folder was made: nothing of that run is there
    monkeypatch.undo()
    args = ["run", "default", "--arm", "fa", *TINY, "--out", str(out)]
    assert main(args) == 0, capsys.readouterr().err  # another simulation may have the folder
    capsys.readouterr()
    # a refusal of the owner itself (same process, same record) leaves its owner file untouched, inode and all
    before = (out / "owner.json").stat()
    assert main(args) == 2 and "pass --resume" in _one_line(capsys)
    after = (out / "owner.json").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_run_on_a_small_tmpfs_ends_in_one_line(tmp_path, capsys):
    from neurocircuit.cli import main

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        (disk / "filler").write_bytes(b"\0" * (1024 * 1024 - 64 * 1024))  # leave 64 KiB
        assert main(["run", "default", "--arm", "bp", *TINY, "--out", str(disk / "out")]) == 2
        assert "neurocircuit: error: writing checkpoint" in _one_line(capsys)
    finally:
        import gc

        gc.collect()  # a failed write's file object lives on in its traceback's frames until collected
        if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], check=False)  # detach it whatever still holds it
