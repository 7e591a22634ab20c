"""Direct feedback alignment: the hidden deltas are D e exactly, on any converted network, saved and restored."""

import copy

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

import neurocircuit as nc
from neurocircuit.nn import FeedbackLinear, alignment, convert, direct_layers, direct_matrix, wire_direct_feedback


def mlp(rule: str = "dfa") -> nn.Module:
    return nc.build_network("mlp_784_1000_1000_10", rule=rule, seed=0).double()


def test_hidden_deltas_are_the_output_error_through_each_direct_matrix_exactly():
    model = mlp()
    x = torch.randn(6, 784, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 10, (6,))
    # The circuit's forward, by hand, keeping every pre-activation's gradient.
    u1 = model.W1(x)
    u1.retain_grad()
    h1 = torch.relu(u1)
    u2 = model.W2(h1)
    u2.retain_grad()
    h2 = torch.relu(u2)
    u3 = model.W3(h2)
    u3.retain_grad()
    F.cross_entropy(u3, target).backward()
    e = u3.grad
    d2 = direct_matrix(model.W2, 10, (1000,), dtype=torch.float64)
    d1 = direct_matrix(model.W1, 10, (784,), dtype=torch.float64)
    b3 = model.W3.feedback_weight
    exact = dict(rtol=1e-12, atol=1e-15)
    # Top hidden layer: e through the output layer's B (DFA and FA agree there); below it: e through D.
    torch.testing.assert_close(u2.grad, (e @ b3) * (u2 > 0), **exact)
    torch.testing.assert_close(u1.grad, (e @ d2) * (u1 > 0), **exact)
    torch.testing.assert_close(x.grad, e @ d1, **exact)
    # The weight updates stay local: delta * y^T.
    torch.testing.assert_close(model.W2.weight.grad, u2.grad.t() @ h1, **exact)
    torch.testing.assert_close(model.W1.weight.grad, u1.grad.t() @ x, **exact)
    # And the rule matters: backprop's delta at u1 goes through W2, not through D.
    bp_u1 = ((u2.grad @ model.W2.weight) * (u1 > 0)).detach()
    assert (u1.grad - bp_u1).abs().max() > 1e-3


def test_direct_matrices_are_drawn_like_a_layer_init_and_fixed_by_the_seed():
    a, b = mlp(), mlp()
    d = direct_matrix(a.W2, 10, (1000,), dtype=torch.float64)
    assert d.shape == (10, 1000)
    assert d.abs().max() <= 1 / 1000**0.5 and d.abs().max() > 0.9 / 1000**0.5
    torch.testing.assert_close(d, direct_matrix(b.W2, 10, (1000,), dtype=torch.float64), rtol=0, atol=0)
    assert not torch.equal(direct_matrix(a.W1, 10, (1000,)), direct_matrix(a.W2, 10, (1000,)))  # own D per layer
    gained = nc.build_network("mlp_784_1000_1000_10", rule="dfa", options={"gain": 0.5}, seed=0)
    torch.testing.assert_close(direct_matrix(gained.W2, 10, (1000,), dtype=torch.float64), d / 2)


def test_the_direct_seed_is_saved_so_a_restored_model_sends_the_same_error():
    model = nc.build_network("mlp_784_1000_1000_10", rule="dfa")  # seed None: torch's RNG draws the seeds
    other = nc.build_network("mlp_784_1000_1000_10", rule="dfa")
    assert int(model.W2.direct_seed) != int(other.W2.direct_seed)
    other.load_state_dict(model.state_dict())
    x, target = torch.randn(4, 784), torch.randint(0, 10, (4,))
    for m in (model, other):
        F.cross_entropy(m(x), target).backward()
    torch.testing.assert_close(other.W1.weight.grad, model.W1.weight.grad, rtol=0, atol=0)
    # A deep copy carries its own hub: its layers read its own output's error.
    twin = copy.deepcopy(model)
    assert twin.W1.direct_hub is twin.W3.direct_hub is not model.W3.direct_hub
    assert twin.W1.direct_hub.output is twin.W3


def test_dfa_on_a_converted_resnet_sends_every_conv_input_e_through_its_matrix():
    model = torchvision.models.resnet18(num_classes=10)
    convert(model, "dfa", seed=0)
    assert model.conv1.direct_hub.output is model.fc
    assert len(direct_layers(model)) == len([m for m in model.modules() if isinstance(m, nn.Conv2d)])
    model.train()
    x = torch.randn(2, 3, 32, 32)
    seen_x = {}

    def keep(module, args):
        args[0].retain_grad()
        seen_x["x"] = args[0]

    model.layer4[1].conv2.register_forward_pre_hook(keep)
    out = model(x)
    out.retain_grad()
    F.cross_entropy(out, torch.tensor([1, 2])).backward()
    xin = seen_x["x"]
    expected = (out.grad.reshape(2, -1) @ direct_matrix(model.layer4[1].conv2, 10, tuple(xin.shape[1:]))
                ).reshape(xin.shape)
    # conv2's input is consumed by conv2 only, so its gradient is exactly e @ D.
    torch.testing.assert_close(xin.grad, expected, rtol=1e-5, atol=1e-7)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_dfa_alignment_metrics_are_measured_and_the_weight_angle_is_honestly_missing():
    model = mlp()
    x, target = torch.randn(32, 784, dtype=torch.float64), torch.randint(0, 10, (32,))
    ds = alignment(model, x, target)
    assert set(ds.data_vars) >= {"weight_angle", "gradient_angle", "update_angle"}
    angles = ds["weight_angle"].values
    assert torch.isnan(torch.tensor(angles[:2])).all() and 80 < angles[2] < 100  # W3 has a B: FA-like, random
    assert (ds["gradient_angle"].values > 60).all()  # a fresh D is unrelated to W
    update = ds["update_angle"].values
    assert update[2] == pytest.approx(0.0, abs=1e-9)  # the output layer's update is backprop's
    assert (update[:2] > 45).all()
    bp = alignment(mlp("bp"), x, target)
    assert abs(bp["update_angle"].values).max() < 1e-6  # the measure's control: bp agrees with itself


def test_a_dfa_layer_without_an_output_layer_says_what_to_do():
    model = nn.Sequential(FeedbackLinear(5, 4, rule="dfa"), nn.Tanh(), nn.Linear(4, 3))
    x = torch.randn(2, 5, requires_grad=True)
    with pytest.raises(RuntimeError, match="wire_direct_feedback"):
        model(x)
    convert(model, "dfa", seed=1)  # converting wires it: the plain Linear is the output layer now
    model(x).sum().backward()
    assert x.grad is not None
    with pytest.raises(ValueError, match="no feedback layer named 'head'"):
        wire_direct_feedback(model, output="head")


def test_dfa_trains_the_digits_mlp():
    from neurocircuit.data import load_dataset

    train, test, _ = load_dataset("digits")
    torch.manual_seed(0)
    model = nc.build_network("mlp_digits", rule="dfa", seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = train.tensors
    for _ in range(30):
        for idx in torch.randperm(len(x)).split(32):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    xt, yt = test.tensors
    with torch.no_grad():
        accuracy = (model(xt).argmax(1) == yt).float().mean().item()
    assert accuracy > 0.85  # chance is 0.10
