"""The validation split (``[data] validation``): seeded, stratified, disjoint from training, validated, recorded by
both backends as ``val_*`` beside ``test_*``, and what every selection chooses on."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from torch.utils.data import TensorDataset

from neurocircuit.data import DatasetInfo, load_dataset, load_splits, split_validation, validation_indices
from neurocircuit.errors import ConfigError
from neurocircuit.selection import ON_TEST, NoValidationError, best_point, best_record

ROOT = Path(__file__).parents[1]


def test_split_is_seeded_stratified_and_disjoint() -> None:
    labels = np.repeat(np.arange(5), [40, 31, 17, 9, 3])
    rng = np.random.default_rng(7)
    labels = labels[rng.permutation(len(labels))]
    train, val = validation_indices(len(labels), 0.2, 0, labels)
    again = validation_indices(len(labels), 0.2, 0, labels)
    np.testing.assert_array_equal(train, again[0])  # the same indices on every call
    np.testing.assert_array_equal(val, again[1])
    assert not np.array_equal(val, validation_indices(len(labels), 0.2, 1, labels)[1])  # the seed draws them
    assert np.intersect1d(train, val).size == 0 and len(train) + len(val) == len(labels)
    for c, count in enumerate(np.bincount(labels)):
        assert abs(np.sum(labels[val] == c) - 0.2 * count) <= 1, c  # every class keeps its proportion
        assert np.sum(labels[train] == c) >= 1
    assert len(val) == round(0.2 * len(labels))
    # regression: a plain seeded split of the requested size; a tiny set still gets one validation sample
    train, val = validation_indices(200, 0.1, 0)
    assert len(val) == 20 and np.intersect1d(train, val).size == 0
    assert len(validation_indices(6, 0.1, 0, np.array([0, 0, 1, 1, 2, 2]))[1]) == 1


def test_digits_split_comes_out_of_the_training_set_whatever_the_run_seed() -> None:
    full, test, info = load_dataset("digits")
    torch.manual_seed(1)
    train, val, test2, _ = load_splits("digits", validation=0.1)
    torch.manual_seed(2)  # the run's seed must not move the split: every arm and seed sees one validation set
    train_b, val_b, _, _ = load_splits("digits", validation=0.1)
    assert torch.equal(val.tensors[0], val_b.tensors[0]) and torch.equal(train.tensors[0], train_b.tensors[0])
    keep, held = validation_indices(len(full), 0.1, 0, full.tensors[1].numpy())
    assert torch.equal(val.tensors[0], full.tensors[0][held]) and torch.equal(train.tensors[0], full.tensors[0][keep])
    assert torch.equal(test2.tensors[0], test.tensors[0])  # the test set is untouched
    counts = np.bincount(full.tensors[1].numpy())
    assert np.all(np.abs(np.bincount(val.tensors[1].numpy(), minlength=10) - 0.1 * counts) <= 1)
    assert load_splits("digits")[1] is None  # validation = 0: no split


def test_augmented_sets_serve_validation_with_the_test_transform() -> None:
    from neurocircuit.images import rgb_images

    # synthetic images: the training set flips, the test set does not
    train, val, test, info = load_splits("synthetic", validation=0.25, image_size=8, classes=4, train_samples=40,
                                         test_samples=8, augment="flip")
    assert len(train) + len(val) == 40 and val.transform is test.transform and train.transform is not None
    assert torch.equal(val[(0, 1)][0], val[(0, 2)][0])  # the augmentation seed changes nothing
    # Fashion-MNIST as RGB (in-memory, flipped per sample seed): the validation part never flips
    x, y = torch.rand(30, 1, 6, 6), torch.arange(30) % 3
    rgb_train, rgb_test, rgb_info = rgb_images(TensorDataset(x, y), TensorDataset(x[:6], y[:6]),
                                               DatasetInfo("f", (1, 6, 6), 3, "classification"), image_size=6,
                                               augment="flip")
    part, held = split_validation(rgb_train, rgb_test, rgb_info, 0.2, 0)
    assert part.takes_seed and not held.takes_seed and len(part) == 24 and len(held) == 6
    assert np.bincount(held.labels.numpy()).tolist() == [2, 2, 2]


@pytest.mark.parametrize("value,message", [(-0.1, "in [0, 1)"), (1.0, "in [0, 1)"), (float("nan"), "in [0, 1)"),
                                           ("0.1", "in [0, 1)"), (True, "in [0, 1)"),
                                           (0.9, "(5 of 5 samples) leaves class 0 (2 samples) no training sample")])
def test_bad_validation_values_are_one_line_errors(value: object, message: str) -> None:
    labels = np.array([0, 0, 1, 1, 1])
    with pytest.raises(ConfigError, match=re.escape(message)) as exc:
        validation_indices(5, value, 0, labels)  # type: ignore[arg-type]
    assert "\n" not in str(exc.value)
    with pytest.raises(ConfigError, match="validation_seed"):
        load_splits("digits", validation=0.1, validation_seed=-1)


@pytest.mark.parametrize("backend", ["torch", "brian2"])
def test_a_bad_validation_key_stops_the_run_before_it_starts(backend: str, capsys: pytest.CaptureFixture,
                                                             tmp_path: Path) -> None:
    from neurocircuit.cli import main

    target = "default" if backend == "torch" else "brian2_learning"
    code = main(["run", target, "--set", "data.validation=1.5", "--out", str(tmp_path / "out"), "--quiet",
                 "--no-figures"])
    err = capsys.readouterr().err
    assert not (tmp_path / "out" / "runs").exists()  # nothing ran
    assert code == 2 and "data.validation must be a finite number in [0, 1)" in err and len(err.splitlines()) == 1


def test_a_tiny_torch_run_records_validation_beside_test() -> None:
    from neurocircuit.runs import run_simulation
    from neurocircuit.simulation import parse_simulation

    sim = parse_simulation({"model": "mlp_digits", "arms": ["fa"], "seeds": [0],
                            "data": {"name": "digits", "validation": 0.2},
                            "train": {"epochs": 1, "batch_size": 64, "alignment_samples": 16}})
    ds = run_simulation(sim)
    for name in ("val_loss", "val_accuracy", "val_top5"):
        assert ds[name].dims == ds[name.replace("val", "test")].dims
        assert np.isfinite(ds[name].values).all() and "validation" in ds[name].attrs["long_name"]
        assert ds[name].attrs["units"] == "1"
    # the training set lost the validation part: 1347 training digits - 270 held out, in batches of 64
    assert int(ds["step"].values[-1]) == -(-(1348 - 270) // 64)
    assert not np.allclose(ds["val_accuracy"].values, ds["test_accuracy"].values)


def test_a_tiny_brian2_run_records_validation_and_its_twin() -> None:
    from neurocircuit.brian.backend import BrianBackend
    from neurocircuit.simulation import parse_simulation

    raw = {"backend": "brian2", "model": "mlp_digits", "arms": ["fa"], "data": {"name": "digits", "validation": 0.1},
           "phases": [{"kind": "engaged", "epochs": 2}],
           "brian2": {"dt": "1 ms", "tau": "1 ms", "tau_feedback": "1 ms", "presentation": "8 ms", "settle": "4 ms",
                      "eta_w": "32 Hz", "lambda_w": "0.5 Hz", "noise_tau": "1 ms", "record_every": 1000,
                      "twin": True}}
    sim = parse_simulation(raw)
    backend = BrianBackend()
    backend.prepare(sim)
    train, test, val = backend.load_data(sim)
    assert abs(len(val[0]) - 0.1 * (len(train[0]) + len(val[0]))) <= 10  # within one sample per class
    small = ((train[0][:40], train[1][:40]), (test[0][:10], test[1][:10]), (val[0][:12], val[1][:12]))
    ds = backend.run_arm(sim, sim.arms[0], 0, small)
    assert ds["val_accuracy"].dims == ("step",) and ds["val_accuracy"].sizes["step"] == 2
    np.testing.assert_array_equal(ds["val_accuracy"]["step"], ds["test_accuracy"]["step"])
    assert np.isfinite(ds["val_loss"].values).all() and "validation" in ds["val_accuracy"].attrs["long_name"]
    assert ds["twin_val_accuracy"].sizes["step"] == 2
    # the twin's angles sit at the circuit's weight snapshots
    assert ds["twin_weight_angle"].dims == ("weight_time", "layer") and np.isfinite(ds["twin_weight_angle"]).all()


def test_protocol_scores_validation_after_test_with_plasticity_off() -> None:
    from neurocircuit.brian import build_protocol
    from neurocircuit.phases import EngagedPhase

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(10, 4)), rng.integers(0, 3, 10)
    p = build_protocol([EngagedPhase(epochs=2)], n_in=4, n_out=3, train=(x, y), test=(x[:3], y[:3]),
                       validation=(x[3:5], y[3:5]))
    assert p.test_blocks == [(10, 13, 1), (25, 28, 2)] and p.val_blocks == [(13, 15, 1), (28, 30, 2)]
    for start, end, _ in p.val_blocks:
        assert not p.learn_w[start:end].any() and not p.learn_b[start:end].any()
        np.testing.assert_array_equal(p.labels[start:end], y[3:5])


def _run(val: list[float] | None, test: list[float]) -> xr.Dataset:
    data = {"test_accuracy": ("step", test)}
    if val is not None:
        data["val_accuracy"] = ("step", val)
    return xr.Dataset(data, coords={"step": [0, 10, 20, 30]})


def test_best_record_is_chosen_on_validation_and_reported_on_test() -> None:
    run = _run([0.5, 0.9, 0.8, 0.7], [0.5, 0.7, 0.95, 0.8])  # validation's best is step 10, test's is step 20
    best = best_record(run)
    assert best.where == {"step": 10} and best.test == 0.7 and best.validation == 0.9 and best.on == "validation"
    with pytest.raises(NoValidationError, match="refused"):
        best_record(_run(None, [0.5, 0.7, 0.95, 0.8]))
    on_test = best_record(_run([np.nan] * 4, [0.5, 0.7, 0.95, 0.8]), allow_test=True)  # validation = 0: all NaN
    assert on_test.where == {"step": 20} and on_test.label == ON_TEST


def test_best_sweep_point_is_chosen_on_validation() -> None:
    lr = [0.01, 0.1, 1.0]
    val = np.array([[[0.5, 0.6]], [[0.5, 0.9]], [[0.5, 0.8]]])  # (lr, seed, step): lr 0.1 is best on validation
    test = np.array([[[0.5, 0.6]], [[0.5, 0.7]], [[0.5, 0.95]]])  # lr 1.0 on test
    ds = xr.Dataset({"val_accuracy": (("optimizer.lr", "seed", "step"), val),
                     "test_accuracy": (("optimizer.lr", "seed", "step"), test)},
                    coords={"optimizer.lr": lr, "seed": [0], "step": [0, 5]})
    best = best_point(ds)
    assert best.where == {"optimizer.lr": 0.1} and best.test == 0.7
    assert best_point(ds.drop_vars("val_accuracy"), allow_test=True).where == {"optimizer.lr": 1.0}


def test_a_sweep_point_where_a_seed_diverged_is_never_the_best():
    # lr 1.0 has the best surviving seed but two of its three seeds diverged (NaN)
    val = np.array([[0.90, 0.91, 0.89], [0.99, np.nan, np.nan]])
    ds = xr.Dataset({"val_accuracy": (("optimizer.lr", "seed"), val),
                     "test_accuracy": (("optimizer.lr", "seed"), val - 0.01)},
                    coords={"optimizer.lr": [0.1, 1.0], "seed": [0, 1, 2]})
    assert best_point(ds).where == {"optimizer.lr": 0.1}


def test_every_registered_data_set_has_a_loader_whose_options_are_known():
    from neurocircuit.data import loader, loader_options
    from neurocircuit.datasets import DATASET_NAMES, SPLIT_KEYS

    for name in (*DATASET_NAMES, "torchvision:CIFAR10"):
        assert callable(loader(name))
        assert set(SPLIT_KEYS) < loader_options(name)
    assert {"test_fraction", "split_seed", "train_samples"} <= loader_options("digits")
    assert {"root", "download", "image_size"} <= loader_options("torchvision:CIFAR10")
