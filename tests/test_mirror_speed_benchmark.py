"""benchmarks/brian2_mirror_speed.py: interleaved timing rounds and its bad input."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "brian2_mirror_speed.py"


def load_benchmark():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("brian2_mirror_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_interleaved_rounds_run_every_timer_once_per_round_in_a_rotated_order() -> None:
    calls: list[str] = []
    timers = {name: (lambda name=name: calls.append(name) or float(len(calls))) for name in "abc"}
    rates = load_benchmark().interleaved(timers, 3)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert rates == {"a": [1.0, 6.0, 8.0], "b": [2.0, 4.0, 9.0], "c": [3.0, 5.0, 7.0]}


@pytest.mark.parametrize("args,message", [
    (["--models", "nosuch"], "unknown model 'nosuch'"),
    (["--plasticity-dt", "0.7 ms"], "must be a whole multiple of brian2.dt"),
    (["--plasticity-dt", "1"], "wrong dimensions"),
    (["--repeats", "0"], "--repeats must be at least 1"),
    (["--seconds", "0"], "--seconds must be positive"),
])
def test_bad_input_is_one_line_and_exit_2_before_anything_runs(args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          cwd=SCRIPT.parents[1])
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert message in done.stderr
