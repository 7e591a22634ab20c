"""Test and validation samples shown for several windows (``[brian2.spiking] test_windows``): the protocol repeats
each scored sample, answers are read at its last window, the spiking readout pools the counts of all its windows,
and the setting is honoured by the spiking variant only."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from brian2 import Hz, ms, second

from neurocircuit.brian import RateParameters, SpikingParameters, build_protocol
from neurocircuit.brian.protocol import protocol_steps
from neurocircuit.brian.record import block_scores
from neurocircuit.brian.spiking import SpikingCircuit
from neurocircuit.errors import ConfigError
from neurocircuit.phases import EngagedPhase
from neurocircuit.runs import run_simulation
from neurocircuit.simulation import parse_simulation


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)), rng.integers(0, 3, n)


def test_scored_samples_repeat_and_answer_at_their_last_window():
    train, test, val = _data(5), _data(3, 1), _data(2, 2)
    phases = [EngagedPhase(epochs=2)]
    protocol = build_protocol(phases, n_in=4, n_out=3, train=train, test=test, validation=val, test_windows=3)
    assert protocol.steps == protocol_steps(phases, sizes=(5, 3, 2), epochs=2, test_windows=3)
    assert protocol.steps == 2 * (5 + 3 * 3 + 3 * 2) + 1
    (start, end, _), (vstart, vend, _) = protocol.test_blocks[0], protocol.val_blocks[0]
    assert (end - start, vend - vstart) == (9, 6)
    np.testing.assert_array_equal(protocol.stimulus[start:end], np.repeat(test[0], 3, axis=0))
    np.testing.assert_array_equal(protocol.labels[start:end], np.repeat(test[1], 3))
    np.testing.assert_array_equal(protocol.answer_steps(start, end), [start + 2, start + 5, start + 8])
    continued = protocol.continued()
    np.testing.assert_array_equal(continued[start:end], [False, True, True] * 3)
    assert not continued[:start].any()  # training windows never continue one another
    assert not (protocol.learn_w[start:end].any() or protocol.learn_b[start:end].any())  # plasticity off


def test_block_scores_read_each_samples_last_window():
    test = (np.zeros((2, 4)), np.array([0, 2]))
    protocol = build_protocol([EngagedPhase(epochs=1)], n_in=4, n_out=3, train=_data(1), test=test,
                              test_windows=2)
    start, end, _ = protocol.test_blocks[0]
    readout = np.zeros((protocol.steps + 1, 3))
    # both samples (labels 0 and 2) are answered right only at the end of their last window (rows start + 2 and
    # start + 4); every other row, and the rows around the block, answer wrong
    readout[:] = [0, 1, 0]
    readout[start + 2] = [1, 0, 0]
    readout[start + 4] = [0, 0, 1]
    accuracy, _ = block_scores(readout, protocol, protocol.test_blocks, "mse")
    assert accuracy == [1.0]


def test_spiking_readout_pools_the_counts_of_a_samples_windows():
    """Exact counts: with 0.1 s windows, 0.04 s settle and rate_max 200 Hz (r0 = 100 Hz), a sample shown for two
    windows is decoded from its spikes after 0.04 s in window one and all of window two (0.16 s)."""
    test = (np.zeros((1, 4)), np.array([1]))
    protocol = build_protocol([EngagedPhase(epochs=1)], n_in=4, n_out=2, train=_data(1), test=test,
                              test_windows=2)
    start, end, _ = protocol.test_blocks[0]
    assert (start, end) == (1, 3)
    window = 0.1
    times = [start * window + 0.01,                      # window one, before settle: not counted
             *(start * window + 0.05 + 0.001 * np.arange(8)),  # 8 spikes after settle
             *((start + 1) * window + 0.001 * np.arange(16)),  # 16 spikes in window two, from its start
             ]
    units = [0] * len(times)
    times += [start * window + 0.06]  # one spike of unit 1, after settle in window one
    units += [1]
    stub = SimpleNamespace(
        params=RateParameters(presentation=100 * ms, settle=40 * ms, dt=0.5 * ms),
        protocol=protocol, circuit=SimpleNamespace(output=SimpleNamespace(size=2)),
        spiking=SpikingParameters(rate_max=200 * Hz),
        monitors={"readout": SimpleNamespace(t=np.asarray(times) * second, i=np.asarray(units))})
    rows = SpikingCircuit.readout(stub)
    # window one alone: 8 spikes in 0.06 s at r0 = 100 Hz -> 8 / 6 - 1; pooled: 24 spikes in 0.16 s -> 24 / 16 - 1
    np.testing.assert_allclose(rows[start + 1], [8 / 6 - 1, 1 / 6 - 1])
    np.testing.assert_allclose(rows[start + 2], [24 / 16 - 1, 1 / 16 - 1])
    # with one window per sample the same spikes give the old decoding of window one (after settle only)
    single = build_protocol([EngagedPhase(epochs=1)], n_in=4, n_out=2, train=_data(1), test=test)
    rows = SpikingCircuit.readout(SimpleNamespace(**{**vars(stub), "protocol": single}))
    np.testing.assert_allclose(rows[start + 1], [8 / 6 - 1, 1 / 6 - 1])


@pytest.mark.parametrize("value", [0, -2, 1.5, True, "2"])
def test_bad_test_windows_are_refused_in_one_line(value):
    with pytest.raises(ConfigError, match=r"test_windows must be a whole number >= 1, got") as info:
        SpikingParameters(test_windows=value)
    assert "\n" not in str(info.value)


def _raw(variant: str, test_windows: int) -> dict:
    spiking = {"rate_max": "400 Hz", "tau_synapse": "2 ms", "tau_trace": "5 ms", "test_windows": test_windows} \
        if variant == "spiking" else {"test_windows": test_windows}
    return {"name": "windows", "model": "mlp_digits", "backend": "brian2", "seeds": [0], "arms": ["fa"],
            "phases": [{"kind": "engaged", "epochs": 1}],
            "data": {"name": "digits", "train_samples": 6, "test_samples": 4},
            "brian2": {"variant": variant, "dt": "0.5 ms", "presentation": "20 ms", "settle": "10 ms",
                       "eta_w": "5 Hz", "record_every": 10, "record_dt": "5 ms", "twin": variant == "spiking",
                       "spiking": spiking}}


def test_the_rate_variant_refuses_test_windows_by_name():
    refusal = r": brian2\.spiking\.test_windows is not honoured by the brian2 backend \(rate variant\)"
    with pytest.raises(ConfigError, match=refusal):
        run_simulation(parse_simulation(_raw("rate", 2)), progress=False)


def test_a_spiking_run_shows_each_test_sample_for_its_windows():
    ds = run_simulation(parse_simulation(_raw("spiking", 3)), progress=False)
    # 6 training windows, 4 test samples x 3 windows and the closing window, 20 ms each
    assert float(ds["time"].max()) <= (6 + 4 * 3 + 1) * 0.02 + 1e-9
    assert float(ds["time"].max()) > (6 + 4 * 3) * 0.02 - 0.005 - 1e-9
    for name in ("test_accuracy", "twin_test_accuracy"):  # which windows are scored: the exact tests above
        value = float(ds[name].isel(step=-1).squeeze())
        assert 0.0 <= value <= 1.0, name


def test_test_windows_without_an_engaged_phase_are_refused_by_name():
    raw = {"model": "mlp_digits", "backend": "brian2", "arms": ["wm"], "phases": [{"kind": "mirror", "steps": 1}],
           "brian2": {"variant": "spiking", "spiking": {"test_windows": 2}}}
    with pytest.raises(ConfigError, match=r"brian2\.spiking\.test_windows is not honoured by the brian2 backend"):
        parse_simulation(raw)
