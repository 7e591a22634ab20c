"""The exact and the lagged mirror: ``estimate = "exact"`` sets B to W at each mirror step (the WM controls' arm)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

import neurocircuit as nc
from neurocircuit.cli import main
from neurocircuit.errors import ConfigError
from neurocircuit.nn import mirror_layers, mirror_step
from neurocircuit.phases import MirrorSettings
from neurocircuit.runs import run_simulation
from neurocircuit.simulation import parse_simulation
from neurocircuit.torch import fit

EXACT = MirrorSettings(estimate="exact")


@pytest.mark.parametrize("model", ["mlp_digits", "lenet5"])
def test_an_exact_mirror_step_sets_b_to_w_bit_for_bit(model: str) -> None:
    net = nc.build_network(model, rule="wm", seed=0)
    layers = mirror_layers(net)
    kinds = {type(layer).__name__ for _, layer in layers}
    assert model != "lenet5" or {"FeedbackConv2d", "FeedbackLinear"} <= kinds  # dense and conv layers both
    assert all(not torch.equal(layer.feedback_weight, layer.weight) for _, layer in layers)
    generator = torch.Generator().manual_seed(0)
    before = generator.get_state()
    assert mirror_step(net, EXACT, generator=generator, layers=layers) == len(layers)
    for name, layer in layers:
        assert torch.equal(layer.feedback_weight, layer.weight), name
    assert torch.equal(generator.get_state(), before)  # no noise drawn
    assert nc.nn.mirror_gain(EXACT) == 1.0


def _task(n: int = 96) -> tuple[TensorDataset, TensorDataset]:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(n, 64, generator=g), torch.randint(0, 10, (n,), generator=g)
    return TensorDataset(x[:64], y[:64]), TensorDataset(x[64:], y[64:])


@pytest.mark.parametrize("every", [1, 3])
def test_the_lagged_mirror_holds_w_as_of_the_last_multiple_of_k(every: int) -> None:
    # B before optimizer step t + 1 must be W after step k * floor(t / k) (W at 0: the initial exact copy) — exactly.
    train, test = _task()
    net = nc.build_network("mlp_digits", rule="wm", seed=0)
    layers = mirror_layers(net)
    mirror_step(net, EXACT, layers=layers)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    history: list[list[torch.Tensor]] = [[layer.weight.detach().clone() for _, layer in layers]]
    checked: list[int] = []

    def before_step(*_: object) -> None:
        t = len(history) - 1  # optimizer steps taken
        for (_, layer), w in zip(layers, history[every * (t // every)]):
            assert torch.equal(layer.feedback_weight, w), (t, every)
        if t % every:  # between mirror steps B is stale: W has moved on
            assert not torch.equal(layers[0][1].feedback_weight, layers[0][1].weight)
        checked.append(t)

    def after_step(*_: object) -> None:
        history.append([layer.weight.detach().clone() for _, layer in layers])

    optimizer.register_step_pre_hook(before_step)
    optimizer.register_step_post_hook(after_step)
    fit(net, train, test, optimizer=optimizer, epochs=2, batch_size=8, mirror=EXACT, mirror_every=every,
        progress=False)
    assert checked == list(range(16))
    last = every * (16 // every)
    for (_, layer), w in zip(layers, history[last]):
        assert torch.equal(layer.feedback_weight, w)
    if every == 1:  # feedback that is W at every step is backprop: the same weights, bit for bit
        bp = nc.build_network("mlp_digits", rule="bp", seed=0)
        fit(bp, train, test, optimizer=torch.optim.SGD(bp.parameters(), lr=0.1, momentum=0.9), epochs=2,
            batch_size=8, progress=False)
        for (name, p), q in zip(net.named_parameters(), bp.parameters()):
            assert torch.equal(p, q), name


SIMULATION = {
    "name": "exact_mirror_test", "model": "mlp_digits", "seeds": [0],
    "arms": ["bp", {"rule": "wm", "label": "wm-exact", "mirror": {"estimate": "exact"},
                    "phases": [{"kind": "mirror", "steps": 2, "record_every": 1},
                               {"kind": "engaged", "mirror_every": 1}]}],
    "data": {"name": "digits", "test_fraction": 0.25},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "train": {"epochs": 1, "batch_size": 64, "record_every": 10},
}


def test_an_exact_mirror_after_every_step_is_backprop(tmp_path: Path) -> None:
    # The arm named in a simulation: its run must be bp's to the bit, every recorded B-W angle 0.
    data = run_simulation(parse_simulation(copy.deepcopy(SIMULATION)), out=tmp_path / "run", progress=False)
    assert data.sizes["step"] > 2
    bp, exact = data.sel(arm="bp"), data.sel(arm="wm-exact")
    for name in ("train_loss", "test_loss", "test_accuracy"):
        np.testing.assert_array_equal(exact[name].values, bp[name].values)
    assert np.isfinite(bp.train_loss.values[..., 1:]).all()
    assert float(np.abs(exact.weight_angle).max()) < 1e-3
    assert float(np.abs(exact.mirror_weight_angle.isel(mirror_step=-1)).max()) < 1e-3


def _with(**changes: object) -> dict:
    raw = copy.deepcopy(SIMULATION)
    for key, value in changes.items():
        raw[key] = value
    return raw


@pytest.mark.parametrize(("raw", "named"), [
    (_with(mirror={"estimate": "exact", "noise_std": 2.0, "batch_size": 8}), "mirror: noise_std, batch_size are"),
    (_with(arms=[{"rule": "wm", "mirror": {"estimate": "exact", "decay": 0.5}}]), "arms[0]: mirror: decay is"),
    (_with(arms=[{"rule": "wm", "mirror": {"estimate": "exact"},
                  "phases": [{"kind": "mirror", "steps": 2, "active_units": 4}]}]), "phases[0]: active_units is"),
    # inherited from [mirror] by exact steps only
    (_with(mirror={"learning_rate": 1.0, "decay": 1.0},
           arms=[{"rule": "wm", "mirror": {"estimate": "exact"}, "phases": [{"kind": "engaged", "mirror_every": 2}]}]),
     "mirror.decay, mirror.learning_rate are never read"),
    (_with(arms=[{"rule": "wm", "mirror": {"estimate": "exact"},
                  "phases": [{"kind": "engaged", "mirror_every": 2, "mirror_follows_lr": True}]}]),
     "arms.0.phases.0.mirror_follows_lr is never read"),
    (_with(mirror={"estimate": "copy"}), "unknown estimate 'copy'"),
])
def test_settings_an_exact_mirror_never_reads_are_refused(raw: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        parse_simulation(raw)


def test_inherited_settings_a_hebbian_arm_reads_are_not_refused() -> None:
    raw = _with(mirror={"learning_rate": 0.5, "decay": 0.5},
                arms=[{"rule": "wm", "phases": [{"kind": "engaged", "mirror_every": 2}]},
                      {"rule": "wm", "label": "wm-exact", "mirror": {"estimate": "exact"},
                       "phases": [{"kind": "engaged", "mirror_every": 2}]}])
    sim = parse_simulation(raw)
    assert sim.mirror_for(sim.arm("wm-exact")).estimate == "exact"
    assert sim.mirror_for(sim.arm("wm")) == MirrorSettings(learning_rate=0.5, decay=0.5)


def test_the_cli_refuses_in_one_line_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sim = tmp_path / "exact.toml"
    sim.write_text('model = "mlp_digits"\narms = [{ rule = "wm", mirror = { estimate = "exact", noise_std = 2.0 } }]\n')
    assert main(["run", str(sim), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("neurocircuit: error:") and "noise_std is never read" in err
    brian = tmp_path / "brian.toml"
    brian.write_text('model = "mlp_digits"\nbackend = "brian2"\narms = ["wm"]\n'
                     '[[phases]]\nkind = "mirror"\nsteps = 2\nestimate = "exact"\n')
    assert main(["run", str(brian), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'phases.0.estimate = "exact" is not honoured by the brian2 backend' in err


def test_an_arms_own_mirror_reaches_the_mirror_phases_of_the_shared_schedule():
    from neurocircuit.simulation import parse_simulation

    sim = parse_simulation({"model": "mlp_digits", "phases": [{"kind": "mirror", "steps": 3},
                                                              {"kind": "engaged", "mirror_every": 2}],
                            "arms": [{"rule": "wm", "label": "wm-exact", "mirror": {"estimate": "exact"}}, "wm"]})
    estimates = {arm.label: (sim.schedule_for(arm).phases[0].settings.estimate, sim.mirror_for(arm).estimate)
                 for arm in sim.arms}
    assert estimates == {"wm-exact": ("exact", "exact"), "wm": ("hebbian", "hebbian")}
