"""The GPU targets of the speed and deep-network issues, in one prepared run that fits a short lease.

    NEUROCIRCUIT_DATA=DIR python benchmarks/gpu_targets.py OUT_DIR [--budget 570]    # needs CUDA, a source checkout

In order, each step capped so the whole run ends within ``--budget`` seconds (a step cut short says so):

1. The card and torch.
2. Step time, ResNet-50 224 px batch 64, bf16 autocast + channels_last, every rule and plain autograd, eager
   (``benchmarks/step_time.py``), alone on the GPU.
3. ``benchmarks/data_path.py``: a ResNet-18 proxy epoch against the same epoch on synthetic in-memory data, alone.
4. Two ``neurocircuit run --jobs 32`` runs in the background, every arm and seed its own worker on the one GPU
   (eager; ``torch.compile`` would compile in every process): ``resnet18_fashion_mnist`` for 5 epochs, seeds 0-2, and
   ``resnet18_kp_decay_warmup`` (5 epochs), seeds 0-2, stopped at ``--proxy-cap`` seconds after the start (then the
   arms whose every seed finished are merged by ``--resume --only``). Merged results to ``OUT_DIR/proxy5.nc`` and
   ``OUT_DIR/kp_warmup5.nc``, the tables to the log.
5. Meanwhile step 2 again under ``torch.compile`` (the trainer's default on CUDA): its compilation overlaps step 4,
   its timed rounds wait until step 4 has ended (``--start-after``), so they run alone.

``--only eager,data,proxy,compiled`` runs a subset of steps 2-5; ``--proxy-arms wm,bp`` limits step 4's
``resnet18_fashion_mnist`` to those arms (``--no-kp-warmup`` drops the other simulation). On the first H100 lease
(README) step 4 was stopped at its 435 s cap before its wm arms finished, and step 5 did not fit: compiling
ResNet-50 took 49-132 s per arm with a cold cache while the 30 proxy runs held the CPU (6-19 s with a warm cache).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import tomllib

HERE = Path(__file__).resolve().parent
T0 = time.perf_counter()


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
    parser.add_argument("out", type=Path)
    parser.add_argument("--budget", type=float, default=570.0, help="seconds for the whole run")
    parser.add_argument("--proxy-cap", type=float, default=435.0, help="seconds after the start to stop step 4")
    parser.add_argument("--only", default="eager,data,proxy,compiled", help="the steps to run, comma-separated")
    parser.add_argument("--proxy-arms", default=None, help="step 4: only these arms of resnet18_fashion_mnist")
    parser.add_argument("--no-kp-warmup", action="store_true", help="step 4: leave out resnet18_kp_decay_warmup")
    parser.add_argument("--dry", action="store_true",
                        help="check the orchestration on a CPU: small networks, the default simulation as step 4")
    args = parser.parse_args()
    steps = set(args.only.split(","))
    if not steps <= {"eager", "data", "proxy", "compiled"}:
        parser.error(f"--only: unknown step(s) {', '.join(sorted(steps - {'eager', 'data', 'proxy', 'compiled'}))}")
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path("/tmp/gpu_targets")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    py = sys.executable
    deadline = T0 + args.budget

    def left(reserve: float = 0.0) -> float:
        return deadline - reserve - time.perf_counter()

    sh(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"], 30)
    sh([py, "-c", "import torch, torchvision, numpy; print('torch', torch.__version__, 'torchvision', "
        "torchvision.__version__, 'numpy', numpy.__version__)"], 60)

    step_time = [py, str(HERE / "step_time.py"), "--arch", "resnet50", "--size", "224", "--batch", "64",
                 "--device", "cuda", "--amp", "--rounds", "5", "--steps", "10"]
    proxies = [("resnet18_fashion_mnist", "proxy5", args.proxy_arms), ("resnet18_kp_decay_warmup", "kp_warmup5", None)]
    if args.no_kp_warmup:
        proxies = proxies[:1]
    proxy_settings = ["train.epochs=5", "seeds=[0,1,2]", "torch.device='cuda'", "torch.compile=false"]
    data_path = [py, str(HERE / "data_path.py"), "--device", "cuda"]
    # wm masks its silent inputs on a GPU (no host sync); wm:indexed is the way the first lease measured.
    eager_rules, compiled_rules = "bp,fa,usf,brsf,frsf,kp,wm,wm:indexed", "bp,fa,usf,frsf,kp,wm,wm:indexed"
    if args.dry:
        eager_rules = compiled_rules = "bp"
        step_time = [py, str(HERE / "step_time.py"), "--size", "32", "--batch", "4", "--rounds", "1", "--steps", "1"]
        proxies = [("default", "proxy5", args.proxy_arms), ("default", "kp_warmup5", None)][:len(proxies)]
        proxy_settings = ["train.epochs=1", "seeds=[0,1]"]
        data_path = [py, str(HERE / "data_path.py"), "--device", "cpu", "--samples", "256", "--epochs", "1",
                     "--set", "torch.compile=false"]
    if "eager" in steps:
        sh([*step_time, "--rules", eager_rules], min(150, left(400)))
    if "data" in steps:
        sh(data_path, min(150, left(300)))
    if "proxy" not in steps:
        proxies = []

    # Step 4 in the background; `go` appears when it has ended (or been stopped at its cap).
    go = work / "go"
    procs = []
    for simulation, name, arms in proxies:
        cmd = [py, "-m", "neurocircuit", "run", simulation, "--out", str(work / name), "--jobs", "32", "--quiet",
               "--no-figures"]
        for item in proxy_settings:
            cmd += ["--set", item]
        print(f"{stamp()} background $ {' '.join(cmd + (['--only', arms] if arms else []))}", flush=True)
        log = open(work / f"{name}.log", "w")
        # its own process group, so that a stop at the cap also ends the runs it started
        procs.append((name, cmd, subprocess.Popen(cmd + (["--only", arms] if arms else []), stdout=log,
                                                  stderr=subprocess.STDOUT, start_new_session=True), log))

    def watch() -> None:
        stop_at = T0 + args.proxy_cap
        for name, cmd, proc, log in procs:
            try:
                proc.wait(timeout=max(stop_at - time.perf_counter(), 1))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                # the arms whose every seed finished: --resume reads them back from their checkpoints and merges
                seeds = tomllib.loads(next(s for s in proxy_settings if s.startswith("seeds=")))["seeds"]
                done = sorted({p.parent.name.rsplit("-seed", 1)[0] for p in (work / name).glob("runs/*/results.nc")})
                done = [a for a in done if all((work / name / "runs" / f"{a}-seed{k}" / "results.nc").exists()
                                               for k in seeds)]
                print(f"{stamp()} {name}: stopped at its cap; merging the arms that finished: {done}", flush=True)
                if done:
                    subprocess.run([*cmd, "--resume", "--only", ",".join(done)], stdout=log,
                                   stderr=subprocess.STDOUT, check=False)
            log.close()
            print(f"{stamp()} {name}: ended (exit {proc.returncode})", flush=True)
            print((work / f"{name}.log").read_text()[-6000:], flush=True)
            merged = work / name / "results.nc"
            if merged.exists():
                shutil.copy(merged, args.out / f"{name}.nc")
        go.touch()

    watcher = threading.Thread(target=watch)
    watcher.start()
    if "compiled" in steps:
        sh([*step_time, "--rules", compiled_rules, "--compile", "--start-after", str(go)], left(3))
    watcher.join()
    print(f"{stamp()} done", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
