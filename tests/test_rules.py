"""Rules: registry, sign-symmetry construction, Kolen-Pollack's exact decay of W - B."""

import math
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from torch import nn

import neurocircuit as nc
from neurocircuit.nn import FeedbackConv2d, FeedbackLinear, FeedbackOptimizer, attach_feedback_learning
from neurocircuit.torch.nn.feedback_rules import FeedbackRule, register_rule


def test_registry_lists_every_rule_and_rejects_unknown_names_and_options():
    assert set(nc.list_rules()) >= {"bp", "fa", "usf", "brsf", "frsf", "kp", "wm"}
    with pytest.raises(nc.UnknownNameError, match="unknown rule 'nope'"):
        nc.get_rule("nope")
    with pytest.raises(nc.ConfigError, match="no option 'gian'"):
        nc.get_rule("fa", gian=2.0)
    assert nc.get_rule("fa", gain=0.5).gain == 0.5


def test_user_rule_plugs_into_the_shared_layers():
    @register_rule
    @dataclass
    class NegativeTranspose(FeedbackRule):
        """B = -W: sends the error down with the wrong sign."""

        name: ClassVar[str] = "test_negative"

        def feedback(self, layer):
            return -layer.weight.detach()

    layer = FeedbackLinear(3, 2, rule="test_negative").double()
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    g = torch.randn(4, 2, dtype=torch.float64)
    layer(x).backward(g)
    torch.testing.assert_close(x.grad, -(g @ layer.weight.detach()), rtol=0, atol=0)
    assert "test_negative" in nc.list_rules()


@pytest.mark.parametrize("rule", ["usf", "brsf", "frsf"])
@pytest.mark.parametrize("make", [lambda r: FeedbackLinear(20, 10, rule=r), lambda r: FeedbackConv2d(3, 4, 3, rule=r)])
def test_sign_symmetry_B_has_the_signs_of_W(rule, make):
    layer = make(rule)
    B = layer.current_feedback()
    assert torch.equal(torch.sign(B), torch.sign(layer.weight.detach()))
    assert B.shape == layer.weight.shape


def test_usf_is_uniform_magnitude_with_norm_of_W():
    layer = FeedbackLinear(30, 10, rule="usf")
    B = layer.current_feedback()
    assert torch.allclose(B.abs(), B.abs()[0, 0].expand_as(B))
    torch.testing.assert_close(B.norm(), layer.weight.detach().norm())


def test_brsf_draws_fresh_magnitudes_each_step():
    layer = FeedbackLinear(30, 10, rule="brsf")
    assert not torch.equal(layer.current_feedback().abs(), layer.current_feedback().abs())


def test_brsf_magnitudes_are_uniform_and_follow_torch_seed():
    from neurocircuit.torch.nn.feedback_rules import uniform_like

    layer = FeedbackLinear(400, 300, rule="brsf")
    torch.manual_seed(5)
    first = layer.current_feedback()
    torch.manual_seed(5)
    torch.testing.assert_close(layer.current_feedback(), first, rtol=0, atol=0)  # torch's seed fixes the draw
    u = first.abs() / (math.sqrt(3.0) * layer.weight.detach().pow(2).mean().sqrt())
    assert float(u.max()) < 1 and float(u.min()) >= 0
    # U(0, 1): mean 1/2, variance 1/12, flat deciles (120k samples: 5 sigma bounds)
    assert abs(float(u.mean()) - 0.5) < 5 * math.sqrt(1 / 12 / u.numel())
    assert abs(float(u.var()) - 1 / 12) < 5e-3
    counts = torch.histc(u, bins=10, min=0, max=1)
    assert float((counts / u.numel() - 0.1).abs().max()) < 5 * math.sqrt(0.09 / u.numel())
    for dtype in (torch.float32, torch.float64):
        assert uniform_like(torch.zeros(3, 4, dtype=dtype)).dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_uniforms_fill_the_16_bit_grid_evenly(dtype: torch.dtype) -> None:
    from neurocircuit.torch.nn.feedback_rules import uniform_like

    torch.manual_seed(0)
    n = 262_144
    u = uniform_like(torch.zeros(n, dtype=dtype), high=2.0)
    k = (u.double() * 2**15)  # high * k / 2**16 -> k
    assert u.dtype == dtype and torch.equal(k, k.round())  # exactly on the grid, scaled in one rounding-free step
    assert float(k.min()) >= 0 and float(k.max()) <= 2**16 - 1 and float(u.max()) < 2.0
    # every one of the 65,536 values equally likely: the distinct count of n draws is 65536 (1 - exp(-n / 65536))
    # = 64,336 (sd ~33); a coarser draw (fewer bits) would give at most half of that
    assert abs(k.unique().numel() - 65536 * (1 - math.exp(-n / 65536))) < 200
    counts = torch.bincount(k.long() // 4096, minlength=16).double()  # 16 equal bins
    assert float(((counts - n / 16) / math.sqrt(n / 16)).abs().max()) < 5


def test_brsf_follows_a_channels_last_weight() -> None:
    layer = FeedbackConv2d(8, 6, 3, rule="brsf").to(memory_format=torch.channels_last)
    w = layer.weight.detach()
    assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    b = layer.current_feedback()
    assert torch.equal(torch.sign(b), torch.sign(w))
    assert float(b.abs().max()) < math.sqrt(3.0) * float(w.pow(2).mean().sqrt())


def test_no_feedback_is_drawn_where_no_error_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    from neurocircuit.nn import rules as torch_rules

    calls = []
    real = torch_rules.uniform_like
    monkeypatch.setattr(torch_rules, "uniform_like", lambda *a, **k: calls.append(1) or real(*a, **k))
    layer = FeedbackLinear(20, 5, rule="brsf")
    x = torch.randn(4, 20)
    with torch.no_grad():
        eval_out = layer(x)
    layer(x).sum().backward()  # x needs no gradient: B would carry nothing
    assert calls == [] and layer.weight.grad is not None
    torch.testing.assert_close(eval_out, torch.nn.functional.linear(x, layer.weight, layer.bias))
    x.requires_grad_(True)
    layer(x).sum().backward()
    assert calls == [1]


def test_frsf_keeps_its_magnitudes_while_W_and_its_signs_change():
    layer = FeedbackLinear(30, 10, rule="frsf")
    before = layer.current_feedback().abs().clone()
    signs_before = torch.sign(layer.weight.detach()).clone()
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    for _ in range(20):
        opt.zero_grad()
        layer(torch.randn(16, 30)).pow(2).sum().backward()
        opt.step()
    assert not torch.equal(torch.sign(layer.weight.detach()), signs_before)
    after = layer.current_feedback()
    assert torch.equal(after.abs(), before)
    assert torch.equal(torch.sign(after), torch.sign(layer.weight.detach()))


def test_feedback_is_a_buffer_never_a_parameter():
    for rule in nc.nn.rules.list_rules():
        layer = FeedbackLinear(5, 3, rule=rule)
        assert all(p is layer.weight or p is layer.bias for p in layer.parameters())
        keys = set(layer.state_dict())
        stores = nc.get_rule(rule).stores_feedback
        assert ("feedback_weight" in keys) == stores, rule


@pytest.mark.parametrize("make", [lambda: FeedbackLinear(12, 7, rule="kp"),
                                  lambda: FeedbackConv2d(3, 5, 3, stride=2, padding=1, rule="kp")])
def test_kp_mismatch_decays_exactly_as_one_minus_lambda_to_the_t(make):
    layer = make().double()
    lr, wd, steps = 0.05, 0.2, 25
    opt = torch.optim.SGD(layer.parameters(), lr=lr, weight_decay=wd)
    attach_feedback_learning(layer, opt)
    x_shape = (8, 12) if isinstance(layer, nn.Linear) else (4, 3, 9, 9)
    d0 = (layer.weight - layer.feedback_weight).norm().item()
    lam = lr * wd
    for t in range(1, steps + 1):
        opt.zero_grad()
        layer(torch.randn(*x_shape, dtype=torch.float64)).sin().sum().backward()
        opt.step()
        d = (layer.weight - layer.feedback_weight).norm().item()
        assert d == pytest.approx((1 - lam) ** t * d0, rel=1e-9)
    assert d < 0.8 * d0


def test_kp_own_decay_fades_B_s_random_start_exactly_and_leaves_W_alone():
    """B_t = (1 - lr lambda_B)^t B_0 + (the B a zero start would have): two layers alike but for B_0 differ by exactly
    that factor. (One layer: its gradient does not depend on its own B.) W keeps the optimizer's decay."""
    lr, wd, own, steps = 0.05, 0.01, 0.4, 20
    layers = [FeedbackLinear(12, 7, rule=nc.get_rule("kp", decay=own)).double() for _ in range(2)]
    plain = FeedbackLinear(12, 7, rule="kp").double()
    with torch.no_grad():
        for layer in layers[1:] + [plain]:
            layer.weight.copy_(layers[0].weight)
            layer.bias.copy_(layers[0].bias)
        plain.feedback_weight.copy_(layers[0].feedback_weight)
    opts = [torch.optim.SGD(m.parameters(), lr=lr, weight_decay=wd) for m in (*layers, plain)]
    for m, opt in zip((*layers, plain), opts):
        attach_feedback_learning(m, opt)
    gap0 = layers[0].feedback_weight - layers[1].feedback_weight
    for t in range(1, steps + 1):
        x = torch.randn(8, 12, dtype=torch.float64)
        for m, opt in zip((*layers, plain), opts):
            opt.zero_grad()
            m(x).sin().sum().backward()
            opt.step()
        gap = layers[0].feedback_weight - layers[1].feedback_weight
        torch.testing.assert_close(gap, (1 - lr * own) ** t * gap0, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(layers[0].weight, plain.weight, rtol=0, atol=0)  # W's decay is the optimizer's
    assert not torch.allclose(layers[0].feedback_weight, plain.feedback_weight)
    with pytest.raises(nc.ConfigError, match="decay must be a number >= 0"):
        nc.get_rule("kp", decay=-1.0)


def test_kp_without_decay_keeps_the_initial_mismatch():
    layer = FeedbackLinear(12, 7, rule="kp").double()
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    attach_feedback_learning(layer, opt)
    diff0 = (layer.weight - layer.feedback_weight).detach().clone()
    for _ in range(10):
        opt.zero_grad()
        layer(torch.randn(8, 12, dtype=torch.float64)).pow(2).sum().backward()
        opt.step()
    torch.testing.assert_close(layer.weight - layer.feedback_weight, diff0, rtol=0, atol=1e-12)


def test_kp_follows_momentum_and_lr_schedules():
    """With momentum the mismatch obeys D_t = D_{t-1} - lr * v_t, v_t = mu v_{t-1} + wd D_{t-1}."""
    layer = FeedbackLinear(6, 4, rule="kp").double()
    opt = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    attach_feedback_learning(layer, opt)
    D = (layer.weight - layer.feedback_weight).detach().clone()
    v = torch.zeros_like(D)
    for _ in range(9):
        lr = opt.param_groups[0]["lr"]
        opt.zero_grad()
        layer(torch.randn(5, 6, dtype=torch.float64)).pow(2).sum().backward()
        opt.step()
        sched.step()
        v = 0.9 * v + 0.1 * D
        D = D - lr * v
        torch.testing.assert_close(layer.weight - layer.feedback_weight, D, rtol=1e-10, atol=1e-12)


def test_kp_only_moves_B_of_kp_layers_and_detects_a_moved_model():
    model = nn.Sequential(FeedbackLinear(4, 4, rule="kp"), FeedbackLinear(4, 2, rule="fa"))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    kp = FeedbackOptimizer(model, opt)
    fa_B = model[1].feedback_weight.clone()
    kp_B = model[0].feedback_weight.clone()
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    assert torch.equal(model[1].feedback_weight, fa_B)
    assert not torch.equal(model[0].feedback_weight, kp_B)
    model.double()
    with pytest.raises(RuntimeError, match="create the FeedbackOptimizer again"):
        kp.step()
    kp.remove()


def test_kp_layer_missing_from_optimizer_is_an_error():
    model = nn.Sequential(FeedbackLinear(4, 4, rule="kp"), FeedbackLinear(4, 2, rule="kp"))
    opt = torch.optim.SGD(model[1].parameters(), lr=0.1)
    with pytest.raises(ValueError, match="does not hold"):
        FeedbackOptimizer(model, opt)


def test_skipped_optimizer_steps_skip_B_too():
    layer = FeedbackLinear(4, 3, rule="kp")
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    attach_feedback_learning(layer, opt)
    scaler = torch.amp.GradScaler("cpu")
    B0 = layer.feedback_weight.clone()
    loss = layer(torch.full((2, 4), float("inf"))).sum()
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    assert torch.equal(layer.feedback_weight, B0)


def test_kp_without_weight_decay_warns_that_it_cannot_align(recwarn):
    from neurocircuit.errors import NoAlignmentWarning

    layer = FeedbackLinear(6, 4, rule="kp")
    with pytest.warns(NoAlignmentWarning, match="weight_decay = 0"):
        attach_feedback_learning(layer, torch.optim.SGD(layer.parameters(), lr=0.1))
    attach_feedback_learning(layer, torch.optim.SGD(layer.parameters(), lr=0.1, weight_decay=1e-3))
    fa = FeedbackLinear(6, 4, rule="fa")  # no KP layer, nothing to warn about
    attach_feedback_learning(fa, torch.optim.SGD(fa.parameters(), lr=0.1))
    assert not [w for w in recwarn if issubclass(w.category, NoAlignmentWarning)]
