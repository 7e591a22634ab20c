"""Protocol options: Xavier and He initialisation, step milestones, resized Fashion-MNIST."""

import math

import pytest
import torch

import neurocircuit as nc
from neurocircuit.errors import ConfigError
from neurocircuit.nn import initialize
from neurocircuit.simulation import TrainSettings, load_simulation
from neurocircuit.torch.optim import lr_factor


def test_xavier_initialises_w_and_b_with_their_fan_bound_and_zero_bias():
    model = nc.build_network("lenet5", rule="fa", seed=0)
    initialize(model, "xavier", seed=3)
    for layer in (model.conv1, model.fc1):
        w, b = layer.weight.detach(), layer.feedback_weight
        receptive = w[0][0].numel() if w.dim() > 2 else 1
        bound = math.sqrt(6 / ((w.shape[0] + w.shape[1]) * receptive))
        for t in (w, b):
            assert t.abs().max() <= bound and t.abs().max() > 0.95 * bound
            assert abs(t.double().std().item() - bound / math.sqrt(3)) < 0.1 * bound
        assert not torch.equal(w, b)  # independent draws
        assert torch.count_nonzero(layer.bias) == 0
    again = initialize(nc.build_network("lenet5", rule="fa", seed=1), "xavier", seed=3)
    torch.testing.assert_close(again.conv1.weight, model.conv1.weight, rtol=0, atol=0)  # the seed fixes the draw
    with pytest.raises(ConfigError, match="unknown initialisation 'kaiming'"):
        initialize(model, "kaiming")


def test_he_initialises_w_and_b_normal_with_std_sqrt_2_over_fan_in_and_zero_bias():
    model = nc.build_network("lenet5", rule="fa", seed=0)
    initialize(model, "he", seed=3)
    # conv3: 120 x 16 x 5 x 5 (fan_in = 16 channels x 25 = 400, 48000 values); fc1: 84 x 120 (10080 values)
    for layer, fan_in in ((model.conv3, 16 * 5 * 5), (model.fc1, 120)):
        w, b = layer.weight.detach().double(), layer.feedback_weight.double()
        std = math.sqrt(2 / fan_in)
        for t in (w, b):
            # sd of a sample sd of n normals: std / sqrt(2n); 5 of those is far from chance, far below fan-out's std
            assert abs(t.std().item() - std) < 5 * std / math.sqrt(2 * t.numel())
            assert abs(t.mean().item()) < 5 * std / math.sqrt(t.numel())
            assert t.abs().max() > 3 * std  # normal tails: a uniform draw of that std stops at 1.73 std
        assert abs(torch.corrcoef(torch.stack([w.flatten(), b.flatten()]))[0, 1].item()) < 0.05  # B independent of W
        assert torch.count_nonzero(layer.bias) == 0
    again = initialize(nc.build_network("lenet5", rule="fa", seed=1), "he", seed=3)
    for name in ("weight", "feedback_weight"):  # the seed fixes the draw, whatever the network was built with
        torch.testing.assert_close(getattr(again.fc1, name), getattr(model.fc1, name), rtol=0, atol=0)
    other = initialize(nc.build_network("lenet5", rule="fa", seed=0), "he", seed=4)
    assert not torch.equal(other.fc1.weight, model.fc1.weight)


def test_he_keeps_the_rules_b_structure_and_reaches_converted_torchvision_models():
    usf = initialize(nc.build_network("mlp_digits", rule="usf", seed=0), "he", seed=0)
    assert usf.W1.feedback_weight is None  # usf derives B from W at every step: nothing stored to draw
    torch.testing.assert_close(usf.W1.current_feedback().sign(), usf.W1.weight.detach().sign(), rtol=0, atol=0)
    dfa = nc.build_network("mlp_digits", rule="dfa", seed=0)
    direct_seed = dfa.W1.direct_seed.clone()
    initialize(dfa, "he", seed=0)
    assert torch.equal(dfa.W1.direct_seed, direct_seed)  # the direct matrix keeps its draw
    resnet = initialize(nc.build_network("resnet18", rule="fa", num_classes=10, seed=0), "he", seed=0)
    conv = resnet.layer1[0].conv1  # 64 x 64 x 3 x 3: fan_in 576 (torchvision's own init is fan-out)
    for t in (conv.weight.detach(), conv.feedback_weight):
        assert abs(t.double().std().item() - math.sqrt(2 / 576)) < 0.02 * math.sqrt(2 / 576)


def test_step_milestones_divide_the_lr_at_the_listed_epochs():
    train = TrainSettings(lr_schedule="step", lr_milestones=[2, 3], lr_gamma=0.1)
    factor = lr_factor(train, epochs=5, steps_per_epoch=10)
    assert [factor(s) for s in (0, 19, 20, 29, 30, 49)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    with pytest.raises(ConfigError, match="lr_milestones must be increasing"):
        TrainSettings(lr_schedule="step", lr_milestones=[3, 2])
    with pytest.raises(ConfigError, match='needs lr_schedule = "step"'):
        TrainSettings(lr_milestones=[2])
    known = r"\(known: default, xavier, he\)"
    with pytest.raises(ConfigError, match=r"train.init: unknown initialisation 'glorot' " + known):
        load_simulation("default", ["train.init='glorot'"])  # the torch backend knows the schemes


def test_fashion_mnist_resized_to_32_is_not_padding(tmp_path):
    import gzip

    import numpy as np

    from neurocircuit.data import load_fashion_mnist

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("t10k", 4)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        for name, array, magic in ((f"{split}-images-idx3-ubyte", images, 0x803),
                                   (f"{split}-labels-idx1-ubyte", labels, 0x801)):
            header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
            with gzip.open(tmp_path / f"{name}.gz", "wb") as f:
                f.write(header + array.tobytes())
    resized, _, info = load_fashion_mnist(root=str(tmp_path), download=False, image_size=32)
    padded, _, _ = load_fashion_mnist(root=str(tmp_path), download=False, pad=2)
    assert info.input_shape == (1, 32, 32) and resized.tensors[0].shape == (6, 1, 32, 32)
    border = resized.tensors[0][:, :, 0, :]
    assert border.std() > 0.1 and padded.tensors[0][:, :, 0, :].std() == 0  # content reaches the edge
    with pytest.raises(ConfigError, match="excludes data.pad"):
        load_fashion_mnist(root=str(tmp_path), download=False, image_size=32, pad=2)
