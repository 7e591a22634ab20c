"""The circuit description: records, validation, TOML files, building torch networks."""

import pytest
import torch

import neurocircuit as nc
from neurocircuit.circuit import Circuit, Feedback, Population, Projection


def _mlp(**kw):
    return Circuit("mlp", (Population("x", (4,)), Population("h", (3,), "tanh"), Population("y", (2,))),
                   (Projection("W1", "x", "h"), Projection("W2", "h", "y")), **kw)


def test_shipped_models_load_and_run():
    assert set(nc.list_circuits()) >= {"mlp_digits", "mlp_784_500_10", "mlp_784_1000_1000_10", "lenet5"}
    for name in nc.list_circuits():
        net = nc.build_network(name, rule="fa", seed=0)
        c = net.circuit
        assert net(torch.randn(2, *c.input.shape)).shape == (2, c.output.size)
    lenet = nc.load_circuit("lenet5")
    assert lenet.input.shape == (1, 32, 32)
    assert [p.name for p in lenet.projections if p.plastic] == ["conv1", "conv2", "conv3", "fc1", "fc2"]


def test_rules_default_and_overrides():
    c = _mlp().with_rules("kp", {"W2": "bp"})
    assert c.feedback_for("W1").rule == "kp" and c.feedback_for("W2").rule == "bp"
    net = nc.nn.network_from_circuit(c, seed=0)
    assert net.W1.rule.name == "kp" and net.W2.rule.name == "bp"
    with pytest.raises(nc.ConfigError, match="unknown projection 'W3'"):
        _mlp().with_rules("fa", {"W3": "bp"})


def test_projection_order_is_recovered_from_the_chain():
    c = Circuit("mlp", (Population("x", (4,)), Population("h", (3,)), Population("y", (2,))),
                (Projection("W2", "h", "y"), Projection("W1", "x", "h")))
    assert [p.name for p in c.projections] == ["W1", "W2"]
    assert c.input.name == "x" and c.output.name == "y"


@pytest.mark.parametrize("bad, error, match", [
    (lambda: Population("x", (0,)), nc.ShapeError, "positive ints"),
    (lambda: Population("x", (3,), "swish"), nc.ConfigError, "unknown activation 'swish'"),
    (lambda: Projection("W", "a", "b", kind="lstm"), nc.ConfigError, "unknown kind 'lstm'"),
    (lambda: _mlp(feedback=(Feedback("W1", "nope"),)), nc.UnknownNameError, "unknown rule 'nope'"),
    (lambda: _mlp(feedback=(Feedback("W9", "fa"),)), nc.ConfigError, "'W9'"),
    (lambda: Circuit("c", (Population("x", (1, 8, 8)), Population("y", (4, 5, 5))),
                     (Projection("C", "x", "y", kind="conv2d", kernel_size=3),)), nc.ShapeError, r"\(4, 6, 6\)"),
    (lambda: Circuit("c", (Population("x", (3, 8, 8)), Population("y", (4, 8, 8))),
                     (Projection("C", "x", "y", kind="conv2d", kernel_size=3, padding=1, groups=2),)),
     nc.ShapeError, "groups=2"),
    (lambda: Circuit("c", (Population("x", (4,)), Population("y", (2, 1, 1))), (Projection("W", "x", "y"),)),
     nc.ShapeError, "vector target"),
    (lambda: Circuit("c", (Population("x", (4,)), Population("y", (2,))), (Projection("W", "x", "z"),)),
     nc.ConfigError, "unknown population 'z'"),
    (lambda: Circuit("c", (Population("x", (4,)), Population("y", (2,)), Population("z", (2,))),
                     (Projection("W", "x", "y"), Projection("V", "x", "z"))), nc.ConfigError, "chain"),
])
def test_validation_errors_name_the_problem(bad, error, match):
    with pytest.raises(error, match=match):
        bad()


def test_conv_shapes_chain_with_stride_padding_dilation():
    c = Circuit("c", (Population("x", (2, 9, 9)), Population("y", (4, 4, 4)), Population("p", (4, 2, 2))),
                (Projection("C", "x", "y", kind="conv2d", kernel_size=(3, 3), stride=(2, 2), padding=(0, 1),
                            dilation=(1, 2)),
                 Projection("P", "y", "p", kind="avgpool2d", kernel_size=2)))
    net = nc.nn.network_from_circuit(c.with_rules("fa"), seed=0)
    assert net.populations(torch.randn(3, 2, 9, 9))["y"].shape == (3, 4, 4, 4)


def test_toml_round_trip_and_strict_keys(tmp_path):
    c = nc.load_circuit("lenet5", rule="kp", overrides={"fc2": "bp"})
    again = nc.circuit_from_dict(c.to_dict())
    assert again == c
    path = tmp_path / "m.toml"
    path.write_text('name = "m"\n[[populations]]\nname = "x"\nshape = [3]\n[[populations]]\nname = "y"\n'
                    'shape = [2]\nactivaton = "relu"\n[[projections]]\nsource = "x"\ntarget = "y"\n')
    with pytest.raises(nc.ConfigError, match=r"unknown key 'activaton' \(did you mean 'activation'\?\)"):
        nc.load_circuit(path)


def test_build_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(5)
    state = torch.get_rng_state()
    a = nc.build_network("mlp_digits", rule="fa", seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    b = nc.build_network("mlp_digits", rule="fa", seed=1)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_wrong_input_shape_is_a_clear_error():
    net = nc.build_network("mlp_digits", seed=0)
    with pytest.raises(ValueError, match="does not fit circuit 'mlp_digits'"):
        net(torch.randn(2, 63))


def test_lenet5_biotorch_differs_from_lenet5_only_in_its_linear_f6() -> None:
    """BioTorch's le_net_mnist has no nonlinearity between its two dense layers; everything else is lenet5."""
    ours, theirs = nc.load_circuit("lenet5"), nc.load_circuit("lenet5_biotorch")
    assert [p.name for p in ours.populations] == [p.name for p in theirs.populations]
    differ = {p.name for p, q in zip(ours.populations, theirs.populations) if p != q}
    assert differ == {"f6"}
    assert ours.population("f6").activation == "relu" and theirs.population("f6").activation == "identity"
    assert ours.projections == theirs.projections


def test_a_circuit_is_loaded_and_a_network_built_old_names_warn():
    circuit = nc.load_circuit("mlp_digits")
    built = nc.build_network(circuit, rule="fa", seed=2)  # a Circuit object, not only a name
    named = nc.build_network("mlp_digits", rule="fa", seed=2)
    for a, b in zip(built.state_dict().values(), named.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.warns(DeprecationWarning, match="use neurocircuit.build_network"):
        old = nc.get_model("mlp_digits", rule="fa", seed=2)
    assert type(old) is type(named)
    with pytest.warns(DeprecationWarning, match="use neurocircuit.load_circuit"):
        assert nc.load_model("mlp_digits") == circuit
    with pytest.warns(DeprecationWarning, match="use neurocircuit.list_circuits"):
        assert nc.list_models() == nc.list_circuits()
    with pytest.warns(DeprecationWarning, match="network_from_circuit"):
        assert nc.nn.build_network is nc.nn.network_from_circuit
    with pytest.raises(TypeError, match="must be a name, a path or a Circuit"):
        nc.build_network(None)
    # the old submodule paths of neurocircuit.nn
    from neurocircuit.nn.rules import get_rule

    from neurocircuit.nn.build import build_network
    from neurocircuit.nn.direct import wire_direct_feedback
    from neurocircuit.torch.nn.feedback_rules import get_rule as new_get_rule
    from neurocircuit.torch.nn.wiring import wire_direct_feedback as new_wire

    assert (get_rule, wire_direct_feedback) == (new_get_rule, new_wire)
    with pytest.warns(DeprecationWarning, match="network_from_circuit"):
        build_network(circuit, seed=0)


def test_a_built_circuit_keeps_its_own_rules_unless_a_rule_is_given():
    circuit = nc.load_circuit("mlp_digits", rule="kp", overrides={"W2": "bp"})
    net = nc.build_network(circuit, seed=0)
    assert [(name, layer.rule.name) for name, layer in nc.nn.feedback_layers(net)] == [("W1", "kp"), ("W2", "bp")]
    again = nc.build_network(circuit, rule="fa", seed=0)
    assert {layer.rule.name for _, layer in nc.nn.feedback_layers(again)} == {"fa"}
