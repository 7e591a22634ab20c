"""convert(): any torch network, torchvision ResNets included."""

import io

import pytest
import torch
import torchvision
from torch import nn

import neurocircuit as nc
from neurocircuit.nn import FeedbackConv2d, FeedbackLinear, convert, feedback_layers


@pytest.fixture(scope="module")
def resnet_pair():
    torch.manual_seed(0)
    plain = torchvision.models.resnet18(num_classes=10).eval()
    converted = torchvision.models.resnet18(num_classes=10).eval()
    converted.load_state_dict(plain.state_dict())
    report = convert(converted, "fa", overrides={"fc": "bp"}, seed=0)
    return plain, converted, report


def test_resnet18_all_convolutions_and_fc_are_converted(resnet_pair):
    _, converted, report = resnet_pair
    assert report.count("Conv2d") == 20
    assert report.count("Linear") == 1
    assert report.count(rule="bp") == 1 and report.count(rule="fa") == 20
    assert not any(type(m) in (nn.Conv2d, nn.Linear) for m in converted.modules())
    assert isinstance(converted.fc, FeedbackLinear) and converted.fc.rule.name == "bp"
    assert "layer1.0.conv1" in report.summary()


def test_conversion_keeps_the_forward_output(resnet_pair):
    plain, converted, _ = resnet_pair
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), plain(x), rtol=0, atol=0)


def test_conversion_keeps_the_parameter_objects():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(1, 3, 6, 6))
    weight = model[0].weight
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    convert(model, "kp")
    assert model[0].weight is weight
    assert any(p is weight for p in opt.param_groups[0]["params"])


def test_state_dict_round_trip_with_B(resnet_pair):
    _, converted, _ = resnet_pair
    state = converted.state_dict()
    assert "layer1.0.conv1.feedback_weight" in state and "fc.feedback_weight" not in state  # fc is bp
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    fresh = torchvision.models.resnet18(num_classes=10)
    convert(fresh, "fa", overrides={"fc": "bp"}, seed=123)
    assert not torch.equal(fresh.layer1[0].conv1.feedback_weight, converted.layer1[0].conv1.feedback_weight)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    for (_, a), (_, b) in zip(feedback_layers(fresh), feedback_layers(converted)):
        if b.feedback_weight is not None:
            assert torch.equal(a.feedback_weight, b.feedback_weight)


def test_to_dtype_moves_B():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(16, 2))
    convert(model, "kp")
    model.to(torch.float64)
    assert model[0].feedback_weight.dtype == torch.float64
    assert model[2].feedback_weight.dtype == torch.float64
    model.to(torch.bfloat16)
    assert model[0].feedback_weight.dtype == torch.bfloat16


def test_seeded_conversion_is_reproducible():
    a, b = nn.Sequential(nn.Linear(5, 5)), nn.Sequential(nn.Linear(5, 5))
    convert(a, "fa", seed=3)
    convert(b, "fa", seed=3)
    assert torch.equal(a[0].feedback_weight, b[0].feedback_weight)


def test_reconvert_and_patterns():
    model = torchvision.models.resnet18(num_classes=4)
    convert(model, "fa")
    report = convert(model, "kp", overrides={"layer4.*": "wm", "fc": "bp"})
    assert isinstance(model.layer4[1].conv2, FeedbackConv2d) and model.layer4[1].conv2.rule.name == "wm"
    assert model.layer1[0].conv1.rule.name == "kp"
    assert report.count(rule="wm") == 5  # 4 convs + the downsample conv of layer4.0


def test_bad_conversions():
    with pytest.raises(nc.ConfigError, match="'layer9'"):
        convert(torchvision.models.resnet18(), "fa", overrides={"layer9": "bp"})
    with pytest.raises(nc.UnknownNameError):
        convert(nn.Sequential(nn.Linear(2, 2)), "nope")
    with pytest.raises(TypeError, match="wrap"):
        convert(nn.Linear(2, 2), "fa")
    report = convert(nn.Sequential(nn.Conv1d(2, 2, 1), nn.Linear(2, 2)), "fa")
    assert report.skipped[0][0] == "0" and len(report) == 1


def test_the_api_names_wrong_arguments_and_lists_what_it_cannot_convert():
    import neurocircuit as nc
    from neurocircuit.nn import alignment

    with pytest.raises(TypeError, match="model must be a name or a path, got int 5"):
        nc.load_circuit(5)
    with pytest.raises(TypeError, match="module must be a torch nn.Module, got str 'resnet18'"):
        convert("resnet18", "fa")
    with pytest.raises(ValueError, match="has no feedback layers; convert it first"):
        alignment(nn.Sequential(nn.Linear(3, 2)))
    model = nn.ModuleDict({"rnn": nn.LSTM(4, 5), "gru": nn.GRU(4, 5), "attn": nn.MultiheadAttention(8, 2),
                           "norm": nn.LayerNorm(5), "head": nn.Linear(5, 3)})
    report = convert(model, "fa", seed=0)
    skipped = dict(report.skipped)
    assert {"rnn", "gru", "attn"} <= set(skipped) and "norm" not in skipped and "keeps backprop" in skipped["rnn"]
    assert [layer.name for layer in report.layers] == ["head"] and "attn.out_proj" in skipped
