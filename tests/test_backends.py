"""One schema, backends that honour or refuse: every key of every section against every backend; rules described
once and refused by name where a backend has no implementation; `neurocircuit.circuit` imports no torch."""

import copy
import dataclasses
import subprocess
import sys

import pytest

from neurocircuit.backends import SECTIONS, get_backend, list_backends
from neurocircuit.errors import ConfigError
from neurocircuit.phases import EngagedPhase, MirrorPhase, MirrorSettings, PrenatalPhase
from neurocircuit.rules import RuleDescription, describe, list_rules
from neurocircuit.simulation import ARM_KEYS, TOP_KEYS, TorchSettings, TrainSettings, parse_simulation

BASE = {
    "torch": {"model": "mlp_digits", "arms": ["wm"], "phases": [{"kind": "mirror", "steps": 1}]},
    "brian2": {"model": "mlp_digits", "backend": "brian2", "arms": ["wm"], "phases": [{"kind": "mirror", "steps": 1}],
               "data": {"name": "digits"}},
}
TOP_VALUES = {"name": "x", "description": "d", "seeds": [0], "data": {"name": "digits"},
              "optimizer": {"name": "sgd", "lr": 0.01}, "train": {}, "mirror": {}, "torch": {}, "brian2": {},
              "phases": [{"kind": "mirror", "steps": 1}]}
ARM_VALUES = {"label": "x", "overrides": {}, "options": {}, "phases": [{"kind": "mirror", "steps": 1}]}


def _defaults(cls: type) -> dict:
    out = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


PHASES = {"engaged": _defaults(EngagedPhase), "prenatal": _defaults(PrenatalPhase),
          "mirror": {**{k: v for k, v in _defaults(MirrorPhase).items() if k != "settings"},
                     **_defaults(MirrorSettings)}}


def _cases() -> list[tuple[str, str, dict]]:
    """(section, key, a simulation table that sets it) for every key of the schema."""
    cases = []
    for key in TOP_KEYS:
        if key not in ("model", "arms", "backend"):
            cases.append(("top", key, {key: TOP_VALUES[key]}))
    for key in ARM_KEYS:
        if key != "rule":
            cases.append(("arm", key, {"arms": [{"rule": "wm", key: ARM_VALUES[key]}]}))
    for section, values in (("train", _defaults(TrainSettings)), ("mirror", _defaults(MirrorSettings)),
                            ("torch", _defaults(TorchSettings))):
        for key, value in values.items():
            if value is not None:
                cases.append((section, key, {section: {key: value}}))
    for kind, values in PHASES.items():
        for key, value in values.items():
            if value is not None:
                phase = {"kind": kind, key: value, **({"steps": 1} if kind == "mirror" and key != "steps" else {})}
                cases.append((f"phase.{kind}", key, {"phases": [phase]}))
    return cases


def test_the_walk_covers_every_section_and_every_key_is_honoured_somewhere():
    cases = _cases()
    assert {section for section, _, _ in cases} == set(SECTIONS)
    for section, key, _ in cases:
        assert any(key in get_backend(b).honours.get(section, ()) for b in list_backends()), (section, key)


@pytest.mark.parametrize("backend", ["torch", "brian2"])
def test_every_key_is_honoured_or_refused_by_name(backend):
    assert set(list_backends()) == {"torch", "brian2"}
    honours = get_backend(backend).honours
    refused = 0
    for section, key, change in _cases():
        raw = {**copy.deepcopy(BASE[backend]), **copy.deepcopy(change)}
        if backend == "brian2" and section == "phase.engaged":
            raw["phases"] = [{"kind": "engaged", "epochs": 0, **change["phases"][0]}]
        if key in honours.get(section, ()):
            parse_simulation(raw)  # honoured: accepted (its effect is tested with the backend)
        else:
            # named by its key, or by its section where the backend refuses the whole section
            named = rf"(\b{key}|^\S+ {section}) is not honoured by the {backend} backend"
            with pytest.raises(ConfigError, match=named):
                parse_simulation(raw)
            refused += 1
    assert refused > 0 if backend == "brian2" else refused == 1  # torch refuses only the [brian2] section


def test_brian2_refuses_what_it_used_to_ignore_and_honours_what_it_runs():
    base = BASE["brian2"]
    for phase in ({"kind": "mirror", "noise_std": 0.5}, {"kind": "mirror", "learning_rate": 0.5},
                  {"kind": "mirror", "active_units": 4}, {"kind": "mirror", "batch_size": 8},
                  {"kind": "mirror", "record_every": 2}, {"kind": "engaged", "mirror_every": 2},
                  {"kind": "engaged", "mirror_steps": 2}, {"kind": "prenatal", "batch_size": 8},
                  {"kind": "prenatal", "learning_rate": 0.1}):
        with pytest.raises(ConfigError, match="is not honoured by the brian2 backend"):
            parse_simulation({**base, "phases": [phase]})
    with pytest.raises(ConfigError, match=r"brian2\.seed: .* seeded from the simulation's seeds"):
        parse_simulation({**base, "brian2": {"seed": 3}})
    # A key whose default (None) the walk above leaves out.
    with pytest.raises(ConfigError, match=r"train\.early_weight_decay is not honoured by the brian2 backend"):
        parse_simulation({**base, "train": {"early_weight_decay": 0.1, "early_weight_decay_epochs": 1}})


def test_a_described_rule_without_an_implementation_is_refused_by_name(monkeypatch):
    from neurocircuit import rules

    monkeypatch.setattr(rules, "_RULES", dict(rules._RULES))  # the description is gone after the test
    describe(RuleDescription("test_described_only", "a rule no backend implements", "nothing"))
    assert "test_described_only" in list_rules()
    for backend in ("torch", "brian2"):
        with pytest.raises(ConfigError, match=f"rule 'test_described_only' is not implemented by the {backend}"):
            parse_simulation({**BASE[backend], "arms": ["test_described_only"]})
    with pytest.raises(ConfigError, match="rule 'usf' is not implemented by the brian2 backend"):
        parse_simulation({**BASE["brian2"], "arms": ["usf"]})


def test_every_backend_rule_is_described_and_torch_takes_its_flags_from_the_description():
    from neurocircuit.brian.network import SYNAPSE_RULES
    from neurocircuit.nn.rules import get_rule
    from neurocircuit.rules import describe_rule

    assert set(SYNAPSE_RULES) <= set(list_rules())
    for name in ("bp", "fa", "usf", "brsf", "frsf", "kp", "wm"):
        description, rule = describe_rule(name), get_rule(name)
        assert (rule.learns_with_optimizer, rule.learns_in_mirror, rule.weight_transport) == (
            description.learns_with_optimizer, description.learns_in_mirror, description.weight_transport)
        assert set(rule.options()) == set(description.options)


def test_circuit_and_simulation_schema_import_no_torch():
    code = ("import sys, neurocircuit.circuit, neurocircuit.rules, neurocircuit.phases; "
            "print('torch' in sys.modules, 'brian2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
