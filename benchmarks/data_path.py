"""Is the data path the bottleneck? A ResNet-18 proxy epoch against the same epoch on synthetic in-memory data.

    python benchmarks/data_path.py                       # CUDA if present, else CPU (then use --samples to shorten)
    python benchmarks/data_path.py --device cpu --samples 2048 --set torch.compile=false
    python benchmarks/data_path.py --device cpu --samples 256 --set torch.compile=false   # smallest

Fashion-MNIST is looked for where ``neurocircuit run`` looks (``--set data.root=DIR`` or ``$NEUROCIRCUIT_DATA``).

Three arms, one process, the simulation ``resnet18_fashion_mnist`` (bp rule, its optimizer, batch size and
settings; ``torch.compile`` and channels_last as the trainer defaults them on the device):

- ``proxy``: ``neurocircuit``'s trainer on Fashion-MNIST at 32 px, three channels, random flips — what
  ``neurocircuit run resnet18_fashion_mnist`` does (the images held on the device, batches indexed and flipped there);
- ``synthetic``: the same trainer and loop on random N(0, 1) images of the same shape and count, held on the device
  as a plain ``TensorDataset`` (no augmentation);
- ``compute``: a bare loop of the same number of steps over one fixed batch on the device (forward, backward,
  optimizer step): no sampler, no indexing, no metrics, no checkpoints — the floor.

Each trainer arm runs ``--epochs`` epochs (default 2) and reports the last epoch's training throughput (the trainer's
``images_per_second``, which excludes evaluation; compilation falls in the first epoch). The ratios proxy ÷
synthetic (the data path alone) and proxy ÷ compute (everything the trainer adds) are per-step times.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, not an installed one
from neurocircuit.errors import NeurocircuitError
from neurocircuit.nn import FeedbackOptimizer
from neurocircuit.simulation import load_simulation
from neurocircuit.torch.backend import TorchBackend
from neurocircuit.torch.distributed import cuda_default
from neurocircuit.torch.networks import build_network
from neurocircuit.torch.optim import make_optimizer, optimizer_settings
from neurocircuit.torch.settings import torch_settings


def fail(message: str) -> None:
    """Bad input: one line on stderr, exit code 2."""
    print(f"data_path: error: {message}", file=sys.stderr)
    sys.exit(2)


def synthetic_like(train: object, test: object, info: object, ood: object, val: object) -> tuple:
    """Random images of the proxy's shape and count (training, test and validation sets), labels cycling over its
    classes, as in-memory tensors."""
    g = torch.Generator().manual_seed(0)
    shape = tuple(info.input_shape)  # type: ignore[attr-defined]
    classes = info.n_outputs  # type: ignore[attr-defined]

    def make(n: int) -> TensorDataset:
        return TensorDataset(torch.randn((n, *shape), generator=g), torch.arange(n) % classes)

    return make(len(train)), make(len(test)), info, (), make(len(val))  # type: ignore[arg-type]


def subset(data: tuple, samples: int | None) -> tuple:
    """The first ``samples`` training images (the test and validation sets shortened alike) — for a quick run on a
    CPU. The proxy's data sets hold their images as tensors (``images``, ``labels``); they are cut in place."""
    if samples is None:
        return data
    train, test, info, ood, val = data
    for ds, n in ((train, samples), (test, max(samples // 6, 64)), (val, max(samples // 6, 64))):
        ds.images, ds.labels = ds.images[:n], ds.labels[:n]
        ds.tensors = (ds.images, ds.labels)
    return train, test, info, ood, val


def last_epoch_throughput(ds: object) -> float:
    return float(ds["images_per_second"].isel(step=-1))  # type: ignore[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=None, help="use only this many training images")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    if args.epochs < 2:  # the last epoch is timed: the first carries compilation and the process's warm-up
        fail(f"--epochs must be >= 2, got {args.epochs}")
    if args.samples is not None and args.samples < 256:
        fail(f"--samples must be >= 256, got {args.samples}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        fail(f"--device {args.device}: no CUDA device here (use --device cpu)")
    try:
        sim = load_simulation("resnet18_fashion_mnist", [
            "arms=['bp']", "seeds=[0]", f"train.epochs={args.epochs}", "train.record_every='epoch'",
            f"torch.device='{args.device}'", *args.settings])
        backend = TorchBackend()
        backend.prepare(sim)
        proxy = subset(backend.load_data(sim), args.samples)
    except NeurocircuitError as exc:
        fail(str(exc))
    arm = sim.arms[0]
    synthetic = synthetic_like(*proxy)
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in (("proxy", proxy), ("synthetic", synthetic)):
            t0 = time.perf_counter()
            ds = backend.run_arm(sim, arm, 0, data, out=Path(tmp) / name, progress=False)
            rates[name] = last_epoch_throughput(ds)
            print(f"{name}: {args.epochs} epochs in {time.perf_counter() - t0:.1f} s (compilation and evaluation "
                  f"included); last epoch {rates[name]:.0f} img/s", flush=True)

    # The floor: the same network, optimizer and step, one batch already on the device.
    device = torch.device(args.device)
    train_set, _, info, *_ = proxy
    batch = sim.train.batch_size
    steps = len(train_set) // batch
    model = build_network(sim.model, rule=arm.rule, seed=0, num_classes=info.n_outputs).to(device)
    cuda = device.type == "cuda"
    settings = torch_settings(sim)
    channels_last = cuda_default(settings.channels_last, device)  # as the trainer decides them
    compiled = cuda_default(settings.compile, device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    name, settings = optimizer_settings(sim.optimizer, batch)
    optimizer = make_optimizer(model.parameters(), name, **settings)
    FeedbackOptimizer(model, optimizer)
    forward = torch.compile(model) if compiled else model
    x = torch.randn((batch, *info.input_shape), device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, info.n_outputs, (batch,), device=device)

    def steps_of(n: int) -> float:
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for _ in range(n):
            loss = torch.nn.functional.cross_entropy(forward(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    steps_of(3)  # warm-up, compilation
    rates["compute"] = steps * batch / steps_of(steps)
    where = torch.cuda.get_device_name(device) if cuda else f"cpu x{torch.get_num_threads()}"
    print(f"ResNet-18 proxy, bp, batch {batch}, {steps} steps/epoch, {where}, compile={compiled}, "
          f"channels_last={channels_last}, torch {torch.__version__}")
    print(f"{'arm':<10} {'img/s':>9} {'ms/step':>8} {'proxy ÷ arm (time)':>19}")
    for arm_name, rate in rates.items():
        print(f"{arm_name:<10} {rate:9.0f} {1e3 * batch / rate:8.2f} {rate / rates['proxy']:19.3f}")


if __name__ == "__main__":
    main()
