"""The GPU speed targets (every rule's step <= 1.05x plain autograd compiled, wm <= 1.15x; ResNet-50 bf16), one run.

    NEUROCIRCUIT_DATA=DIR python benchmarks/gpu_targets.py [--budget 570]    # needs CUDA, a source checkout
    python benchmarks/gpu_targets.py --device cpu --only eager        # smallest: the orchestration on a CPU (smoke)

In order, each step capped so the whole run ends within ``--budget`` seconds (a step cut short says so):

1. The card and torch.
2. Step time, ResNet-50 224 px batch 64, bf16 autocast + channels_last, every rule and plain autograd, eager
   (``benchmarks/step_time.py``); ``wm`` takes the device's sync-free masked mirror step, ``wm:indexed`` the way
   the first lease measured.
3. ``benchmarks/data_path.py``: a ResNet-18 proxy epoch against the same epoch on synthetic in-memory data.
4. Step 2 again under ``torch.compile`` (the trainer's default on CUDA), every arm compiled, autograd too: the
   ratios the targets name.

``--only eager,data,compiled`` runs a subset of steps 2-4. ``--device cpu`` runs the same steps at their smallest
sizes on the CPU (ResNet-18 32 px, batch 4; data_path on 256 images, eager), to check the orchestration.

The proxy accuracy runs this script used to start in the background are library commands (results book:
resnet18_proxy_3seeds_h100)::

    neurocircuit run resnet18_fashion_mnist --out DIR --jobs 32 --set train.epochs=5 --set "seeds=[0,1,2]" \
        --set "torch.device='cuda'" --set torch.compile=false
    neurocircuit run resnet18_kp_decay_warmup --out DIR2 --jobs 32 --set train.epochs=5 --set "seeds=[0,1,2]" \
        --set "torch.device='cuda'" --set torch.compile=false
    neurocircuit table paired DIR/results.nc DIR2/results.nc@warmup --ref bp

On the first H100 lease compiling ResNet-50 took 49-132 s per arm with a cold cache while 30 proxy runs held the
CPU (6-19 s with a warm cache).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
T0 = time.perf_counter()
STEPS = ("eager", "data", "compiled")


def stamp() -> str:
    return f"[{time.perf_counter() - T0:5.0f} s]"


def sh(cmd: list[str], timeout: float) -> int | None:
    """Run a step to its end or its cap; its output goes straight to ours."""
    print(f"{stamp()} $ {' '.join(cmd)}", flush=True)
    try:
        code = subprocess.run(cmd, check=False, timeout=max(timeout, 1)).returncode
        print(f"{stamp()} exit {code}", flush=True)
        return code
    except subprocess.TimeoutExpired:
        print(f"{stamp()} (cut short after {timeout:.0f} s)", flush=True)
    except OSError as exc:
        print(f"{stamp()} (could not start: {exc})", flush=True)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=570.0, help="seconds for the whole run")
    parser.add_argument("--only", default=",".join(STEPS), help="the steps to run, comma-separated")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cpu: every step at its smallest size, to check the orchestration")
    args = parser.parse_args()
    steps = set(args.only.split(","))
    if not steps <= set(STEPS):
        parser.error(f"--only: unknown step(s) {', '.join(sorted(steps - set(STEPS)))}")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("no CUDA device here (--device cpu runs the steps at their smallest sizes on the CPU)")
    py = sys.executable
    deadline = T0 + args.budget

    def left(reserve: float = 0.0) -> float:
        return deadline - reserve - time.perf_counter()

    if args.device == "cuda":
        sh(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"], 30)
    sh([py, "-c", "import torch, torchvision, numpy; print('torch', torch.__version__, 'torchvision', "
        "torchvision.__version__, 'numpy', numpy.__version__)"], 60)

    step_time = [py, str(HERE / "step_time.py"), "--arch", "resnet50", "--size", "224", "--batch", "64",
                 "--device", "cuda", "--amp", "--rounds", "5", "--steps", "10"]
    data_path = [py, str(HERE / "data_path.py"), "--device", "cuda"]
    # wm masks its silent inputs on a GPU (no host sync); wm:indexed is the way the first lease measured.
    eager_rules, compiled_rules = "bp,fa,usf,brsf,frsf,kp,wm,wm:indexed", "bp,fa,usf,frsf,kp,wm,wm:indexed"
    if args.device == "cpu":
        eager_rules = compiled_rules = "bp,wm"
        step_time = [py, str(HERE / "step_time.py"), "--size", "32", "--batch", "4", "--rounds", "1", "--steps", "1"]
        data_path = [py, str(HERE / "data_path.py"), "--device", "cpu", "--samples", "256", "--epochs", "2",
                     "--set", "torch.compile=false"]
    if "eager" in steps:
        sh([*step_time, "--rules", eager_rules], min(150, left(400)))
    if "data" in steps:
        sh(data_path, min(150, left(300)))
    if "compiled" in steps:
        sh([*step_time, "--rules", compiled_rules, "--compile"], left(3))
    print(f"{stamp()} done", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
