"""Smoke tests of benchmarks/: every timing script run as a subprocess at its smallest size prints its table and
ratios measured in that run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fakes import fake_fashion_mnist

ROOT = Path(__file__).parents[1]


def run(script: str, *args: str, env: dict[str, str] | None = None, timeout: float = 240) -> str:
    """Run ``benchmarks/<script>`` from the repository root (the script puts the checkout first on sys.path)."""
    done = subprocess.run([sys.executable, f"benchmarks/{script}", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def table(out: str, header: list[str]) -> dict[str, list[str]]:
    """The rows after the line whose words start with ``header``, by their first word (a name, then a number), up
    to the first line that is not such a row."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:len(header)] == header)
    width = len(lines[start].split())
    rows = {}
    for line in lines[start + 1:]:
        cells = line.split()
        if len(cells) < 2 or not cells[0][0].isalpha() or not cells[1].replace(".", "", 1).isdigit():
            break
        rows[cells[0]] = cells[1:]
    assert rows and all(len(cells) + 1 <= width for cells in rows.values()), out
    return rows


def positive(text: str) -> float:
    value = float(text)
    assert np.isfinite(value) and value > 0, text
    return value


@pytest.mark.slow  # 11 s alone, 25 s with the machine shared
def test_step_time_prints_every_arm_against_autograd() -> None:
    out = run("step_time.py", "--size", "32", "--batch", "2", "--rules", "bp,wm", "--rounds", "1", "--steps", "1")
    rows = table(out, ["arm", "median", "ms", "/autograd", "/bp", "rule"])
    assert list(rows) == ["autograd", "bp", "wm"]
    assert float(rows["autograd"][1]) == 1.0 and float(rows["bp"][2]) == 1.0  # each arm divided by its reference
    reference = positive(rows["autograd"][0])
    for cells in rows.values():
        ms, ratio = positive(cells[0]), positive(cells[1])
        # times are printed to 0.1 ms and ratios to 0.001: the quotient of printed times carries both roundings
        assert ratio == pytest.approx(ms / reference, abs=ratio * (0.05 / ms + 0.05 / reference) + 5e-4)


def test_mirror_cost_prints_each_arm_over_bp() -> None:
    rows = table(run("mirror_cost.py", "--rounds", "1", "--steps", "2"), ["arm", "ms/step", "÷", "bp"])
    assert list(rows) == ["bp", "fa", "wm"] and float(rows["bp"][1]) == 1.0
    for ms, ratio in rows.values():
        assert positive(ratio) == pytest.approx(positive(ms) / float(rows["bp"][0]), abs=2e-3)


def test_sweep_speed_prints_both_wall_times_and_the_speed_up() -> None:
    out = run("sweep_speed.py", "--epochs", "1", "--seeds", "1")
    assert out.startswith("4-point sweep (digits, fa+kp, 1 epochs per point)")
    serial = positive(out.split("serial", 1)[1].split()[0])
    parallel = positive(out.split("2 workers", 1)[1].split()[0])
    speed_up = positive(out.split("speed-up", 1)[1].split()[0].rstrip("x"))
    assert speed_up == pytest.approx(serial / parallel, rel=0.15)  # the times are printed to 0.1 s


def test_brian2_mirror_speed_numpy_only_prints_the_ratio_to_the_hand_loop() -> None:
    out = run("brian2_mirror_speed.py", "--models", "mlp_digits", "--seconds", "0.04", "--repeats", "1",
              "--numpy-only")
    rows = table(out, ["circuit", "sim", "s", "hand", "numpy", "numpy", "numpy/hand", "build", "s"])
    hand, numpy_rate, median = (positive(x) for x in rows["mlp_digits"][1:4])
    assert rows["mlp_digits"][0] == "0.04" and rows["mlp_digits"][4] == f"[{median:.2f}-{median:.2f}]"
    assert median == pytest.approx(numpy_rate / hand, abs=0.02)  # one round: its ratio of the printed rates


def test_brian2_spiking_speed_prints_each_circuit_and_its_ratio_to_the_rate_circuit() -> None:
    out = run("brian2_spiking_speed.py", "--samples", "2", "--repeats", "1", "--devices", "numpy")
    assert "0.3 s simulated" in out  # 2 training + 1 test window of 100 ms
    rows = table(out, ["circuit/device", "sim", "s", "/", "wall", "s", "build", "s"])
    assert set(rows) == {"rate/numpy", "poisson/numpy", "lif/numpy"}
    rate = positive(rows["rate/numpy"][0])
    for kind in ("poisson", "lif"):
        speed, ratio = positive(rows[f"{kind}/numpy"][0]), positive(rows[f"{kind}/numpy"][2])
        # one round: its ratio of the rates, which are printed rounded to 0.001 (slow numpy rates make that ~1 %)
        assert (speed - 5e-4) / (rate + 5e-4) - 5e-4 <= ratio <= (speed + 5e-4) / (rate - 5e-4) + 5e-4
        assert rows[f"{kind}/numpy"][3] == f"({ratio:.3f}-{ratio:.3f})"


@pytest.mark.slow
def test_data_path_prints_proxy_synthetic_and_compute(tmp_path: Path) -> None:
    fake_fashion_mnist(tmp_path / "fashion-mnist", n_train=320, n_test=64)
    import os

    out = run("data_path.py", "--device", "cpu", "--samples", "256", "--set", "torch.compile=false",
              env={**os.environ, "NEUROCIRCUIT_DATA": str(tmp_path)})
    rows = table(out, ["arm", "img/s", "ms/step", "proxy"])
    assert list(rows) == ["proxy", "synthetic", "compute"] and float(rows["proxy"][2]) == 1.0
    # Each column is printed rounded from one unrounded rate (img/s to 1, ms to 0.01, the ratio to 0.001): they must
    # agree within what those roundings allow (at a loaded machine's ~14 img/s, 1 img/s is 4 %).
    proxy = positive(rows["proxy"][0])
    for rate, ms, ratio in rows.values():
        r = positive(rate)
        assert (r - 0.5) / (proxy + 0.5) - 5e-4 <= positive(ratio) <= (r + 0.5) / (proxy - 0.5) + 5e-4
        assert 1e3 * 128 / (r + 0.5) - 0.005 <= positive(ms) <= 1e3 * 128 / (r - 0.5) + 0.005  # batch 128


@pytest.mark.slow
def test_gpu_targets_runs_its_steps_at_their_smallest_on_a_cpu() -> None:
    out = run("gpu_targets.py", "--device", "cpu", "--only", "eager")
    assert "step_time.py --size 32 --batch 4" in out and out.rstrip().endswith("done")
    rows = table(out, ["arm", "median", "ms", "/autograd"])
    assert list(rows) == ["autograd", "bp", "wm"] and all(positive(cells[1]) for cells in rows.values())
    assert "nvidia-smi" not in out and "data_path.py" not in out  # only the step asked for


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where there is no CUDA device")
@pytest.mark.parametrize("script,args", [("gpu_targets.py", []), ("step_time.py", ["--device", "cuda"]),
                                         ("data_path.py", ["--device", "cuda"])])
def test_gpu_scripts_refuse_a_missing_cuda_device_in_one_line(script: str, args: list[str]) -> None:
    done = subprocess.run([sys.executable, f"benchmarks/{script}", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert "no CUDA device here" in done.stderr.strip().splitlines()[-1], done.stderr
