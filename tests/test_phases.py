"""Mirror and prenatal phases, schedules, and the data they use."""

import gzip
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

import neurocircuit as nc
from neurocircuit.data import find_fashion_mnist, load_fashion_mnist, read_idx, transform_images
from neurocircuit.nn import FeedbackConv2d, FeedbackLinear, angle_degrees, convert, participation_ratio
from neurocircuit.phases import MirrorPhase, MirrorSettings, PrenatalPhase, parse_schedule
from neurocircuit.torch.nn.mirror import mirror_step, mirror_update
from neurocircuit.torch.phase_runners import run_mirror_phase, run_prenatal_phase

MIRROR = MirrorSettings(noise_std=1.0, learning_rate=0.05, decay=0.05, batch_size=256)


@pytest.mark.parametrize("noise", ["gaussian", "uniform"])
@pytest.mark.parametrize("make", [lambda: FeedbackLinear(50, 20, rule="wm"),
                                  lambda: FeedbackConv2d(4, 8, 3, stride=2, padding=1, rule="wm"),
                                  lambda: FeedbackConv2d(4, 8, 3, groups=2, dilation=2, rule="wm")])
def test_mirror_drives_the_angle_below_5_degrees_within_300_steps(make, noise):
    layer = make()
    settings = MirrorSettings(noise=noise, noise_std=0.5, learning_rate=0.2, decay=0.05, batch_size=256)
    g = torch.Generator().manual_seed(0)
    assert angle_degrees(layer.feedback_weight, layer.weight) > 60
    for _ in range(300):
        mirror_update(layer, settings, generator=g)
    assert angle_degrees(layer.feedback_weight, layer.weight) < 5.0
    # B settles at (eta sigma^2 / lambda) W = W here.
    ratio = (layer.feedback_weight.norm() / layer.weight.norm()).item()
    assert ratio == pytest.approx(1.0, rel=0.1)


@pytest.mark.parametrize("batch_size", [16, 4096])  # either order of the Hebbian product
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("make", [lambda: FeedbackLinear(60, 40, rule="wm"),
                                  lambda: FeedbackConv2d(12, 40, 3, padding=1, rule="wm")])
def test_a_mirror_step_adds_the_mean_of_drive_times_noise(make, sparse, batch_size):
    """decay 1, rate 1: B's active columns become mean(y x^T) over the step's noise, y = W x its drive (float64);
    the other columns keep their values."""
    from neurocircuit.torch.nn.mirror import _active_mask, spontaneous_noise

    torch.manual_seed(0)
    layer = make().double()
    w, before = layer.weight.detach(), layer.feedback_weight.clone()
    fan_in = w[0].numel()
    active_units = fan_in // 3 if sparse else None  # about a third of the inputs (channels for the conv)
    settings = MirrorSettings(learning_rate=1.0, decay=1.0, batch_size=batch_size, active_units=active_units)
    replay = torch.Generator().manual_seed(7)  # the same draws, in the same order
    mask = _active_mask(w.shape[1], fan_in, settings, replay, w.device)
    active = None if mask is None else mask.nonzero().squeeze(1)
    columns = torch.arange(w.shape[1]) if active is None else active
    assert 0 < len(columns) < w.shape[1] if sparse else len(columns) == w.shape[1]
    flat = w.index_select(1, columns).reshape(w.shape[0], -1)
    x = spontaneous_noise((batch_size, flat.shape[1]), settings, generator=replay, device=w.device, dtype=w.dtype)
    y = x @ flat.t()
    expected = (y.unsqueeze(2) * x.unsqueeze(1)).mean(0).reshape(w.index_select(1, columns).shape)
    mirror_update(layer, settings, generator=torch.Generator().manual_seed(7))
    b = layer.feedback_weight
    torch.testing.assert_close(b.index_select(1, columns), expected, rtol=1e-12, atol=1e-14)
    rest = torch.ones(w.shape[1], dtype=torch.bool)
    rest[columns] = False
    assert torch.equal(b[:, rest], before[:, rest])


@pytest.mark.parametrize("masked", [True, None])  # asked for, or chosen because indexing would wait for a device
@pytest.mark.parametrize("decay", [1.0, 0.25])
@pytest.mark.parametrize("make", [lambda: FeedbackLinear(60, 40, rule="wm"),
                                  lambda: FeedbackConv2d(12, 40, 3, padding=1, rule="wm")])
def test_the_sync_free_mirror_step_is_the_sparse_step_on_masked_noise(make, decay, masked, monkeypatch):
    """Where picking the active inputs' indices would wait for the device (an accelerator), a fixed number of
    candidate units (the active ones first) draws noise and the silent ones' is zeroed: B's active columns get
    (1 - lambda) B + eta mean(y x^T) over that noise, every other column keeps its value, and no ``nonzero`` runs
    (float64)."""
    from neurocircuit.nn import mirror
    from neurocircuit.torch.nn.mirror import _active_mask, _candidates, spontaneous_noise

    torch.manual_seed(0)
    layer = make().double()
    w, before = layer.weight.detach(), layer.feedback_weight.clone()
    fan_in, units = w[0].numel(), w.shape[1]
    settings = MirrorSettings(learning_rate=0.5, decay=decay, batch_size=256, active_units=fan_in // 3)
    replay = torch.Generator().manual_seed(3)
    on = _active_mask(units, fan_in, settings, replay, w.device)
    active = [i for i in range(units) if on[i]]
    chosen = active + [i for i in range(units) if not on[i]][:_candidates(units, 1 / 3) - len(active)]
    assert 0 < len(active) < units and len(active) <= len(chosen) == _candidates(units, 1 / 3)
    taps = fan_in // units
    x = spontaneous_noise((256, len(chosen) * taps), settings, generator=replay, device=w.device, dtype=w.dtype)
    x *= on[chosen].double().repeat_interleave(taps)
    flat = w[:, chosen].reshape(w.shape[0], -1)
    hebb = ((x @ flat.t()).unsqueeze(2) * x.unsqueeze(1)).mean(0).reshape(w[:, chosen].shape)
    expected = before.clone()
    expected[:, active] = (1 - decay) * before[:, active] + 0.5 * hebb[:, :len(active)]

    if masked is None:
        monkeypatch.setattr(mirror, "_indices_would_sync", lambda mask: True)
    monkeypatch.setattr(torch.Tensor, "nonzero", lambda *a, **k: pytest.fail("nonzero ran"))
    mirror.mirror_update(layer, settings, generator=torch.Generator().manual_seed(3), masked=masked)
    b = layer.feedback_weight
    torch.testing.assert_close(b[:, active], expected[:, active], rtol=1e-12, atol=1e-14)
    silent = [i for i in range(units) if not on[i]]
    assert torch.equal(b[:, silent], before[:, silent])


def test_a_static_size_draw_keeps_every_active_unit_but_in_the_far_tail() -> None:
    """The candidates are the smallest k with P(Binomial(n, p) > k) < 1e-15: one fewer would not be enough."""
    from neurocircuit.torch.nn.mirror import _candidates

    def above(n: int, p: Fraction, k: int) -> Fraction:  # exact
        return sum(math.comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range(k + 1, n + 1))

    for n, p in [(512, Fraction(64, 4608)), (2048, Fraction(64, 18432)), (60, Fraction(1, 3)), (64, Fraction(1, 9))]:
        k = _candidates(n, float(p))
        assert above(n, p, k) < 1e-15 <= above(n, p, k - 1), (n, p, k)
    assert _candidates(12, 1.0) == 12 and _candidates(12, 1 / 3) == 12  # (12 at 1/3: P(count = 12) > 1e-15)
    assert _candidates(512, 64 / 4608) < 40  # ResNet-50 layer4's 3x3 conv: 7.1 active channels on average


@pytest.mark.parametrize("masked", [False, True])
def test_sparse_spontaneous_activity_still_aligns(masked):
    layer = FeedbackLinear(200, 30, rule="wm")
    settings = MirrorSettings(learning_rate=0.4, decay=0.4, batch_size=512, active_units=8)
    g = torch.Generator().manual_seed(1)
    for _ in range(600):
        mirror_update(layer, settings, generator=g, masked=masked)
    assert angle_degrees(layer.feedback_weight, layer.weight) < 5.0


@pytest.mark.parametrize("settings", [MirrorSettings(learning_rate=1.0, decay=0.01, batch_size=8),
                                      MirrorSettings(learning_rate=1.0, decay=0.0, normalize=True, batch_size=8)])
def test_the_bound_keeps_B_finite_over_ten_thousand_steps(settings):
    layer = FeedbackLinear(10, 5, rule="wm")
    g = torch.Generator().manual_seed(0)
    norms = []
    for step in range(10_000):
        mirror_update(layer, settings, generator=g)
        if step % 1000 == 999:
            norms.append(layer.feedback_weight.norm().item())
    w = layer.weight.norm().item()
    bound = settings.learning_rate / settings.decay if settings.decay else 1.0
    assert all(np.isfinite(norms)) and max(norms) < 2 * bound * w
    if settings.normalize:
        assert norms[-1] == pytest.approx(w, rel=1e-5)


def test_a_mirror_needs_a_bound():
    with pytest.raises(nc.ConfigError, match="needs a bound"):
        MirrorSettings(decay=0.0)


def test_b_is_gain_times_the_estimate_and_normalize_removes_noise_and_rate() -> None:
    """With decay 1 each mirror step replaces B by learning_rate * noise_std^2 times the burst's estimate of W, so
    B's scale is that gain exactly (same noise draws, float64); ``normalize`` makes B independent of both."""
    from neurocircuit.nn import mirror_gain

    torch.manual_seed(0)
    layer = FeedbackLinear(30, 12, rule="wm").double()

    def mirrored(**kw: float) -> torch.Tensor:
        settings = MirrorSettings(decay=1.0, batch_size=64, **kw)
        mirror_update(layer, settings, generator=torch.Generator().manual_seed(3))
        return layer.feedback_weight.clone()

    unit = mirrored(noise_std=1.0, learning_rate=1.0)
    torch.testing.assert_close(mirrored(noise_std=3.0, learning_rate=0.5), 4.5 * unit, rtol=1e-9, atol=1e-15)
    torch.testing.assert_close(mirrored(noise_std=0.3, learning_rate=1.0), 0.09 * unit, rtol=1e-9, atol=1e-15)
    normalized = mirrored(noise_std=1.0, learning_rate=1.0, normalize=True)
    for kw in ({"noise_std": 3.0, "learning_rate": 0.5}, {"noise_std": 0.3, "learning_rate": 1.0}):
        torch.testing.assert_close(mirrored(normalize=True, **kw), normalized, rtol=1e-9, atol=1e-15)
    assert mirror_gain(MirrorSettings(noise_std=3.0, learning_rate=0.5, decay=0.5)) == 9.0
    assert mirror_gain(MirrorSettings(noise_std=3.0, learning_rate=0.5, decay=0.5, normalize=True)) is None
    # with averaging (decay < 1) B settles at the gain times W
    for _ in range(400):
        mirror_update(layer, MirrorSettings(noise_std=2.0, learning_rate=0.05, decay=0.1, batch_size=512))
    ratio = float(layer.feedback_weight.norm() / layer.weight.detach().norm())
    assert abs(ratio - 2.0) < 0.1, ratio


def test_an_unbalanced_mirror_warns_with_its_gain() -> None:
    from torch.utils.data import TensorDataset

    from neurocircuit.errors import FeedbackScaleWarning
    from neurocircuit.torch import fit

    data = TensorDataset(torch.randn(16, 6), torch.randint(0, 3, (16,)))

    def run(settings: MirrorSettings) -> list[str]:
        torch.manual_seed(0)
        model = nn.Sequential(FeedbackLinear(6, 5, rule="wm"), nn.ReLU(), FeedbackLinear(5, 3, rule="wm"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit(model, data, data, optimizer=torch.optim.SGD(model.parameters(), lr=0.01), epochs=1, batch_size=8,
                mirror=settings, mirror_every=1, progress=False)
        return [str(w.message) for w in caught if issubclass(w.category, FeedbackScaleWarning)]

    messages = run(MirrorSettings(noise_std=3.0, learning_rate=1.0, decay=1.0))
    assert len(messages) == 1 and "B settles at 9 x W" in messages[0] and "[mirror]" in messages[0]
    assert run(MirrorSettings(noise_std=1.0, learning_rate=1.0, decay=1.0)) == []
    assert run(MirrorSettings(noise_std=3.0, learning_rate=1.0, decay=1.0, normalize=True)) == []


def test_mirror_touches_only_B():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 4))
    convert(model, "wm", overrides={"4": "fa"}, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 3, 8, 8)).sum().backward()
    opt.step()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt_state = {k: v["momentum_buffer"].clone() for k, v in opt.state.items()}
    assert mirror_step(model, MIRROR, generator=torch.Generator().manual_seed(0)) == 1
    after = model.state_dict()
    for key in before:
        same = torch.equal(before[key], after[key])
        assert same == (key != "0.feedback_weight"), key
    for p, buf in opt_state.items():
        assert torch.equal(opt.state[p]["momentum_buffer"], buf)


def test_prenatal_leaves_B_alone_and_aligns_W_with_B():
    model = nc.build_network("mlp_digits", rule="fa", seed=0)
    buffers = {n: m.feedback_weight.clone() for n, m in model.named_modules() if hasattr(m, "feedback_weight")}
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    phase = PrenatalPhase(samples=64 * 300, dataset_size=640, batch_size=64, record_every=100)
    ds = run_prenatal_phase(model, phase, input_shape=(64,), n_classes=10, optimizer=opt,
                            generator=torch.Generator().manual_seed(0), progress=False)
    for name, m in model.named_modules():
        if name in buffers:
            assert torch.equal(m.feedback_weight, buffers[name])
    angle = ds["prenatal_weight_angle"].sel(layer="W2")
    assert list(ds["prenatal_step"].values) == [0, 100, 200, 300]
    assert float(angle[0]) > 80 and float(angle[-1]) < 70


def test_prenatal_without_a_fixed_noise_set_does_not_align():
    """Fresh noise and labels every step give nothing to learn: the control of the memorised noise set."""
    model = nc.build_network("mlp_digits", rule="fa", seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    ds = run_prenatal_phase(model, PrenatalPhase(samples=64 * 300, dataset_size=None, record_every=100),
                            input_shape=(64,), n_classes=10, optimizer=opt, generator=torch.Generator().manual_seed(0),
                            progress=False)
    assert float(ds["prenatal_weight_angle"].sel(layer="W2")[-1]) > 80


def test_norm_matched_control_keeps_the_norms_but_not_the_alignment():
    """keep = "norms": every parameter back to its initial direction with the norm the noise phase gave it."""
    model = nc.build_network("mlp_digits", rule="fa", seed=0)
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    twin = nc.build_network("mlp_digits", rule="fa", seed=0)
    phase = dict(samples=64 * 300, dataset_size=640, record_every=300)
    for net, keep in ((model, "norms"), (twin, "all")):
        ds = run_prenatal_phase(net, PrenatalPhase(**phase, keep=keep), input_shape=(64,), n_classes=10,
                                optimizer=torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9),
                                generator=torch.Generator().manual_seed(0), progress=False)
        assert float(ds["prenatal_weight_angle"].sel(layer="W2")[-1]) < 70  # the phase itself aligned W2
    trained = dict(twin.named_parameters())
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.norm(), trained[name].norm())
        cosine = torch.nn.functional.cosine_similarity(param.flatten(), initial[name].flatten(), dim=0)
        torch.testing.assert_close(cosine, torch.tensor(1.0), atol=1e-6, rtol=0)
    assert float(nc.nn.metrics.weight_alignment(model)["weight_angle"].sel(layer="W2")) > 80
    assert model.W2.weight.norm() > 1.5 * initial["W2.weight"].norm()  # the warm start's scale is kept


def test_prenatal_fresh_noise_is_spelled_fresh():
    assert parse_schedule([{"kind": "prenatal", "dataset_size": "fresh"}]).phases[0].dataset_size is None
    with pytest.raises(nc.ConfigError, match="dataset_size must be a number of patterns or \"fresh\""):
        parse_schedule([{"kind": "prenatal", "dataset_size": "new"}])
    with pytest.raises(nc.ConfigError, match="keep must be"):
        parse_schedule([{"kind": "prenatal", "keep": "weights"}])


def test_prenatal_keeps_kp_feedback_fixed_too():
    model = nc.build_network("mlp_digits", rule="kp", seed=0)
    b = model.W2.feedback_weight.clone()
    run_prenatal_phase(model, PrenatalPhase(samples=640, labels="uniform"), input_shape=(64,), n_classes=10,
                       optimizer=torch.optim.SGD(model.parameters(), lr=0.1), progress=False)
    assert torch.equal(model.W2.feedback_weight, b)


def test_mirror_phase_records_angle_over_steps():
    model = nc.build_network("mlp_digits", rule="wm", seed=0)
    ds = run_mirror_phase(model, MirrorPhase(steps=100, record_every=50, settings=MIRROR),
                          generator=torch.Generator().manual_seed(0))
    assert ds["mirror_weight_angle"].dims == ("mirror_step", "layer")
    assert float(ds["mirror_weight_angle"].sel(layer="W1")[-1]) < float(ds["mirror_weight_angle"].sel(layer="W1")[0])


def test_schedule_parsing_and_errors():
    sched = parse_schedule([{"kind": "prenatal", "samples": 100}, {"kind": "mirror", "steps": 5, "noise_std": 0.1},
                            {"kind": "engaged", "mirror_every": 2}], mirror=MIRROR)
    assert [p.kind for p in sched.phases] == ["prenatal", "mirror", "engaged"]
    assert sched.phases[1].settings.noise_std == 0.1 and sched.phases[1].settings.batch_size == 256
    with pytest.raises(nc.ConfigError, match="'kind' must be one of"):
        parse_schedule([{"kind": "sleep"}])
    with pytest.raises(nc.ConfigError, match="unique"):
        parse_schedule([{"kind": "mirror"}, {"kind": "mirror"}])
    with pytest.raises(nc.ConfigError, match="unknown key 'step'"):
        parse_schedule([{"kind": "mirror", "step": 3}])
    with pytest.raises(nc.ConfigError, match="inputs must be"):
        parse_schedule([{"kind": "prenatal", "inputs": "images"}])


def test_participation_ratio_is_exact():
    w = torch.diag(torch.tensor([3.0, 1.0, 1.0, 0.0]))
    lam = np.array([9.0, 1.0, 1.0, 0.0])
    assert participation_ratio(w) == pytest.approx(lam.sum() ** 2 / (lam ** 2).sum())
    assert participation_ratio(torch.eye(5)) == pytest.approx(5.0)
    assert participation_ratio(torch.ones(4, 6)) == pytest.approx(1.0)


def _write_idx(path, array, magic_type=0x08, truncate=0):
    header = bytes([0, 0, magic_type, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    data = data[:len(data) - truncate] if truncate else data
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def _fake_fashion(folder, n_train=20, n_test=10, truncate=0):
    rng = np.random.default_rng(0)
    folder.mkdir(exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(folder / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)), truncate=truncate)
        _write_idx(folder / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, (n,)))


def test_idx_loader_reads_what_it_was_given(tmp_path):
    arr = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(np.uint8)
    _write_idx(tmp_path / "a.idx", arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), arr)
    _fake_fashion(tmp_path / "fm")
    train, test, info = load_fashion_mnist(root=str(tmp_path / "fm"), pad=2, download=False)
    assert info.input_shape == (1, 32, 32) and len(train) == 20 and len(test) == 10
    raw = read_idx(tmp_path / "fm" / "train-images-idx3-ubyte.gz")
    expected = (torch.tensor(raw[0], dtype=torch.float32) / 255 - 0.2860) / 0.3530
    torch.testing.assert_close(train.tensors[0][0, 0, 2:30, 2:30], expected)


def test_idx_loader_fails_clearly(tmp_path):
    _fake_fashion(tmp_path / "fm", truncate=100)
    with pytest.raises(nc.DataError, match="truncated or corrupt"):
        load_fashion_mnist(root=str(tmp_path / "fm"), download=False)
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(nc.DataError, match="bad magic"):
        read_idx(tmp_path / "bad.idx")
    (tmp_path / "empty").mkdir()
    with pytest.raises(nc.DataError, match="does not hold the Fashion-MNIST files"):
        find_fashion_mnist(tmp_path / "empty", download=False)


def test_transforms_keep_shape_and_identity_is_identity():
    train, test, _ = nc.data.load_digits()
    same = transform_images(test, "rotate:0")
    torch.testing.assert_close(same.tensors[0], test.tensors[0], atol=1e-5, rtol=0)
    moved = transform_images(test, "shift:2")
    assert moved.tensors[0].shape == test.tensors[0].shape
    assert torch.equal(moved.tensors[0][:, :, 2:, 2:], test.tensors[0][:, :, :-2, :-2])
    with pytest.raises(nc.ConfigError, match="bad transform"):
        transform_images(test, "flip:1")


def test_simulation_with_phases_ood_and_per_arm_schedules(tmp_path):
    from neurocircuit.cli import main

    sim = tmp_path / "s.toml"
    sim.write_text('''
model = "mlp_digits"
seeds = [0, 1]
arms = ["bp",
         { rule = "fa", label = "fa+noise", phases = [{ kind = "prenatal", samples = 640 }, { kind = "engaged" }] },
         "wm"]
phases = [{ kind = "mirror", steps = 40, record_every = 20 }, { kind = "engaged", mirror_every = 2 }]
[mirror]
learning_rate = 0.1
decay = 0.1
batch_size = 128
[optimizer]
name = "sgd"
lr = 0.05
momentum = 0.9
[train]
epochs = 2
lr_schedule = "cosine"
ood_transforms = ["rotate:20", "shift:1"]
''')
    assert main(["run", str(sim), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    ds = xr.open_dataset(tmp_path / "out" / "results.nc")
    assert list(ds["arm"].values) == ["bp", "fa+noise", "wm"] and list(ds["rule"].values) == ["bp", "fa", "wm"]
    assert ds["ood_accuracy"].dims == ("arm", "seed", "transform")
    for var in ("weight_angle", "mirror_weight_angle", "prenatal_weight_angle", "prenatal_gradient_angle"):
        assert ds[var].attrs["units"] == "degree", var
    assert ds["test_accuracy"].attrs["units"] == "1" and ds["effective_dim"].attrs["units"] == "1"
    assert ds["mirror_weight_angle"].sel(arm="fa+noise").isnull().all()
    assert not ds["mirror_weight_angle"].sel(arm="wm").isnull().any()
    assert ds["prenatal_weight_angle"].sel(arm="wm").isnull().all()
    wm_angle = ds["weight_angle"].sel(arm="wm").isel(step=-1)
    assert float(wm_angle.max()) < 30
    for fig in ("learning_curves", "mirror_weight_angle", "prenatal_weight_angle", "effective_dim", "ood_accuracy"):
        assert (tmp_path / "out" / f"{fig}.png").exists(), fig
    ds.close()


@pytest.mark.parametrize("arm", ['"wm"', '{ rule = "fa", overrides = { W2 = "wm" } }'])
@pytest.mark.parametrize("backend", ["torch", "brian2"])
def test_a_wm_projection_whose_phases_never_mirror_is_refused(arm, backend, tmp_path, capsys):
    # without a mirror phase or mirror_every, B would stay fixed: the arm would silently be fa
    from neurocircuit.cli import main
    from neurocircuit.errors import ConfigError
    from neurocircuit.simulation import load_simulation

    path = tmp_path / "s.toml"
    path.write_text(f'model = "mlp_digits"\nbackend = "{backend}"\narms = [{arm}]\ndata = {{ name = "digits" }}\n')
    with pytest.raises(ConfigError, match=r"uses rule 'wm', but its phases \(engaged\) never mirror, so B would "
                                          r"stay fixed: give it a mirror phase or mirror_every \(arms\.0\.phases\)"):
        load_simulation(str(path))
    for phases in ('[{ kind = "mirror", steps = 2 }, { kind = "engaged" }]',
                   '[{ kind = "engaged", mirror_every = 3 }]'):  # a mirror phase or interleaved steps: accepted
        sim = load_simulation(str(path), [f"phases={phases}"])
        assert sim.schedule_for(sim.arms[0]).mirrors
    # the CLI shortcut --rule wm drops the default simulation's own wm arm (and its mirror phase): refused, exit 2
    assert main(["run", "--rule", "wm", "--out", str(tmp_path / "o")]) == 2
    assert "arm 'wm' uses rule 'wm'" in capsys.readouterr().err


def test_the_defaults_docs_phases_gives_for_mirror_are_the_records() -> None:
    import dataclasses
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "phases.md").read_text()
    block = doc[doc.index("[mirror]"):doc.index("[[phases]]")]
    shown = dict(re.findall(r"^(\w+) = .*\[([^\]]+)\]$", block, flags=re.M))
    defaults = {f.name: f.default for f in dataclasses.fields(MirrorSettings)}
    assert set(shown) == set(defaults)
    for key, text in shown.items():
        value = defaults[key]
        expected = "all" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        assert text == expected, (key, text, value)
