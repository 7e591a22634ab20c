"""One schema, backends that honour or refuse: every key of every section against every backend; rules described
once and refused by name where a backend has no implementation; `neurocircuit.circuit` imports no torch."""

import copy
import dataclasses
import re
import subprocess
import sys

import brian2
import pytest

from neurocircuit.backends import SECTIONS, get_backend, list_backends
from neurocircuit.errors import ConfigError
from neurocircuit.phases import EngagedPhase, MirrorPhase, MirrorSettings, PrenatalPhase
from neurocircuit.rules import RuleDescription, describe, list_rules
from neurocircuit.simulation import ARM_KEYS, TOP_KEYS, TrainSettings, parse_simulation
from neurocircuit.torch.settings import TorchSettings

BASE = {
    "torch": {"model": "mlp_digits", "arms": ["wm"], "phases": [{"kind": "mirror", "steps": 1}, {"kind": "engaged"}]},
    "brian2": {"model": "mlp_digits", "backend": "brian2", "arms": ["wm"],
               "phases": [{"kind": "mirror", "steps": 1}, {"kind": "engaged"}], "data": {"name": "digits"}},
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


def _quantity_text(value: object) -> object:
    """A default as a simulation file writes it: a Brian2 quantity as a number times its SI unit."""
    if not hasattr(value, "dim"):
        return value
    unit = "second" if value.dim == brian2.second.dim else "Hz"
    return f"{float(value)} {unit}"


def _cases() -> list[tuple[str, str, dict]]:
    """(section, key, a simulation table that sets it) for every key of the schema."""
    from neurocircuit.brian.parameters import RateParameters, SpikingParameters

    cases = []
    for key in TOP_KEYS:
        if key in ("name", "description", "seeds"):  # the others are the base's or tables walked below
            cases.append(("top", key, {key: TOP_VALUES[key]}))
    for key in ARM_KEYS:
        if key in ("label", "overrides"):
            cases.append(("arm", key, {"arms": [{"rule": "wm", key: ARM_VALUES[key]}]}))
    cases.append(("options", "gain", {"arms": [{"rule": "wm", "options": {"gain": 1.0}}]}))
    for section, values in (("train", _defaults(TrainSettings)), ("mirror", _defaults(MirrorSettings)),
                            ("torch", _defaults(TorchSettings))):
        for key, value in values.items():
            if value is not None:
                cases.append((section, key, {section: {key: value}}))
    for kind, values in PHASES.items():
        for key, value in values.items():
            if value is not None:
                phase = {"kind": kind, key: value, **({"steps": 1} if kind == "mirror" and key != "steps" else {})}
                # the base's wm arm needs a mirror step somewhere (else it is refused for keeping B fixed)
                mirror = [] if kind == "mirror" else [{"kind": "mirror", "steps": 1}]
                cases.append((f"phase.{kind}", key, {"phases": [*mirror, phase]}))
    for key, value in (("test_fraction", 0.25), ("split_seed", 1), ("validation", 0.1)):
        cases.append(("data", key, {"data": {"name": "digits", key: value}}))
    for key, value in (("channels", 3), ("augment", "flip"), ("train_samples", 10)):
        cases.append(("data", key, {"data": {"name": "fashion_mnist", key: value}}))
    cases.append(("optimizer", "momentum", {"optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9}}))
    for key, value in _defaults(RateParameters).items():
        if key not in ("seed", "tau_population") and value is not None:
            cases.append(("brian2", key, {"brian2": {key: _quantity_text(value)}}))
    cases.append(("brian2", "variant", {"brian2": {"variant": "rate"}}))
    for key, value in _defaults(SpikingParameters).items():
        lif = {} if key == "neuron" else {"neuron": "lif"}  # LIF keys are honoured beside neuron = "lif" only
        cases.append(("brian2.spiking", key, {"brian2": {"spiking": {**lif, key: _quantity_text(value)}}}))
    cases.append(("brian2.tau_population", "hidden", {"brian2": {"tau_population": {"hidden": "5 ms"}}}))
    return cases


def test_the_walk_covers_every_section_and_every_key_is_honoured_somewhere():
    cases = _cases()
    assert {section for section, _, _ in cases} == set(SECTIONS)
    for section, key, change in cases:
        honoured = False
        for backend in list_backends():
            for variant in ("rate", "spiking"):
                raw = {**BASE[backend], **change}
                if "brian2" in raw:
                    raw["brian2"] = {**raw["brian2"], "variant": variant}
                allowed = get_backend(backend).honoured(raw).get(section, frozenset())
                honoured |= allowed is None or key in allowed
        assert honoured, (section, key)


@pytest.mark.parametrize("backend", ["torch", "brian2"])
def test_every_key_is_honoured_or_refused_by_name(backend):
    from neurocircuit.backends import set_keys

    assert set(list_backends()) == {"torch", "brian2"}
    refused = []
    for section, key, change in _cases():
        raw = {**copy.deepcopy(BASE[backend]), **copy.deepcopy(change)}
        if backend == "brian2" and section == "phase.engaged":
            raw["phases"] = [*change["phases"][:-1], {"kind": "engaged", "epochs": 0, **change["phases"][-1]}]
        elif backend == "brian2" and section.startswith("phase."):  # the base's data needs an engaged phase
            raw["phases"] = [*change["phases"], {"kind": "engaged"}]
        allowed = get_backend(backend).honoured(raw).get(section, frozenset())
        if allowed is None or key in allowed:
            parse_simulation(raw)  # honoured: accepted (the run reads it: tests/test_honour.py)
        else:
            (where,) = [w for s, k, w in set_keys(raw) if (s, k) == (section, key)]
            named = rf"{re.escape(where)}(, \S+)* (is|are) not honoured by the {backend} backend"
            with pytest.raises(ConfigError, match=named):
                parse_simulation(raw)
            refused.append(section)
    if backend == "torch":  # torch refuses only the [brian2] tables
        assert refused and set(refused) == {"brian2", "brian2.spiking", "brian2.tau_population"}
    else:
        assert {"train", "mirror", "torch", "optimizer", "data", "brian2", "brian2.spiking"} <= set(refused)


def test_every_offending_key_is_refused_at_once_in_one_line():
    raw = {**BASE["brian2"], "data": {"name": "digits", "channels": 3, "augment": "flip"},
           "brian2": {"variant": "spiking", "tau": "5 ms", "dale": True, "spiking": {"refractory": "1 ms"}}}
    with pytest.raises(ConfigError) as info:
        parse_simulation(raw)
    message = str(info.value)
    assert "\n" not in message
    # refractory is a LIF key: refused beside the default neuron = "poisson"
    for key in ("data.channels", "data.augment", "brian2.tau", "brian2.dale", "brian2.spiking.refractory"):
        assert key in message
    assert "(spiking variant)" in message
    rate = {**BASE["brian2"], "brian2": {"spiking": {"tau_trace": "5 ms"}, "tau_population": {"hiden": "2 ms"}}}
    with pytest.raises(ConfigError, match=r"brian2\.spiking\.tau_trace, brian2\.tau_population\.hiden \(did you "
                                          r"mean 'hidden'\?\) are not honoured by the brian2 backend \(rate variant\)"):
        parse_simulation(rate)


def test_brian2_refuses_what_it_used_to_ignore_and_honours_what_it_runs():
    base = BASE["brian2"]
    for phase in ({"kind": "mirror", "noise_std": 0.5}, {"kind": "mirror", "learning_rate": 0.5},
                  {"kind": "mirror", "active_units": 4}, {"kind": "mirror", "batch_size": 8},
                  {"kind": "mirror", "record_every": 2}, {"kind": "engaged", "mirror_follows_lr": True},
                  {"kind": "prenatal", "batch_size": 8},
                  {"kind": "prenatal", "learning_rate": 0.1}):
        with pytest.raises(ConfigError, match="(is|are) not honoured by the brian2 backend"):
            parse_simulation({**base, "phases": [phase]})
    with pytest.raises(ConfigError, match=r"brian2\.seed: .* seeded from the simulation's seeds"):
        parse_simulation({**base, "brian2": {"seed": 3}})
    # A key whose default (None) the walk above leaves out.
    with pytest.raises(ConfigError, match=r"train\.early_weight_decay, \S+ are not honoured by the brian2 backend"):
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
    from neurocircuit.rules import describe_rule
    from neurocircuit.torch.nn.feedback_rules import get_rule

    assert set(SYNAPSE_RULES) <= set(list_rules())
    for name in ("bp", "fa", "usf", "brsf", "frsf", "kp", "wm"):
        description, rule = describe_rule(name), get_rule(name)
        assert (rule.learns_with_optimizer, rule.learns_in_mirror, rule.weight_transport) == (
            description.learns_with_optimizer, description.learns_in_mirror, description.weight_transport)
        assert set(rule.options()) == set(description.options)


def test_circuit_and_simulation_schema_import_no_torch():
    # The schema module itself, and its records built and checked (an OOD transform spec included).
    code = ("import sys, neurocircuit.circuit, neurocircuit.rules, neurocircuit.phases, neurocircuit.simulation as s; "
            "s.TrainSettings(ood_transforms=('rotate:20',)); "
            "import neurocircuit.torch.settings as t; t.TorchSettings(); "
            "s.parse_schedule([{'kind': 'mirror', 'steps': 2}, {'kind': 'engaged'}]); "
            "s.apply_settings({'model': 'x'}, ['train.epochs=2']); s.check_dataset_name('fashion_mnist'); "
            "print('torch' in sys.modules, 'brian2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
