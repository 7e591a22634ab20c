"""The spiking variant against its derivation (docs/brian2.md, "The spiking variant"): the mean drive is the rate
circuit's steady state, LIF units fire at the rate their activity asks for, each plasticity rule's expectation is its
rate rule's, bad spiking parameters are refused in one line, and engaged learning runs with its rate-circuit twin."""

from __future__ import annotations

import numpy as np
import pytest
from brian2 import Hz, Network, NeuronGroup, SpikeMonitor, StateMonitor, ms, second

from neurocircuit.brian import RateParameters, SpikingParameters, brian_device, build_protocol
from neurocircuit.brian.neurons import neuron_model
from neurocircuit.brian.spiking import SpikingCircuit
from neurocircuit.circuit import circuit_from_dict
from neurocircuit.cli import main
from neurocircuit.errors import ConfigError
from neurocircuit.phases import EngagedPhase, MirrorPhase
from neurocircuit.runs import run_simulation
from neurocircuit.simulation import parse_simulation

SIZES = (8, 12, 4)


def small_circuit(rule: str):
    pops = [{"name": f"p{k}", "shape": [n], "activation": "tanh" if k == 1 else "identity"}
            for k, n in enumerate(SIZES)]
    projs = [{"name": f"W{k + 1}", "source": f"p{k}", "target": f"p{k + 1}"} for k in range(len(SIZES) - 1)]
    return circuit_from_dict({"name": "small", "populations": pops, "projections": projs}).with_rules(rule)


def small_weights(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Weights that keep every drive inside the units' range (|u| < ~1.5, |o| < 1)."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        scale = 0.8 / np.sqrt(n_in)
        out[f"W{k + 1}"] = (rng.normal(0, scale, (n_out, n_in)), rng.normal(0, 0.1, n_out),
                            rng.normal(0, scale, (n_out, n_in)))
    return out


def spiking(neuron: str) -> SpikingParameters:
    return SpikingParameters(neuron=neuron, rate_max=400 * Hz, tau_synapse=10 * ms, tau_trace=10 * ms,
                             refractory=1 * ms)


def rate_reference(weights, x: np.ndarray, target: np.ndarray):
    """The rate circuit's steady state for stimuli ``x`` (rows): h, o, e_o, e_h."""
    w1, b1, _ = weights["W1"]
    w2, b2, b_2 = weights["W2"]
    h = np.tanh(x @ w1.T + b1)
    o = h @ w2.T + b2
    e_o = np.clip(target - o, -1, 1)
    return h, o, e_o, (1 - h ** 2) * (e_o @ b_2)


def stimuli(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.8, 0.8, (n, SIZES[0])), rng.integers(0, SIZES[-1], n)


# ------------------------------------------------------------------------------------------ mean drive
# Measured (this circuit and seed): LIF |mean - ref| <= 0.075 everywhere; Poisson u of the hidden units <= 0.07, the
# activities and errors <= 0.27: the shot noise in u (sd ~0.5 at the output) passes through tanh and the clip to
# [-1, 1], so E[phi(u)] falls short of phi(E[u]) where |u| is large (a bias, not only noise: 10 windows do not help).
@pytest.mark.parametrize("neuron, windows, tolerance", [("lif", 5, 0.1), ("poisson", 10, 0.3)])
def test_mean_drive_is_the_rate_circuits_steady_state(neuron, windows, tolerance):
    x, y = stimuli(1)
    x, y = np.repeat(x, windows, 0), np.repeat(y, windows)
    weights = small_weights()
    params = RateParameters(dt=0.5 * ms, presentation=200 * ms, settle=100 * ms, eta_w=0 * Hz, lambda_w=0 * Hz,
                            record_every=1000, record_dt=10 * ms)
    protocol = build_protocol([EngagedPhase(epochs=1)], n_in=SIZES[0], n_out=SIZES[-1], train=(x, y),
                              test=(x[:1], y[:1]), seed=0)
    with brian_device(params):
        net = SpikingCircuit(small_circuit("fa"), weights, params, spiking(neuron), protocol)
        forward = {n: StateMonitor(net.layers[n].forward, ["a", "ahat", "u"], record=True, dt=1 * ms)
                   for n in ("p1", "p2")}
        error = {n: StateMonitor(net.layers[n].error, "d", record=True, dt=1 * ms) for n in ("p1", "p2")}
        net.network.add(*forward.values(), *error.values())
        net.run()
    h, o, e_o, e_h = rate_reference(weights, x[:1], protocol.target[:1])

    def mean(monitor, variable):  # over the training windows after the first settling (not the test or end window)
        t = np.asarray(monitor.t / second)
        return getattr(monitor, variable)[:, (t > 0.1) & (t < 0.2 * windows)].mean(axis=1)

    # the drive is linear in the input spikes: its mean is W x + b for both neuron models
    drive = x[0] @ weights["W1"][0].T + weights["W1"][1]
    np.testing.assert_allclose(mean(forward["p1"], "u"), drive, atol=0.1)
    for name, ref, err_ref in (("p1", h[0], e_h[0]), ("p2", o[0], e_o[0])):
        for variable in ("a", "ahat"):
            np.testing.assert_allclose(mean(forward[name], variable), ref, atol=tolerance, err_msg=(name, variable))
        np.testing.assert_allclose(mean(error[name], "d"), err_ref, atol=tolerance, err_msg=(name, "d"))
    assert np.abs(o).max() > 2 * tolerance and np.abs(e_h).max() > 2 * tolerance  # the references are not ~0


# ------------------------------------------------------------------------------------------ LIF rate mapping
def lif_rates(refractory: float, offset: float | None = None, rate_max: float = 300.0) -> np.ndarray:
    """Mean rates (Hz) of LIF units whose activity a = 0.9 sin(...) varies slowly (mean 0, so the expected rate
    is r0); ``offset`` (ms) replaces the model's step correction."""
    dt = 0.5 * ms
    model = neuron_model(SpikingParameters(neuron="lif", rate_max=rate_max * Hz, refractory=refractory * ms), dt)
    namespace = dict(model["namespace"])
    if offset is not None:
        namespace["offset"] = offset * ms
    group = NeuronGroup(9, "a = 0.9 * sin(2 * pi * t / (137 * ms) + i) : 1\n" + model["model"],
                        threshold=model["threshold"], reset=model["reset"], refractory=model["refractory"],
                        method="euler", namespace=namespace, dt=dt)
    for variable, value in model["initial"].items():
        setattr(group, variable, value)
    spikes = SpikeMonitor(group)
    duration = 137 * ms * 15  # whole periods of the drive: its mean is exactly 0
    Network(group, spikes).run(duration)
    return np.asarray(spikes.count) / float(duration / second)


@pytest.mark.parametrize("refractory", [0.0, 0.5, 1.3, 2.0])
def test_lif_units_fire_at_the_rate_their_activity_asks_for(refractory):
    with brian_device(RateParameters()):
        rates = lif_rates(refractory)
    # r0 = 150 Hz; the drive's sine makes the mean rate r0 exactly. Measured: 0.15-0.3 % slow (1.3 ms, a refractory
    # period that is not a whole number of steps, failed before the whole-step correction).
    assert abs(rates.mean() / 150 - 1) < 0.01, rates


def test_lif_rate_mapping_is_off_without_its_step_correction():
    with brian_device(RateParameters()):
        rates = lif_rates(2.0, offset=0.0)
    # Without counting the held step and the half step to the crossing, every period is ~0.75 ms too long:
    # measured 27 % too slow at r0 = 150 Hz.
    assert rates.mean() / 150 - 1 < -0.05, rates


# ------------------------------------------------------------------------------------------ plasticity
def plasticity(neuron: str, rule: str, shot: float | None = None, presentation: float = 200):
    """(measured dW2, predicted dW2, measured dB2, dW1, predicted dW1) over 6 samples with a tiny eta_w (windows
    of ``presentation`` ms, the last all but 100 ms of each learning)."""
    eta = 0.01
    x, y = stimuli(6)
    weights = small_weights()
    params = RateParameters(dt=0.5 * ms, presentation=presentation * ms, settle=100 * ms, eta_w=eta * Hz,
                            lambda_w=0 * Hz, record_every=1000, record_dt=50 * ms)
    protocol = build_protocol([EngagedPhase(epochs=1)], n_in=SIZES[0], n_out=SIZES[-1], train=(x, y),
                              test=(x[:1], y[:1]), seed=0)
    with brian_device(params):
        net = SpikingCircuit(small_circuit(rule), weights, params, spiking(neuron), protocol)
        if shot is not None:
            net.namespace["shot"] = shot
        net.run()
        w1, _ = net.matrices("W1")
        w2, b2 = net.matrices("W2")
    train = protocol.learn_w > 0
    h, _, e_o, e_h = rate_reference(weights, protocol.stimulus[train], protocol.target[train])
    scale = eta * float((params.presentation - params.settle) / second)  # eta_w T_learn
    return (w2 - weights["W2"][0], scale * e_o.T @ h, b2 - weights["W2"][2], w1 - weights["W1"][0],
            scale * e_h.T @ protocol.stimulus[train])


def slope_and_correlation(got: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    return float((got * ref).sum() / (ref * ref).sum()), float(np.corrcoef(got.ravel(), ref.ravel())[0, 1])


def large_signs_agree(got: np.ndarray, ref: np.ndarray) -> float:
    """Share of the entries the rule changes most (above a third of the largest) whose signs agree."""
    large = np.abs(ref) > np.abs(ref).max() / 3
    return float((np.sign(got[large]) == np.sign(ref[large])).mean())


def decay_part(got: np.ndarray, ref: np.ndarray, weight: np.ndarray, scale: float) -> float:
    """The coefficient of ``weight`` when ``got`` is fitted as a ref + c weight, per unit of eta_w T_learn: the
    weight decay the Poisson shot noise adds (-shot sum(1 + a_pre) over the samples, ~-1.5 here) where the rule
    does not subtract it."""
    design = np.stack([ref.ravel(), weight.ravel()], axis=1)
    return float(np.linalg.lstsq(design, got.ravel(), rcond=None)[0][1] / scale)


def test_lif_plasticity_has_the_sign_and_expectation_of_the_rate_rule():
    dw2, ref2, db2, dw1, ref1 = plasticity("lif", "kp")
    # Measured (6 samples, 100 ms learning each): slopes 0.93 (W2), 0.90 (kp's B2), 0.93 (W1), correlations 0.99.
    for got, ref in ((dw2, ref2), (db2, ref2), (dw1, ref1)):  # W's rule in both layers, and kp's B
        slope, corr = slope_and_correlation(got, ref)
        assert corr > 0.95 and abs(slope - 1) < 0.15, (slope, corr)
        assert large_signs_agree(got, ref) == 1.0


LIF_SCALE = 0.01 * (200 - 100) / 1000  # eta_w T_learn of plasticity()'s default windows


def test_lif_plasticity_has_no_weight_decay_part():
    dw2, ref2, *_ = plasticity("lif", "fa")
    assert abs(decay_part(dw2, ref2, small_weights()["W2"][0], LIF_SCALE)) < 0.05  # measured +0.019


def test_lif_plasticity_needs_its_periodic_shot_noise_correction():
    dw2, ref2, *_ = plasticity("lif", "fa", shot=0.0)
    # Without the kappa-scaled term W2 decays (measured -0.097 per eta_w T_learn; over brian2_learning_spiking's
    # epoch that shrank W2 to 0.73 of its rate twin's norm).
    assert decay_part(dw2, ref2, small_weights()["W2"][0], LIF_SCALE) < -0.06


def periodic_covariance(rate: float, tau_x: float, tau_s: float, delay: float, steps: int = 4000) -> float:
    """Cov(x, I) of a periodic train of ``rate`` (Hz) through a trace filter and a delayed synaptic filter, both of unit
    area, averaged over the spike phase by brute force (sums over 60 filter lengths of spikes)."""
    period = 1 / rate
    k = np.arange(-int(60 * max(tau_x, tau_s) / period) - 1, 1)  # spikes at or before each time
    phase = (np.arange(steps) + 0.5) / steps * period
    lag = phase[:, None] - k[None, :] * period  # time since each spike (>= 0)
    x = (np.exp(-lag / tau_x) / tau_x).sum(1)
    since = lag - delay
    current = np.where(since >= 0, np.exp(-np.clip(since, 0, None) / tau_s) / tau_s, 0.0).sum(1)
    return float((x * current).mean() - rate ** 2)


@pytest.mark.parametrize("tau_x, tau_s, delay", [(10, 10, 0), (10, 5, 0), (10, 10, 3), (20, 5, 7)])
def test_lif_shot_noise_factor_is_the_periodic_trains_covariance(tau_x, tau_s, delay):
    """kappa (the equations' closed form) times the Poisson covariance r exp(-D / tau_x) / (tau_x + tau_s) is the
    brute-force covariance of a periodic train's two filtered copies; kappa -> 1 for sparse spikes."""
    from neurocircuit.brian.spiking import _PERIODIC_KAPPA

    tau_x, tau_s, delay = tau_x * 1e-3, tau_s * 1e-3, delay * 1e-3
    rates = np.array([2.0, 20.0, 90.0, 200.0, 390.0])
    group = NeuronGroup(len(rates), "x : Hz\nahat = x / r0 - 1 : 1\n" + _PERIODIC_KAPPA,
                        namespace={"r0": 200 * Hz, "tau_trace": tau_x * second, "tau_syn": tau_s * second,
                                   "syn_delay": delay * second})
    group.x = rates * Hz
    Network(group).run(0 * ms)  # (a group no network ever held makes Brian2 warn)
    kappa = np.asarray(group.kappa[:])
    for rate, got in zip(rates, kappa):
        poisson = rate * np.exp(-delay / tau_x) / (tau_x + tau_s)
        assert got * poisson == pytest.approx(periodic_covariance(rate, tau_x, tau_s, delay), rel=2e-3, abs=1e-3)
    # isolated spikes are Poisson-like (1 - r (tau_x + tau_s) exp(D / tau_x) at 2 Hz); fast trains far below
    assert abs(kappa[0] - 1) < 0.1 and kappa[-1] < 0.2


POISSON_WINDOW = 400  # ms: 300 ms of learning per sample, for enough spikes


def test_poisson_plasticity_has_the_sign_and_expectation_of_the_rate_rule():
    dw2, ref2, db2, dw1, ref1 = plasticity("poisson", "kp", presentation=POISSON_WINDOW)
    # Measured: slopes 0.78 / 0.77 / 0.78 (W2, B2, W1; the noise in u bends E[tanh] and E[clip] below the rate
    # circuit's), correlations 0.82 / 0.87 / 0.90.
    for got, ref in ((dw2, ref2), (db2, ref2), (dw1, ref1)):
        slope, corr = slope_and_correlation(got, ref)
        assert corr > 0.7 and 0.6 < slope < 1.2, (slope, corr)
        assert large_signs_agree(got, ref) >= 0.8
    scale = 0.01 * (POISSON_WINDOW - 100) / 1000
    assert abs(decay_part(dw2, ref2, small_weights()["W2"][0], scale)) < 0.4  # measured -0.09


def test_poisson_plasticity_needs_its_shot_noise_correction():
    dw2, ref2, *_ = plasticity("poisson", "fa", shot=0.0, presentation=POISSON_WINDOW)
    scale = 0.01 * (POISSON_WINDOW - 100) / 1000
    # The output error covaries with the presynaptic trace's own spikes: without the correction W2 also decays
    # (measured: -1.26 per eta_w T_learn, against -0.09 with it).
    assert decay_part(dw2, ref2, small_weights()["W2"][0], scale) < -0.7


def test_wm_mirror_moves_b_towards_w():
    weights = small_weights()
    params = RateParameters(dt=0.5 * ms, presentation=100 * ms, noise_tau=10 * ms, eta_mirror=0.2 * Hz,
                            lambda_mirror=0 * Hz, settle=0 * ms, record_every=1000)
    protocol = build_protocol([MirrorPhase(steps=20)], n_in=SIZES[0], n_out=SIZES[-1])
    with brian_device(params):
        net = SpikingCircuit(small_circuit("wm"), weights, params, spiking("lif"), protocol)
        net.run()
        w2, b2 = net.matrices("W2")
    # dB = eta_mirror d^_pre a_fwd,post, E[dB] = eta_mirror W2 C (C the noise covariance): a positive multiple of W2
    # (measured: correlation 0.81 after 2 s)
    assert np.corrcoef((b2 - weights["W2"][2]).ravel(), w2.ravel())[0, 1] > 0.7


# ------------------------------------------------------------------------------------------ refused parameters
@pytest.mark.parametrize("settings, dt, message", [
    ({"neuron": "lif", "refractory": "-1 ms"}, None, r"refractory must be >= 0"),
    ({"neuron": "lif", "threshold": "-60 mV", "reset": "-60 mV"}, None, r"threshold .* must be above"),
    ({"neuron": "lif", "threshold": "-70 mV"}, None, r"threshold .* must be above"),
    ({"neuron": "izhikevich"}, None, r"neuron: unknown value 'izhikevich'"),
    ({"rate_max": "3 kHz"}, 0.5, r"rate_max .* is above 1 / brian2\.dt"),
    ({"neuron": "lif", "rate_max": "400 Hz", "refractory": "2 ms"}, 0.5, r"must be below 1 / \(refractory \+ dt\)"),
    ({"tau_synapse": "0.5 ms"}, 0.5, r"tau_synapse \(.*\) must be > brian2\.dt"),
])
def test_bad_spiking_parameters_are_refused_in_one_line(settings, dt, message):
    with pytest.raises(ConfigError, match=message) as info:
        params = SpikingParameters(**settings)
        params.check_against(dt * ms)
    assert "\n" not in str(info.value)


def test_lif_keys_beside_poisson_are_refused_by_name():
    raw = {"model": "mlp_digits", "backend": "brian2", "arms": ["wm"], "phases": [{"kind": "mirror", "steps": 1}],
           "brian2": {"variant": "spiking", "spiking": {"neuron": "poisson", "tau_membrane": "5 ms"}}}
    named = r"brian2\.spiking\.tau_membrane( \(did you mean .*\))? is not honoured by the brian2 backend"
    with pytest.raises(ConfigError, match=named):
        parse_simulation(raw)


def test_cli_refuses_a_bad_spiking_parameter_in_one_line(tmp_path, capsys):
    code = main(["run", "brian2_weight_mirror_spiking", "--out", str(tmp_path / "out"),
                 "--set", 'brian2.spiking.neuron="lif"', "--set", 'brian2.spiking.refractory="-1 ms"'])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("neurocircuit: error:") and "refractory must be >= 0" in err


# ------------------------------------------------------------------------------------------ engaged learning
def test_spiking_circuit_learns_and_reports_rates_and_its_rate_twin():
    raw = {"name": "spiking_learning", "model": "mlp_digits", "backend": "brian2", "seeds": [0],
           "arms": ["fa", "dfa", "wm"],  # wm mirrors every 1000th window: none falls in these 30
           "phases": [{"kind": "engaged", "epochs": 1, "mirror_every": 1000}],
           "data": {"name": "digits", "train_samples": 30, "test_samples": 10},
           "brian2": {"variant": "spiking", "dt": "0.5 ms", "presentation": "20 ms", "settle": "10 ms",
                      "eta_w": "5 Hz", "record_every": 10, "record_dt": "5 ms", "twin": True,
                      "spiking": {"rate_max": "400 Hz", "tau_synapse": "2 ms", "tau_trace": "5 ms"}}}
    ds = run_simulation(parse_simulation(raw), progress=False)
    assert list(ds["arm"].values) == ["fa", "dfa", "wm"]
    for arm in ("fa", "dfa", "wm"):  # W learnt: it moved during the engaged phase; wm's B, with no mirror, did not
        run = ds.sel(arm=arm, seed=0).dropna("weight_time", how="all")
        w_moved = float(abs(run["W2_W"].isel(weight_time=-1) - run["W2_W"].isel(weight_time=0)).max())
        assert w_moved > 1e-3, arm
    wm = ds.sel(arm="wm", seed=0).dropna("weight_time", how="all")["W2_B"]
    assert float(abs(wm.isel(weight_time=-1) - wm.isel(weight_time=0)).max()) == 0.0
    for name in ("test_accuracy", "twin_test_accuracy"):
        value = ds[name].isel(step=-1)
        assert ((value >= 0) & (value <= 1)).all(), name
    for name in ("hidden", "output", "hidden_error", "output_error"):
        rate = ds[f"{name}_rate"]
        assert rate.attrs["units"] == "Hz" and "time" in rate.dims
        assert 120 < float(rate.mean()) < 300  # spiking around the 200 Hz baseline, neither silent nor saturated
    twin = ds["twin_weight_angle"].sel(arm="fa")
    assert np.isfinite(twin).all() and "rate circuit" in twin.attrs["long_name"]
    assert float(twin.isel(weight_time=0).min()) > 60  # fa: the twin starts from the circuit's random B
