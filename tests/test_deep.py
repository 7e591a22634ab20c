"""Deep networks through the one simulation path: torchvision models with any rule, checkpoints, exact resume,
DDP, the NaN stop, image data, and the prenatal phase on a converted network."""

import copy
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

from neurocircuit.backends import run_dir
from neurocircuit.cli import main
from neurocircuit.errors import ConfigError, DataError
from neurocircuit.results import read_results
from neurocircuit.runs import run_simulation
from neurocircuit.simulation import load_simulation, parse_simulation, set_key
from neurocircuit.torch.checkpoint import CHECKPOINT_NAME
from neurocircuit.torch.networks import build_network
from neurocircuit.torch.nn.feedback_rules import list_rules
from neurocircuit.torch.nn.layers import FeedbackLayer
from neurocircuit.torch.stopping import TrainingInterrupted

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


def small(root: Path, **changes: object) -> dict:
    """A ResNet-18 simulation table on the tiny image folder; ``changes`` are dotted keys (``train.epochs``)."""
    raw = {"name": "small", "model": "resnet18", "arms": ["bp"], "seeds": [0],
           "data": {"name": "imagefolder", "root": str(root), "image_size": 8, "val_resize": 10},
           "optimizer": {"name": "sgd", "lr_per_256": 2.0, "momentum": 0.9, "weight_decay": 1e-3},
           "train": {"epochs": 2, "batch_size": 4, "alignment_samples": 8},
           "torch": {"workers": 0, "checkpoint_every": 0, "log_every": 1, "device": "cpu", "amp": "off"}}
    for key, value in changes.items():
        set_key(raw, key.replace("__", "."), value)
    return raw


def run(raw: dict, out: Path | None, **kw: object):
    return run_simulation(parse_simulation(copy.deepcopy(raw)), out=out, progress=False, **kw)


def checkpoint(out: Path, label: str = "bp") -> Path:
    return run_dir(out, label, 0) / CHECKPOINT_NAME


def feedback_state(model: torch.nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {n: (m.weight.detach().clone(), m.current_feedback().detach().clone())
            for n, m in model.named_modules() if isinstance(m, FeedbackLayer)}


@pytest.mark.parametrize("rule", list_rules())
def test_every_rule_trains_on_an_image_folder(folder: Path, tmp_path: Path, rule: str) -> None:
    phases = [{"kind": "mirror", "steps": 3}, {"kind": "engaged", "mirror_every": 1}] if rule == "wm" else \
        [{"kind": "engaged"}]
    raw = small(folder, arms=[{"rule": rule, "label": "x", "phases": phases}], train__epochs=1)
    before = feedback_state(build_network("resnet18", rule=rule, seed=0, num_classes=3))
    ds = run(raw, tmp_path)
    assert list(ds["step"].values) == [0, 6]  # 24 images / batch 4, recorded before and after
    for var in ("train_loss", "test_loss", "test_accuracy", "test_top5", "images_per_second", "gradient_angle"):
        assert np.isfinite(ds[var].isel(step=-1).values).all(), var
    assert float(ds["test_top5"].min()) == 1.0  # 3 classes: the top 5 always hold the label
    model = build_network("resnet18", rule=rule, seed=0, num_classes=3)
    model.load_state_dict(torch.load(checkpoint(tmp_path, "x"), weights_only=True)["model"])
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


def _same_results(a: Path, b: Path, label: str) -> None:
    ra, rb = read_results(run_dir(a, label, 0) / "results.nc"), read_results(run_dir(b, label, 0) / "results.nc")
    for var in ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "weight_angle", "norm_ratio", "lr",
                "gradient_angle"):
        np.testing.assert_array_equal(ra[var].values, rb[var].values, err_msg=var)
    sa, sb = (torch.load(checkpoint(x, label), weights_only=True)["model"] for x in (a, b))
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.slow
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(folder: Path, tmp_path: Path) -> None:
    # Random crops and flips, momentum, loader workers, a mirror phase, the mirror generator, warm-up and cosine
    # schedules, an early weight decay that ends where the run is stopped, and a mid-epoch stop (KP's twin
    # optimizer: the ImageNet simulation's test below).
    rule = "wm"
    raw = small(folder, arms=[{"rule": rule, "phases": [{"kind": "mirror", "steps": 2},
                                                        {"kind": "engaged", "mirror_every": 2}]}],
                torch__workers=2, torch__checkpoint_every=2, data__augment="imagenet", train__lr_schedule="cosine",
                train__warmup_epochs=0.5, train__early_weight_decay=0.05, train__early_weight_decay_epochs=1.5)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    run(raw, whole)
    with pytest.raises(TrainingInterrupted):
        run(raw, parts, stop_after_steps=9)  # epoch 2, step 3 of 6
    state = torch.load(checkpoint(parts, rule), weights_only=True)
    assert (state["epoch"], state["batch"], state["step"], state["phase_index"]) == (1, 3, 9, 1)
    run(raw, parts, resume=True)
    _same_results(whole, parts, rule)


def _killed_and_resumed(args: list[str], whole: Path, killed: Path, label: str, at_least: int) -> None:
    assert main([*args, "--out", str(whole)]) == 0
    # The same number of threads as this process: float reductions, and so the results, depend on it.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen([sys.executable, "-m", "neurocircuit", *args, "--out", str(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    path = checkpoint(killed, label)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if path.exists() and torch.load(path, weights_only=True)["step"] >= at_least:
                break
        except (EOFError, RuntimeError):  # pragma: no cover - replaced between exists() and load()
            pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # no chance to save anything on the way out
    proc.wait()
    state = torch.load(path, weights_only=True)
    assert not state["finished"], "the run should be killed part-way"
    assert main([*args, "--out", str(killed), "--resume"]) == 0
    _same_results(whole, killed, label)


@pytest.mark.slow
def test_the_imagenet_simulation_runs_on_cpu_and_resumes_exactly(tmp_path: Path) -> None:
    """The shipped ImageNet simulation itself, on synthetic images: stopped mid-epoch and resumed, it ends where an
    uninterrupted run ends (weights, B, metrics)."""
    settings = ["data.name=\"synthetic\"", "data.image_size=16", "data.val_resize=20", "data.classes=5",
                "data.train_samples=48", "data.test_samples=8", "train.epochs=2", "train.batch_size=8",
                "train.alignment_samples=4", "torch.workers=0", "torch.checkpoint_every=2", "torch.device=\"cpu\""]
    sim = load_simulation("imagenet_resnet18", settings, ["kp"])
    assert sim.data["augment"] == "imagenet" and sim.optimizer["lr_per_256"] == 0.1
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    run_simulation(sim, out=whole, progress=False)
    with pytest.raises(TrainingInterrupted):
        run_simulation(sim, out=parts, progress=False, stop_after_steps=9)  # epoch 2, step 3 of 6
    run_simulation(sim, out=parts, progress=False, resume=True)
    _same_results(whole, parts, "kp")


@pytest.mark.slow
def test_killed_mlp_simulation_resumes_to_the_same_result(tmp_path: Path) -> None:
    args = ["run", "default", "--arm", "kp", "--quiet", "--no-figures", "--set", "seeds=[0]",
            "--set", "train.epochs=4", "--set", "torch.checkpoint_every=5"]
    _killed_and_resumed(args, tmp_path / "whole", tmp_path / "killed", "kp", 30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_gloo_run_keeps_w_and_b_identical_across_ranks(folder: Path, tmp_path: Path) -> None:
    raw = small(folder, arms=[{"rule": "kp", "overrides": {"layer4.*": "wm", "fc": "wm"},
                               "phases": [{"kind": "mirror", "steps": 2}, {"kind": "engaged", "mirror_every": 1}]}],
                train__epochs=1)
    mp.spawn(_ddp_replica, args=(2, _free_port(), raw, str(tmp_path)), nprocs=2, join=True)
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    start = feedback_state(build_network("resnet18", rule="kp", overrides={"layer4.*": "wm", "fc": "wm"}, seed=0,
                                     num_classes=3))
    assert states[0].keys() == states[1].keys()
    moved_b = 0
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), f"{key} differs between ranks"
        if key.endswith("feedback_weight"):
            layer = key[: -len(".feedback_weight")]
            moved_b += not torch.equal(states[0][key], start[layer][1])
    assert moved_b == sum(1 for k in states[0] if k.endswith("feedback_weight")) > 0
    ds = read_results(run_dir(tmp_path, "kp", 0) / "results.nc")
    assert float(ds["replica_spread"].max()) == 0.0  # the run's own check agrees
    assert int(ds["step"][-1]) == 3  # 24 images over 2 ranks, batch 4 each


def _ddp_replica(rank: int, world: int, port: int, raw: dict, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from neurocircuit.torch import trainer as train

    # Capture the model each rank ends with (only rank 0 writes checkpoints).
    captured = {}
    original = train.Trainer.results

    def keep_model(self: train.Trainer) -> object:
        captured["model"] = {k: v.clone() for k, v in self.model.state_dict().items()}
        return original(self)

    train.Trainer.results = keep_model  # type: ignore[method-assign]
    run(raw, Path(out))
    torch.save(captured["model"], Path(out) / f"rank{rank}.pt")


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(folder: Path, tmp_path: Path) -> None:
    raw = small(folder, arms=["fa"], optimizer__lr_per_256=1e9, optimizer__momentum=0.0,
                torch__checkpoint_every=1)
    with pytest.raises(FloatingPointError, match=r"became .* at step (\d+)") as info:
        run(raw, tmp_path)
    bad = int(info.value.args[0].split("at step ")[1].split()[0])
    path = checkpoint(tmp_path, "fa")
    state = torch.load(path, weights_only=True)
    assert f"last good checkpoint is {path} (step {state['step']})" in info.value.args[0]
    assert state["step"] == bad - 1  # checkpoints every step: the one before the bad step is kept
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_data_errors_are_one_line(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(DataError, match="not a folder"):
        run(small(tmp_path / "nowhere"), tmp_path / "o1")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="train"):
        run(small(tmp_path / "empty"), tmp_path / "o2")
    broken = make_image_folder(tmp_path / "broken", train=2, val=1)
    (broken / "train" / "class_1" / "img_0.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="img_0.png"):
        run(small(broken, train__epochs=1), tmp_path / "o3")
    # Through the CLI with loader workers: one line, exit 2.
    code = main(["train", "imagenet_resnet18", "--arm", "bp", "--data-root", str(broken), "--out",
                 str(tmp_path / "o4"), "--epochs", "1", "--batch-size", "2", "--workers", "1", "--quiet",
                 "--set", "data.image_size=16", "--set", "data.val_resize=16", "--set", "torch.device='cpu'",
                 # all six images read in the one epoch: a validation split and drop_last could leave the broken out
                 "--set", "data.validation=0"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot read image" in err and "img_0.png" in err


def test_bad_settings_are_clear_errors(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(Exception, match="unknown model 'resnet19'"):
        run(small(folder, model="resnet19"), tmp_path / "a")
    with pytest.raises(ConfigError, match="lr_schedul"):
        parse_simulation(small(folder, train__lr_schedul="cosine"))
    with pytest.raises(ConfigError, match="batch_size must be"):
        parse_simulation(small(folder, train__batch_size=0))
    with pytest.raises(ConfigError, match="override pattern 'layer9' matches no"):
        parse_simulation(small(folder, arms=[{"rule": "fa", "overrides": {"layer9": "bp"}}]))
    run(small(folder, train__epochs=1), tmp_path / "b")
    with pytest.raises(ConfigError, match="--resume"):
        run(small(folder, train__epochs=1), tmp_path / "b")
    with pytest.raises(ConfigError, match="other settings: optimizer.lr_per_256"):
        run(small(folder, train__epochs=1, optimizer__lr_per_256=0.5), tmp_path / "b", resume=True)
    # A longer run may resume from a finished one (the schedule does not depend on the run's length) ...
    ds = run(small(folder, train__epochs=2), tmp_path / "b", resume=True)
    assert list(ds["epoch"].values) == [0, 1, 2]
    # ... but not under a cosine schedule: the steps taken would have followed another cosine
    run(small(folder, train__epochs=1, train__lr_schedule="cosine"), tmp_path / "c")
    with pytest.raises(ConfigError, match=r"different settings: train\.epochs \(a cosine schedule spans"):
        run(small(folder, train__epochs=2, train__lr_schedule="cosine"), tmp_path / "c", resume=True)
    assert main(["run", "imagenet_resnet18", "--arm", "kp", "--out", str(tmp_path / "e")]) == 2
    assert "needs a folder" in capsys.readouterr().err


def test_shipped_deep_simulations_parse_and_settings_route() -> None:
    for name in ("imagenet_resnet18", "imagenet_resnet50", "resnet18_fashion_mnist"):
        sim = load_simulation(name)
        assert {"bp", "fa", "kp", "wm", "fa_prenatal"} <= set(sim.labels)
        assert all(sim.arm(label).rule == label for label in ("bp", "fa", "kp", "wm"))
        prenatal = sim.schedule_for(sim.arm("fa_prenatal")).phases[0]
        assert prenatal.kind == "prenatal" and prenatal.dataset_size is not None  # the fixed set, not the control
    sim = load_simulation("imagenet_resnet50", ["train.epochs=5", "arms.6.phases.1.mirror_every=3",
                                                "mirror.noise_std=0.5"])
    wm = sim.schedule_for(sim.arm("wm"))
    assert (sim.train.epochs, wm.engaged.mirror_every, sim.mirror.noise_std, sim.model) == (5, 3, 0.5, "resnet50")
    assert (sim.optimizer["lr_per_256"], sim.optimizer["momentum"], sim.optimizer["weight_decay"],
            sim.data["image_size"], sim.data["val_resize"]) == (0.1, 0.9, 1e-4, 224, 256)


def test_step_schedule_and_lr_scaling(folder: Path, tmp_path: Path) -> None:
    raw = small(folder, train__epochs=2, train__lr_schedule="step", train__lr_step_epochs=1, train__lr_gamma=0.5,
                optimizer__lr_per_256=2.56, data__image_size=8, data__val_resize=8)
    ds = run(raw, tmp_path)
    # lr = 2.56 * batch 4 / 256 = 0.04, halved after every epoch (the lr of each epoch's last step).
    np.testing.assert_allclose(ds["lr"].values.ravel(), [0.04, 0.04, 0.02])


def test_synthetic_and_fashion_mnist_proxy_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torch.utils.data import TensorDataset

    from neurocircuit import data as plain_data
    from neurocircuit.data import DatasetInfo, load_dataset

    train, _, info = load_dataset("synthetic", image_size=24, classes=1000)
    image, label = train[(5, 123)]
    assert image.shape == (3, 24, 24) and label == 5 and info.n_outputs == 1000
    assert torch.equal(train[(5, 123)][0], image)  # the same seed gives the same flip
    # The proxy: (N, 1, 28, 28) tensors become 3-channel images of image_size.
    fake = TensorDataset(torch.randn(40, 1, 28, 28), torch.arange(40) % 10)
    monkeypatch.setattr(plain_data, "find_fashion_mnist", lambda *a, **k: None)
    monkeypatch.setattr(plain_data, "read_idx", lambda path: None)
    from neurocircuit.images import rgb_images

    train, test, info = rgb_images(fake, fake, DatasetInfo("fashion_mnist", (1, 28, 28), 10, "classification"),
                                   image_size=32, augment="none")
    image, label = train[(3, 0)]
    assert image.shape == (3, 32, 32) and label == 3 and info.input_shape == (3, 32, 32)
    assert torch.equal(image[0], image[2])
    raw = {"model": "resnet18", "arms": ["kp"], "data": {"name": "synthetic", "image_size": 16, "classes": 4,
                                                         "train_samples": 40, "test_samples": 8},
           "train": {"epochs": 1, "batch_size": 8}, "torch": {"device": "cpu"}}
    ds = run(raw, None)
    assert int(ds["step"][-1]) == 5 and np.isfinite(ds["test_accuracy"]).all()


@pytest.mark.slow
def test_prenatal_phase_on_a_converted_network_aligns_the_readout_only_with_a_fixed_noise_set() -> None:
    """The deep path runs the same PrenatalPhase record: a fixed, memorised noise set lowers the readout's W-B angle;
    fresh noise (the control) does not (measured: 89.6 -> 64.4 deg fixed, -> 98.0 deg fresh)."""
    phase = {"kind": "prenatal", "samples": 384, "batch_size": 32, "learning_rate": 0.2, "record_every": 1000}
    raw = {"model": "resnet18", "torch": {"device": "cpu"}, "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
           "arms": [{"rule": "fa", "label": "fixed", "phases": [{**phase, "dataset_size": 32}]},
                    {"rule": "fa", "label": "fresh", "phases": [phase]}],  # no dataset_size: fresh noise
           "data": {"name": "synthetic", "image_size": 8, "classes": 10, "train_samples": 16, "test_samples": 8}}
    angle = run(raw, None)["prenatal_weight_angle"].sel(layer="fc", seed=0)
    start, fixed, fresh = (float(angle.sel(arm=a).isel(prenatal_step=i)) for a, i in
                           (("fixed", 0), ("fixed", -1), ("fresh", -1)))
    assert float(angle.sel(arm="fresh").isel(prenatal_step=0)) == start  # the same network before the noise
    assert start > 80 and fixed < start - 15 and fresh > start - 5, (start, fixed, fresh)


@pytest.mark.parametrize("rule", ["bp", "fa", "kp", "usf", "frsf", "wm"])
def test_rule_layers_trace_without_graph_breaks_under_bf16_autocast(rule: str) -> None:
    from neurocircuit.nn import convert

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 5))
    convert(model, rule, seed=0)
    torch._dynamo.reset()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        explained = torch._dynamo.explain(model)(torch.randn(2, 3, 6, 6))
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]


def test_compile_and_channels_last_default_to_cuda_only() -> None:
    from neurocircuit.torch.distributed import cuda_default
    from neurocircuit.torch.settings import TorchSettings

    settings = TorchSettings()
    assert settings.compile is None and settings.channels_last is None
    assert cuda_default(settings.compile, torch.device("cuda", 0)) is True
    assert cuda_default(settings.compile, torch.device("cpu")) is False
    assert cuda_default(False, torch.device("cuda", 0)) is False and cuda_default(True, torch.device("cpu")) is True
    with pytest.raises(ConfigError, match="torch.compile"):
        TorchSettings(compile="yes")


@pytest.mark.parametrize("rule", ["fa", "kp", "dfa"])
def test_compiled_rule_layers_give_the_eager_gradients(rule: str) -> None:
    """torch.compile (on by default on CUDA) traces the rule layers — dfa's output hook through graph breaks — and
    gives the same gradients as eager mode (dynamo with the aot_eager backend: the graph capture CUDA uses)."""
    from neurocircuit.nn import convert

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 5))
    convert(model, rule, seed=0)
    x, y = torch.randn(4, 3, 6, 6), torch.tensor([0, 1, 2, 3])
    grads = []
    torch._dynamo.reset()
    for forward in (model, torch.compile(model, backend="aot_eager")):
        model.zero_grad()
        torch.nn.functional.cross_entropy(forward(x), y).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for eager, compiled in zip(*grads):
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-7)


def test_image_folders_ship_uint8_and_are_normalised_per_batch_on_the_device(folder: Path) -> None:
    """Workers decode, crop and flip to uint8; scaling and normalisation run once per batch where the batch is —
    the same values as torchvision's per-sample ToDtype + Normalize."""
    from torchvision.transforms import v2 as T

    from neurocircuit.images import IMAGENET_MEAN, IMAGENET_STD, load_imagefolder

    train, val, _ = load_imagefolder(root=str(folder), image_size=8, val_resize=10)
    batch = torch.stack([val[(k, 0)][0] for k in range(4)])
    assert batch.dtype == torch.uint8 and batch.shape == (4, 3, 8, 8)
    per_sample = T.Compose([T.ToDtype(torch.float32, scale=True), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    expected = torch.stack([per_sample(image) for image in batch])
    torch.testing.assert_close(val.batch_transform(batch), expected, rtol=1e-6, atol=1e-6)
    assert train.batch_transform is val.batch_transform
