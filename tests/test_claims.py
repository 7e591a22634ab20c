"""Pre-registered claims (neurocircuit.book.claims): protocols checked, verdicts by the stated rules, results made
before their protocol void, and the shipped protocols readable against the book."""

import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from neurocircuit.book import BOOK_FOLDER, BookError, load_book, render_book, write_summary
from neurocircuit.book.claims import (
    Comparison,
    Term,
    claim_verdict,
    evaluate,
    load_claims,
    outcomes,
    tost_p,
)
from neurocircuit.book.summaries import Table
from neurocircuit.cli import main

REPO = Path(__file__).resolve().parents[1]
SEEDS = (100, 101, 102, 103, 104)


def _table(values: dict[str, list[float]], metric: str = "test_accuracy_final", commit: str = "abc1234") -> Table:
    runs = [{"arm": arm, "seed": seed, metric: v} for arm, vs in values.items() for seed, v in zip(SEEDS, vs)]
    data = {"table": "t", "title": "t", "kind": "measured", "metrics": [metric], "units": {metric: "%"},
            "runs": runs, "provenance": {"git_commit": commit, "date": "2026-01-01 00:00 UTC"}}
    return Table("t", "measured", Path("t.json"), data)


def _pair(test: str, margin: float | None = None, threshold: float | None = None) -> Comparison:
    if test == "at_most":
        return Comparison("c", "t", test, (Term("a", "test_accuracy_final", 1.0),), threshold=threshold)
    return Comparison("c", "t", test, (Term("a", "test_accuracy_final", 1.0), Term("b", "test_accuracy_final", -1.0)),
                      margin=margin)


def _with_differences(d: list[float]) -> Table:
    base = [90.0, 91.0, 89.5, 90.5, 90.2]
    return _table({"a": [x + y for x, y in zip(base, d)], "b": base})


def test_tost_p_is_the_larger_of_the_two_one_sided_t_tests():
    d = [0.12, -0.05, 0.2, 0.02, 0.09]
    lower = stats.ttest_1samp(d, -0.3, alternative="greater").pvalue
    upper = stats.ttest_1samp(d, 0.3, alternative="less").pvalue
    assert tost_p(d, 0.3) == pytest.approx(max(lower, upper), rel=1e-10)


@pytest.mark.parametrize("d, verdict", [
    ([0.05, -0.04, 0.02, 0.0, -0.03], "met"),            # tight around 0
    ([1.1, 0.9, 1.2, 1.0, 0.95], "not met"),              # the 95 % interval lies beyond +0.3
    ([0.6, -0.5, 0.4, -0.3, 0.1], "inconclusive"),        # too wide to decide
    ([0.2, 0.35, 0.25, 0.3, 0.22], "inconclusive"),        # mean inside the margin, 90 % interval not
])
def test_equivalence_verdict_follows_the_90_and_95_percent_intervals(d, verdict):
    got = evaluate(_pair("equivalence", margin=0.3), _with_differences(d), 0.05, SEEDS)
    assert got.verdict == verdict
    assert got.mean == pytest.approx(np.mean(d), abs=1e-9)
    half95 = stats.t.ppf(0.975, 4) * np.std(d, ddof=1) / math.sqrt(5)
    assert got.ci95 == pytest.approx((np.mean(d) - half95, np.mean(d) + half95), abs=1e-9)
    assert (got.p_tost < 0.05) == (verdict == "met")  # TOST at alpha and the 90 % interval agree


@pytest.mark.parametrize("d, verdict", [([0.5, 0.4, 0.6, 0.5, 0.45], "met"), ([-0.5, -0.4, -0.6, -0.5, -0.45],
                                                                                  "not met"),
                                        ([0.5, -0.4, 0.6, -0.5, 0.1], "inconclusive")])
def test_greater_verdict_is_the_sign_of_the_95_percent_interval(d, verdict):
    assert evaluate(_pair("greater"), _with_differences(d), 0.05, SEEDS).verdict == verdict


def test_at_most_reads_one_arm_against_its_threshold():
    table = _table({"a": [13.0, 14.0, 13.5, 14.2, 13.8]})
    assert evaluate(_pair("at_most", threshold=15.0), table, 0.05, SEEDS).verdict == "met"
    assert evaluate(_pair("at_most", threshold=12.0), table, 0.05, SEEDS).verdict == "not met"
    assert evaluate(_pair("at_most", threshold=14.0), table, 0.05, SEEDS).verdict == "inconclusive"


def test_a_contrast_is_the_weighted_sum_per_seed_and_a_reference_may_read_another_metric():
    table = _table({"fa+noise": [80, 81, 82, 83, 84], "fa": [70, 70, 70, 70, 70],
                    "bp+noise": [85, 85, 85, 85, 85], "bp": [84, 84, 84, 84, 83]})
    interaction = Comparison("i", "t", "report", tuple(Term(a, "test_accuracy_final", w) for a, w in (
        ("fa+noise", 1), ("fa", -1), ("bp+noise", -1), ("bp", 1))))
    got = evaluate(interaction, table, 0.05, SEEDS)
    assert got.values == (9.0, 10.0, 11.0, 12.0, 12.0) and got.verdict == "reported"
    twin = _table({"fa": [86, 87, 85, 86, 88]})
    for run, twin_value in zip(twin.data["runs"], [85.5, 87.5, 85.0, 86.0, 87.0]):
        run["twin_test_accuracy_final"] = twin_value
    pair = Comparison("t", "t", "equivalence", (Term("fa", "test_accuracy_final", 1.0),
                                                 Term("fa", "twin_test_accuracy_final", -1.0)), margin=1.0)
    assert evaluate(pair, twin, 0.05, SEEDS).values == pytest.approx((0.5, -0.5, 0.0, 0.0, 1.0))


def test_missing_runs_give_no_verdict_and_the_claim_follows_its_comparisons():
    table = _table({"a": [1, 2, 3, 4, 5], "b": [1, 2, 3, 4]})  # b has no seed 104
    assert evaluate(_pair("greater"), table, 0.05, SEEDS).verdict == "incomplete"
    assert evaluate(_pair("greater"), None, 0.05, SEEDS).verdict == "not run"
    assert claim_verdict([evaluate(_pair("greater"), None, 0.05, SEEDS)]) == "not run"
    met, off = _with_differences([0.5, 0.4, 0.6, 0.5, 0.45]), _with_differences([-0.5, -0.4, -0.6, -0.5, -0.45])
    assert claim_verdict([evaluate(_pair("greater"), met, 0.05, SEEDS)] * 2) == "met"
    assert claim_verdict([evaluate(_pair("greater"), met, 0.05, SEEDS),
                          evaluate(_pair("greater"), off, 0.05, SEEDS)]) == "not met"


PROTOCOL = """claim = "a beats b"
source = "a test"
recipe = "as shipped"
metric = "test_accuracy_final"
alpha = 0.05

[[runs]]
table = "claim_t"
simulation = "default"
arms = ["bp", "fa"]
seeds = [0, 1]
settings = []
device = "CPU"
command = "neurocircuit run"

[[comparisons]]
name = "bp beats fa"
arm = "bp"
reference = "fa"
test = "greater"
"""


@pytest.mark.parametrize("edit, message", [
    (("alpha = 0.05", "alpha = 0.05\ncolour = 1"), "unknown key 'colour'"),
    (('test = "greater"', 'test = "bigger"'), "'test' must be one of equivalence, greater, at_most, report"),
    (('test = "greater"', 'test = "equivalence"'), "'margin' is for (and required by) test = \"equivalence\""),
    (('reference = "fa"', 'reference = "bp"'), "arm and reference are the same arm and metric"),
    (('test = "greater"', 'test = "greater"\n[[runs]]\ntable = "u"\nsimulation = "default"\narms = ["bp"]\n'
                          'seeds = [0]\nsettings = []\ndevice = "GPU"\ncommand = "x"'), "share one device"),
    (("seeds = [0, 1]", "seeds = [0, true]"), "'seeds' must be a list of int"),
])
def test_a_malformed_protocol_is_a_one_line_error_naming_the_file(tmp_path, edit, message):
    folder = tmp_path / "protocol"
    folder.mkdir()
    (folder / "bad.toml").write_text(PROTOCOL.replace(*edit))
    with pytest.raises(BookError) as info:
        load_claims(tmp_path)
    assert "bad.toml" in str(info.value) and message in str(info.value) and "\n" not in str(info.value)


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def _registered_book(tmp_path):
    """A git repository with a code commit, then a protocol (and the simulation it runs), and a stored summary of
    its run: (book folder, run folder, commit before the protocol, the protocol's commit)."""
    import shutil

    folder = tmp_path / BOOK_FOLDER
    (folder / "protocol").mkdir(parents=True)
    _git(tmp_path, "init", "-q")
    (tmp_path / "code.txt").write_text("before")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "code")
    before = _git(tmp_path, "rev-parse", "HEAD")
    (folder / "protocol" / "c.toml").write_text(PROTOCOL)
    (tmp_path / "simulations").mkdir()
    shutil.copy(REPO / "simulations" / "default.toml", tmp_path / "simulations" / "default.toml")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "protocol")
    after = _git(tmp_path, "rev-parse", "HEAD")
    from neurocircuit.book import simulation_hash
    from neurocircuit.simulation import load_simulation

    runs = [{"arm": arm, "seed": seed, "test_accuracy_final": value}
            for arm, seed, value in (("bp", 0, 95.0), ("bp", 1, 96.0), ("fa", 0, 90.0), ("fa", 1, 90.5))]
    summary = {"table": "claim_t", "title": "t", "kind": "measured", "metrics": ["test_accuracy_final"],
               "units": {"test_accuracy_final": "%"}, "validation": False, "runs": runs,
               "provenance": {"simulation": "default",
                              "simulation_hash": simulation_hash(load_simulation("default").to_dict()),
                              "settings": [], "neurocircuit_version": "0.1.0", "git_commit": after, "device": "CPU",
                              "date": "2026-01-01 00:00 UTC", "command": "neurocircuit run"}}
    write_summary(summary, folder)
    return folder, tmp_path / "runs" / "claim_t", before, after


def _verdicts(folder):
    tables = {t.id: t for t in load_book(folder)}
    return [(o.verdict, o.why) for c in load_claims(folder) for o in outcomes(c, tables)]


def test_a_run_started_after_its_protocol_counts_and_one_started_before_is_void(tmp_path):
    from neurocircuit.book.preregistered import attach_registration, record_start

    folder, run, before, after = _registered_book(tmp_path)
    assert _verdicts(folder) == [("unverified", "stored without 'neurocircuit claims --summarize'")]
    assert record_start(run, tmp_path) == after
    attach_registration("claim_t", run, tmp_path)
    entry = load_book(folder)[0].data["preregistration"]["c"]
    assert (entry["protocol_commit"], entry["follows_protocol"], entry["simulation_as_registered"]) == (
        after, True, True)
    assert _verdicts(folder) == [("met", "")]  # 5.0, 5.5 pp: the interval lies above 0
    assert "**met**" in render_book(folder)
    run.parent.joinpath("claim_t.commit").write_text(before + "\n" + after + "\n")  # one segment before it
    attach_registration("claim_t", run, tmp_path)
    assert _verdicts(folder)[0][0] == "void" and "not after the protocol's commit" in _verdicts(folder)[0][1]


def test_a_protocol_edited_after_its_check_or_a_table_of_another_run_is_void(tmp_path):
    from neurocircuit.book.preregistered import attach_registration, record_start

    folder, run, _, _ = _registered_book(tmp_path)
    record_start(run, tmp_path)
    attach_registration("claim_t", run, tmp_path)
    protocol = folder / "protocol" / "c.toml"
    protocol.write_text(PROTOCOL.replace('source = "a test"', 'source = "a test, edited"'))
    assert _verdicts(folder) == [("void", "the protocol file changed after this result was checked against it")]
    with pytest.raises(BookError, match="uncommitted changes: a protocol is checked as committed"):
        attach_registration("claim_t", run, tmp_path)
    protocol.write_text(PROTOCOL.replace("settings = []", 'settings = ["train.epochs=3"]'))
    _git(tmp_path, "commit", "-qam", "the run gets a setting")
    run.parent.joinpath("claim_t.commit").unlink()  # a run started after the change: its commits follow ...
    record_start(run, tmp_path)
    attach_registration("claim_t", run, tmp_path)
    verdict, why = _verdicts(folder)[0]  # ... but the table ran other settings than the protocol's
    assert verdict == "void" and "the protocol default with ['train.epochs=3']" in why


def test_a_shallow_clone_cannot_register(tmp_path):
    from neurocircuit.book.preregistered import attach_registration, record_start

    _, run, _, _ = _registered_book(tmp_path / "origin")
    record_start(run, tmp_path / "origin")
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{tmp_path / 'origin'}", str(tmp_path / "copy")],
                   check=True, capture_output=True)
    import shutil

    shutil.copytree(tmp_path / "origin" / BOOK_FOLDER / "measured", tmp_path / "copy" / BOOK_FOLDER / "measured")
    copy_run = tmp_path / "copy" / "runs" / "claim_t"
    copy_run.parent.mkdir(parents=True)
    (copy_run.parent / "claim_t.commit").write_text((run.parent / "claim_t.commit").read_text())
    with pytest.raises(BookError, match="shallow clone"):
        attach_registration("claim_t", copy_run, tmp_path / "copy")


def test_the_shipped_protocols_load_and_read_metrics_their_tables_have():
    claims = load_claims(REPO / BOOK_FOLDER)
    assert {c.id for c in claims} >= {"lenet5", "mlp", "wm_lr", "cheon", "brian2_twin", "brian2_wm", "brian2_prenatal",
                                      "resnet18"}
    tables = {t.id: t for t in load_book(REPO / BOOK_FOLDER)}
    for claim in claims:
        for comparison in claim.comparisons:
            table = tables.get(comparison.table)
            if table is not None:  # run: every metric the comparison reads is stored
                assert set(comparison.metrics) <= set(table.data["metrics"]), (claim.id, comparison.name)


def test_summarize_stores_accuracy_at_the_steps_asked_and_refuses_a_step_without_a_record(tmp_path, capsys):
    from test_book import _results  # the book tests' small results file

    from neurocircuit.results import write_netcdf

    path = tmp_path / "results.nc"
    write_netcdf(_results().assign_attrs(command="neurocircuit run default"), path)
    assert main(["summarize", str(path), "--table", "s", "--title", "s", "--root", str(tmp_path), "--steps", "20"]) == 0
    stored = load_book(tmp_path / BOOK_FOLDER)[0].data
    bp0 = next(r for r in stored["runs"] if r["arm"] == "bp" and r["seed"] == 0)
    assert bp0["test_accuracy_step20"] == pytest.approx(70.0) and bp0["val_accuracy_step20"] == pytest.approx(95.0)
    assert main(["summarize", str(path), "--table", "s", "--title", "s", "--root", str(tmp_path),
                 "--steps", "25"]) == 2
    assert "has no record at step 25 (steps: 10, 20, 30, 40)" in capsys.readouterr().err


def test_each_protocol_command_runs_what_its_fields_say():
    """The command a protocol writes (and `neurocircuit claims` runs) resolves to its simulation, arms, seeds and
    settings — a protocol cannot say one thing and run another."""
    from neurocircuit.book import preregistered as script
    from neurocircuit.simulation import load_simulation

    for claim in load_claims(REPO / BOOK_FOLDER):
        for run in claim.runs:
            simulation, arms, settings = script.protocol_arguments(run)
            assert (simulation, settings) == (run["simulation"], run["settings"]), (claim.id, run["table"])
            sim = load_simulation(simulation, settings)
            assert list(sim.seeds) == run["seeds"], (claim.id, run["table"])
            assert (arms or list(sim.labels)) == run["arms"], (claim.id, run["table"])
            assert set(run["arms"]) <= set(sim.labels), (claim.id, run["table"])
            assert script.run_arguments(run, Path("X"))[-2:] == ["--out", "X"]
    cheon = next(c for c in load_claims(REPO / BOOK_FOLDER) if c.id == "cheon")
    assert script.steps_read(cheon, "prereg_cheon") == [117]


def test_claims_command_runs_each_protocol_run_resuming_and_stores_only_complete_ones(tmp_path, capsys):
    out = tmp_path / "runs"
    (out / "prereg_mlp").mkdir(parents=True)
    (out / "prereg_mlp" / "owner.json").write_text("{}")  # begun: resumed
    assert main(["claims", "mlp", "cheon", "--out", str(out), "--dry-run", "--root", str(REPO)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(f"--out {out / 'prereg_mlp'} --resume") and "rules_fashion_mnist --arm bp" in lines[0]
    assert lines[1].endswith(f"--out {out / 'prereg_cheon'}") and "--set train.epochs=1" in lines[1]
    assert main(["claims", "mlp", "--out", str(out), "--summarize", "--dry-run", "--root", str(REPO)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "mlp/prereg_mlp: not complete, not stored"
    assert main(["claims", "nope", "--out", str(out), "--root", str(REPO)]) == 2
    err = capsys.readouterr().err
    assert main(["claims", "--out", str(out), "--root", str(tmp_path)]) == 2
    assert "no protocols in" in capsys.readouterr().err
    assert "no protocol 'nope' (protocols: brian2_prenatal, brian2_twin, brian2_wm, cheon, lenet5, mlp," in err


def test_claims_table_narrows_to_one_run_of_a_claim(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["claims", "resnet18", "--table", "prereg_resnet18_kp", "--out", str(out), "--dry-run",
                 "--root", str(REPO)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "resnet18_kp_decay_warmup" in lines[0]
    assert lines[0].endswith(f"--out {out / 'prereg_resnet18_kp'}")
    assert main(["claims", "resnet18", "--table", "prereg_mlp", "--out", str(out), "--root", str(REPO)]) == 2
    assert "no run 'prereg_mlp' in the chosen protocols (runs: prereg_resnet18_wm, prereg_resnet18_kp)" in \
        capsys.readouterr().err


def test_every_start_is_recorded_and_a_dirty_checkout_is_refused_each_time(tmp_path):
    from neurocircuit.book.preregistered import record_start, start_commits

    _git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("1")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "one")
    first = _git(tmp_path, "rev-parse", "HEAD")
    folder = tmp_path / "runs" / "t"
    assert record_start(folder, tmp_path) == first
    (tmp_path / "a.txt").write_text("2")
    with pytest.raises(BookError, match="uncommitted changes"):
        record_start(folder, tmp_path)  # a resume from a dirty checkout too
    _git(tmp_path, "commit", "-qam", "two")
    second = _git(tmp_path, "rev-parse", "HEAD")
    record_start(folder, tmp_path)
    assert start_commits(folder) == [first, second]
