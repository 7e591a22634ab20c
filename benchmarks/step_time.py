"""Per-step training time of each feedback rule relative to backprop, measured in one run.

    python benchmarks/step_time.py                      # ResNet-18, 64x64, batch 32, CPU
    python benchmarks/step_time.py --device cuda --amp  # on a GPU, bf16 autocast, channels_last
    python benchmarks/step_time.py --rules bp,fa,usf,kp,wm   # wm with its mirroring schedule
    python benchmarks/step_time.py --device cuda --amp --compile   # every arm under torch.compile (the trainer's
                                                                   # default on CUDA); compile time printed apart
    python benchmarks/step_time.py --rules bp,wm,wm:indexed --device cuda --amp   # the two ways to leave out
                                                                   # the mirror's silent inputs, side by side
    python benchmarks/step_time.py --size 32 --batch 2 --rules bp,wm --rounds 1 --steps 1   # smallest (smoke test)

Every arm is a torchvision model with the same weights: ``autograd`` is the unconverted network (plain
backprop, the reference of the ratios), the others are converted with ``neurocircuit.nn.convert``.
A step is forward + backward + optimizer step (SGD, momentum 0.9, weight decay 1e-4), KP's B update
included; ``wm`` also runs its mirror step after every ``--mirror-every`` training steps (the mirror settings of
``simulations/imagenet_resnet18.toml``: 2048 noise samples, 64 active inputs). Arms are timed in interleaved
rounds; the median and the minimum over rounds of the mean step time are reported with their ratios to
``autograd`` (and the median's ratio to the ``bp`` rule's), and the median's throughput in images per second.
``wm:masked`` and ``wm:indexed`` force how a mirror step leaves out the silent inputs (the ``masked`` argument of
``neurocircuit.nn.mirror_update``); plain ``wm`` takes the device's default (masked on a GPU, indexed on the CPU).
With ``--compile`` every arm's network (``autograd`` included) runs through ``torch.compile``, as
``neurocircuit train`` does on CUDA; the mirror step stays eager. The warm-up (compilation included) is timed
apart and printed, never mixed into the step times.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, not an installed one
from neurocircuit import list_rules
from neurocircuit.nn import FeedbackOptimizer, convert, mirror_layers, mirror_step
from neurocircuit.simulation import load_simulation

MIRROR_PATHS = {"": None, "masked": True, "indexed": False}


def make_arm(arch: str, rule: str | None, device: str, channels_last: bool, compiled: bool):
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(num_classes=100)
    if rule is not None:
        convert(model, rule, seed=0)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    FeedbackOptimizer(model, opt)  # hooks into opt.step() for kp; a no-op for the other rules
    forward = torch.compile(model) if compiled else model
    return forward, model, opt, mirror_layers(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--rules", default="bp,fa,usf,brsf,frsf,kp,wm")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2, help="steps per arm per round")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast and channels_last")
    parser.add_argument("--mirror-every", type=int, default=1, help="wm: a mirror step every N training steps")
    parser.add_argument("--compile", action="store_true", help="torch.compile every arm's network")
    parser.add_argument("--start-after", type=Path, default=None, metavar="PATH",
                        help="after the warm-up, wait until PATH exists before the timed rounds (to overlap "
                             "compilation with other work that must not share the timed rounds)")
    args = parser.parse_args()
    for name in ("size", "batch", "steps", "rounds", "mirror_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device here (use --device cpu)")
    mirror = load_simulation("imagenet_resnet18").mirror
    generator = torch.Generator(device=args.device).manual_seed(0)

    arms = {"autograd": None} | {r: r.partition(":")[0] for r in args.rules.split(",")}
    for name, rule in arms.items():
        path = name.partition(":")[2]
        if rule is not None and (rule not in list_rules() or path not in MIRROR_PATHS or (path and rule != "wm")):
            parser.error(f"--rules: unknown arm {name!r} (one of {', '.join(list_rules())}, or wm:masked / "
                         "wm:indexed)")
    built = {name: make_arm(args.arch, rule, args.device, args.amp, args.compile) for name, rule in arms.items()}
    x = torch.randn(args.batch, 3, args.size, args.size, device=args.device)
    if args.amp:
        x = x.to(memory_format=torch.channels_last)
    y = torch.randint(0, 100, (args.batch,), device=args.device)

    def run(name: str, steps: int) -> float:
        forward, model, opt, mirrored = built[name]
        masked = MIRROR_PATHS[name.partition(":")[2]]
        sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
        sync()
        t0 = time.perf_counter()
        for step in range(steps):
            with torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.amp):
                loss = torch.nn.functional.cross_entropy(forward(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if mirrored and step % args.mirror_every == 0:
                mirror_step(model, mirror, generator=generator, layers=mirrored, masked=masked)
        sync()
        return (time.perf_counter() - t0) / steps

    warm_up = {}
    for name in built:  # warm-up (and compilation, with --compile)
        t0 = time.perf_counter()
        run(name, 3)
        warm_up[name] = time.perf_counter() - t0
        if args.compile:  # compiling can take minutes: say how far it got
            print(f"compiled {name} in {warm_up[name]:.1f} s", flush=True)
    waited = time.perf_counter()
    while args.start_after is not None and not args.start_after.exists():
        time.sleep(0.5)
    waited = time.perf_counter() - waited
    times: dict[str, list[float]] = {name: [] for name in built}
    for _ in range(args.rounds):
        for name in built:
            times[name].append(run(name, args.steps))
    ref = statistics.median(times["autograd"])
    ref_min = min(times["autograd"])
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu x{torch.get_num_threads()}"
    print(f"{args.arch}, {args.size}x{args.size}, batch {args.batch}, {device}, amp={args.amp}, "
          f"compile={args.compile}, {args.rounds} rounds x {args.steps} steps, torch {torch.__version__}")
    print("warm-up (3 steps" + (", compilation included" if args.compile else "") + "), s: "
          + ", ".join(f"{name} {t:.1f}" for name, t in warm_up.items())
          + (f"; then waited {waited:.0f} s for {args.start_after}" if args.start_after else ""))
    bp = statistics.median(times["bp"]) if "bp" in times else math.nan
    print(f"{'arm':<12} {'median ms':>10} {'/autograd':>10} {'/bp rule':>9} {'min ms':>8} {'/autograd':>10} "
          f"{'img/s':>8} {'img/s / bp':>10}")
    for name, ts in times.items():
        med, low = statistics.median(ts), min(ts)
        print(f"{name:<12} {1e3 * med:10.1f} {med / ref:10.3f} {med / bp:9.3f} {1e3 * low:8.1f} {low / ref_min:10.3f} "
              f"{args.batch / med:8.1f} {bp / med:10.3f}")


if __name__ == "__main__":
    main()
