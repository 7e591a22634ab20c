"""Alignment metrics, the training loop and atomic results."""

import math
import time

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn
from torch.utils.data import TensorDataset

import neurocircuit as nc
from neurocircuit.data import load_digits, teacher_task
from neurocircuit.nn import FeedbackLinear, alignment, convert, gradient_alignment, weight_alignment
from neurocircuit.results import atomic_path, read_results, write_netcdf
from neurocircuit.torch import fit
from neurocircuit.torch.optim import make_optimizer


def test_weight_alignment_bp_zero_fa_near_ninety():
    model = nn.Sequential(nn.Linear(200, 100), nn.ReLU(), nn.Linear(100, 10))
    convert(model, "fa", overrides={"2": "bp"}, seed=0)
    ds = weight_alignment(model)
    assert list(ds["layer"].values) == ["0", "2"]
    assert ds["weight_angle"].attrs["units"] == "degree"
    assert ds["weight_angle"].sel(layer="2") == pytest.approx(0.0, abs=1e-5)
    assert 80 < float(ds["weight_angle"].sel(layer="0")) < 100
    assert float(ds["norm_ratio"].sel(layer="2")) == pytest.approx(1.0)


def test_gradient_angle_matches_a_hand_computation():
    torch.manual_seed(0)
    model = nn.Sequential(FeedbackLinear(6, 5, rule="fa"), nn.Tanh(), FeedbackLinear(5, 3, rule="fa")).double()
    x, y = torch.randn(8, 6, dtype=torch.float64), torch.randint(0, 3, (8,))
    ds = gradient_alignment(model, x, y)
    # By hand: the error at the top layer's output, then sent down through B and through W.
    out = model(x)
    out.retain_grad()
    torch.nn.functional.cross_entropy(out, y).backward()
    g = out.grad
    via_b, via_w = g @ model[2].feedback_weight, g @ model[2].weight.detach()
    expected = math.degrees(math.acos(torch.nn.functional.cosine_similarity(via_b.flatten(), via_w.flatten(),
                                                                           dim=0).item()))
    assert float(ds["gradient_angle"].sel(layer="2")) == pytest.approx(expected, abs=1e-6)
    assert 0 < expected < 180


def test_gradient_alignment_leaves_bn_statistics_and_grads_alone():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))
    convert(model, "bp")
    model.train()
    before = model[1].running_mean.clone()
    ds = alignment(model, torch.randn(5, 3, 8, 8), torch.randint(0, 3, (5,)))
    assert torch.equal(model[1].running_mean, before) and model.training
    assert all(p.grad is None for p in model.parameters())
    np.testing.assert_allclose(ds["gradient_angle"].values, 0.0, atol=1e-3)


def _short_fit(rule, seed=0, epochs=2):
    train, test, _ = load_digits()
    model = nc.build_network("mlp_digits", rule=rule, seed=seed)
    opt = make_optimizer(model.parameters(), "sgd", lr=0.05, momentum=0.9, weight_decay=0.005)
    return fit(model, train, test, optimizer=opt, epochs=epochs, seed=seed, progress=False)


def test_fit_records_named_dims_units_and_is_deterministic():
    a, b = _short_fit("kp"), _short_fit("kp")
    assert set(a.dims) == {"step", "layer"}
    assert a.sizes["step"] == 3 and list(a["epoch"].values) == [0.0, 1.0, 2.0]
    for var in ("train_loss", "test_accuracy", "weight_angle", "gradient_angle", "norm_ratio"):
        assert "units" in a[var].attrs
    timing = ["seconds_per_step", "images_per_second"]
    xr.testing.assert_equal(a.drop_vars(timing), b.drop_vars(timing))
    assert float(a["test_accuracy"][-1]) > 0.8
    assert math.isnan(float(a["train_loss"][0]))


def test_fit_records_every_n_steps():
    train, test, _ = load_digits()
    model = nc.build_network("mlp_digits", rule="fa", seed=0)
    ds = fit(model, train, test, optimizer=torch.optim.Adam(model.parameters(), 1e-3), epochs=1, batch_size=100,
             record_every=5, progress=False)
    assert list(ds["step"].values) == [0, 5, 10, 14]


def test_throughput_leaves_out_the_time_spent_evaluating(monkeypatch):
    # Each record's evaluation is made to take 0.5 s; 5 training steps of this MLP take a few ms. A record's
    # images_per_second covers only the training steps since the previous record.
    from neurocircuit.torch.trainer import Trainer

    evaluate = Trainer.evaluate

    def slow_evaluate(self, *args, **kwargs):
        time.sleep(0.5)
        return evaluate(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "evaluate", slow_evaluate)
    train, test, _ = load_digits()
    model = nc.build_network("mlp_digits", rule="fa", seed=0)
    ds = fit(model, train, test, optimizer=torch.optim.SGD(model.parameters(), lr=0.01), epochs=2, batch_size=100,
             record_every=5, progress=False)
    steps = np.diff(ds["step"].values)
    # training seconds per interval, over-estimated where an epoch's last, shorter batch falls in it
    seconds = 100 * steps / ds["images_per_second"].values[1:]
    assert ds.sizes["step"] == 7 and (seconds[np.isfinite(seconds)] < 0.5).all() and np.isfinite(seconds).sum() >= 5


def test_regression_teacher_task():
    train, test, info = teacher_task(n_train=500, n_test=100)
    assert info.task == "regression" and train[0][1].shape == (10,)
    model = nn.Sequential(nn.Linear(30, 20), nn.Linear(20, 10))
    convert(model, "fa", seed=0)
    ds = fit(model, train, test, optimizer=torch.optim.SGD(model.parameters(), lr=0.01), epochs=20, loss="mse",
             progress=False)
    assert float(ds["test_loss"][-1]) < 0.5 * float(ds["test_loss"][0])
    assert np.isnan(ds["test_accuracy"].values).all()


def test_nan_loss_stops_with_the_step():
    train, test, _ = load_digits()
    x, y = train.tensors
    x = x.clone()
    x.view(len(x), -1)[5, 3] = float("nan")
    model = nc.build_network("mlp_digits", rule="bp", seed=0)
    with pytest.raises(FloatingPointError, match="loss became nan at step"):
        fit(model, TensorDataset(x, y), test, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=1,
            progress=False)


def test_bad_training_settings():
    with pytest.raises(nc.ConfigError, match="unknown optimizer 'sgdd'"):
        make_optimizer([torch.zeros(1, requires_grad=True)], "sgdd")
    with pytest.raises(nc.ConfigError, match="no setting 'lrr'"):
        make_optimizer([torch.zeros(1, requires_grad=True)], "sgd", lrr=0.1)


def test_results_merged_from_files_keep_their_labels(tmp_path):
    # Each file stores its arm labels at its own string width; merged and written again, none is cut to the
    # first file's width, and values keep their dtype.
    paths = []
    for arm, value in (("bp", 1.5), ("fa_prenatal", 2.5)):
        ds = xr.Dataset({"test_accuracy": ("arm", [value]), "steps": ("arm", np.array([70000], dtype=np.int64))},
                        coords={"arm": [arm]})
        paths.append(write_netcdf(ds, tmp_path / f"{arm}.nc"))
    merged = xr.merge([read_results(p) for p in paths], join="outer", compat="no_conflicts")
    again = read_results(write_netcdf(merged, tmp_path / "merged.nc"))
    assert list(again["arm"].values) == ["bp", "fa_prenatal"]
    assert list(again["test_accuracy"].values) == [1.5, 2.5] and list(again["steps"].values) == [70000, 70000]


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "results.nc"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    ds = xr.Dataset({"a": ("x", [1.0, 2.0], {"units": "1"})})
    write_netcdf(ds, target)
    xr.testing.assert_identical(read_results(target), ds)
    assert [p.name for p in tmp_path.iterdir()] == ["results.nc"]


def test_a_nan_at_the_last_step_of_an_epoch_is_named_in_that_epoch():
    from neurocircuit.torch.sampling import ResumableSampler

    train, test, _ = load_digits()
    x, y = train.tensors
    x = x.clone()
    half = (len(x) + 1) // 2  # two steps per epoch
    second_batch = ResumableSampler(len(x), seed=0).permutation(0)[half:]
    x.view(len(x), -1)[int(second_batch[0]), 0] = float("nan")  # only step 2, the last of epoch 1, sees it
    model = nc.build_network("mlp_digits", rule="bp", seed=0)
    with pytest.raises(FloatingPointError, match=r"at step 2 \(epoch 1\)"):
        fit(model, TensorDataset(x, y), test, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=3,
            batch_size=half, progress=False)


def test_in_memory_batches_are_the_data_loaders_batches():
    """The trainer indexes in-memory tensors batch by batch: the same batches, in the same order, as a DataLoader
    over the same sampler (a shuffled, part-way resumed epoch, and a last partial batch)."""
    from torch.utils.data import DataLoader, TensorDataset

    from neurocircuit.torch.sampling import IndexedDataset, ResumableSampler, TensorBatches, in_memory_tensors

    data = TensorDataset(torch.randn(53, 3, 4), torch.randint(0, 5, (53,)))
    sampler = ResumableSampler(53, seed=3)
    sampler.set_position(2, 14)
    expected = list(DataLoader(IndexedDataset(data), batch_size=8, sampler=sampler))
    tensors, make = in_memory_tensors(IndexedDataset(data))
    assert make is None
    got = list(TensorBatches(tensors, sampler, 8))
    assert len(got) == len(expected) == 5 and len(got[-1][1]) == 53 - 14 - 32
    for (x, y), (gx, gy) in zip(expected, got):
        assert torch.equal(x, gx) and torch.equal(y, gy)

    class Augmenting(TensorDataset):
        takes_seed = True

    assert in_memory_tensors(IndexedDataset(Augmenting(*data.tensors))) is None  # augmentation keeps the loader


def test_proxy_images_flip_whole_batches_on_the_device_as_the_loader_would():
    """The Fashion-MNIST proxy (grey images as three channels, flipped by seed) makes its batches on the device:
    the same images as a DataLoader of per-sample items over the same (index, seed) pairs, part-way resumed too."""
    from torch.utils.data import DataLoader

    from neurocircuit.images import _GrayToRGB, flip_decisions
    from neurocircuit.torch.sampling import IndexedDataset, ResumableSampler, TensorBatches, in_memory_tensors

    images = torch.randn(37, 1, 6, 6)
    data = _GrayToRGB(images, torch.randint(0, 10, (37,)), 8, flip=True)
    sampler = ResumableSampler(37, seed=5)
    sampler.set_position(1, 10)
    expected = list(DataLoader(IndexedDataset(data), batch_size=8, sampler=sampler))
    tensors, make = in_memory_tensors(IndexedDataset(data))
    got = list(TensorBatches(tensors, sampler, 8, make))
    assert len(got) == len(expected) == 4
    for (x, y), (gx, gy) in zip(expected, got):
        assert gx.shape == x.shape and x.shape[1:] == (3, 8, 8)
        assert torch.equal(x, gx) and torch.equal(y, gy)
    # The flips: half of the samples, not periodic in the index, and really mirror images.
    decisions = flip_decisions(torch.arange(10_000) * 2_654_435_761)
    assert 0.48 < decisions.float().mean() < 0.52
    assert 0.4 < (decisions[1:] != decisions[:-1]).float().mean() < 0.6
    seeds = torch.tensor([int(s) for _, s in list(sampler)[:8]])
    x, _ = make(tensors, torch.arange(8), seeds)
    resized = data.images[:8].expand(-1, 3, -1, -1)
    flipped = flip_decisions(seeds)
    assert flipped.any() and (~flipped).any()
    assert torch.equal(x[flipped], resized[flipped].flip(-1)) and torch.equal(x[~flipped], resized[~flipped])


def test_early_weight_decay_shrinks_kp_mismatch_by_the_decay_of_each_step():
    """With plain SGD, W - B of a KP layer shrinks by (1 - lr * lambda_t) per step, where lambda_t is
    train.early_weight_decay for the first early_weight_decay_epochs and the optimizer's own value after."""
    from neurocircuit.phases import EngagedPhase, MirrorSettings, Schedule
    from neurocircuit.simulation import TrainSettings
    from neurocircuit.torch.settings import TorchSettings
    from neurocircuit.torch.trainer import Trainer

    torch.manual_seed(0)
    x = torch.randn(60, 6, dtype=torch.float64)
    data = TensorDataset(x, (x[:, 0] > 0).long())
    model = nn.Sequential(FeedbackLinear(6, 5, rule="kp"), nn.Tanh(), FeedbackLinear(5, 2, rule="kp")).double()
    lr, base, early = 0.05, 0.01, 0.5
    opt = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=base)
    train = TrainSettings(epochs=3, batch_size=20, early_weight_decay=early, early_weight_decay_epochs=1.5)
    trainer = Trainer(model, data, data, input_shape=(6,), n_classes=2, optimizer=opt, train=train,
                      torch_settings=TorchSettings(device="cpu"), schedule=Schedule((EngagedPhase(),)),
                      mirror=MirrorSettings(), seed=0, progress=False)
    gaps = [[(m.weight - m.feedback_weight).norm().item() for m in (model[0], model[2])]]
    decays: list[float] = []

    def record(optimizer, args, kwargs):
        decays.append(optimizer.param_groups[0]["weight_decay"])
        gaps.append([(m.weight - m.feedback_weight).norm().item() for m in (model[0], model[2])])

    # Registered after the FeedbackOptimizer's hook, so B has stepped when it reads the gap.
    opt.register_step_post_hook(record)
    trainer.run()
    assert decays == [early] * 5 + [base] * 4  # 3 steps per epoch: steps 0-4 start before 1.5 epochs (4.5 steps)
    expected = np.cumprod([1.0] + [1 - lr * d for d in decays])
    np.testing.assert_allclose(np.array(gaps), np.outer(expected, gaps[0]), rtol=1e-9)
    assert opt.param_groups[0]["weight_decay"] == base
    with pytest.raises(nc.ConfigError, match="early_weight_decay_epochs = 2 needs train.early_weight_decay"):
        TrainSettings(early_weight_decay_epochs=2)
    with pytest.raises(nc.ConfigError, match="train.early_weight_decay must be a finite number >= 0, got -1"):
        TrainSettings(early_weight_decay=-1, early_weight_decay_epochs=1)
    with pytest.raises(nc.ConfigError, match="early_weight_decay = 0.1 needs train.early_weight_decay_epochs > 0"):
        TrainSettings(early_weight_decay=0.1)
