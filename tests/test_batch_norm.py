"""A population's ``batch_norm``: ReLU -> BatchNorm in the torch network, refused by the Brian2 backend."""

import pytest
import torch
from torch import nn

import neurocircuit as nc
from neurocircuit.circuit import circuit_from_dict

CIRCUIT = """name = "bn"
[[populations]]
name = "x"
shape = [8]
[[populations]]
name = "h1"
shape = [16]
activation = "relu"
batch_norm = BN
[[populations]]
name = "h2"
shape = [12]
activation = "relu"
[[populations]]
name = "y"
shape = [3]
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


def _circuit(batch_norm: bool = True) -> nc.Circuit:
    return circuit_from_dict({
        "name": "bn", "feedback": {"rule": "fa"},
        "populations": [{"name": "x", "shape": [8]},
                        {"name": "h1", "shape": [16], "activation": "relu", "batch_norm": batch_norm},
                        {"name": "h2", "shape": [12], "activation": "relu"}, {"name": "y", "shape": [3]}],
        "projections": [{"source": "x", "target": "h1"}, {"source": "h1", "target": "h2"},
                        {"source": "h2", "target": "y"}]})


def test_batch_norm_sits_after_the_activation_of_the_populations_that_ask_for_it():
    net = nc.nn.network_from_circuit(_circuit(), seed=0)
    assert list(net.batch_norm) == ["h1"] and isinstance(net.batch_norm["h1"], nn.BatchNorm1d)
    assert net.batch_norm["h1"].num_features == 16
    assert [n for n, m in net.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] == ["batch_norm.h1"]
    x = torch.randn(64, 8)
    h1 = net.populations(x)["h1"]
    # train mode: every unit normalised over the batch, after the ReLU (so negative values appear)
    torch.testing.assert_close(h1.mean(0), torch.zeros(16), atol=1e-5, rtol=0)
    torch.testing.assert_close(h1.var(0, unbiased=False), torch.ones(16), atol=1e-3, rtol=0)
    relu = torch.relu(net.W1(x))
    torch.testing.assert_close(h1, (relu - relu.mean(0)) / (relu.var(0, unbiased=False) + 1e-5).sqrt())
    assert (net.populations(x)["h2"] >= 0).all()  # h2 has no batch_norm: its ReLU is the last word


def test_batch_norm_uses_batch_statistics_in_train_mode_and_running_ones_in_eval_mode():
    net = nc.nn.network_from_circuit(_circuit(), seed=0)
    x = torch.randn(32, 8)
    net.train()
    net(x)
    bn = net.batch_norm["h1"]
    relu = torch.relu(net.W1(x)).detach()
    torch.testing.assert_close(bn.running_mean, 0.1 * relu.mean(0))  # torch's momentum 0.1 from 0
    net.eval()
    alone, in_batch = net(x[:1]), net(x)[:1]
    torch.testing.assert_close(alone, in_batch)  # eval: a sample's output does not depend on its batch
    expected = (relu - bn.running_mean) / (bn.running_var + bn.eps).sqrt()
    torch.testing.assert_close(net.populations(x)["h1"], expected)
    net.train()
    assert not torch.allclose(net(x[:2])[:1], net(x)[:1])  # train: it does


def test_batch_norm_leaves_the_feedback_of_the_projection_above_alone():
    with_bn = nc.nn.network_from_circuit(_circuit(True), seed=0)
    without = nc.nn.network_from_circuit(_circuit(False), seed=0)
    for name in ("W1", "W2", "W3"):  # the same draws of W and B with or without the normalisation
        assert torch.equal(getattr(with_bn, name).weight, getattr(without, name).weight)
        assert torch.equal(getattr(with_bn, name).feedback_weight, getattr(without, name).feedback_weight)
    # the error reaching h1 is the one W2's B sends down (FA), then BatchNorm's own backward
    x = torch.randn(16, 8)
    acts = {}
    h1 = torch.relu(with_bn.W1(x))
    acts["h1"] = with_bn.batch_norm["h1"](h1)
    acts["h1"].retain_grad()
    u2 = with_bn.W2(acts["h1"])
    u2.retain_grad()
    with_bn.W3(torch.relu(u2)).square().sum().backward()
    torch.testing.assert_close(acts["h1"].grad, u2.grad @ with_bn.W2.feedback_weight)
    before = with_bn.W2.feedback_weight.clone()
    optimizer = torch.optim.SGD(with_bn.parameters(), lr=0.1)
    optimizer.zero_grad()
    nn.functional.cross_entropy(with_bn(x), torch.zeros(16, dtype=torch.long)).backward()
    optimizer.step()
    assert torch.equal(with_bn.W2.feedback_weight, before)
    assert with_bn.batch_norm["h1"].weight.grad is not None  # its scale and shift learn with W


def test_conv_populations_get_batchnorm2d_and_the_dict_form_keeps_it():
    circuit = nc.Circuit("c", (nc.Population("x", (1, 6, 6)), nc.Population("f", (4, 4, 4), "relu", True),
                               nc.Population("y", (2,))),
                         (nc.Projection("C", "x", "f", kind="conv2d", kernel_size=3), nc.Projection("W", "f", "y")))
    net = nc.nn.network_from_circuit(circuit.with_rules("fa"), seed=0)
    assert isinstance(net.batch_norm["f"], nn.BatchNorm2d) and net.batch_norm["f"].num_features == 4
    assert net(torch.randn(5, 1, 6, 6)).shape == (5, 2)
    assert nc.circuit_from_dict(circuit.to_dict()) == circuit
    assert "batch_norm" not in nc.load_circuit("mlp_digits").to_dict()["populations"][1]


def test_a_bad_batch_norm_is_a_one_line_config_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(CIRCUIT.replace("BN", '"yes"'))
    with pytest.raises(nc.ConfigError, match=r"^population 'h1': batch_norm: expected bool, got 'yes'$"):
        nc.load_circuit(path)
    with pytest.raises(nc.ConfigError, match="'x' is the input, clamped to data: batch_norm"):
        nc.Circuit("c", (nc.Population("x", (4,), batch_norm=True), nc.Population("y", (2,))),
                   (nc.Projection("W", "x", "y"),))


def test_the_brian2_backend_refuses_a_circuit_with_batch_norm_by_name(tmp_path):
    from neurocircuit.simulation import parse_simulation

    path = tmp_path / "bn.toml"
    path.write_text(CIRCUIT.replace("BN", "true"))
    raw = {"model": str(path), "backend": "brian2", "arms": ["fa"], "phases": [{"kind": "mirror", "steps": 1}]}
    with pytest.raises(nc.ConfigError, match=r"^s.toml: model '.*bn.toml': population 'h1' has batch_norm; the "
                                             r"Brian2 backend's populations see one sample at a time \(no batch\)$"):
        parse_simulation(raw, source="s.toml")  # checked before anything runs
    path.write_text(CIRCUIT.replace("BN", "false"))
    parse_simulation(raw, source="s.toml")
    torch_sim = parse_simulation({**raw, "backend": "torch"}, source="s.toml")  # the torch backend builds it
    path.write_text(CIRCUIT.replace("BN", "true"))
    assert "h1" in nc.build_network(torch_sim.model, rule="fa", seed=0).batch_norm


def test_a_prenatal_run_with_a_0_epoch_engaged_phase_records_the_angles_the_noise_left(tmp_path):
    """What noise_alignment_depth runs: He init, a BatchNorm circuit, prenatal noise, then one record and no data step
    (the record `neurocircuit table angles` reads)."""
    from neurocircuit.runs import run_simulation
    from neurocircuit.simulation import parse_simulation

    path = tmp_path / "bn64.toml"
    path.write_text(CIRCUIT.replace("BN", "true").replace("shape = [8]", "shape = [64]").replace("[3]", "[10]"))
    sim = parse_simulation({
        "model": str(path), "seeds": [0], "optimizer": {"name": "sgd", "lr": 0.1},
        "train": {"init": "he", "alignment_samples": 8},
        "data": {"name": "digits", "train_samples": 64, "test_samples": 32},
        "arms": [{"rule": "fa", "label": "fixed", "phases": [
            {"kind": "prenatal", "samples": 3200, "dataset_size": 32, "record_every": 10},
            {"kind": "engaged", "epochs": 0}]}]}, source="t")
    ds = run_simulation(sim, progress=False)
    assert ds.sizes["step"] == 1 and float(ds["epoch"][0]) == 0
    after_noise = ds["prenatal_weight_angle"].isel(prenatal_step=-1)
    assert float(ds["prenatal_weight_angle"].isel(prenatal_step=0).min()) > 80  # He: B and W start unrelated
    assert float(after_noise.sel(layer="W3").squeeze()) < 80  # the memorised noise moved the readout
    torch.testing.assert_close(torch.as_tensor(ds["weight_angle"].isel(step=0).values),
                               torch.as_tensor(after_noise.values))
