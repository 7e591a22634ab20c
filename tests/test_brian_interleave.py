"""The rate circuit's interleaved weight mirror (mirror windows inside an engaged phase) and its statistical twin:
the protocol's layout, B moving while W learns, the twin following the same windows, and the mirror's signal C_l
(the covariance of the filtered noise) against the circuit."""

import numpy as np
import pytest
from brian2 import Hz, ms, second

from neurocircuit.brian import RateCircuit, RateParameters, brian_device, build_protocol
from neurocircuit.brian.backend import initial_weights
from neurocircuit.brian.twin import mirror_statistics, run_twin, twin_mirror_settings
from neurocircuit.circuit import circuit_from_dict
from neurocircuit.errors import ConfigError
from neurocircuit.phases import EngagedPhase, MirrorPhase
from neurocircuit.simulation import parse_simulation

FAST = dict(dt=0.5 * ms, tau=2 * ms, tau_feedback=2 * ms, noise_tau=1 * ms, presentation=20 * ms, settle=12 * ms,
            record_dt=10 * ms, record_neurons=2)


def small_circuit(rule: str, sizes: tuple[int, ...] = (12, 16, 6)):
    pops = [{"name": f"p{k}", "shape": [n], "activation": "tanh" if 0 < k < len(sizes) - 1 else "identity"}
            for k, n in enumerate(sizes)]
    projs = [{"name": f"W{k + 1}", "source": f"p{k}", "target": f"p{k + 1}"} for k in range(len(sizes) - 1)]
    return circuit_from_dict({"name": "small", "populations": pops, "projections": projs}).with_rules(rule)


def data(n: int = 4, seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, 12)), rng.integers(0, 6, n)
    return (x, y), (x[:2], y[:2])


def test_protocol_places_mirror_windows_after_every_kth_presentation_across_epochs() -> None:
    train, test = data(4)
    phase = EngagedPhase(name="learn", epochs=2, mirror_every=3, mirror_steps=2)
    protocol = build_protocol([phase], n_in=12, n_out=6, train=train, test=test)
    # presentations 1..8 over two epochs: mirror after the 3rd and the 6th (the count runs on across epochs)
    layout = "TTTMMT" + "ss" + "TTMMTT" + "ss" + "e"
    kinds = {"T": ("learn", 0, 1, 1), "M": ("learn_mirror", 1, 0, 0), "s": ("learn_test", 0, 0, 0),
             "e": ("end", 0, 0, 0)}
    for k, key in enumerate(layout):
        name, mirror, learn_w, learn_b = kinds[key]
        assert (protocol.phase[k], protocol.mirror[k], protocol.learn_w[k], protocol.learn_b[k]) == \
            (name, mirror, learn_w, learn_b), k
    assert protocol.steps == len(layout)
    mirror = protocol.mirror == 1
    assert not protocol.stimulus[mirror].any() and not protocol.target[mirror].any()
    assert (protocol.labels[mirror] == -1).all()
    # the training windows present the same samples in the same order as without interleaving
    plain = build_protocol([EngagedPhase(name="learn", epochs=2)], n_in=12, n_out=6, train=train, test=test)
    np.testing.assert_array_equal(protocol.stimulus[~mirror], plain.stimulus)
    np.testing.assert_array_equal(protocol.target[~mirror], plain.target)
    assert [(b - a, e) for a, b, e in protocol.test_blocks] == [(2, 1), (2, 2)]
    assert protocol.test_blocks[0][0] == 6 and protocol.test_blocks[1][0] == 14
    # a circuit without wm synapses does not idle through them
    np.testing.assert_array_equal(build_protocol([phase], n_in=12, n_out=6, train=train, test=test,
                                                 interleave=False).stimulus, plain.stimulus)


def test_mirror_follows_lr_is_refused_by_name_and_the_interleaving_is_honoured() -> None:
    base = {"model": "mlp_digits", "backend": "brian2", "arms": ["wm"], "data": {"name": "digits"}}
    with pytest.raises(ConfigError, match=r"phases\.0\.mirror_follows_lr is not honoured by the brian2 backend: "
                                          r"the circuit's eta_w is constant") as info:
        parse_simulation({**base, "phases": [{"kind": "engaged", "mirror_every": 2, "mirror_follows_lr": True}]})
    assert "\n" not in str(info.value)
    sim = parse_simulation({**base, "phases": [{"kind": "engaged", "mirror_every": 2, "mirror_steps": 3}]})
    engaged = sim.schedule_for(sim.arms[0]).engaged
    assert (engaged.mirror_every, engaged.mirror_steps) == (2, 3)


def _b_moves(protocol, circuit, weights) -> list[bool]:
    params = RateParameters(**FAST, eta_w=20 * Hz, eta_mirror=5 * Hz, lambda_mirror=1 * Hz, record_every=1)
    with brian_device(params):
        net = RateCircuit(circuit, weights, params, protocol)
        net.run()
        snaps = [net.matrices("W2", k)[1] for k in range(len(net.snapshot_times()))]
    return [not np.array_equal(snaps[k], snaps[k + 1]) for k in range(len(snaps) - 1)]


def test_interleaved_mirror_windows_move_b_while_w_learns_and_the_twin_follows() -> None:
    circuit = small_circuit("wm")
    weights = initial_weights(circuit, 0)
    train, test = data(4)
    phases = [MirrorPhase(steps=1), EngagedPhase(epochs=1, mirror_every=2, mirror_steps=1)]
    protocol = build_protocol(phases, n_in=12, n_out=6, train=train, test=test)
    assert "".join("M" if m else ("T" if w else "-") for m, w in zip(protocol.mirror, protocol.learn_w)) == \
        "M" + "TTMTTM" + "--" + "-"
    moved = _b_moves(protocol, circuit, weights)  # window k -> k + 1
    assert moved == [bool(m) for m in protocol.mirror[:-1]]  # B moves in mirror windows and only there
    # the control: without interleaving, B is frozen through the engaged phase
    frozen = build_protocol(phases, n_in=12, n_out=6, train=train, test=test, interleave=False)
    assert _b_moves(frozen, circuit, weights) == [True] + [False] * (frozen.steps - 2)

    # The twin runs the same windows: its mirror windows move B and nothing else. In a one-layer circuit W's update
    # does not read B, so W ends where it ends without the mirror windows; B does not.
    params = RateParameters(**FAST, eta_w=20 * Hz, eta_mirror=5 * Hz, lambda_mirror=1 * Hz, record_every=2)
    single = small_circuit("wm", (12, 6))
    start = initial_weights(single, 0)
    with_mirror = run_twin(single, start, params, protocol)
    without = run_twin(single, start, params, frozen)
    np.testing.assert_array_equal(with_mirror.weights["W1"][0], without.weights["W1"][0])
    assert not np.allclose(with_mirror.weights["W1"][1], without.weights["W1"][1])
    assert not np.array_equal(with_mirror.weights["W1"][0], start["W1"][0])  # W learned
    # angles at the circuit's snapshot windows: every record_every windows from 0, and the end
    assert with_mirror.angle_steps == [0, 2, 4, 6, 8, 10]
    assert all(len(v) == 6 for v in with_mirror.angles.values())


@pytest.mark.parametrize("source", ["input", "hidden"])
def test_the_mirror_signal_is_the_covariance_of_the_filtered_noise_as_the_circuit_measures_it(source: str) -> None:
    # B learns E[delta_upper x_lower^T] = C W. Measured from B's drift in a 1 s mirror phase (40 x 40 units, so the
    # regression onto W averages 1600 synapses): within 4 % of mirror_statistics' exact Euler value, which is
    # 20 % below the continuous-time sigma^2 tau_n / (tau_n + tau_fb) for the input layer (dt = tau_n / 2).
    circuit = small_circuit("wm", (40, 40, 40))
    weights = initial_weights(circuit, 2)
    params = RateParameters(**FAST, eta_mirror=1 * Hz, lambda_mirror=0.01 * Hz, record_every=1000)
    steps = 50
    with brian_device(params):
        net = RateCircuit(circuit, weights, params, build_protocol([MirrorPhase(steps=steps)], n_in=40, n_out=40))
        net.run()
        name = "W1" if source == "input" else "W2"
        w, b_end = net.matrices(name)
    b0 = weights[name][2]
    seconds = float(steps * params.presentation / second)
    n_steps = round(float(steps * params.presentation / params.dt))
    kept = (1 - 0.01 * float(params.dt / second)) ** n_steps
    drift = b_end - kept * b0
    measured = float((drift * w).sum() / (w * w).sum()) / (1.0 * seconds)
    exact, samples = mirror_statistics(params, None if source == "input" else params.tau_of("p1"))
    assert abs(measured / exact - 1) < 0.04, (measured, exact)
    if source == "input":
        assert exact == pytest.approx(0.2667, abs=1e-4)  # and the continuous formula says 1/3
        assert abs(measured - 1 / 3) > 0.05
    # the twin's mirror draws noise of that variance, as many samples per window as the circuit's noise is worth
    settings = twin_mirror_settings(circuit, params)[name]
    assert settings.noise_std ** 2 == pytest.approx(exact) and settings.batch_size == max(1, round(samples))
    assert 1 <= settings.batch_size < float(params.presentation / params.dt)


def test_figures_mark_interleaved_mirror_windows_as_part_of_their_engaged_phase() -> None:
    from neurocircuit.figure_style import phase_segments

    # snapshots that land on mirror windows, and a time only another arm has (""), split no phase
    labels = np.array(["mirror", "mirror", "learn", "learn_mirror", "learn", "", "learn_mirror", "learn_test", "end"])
    segments = phase_segments(labels, np.arange(len(labels), dtype=float))
    assert [name for name, _, _ in segments] == ["mirror", "learn", "test"]
    assert segments[1][1:] == (2.0, 7.0)
    # a mirror phase of its own keeps its name (no engaged phase of that name)
    assert [n for n, _, _ in phase_segments(np.array(["opening_mirror", "learn"]), np.arange(2.0))] == \
        ["opening_mirror", "learn"]
