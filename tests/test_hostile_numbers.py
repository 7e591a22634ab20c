"""Numbers that are NaN, infinite, out of range or too wide, input nested too deep, and library warnings while input
is read: each refused before any work in one line (CLI: exit 2, no traceback, nothing written; API: a ValueError or
TypeError with the same words)."""

import math
import warnings

import pytest
import torch
from oneline import refused_in_one_line

import neurocircuit as nc
from neurocircuit.errors import ConfigError, ShapeError

SIM = "default"
BRIAN = "brian2_weight_mirror"
NAN = float("nan")


def S(*settings: str) -> list[str]:
    return [a for s in settings for a in ("--set", s)]


def _files(tmp) -> None:
    (tmp / "deep.toml").write_text('model = "mlp_digits"\narms = ["bp"]\nx = ' + "[" * 5000 + "]" * 5000 + "\n")
    (tmp / "wide.toml").write_text('model = "mlp_digits"\narms = ["bp"]\nseeds = [' + "9" * 5000 + "]\n")
    (tmp / "step0.toml").write_text('kind = "sweep"\nsimulation = "default"\n[axes]\nseed = { range = [0, 5, 0] }\n')
    run = tmp / "noconfig" / "runs" / "kp-seed0"
    run.mkdir(parents=True)
    torch.save({"version": 2, "seed": 0, "world_size": 1}, run / "checkpoint.pt")


DEEP_KEY = ".".join(["a"] * 2000)
RUN = {
    # NaN and other numbers out of range, one family after another
    "nan momentum": ([SIM, *S("optimizer.momentum=nan")],
                     "simulation 'default': optimizer.momentum must be finite, got nan"),
    "nan adam beta": ([SIM, *S('optimizer={name = "adam", lr = 0.01, betas = [0.9, nan]}')],
                      "optimizer.betas must be finite"),
    "nan rule gain": ([SIM, *S('arms=[{rule = "fa", options = {gain = nan}}]')],
                      "option 'gain' of rule 'fa' must be a finite number > 0, got nan"),
    "inf kp decay": ([SIM, *S('arms=[{rule = "kp", options = {decay = inf}}]')],
                     "option 'decay' of rule 'kp' must be a finite number >= 0, got inf"),
    "negative usf scale": ([SIM, *S('arms=[{rule = "usf", options = {scale = -1.0}}]')],
                           "option 'scale' of rule 'usf' must be a finite number > 0"),
    "nan prenatal learning rate": ([SIM, *S('phases=[{kind = "prenatal", learning_rate = nan}, {kind = "engaged"}]')],
                                   "learning_rate must be a finite number > 0, got nan"),
    "nan mirror decay": ([SIM, *S("mirror.decay=nan")], "mirror.decay must be a finite number >= 0, got nan"),
    "nan mirror steps": ([SIM, *S('phases=[{kind = "mirror", steps = nan}]')], "steps: expected int, got nan"),
    "nan brian2 probability": ([BRIAN, *S("brian2.p_feedback=nan")], "brian2.p_feedback must be in (0, 1]"),
    "infinite brian2 rate": ([BRIAN, *S('brian2.lambda_mirror="1e999 Hz"')], "is not finite"),
    "nan tau_population": ([BRIAN, *S("brian2.tau_population={hidden = nan}")], "tau_population.hidden: missing units"),
    "tau_population below dt": ([BRIAN, *S('brian2.tau_population={hidden = "0.1 ms"}')],
                                "brian2.tau_population.hidden (100. us) must be >= brian2.dt (0.5 ms)"),
    "unknown population": ([BRIAN, *S('brian2.tau_population={hiden = "2 ms"}')],
                           "brian2.tau_population.hiden: circuit 'mlp_digits' has no population 'hiden' (did you "
                           "mean 'hidden'?)"),
    # tracebacks before: parsers bounded in depth and integer width
    "unit to a huge power": ([BRIAN, *S('brian2.tau="1 ms**-100000"')], "cannot read '1 ms**-100000'"),
    "set key 2000 deep": ([SIM, *S(f"optimizer.{DEEP_KEY}=1")], "(more than 32 levels deep)"),
    "set value 3000 deep": ([SIM, *S("optimizer.x=" + "[" * 3000 + "]" * 3000)],
                            "--set optimizer.x: tables or lists nested more than 32 levels deep"),
    "toml 5000 deep": (["{tmp}/deep.toml"], "deep.toml: tables or lists nested more than 32 levels deep"),
    "integer of 5000 digits": (["{tmp}/wide.toml"], "wide.toml: the integer of 5000 digits does not fit in 64 bits"),
    "set seed of 5000 digits": ([SIM, *S("seed=" + "9" * 5000)], "--set seed: the integer of 5000 digits does not fit"),
    "unit to the fifth power": ([BRIAN, *S('brian2.dt="1 ms^5"')], "powers of units beyond ±4 are refused"),
    "seed beyond 64 bits": ([SIM, *S("seed=18446744073709551616")], "the integer 18446744073709551616 does not fit"),
    "seed beyond 32 bits": ([SIM, *S("seeds=[4294967296]")], "a seed must be an integer from 0 to 2**32 - 1"),
    "negative seed": ([SIM, *S("seed=-1")], "a seed must be an integer from 0 to 2**32 - 1, got -1"),
    "checkpoint without config": ([SIM, "--arm", "kp", *S("seeds=[0]"), "--resume", "--out", "{tmp}/noconfig"],
                                  "has no valid 'config' entry"),
    # one line means one line: the overflow numpy warns of is folded into it
    "warning folded": ([BRIAN, *S('brian2.tau="1e308 / ms**3 * ms**4"')],
                       "is not finite (warned while reading it: RuntimeWarning: overflow encountered"),
}
SWEEP = {
    "range step 0": (["sweep", SIM, *S("seed=0:5:0")], "--set seed=0:5:0: the step of a range must not be 0"),
    "file range step 0": (["sweep", "{tmp}/step0.toml"], "axes.seed.range: the step of a range must not be 0"),
    "negative random seed": (["sweep", SIM, *S("optimizer.lr=random:0.1:0.2:3:-1")], "SEED: a seed must be"),
    "sweep key 2000 deep": (["sweep", SIM, *S(f"train.{DEEP_KEY}=1,2")], "(more than 32 levels deep)"),
}


def _check(args: list[str], message: str, tmp_path, capsys) -> None:
    _files(tmp_path)
    refused_in_one_line(args, message, tmp_path, capsys)


@pytest.mark.parametrize("case", list(RUN))
def test_run_refuses_bad_numbers_in_one_line(case, tmp_path, capsys):
    args, message = RUN[case]
    if "--out" not in args:
        args = [*args, "--out", "{tmp}/out"]
    _check(["run", *args], message, tmp_path, capsys)


@pytest.mark.parametrize("case", list(SWEEP))
def test_sweep_refuses_bad_numbers_in_one_line(case, tmp_path, capsys):
    args, message = SWEEP[case]
    _check([*args, "--out", "{tmp}/s"], message, tmp_path, capsys)


def _nested(depth: int) -> dict:
    table: dict = {}
    for _ in range(depth):
        table = {"x": table}
    return table


API = {
    "run a table 5000 deep": (lambda: nc.run({"model": "mlp_digits", "arms": ["bp"], "x": _nested(5000)}),
                              ConfigError, "simulation table: tables or lists nested more than 32 levels deep"),
    "build_network nan gain": (lambda: nc.build_network("mlp_digits", rule="fa", options={"gain": NAN}),
                               ConfigError, "option 'gain' of rule 'fa' must be a finite number > 0, got nan"),
    "load_circuit inf gain": (lambda: nc.load_circuit("mlp_digits", rule="wm", options={"gain": math.inf}),
                              ConfigError, "option 'gain' of rule 'wm' must be a finite number > 0, got inf"),
    "get_rule nan gain": (lambda: nc.get_rule("frsf", gain=NAN), ConfigError,
                          "option 'gain' of rule 'frsf' must be a finite number > 0, got nan"),
    "torchvision nan gain": (lambda: nc.build_network("resnet18", rule="fa", options={"gain": NAN}, num_classes=3),
                             ConfigError, "option 'gain' of rule 'fa' must be a finite number > 0, got nan"),
    "get_model None": (lambda: nc.get_model(None), TypeError, "model must be a name, a path or a Circuit"),
    "num_classes -1": (lambda: nc.build_network("resnet18", num_classes=-1), ConfigError,
                       "num_classes must be a finite number > 0, got -1"),
    "num_classes not the circuit's": (lambda: nc.build_network("mlp_digits", num_classes=3), ShapeError,
                                      "num_classes = 3, but circuit 'mlp_digits' has 10 output units"),
}


@pytest.mark.parametrize("case", list(API))
def test_api_refuses_bad_numbers_with_the_cli_words(case):
    call, error, message = API[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # get_model is the deprecated name of build_network
        with pytest.raises(error) as caught:
            call()
    assert message in str(caught.value) and len(str(caught.value).splitlines()) == 1, str(caught.value)


def test_optimizer_settings_refuse_nan():
    from neurocircuit.torch.optim import optimizer_settings

    with pytest.raises(ConfigError, match="optimizer.momentum must be finite, got nan"):
        optimizer_settings({"name": "sgd", "lr": 0.1, "momentum": NAN}, 32)


def test_brian2_parameters_refuse_nan_and_short_tau_population():
    from brian2 import ms

    from neurocircuit.brian.parameters import RateParameters

    with pytest.raises(ConfigError, match="noise_sigma must be > 0, got nan"):
        RateParameters(noise_sigma=NAN)
    with pytest.raises(ConfigError, match="brian2.tau_population.hidden .* must be >= brian2.dt"):
        RateParameters(tau_population={"hidden": 0.1 * ms})
    with pytest.raises(ConfigError, match="brian2.tau: .* is not finite"):
        RateParameters(tau=NAN * ms)


def test_a_circuit_refuses_a_population_it_does_not_have():
    """From Python, past the simulation schema: a misspelt population name in tau_population is refused by the
    circuit that would have left that population at brian2.tau."""
    from brian2 import ms

    from neurocircuit.brian import RateCircuit
    from neurocircuit.brian.parameters import RateParameters

    params = RateParameters(tau_population={"hiden": 2 * ms})
    with pytest.raises(ConfigError, match=r"circuit 'mlp_digits' has no population 'hiden' \(did you mean 'hidden'"):
        RateCircuit(nc.load_circuit("mlp_digits", rule="wm"), {}, params, None)


def test_a_checkpoint_without_its_config_is_refused(tmp_path):
    from neurocircuit.torch.checkpoint import read_checkpoint

    torch.save({"version": 2, "seed": 0, "world_size": 1}, tmp_path / "checkpoint.pt")
    with pytest.raises(ConfigError, match="has no valid 'config' entry"):
        read_checkpoint(tmp_path / "checkpoint.pt", device=torch.device("cpu"), config={}, seed=0, world_size=1)


def test_held_warnings_are_shown_once_the_input_is_accepted():
    """Warnings of accepted input are not swallowed: they are shown when the hold ends, in their order."""
    from neurocircuit.progress import HeldWarnings

    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with HeldWarnings() as held:
            warnings.warn("first", UserWarning, stacklevel=1)
            warnings.warn("second", RuntimeWarning, stacklevel=1)
            assert shown == []  # held while the input is read
            assert len(held.warnings) == 2
        assert [str(w.message) for w in shown] == ["first", "second"]
        with HeldWarnings() as held:
            warnings.warn("folded", UserWarning, stacklevel=1)
        # the same hold, ended by a refusal: folded into its line, then nothing is left to show
        held.__enter__()
        warnings.warn("refused", UserWarning, stacklevel=1)
        held._stop()
        assert held.folded() == " (warned while reading it: UserWarning: refused)"
        held.release()
    assert [str(w.message) for w in shown] == ["first", "second", "folded"]
