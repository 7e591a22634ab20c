"""Deep training (neurocircuit train): every rule, exact resume, DDP replicas, clear data errors."""

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

from neurocircuit.cli import main
from neurocircuit.deep import DeepConfig, TrainingInterrupted, load_deep_simulation, train
from neurocircuit.deep.engine import CHECKPOINT_NAME, build_model
from neurocircuit.errors import ConfigError, DataError
from neurocircuit.nn.layers import FeedbackLayer
from neurocircuit.registry import list_simulations
from neurocircuit.results import read_results
from neurocircuit.rules import list_rules

ROOT = Path(__file__).resolve().parent.parent


def make_image_folder(root: Path, *, classes: int = 3, train: int = 8, val: int = 4, side: int = 20) -> Path:
    """A tiny ImageNet-layout tree: root/{train,val}/class_k/*.png, each class a different mean colour."""
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("val", val)):
        for c in range(classes):
            folder = root / split / f"class_{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                mean = np.array([60 + 70 * c, 200 - 60 * c, 120])
                pixels = np.clip(rng.normal(mean, 40, size=(side, side, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"img_{i}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("imagefolder"))


def small(root: Path, **changes: object) -> DeepConfig:
    base = dict(model="resnet18", rule="bp", data="imagefolder", data_root=str(root), image_size=16, val_resize=18,
                epochs=2, batch_size=4, workers=0, lr_per_256=2.0, weight_decay=1e-3, checkpoint_every=2,
                log_every=1, device="cpu", amp="off")
    base.update(changes)
    return DeepConfig(**base)


def feedback_state(model: torch.nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {n: (m.weight.detach().clone(), m.current_feedback().detach().clone())
            for n, m in model.named_modules() if isinstance(m, FeedbackLayer)}


@pytest.mark.parametrize("rule", list_rules())
def test_every_rule_trains_on_an_image_folder(folder: Path, tmp_path: Path, rule: str) -> None:
    config = small(folder, rule=rule, epochs=1, mirror_every=1, initial_mirror_steps=3)
    before = feedback_state(build_model(config, 3))
    ds = train(config, tmp_path, progress=False)
    assert ds.sizes["step"] == 1 and int(ds["step"][0]) == 6  # 24 images / batch 4
    for var in ("train_loss", "test_loss", "test_accuracy", "test_top5", "images_per_second"):
        assert np.isfinite(ds[var].values).all(), var
    assert float(ds["test_top5"].min()) == 1.0  # 3 classes: the top 5 always hold the label
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    model = build_model(config, 3)
    model.load_state_dict(state["model"])
    after = feedback_state(model)
    for name, (w0, b0) in before.items():
        w1, b1 = after[name]
        assert not torch.equal(w0, w1), f"{rule}: W of {name} did not learn"
        if rule in ("kp", "wm"):
            assert not torch.equal(b0, b1), f"{rule}: B of {name} did not learn"
        elif rule == "fa":
            assert torch.equal(b0, b1), f"fa: B of {name} changed"
        elif rule == "frsf":  # fixed magnitudes, W's signs
            assert torch.equal(b0.abs(), b1.abs()) and torch.equal(b1.sign(), w1.sign())
        elif rule == "bp":
            assert torch.equal(b1, w1)
    if rule == "wm":
        assert "mirror_weight_angle" in ds  # the initial mirror phase is recorded


def _final_state(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / CHECKPOINT_NAME, weights_only=True)["model"]


def _same_results(a: Path, b: Path) -> None:
    ra, rb = read_results(a / "results.nc"), read_results(b / "results.nc")
    for var in ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "weight_angle", "norm_ratio", "lr"):
        np.testing.assert_array_equal(ra[var].values, rb[var].values, err_msg=var)
    sa, sb = _final_state(a), _final_state(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("rule,workers", [("kp", 0), ("wm", 2)])
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(folder: Path, tmp_path: Path, rule: str,
                                                                 workers: int) -> None:
    # Random crops and flips, momentum, KP's twin optimizer, the mirror generator and a mid-epoch stop.
    config = small(folder, rule=rule, workers=workers, augment="imagenet", mirror_every=2, initial_mirror_steps=2,
                   lr_schedule="cosine", warmup_epochs=0.5)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train(config, whole, progress=False)
    with pytest.raises(TrainingInterrupted):
        train(config, parts, progress=False, stop_after_steps=9)  # epoch 2, step 3 of 6
    state = torch.load(parts / CHECKPOINT_NAME, weights_only=True)
    assert (state["epoch"], state["batch"], state["step"]) == (1, 3, 9)
    train(config, parts, progress=False, resume=True)
    _same_results(whole, parts)


def test_killed_process_resumes_to_the_same_result(folder: Path, tmp_path: Path) -> None:
    args = ["train", "--model", "resnet18", "--rule", "kp", "--data", "imagefolder", "--data-root", str(folder),
            "--epochs", "3", "--batch-size", "4", "--workers", "0", "--quiet", "--no-figures",
            "--set", "image_size=16", "--set", "val_resize=16", "--set", "device='cpu'", "--set", "amp='off'",
            "--set", "checkpoint_every=1", "--set", "lr_per_256=2.0"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main([*args, "--out", str(whole)]) == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "neurocircuit", *args, "--out", str(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (killed / CHECKPOINT_NAME).exists() and torch.load(killed / CHECKPOINT_NAME,
                                                              weights_only=True)["step"] >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # no chance to save anything on the way out
    proc.wait()
    step = torch.load(killed / CHECKPOINT_NAME, weights_only=True)["step"]
    assert 3 <= step < 18, "the run should be killed part-way"
    assert main([*args, "--out", str(killed), "--resume"]) == 0
    _same_results(whole, killed)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_run_keeps_w_and_b_identical_across_ranks(folder: Path, tmp_path: Path) -> None:
    config = small(folder, rule="kp", overrides={"layer4.*": "wm", "fc": "wm"}, mirror_every=1, epochs=1,
                   initial_mirror_steps=2, log_every=1)
    mp.spawn(_ddp_replica, args=(2, _free_port(), config, str(tmp_path)), nprocs=2, join=True)
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    start = feedback_state(build_model(config, 3))
    assert states[0].keys() == states[1].keys()
    moved_b = 0
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), f"{key} differs between ranks"
        if key.endswith("feedback_weight"):
            layer = key[: -len(".feedback_weight")]
            moved_b += not torch.equal(states[0][key], start[layer][1])
    assert moved_b == sum(1 for k in states[0] if k.endswith("feedback_weight")) > 0
    ds = read_results(tmp_path / "results.nc")
    assert ds.attrs["world_size"] == 2
    assert float(ds["replica_spread"].max()) == 0.0  # the run's own check agrees
    assert int(ds["step"][-1]) == 3  # 24 images over 2 ranks, batch 4 each


def _ddp_replica(rank: int, world: int, port: int, config: DeepConfig, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from neurocircuit.deep import engine

    # Capture the model each rank ends with (only rank 0 writes checkpoints).
    captured = {}
    original = engine._Run.results

    def keep_model(self: engine._Run) -> object:
        captured["model"] = {k: v.clone() for k, v in self.model.state_dict().items()}
        return original(self)

    engine._Run.results = keep_model  # type: ignore[method-assign]
    train(config, out, progress=False)
    torch.save(captured["model"], Path(out) / f"rank{rank}.pt")


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(folder: Path, tmp_path: Path) -> None:
    config = small(folder, rule="fa", lr_per_256=1e9, checkpoint_every=1, momentum=0.0)
    with pytest.raises(FloatingPointError, match=r"became .* at step (\d+)") as info:
        train(config, tmp_path, progress=False)
    bad = int(info.value.args[0].split("at step ")[1].split()[0])
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert f"last good checkpoint is {tmp_path / CHECKPOINT_NAME} (step {state['step']})" in info.value.args[0]
    assert state["step"] == bad - 1  # checkpoints every step: the one before the bad step is kept
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_data_errors_are_one_line(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(DataError, match="not a folder"):
        train(small(tmp_path / "nowhere"), tmp_path / "o1")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="train"):
        train(small(tmp_path / "empty"), tmp_path / "o2")
    broken = make_image_folder(tmp_path / "broken", train=2, val=1)
    (broken / "train" / "class_1" / "img_0.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="img_0.png"):
        train(small(broken, epochs=1), tmp_path / "o3")
    # Through the CLI with loader workers: one line, exit 2.
    code = main(["train", "--data", "imagefolder", "--data-root", str(broken), "--out", str(tmp_path / "o4"),
                 "--epochs", "1", "--batch-size", "2", "--workers", "1", "--quiet", "--set", "image_size=16",
                 "--set", "val_resize=16", "--set", "device='cpu'"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot read image" in err and "img_0.png" in err


def test_bad_settings_are_clear_errors(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ConfigError, match="unknown torchvision classification model 'resnet19'"):
        train(small(folder, model="resnet19"), tmp_path / "a")
    with pytest.raises(ConfigError, match="lr_schedul"):
        DeepConfig.from_dict({"lr_schedul": "cosine"})
    with pytest.raises(ConfigError, match="batch_size must be > 0"):
        small(folder, batch_size=0)
    train(small(folder, epochs=1), tmp_path / "b", progress=False)
    with pytest.raises(ConfigError, match="--resume"):
        train(small(folder, epochs=1), tmp_path / "b")
    with pytest.raises(ConfigError, match="different settings: lr_per_256"):
        train(small(folder, epochs=1, lr_per_256=0.5), tmp_path / "b", resume=True)
    # A longer run may resume from a finished one.
    ds = train(small(folder, epochs=2), tmp_path / "b", resume=True, progress=False)
    assert list(ds["epoch"].values) == [1, 2]
    assert main(["train", "imagenet_resnet18", "--out", str(tmp_path / "c")]) == 2
    assert "several arms" in capsys.readouterr().err
    assert main(["run", "imagenet_resnet18", "--out", str(tmp_path / "d")]) == 2
    assert "neurocircuit train" in capsys.readouterr().err
    assert main(["train", "imagenet_resnet18", "--arm", "kp", "--out", str(tmp_path / "e")]) == 2
    assert "needs a data root" in capsys.readouterr().err


def test_shipped_deep_simulations_parse_and_settings_route() -> None:
    deep = [name for name in list_simulations() if name.startswith(("imagenet_", "resnet18_"))]
    assert {"imagenet_resnet18", "imagenet_resnet50", "resnet18_fashion_mnist"} <= set(deep)
    for name in deep:
        sim = load_deep_simulation(name)
        assert {"bp", "fa", "kp", "wm"} <= set(sim.arms)
        assert all(sim.arms[label].rule == label for label in ("bp", "fa", "kp", "wm"))
    sim = load_deep_simulation("imagenet_resnet50", ["epochs=5", "mirror_every=3", "mirror.noise_std=0.5"])
    wm = sim.arm("wm")
    assert (wm.epochs, wm.mirror_every, wm.mirror.noise_std, wm.model) == (5, 3, 0.5, "resnet50")
    assert sim.arm("bp").epochs == 5 and sim.arm("bp").rule == "bp"
    recipe = DeepConfig()
    assert (recipe.lr_per_256, recipe.momentum, recipe.weight_decay, recipe.epochs, recipe.image_size,
            recipe.val_resize) == (0.1, 0.9, 1e-4, 90, 224, 256)


def test_step_schedule_and_lr_scaling(folder: Path, tmp_path: Path) -> None:
    config = small(folder, epochs=3, lr_step_epochs=1, lr_gamma=0.5, lr_per_256=2.56)
    ds = train(config, tmp_path, progress=False)
    # lr = 2.56 * batch 4 / 256 = 0.04, halved after every epoch (recorded after each epoch's last step).
    np.testing.assert_allclose(ds["lr"].values.ravel(), [0.02, 0.01, 0.005])
    assert dataclasses.replace(config, epochs=4).epochs == 4


def test_synthetic_and_fashion_mnist_proxy_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torch.utils.data import TensorDataset

    from neurocircuit import data as plain_data
    from neurocircuit.data import DatasetInfo
    from neurocircuit.deep import load_image_data

    synthetic = load_image_data(DeepConfig(data="synthetic", image_size=24, val_resize=24, batch_size=4))
    image, label = synthetic.train[(5, 123)]
    assert image.shape == (3, 24, 24) and label == 5 and synthetic.num_classes == 1000
    assert torch.equal(synthetic.train[(5, 123)][0], image)  # the same seed gives the same flip
    # The proxy: (N, 1, 28, 28) tensors become 3-channel images of image_size.
    fake = TensorDataset(torch.randn(40, 1, 28, 28), torch.arange(40) % 10)
    monkeypatch.setattr(plain_data, "load_fashion_mnist",
                        lambda **kw: (fake, fake, DatasetInfo("fashion_mnist", (1, 28, 28), 10, "classification")))
    proxy = load_image_data(DeepConfig(data="fashion_mnist", image_size=32, val_resize=32, augment="none"))
    image, label = proxy.train[3]
    assert image.shape == (3, 32, 32) and label == 3 and proxy.num_classes == 10
    assert torch.equal(image[0], image[2])
    ds = train(DeepConfig(data="fashion_mnist", image_size=32, val_resize=32, batch_size=8, epochs=1, workers=0,
                          device="cpu", rule="kp"), tmp_path, progress=False)
    assert int(ds["step"][-1]) == 5 and np.isfinite(ds["test_accuracy"]).all()


@pytest.mark.parametrize("rule", ["bp", "kp", "usf"])
def test_rule_layers_trace_without_graph_breaks_under_bf16_autocast(rule: str) -> None:
    from neurocircuit.nn import convert

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 5))
    convert(model, rule, seed=0)
    torch._dynamo.reset()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        explained = torch._dynamo.explain(model)(torch.randn(2, 3, 6, 6))
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
