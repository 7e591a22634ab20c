"""The results book: summaries of results files, the generated docs/results.md, the stale check and the
regeneration check (no table can be edited by hand)."""

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import neurocircuit
from neurocircuit.book import (
    BOOK_FILE,
    BOOK_FOLDER,
    BookError,
    paired_difference,
    phase_runs,
    render_book,
    render_outputs,
    simulation_hash,
    summarize,
    write_summary,
)
from neurocircuit.cli import main
from neurocircuit.results import attach_config, write_netcdf
from neurocircuit.simulation import load_simulation

REPO = Path(__file__).resolve().parents[1]
NAN = float("nan")


def _results(val: bool = True) -> xr.Dataset:
    """Two arms × two seeds × four epochs. For bp seed 0 validation peaks at epoch 1 while the test accuracy peaks
    at epoch 3; fa's seed 1 has no record after epoch 2 (it ended early)."""
    test = np.array([[[.50, .70, .60, .90], [.40, .60, .80, .70]],
                     [[.30, .40, .50, .55], [.20, .35, .45, NAN]]])
    valacc = np.array([[[.50, .95, .60, .70], [.40, .60, .85, .85]],
                       [[.30, .40, .50, .45], [.20, .50, .45, NAN]]])
    angle = np.zeros((2, 2, 4, 2))
    angle[1, :, :, 0] = [[80, 85, 88, 89], [81, 84, 87, NAN]]
    angle[1, :, :, 1] = [[20, 25, 27, 28], [21, 24, 26, NAN]]
    ds = xr.Dataset(
        {"test_accuracy": (("arm", "seed", "step"), test, {"units": "1"}),
         "weight_angle": (("arm", "seed", "step", "layer"), angle, {"units": "degree"})},
        coords={"arm": ["bp", "fa"], "seed": [0, 1], "step": [10, 20, 30, 40], "layer": ["W1", "W2"],
                "epoch": ("step", [1.0, 2.0, 3.0, 4.0], {"units": "epoch"})})
    if val:
        ds["val_accuracy"] = (("arm", "seed", "step"), valacc, {"units": "1"})
    return attach_config(ds, {"name": "default", "model": "mlp_digits"}, simulation="default",
                         neurocircuit_version="0.1.0")


def _run(summary, arm, seed):
    return next(r for r in summary["runs"] if r["arm"] == arm and r["seed"] == seed)


def test_summarize_takes_final_values_and_selects_on_validation_not_test():
    s = summarize(_results(), table="t", title="T", command="neurocircuit run x", device="here")
    assert s["metrics"] == ["test_accuracy_final", "val_accuracy_final", "val_accuracy_best", "epoch_at_best_val",
                            "test_accuracy_at_best_val", "weight_angle_W1", "weight_angle_W2"]
    bp0 = _run(s, "bp", 0)
    assert bp0["test_accuracy_final"] == pytest.approx(90.0)
    assert bp0["val_accuracy_best"] == pytest.approx(95.0)
    assert bp0["epoch_at_best_val"] == 2.0                       # validation's best, not test's (epoch 4)
    assert bp0["test_accuracy_at_best_val"] == pytest.approx(70.0)
    bp1 = _run(s, "bp", 1)                                       # a tie on validation: the first epoch reaching it
    assert (bp1["epoch_at_best_val"], bp1["test_accuracy_at_best_val"]) == (3.0, pytest.approx(80.0))
    fa1 = _run(s, "fa", 1)                                       # ended early: its last record, not NaN
    assert fa1["test_accuracy_final"] == pytest.approx(45.0)
    assert (fa1["weight_angle_W1"], fa1["weight_angle_W2"]) == (87.0, 26.0)
    assert fa1["epoch_at_best_val"] == 2.0
    assert s["units"]["test_accuracy_final"] == "%" and s["units"]["weight_angle_W1"] == "degree"
    prov = s["provenance"]
    assert prov["simulation"] == "default" and prov["command"] == "neurocircuit run x" and prov["device"] == "here"
    assert prov["simulation_hash"] == simulation_hash({"model": "mlp_digits", "name": "default"})
    assert s["validation"] is True


def test_summarize_gives_none_where_the_first_run_has_no_value_of_a_metric():
    # bp's runs have no angle (as bp has no prenatal angle): the first value np.vectorize sees is NaN
    results = _results()
    results["weight_angle"][0] = NAN
    s = summarize(results, table="t", title="T", command="neurocircuit run x", device="here")
    assert _run(s, "bp", 0)["weight_angle_W1"] is None and _run(s, "fa", 0)["weight_angle_W1"] == 89.0


def test_summarize_without_validation_and_brian2_snapshots():
    s = summarize(_results(val=False), table="t", title="T", command="c")
    assert s["metrics"] == ["test_accuracy_final", "weight_angle_W1", "weight_angle_W2"] and not s["validation"]
    # Brian2: angles over weight_time, the last snapshot each arm has
    ds = xr.Dataset({"weight_angle": (("arm", "seed", "weight_time", "layer"),
                                      np.array([[[[70, 60], [71, 50]]], [[[72, 40], [NAN, NAN]]]], float))},
                    coords={"arm": ["a", "b"], "seed": [3], "weight_time": [0.5, 1.0], "layer": ["W1", "W2"]})
    s = summarize(attach_config(ds, {"name": "x"}, simulation="x"), table="b", title="B", command="c")
    assert [(r["arm"], r["weight_angle_W1"], r["weight_angle_W2"]) for r in s["runs"]] == [("a", 71, 50),
                                                                                          ("b", 72, 40)]


def _phased(with_rates: bool = False) -> xr.Dataset:
    """Brian2-like results: arm ``wm`` mirrors until t = 2 then learns with interleaved mirror windows; arm ``fa``
    only learns and ends early (t = 3 is a time only wm has). A snapshot at a window's start holds the state before
    it, so wm's mirror phase ended in the snapshot at t = 2 (the first labelled ``engaged``)."""
    times = [0.0, 1.0, 2.0, 2.5, 3.0, 4.0]
    phases = [["engaged", "", "engaged", "engaged_test", "", ""],
              ["mirror", "mirror", "engaged", "engaged_mirror", "engaged", "end"]]
    angle = np.full((2, 2, 6, 2), NAN)
    angle[0, :, :4] = [[90, 60], [89, 58], [88, 57], [88, 56]]
    angle[1, 0] = [[90, 90], [40, 45], [20, 25], [18, 22], [19, 23], [15, 16]]
    angle[1, 1] = angle[1, 0] + 2
    ds = xr.Dataset({"weight_angle": (("arm", "seed", "weight_time", "layer"), angle, {"units": "degree"}),
                     "twin_weight_angle": (("arm", "seed", "weight_time", "layer"), angle - 1, {"units": "degree"})},
                    coords={"arm": ["fa", "wm"], "seed": [0, 1], "weight_time": times, "layer": ["W1", "W2"],
                            "weight_phase": (("arm", "seed", "weight_time"),
                                             np.array([phases, phases]).transpose(1, 0, 2))})
    if with_rates:  # spiking: each population's rate (Hz) over time; fa's run ends early (NaN after)
        rate = np.array([[[10.0, 20.0, NAN], [30.0, 30.0, NAN]], [[5.0, 7.0, 9.0], [1.0, 2.0, 3.0]]])
        ds["hidden_rate"] = (("arm", "seed", "time"), rate, {"units": "Hz"})
        ds["learning_rate"] = (("arm", "seed", "time"), rate, {"units": "1"})  # a rate, not a firing rate
        ds["output_rate"] = (("arm", "seed", "time"), 2 * rate, {"units": "Hz"})
    return attach_config(ds, {"name": "x"}, simulation="x")


def test_summarize_keeps_the_angle_at_the_end_of_each_phase_and_none_where_an_arm_has_no_such_phase():
    s = summarize(_phased(), table="p", title="P", command="c")
    assert s["metrics"] == ["twin_weight_angle_after_mirror_W1", "twin_weight_angle_after_mirror_W2",
                            "twin_weight_angle_W1", "twin_weight_angle_W2", "weight_angle_after_mirror_W1",
                            "weight_angle_after_mirror_W2", "weight_angle_W1", "weight_angle_W2"]
    wm0, wm1, fa0 = _run(s, "wm", 0), _run(s, "wm", 1), _run(s, "fa", 0)
    # the snapshot at t = 2, not the last one labelled mirror (t = 1) nor the final one
    assert (wm0["weight_angle_after_mirror_W1"], wm0["weight_angle_after_mirror_W2"]) == (20.0, 25.0)
    assert (wm1["weight_angle_after_mirror_W1"], wm0["twin_weight_angle_after_mirror_W2"]) == (22.0, 24.0)
    assert (wm0["weight_angle_W1"], fa0["weight_angle_W2"]) == (15.0, 56.0)
    assert fa0["weight_angle_after_mirror_W1"] is None and fa0["twin_weight_angle_after_mirror_W2"] is None
    assert s["units"]["weight_angle_after_mirror_W1"] == "degree"
    # the interleaved windows, evaluation windows, "" and "end" split no phase: one mirror end only
    assert [p for p, _ in phase_runs(_phased()["weight_phase"].sel(arm="wm", seed=0).values)] == ["mirror", "engaged"]


def test_summarize_takes_each_populations_mean_rate_in_hz():
    s = summarize(_phased(with_rates=True), table="p", title="P", command="c")
    assert s["metrics"][-2:] == ["hidden_rate_mean", "output_rate_mean"]        # learning_rate: not in Hz
    assert s["units"]["hidden_rate_mean"] == "Hz"
    assert _run(s, "fa", 0)["hidden_rate_mean"] == pytest.approx(15.0)        # NaN after the run ended: skipped
    assert _run(s, "wm", 1)["output_rate_mean"] == pytest.approx(4.0)


def test_phase_metrics_render_with_a_dash_for_an_arm_without_the_phase_and_compactly_in_the_readme(tmp_path):
    s = summarize(_phased(with_rates=True), table="p", title="P", command="c")
    hashed = _summary()  # a simulation that resolves, so the table is current
    s["provenance"] = hashed["provenance"]
    folder = _book(tmp_path, [s])
    row = next(line for line in render_book(folder).splitlines() if line.startswith("| `fa` |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    header = next(line for line in render_book(folder).splitlines() if line.startswith("| arm |"))
    names = [c.strip() for c in header.strip("|").split("|")]
    assert cells[names.index("weight_angle_after_mirror_W1 (degree)")] == "–"
    assert cells[names.index("weight_angle_W2 (degree)")] == "56.00 ± 0.00"
    (tmp_path / "README.md").write_text("# x\n<!-- book:p compact -->\n<!-- /book:p -->\n")
    readme = render_outputs(tmp_path)[tmp_path / "README.md"]
    assert "<!-- book:p compact -->\n**P** · measured, current · " in readme and "circuit / twin" in readme
    assert "| arm | n | angle after mirror W1 (°) circuit / twin | angle after mirror W2 (°) circuit / twin | " \
           "final angle W1 (°) circuit / twin | final angle W2 (°) circuit / twin | hidden rate mean (Hz) | " \
           "output rate mean (Hz) |" in readme
    assert "| `fa` | 2 | – / – | – / – | 88.00 ± 0.00 / 87.00 ± 0.00 |" in readme
    assert "| `wm` | 2 | 21.00 ± 1.41 / 20.00 ± 1.41 |" in readme
    assert "](docs/results.md#p)" in readme and "Per arm: mean ± sd" not in readme  # the full body: in the book


def test_simulation_hash_of_results_config_equals_hash_of_the_loaded_simulation():
    sim = load_simulation("default", ["train.epochs=3"])
    ds = attach_config(_results(), sim.to_dict(), simulation="default")
    assert summarize(ds, table="t", title="T", command="c")["provenance"]["simulation_hash"] == \
        simulation_hash(sim.to_dict()) != simulation_hash(load_simulation("default").to_dict())


def test_paired_difference_ci_is_the_hand_computed_t_interval():
    mean, low, high, n = paired_difference([91.0, 92.0, 94.0], [90.0, 90.0, 90.0])
    diffs = [1.0, 2.0, 4.0]
    sd = math.sqrt(sum((d - 7 / 3) ** 2 for d in diffs) / 2)
    half = 4.302652729749 * sd / math.sqrt(3)                  # t(0.975, 2 degrees of freedom), from a table
    assert n == 3 and mean == pytest.approx(7 / 3)
    assert (low, high) == (pytest.approx(7 / 3 - half, abs=1e-9), pytest.approx(7 / 3 + half, abs=1e-9))
    assert math.isnan(paired_difference([1.0], [0.0])[1])


def _book(tmp_path, summaries=(), transcribed=()):
    folder = tmp_path / BOOK_FOLDER
    for s in summaries:
        write_summary(s, folder)
    for name, text in transcribed:
        (folder / "transcribed").mkdir(parents=True, exist_ok=True)
        (folder / "transcribed" / f"{name}.toml").write_text(text)
    return folder


def _summary(table="default", hash_=None, settings=(), runs=None):
    sim = load_simulation("default", list(settings))
    runs = runs or [{"arm": "bp", "seed": 0, "test_accuracy_final": 90.0},
                    {"arm": "bp", "seed": 1, "test_accuracy_final": 92.0},
                    {"arm": "fa", "seed": 0, "test_accuracy_final": 89.0},
                    {"arm": "fa", "seed": 1, "test_accuracy_final": 90.0}]
    return {"table": table, "title": f"Table {table}", "kind": "measured", "metrics": ["test_accuracy_final"],
            "units": {"test_accuracy_final": "%"}, "validation": False, "runs": runs,
            "provenance": {"simulation": "default", "simulation_hash": hash_ or simulation_hash(sim.to_dict()),
                           "settings": list(settings), "neurocircuit_version": "0.1.0", "git_commit": "abc",
                           "device": "CPU", "date": "2025-01-01 00:00 UTC", "command": "neurocircuit run"}}


TRANSCRIBED = """title = "Noise pretraining on a GPU"
source = "README.md at commit 2abaf5d, section 'Noise pretraining'"
command = "neurocircuit run noise_pretraining --out x"
device = "NVIDIA H100"
note = "Test accuracy after one epoch."
columns = ["arm", "test acc (%)"]
rows = [["bp", "78.96 | 0.1"], ["fa", "75.00 ± 0.20"]]
"""


def test_measured_table_shows_mean_sd_n_and_paired_ci_and_is_current(tmp_path):
    text = render_book(_book(tmp_path, [_summary()]))
    assert "current: the stored simulation hash equals" in text and "stale" not in text.split("## Measured")[1]
    assert "| `bp` | 2 | 91.00 ± 1.41 |" in text and "| `fa` | 2 | 89.50 ± 0.71 |" in text
    assert "| `fa` | -1.50 (n=2, no CI) |" in text  # two pairs: no interval claimed
    assert "No validation split" in text
    three = _summary(runs=[{"arm": a, "seed": k, "test_accuracy_final": v} for a, vs in
                           (("bp", (90.0, 92.0, 91.0)), ("fa", (89.0, 90.0, 91.5))) for k, v in enumerate(vs)])
    mean, low, high, _ = paired_difference([89.0, 90.0, 91.5], [90.0, 92.0, 91.0])
    assert f"| `fa` | {mean:.2f} [{low:.2f}, {high:.2f}] (n=3) |" in render_book(_book(tmp_path / "3", [three]))
    same = _summary(runs=[{"arm": a, "seed": k, "test_accuracy_final": v} for a, vs in
                          (("bp", (90.0, 92.0, 91.0)), ("fa", (89.0, 91.0, 90.0))) for k, v in enumerate(vs)])
    assert "| `fa` | -1.00 (n=3, no CI) |" in render_book(_book(tmp_path / "same", [same]))


def test_measured_table_with_another_hash_is_stale_and_settings_are_honoured(tmp_path):
    text = render_book(_book(tmp_path, [_summary(hash_="0" * 64)]))
    assert "**measured** · **stale**: simulation `default` resolves today to hash" in text
    # the hash of the simulation resolved with its recorded settings is current; without them it is not
    epochs3 = simulation_hash(load_simulation("default", ["train.epochs=3"]).to_dict())
    current = render_book(_book(tmp_path / "a", [_summary(hash_=epochs3, settings=["train.epochs=3"])]))
    assert "**stale**" not in current.split("## Measured")[1]
    stale = render_book(_book(tmp_path / "b", [_summary(hash_=epochs3)]))
    assert "**stale**" in stale.split("## Measured")[1]


def test_a_superseded_table_is_stale_with_its_successor_and_reason_and_a_malformed_mark_is_refused(tmp_path):
    old = {**_summary(table="old"), "superseded_by": {"table": "default", "because": "the rule changed."}}
    text = render_book(_book(tmp_path, [_summary(), old]))
    measured = text.split("## Measured")[1]
    assert "**measured** · **stale**: superseded by [default](#default): the rule changed." in measured
    assert measured.count("**stale**") == 1  # its successor is current
    bad = {**_summary(table="bad"), "superseded_by": "default"}
    with pytest.raises(BookError, match="'superseded_by' must be"):
        render_book(_book(tmp_path / "bad", [bad]))


def test_transcribed_table_renders_marked_transcribed_and_stale_with_its_cells_as_given(tmp_path):
    text = render_book(_book(tmp_path, [_summary()], [("noise", TRANSCRIBED)]))
    section = text.split("## Transcribed")[1]
    assert "**transcribed** · **stale**" in section
    assert "Source: README.md at commit 2abaf5d, section 'Noise pretraining'" in section
    assert "device: NVIDIA H100" in section and "Test accuracy after one epoch." in section
    assert "| bp | 78.96 \\| 0.1 |" in section and "| fa | 75.00 ± 0.20 |" in section
    assert text.index("## Measured") < text.index("## Transcribed")
    assert "[Noise pretraining on a GPU](#noise)" in text.split("## Measured")[0]   # table of contents
    assert "today's library" not in section
    moved = TRANSCRIBED.replace('command = "neurocircuit run noise_pretraining --out x"',
                                'command = "python benchmarks/old.py"\nlibrary_command = "neurocircuit table x"')
    section = render_book(_book(tmp_path / "moved", [_summary()], [("noise", moved)])).split("## Transcribed")[1]
    assert ("Command (as the source gives it): `python benchmarks/old.py`\n\n"
            "The same with today's library: `neurocircuit table x`") in section


def test_rendering_is_deterministic_and_sorted(tmp_path, monkeypatch):
    folder = _book(tmp_path, [_summary("zeta"), _summary("alpha")], [("zz", TRANSCRIBED), ("aa", TRANSCRIBED)])
    first = render_book(folder)
    glob = Path.glob  # whatever order the file system lists a folder in
    monkeypatch.setattr(Path, "glob", lambda self, pattern: iter(sorted(glob(self, pattern), reverse=True)))
    assert first == render_book(folder)
    assert first.index('<a id="alpha">') < first.index('<a id="zeta">') < first.index('<a id="aa">') \
        < first.index('<a id="zz">')


def test_the_committed_book_and_readme_are_what_the_summaries_generate():
    outputs = render_outputs(REPO)
    assert REPO / BOOK_FILE in outputs
    for path, text in outputs.items():
        assert path.read_text(encoding="utf-8") == text, f"{path} differs: run 'neurocircuit report'"


def _repo_copy(tmp_path):
    shutil.copytree(REPO / "results", tmp_path / "results")
    (tmp_path / "docs").mkdir()
    shutil.copy(REPO / BOOK_FILE, tmp_path / BOOK_FILE)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    if "<!-- book:default -->" not in readme:  # give the copy a block so that it is checked too
        readme += "\n<!-- book:default -->\n<!-- /book:default -->\n"
    (tmp_path / "README.md").write_text(readme, encoding="utf-8")
    assert main(["report", "--root", str(tmp_path)]) == 0
    return tmp_path


def test_report_check_fails_on_a_hand_edited_copy(tmp_path, capsys):
    root = _repo_copy(tmp_path)
    assert main(["report", "--check", "--root", str(root)]) == 0
    for path in (root / BOOK_FILE, root / "README.md"):
        original = path.read_text(encoding="utf-8")
        edited = original.replace("| `fa` | 2 |", "| `fa` | 3 |", 1)
        assert edited != original
        path.write_text(edited, encoding="utf-8")
        capsys.readouterr()
        assert main(["report", "--check", "--root", str(root)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"neurocircuit: {path}:") and "differs" in err[0]
        assert main(["report", "--root", str(root)]) == 0                     # regenerating repairs it
        assert path.read_text(encoding="utf-8") == original
    assert main(["report", "--check", "--root", str(root)]) == 0


@pytest.mark.parametrize(("where", "text", "message"), [
    ("measured/bad.json", "{not json", "not valid JSON"),
    ("measured/bad.json", '{"table": "bad", "title": "x", "kind": "measured", "provenance": {}}', "missing key"),
    ("transcribed/bad.toml", "title = [", "malformed TOML"),
    ("transcribed/bad.toml", 'title = "x"\nsource = "y"\n', "missing key 'command'"),
    ("transcribed/bad.toml", TRANSCRIBED + "colour = 1\n", "unknown key 'colour'"),
    ("transcribed/bad.toml", TRANSCRIBED.replace('"fa", ', ""), "rows[1] has 1 cells for 2 columns"),
])
def test_bad_summary_files_are_one_line_errors_naming_the_file(tmp_path, capsys, where, text, message):
    folder = _book(tmp_path, [_summary()])
    (folder / where).parent.mkdir(parents=True, exist_ok=True)
    (folder / where).write_text(text)
    with pytest.raises(BookError, match="bad"):
        render_book(folder)
    assert main(["report", "--check", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"neurocircuit: error: {folder / where}") and message in err[0]


def test_summarize_command_writes_the_summary_and_refuses_bad_input(tmp_path, capsys):
    sim = load_simulation("default")
    write_netcdf(attach_config(_results(), sim.to_dict(), simulation="default"), tmp_path / "results.nc")
    args = ["summarize", str(tmp_path / "results.nc"), "--table", "mine", "--title", "Mine", "--command",
            "neurocircuit run --out x", "--root", str(tmp_path)]
    assert main(args) == 0
    stored = json.loads((tmp_path / BOOK_FOLDER / "measured" / "mine.json").read_text())
    assert stored["provenance"]["command"] == "neurocircuit run --out x" and len(stored["runs"]) == 4
    assert "stale" not in capsys.readouterr().out
    assert main([*args, "--set", "train.epochs=3"]) == 0                   # not what the results ran: flagged
    assert "will mark this table stale" in capsys.readouterr().out
    if (REPO / ".git").exists() and Path(neurocircuit.__file__).resolve().parents[1] == REPO:  # a checkout's commit
        assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", stored["provenance"]["git_commit"])
    assert main([*args, "--commit", "0160549"]) == 0
    assert json.loads((tmp_path / BOOK_FOLDER / "measured" / "mine.json").read_text())["provenance"][
        "git_commit"] == "0160549"
    assert main([*args, "--commit", "main"]) == 2
    assert "commit 'main'" in capsys.readouterr().err
    assert main([*args[:3], "bad/id", *args[4:]]) == 2
    assert main(["summarize", str(tmp_path / "none.nc"), *args[2:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "table id 'bad/id'" in err[0] and "results file not found" in err[1]


def test_summarize_takes_the_command_and_settings_the_run_recorded(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "default", "--set", "train.epochs=1", "--set", "train.steps_per_epoch=2", "--arm", "bp",
                 "--out", str(out), "--quiet", "--no-figures"]) == 0
    assert main(["summarize", str(out / "results.nc"), "--table", "tiny", "--title", "T", "--root",
                 str(tmp_path)]) == 0
    provenance = json.loads((tmp_path / BOOK_FOLDER / "measured" / "tiny.json").read_text())["provenance"]
    assert provenance["command"] == (f"neurocircuit run default --set train.epochs=1 --set train.steps_per_epoch=2 "
                                     f"--arm bp --out {out} --quiet --no-figures")
    assert provenance["settings"] == ["train.epochs=1", "train.steps_per_epoch=2"]
