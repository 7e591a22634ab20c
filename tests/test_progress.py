"""Progress and log lines: records logged without a `nan` for what was not measured, at most one INFO line per
interval in a log file, --quiet and -v, a Brian2 run's progress through logging. (The default run's whole log file:
tests/test_cli.py.)"""

import logging
import math

import pytest

from neurocircuit import progress
from neurocircuit.cli import main
from neurocircuit.progress import RecordLog, RunProgress, format_record

RECORD = {"step": 38, "epoch": 1.0, "epochs": 30, "train_loss": 1.5365, "test_accuracy": 0.8374,
          "weight_angle": [math.nan, 12.5], "lr": 0.05, "images_per_second": 826.1}


def test_a_record_line_says_nothing_for_what_was_not_measured():
    line = format_record("bp seed 0", RECORD, RECORD["epochs"])
    assert line == ("bp seed 0  epoch 1/30  step 38  train loss 1.5365  test acc 83.74 %  max angle 12.50 deg  "
                    "lr 0.05  826 img/s")
    # the record at step 0: no training yet, so no loss and no speed (they are NaN in the record)
    first = {**RECORD, "step": 0, "epoch": 0.0, "train_loss": math.nan, "images_per_second": math.nan}
    line = format_record("bp seed 0", first, 30)
    assert "nan" not in line and "train loss" not in line and "img/s" not in line
    assert line.startswith("bp seed 0  epoch 0/30  step 0  test acc 83.74 %")


def test_records_reach_info_at_most_once_per_interval_and_never_under_a_bar(caplog, monkeypatch):
    caplog.set_level(logging.DEBUG, logger="neurocircuit")
    monkeypatch.setattr(progress, "RECORD_INTERVAL", 0.0)
    log = RecordLog()
    for step in (0, 38, 76):
        log("bp seed 0", {**RECORD, "step": step})
    # step 0 (nothing trained yet) at DEBUG only; every later record is due with no interval
    assert [(r.levelno, "step 0 " in r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, True), (logging.INFO, False), (logging.INFO, False)]
    caplog.clear()
    monkeypatch.setattr(progress, "RECORD_INTERVAL", 3600.0)
    for log in (RecordLog(), RecordLog(drawn=True, interval=0.0)):  # not due yet; a bar shows the run instead
        log("bp seed 0", RECORD)
    assert [r.levelno for r in caplog.records] == [logging.DEBUG, logging.DEBUG]


def test_each_finished_run_logs_its_numbers_and_the_time_left(caplog):
    caplog.set_level(logging.INFO, logger="neurocircuit")
    tracker = RunProgress("default", 3, progress=False)
    tracker.finished("bp seed 0", "test acc 95.00 %")
    tracker.finished("fa seed 0")
    tracker.finished("kp seed 0")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("[1/3] bp seed 0: test acc 95.00 % (") and "left)" in lines[0]
    assert lines[1].startswith("[2/3] fa seed 0 (") and "left)" in lines[1]
    assert lines[2].startswith("[3/3] kp seed 0 (") and "left" not in lines[2]
    caplog.clear()
    with progress.nested():  # a sweep's point: its runs' lines are not the sweep's
        RunProgress("default", 1, progress=False).finished("bp seed 0")
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]


def test_runs_read_back_on_resume_do_not_set_the_pace(caplog, monkeypatch):
    clock = iter([0.0, 0.0, 0.0, 100.0])  # start; two stored runs read back at once; one run of 100 s
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock, 100.0))
    caplog.set_level(logging.INFO, logger="neurocircuit")
    tracker = RunProgress("default", 4, progress=False)
    tracker.finished("bp seed 0", stored=True)
    tracker.finished("bp seed 1", stored=True)
    tracker.finished("fa seed 0")
    lines = [r.getMessage() for r in caplog.records]
    assert "stored, read back" in lines[0] and "left" not in lines[0]  # no run has been timed yet
    assert lines[2].endswith("(1 min 40 s so far; about 1 min 40 s left)"), lines[2]  # 100 s a run, one run left


def test_time_left_counts_the_runs_in_flight_on_other_workers(caplog, monkeypatch):
    # Two workers, four runs of 100 s: the first ends at 100 s with its twin nearly done beside it, so about 100 s
    # are left (the third and fourth runs, side by side) -- not 3 x 100 s as if the runs went one at a time.
    clock = iter([0.0, 100.0, 101.0, 200.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    caplog.set_level(logging.INFO, logger="neurocircuit")
    tracker = RunProgress("default", 4, progress=False, workers=2)
    for label in ("bp seed 0", "bp seed 1", "bp seed 2"):
        tracker.finished(label)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].endswith("(1 min 40 s so far; about 1 min 40 s left)"), lines[0]
    # at 101 s: runs of 100 and 101 s (pace 100.5 s); the fourth began now, so 100.5 s are left
    assert lines[1].endswith("(1 min 41 s so far; about 1 min 40 s left)"), lines[1]
    # at 200 s the fourth run, begun at 101 s, has about 1 s of its 100.3 s left
    assert lines[2].endswith("(3 min 20 s so far; about 1.3 s left)"), lines[2]


def test_a_stored_run_read_back_beside_a_running_one_keeps_the_pool_timed(caplog, monkeypatch):
    # Two workers: bp seed 0 ends at 100 s, its worker reads a stored run back (ends at 100.5 s) and begins the last
    # run; bp seed 1, begun at 0 s, ends at 101 s. Runs take about 100 s, so about 100 s are left.
    clock = iter([0.0, 100.0, 100.5, 101.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    caplog.set_level(logging.INFO, logger="neurocircuit")
    tracker = RunProgress("default", 4, progress=False, workers=2)
    tracker.finished("bp seed 0")
    tracker.finished("fa seed 0", stored=True)
    tracker.finished("bp seed 1")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[2].endswith("(1 min 41 s so far; about 1 min 40 s left)"), lines[2]


def test_a_resumed_simulation_reports_its_stored_runs(tmp_path, caplog):
    args = ["run", "default", "--out", str(tmp_path / "o"), "--only", "bp", "--set", "seeds=[0,1]",
            "--set", "train.epochs=1", "--no-figures"]
    assert main(args) == 0
    caplog.clear()
    caplog.set_level(logging.INFO, logger="neurocircuit")
    assert main([*args, "--resume"]) == 0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[")]
    assert len(lines) == 2 and all("stored, read back" in line for line in lines), lines


@pytest.mark.parametrize("flag", ["--quiet", "-v"])
def test_quiet_logs_warnings_only_and_verbose_every_record(tmp_path, capsys, flag):
    code = main(["run", "default", "--out", str(tmp_path / "o"), "--only", "bp", "--set", "seeds=[0]",
                 "--set", "train.epochs=1", "--no-figures", flag])
    assert code == 0
    captured = capsys.readouterr()
    assert "bp" in captured.out and "wrote" in captured.out  # the results are printed either way
    assert captured.err == ""  # warnings and errors only (none here); progress goes to stdout
    if flag == "--quiet":
        assert "running" not in captured.out and "[1/1]" not in captured.out
    else:
        lines = captured.out.splitlines()
        assert lines[0].startswith("running 'default' on torch")
        # every record (step 0 and the end of the epoch), then the run's line
        assert [line.split("  ")[1:3] for line in lines[1:3]] == [["epoch 0/1", "step 0"], ["epoch 1/1", "step 38"]]
        assert lines[3].startswith("[1/1] bp seed 0: test acc ")
        assert "nan" not in captured.out
    assert logging.getLogger("neurocircuit").handlers == []  # main() left logging as it found it


def test_a_brian2_run_logs_its_simulated_time_as_it_goes(caplog, monkeypatch):
    from neurocircuit.runs import run_simulation
    from neurocircuit.simulation import load_simulation

    monkeypatch.setattr(progress, "REPORT_INTERVAL", 0.01)  # (10 s in a log file)
    caplog.set_level(logging.INFO, logger="neurocircuit")
    sim = load_simulation("brian2_weight_mirror", ['phases=[{kind="mirror", steps=5}]', 'brian2.target="numpy"'])
    run_simulation(sim, progress=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "neurocircuit.progress"]
    # 5 windows of 40 ms and the protocol's closing blank one
    simulated = [line for line in lines if line.startswith("wm seed 0: ") and " of 0.24 s simulated (" in line]
    assert len(simulated) >= 3 and "about" in simulated[-1]
    assert lines[-1].startswith("[1/1] wm seed 0: max angle ")


def test_bars_are_drawn_in_a_notebook_by_default(monkeypatch):
    import sys
    import types

    from neurocircuit.progress import bars_drawn

    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert bars_drawn(False) is False and bars_drawn(True) is True
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    assert bars_drawn(None) is True and bars_drawn(False) is False
