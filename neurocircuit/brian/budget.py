"""What a Brian2 run will cost, counted before any run: time steps to simulate, samples each monitor records and
the memory of synapses, weight snapshots, activity records and the protocol's arrays — against the ceilings of
:mod:`neurocircuit.limits` and the machine's memory. Counting is arithmetic on the schedule and the data's sizes
(:func:`~neurocircuit.brian.protocol.protocol_steps`): nothing is built or allocated to find out."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..limits import (
    MAX_RECORDED_SAMPLES,
    MAX_SIMULATED_STEPS,
    MONITOR_GROWTH,
    brian_memory,
    check_count,
    check_memory,
)
from ..registry import load_circuit
from .parameters import RateParameters
from .protocol import protocol_steps

__all__ = ["check_synapse_memory", "check_run_limits"]


def _circuit(sim: Any, arm: Any) -> Any:
    return load_circuit(sim.model, rule=arm.rule, overrides=arm.overrides, options=arm.options)


def check_synapse_memory(sim: Any) -> None:
    """Refuse a circuit whose synapses alone do not fit in memory (before the data are loaded)."""
    for arm in sim.arms[:1]:  # every arm has the same projections
        try:
            check_memory(brian_memory(_circuit(sim, arm)), f"model {sim.model_name!r}")
        except ConfigError as exc:
            raise ConfigError(f"{sim.source}: {exc}") from None


def check_run_limits(sim: Any, variant: str, params: RateParameters, sizes: tuple[int, int, int], *,
                     test_windows: int = 1, rate_max: float = 0.0) -> None:
    """Refuse any arm whose run would simulate or record beyond the ceilings, or need more memory than there is.

    ``sizes``: the numbers of training, test and validation samples (zeros where no phase presents data);
    ``rate_max`` (Hz, the spiking variant): the highest rate a unit fires at, which bounds the readout's spikes.
    """
    per_window = round(float(params.presentation / params.dt))
    presentation, record_dt = float(params.presentation), float(params.record_dt)
    for arm in sim.arms:
        circuit = _circuit(sim, arm)
        # as run_arm builds it: only a circuit with wm synapses mirrors between samples
        interleave = any(circuit.feedback_for(p.name).rule == "wm" for p in circuit.projections)
        windows = protocol_steps(sim.schedule_for(arm).phases, sizes=sizes, epochs=sim.train.epochs,
                                 interleave=interleave, test_windows=test_windows)
        where = f"{sim.source}: arm {arm.label!r}"
        steps = check_count(windows * per_window, f"{where}: {windows:,} windows × {per_window:,} time steps "
                            "(brian2.presentation / brian2.dt)", MAX_SIMULATED_STEPS,
                            "fewer epochs, samples or steps, a shorter brian2.presentation or a longer brian2.dt")
        if record_dt > windows * presentation:  # its monitors would hold the first instant only
            raise ConfigError(f"{where}: brian2.record_dt ({record_dt:.3g} s) is longer than the simulated duration "
                              f"({windows * presentation:.3g} s: {windows:,} windows × brian2.presentation)")
        units = max(min(p.size, params.record_neurons) for p in circuit.populations)
        times = int(windows * presentation / record_dt) + 1
        check_count(times * units, f"{where}: an activity monitor's {times:,} samples (brian2.record_dt "
                    f"{record_dt:.3g} s) × {units} units", MAX_RECORDED_SAMPLES,
                    "a longer brian2.record_dt or fewer brian2.record_neurons")
        if variant == "spiking":  # population rates are recorded at every time step
            check_count(steps, f"{where}: a population rate monitor's {steps:,} samples (one per time step)",
                        MAX_RECORDED_SAMPLES, "fewer epochs, samples or steps, or a longer brian2.dt")
        snapshots = windows // params.record_every + 1
        check_count(snapshots, f"{where}: {snapshots:,} weight snapshots (every brian2.record_every = "
                    f"{params.record_every} windows)", MAX_RECORDED_SAMPLES, "a larger brian2.record_every")
        n_in, n_out = circuit.input.size, circuit.output.size
        records = 2 * len(circuit.populations) * times * units
        parts = [*brian_memory(circuit, snapshots),
                 # stimulus and target, float64, twice while the protocol's parts are joined
                 ("the protocol", 2 * 8.0 * windows * (n_in + n_out),
                  f"{windows:,} windows × {n_in + n_out:,} inputs and targets, float64"),
                 ("the activity records", 8.0 * MONITOR_GROWTH * records,
                  f"{records:,} float64 samples, ×{MONITOR_GROWTH:g} as a monitor's arrays grow")]
        if variant == "spiking":
            parts += _spike_records(circuit, steps, windows * presentation, rate_max, sizes)
        try:
            check_memory(parts, f"arm {arm.label!r}")
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def _spike_records(circuit: Any, steps: int, duration: float, rate_max: float,
                   sizes: tuple[int, int, int]) -> list[tuple[str, float, str]]:
    """What the spiking variant's monitors keep: a population rate (time and rate, float64) per time step of every
    group that spikes -- each population's forward units and every error population but the input's -- and, where
    samples are scored, the readout's spikes (index int32 and time float64), at most ``rate_max`` per output unit;
    each times :data:`~neurocircuit.limits.MONITOR_GROWTH`."""
    groups = 2 * len(circuit.populations) - 1
    grow = f", ×{MONITOR_GROWTH:g} as a monitor's arrays grow"
    parts = [("the population rate records", 16.0 * MONITOR_GROWTH * steps * groups,
              f"{groups} groups × {steps:,} time steps, time and rate in float64{grow}")]
    if sizes[1] or sizes[2]:  # test or validation samples: the readout is monitored
        spikes = circuit.output.size * rate_max * duration
        parts.append(("the readout's spikes", 12.0 * MONITOR_GROWTH * spikes,
                      f"at most {spikes:,.0f} spikes ({circuit.output.size} units at {rate_max:g} Hz for "
                      f"{duration:g} s), int32 index and float64 time{grow}"))
    return parts
