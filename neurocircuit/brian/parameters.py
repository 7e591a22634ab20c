"""Biological parameters of the Brian2 backend, with units, and their parsing from simulation files.

In a simulation file every dimensioned value is a string with its unit (``tau = "5 ms"``, ``eta_w = "20 Hz"``,
``eta_w = "0.02 / ms"``); a bare number for a dimensioned parameter, the wrong dimension or a negative time constant
is a :class:`~neurocircuit.errors.ConfigError` naming the parameter.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import brian2
from brian2 import Hz, Quantity, ms, mV

from .._reads import Tracked, TrackedDict, set_origins
from .._toml import check_keys, expect, shown
from ..errors import ConfigError
from ..limits import MAX_SIMULATED_STEPS, check_count

__all__ = ["RateParameters", "SpikingParameters", "parse_quantity", "read_quantity", "parameters_from_dict", "TARGETS",
           "DEVICES", "NEURON_MODELS"]

TARGETS = ("numpy", "cython")
PRECISIONS = ("double", "single")
DEVICES = ("runtime", "cpp_standalone", "cuda_standalone")
LOSSES = ("mse", "cross_entropy")
NEURON_MODELS = ("poisson", "lif")

_UNIT_NAMES = {name: value for name, value in vars(brian2.units).items()
               if isinstance(value, (Quantity, brian2.Unit))}
# "<number> [*] <unit> [(*|/) <unit>[^n | **n]] ...", e.g. "5 ms", "5*ms", "0.02 / ms", "1e-3 * second", "3 mV/ms".
_NUMBER = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*")
#: The largest power a unit may be raised to: physical units need 1 to 3; a huge one overflows (``ms**-100000``).
MAX_UNIT_POWER = 4
_FACTOR = re.compile(r"\s*([*/]?)\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:(?:\*\*|\^)\s*([+-]?\d+))?\s*")


def read_quantity(text: str) -> Quantity | None:
    """A quantity from a number and a product/quotient of unit names — read, never evaluated; None if it is not one."""
    match = _NUMBER.match(text)
    if match is None:
        return None
    value: Any = float(match.group(1))
    position, first = match.end(), True
    while position < len(text):
        factor = _FACTOR.match(text, position)
        if factor is None or factor.end() == position:
            return None
        op, name, power = factor.groups()
        if name not in _UNIT_NAMES or (op == "" and not first):  # units after the first need * or /
            return None
        if power and abs(int(power)) > MAX_UNIT_POWER:
            return None
        unit = _UNIT_NAMES[name] ** int(power) if power else _UNIT_NAMES[name]
        value = value / unit if op == "/" else value * unit
        position, first = factor.end(), False
    return value if isinstance(value, Quantity) else Quantity(value)


def parse_quantity(value: Any, *, dimension: Quantity, where: str) -> Quantity:
    """A Brian2 quantity from ``"5 ms"``, ``"5*ms"``, ``"0.02 / ms"`` or an already-built Quantity, checked to have
    the dimensions of ``dimension``. Strings are parsed (a number times unit names), never evaluated."""
    if isinstance(value, Quantity):
        quantity = value
    elif isinstance(value, str):
        quantity = read_quantity(value.strip())
        if quantity is None:
            powers = [int(p) for p in re.findall(r"(?:\*\*|\^)\s*([+-]?\d+)", value)]
            beyond = (f"; powers of units beyond ±{MAX_UNIT_POWER} are refused" if any(abs(p) > MAX_UNIT_POWER
                                                                                    for p in powers) else "")
            raise ConfigError(f"{where}: cannot read {value!r} as a quantity (write a number and units, e.g. '5 ms', "
                              f"'20 Hz', '0.02 / ms'){beyond}")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not brian2.get_dimensions(dimension).is_dimensionless:
            raise ConfigError(f"{where}: missing units: got {value!r}, expected a quantity like "
                              f"'{_example(dimension)}'")
        quantity = Quantity(value)
    else:
        raise ConfigError(f"{where}: expected a quantity string like '{_example(dimension)}', got {value!r}")
    if brian2.get_dimensions(quantity) != brian2.get_dimensions(dimension):
        raise ConfigError(f"{where}: {value!r} has the wrong dimensions (expected a quantity like "
                          f"'{_example(dimension)}')")
    if not math.isfinite(float(quantity / dimension)):
        raise ConfigError(f"{where}: {value!r} is not finite")
    return quantity


def _example(dimension: Quantity) -> str:
    if brian2.get_dimensions(dimension) == brian2.get_dimensions(ms):
        return "5 ms"
    if brian2.get_dimensions(dimension) == brian2.get_dimensions(Hz):
        return "20 Hz"
    return "1.0"


@dataclass(frozen=True)
class RateParameters(Tracked):
    """Parameters of the rate circuit (all times and rates carry Brian2 units).

    Parameters
    ----------
    dt
        Integration time step.
    tau, tau_feedback
        Time constants of the forward populations (tau dy/dt = -y + phi(u)) and of the feedback (error) populations;
        ``tau_population`` overrides ``tau`` per population name.
    presentation, settle
        Each step presents one sample (or one noise pattern) for ``presentation``; plasticity of the engaged and
        prenatal phases is on only after the first ``settle`` of it, when the circuit is near its steady state.
    noise_sigma, noise_tau
        Spontaneous activity of the mirror phase: an Ornstein-Uhlenbeck process per unit with stationary standard
        deviation ``noise_sigma`` (dimensionless, like the rates) and correlation time ``noise_tau``.
    eta_w, lambda_w
        Learning rate (per second) and decay rate of the forward synapses: dW/dt = eta_w delta_post y_pre - lambda_w W.
        ``kp`` feedback synapses follow the transposed rule with the same rates, so W - B^T decays as
        exp(-lambda_w t_learning): the decay is KP's only alignment force (``kp`` with 0 Hz warns). The default
        0.1 Hz is a weight decay of lambda_w / eta_w per unit of learning rate (0.01 at the default eta_w).
    eta_mirror, lambda_mirror
        The ``wm`` feedback synapses in the mirror phase: dB/dt = eta_mirror delta_pre y_post - lambda_mirror B
        (y_post: the forward partner of the postsynaptic error unit, as for kp).
    p_forward, p_feedback
        Connection probability of forward and feedback synapses (1: dense; below 1: sparse W and B).
    delay
        Synaptic delay (spiking variant only; the rate circuit's summed inputs are instantaneous).
    dale
        Dale's law for the feedback pathway: separate excitatory (B >= 0) and inhibitory (B <= 0) feedback synapses.
    loss
        ``mse``: the top error is phi'(u)(target - y), -dL/du of L = ||target - y||^2 / 2; ``cross_entropy``:
        phi'(u)(target - softmax(y)), -dL/du of the softmax cross-entropy of the outputs y (the torch backend's
        loss), with the softmax's normaliser sum_k exp(y_k) computed by one summing unit.
    record_dt, record_neurons, record_every, record_weights
        Activity is recorded every ``record_dt`` for the first ``record_neurons`` units of each population;
        the B-W angles every ``record_every`` steps, and with ``record_weights`` the W and B snapshots themselves.
    plasticity_dt
        Time step of the synapses' plasticity (None: ``dt``). The synaptic drives still sum every ``dt``; only the
        Euler steps of dW/dt and dB/dt run on this slower clock, each over the whole step. It must be a whole
        multiple of ``dt`` that divides ``presentation`` and ``settle`` (so the learning window is sampled the same
        way in every presentation). Error bound: for the linear decay the per-step factor 1 - lambda Delta departs
        from exp(-lambda Delta) by (lambda Delta)^2 / 2, i.e. the decay rate is off by a relative lambda Delta / 2;
        the drive's expectation is unchanged (a stationary product sampled every Delta), and for noise with
        correlation time tau_c its variance grows by (Delta / 2 tau_c) coth(Delta / 2 tau_c) over continuous-time
        integration (1.08 at Delta = tau_c, 1.02 at Delta = tau_c / 2). docs/brian2.md measures the angles.
    precision
        ``double`` (float64 state, the default) or ``single`` (float32: a quarter less memory traffic per synapse
        and step on the summed drives; the parity tests with torch hold at rtol 1e-3).
    target, device
        Code generation target of the runtime device (numpy or cython), or a standalone device: ``cpp_standalone``
        (C++ on the CPU) or ``cuda_standalone`` (brian2cuda on an NVIDIA GPU: ``pip install "neurocircuit[cuda]"``
        and the CUDA compiler ``nvcc``; refused with a one-line error where either is missing).
    twin
        Also run the circuit's torch twin (:mod:`neurocircuit.brian.twin`: the same protocol, initial weights and
        sample order as per-sample SGD steps of the torch rule layers); results get ``twin_test_accuracy``,
        ``twin_test_loss`` and ``twin_weight_angle``.
    seed
        Seed of Brian2's random numbers (noise, sparse connections).
    """

    dt: Quantity = field(default_factory=lambda: 0.5 * ms)
    tau: Quantity = field(default_factory=lambda: 4 * ms)
    tau_feedback: Quantity = field(default_factory=lambda: 4 * ms)
    tau_population: Mapping[str, Quantity] = field(default_factory=dict)
    presentation: Quantity = field(default_factory=lambda: 40 * ms)
    settle: Quantity = field(default_factory=lambda: 30 * ms)
    noise_sigma: float = 1.0
    noise_tau: Quantity = field(default_factory=lambda: 2 * ms)
    eta_w: Quantity = field(default_factory=lambda: 10 * Hz)
    lambda_w: Quantity = field(default_factory=lambda: 0.1 * Hz)
    eta_mirror: Quantity = field(default_factory=lambda: 20 * Hz)
    lambda_mirror: Quantity = field(default_factory=lambda: 20 * Hz)
    p_forward: float = 1.0
    p_feedback: float = 1.0
    delay: Quantity = field(default_factory=lambda: 0 * ms)
    dale: bool = False
    loss: str = "mse"
    record_dt: Quantity = field(default_factory=lambda: 2 * ms)
    record_neurons: int = 20
    record_every: int = 10
    record_weights: bool = True
    plasticity_dt: Quantity | None = None
    precision: str = "double"
    target: str = "numpy"
    device: str = "runtime"
    twin: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        times = ("dt", "tau", "tau_feedback", "presentation", "settle", "noise_tau", "delay", "record_dt")
        rates = ("eta_w", "lambda_w", "eta_mirror", "lambda_mirror")
        for name in times:
            object.__setattr__(self, name, parse_quantity(getattr(self, name), dimension=ms, where=f"brian2.{name}"))
        for name in rates:
            object.__setattr__(self, name, parse_quantity(getattr(self, name), dimension=Hz, where=f"brian2.{name}"))
        expect(self.tau_population, Mapping, "brian2.tau_population")
        parsed = {k: parse_quantity(v, dimension=ms, where=f"brian2.tau_population.{k}")
                  for k, v in dict.items(dict(self.tau_population))}
        # a copy (dataclasses.replace) keeps logging reads by population name, as parameters_from_dict set up
        where = getattr(self.tau_population, "where", None)
        object.__setattr__(self, "tau_population", parsed if where is None else TrackedDict(parsed, where))
        for name in ("dt", "tau", "tau_feedback", "presentation", "noise_tau", "record_dt",
                     *(f"tau_population.{k}" for k in self.tau_population)):
            value = self.tau_population[name.split(".")[1]] if "." in name else getattr(self, name)
            if float(value) <= 0:
                raise ConfigError(f"brian2.{name} must be > 0, got {value}")
        for name in ("settle", "delay", *rates):
            if float(getattr(self, name)) < 0:
                raise ConfigError(f"brian2.{name} must be >= 0, got {getattr(self, name)}")
        if self.settle >= self.presentation:
            raise ConfigError(f"brian2.settle ({self.settle}) must be shorter than brian2.presentation "
                              f"({self.presentation})")
        for name in ("tau", "tau_feedback", "noise_tau", *(f"tau_population.{k}" for k in self.tau_population)):
            value = dict.get(self.tau_population, name.split(".")[1]) if "." in name else getattr(self, name)
            if value < self.dt:
                raise ConfigError(f"brian2.{name} ({value}) must be >= brian2.dt ({self.dt}) for a stable Euler "
                                  "step")
        expect(self.noise_sigma, (int, float), "brian2.noise_sigma")
        if not math.isfinite(self.noise_sigma) or self.noise_sigma <= 0:
            raise ConfigError(f"brian2.noise_sigma must be > 0, got {self.noise_sigma!r}")
        for name in ("p_forward", "p_feedback"):
            expect(getattr(self, name), (int, float), f"brian2.{name}")
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"brian2.{name} must be in (0, 1], got {getattr(self, name)!r}")
        expect(self.dale, bool, "brian2.dale")
        expect(self.record_weights, bool, "brian2.record_weights")
        expect(self.twin, bool, "brian2.twin")
        self._check_plasticity_dt()
        self._check_step_counts()
        for name, allowed in (("loss", LOSSES), ("target", TARGETS), ("device", DEVICES), ("precision", PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"brian2.{name}: unknown value {getattr(self, name)!r} (use {', '.join(allowed)})")
        for name in ("record_neurons", "record_every", "seed"):
            expect(getattr(self, name), int, f"brian2.{name}")
        if self.record_every <= 0 or self.record_neurons <= 0:
            raise ConfigError("brian2.record_every and brian2.record_neurons must be > 0")

    def _check_plasticity_dt(self) -> None:
        if self.plasticity_dt is None:
            return
        step = parse_quantity(self.plasticity_dt, dimension=ms, where="brian2.plasticity_dt")
        object.__setattr__(self, "plasticity_dt", step)

        def whole(value: Quantity, of: Quantity) -> bool:
            ratio = float(value / of)
            return round(ratio) >= 1 and abs(ratio - round(ratio)) < 1e-6

        if not whole(step, self.dt):
            raise ConfigError(f"brian2.plasticity_dt ({step}) must be a whole multiple of brian2.dt ({self.dt})")
        for name in ("presentation", "settle"):
            if float(getattr(self, name)) > 0 and not whole(getattr(self, name), step):
                raise ConfigError(f"brian2.plasticity_dt ({step}) must divide brian2.{name} ({getattr(self, name)})")

    def _check_step_counts(self) -> None:
        """Time steps per presentation window between 1 and the ceiling, and no recording finer than the step (a
        whole protocol's counts are checked once its length is known: :mod:`neurocircuit.brian.budget`)."""
        # seconds as numbers: Brian2's own display of extreme quantities overflows ("0. Ys") and warns
        presentation, dt, record_dt = (f"{float(q):.3g} s" for q in (self.presentation, self.dt, self.record_dt))
        check_count(float(self.presentation / self.dt), f"brian2.presentation / brian2.dt ({presentation} / {dt}, "
                    "time steps per window)", MAX_SIMULATED_STEPS, "a shorter presentation or a longer dt")
        if self.record_dt < self.dt:
            raise ConfigError(f"brian2.record_dt ({record_dt}) must be >= brian2.dt ({dt}): a monitor records at most "
                              "once per time step")

    @property
    def plasticity_step(self) -> Quantity:
        """The clock of the plastic synapses: ``plasticity_dt``, or ``dt`` where it is not set."""
        return self.dt if self.plasticity_dt is None else self.plasticity_dt

    def tau_of(self, population: str) -> Quantity:
        """The time constant of ``population``: its own in ``tau_population``, else ``tau``."""
        return self.tau_population.get(population, self.tau)

    def to_dict(self) -> dict[str, Any]:
        """Plain data with units as strings, for results attrs."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mapping):
                value = {k: str(v) for k, v in value.items()}
            elif isinstance(value, Quantity):
                value = str(value)
            out[f.name] = value
        return out


@dataclass(frozen=True)
class SpikingParameters(Tracked):
    """The spiking variant: units that carry an activity a in [-1, 1] as a firing rate r0 (1 + a), r0 = rate_max / 2,
    and read each other's activity from spikes.

    Parameters
    ----------
    neuron
        ``"poisson"``: linear-nonlinear-Poisson units (each time step a spike with probability rate dt);
        ``"lif"``: leaky integrate-and-fire units whose input current is set, through the inverse of their f-I
        curve, so that they fire at the same rate (docs/brian2.md derives it).
    rate_max
        Firing rate at activity +1 (activity -1 is silence, 0 the baseline rate_max / 2). Refused above 1 / dt
        (a Poisson unit fires at most once per step) and, for LIF units, at or above 1 / (refractory + dt).
    tau_synapse
        Decay of the synaptic current each spike starts (w / (r0 tau_synapse) per spike: its mean is the rate
        circuit's synaptic drive).
    tau_trace
        Every unit keeps a spike trace (its rate estimate); plasticity reads activities from traces.
    tau_membrane, threshold, reset, refractory
        LIF units only: membrane time constant, firing threshold and reset potential (volts, threshold above reset),
        and the refractory period after a spike (>= 0).
    test_windows
        Consecutive presentation windows each test and validation sample is shown for (a whole number >= 1), its
        answer decoded from the output spikes of all of them (after ``settle`` in the first): a longer count, so a
        less noisy readout. Plasticity is off in these windows; training is unchanged.
    """

    neuron: str = "poisson"
    rate_max: Quantity = field(default_factory=lambda: 100 * Hz)
    tau_synapse: Quantity = field(default_factory=lambda: 5 * ms)
    tau_trace: Quantity = field(default_factory=lambda: 20 * ms)
    tau_membrane: Quantity = field(default_factory=lambda: 10 * ms)
    threshold: Quantity = field(default_factory=lambda: -50 * mV)
    reset: Quantity = field(default_factory=lambda: -60 * mV)
    refractory: Quantity = field(default_factory=lambda: 1 * ms)
    test_windows: int = 1

    def __post_init__(self) -> None:
        if self.neuron not in NEURON_MODELS:
            raise ConfigError(f"brian2.spiking.neuron: unknown value {shown(self.neuron)} (use "
                              f"{', '.join(NEURON_MODELS)})")
        if isinstance(self.test_windows, bool) or not isinstance(self.test_windows, int) or self.test_windows < 1:
            raise ConfigError(f"brian2.spiking.test_windows must be a whole number >= 1, got "
                              f"{shown(self.test_windows)}")
        for name, dimension in (("tau_synapse", ms), ("tau_trace", ms), ("tau_membrane", ms), ("refractory", ms),
                                ("threshold", mV), ("reset", mV), ("rate_max", Hz)):
            object.__setattr__(self, name, parse_quantity(getattr(self, name), dimension=dimension,
                                                          where=f"brian2.spiking.{name}"))
        for name in ("tau_synapse", "tau_trace", "tau_membrane", "rate_max"):
            if float(getattr(self, name)) <= 0:
                raise ConfigError(f"brian2.spiking.{name} must be > 0, got {getattr(self, name)}")
        if float(self.refractory) < 0:
            raise ConfigError(f"brian2.spiking.refractory must be >= 0, got {self.refractory}")
        if self.threshold <= self.reset:
            raise ConfigError(f"brian2.spiking.threshold ({self.threshold}) must be above brian2.spiking.reset "
                              f"({self.reset})")

    def check_against(self, dt: Quantity) -> None:
        """Refuse rates and time constants the time step ``dt`` cannot carry (one line naming the parameter)."""
        for name in ("tau_synapse", "tau_trace", *(("tau_membrane",) if self.neuron == "lif" else ())):
            if getattr(self, name) <= dt:
                raise ConfigError(f"brian2.spiking.{name} ({getattr(self, name)}) must be > brian2.dt ({dt}) for a "
                                  "stable Euler step")
        if self.neuron == "poisson" and float(self.rate_max * dt) > 1:
            raise ConfigError(f"brian2.spiking.rate_max ({self.rate_max}) is above 1 / brian2.dt ({1 / dt}): a "
                              "Poisson unit fires at most once per time step")
        if self.neuron == "lif" and float(self.rate_max * (self.refractory + dt)) >= 1:
            raise ConfigError(f"brian2.spiking.rate_max ({self.rate_max}) must be below 1 / (refractory + dt) = "
                              f"{1 / (self.refractory + dt)}: a LIF unit cannot fire faster")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: str(getattr(self, f.name)) for f in dataclasses.fields(self)}


def parameters_from_dict(table: Mapping[str, Any], where: str = "brian2", *, key: str = "brian2"
                         ) -> tuple[RateParameters, SpikingParameters]:
    """The ``[brian2]`` table of a simulation file (with an optional ``[brian2.spiking]`` sub-table); ``where``
    names it in errors, ``key`` is its dotted key in the simulation (for :mod:`neurocircuit._reads`)."""
    rate_names = [f.name for f in dataclasses.fields(RateParameters) if f.name != "seed"]
    check_keys(table, [*rate_names, "spiking"], where)
    spiking = dict(table.get("spiking", {}))
    check_keys(spiking, [f.name for f in dataclasses.fields(SpikingParameters)], f"{where}.spiking")
    rate = RateParameters(**{k: v for k, v in table.items() if k != "spiking"})
    # Which of these a run reads is logged by key (neurocircuit._reads); tau_population by population name.
    object.__setattr__(rate, "tau_population", TrackedDict(rate.tau_population, f"{key}.tau_population"))
    set_origins(rate, {k: f"{key}.{k}" for k in table if k not in ("spiking", "tau_population")})
    return rate, set_origins(SpikingParameters(**spiking), {k: f"{key}.spiking.{k}" for k in spiking})
