"""GPU check of torch.compile in `neurocircuit train`: a KP ResNet-18 under bf16 autocast + channels_last, compiled.

    python benchmarks/compile_check.py OUT_DIR     # needs CUDA; prints throughput per epoch and any recompilations
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deep_gpu_check import image_folder  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "compile_check_out")
    folder = image_folder(out / "imagefolder", classes=10, train=64, val=16, side=72)
    for compiled in ("false", "true"):
        cmd = [sys.executable, "-m", "neurocircuit", "train", "imagenet_resnet18", "--arm", "kp",
               "--data-root", str(folder), "--batch-size", "64", "--workers", "4", "--epochs", "3",
               "--no-figures", "--out", str(out / f"compile_{compiled}"), "--set", "data.image_size=64",
               "--set", "data.val_resize=72", "--set", f"torch.compile={compiled}"]
        print(f"$ compile={compiled}", flush=True)
        subprocess.run(cmd, check=False, timeout=200, env={**__import__("os").environ, "TORCH_LOGS": "recompiles"})


if __name__ == "__main__":
    main()
