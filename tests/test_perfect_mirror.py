"""benchmarks/perfect_mirror.py: the control arm whose mirror steps copy W into B exactly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import xarray as xr

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "perfect_mirror.py"

SIMULATION = """
name = "perfect_mirror_test"
model = "mlp_digits"
seeds = [0]
arms = ["bp", { rule = "wm", phases = [
    { kind = "mirror", steps = 4, record_every = 2, active_units = 8, learning_rate = 0.5, decay = 0.5 },
    { kind = "engaged", mirror_every = 1 },
] }]

[data]
name = "digits"
test_fraction = 0.25

[optimizer]
name = "sgd"
lr = 0.05
momentum = 0.9

[mirror]
batch_size = 64

[train]
epochs = 1
batch_size = 64
record_every = 10
"""


def test_a_perfect_mirror_after_every_step_is_backprop(tmp_path: Path) -> None:
    # B copied from W after every optimizer step is W itself in every backward pass: the run must be bp's, to the
    # bit, and every recorded B-W angle 0 (a noisy Hebbian mirror, the unpatched run, is tens of degrees off here).
    sim = tmp_path / "sim.toml"
    sim.write_text(SIMULATION)
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(sim), "--out", str(out), "--no-figures", "--quiet"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    data = xr.open_dataset(out / "results.nc")
    assert data.sizes["step"] > 2
    bp, wm = data.sel(arm="bp"), data.sel(arm="wm")
    np.testing.assert_array_equal(wm.train_loss.values, bp.train_loss.values)
    np.testing.assert_array_equal(wm.test_accuracy.values, bp.test_accuracy.values)
    assert float(np.abs(wm.weight_angle).max()) < 1e-3
    assert np.isfinite(bp.train_loss.values[..., 1:]).all()


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for args in ([], ["--out", str(tmp_path)], ["no_such_simulation", "--out", str(tmp_path)],
                 ["brian2_weight_mirror", "--out", str(tmp_path)]):  # a backend whose mirror it cannot replace
        proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "error" in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
