"""Honour or refuse, measured: every key a simulation sets is read by the run, or refused before anything runs.

`neurocircuit._reads` logs which settings the running code reads; these tests set every key the schema has (per
backend and variant) and run a short simulation, and fail on any key that was set but never read. They also run
the first step of every shipped simulation the same way.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from neurocircuit._reads import recording_reads
from neurocircuit.backends import set_keys
from neurocircuit.errors import ConfigError
from neurocircuit.phases import EngagedPhase, Schedule
from neurocircuit.registry import simulation_file
from neurocircuit.runs import run_simulation
from neurocircuit.simulation import parse_simulation

MIRROR_ALL = {"estimate": "hebbian", "noise": "uniform", "noise_std": 1.0, "learning_rate": 0.5, "decay": 0.5,
              "normalize": False, "batch_size": 16, "active_units": 8}

TORCH_ALL = {
    "name": "every_key", "description": "every key of the schema, set", "model": "mlp_digits", "backend": "torch",
    "seeds": [0],
    "arms": [
        {"rule": "wm", "label": "wm-own-phases", "overrides": {"W2": "bp"}, "options": {"gain": 1.0},
         "phases": [
             {"kind": "prenatal", "name": "pre", "samples": 8, "dataset_size": 4, "batch_size": 4,
              "noise_std": 1.0, "inputs": "noise", "labels": "random", "learning_rate": 0.01, "record_every": 1,
              "keep": "norms"},
             {"kind": "mirror", "name": "mir", "steps": 2, "record_every": 1, **MIRROR_ALL},
             {"kind": "engaged", "name": "eng", "epochs": 1, "mirror_every": 1, "mirror_steps": 1,
              "mirror_follows_lr": True}]},
        "fa",
        {"rule": "wm", "label": "wm-exact", "mirror": {"estimate": "exact"},  # an arm's own [mirror]
         "phases": [{"kind": "engaged", "name": "eng-exact", "mirror_every": 2}]}],
    "data": {"name": "digits", "test_fraction": 0.25, "split_seed": 1, "train_samples": 200, "test_samples": 50,
             "validation": 0.1, "validation_seed": 1},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3},
    "train": {"epochs": 1, "batch_size": 16, "loss": "cross_entropy", "label_smoothing": 0.1, "record_every": 2,
              "alignment_samples": 8, "lr_schedule": "step", "warmup_epochs": 0.5, "lr_step_epochs": 1,
              "lr_gamma": 0.5, "early_weight_decay": 0.01, "early_weight_decay_epochs": 0.5, "init": "xavier",
              "ood_transforms": ["rotate:10"], "steps_per_epoch": 4, "val_batches": 1, "drop_last": True},
    "mirror": dict(MIRROR_ALL),
    "phases": [{"kind": "engaged", "name": "learning"}],
    "torch": {"device": "cpu", "amp": "off", "channels_last": False, "compile": False, "workers": 0,
              "checkpoint_every": 2, "log_every": 1},
}

BRIAN_TIMES = {"dt": "0.5 ms", "tau": "1 ms", "tau_feedback": "1 ms", "presentation": "2 ms", "settle": "1 ms",
               "noise_tau": "1 ms", "record_dt": "1 ms"}
#: what the spiking variant does not read, and refuses (measured by the rate keys' test below)
SPIKING_UNREAD = ("tau", "tau_feedback")
BRIAN_RATE_ALL = {
    "name": "every_key_brian2", "description": "d", "model": "mlp_digits", "backend": "brian2", "seeds": [0],
    "arms": [{"rule": "kp", "label": "kp", "overrides": {"W2": "fa"}, "options": {"gain": 1.0, "decay": 0.5},
              "phases": [{"kind": "prenatal", "name": "pre", "samples": 4, "dataset_size": 2, "noise_std": 1.0,
                          "inputs": "noise", "labels": "random"},
                         {"kind": "engaged", "name": "eng"}]},
             "wm"],
    "data": {"name": "digits", "test_fraction": 0.3, "split_seed": 1, "train_samples": 20, "test_samples": 6,
             "validation": 0.25, "validation_seed": 1},
    "train": {"epochs": 1},
    "phases": [{"kind": "mirror", "name": "mir", "steps": 3},
               {"kind": "engaged", "name": "learn", "epochs": 1, "mirror_every": 8, "mirror_steps": 1}],
    "brian2": {"variant": "rate", **BRIAN_TIMES, "tau_population": {"hidden": "2 ms"}, "noise_sigma": 0.5,
               "eta_w": "10 Hz", "lambda_w": "1 Hz", "eta_mirror": "20 Hz", "lambda_mirror": "20 Hz",
               "p_forward": 1.0, "p_feedback": 0.9, "dale": True, "loss": "cross_entropy", "record_neurons": 3,
               "record_every": 1, "record_weights": True, "plasticity_dt": "1 ms", "precision": "double",
               "target": "numpy", "device": "runtime", "twin": False},
}
BRIAN_SPIKING_ALL = {
    "name": "every_key_spiking", "description": "d", "model": "mlp_digits", "backend": "brian2", "seeds": [0],
    "arms": [{"rule": "kp", "label": "kp", "overrides": {"W2": "fa"}, "options": {"decay": 0.5},
              "phases": [{"kind": "prenatal", "name": "pre", "samples": 2, "dataset_size": 2, "noise_std": 1.0,
                          "inputs": "noise", "labels": "random"},
                         {"kind": "engaged", "name": "eng"}]},
             "wm"],
    "data": {"name": "digits", "test_fraction": 0.3, "split_seed": 1, "train_samples": 20, "test_samples": 6,
             "validation": 0.25, "validation_seed": 1},
    "train": {"epochs": 1},
    "phases": [{"kind": "mirror", "name": "mir", "steps": 2},
               {"kind": "engaged", "name": "learn", "epochs": 1, "mirror_every": 2, "mirror_steps": 1}],
    "brian2": {"variant": "spiking", **{k: v for k, v in BRIAN_TIMES.items() if k not in SPIKING_UNREAD},
               "noise_sigma": 0.5, "eta_w": "10 Hz", "lambda_w": "1 Hz", "eta_mirror": "20 Hz",
               "lambda_mirror": "20 Hz", "p_forward": 1.0, "p_feedback": 0.9, "delay": "1 ms", "loss": "mse",
               "record_neurons": 3, "record_every": 1, "record_weights": True, "plasticity_dt": "1 ms",
               "precision": "double", "target": "numpy", "device": "runtime", "twin": False,
               "spiking": {"neuron": "lif", "rate_max": "100 Hz", "tau_synapse": "2 ms", "tau_trace": "5 ms",
                           "tau_membrane": "5 ms", "threshold": "-50 mV", "reset": "-65 mV",
                           "refractory": "1 ms"}},
}


def unread_keys(raw: dict, out: Path | None = None) -> list[str]:
    """Run ``raw`` and return the keys it sets that the run never read (parsing and checks do not count)."""
    sim = parse_simulation(copy.deepcopy(raw), source="test")
    with recording_reads() as reads:
        run_simulation(sim, out=out, progress=False)
    return sorted(where for _, _, where in set_keys(raw) if where not in reads)


@pytest.mark.slow
def test_torch_reads_every_key_a_simulation_sets(tmp_path):
    assert unread_keys(TORCH_ALL, tmp_path / "out") == []


@pytest.mark.slow
def test_brian2_rate_circuit_reads_every_key_a_simulation_sets():
    assert unread_keys(BRIAN_RATE_ALL) == []


@pytest.mark.slow
def test_brian2_spiking_circuit_reads_every_key_a_simulation_sets():
    assert unread_keys(BRIAN_SPIKING_ALL) == []


# ------------------------------------------------------------------------------------------ phase dispatch
@dataclasses.dataclass(frozen=True)
class DreamPhase:
    """A phase kind no backend has a branch for."""

    name: str = "dream"
    kind: str = "dream"


def test_a_phase_kind_without_a_branch_is_an_error_in_the_torch_backend():
    sim = parse_simulation({"model": "mlp_digits", "arms": ["fa"], "train": {"epochs": 1, "steps_per_epoch": 1}})
    sim = dataclasses.replace(sim, schedule=Schedule((DreamPhase(), EngagedPhase())))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="the torch backend has no phase of kind 'dream'"):
        run_simulation(sim, progress=False)


def test_a_phase_kind_without_a_branch_is_an_error_in_the_brian2_backend():
    from neurocircuit.brian.protocol import build_protocol

    with pytest.raises(ConfigError, match="the brian2 backend has no phase of kind 'dream'"):
        build_protocol([DreamPhase()], n_in=4, n_out=2)  # type: ignore[list-item]


# ------------------------------------------------------------------------------------ shipped simulations
_FILES = sorted(p.stem for p in Path(simulation_file("default")).parent.glob("*.toml"))
#: Every shipped simulation, and every shipped sweep as its first point.
SHIPPED = [n for n in _FILES if not n.startswith("sweep_")] + [f"sweep:{n}" for n in _FILES if n.startswith("sweep_")]


def _shipped_table(name: str) -> dict:
    """The table a shipped simulation (or a sweep's first point, as the sweep builds it) is parsed from."""
    from neurocircuit._toml import read_toml
    from neurocircuit.simulation import apply_settings, set_key
    from neurocircuit.sweep import load_sweep

    if not name.startswith("sweep:"):
        return read_toml(simulation_file(name))
    sweep = load_sweep(name[len("sweep:"):])
    raw = apply_settings(read_toml(simulation_file(sweep.simulation)), sweep.fixed)
    for key, value in sweep.points()[0].items():
        set_key(raw, key, value)
    return raw


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _fake_data(root: Path) -> dict[str, str]:
    """Tiny stand-ins for the data sets shipped simulations name: Fashion-MNIST IDX files and an ImageFolder."""
    from PIL import Image

    rng = np.random.default_rng(0)
    fashion = root / "fashion-mnist"
    fashion.mkdir(parents=True)
    for split, n in (("train", 60), ("t10k", 20)):
        _write_idx(fashion / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(fashion / f"{split}-labels-idx1-ubyte", np.arange(n) % 10)
    folder = root / "imagefolder"
    for split, n in (("train", 4), ("val", 2)):
        for c in range(2):
            (folder / split / f"c{c}").mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
                    folder / split / f"c{c}" / f"{i}.png")
    return {"NEUROCIRCUIT_DATA": str(root), "imagefolder": str(folder)}


def _shrunk(raw: dict, data: dict[str, str]) -> dict:
    """``raw`` made cheap to run: short phases, one seed, small images and batches, numpy code generation.
    Only values change: every key the file sets is still set (and must still be read)."""
    raw = copy.deepcopy(raw)
    raw["seeds"] = raw.get("seeds", [0])[:1]
    for phases in [raw.get("phases", [])] + [a.get("phases", []) for a in raw["arms"] if isinstance(a, dict)]:
        for phase in phases:
            if phase["kind"] == "mirror":
                phase.update(steps=2, **({"record_every": 1} if "record_every" in phase else {}))
            elif phase["kind"] == "prenatal":
                phase["samples"] = 8
                if "batch_size" in phase:
                    phase["batch_size"] = 4
                if phase.get("dataset_size") not in (None, "fresh"):
                    phase["dataset_size"] = 4
            elif "epochs" in phase:
                phase["epochs"] = 1
    data_table = raw.get("data", {})
    if data_table.get("name") == "imagefolder":
        data_table["root"] = data["imagefolder"]
    if "image_size" in data_table:
        data_table["image_size"] = 32
        if "val_resize" in data_table:
            data_table["val_resize"] = 36
    if raw.get("backend") == "brian2":
        raw.setdefault("brian2", {}).update(target="numpy", record_every=1)
        if "device" in raw["brian2"]:  # read either way; the runtime device compiles nothing
            raw["brian2"]["device"] = "runtime"
        if data_table.get("name") == "digits":
            data_table.update(train_samples=12, test_samples=6)
        if {"presentation", "settle"} <= set(raw["brian2"]):  # short windows (the spiking files' are 100 ms)
            raw["brian2"].update(presentation="5 ms", settle="2.5 ms",
                                 **({"record_dt": "2.5 ms"} if "record_dt" in raw["brian2"] else {}))
    else:
        train = raw.setdefault("train", {})
        # four steps: the shipped interleaved mirrors (every 2 or 4 steps) run once
        train.update(batch_size=4, steps_per_epoch=4, val_batches=1, alignment_samples=4)
        if "epochs" in train:
            train["epochs"] = 1
        if "lr_milestones" in train:
            train["lr_milestones"] = [1]
        raw.setdefault("torch", {}).update(device="cpu", **({"workers": 0} if "workers" in raw["torch"] else {}))
        if "mirror" in raw and "batch_size" in raw["mirror"]:
            raw["mirror"]["batch_size"] = 8
    return raw


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_simulation_reads_every_key_it_sets(name, tmp_path, monkeypatch):
    """Each shipped simulation (and each shipped sweep's first point), made small but with every key its file sets,
    runs its first engaged steps (torch; Brian2: the whole shrunk schedule) and reads every key its file sets."""
    from neurocircuit.backends import get_backend
    from neurocircuit.torch.stopping import TrainingInterrupted

    data = _fake_data(tmp_path / "data")
    monkeypatch.setenv("NEUROCIRCUIT_DATA", data["NEUROCIRCUIT_DATA"])
    raw = _shipped_table(name)
    sim = parse_simulation(_shrunk(raw, data), source=name)
    with recording_reads() as reads:
        if sim.backend == "brian2":
            run_simulation(sim, progress=False)
        else:  # the first engaged step of every arm (run_simulation would stop at the first arm's stop)
            backend = get_backend(sim.backend)
            loaded = backend.load_data(sim)
            for arm in sim.arms:
                try:
                    backend.run_arm(sim, arm, sim.seeds[0], loaded, out=tmp_path / "runs" / arm.label,
                                    progress=False, stop_after_steps=4)
                except TrainingInterrupted:
                    pass
            reads.update({"name", "description"})  # results' labels: read by run_simulation (tests above)
    assert sorted(where for _, _, where in set_keys(raw) if where not in reads) == []


def test_defaults_no_arm_can_use_are_refused_by_name():
    own = {"kind": "engaged", "epochs": 1}
    with pytest.raises(ConfigError, match="phases is never used: every arm gives its own phases"):
        parse_simulation({"model": "mlp_digits", "arms": [{"rule": "fa", "phases": [own]}],
                          "phases": [{"kind": "engaged"}]})
    with pytest.raises(ConfigError, match="train.epochs is never used: every engaged phase gives its own epochs"):
        parse_simulation({"model": "mlp_digits", "arms": ["fa"], "phases": [own], "train": {"epochs": 3}})
    # used by one arm: accepted
    parse_simulation({"model": "mlp_digits", "arms": [{"rule": "fa", "phases": [own]}, "bp"],
                      "phases": [{"kind": "engaged"}], "train": {"epochs": 3}})
