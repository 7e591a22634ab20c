"""The spiking variant of the mirror phase: the same graph with Poisson neurons and plasticity on spike traces.

Forward units fire as Poisson processes whose rate follows their spontaneous activity,
r = r0 (1 + clip(n, -1, 1)) with r0 = rate_max / 2 and n the same Ornstein-Uhlenbeck noise as in the rate circuit.
Each error unit integrates the spikes of the forward population below through the forward synapses,
tau_s dI/dt = -I, I += W / (r0 tau_s) per presynaptic spike (plus the synaptic ``delay``), and fires as a Poisson
process at r0 (1 + clip(I, -1, 1)): its rate fluctuation carries the drive W x of the rate circuit. Every unit keeps
a trace x (tau_x dx/dt = -x, x += 1/tau_x per spike: a rate estimate) and a slow mean of it; the wm feedback synapses
follow the covariance version of the rate circuit's rule,

    dB/dt = eta_mirror (x_pre - <x_pre>) (x_fwd,post - <x_fwd,post>) / r0^2 - lambda_mirror B,

whose expectation is again proportional to W. Relation to the rate circuit: rates replace activities, the
covariance of traces replaces the product of activities, and Poisson spike noise adds variance (slower, less exact
alignment for the same simulated time); there is no W plasticity here (mirror phases only).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import brian2
import numpy as np
import xarray as xr
from brian2 import Hz, Network, NeuronGroup, SpikeMonitor, Synapses, TimedArray, linked_var

from ..circuit import Circuit
from ..errors import ConfigError
from .network import BrianCircuit, CircuitClocks, _Layer, connection_mask, standard_monitors
from .parameters import RateParameters, SpikingParameters
from .protocol import Protocol
from .record import activity_dataset, alignment_over_time

__all__ = ["SpikingMirror", "SPIKING_RULES"]

_TRACES = ("dx/dt = -x / tau_trace : Hz\n"
           "dxbar/dt = (x - xbar) / tau_mean : Hz\n")


#: Rule -> feedback synapse equation of the spiking variant (mirror phases of spike-trace fluctuations).
SPIKING_RULES = {
    "wm": ("db/dt = mirror(t) * (eta_mirror * (x_pre - xbar_pre) * (x_fwd_post - xbar_fwd_post) / r0**2"
           " - lambda_mirror * b) : 1 (clock-driven)"),
    "fa": "b : 1",
}


class SpikingMirror(BrianCircuit):
    """A dense circuit as Poisson populations in a mirror phase (read like :class:`RateCircuit`, so results share
    one convention)."""

    def __init__(self, circuit: Circuit, weights: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                 params: RateParameters, spiking: SpikingParameters, protocol: Protocol) -> None:
        if protocol.learn_w.any():
            raise ConfigError("the spiking variant runs mirror phases only")
        self.circuit, self.params, self.spiking, self.protocol = circuit, params, spiking, protocol
        self.rules = {p.name: circuit.feedback_for(p.name).rule for p in circuit.projections}
        self.weight_transport = False
        brian2.seed(params.seed)
        rng = np.random.default_rng(params.seed)
        self.clocks = clocks = CircuitClocks.of(params)
        r0 = spiking.rate_max / 2
        ns: dict[str, Any] = {
            "r0": r0, "noise_tau": params.noise_tau, "noise_sigma": params.noise_sigma,
            "tau_trace": spiking.tau_trace, "tau_mean": spiking.tau_mean, "tau_syn": spiking.tau_synapse,
            "eta_mirror": params.eta_mirror, "lambda_mirror": params.lambda_mirror,
            "mirror": TimedArray(protocol.mirror, dt=params.presentation, name="protocol_mirror"),
        }
        chain = [circuit.input] + [circuit.population(p.target) for p in circuit.projections]
        self.layers: dict[str, _Layer] = {}
        for pop in chain:
            forward = NeuronGroup(
                pop.size, "dn/dt = -n / noise_tau + noise_sigma * sqrt(2 / noise_tau) * xi : 1\n"
                "rate = r0 * (1 + clip(n, -1, 1)) : Hz\n" + _TRACES,
                threshold="rand() < rate * dt", reset="x += 1 / tau_trace", method="euler", clock=clocks.step,
                namespace=ns, name=pop.name)
            forward.xbar = r0
            error = NeuronGroup(
                pop.size, "dI/dt = -I / tau_syn : 1\nrate = r0 * (1 + clip(I, -1, 1)) : Hz\n" + _TRACES +
                "x_fwd : Hz (linked)\nxbar_fwd : Hz (linked)",
                threshold="rand() < rate * dt", reset="x += 1 / tau_trace", method="euler", clock=clocks.step,
                namespace=ns, name=f"{pop.name}_error")
            error.xbar = r0
            error.x_fwd = linked_var(forward, "x")
            error.xbar_fwd = linked_var(forward, "xbar")
            self.layers[pop.name] = _Layer(pop.name, pop.size, pop.activation, forward, error)
        self.forward_synapses: dict[str, Synapses] = {}
        self.feedback_synapses: dict[str, list[Synapses]] = {}
        for proj in circuit.projections:
            weight, _, feedback = weights[proj.name]
            pre, post = self.layers[proj.source], self.layers[proj.target]
            w_mask = connection_mask(weight.shape, params.p_forward, rng)
            b_mask = connection_mask(weight.shape, params.p_feedback, rng)
            syn = Synapses(pre.forward, post.error, "w : 1", on_pre="I_post += w / (r0 * tau_syn)",
                           delay=params.delay, namespace=ns, clock=clocks.step, name=f"{proj.name}_W")
            j, i = np.nonzero(w_mask)
            syn.connect(i=i, j=j)
            syn.w = weight[j, i]
            self.forward_synapses[proj.name] = syn
            rule = self.rules[proj.name]
            if rule not in SPIKING_RULES:
                raise ConfigError(f"projection {proj.name!r}: the spiking variant runs "
                                  f"{', '.join(SPIKING_RULES)} feedback, not {rule!r}")
            eq = SPIKING_RULES[rule]
            fb = Synapses(post.error, pre.error, eq, method="euler", namespace=ns, clock=clocks.plasticity,
                          name=f"{proj.name}_B")
            j, k = np.nonzero(b_mask)
            fb.connect(i=j, j=k)
            fb.b = feedback[j, k]
            self.feedback_synapses[proj.name] = [fb]
        self.monitors: dict[str, Any] = standard_monitors(self, "x", "x")  # activity read from the spike traces
        for layer in self.layers.values():
            self.monitors[f"{layer.name}_spikes"] = SpikeMonitor(layer.forward, name=f"{layer.name}_spike_monitor")
        self.network = Network(*[g for layer in self.layers.values() for g in (layer.forward, layer.error)],
                               *self.forward_synapses.values(), *[f[0] for f in self.feedback_synapses.values()],
                               *self.monitors.values())

    def results(self) -> xr.Dataset:
        """As the rate circuit's, with ``<population>_y`` / ``_delta`` as trace rates in units of rate_max
        (activity = 2 rate / rate_max - 1) and ``<population>_rate``, the population's mean firing rate (Hz)."""
        rate_max = float(self.spiking.rate_max / Hz)
        activity = activity_dataset(self, lambda trace: 2 * np.asarray(trace / Hz) / rate_max - 1,
                                    "activity of {name} read from spike traces")
        rates = {f"{name}_rate": ((), float(self.monitors[f"{name}_spikes"].num_spikes)
                                  / (self.layers[name].size * float(self.duration)),
                                  {"units": "Hz", "long_name": f"mean firing rate of {name}"})
                 for name in self.layers}
        ds = xr.merge([alignment_over_time(self), activity, xr.Dataset(rates)], compat="override", join="outer")
        ds.attrs["weight_transport"] = 0
        return ds
