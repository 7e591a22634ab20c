"""GPU check of deep training (issue: ResNet at ImageNet scale). One script, one report.

    python benchmarks/deep_gpu_check.py OUT_DIR          # needs CUDA; runs from a source checkout

1. ResNet-50, 224 px, bf16 autocast + channels_last, synthetic ImageNet-shaped batches on the GPU: training
   throughput (img/s) of plain autograd, bp, fa, kp and wm (one mirror step per training step), one run.
2. A 1-GPU ``torchrun`` of ``neurocircuit train`` (ResNet-18, kp) on a generated ImageFolder, then ``--resume``
   for one more epoch with ``compile = true`` (the rule layers' custom backward under torch.compile).
3. The proxy comparison: ResNet-18 on Fashion-MNIST at 32 px, every rule of resnet18_fashion_mnist, 3 epochs
   (needs Fashion-MNIST where ``neurocircuit.data.find_fashion_mnist`` looks, e.g. $NEUROCIRCUIT_DATA).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image


def sh(cmd: list[str], timeout: float) -> None:
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    try:
        subprocess.run(cmd, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"(timed out after {timeout:.0f} s)")
    print(f"({time.perf_counter() - t0:.1f} s)", flush=True)


def image_folder(root: Path, classes: int = 10, train: int = 64, val: int = 16, side: int = 80) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("val", val)):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                mean = rng.uniform(0, 255, 3) * 0.3 + 25 * c
                pixels = np.clip(rng.normal(mean, 50, (side, side, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.JPEG", format="JPEG")
    return root


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "gpu_check_out")
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    sh(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"], 30)
    sh([py, "-c", "import torch; print('torch', torch.__version__)"], 60)

    sh([py, "benchmarks/step_time.py", "--arch", "resnet50", "--size", "224", "--batch", "128", "--device", "cuda",
        "--amp", "--rules", "bp,fa,kp,wm", "--rounds", "8", "--steps", "5"], 150)

    folder = image_folder(out / "imagefolder")
    common = ["-m", "neurocircuit", "train", "imagenet_resnet18", "--arm", "kp", "--data-root", str(folder),
              "--batch-size", "32", "--workers", "4", "--out", str(out / "torchrun_kp"), "--no-figures",
              "--set", "data.image_size=64", "--set", "data.val_resize=72", "--set", "torch.checkpoint_every=10"]
    torchrun = [py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    sh([*torchrun, *common, "--epochs", "2"], 120)
    sh([*torchrun, *common, "--epochs", "3", "--resume", "--set", "torch.compile=true"], 180)

    for arm in ("bp", "fa", "usf", "kp", "wm"):
        sh([py, "-m", "neurocircuit", "train", "resnet18_fashion_mnist", "--arm", arm, "--quiet", "--no-figures",
            "--out", str(out / f"proxy_{arm}"), "--set", "torch.device='cuda'"], 120)
    import xarray as xr

    print(f"{'arm':<6} {'epochs':>6} {'test acc %':>10} {'max angle':>10} {'img/s':>8}")
    for arm in ("bp", "fa", "usf", "kp", "wm"):
        path = out / f"proxy_{arm}" / "results.nc"
        if path.exists():
            ds = xr.open_dataset(path).isel(arm=0, seed=0, step=-1)
            print(f"{arm:<6} {int(ds['epoch']):>6} {100 * float(ds['test_accuracy']):10.2f} "
                  f"{float(ds['weight_angle'].max()):10.2f} {float(ds['images_per_second']):8.0f}")


if __name__ == "__main__":
    main()
