"""Limits checked before work (neurocircuit.limits): memory, time steps and recorded samples, training steps, sweep
sizes and data shapes. Every refusal: exit code 2, one line on stderr, no traceback, nothing written."""

import re
from pathlib import Path

import numpy as np
import pytest
from fakes import fake_fashion_mnist
from oneline import refused_in_one_line

from neurocircuit import limits
from neurocircuit.cli import main
from neurocircuit.errors import ConfigError

SIM = "default"
BRIAN = "brian2_weight_mirror"

BOMB = """name = "bomb"
[[populations]]
name = "x"
shape = [64]
[[populations]]
name = "h1"
shape = [1000000]
[[populations]]
name = "h2"
shape = [1000000]
[[populations]]
name = "y"
shape = [10]
[[projections]]
source = "x"
target = "h1"
[[projections]]
source = "h1"
target = "h2"
[[projections]]
source = "h2"
target = "y"
"""


def S(*settings: str) -> list[str]:
    return [a for s in settings for a in ("--set", s)]


def _refused(args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> float:
    """The one-line refusal of ``args`` (see tests/oneline.py), with the bomb circuit at hand; the seconds taken."""
    (tmp_path / "bomb.toml").write_text(BOMB)
    return refused_in_one_line(args, message, tmp_path, capsys)


RUN = {
    # memory: estimated from the description, never allocated
    "torch memory bomb": ([SIM, *S('model="{tmp}/bomb.toml"')],
                          "projection h1→h2 needs 16.0 TB (1,000,000×1,000,000 float32 weights"),
    "brian2 memory bomb": ([BRIAN, *S('model="{tmp}/bomb.toml"')],
                           "projection h1→h2 needs 80.0 TB (1,000,000×1,000,000 W and B synapses)"),
    # Brian2 time steps: per window at load time, a whole protocol before the first run
    "brian2 dt 1e-300 ms": ([BRIAN, *S('brian2.dt="1e-300 ms"')],
                            "brian2.presentation / brian2.dt (0.04 s / 1e-303 s, time steps per window) is 4e+301"),
    "brian2 presentation 1e300 s": ([BRIAN, *S('brian2.presentation="1e300 second"')],
                                    "time steps per window) is 2e+303, above the ceiling of 1e+09"),
    "brian2 presentation below dt": (["brian2_learning", *S('brian2.presentation="0.1 ms"', 'brian2.settle="0 ms"')],
                                     "time steps per window) is 0.2: nothing would run"),
    "brian2 record_dt 1e-9 ms": ([BRIAN, *S('brian2.record_dt="1e-9 ms"')],
                                 "brian2.record_dt (1e-12 s) must be >= brian2.dt (0.0005 s)"),
    "brian2 record_dt 1e300 s": ([BRIAN, *S('brian2.record_dt="1e300 second"')],
                                 "brian2.record_dt (1e+300 s) is longer than the simulated duration (40 s: "
                                 "1,001 windows"),
    "brian2 steps beyond the ceiling": ([BRIAN, *S("phases.0.steps=100000000")],
                                        "100,000,001 windows × 80 time steps (brian2.presentation / brian2.dt) is "
                                        "8e+09"),
    "brian2 samples beyond the ceiling": ([BRIAN, *S("phases.0.steps=1000000", 'brian2.record_dt="0.5 ms"')],
                                          "an activity monitor's 80,000,081 samples (brian2.record_dt 0.0005 s) × 20 "
                                          "units is 1.6e+09"),
    # torch: steps of a phase, and epochs x batches once the data's size is known
    "torch mirror steps": ([SIM, *S('phases=[{kind="mirror", steps=10000000000}, {kind="engaged"}]')],
                           "phase 'mirror': 10000000000 steps is 1e+10, above the ceiling"),
    "torch interleaved mirror steps": ([SIM, *S('arms=["wm"]', "train.epochs=1", 'phases=[{kind="engaged", '
                                            'mirror_every=1, mirror_steps=1000000000000}]')],
                                       "mirror_every 1 × mirror_steps 1,000,000,000,000 interleaved mirror steps is "),
    "torch epochs x batches": ([SIM, *S("train.epochs=1000000000")], "1000000000 epochs × "),
    # shapes: the circuit's inputs against the data's, before the protocol is unrolled
    "brian2 data do not fit": (["brian2_learning", *S("model=mlp_784_500_10")],
                               "dataset 'digits' has inputs of shape (1, 8, 8), but model 'mlp_784_500_10' expects "
                               "(784,)"),
    # sweeps: counted from the axes, refused above the ceiling
    "sweep step 0": (["sweep", SIM, *S("seed=0:5:0")], "--set seed=0:5:0: the step of a range must not be 0"),
}


@pytest.mark.parametrize("case", list(RUN))
def test_limits_refused_before_work_in_one_line(case: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args, message = RUN[case]
    _refused([*(args if args[0] == "sweep" else ["run", *args]), "--out", "{tmp}/out"], message, tmp_path, capsys)


def test_a_million_point_sweep_is_answered_at_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for axes in (["seed=0:1000000"], ["optimizer.lr=lin:0.01:1:1000000000000", "seed=0:3"]):
        elapsed = _refused(["sweep", SIM, *S(*axes), "--out", "{tmp}/s"], "points, more than 10,000", tmp_path,
                           capsys)
        assert elapsed < 5, f"{axes}: answered in {elapsed:.1f} s"


def test_yes_runs_a_sweep_above_the_ceiling(tmp_path: Path, capsys: pytest.CaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_SWEEP_POINTS", 1)
    args = ["sweep", SIM, *S("train.epochs=0", 'arms=["bp"]', "seeds=[0]", "optimizer.lr=0.1,0.2"), "--workers", "1",
            "--out", "{tmp}/s"]
    _refused(args, "the sweep has 2 points, more than 1", tmp_path, capsys)
    assert main([a.replace("{tmp}", str(tmp_path)) for a in [*args, "--yes"]]) == 0
    assert "2 points finished, 0 failed" in capsys.readouterr().out


def test_a_sweep_parses_each_axis_value_up_front_and_no_more(monkeypatch: pytest.MonkeyPatch) -> None:
    from neurocircuit import sweep_points
    from neurocircuit.sweep import load_sweep, validate

    # a bad value anywhere on an axis is refused before anything runs
    with pytest.raises(ConfigError, match=r"sweep point .*optimizer.lr.*-1"):
        validate(load_sweep(SIM, ["optimizer.lr=0.1,0.2,-1", "seed=0:3"]))
    parsed = []
    monkeypatch.setattr(sweep_points, "_prepare", lambda raw, where: parsed.append(where))
    validate(load_sweep(SIM, ["optimizer.lr=0.1,0.2,0.3", "seed=0:4"]))  # 12 points: 1 + 2 + 3 values checked
    assert len(parsed) == 6
    parsed.clear()
    validate(load_sweep(SIM, ["seed=0:1000000"]))
    assert len(parsed) == sweep_points.CHECKED_UP_FRONT


def test_memory_ceiling_is_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture) -> None:
    from neurocircuit.simulation import load_simulation

    (tmp_path / "bomb.toml").write_text(BOMB)
    monkeypatch.setenv(limits.MEMORY_ENV, "30 TB")  # a machine that has it (× 1.5): validated, nothing allocated
    assert load_simulation(SIM, [f'model="{tmp_path}/bomb.toml"']).model_name.endswith("bomb.toml")
    monkeypatch.setenv(limits.MEMORY_ENV, "1 KiB")  # and a smaller one refuses the default model
    _refused(["run", SIM, *S("train.epochs=0"), "--out", "{tmp}/out"], "$NEUROCIRCUIT_MEMORY_LIMIT allows 1.0 KiB",
             tmp_path, capsys)
    monkeypatch.setenv(limits.MEMORY_ENV, "lots")
    _refused(["run", SIM, "--out", "{tmp}/out"], "$NEUROCIRCUIT_MEMORY_LIMIT = 'lots': expected a number of bytes",
             tmp_path, capsys)


def test_brian2_fashion_mnist_into_the_digits_circuit_names_both_shapes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture) -> None:
    fake_fashion_mnist(tmp_path / "data" / "fashion-mnist", n_train=60, n_test=20)
    monkeypatch.setenv("NEUROCIRCUIT_DATA", str(tmp_path / "data"))
    _refused(["run", "brian2_learning", *S("data.name=fashion_mnist"), "--out", "{tmp}/out"],
             "dataset 'fashion_mnist' has inputs of shape (1, 28, 28), but model 'mlp_digits' expects (64,)",
             tmp_path, capsys)


def test_counts_and_sizes() -> None:
    assert limits.check_count(3.0, "x", 10) == 3
    for count, needle in ((0, "is 0: nothing would run"), (11, "is 11, above the ceiling of 1e+01"),
                          (float("inf"), "is inf, above")):
        with pytest.raises(ConfigError, match=re.escape(needle)):
            limits.check_count(count, "x", 10)
    assert limits.format_bytes(24 * 2**30) == "24 GiB" and limits.format_bytes(8e12) == "8.0 TB"
    assert limits.available_memory() > 2**20


@pytest.mark.parametrize("phases", ['[{kind="engaged", mirror_every=1, mirror_steps=1000000}]',
                                    '[{kind="mirror", steps=1000000}, {kind="engaged"}]'])
def test_sigterm_stops_a_long_mirror_loop(phases: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal

    from neurocircuit.runs import run_simulation
    from neurocircuit.simulation import load_simulation
    from neurocircuit.torch import phase_runners, trainer
    from neurocircuit.torch.nn.mirror import mirror_step

    calls = []

    def counted(*args, **kwargs):  # SIGTERM from inside the loop: the handler is surely installed by then
        calls.append(1)
        if len(calls) == 10:
            os.kill(os.getpid(), signal.SIGTERM)
        assert len(calls) < 1000, "the mirror steps went on after SIGTERM"
        return mirror_step(*args, **kwargs)

    monkeypatch.setattr(phase_runners, "mirror_step", counted)
    monkeypatch.setattr(trainer, "mirror_step", counted, raising=False)  # where the loop was before it checked
    sim = load_simulation(SIM, ["seeds=[0]", "train.epochs=1", "train.steps_per_epoch=2", "train.alignment_samples=16",
                                'arms=["wm"]', f"phases={phases}"])
    with pytest.raises(KeyboardInterrupt, match="stopped in"):
        run_simulation(sim, out=tmp_path / "out", progress=False)
    assert len(calls) == 10  # the step under way when the signal came is finished, no further one


def test_random_axes_draw_on_demand_the_values_numpy_draws_at_once(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    from neurocircuit.axis_values import _CHUNK, drawn

    # the values of small axes are those of one uniform draw (stored sweeps rely on them), across chunk boundaries
    for low, high, n, seed, log in ((0, 1, 3, 7, False), (-2, 5, 2 * _CHUNK + 5, 0, False), (1e-4, 1, _CHUNK + 1, 42,
                                                                                               True)):
        ends = (np.log10(low), np.log10(high)) if log else (low, high)
        expected = np.random.default_rng(seed).uniform(*ends, n)
        expected = [float(f"{10 ** v if log else v:.12g}") for v in expected]
        assert list(drawn(low, high, n, seed, log, "x")) == expected
    # 10^14 values: its last one at once, nothing materialised; with --yes the first point is validated, one line
    assert 0 <= drawn(0, 1, 10**14, 0, False, "x")[10**14 - 1] < 1
    elapsed = _refused(["sweep", SIM, *S("optimizer.lr=random:-2:-1:100000000000000"), "--yes", "--out", "{tmp}/s"],
                       "optimizer.lr must be a finite number > 0", tmp_path, capsys)
    assert elapsed < 5


def test_memory_is_checked_against_what_is_available_with_a_margin_and_per_run_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import types

    import psutil

    from neurocircuit.runs import run_simulation
    from neurocircuit.simulation import load_simulation

    # 24 GiB in the machine, 17 GiB free: the 64-30000-30000-10 network (14.4 GB estimated) was OOM-killed there
    monkeypatch.delenv(limits.MEMORY_ENV, raising=False)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: types.SimpleNamespace(total=24 * 2**30,
                                                                                available=17 * 2**30))
    (tmp_path / "wide.toml").write_text(BOMB.replace("1000000", "30000"))
    with pytest.raises(ConfigError, match=r"needs 13 GiB in all, 20 GiB with the safety factor 1\.5 \(.*this "
                                          r"machine has 17 GiB available"):
        load_simulation(SIM, [f'model="{tmp_path}/wide.toml"', 'arms=["bp"]', "train.epochs=1"])
    # one run of a circuit that fits, but not two at a time: refused before anything is written
    monkeypatch.setattr(psutil, "virtual_memory", lambda: types.SimpleNamespace(total=24 * 2**30,
                                                                                available=5 * 2**29))
    (tmp_path / "mid.toml").write_text(BOMB.replace("1000000", "8000"))
    sim = load_simulation(SIM, [f'model="{tmp_path}/mid.toml"', 'arms=["bp", "fa"]', "seeds=[0]"])
    with pytest.raises(ConfigError, match=r"2\.9 GiB with the safety factor 1\.5 \(.*\) and 2 runs at a time "
                                          r"\(--jobs\); this machine has 2\.5 GiB available"):
        run_simulation(sim, out=tmp_path / "out", jobs=2, progress=False)
    assert not (tmp_path / "out").exists()


def test_spiking_monitors_are_in_the_memory_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    from neurocircuit.brian import budget
    from neurocircuit.brian.backend import brian_parameters
    from neurocircuit.brian.protocol import protocol_steps
    from neurocircuit.simulation import load_simulation

    # The Poisson file's wm arm: a population rate per time step of 5 spiking groups (x, h, y forward; h, y error:
    # the input's error units never spike) and the readout's spikes, 10 units at most 800 Hz each.
    sim = load_simulation("brian2_learning_spiking_poisson").select(["wm"])
    variant, params, spiking = brian_parameters(sim)
    sizes = (100, 40, 20)
    seen: dict[str, float] = {}
    monkeypatch.setattr(budget, "check_memory", lambda parts, what: seen.update({n: b for n, b, _ in parts}))
    budget.check_run_limits(sim, variant, params, sizes, test_windows=spiking.test_windows,
                            rate_max=float(spiking.rate_max))
    windows = protocol_steps(sim.schedule_for(sim.arms[0]).phases, sizes=sizes, epochs=sim.train.epochs,
                             interleave=True, test_windows=spiking.test_windows)
    steps = windows * 1600  # 800 ms windows of 0.5 ms
    # each x3: a monitor's arrays double as they fill, and old and new buffers both exist while one is copied
    assert seen["the population rate records"] == 3 * 16.0 * steps * 5
    assert seen["the readout's spikes"] == pytest.approx(3 * 12.0 * 10 * 800 * windows * 0.8)
    # without test or validation samples nothing is scored, so no readout is monitored
    seen.clear()
    budget.check_run_limits(sim, variant, params, (100, 0, 0), rate_max=800.0)
    assert "the population rate records" in seen and "the readout's spikes" not in seen
    # and a machine too small for the monitors refuses the run, naming them
    monkeypatch.undo()
    monkeypatch.setenv(limits.MEMORY_ENV, "64 MiB")
    with pytest.raises(ConfigError, match=r"arm 'wm': the population rate records needs .* \(5 groups × "):
        budget.check_run_limits(sim, variant, params, (1500, 150, 150), test_windows=spiking.test_windows,
                                rate_max=float(spiking.rate_max))


def test_brian2_recording_memory_is_counted_for_every_run_at_once(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from neurocircuit.brian import budget
    from neurocircuit.runs import run_simulation
    from neurocircuit.simulation import load_simulation

    # What a Brian2 run records is counted when its data are loaded: with --jobs 2 that is two runs at a time.
    seen: list[int] = []

    def refuse(parts: object, what: str) -> None:
        if what.startswith("arm "):  # the run's estimate (the synapses alone are checked as "model ...")
            seen.append(limits._AT_ONCE[-1])
            raise ConfigError("refused by the test")

    monkeypatch.setattr(budget, "check_memory", refuse)
    sim = load_simulation("brian2_learning", ['arms=["fa", "kp"]', "seeds=[0]", 'brian2.target="numpy"'])
    with pytest.raises(ConfigError, match="refused by the test"):
        run_simulation(sim, out=tmp_path / "out", jobs=2, progress=False)
    assert seen == [2]
