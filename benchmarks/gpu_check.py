"""GPU check of the torch backend: exactness on CUDA, bf16 autocast + channels_last training, step times.

    python benchmarks/gpu_check.py          # needs a CUDA device; prints one report

Runs from a source checkout (PYTHONPATH=.) with whatever torch the machine has.
"""

from __future__ import annotations

import subprocess
import sys
import time

import torch
import torchvision
from torch import nn

from neurocircuit.nn import FeedbackOptimizer, convert

dev = "cuda"


def exactness() -> None:
    torch.backends.cudnn.deterministic = True
    cases = [dict(kernel_size=3), dict(kernel_size=3, stride=2, padding=1),
             dict(kernel_size=3, dilation=2, padding=2, groups=2), dict(kernel_size=4, padding="same")]
    for case in cases:
        plain = nn.Conv2d(4, 6, **case).double().to(dev)
        layers = {}
        for rule in ("bp", "fa"):
            m = nn.Sequential(nn.Conv2d(4, 6, **case)).double().to(dev)
            m[0].load_state_dict(plain.state_dict())
            convert(m, rule, seed=0)
            layers[rule] = m[0]
        x = torch.randn(3, 4, 13, 12, dtype=torch.float64, device=dev)
        g = torch.randn_like(plain(x))
        grads = {}
        for name, layer in {"plain": plain, **layers}.items():
            xx = x.clone().requires_grad_(True)
            layer(xx).backward(g)
            grads[name] = (xx.grad, layer.weight.grad)
        err_bp = max((a - b).abs().max().item() for a, b in zip(grads["plain"], grads["bp"]))
        fa = layers["fa"]
        if isinstance(fa.padding, str):
            expect_x = None
        else:
            expect_x = torch.nn.grad.conv2d_input(x.shape, fa.feedback_weight, g, fa.stride, fa.padding,
                                                  fa.dilation, fa.groups)
        err_fa = (grads["fa"][0] - expect_x).abs().max().item() if expect_x is not None else float("nan")
        err_w = (grads["fa"][1] - grads["plain"][1]).abs().max().item()
        print(f"conv {case}: |bp-autograd| {err_bp:.1e}, |fa dx - conv2d_input(B)| {err_fa:.1e}, "
              f"|fa dW - autograd dW| {err_w:.1e}")
    lin = nn.Linear(7, 5).double().to(dev)
    m = nn.Sequential(nn.Linear(7, 5)).double().to(dev)
    m[0].load_state_dict(lin.state_dict())
    convert(m, "fa", seed=0)
    x = torch.randn(6, 7, dtype=torch.float64, device=dev, requires_grad=True)
    g = torch.randn(6, 5, dtype=torch.float64, device=dev)
    m(x).backward(g)
    print(f"linear fa: |dx - g @ B| {(x.grad - g @ m[0].feedback_weight).abs().max().item():.1e}")


def amp_training() -> None:
    for rule in ("bp", "fa", "usf", "brsf", "frsf", "kp", "wm"):
        torch.manual_seed(0)
        model = torchvision.models.resnet18(num_classes=100)
        convert(model, rule, seed=0)
        model = model.to(dev, memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
        kp = FeedbackOptimizer(model, opt)
        b0 = model.layer1[0].conv1.feedback_weight
        b0 = b0.clone() if b0 is not None else None
        x = torch.randn(64, 3, 224, 224, device=dev).to(memory_format=torch.channels_last)
        y = torch.randint(0, 100, (64,), device=dev)
        losses = []
        for _ in range(5):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        w = model.layer1[0].conv1.weight
        moved = (None if b0 is None else
                 not torch.equal(b0, model.layer1[0].conv1.feedback_weight))
        fused = kp.twin is not None and kp.twin.param_groups[0].get("fused")
        print(f"{rule:5s} bf16+channels_last: losses {[round(v, 3) for v in losses]}, grad dtype {w.grad.dtype}, "
              f"B moved by training: {moved}, fused twin: {fused}")


def compiled() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    convert(model, "kp", seed=0)
    model = model.to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    FeedbackOptimizer(model, opt)
    cmodel = torch.compile(model)
    x = torch.randn(32, 3, 64, 64, device=dev)
    y = torch.randint(0, 10, (32,), device=dev)
    t0 = time.perf_counter()
    for _ in range(3):
        loss = nn.functional.cross_entropy(cmodel(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"torch.compile kp resnet18: 3 steps ok, loss {loss.item():.3f}, {time.perf_counter() - t0:.1f} s "
          "including compilation")


if __name__ == "__main__":
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {torch.cuda.get_device_name()}")
    exactness()
    amp_training()
    try:
        compiled()
    except Exception as exc:  # report, do not hide: this is a check script
        print(f"torch.compile FAILED: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    sys.stdout.flush()
    for arch, batch in (("resnet18", 128), ("resnet50", 64)):
        subprocess.run([sys.executable, "benchmarks/step_time.py", "--device", "cuda", "--amp", "--arch", arch,
                        "--size", "224", "--batch", str(batch), "--steps", "10", "--rounds", "5",
                        "--rules", "bp,fa,usf,kp"], check=False)
