"""nc.run: the Python entry point (a name, a path, a table or a Simulation; model, arms, overrides; files only with
out=), a Circuit built in Python as the model on both backends, and model paths read from the simulation's folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import neurocircuit as nc
from neurocircuit.errors import ConfigError, NeurocircuitError
from neurocircuit.simulation import load_simulation, parse_simulation

# a few steps of a small circuit: every run here takes a second or two
QUICK = {"train.epochs": 1, "seeds": [0], "train.steps_per_epoch": 3, "train.val_batches": 1,
         "train.alignment_samples": 8}
TINY_TOML = """name = "tiny"
[[populations]]
name = "pixels"
shape = [64]
[[populations]]
name = "hidden"
shape = [12]
activation = "tanh"
[[populations]]
name = "output"
shape = [10]
[[projections]]
source = "pixels"
target = "hidden"
[[projections]]
source = "hidden"
target = "output"
"""


def tiny() -> nc.Circuit:
    return nc.Circuit("tiny", (nc.Population("pixels", (64,)), nc.Population("hidden", (12,), "tanh"),
                               nc.Population("output", (10,))),
                      (nc.Projection("W1", "pixels", "hidden"), nc.Projection("W2", "hidden", "output")))


def table(**extra: object) -> dict:
    raw = {"name": "quick", "model": tiny(), "arms": ["bp", "kp"], "seeds": [0], "data": {"name": "digits"},
           "optimizer": {"name": "sgd", "lr": 0.05, "weight_decay": 0.001},
           "train": {"epochs": 1, "steps_per_epoch": 3, "val_batches": 1, "alignment_samples": 8}}
    return raw | extra


def test_run_by_name_with_a_circuit_arms_and_overrides() -> None:
    ds = nc.run("default", model=tiny(), arms=["kp"], overrides=QUICK, progress=False)
    assert list(ds["arm"].values) == ["kp"] and list(ds["seed"].values) == [0]
    assert ds.attrs["model"] == "tiny" and ds.attrs["simulation"] == "default"
    config = json.loads(ds.attrs["config"])
    # the circuit is stored as its table (what circuit_from_dict reads back), the overrides applied
    assert nc.circuit_from_dict(config["model"]) == tiny().with_rules("bp")
    assert config["train"]["steps_per_epoch"] == 3 and config["seeds"] == [0]
    assert int(ds["step"][-1]) == 3
    # the network really is the tiny one: W1 of 12 x 64 (the shipped mlp_digits has 100 hidden units)
    assert ds["weight_angle"].sel(layer="W1").notnull().all()


def test_a_name_a_path_a_table_and_a_simulation_run_the_same(tmp_path: Path) -> None:
    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    (tmp_path / "quick.toml").write_text('name = "quick"\nmodel = "tiny.toml"\narms = ["bp", "kp"]\nseeds = [0]\n'
                                         '[optimizer]\nname = "sgd"\nlr = 0.05\nweight_decay = 0.001\n'
                                         '[train]\nepochs = 1\nsteps_per_epoch = 3\nval_batches = 1\n'
                                         'alignment_samples = 8\n')
    by_path = nc.run(tmp_path / "quick.toml", progress=False)
    by_table = nc.run(table(), progress=False)
    by_sim = nc.run(load_simulation(tmp_path / "quick.toml"), progress=False)
    # a Circuit in a table is kept there as its dict form: JSON in the results, as a file's circuit would be
    assert json.loads(by_table.attrs["config"])["model"] == tiny().to_dict()
    for ds in (by_table, by_sim):
        np.testing.assert_array_equal(ds["test_loss"].values, by_path["test_loss"].values)
        np.testing.assert_array_equal(ds["weight_angle"].values, by_path["weight_angle"].values)
    # a narrowed Simulation stays narrowed; overrides re-read its table
    narrowed = load_simulation(tmp_path / "quick.toml").select(["kp"])
    ds = nc.run(narrowed, overrides={"train.steps_per_epoch": 2}, progress=False)
    assert list(ds["arm"].values) == ["kp"] and int(ds["step"][-1]) == 2


def test_the_same_circuit_runs_on_brian2() -> None:
    raw = {"backend": "brian2", "model": tiny(), "arms": ["kp"],
           "data": {"name": "digits", "train_samples": 10, "test_samples": 5},
           "phases": [{"kind": "engaged", "epochs": 1}],
           "brian2": {"dt": "1 ms", "tau": "1 ms", "tau_feedback": "1 ms", "presentation": "4 ms", "settle": "2 ms",
                      "record_every": 5, "target": "numpy"}}
    ds = nc.run(raw, progress=False)
    assert ds.attrs["model"] == "tiny" and ds.attrs["backend"] == "brian2"
    assert ds.sizes["hidden_neuron"] <= 12 and ds.sizes["W1_post"] == 12
    assert json.loads(ds.attrs["config"])["model"]["name"] == "tiny"
    # per-population settings name the populations of the circuit given as a table
    sim = parse_simulation(raw | {"brian2": {**raw["brian2"], "tau_population": {"hidden": "2 ms"}}})
    assert sim.model_name == "tiny" and sim.raw["brian2"]["tau_population"] == {"hidden": "2 ms"}


def test_files_only_with_out_and_figures_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    nc.run(table(arms=["kp"]), progress=False)
    assert list(tmp_path.iterdir()) == []
    ds = nc.run(table(arms=["kp"]), out="a", progress=False)
    assert (tmp_path / "a" / "results.nc").is_file() and (tmp_path / "a" / "runs" / "kp-seed0").is_dir()
    assert not list((tmp_path / "a").glob("*.png"))
    with pytest.raises(ConfigError, match="resume=True"):
        nc.run(table(arms=["kp"]), out="a", progress=False)
    again = nc.run(table(arms=["kp"]), out="a", resume=True, progress=False)  # read back from the checkpoint
    np.testing.assert_array_equal(again["test_loss"].values, ds["test_loss"].values)
    nc.run(table(arms=["kp"]), out="b", figures=True, progress=False)
    assert (tmp_path / "b" / "learning_curves.png").is_file()


@pytest.mark.parametrize("call, message", [
    (lambda: nc.run("default", epochs=1), "unknown keyword 'epochs' (a setting: overrides={'train.epochs'"),
    (lambda: nc.run("default", overrides={"train.epoch": 1}), "train.epoch (did you mean 'epochs'?)"),
    (lambda: nc.run("default", overrides={"arms.9.rule": "fa"}), "overrides 'arms.9.rule'"),
    (lambda: nc.run("default", overrides=["train.epochs=1"]), "overrides must be a dict"),
    (lambda: nc.run("default", overrides={"train.epochs": None}), "got NoneType"),
    (lambda: nc.run("default", overrides={"train.epochs": "3"}), "train.epochs"),
    (lambda: nc.run(42), "simulation must be a name, a path, a table"),
    (lambda: nc.run("no_such_simulation"), "unknown simulation 'no_such_simulation'"),
    (lambda: nc.run("default", model=3), "model must be a Circuit"),
    (lambda: nc.run("default", model=tiny(), overrides={"model": "mlp_digits"}), "model is given twice"),
    (lambda: nc.run("default", arms=["nope"]), "no arm 'nope'"),
    (lambda: nc.run("default", arms=[1]), "arms are labels"),
    (lambda: nc.run("default", figures=True), "figures=True needs an output folder"),
    (lambda: nc.run("default", resume="yes"), "resume must be True or False"),
    (lambda: nc.run({"model": {"name": "x"}, "arms": ["bp"]}), "model: missing key 'populations'"),
])
def test_bad_input_is_a_one_line_error(call, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NeurocircuitError) as info:
        call()
    assert message in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []  # refused before anything is written


def test_model_paths_are_read_from_the_simulation_files_folder(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    sims, elsewhere = tmp_path / "sims", tmp_path / "a" / "b"
    sims.mkdir()
    elsewhere.mkdir(parents=True)
    (sims / "tiny.toml").write_text(TINY_TOML)
    (sims / "quick.toml").write_text('model = "tiny.toml"\narms = ["fa"]\n[train]\nepochs = 1\n')
    (tmp_path / "sweep.toml").write_text('kind = "sweep"\nsimulation = "sims/quick.toml"\n'
                                         '[axes]\n"train.batch_size" = [16, 32]\n')
    monkeypatch.chdir(elsewhere)
    sim = load_simulation(tmp_path / "sims" / "quick.toml")
    assert sim.model == str(sims / "tiny.toml") and nc.load_circuit(sim.model).name == "tiny"
    # a sweep names the simulation relative to its own file, whose model is read from the simulation's folder
    from neurocircuit.sweep import load_sweep, validate

    sweep = load_sweep(tmp_path / "sweep.toml")
    assert Path(sweep.simulation) == sims / "quick.toml"
    validate(sweep)
    # a path given on the command line (--set, overrides) is the caller's: from the current folder
    with pytest.raises(ConfigError, match="model file not found: tiny.toml"):
        load_simulation(sims / "quick.toml", ["model=\"tiny.toml\""])


def test_a_run_refused_once_running_leaves_no_folder(tmp_path):
    out = tmp_path / "new" / "run"
    with pytest.raises(nc.DataError):
        nc.run("default", overrides={"data": {"name": "fashion_mnist", "root": str(tmp_path / "nowhere")}}, out=out)
    assert not (tmp_path / "new").exists()
