"""The spiking variant: the rate circuit's graph with spiking units, running every phase (mirror, prenatal, engaged).

Every unit carries an activity ``a`` in [-1, 1] as a firing rate ``r0 (1 + a)`` (``r0 = rate_max / 2``; Poisson or
leaky integrate-and-fire units, :mod:`neurocircuit.brian.neurons`) and keeps a spike trace ``x`` whose decoded value
``x / r0 - 1`` is its activity as other units and synapses read it. With m(t) the mirror flag:

forward      tau_s dI/dt = -I, I += W_ji / (r0 tau_s) per spike of input i      (after the synaptic ``delay``)
             u = I - sum_i W_ji + b          (the drive around the inputs' baseline rate: E[u] = sum_i W_ji a_i + b)
             a = (1 - m) phi(u) + m n        (input units: (1 - m) stimulus + m n; n: Ornstein-Uhlenbeck noise)
error        the same current from the error units above through B (from the output errors for dfa), and
             e = (1 - m) err + m u_fwd,  err = phi'(u_fwd) (I - sum_j B_jk)  (hidden)
                                         err = phi'(u_fwd) (target - a_fwd)   (top, mse)
W synapses   dW/dt = a_w(t) s(t) (eta_w d_post a^_pre - lambda_w W)
B synapses   fa, dfa: fixed;  kp: dB/dt = a_b(t) s(t) (eta_w d^_pre a_fwd,post - lambda_b B);
             wm: dB/dt = m (eta_mirror d^_pre a^_fwd,post - lambda_mirror B)

with a^ = x / r0 - 1 and d^ the same of an error unit: the activity a presynaptic unit's spikes carry, read from its
trace. W's and kp's rules are their rate rules with the presynaptic factor read from spikes and the postsynaptic
factor the postsynaptic unit's own state (d = clip(e, -1, 1), the value its spikes carry; for kp the activity of
the error unit's forward partner, as in the rate circuit). W's rule subtracts the covariance a presynaptic spike
makes between its own trace and the postsynaptic drive (Poisson units; see _project). wm's rule reads the forward
partner's spike trace: in a mirror window the error unit above copies the drive those very spikes make, so beside
the rates' covariance each spike adds to both factors in proportion to W_kj — another pull towards W (docs/brian2.md
derives each rule).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import brian2
import numpy as np
import xarray as xr
from brian2 import (
    Hz,
    Network,
    NeuronGroup,
    PopulationRateMonitor,
    SpikeMonitor,
    Synapses,
    TimedArray,
    linked_var,
    second,
)

from ..circuit import Circuit
from ..errors import ConfigError, NoAlignmentWarning
from .network import (
    _SETTLED,
    PHI,
    PHI_PRIME,
    BrianCircuit,
    CircuitClocks,
    SynapseRule,
    _Layer,
    connection_mask,
    standard_monitors,
)
from .neurons import neuron_model
from .parameters import RateParameters, SpikingParameters
from .protocol import Protocol
from .record import accuracy_dataset, activity_dataset, alignment_over_time

__all__ = ["SpikingCircuit", "SPIKING_RULES"]

#: Rule -> feedback synapses of the spiking variant (the rate circuit's rows with activities read from traces).
SPIKING_RULES: dict[str, SynapseRule] = {
    "fa": SynapseRule(),
    "dfa": SynapseRule(),
    "kp": SynapseRule(needs_plastic_w=True, equation=(
        "db/dt = learn_b(t) * settled * (eta_w * dhat_pre * a_fwd_post - lambda_b * b) : 1 (clock-driven)")),
    "wm": SynapseRule(equation=(
        "db/dt = mirror(t) * (eta_mirror * dhat_pre * ahat_fwd_post - lambda_mirror * b) : 1 (clock-driven)")),
}

#: phi''(u): how an error unit's value moves with its forward partner's drive (the spike-noise correction below).
PHI_SECOND = {"identity": "0", "relu": "0", "leaky_relu": "0", "tanh": "-2 * tanh(u) * (1 - tanh(u)**2)",
              "sigmoid": "exp(-u) * (exp(-u) - 1) / (1 + exp(-u))**3", "softplus": "exp(-u) / (1 + exp(-u))**2"}

_NOISE = "dn/dt = -n / noise_tau + noise_sigma * sqrt(2 / noise_tau) * xi : 1\n"
_DECODED = "ahat = x / r0 - 1 : 1\n"
# A LIF unit's train is close to periodic (period T = 1 / r); the covariance of its trace with a synaptic current it
# drives is then the Poisson one times kappa(r) = exp(D / tau_trace) (sum_k g(k T) - r (tau_trace + tau_syn)), g the
# filters' cross-correlation in units of 1 / (tau_trace + tau_syn), summed in closed form (docs/brian2.md): kappa is
# L(1 / (2 tau r)) (Langevin) for equal filters and no delay, 1 as r -> 0 (isolated spikes), ~1 / (6 tau r) when fast.
_PERIODIC_KAPPA = (
    "isi = 1 / (r0 * (1 + ahat) + 0.001 * Hz) : second\n"
    "k_first = ceil(syn_delay / isi) : 1\n"
    "kappa = exp(syn_delay / tau_trace) * ("
    "exp(-(k_first * isi - syn_delay) / tau_syn) / (1 - exp(-isi / tau_syn))"
    " + exp(-(syn_delay - (k_first - 1) * isi) / tau_trace) / (1 - exp(-isi / tau_trace))"
    " - (tau_trace + tau_syn) / isi) : 1\n")


class SpikingCircuit(BrianCircuit):
    """A dense circuit as spiking populations, ready to run a :class:`Protocol` (read like
    :class:`~neurocircuit.brian.network.RateCircuit`, so results share one convention).

    Parameters
    ----------
    circuit
        Dense projections whose rules are in :data:`SPIKING_RULES`.
    weights
        Per projection name: ``(W, b, B)`` numpy arrays as for the rate circuit.
    params, spiking
        The shared and the spiking parameters; ``params.loss`` must be ``"mse"``.
    protocol
        What the circuit experiences, window by window.
    """

    def __init__(self, circuit: Circuit, weights: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                 params: RateParameters, spiking: SpikingParameters, protocol: Protocol) -> None:
        spiking.check_against(params.dt)
        if params.tau_population:
            raise ConfigError("brian2.tau_population is not honoured by the spiking variant (its units read each "
                              "other's spikes through brian2.spiking.tau_synapse and tau_trace)")
        self.circuit, self.params, self.spiking, self.protocol = circuit, params, spiking, protocol
        self.rules = {p.name: circuit.feedback_for(p.name).rule for p in circuit.projections}
        for name, rule in self.rules.items():
            if rule not in SPIKING_RULES:
                raise ConfigError(f"projection {name!r}: the spiking variant implements {', '.join(SPIKING_RULES)} "
                                  f"feedback, not {rule!r}")
        self.weight_transport = False
        self.plastic_w = bool(protocol.learn_w.any())
        if self.plastic_w and protocol.learn_b.any() and 0.0 in [float(self._lambda_b(n)) for n, r in
                                                                 self.rules.items() if r == "kp"]:
            # as in the rate circuit: the decay is KP's only alignment force
            warnings.warn("kp feedback synapses without decay (brian2.lambda_w = 0 Hz and no kp decay option): "
                          "W - B^T never shrinks, so B never aligns with W (set brian2.lambda_w > 0)",
                          NoAlignmentWarning, stacklevel=2)
        if self.plastic_w and params.loss != "mse":
            raise ConfigError(f"brian2.loss = {params.loss!r}: the spiking variant's output errors are mse "
                              "(target - activity)")
        brian2.seed(params.seed)
        self._rng = np.random.default_rng(params.seed)
        self.clocks = CircuitClocks.of(params)
        self.model = neuron_model(spiking, params.dt)
        p = params
        self.namespace: dict[str, Any] = {
            **self.model["namespace"], "tau_syn": spiking.tau_synapse, "noise_tau": p.noise_tau,
            "noise_sigma": p.noise_sigma, "presentation": p.presentation,
            "mirror": TimedArray(protocol.mirror, dt=p.presentation, name="protocol_mirror"),
            "stimulus": TimedArray(protocol.stimulus, dt=p.presentation, name="protocol_stimulus"),
        }
        if self.plastic_w:
            self.namespace.update(
                eta_w=p.eta_w, lambda_w=p.lambda_w, settle=p.settle, syn_delay=p.delay,
                shot=float(np.exp(-float(p.delay / spiking.tau_trace)))
                / float(spiking.rate_max / 2 * (spiking.tau_trace + spiking.tau_synapse)),
                target=TimedArray(protocol.target, dt=p.presentation, name="protocol_target"),
                learn_w=TimedArray(protocol.learn_w, dt=p.presentation, name="protocol_learn_w"),
                learn_b=TimedArray(protocol.learn_b, dt=p.presentation, name="protocol_learn_b"))
        if "wm" in self.rules.values():  # (as the rate circuit: a wm arm without mirror windows keeps B fixed)
            self.namespace.update(eta_mirror=p.eta_mirror, lambda_mirror=p.lambda_mirror)
        self.layers = self._populations()
        self.forward_synapses: dict[str, Synapses] = {}
        self.feedback_synapses: dict[str, list[Synapses]] = {}
        for proj in circuit.projections:
            self._project(proj.name, proj.source, proj.target, weights[proj.name])
        self.monitors: dict[str, Any] = standard_monitors(self, "x", "x")  # activity read from the spike traces
        for layer in self.layers.values():
            for group in (layer.forward, layer.error):
                if group.events:  # the input error units never spike (nothing reads them)
                    self.monitors[f"{group.name}_rate"] = PopulationRateMonitor(group, name=f"{group.name}_rates")
        if (protocol.labels >= 0).any():
            top = self.layers[circuit.output.name]
            self.monitors["readout"] = SpikeMonitor(top.forward, name="readout_spikes")
        self.network = Network(*[g for layer in self.layers.values() for g in (layer.forward, layer.error)],
                               *self.forward_synapses.values(),
                               *[s for f in self.feedback_synapses.values() for s in f],
                               *self.monitors.values())

    # ------------------------------------------------------------------------------------------ building
    def _group(self, size: int, equations: str, name: str) -> NeuronGroup:
        """A population of spiking units (the neuron model appended to ``equations``)."""
        model = self.model
        group = NeuronGroup(size, equations + model["model"], threshold=model["threshold"], reset=model["reset"],
                            refractory=model["refractory"], method="euler", clock=self.clocks.step,
                            namespace=dict(self.namespace), name=name)
        for variable, value in model["initial"].items():
            setattr(group, variable, value)
        return group

    def _populations(self) -> dict[str, _Layer]:
        circuit = self.circuit
        chain = [circuit.input] + [circuit.population(proj.target) for proj in circuit.projections]
        layers = {}
        # what a presynaptic forward unit gives its W synapses: its decoded activity (and, LIF, its train's kappa)
        decoded = _DECODED + (_PERIODIC_KAPPA if self.plastic_w and self.spiking.neuron != "poisson" else "")
        for index, pop in enumerate(chain):
            top = index == len(chain) - 1
            if index == 0:
                forward = self._group(pop.size, _NOISE + decoded + "a = (1 - mirror(t)) * stimulus(t, i) + "
                                      "mirror(t) * clip(n, -1, 1) : 1\n", pop.name)
                # Nothing reads the input population's errors: its error units are a place for B's synapses to end,
                # reading their forward partner's activity (kp, wm use it), and never spike.
                error = NeuronGroup(pop.size, "x : Hz\na_fwd : 1 (linked)\nahat_fwd : 1 (linked)\n",
                                    clock=self.clocks.step, name=f"{pop.name}_error")
                error.x = self.namespace["r0"]
                error.a_fwd = linked_var(forward, "a")
                error.ahat_fwd = linked_var(forward, "ahat")
                layers[pop.name] = _Layer(pop.name, pop.size, pop.activation, forward, error)
                continue
            forward_eqs = ("dI/dt = -I / tau_syn : 1\nI_base : 1\nu_syn = I - I_base : 1\nu = u_syn + bias : 1\n"
                           "bias : 1 (constant)\n" + _NOISE + decoded +
                           f"a = (1 - mirror(t)) * clip({PHI[pop.activation]}, -1, 1) + mirror(t) * clip(n, -1, 1)"
                           " : 1\n" + ("d_err : 1 (linked)\nsens_err : 1 (linked)\n" if self.plastic_w else ""))
            forward = self._group(pop.size, forward_eqs, pop.name)
            err = f"({PHI_PRIME[pop.activation]}) * " + ("(target(t, i) - a_fwd)" if top else "(I - I_base)")
            # d(err)/du: how the error moves with the drive the presynaptic spikes give (see _project)
            sens = (f"({PHI_SECOND[pop.activation]}) * (target(t, i) - a_fwd) - ({PHI_PRIME[pop.activation]})**2"
                    if top else f"({PHI_SECOND[pop.activation]}) * (I - I_base)")
            error_eqs = ("u_syn_fwd : 1 (linked)\nbias_fwd : 1 (linked)\na_fwd : 1 (linked)\nahat_fwd : 1 (linked)\n"
                         "u = u_syn_fwd + bias_fwd : 1\n" + ("" if top else "dI/dt = -I / tau_syn : 1\nI_base : 1\n") +
                         (f"err = {err} : 1\nsens = ({sens}) * int(abs(a) < 1) : 1\n" if self.plastic_w
                          else "err = 0 : 1\n") +
                         "a = (1 - mirror(t)) * err + mirror(t) * u_syn_fwd : 1\n"
                         "d = clip(a, -1, 1) : 1\ndhat = x / r0 - 1 : 1\n")
            error = self._group(pop.size, error_eqs, f"{pop.name}_error")
            error.u_syn_fwd = linked_var(forward, "u_syn")
            error.bias_fwd = linked_var(forward, "bias")
            error.a_fwd = linked_var(forward, "a")
            error.ahat_fwd = linked_var(forward, "ahat")
            if self.plastic_w:
                forward.d_err = linked_var(error, "d")
                forward.sens_err = linked_var(error, "sens")
            layers[pop.name] = _Layer(pop.name, pop.size, pop.activation, forward, error)
        return layers

    def _project(self, name: str, source: str, target: str,
                 weight_bias_feedback: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        p, rule = self.params, self.rules[name]
        pre, post, upper, weight, bias, feedback = self._projection_arrays(name, source, target, weight_bias_feedback)
        w_mask = connection_mask(weight.shape, p.p_forward, self._rng)
        b_mask = connection_mask(feedback.shape, p.p_feedback, self._rng)
        post.forward.bias = bias
        # A presynaptic spike raises both the presynaptic trace and (after the delay) the postsynaptic drive, so the
        # trace's noise and the postsynaptic error covary: E[d ahat] = (rate rule) + sens w r_pre / (r0^2 (tau_trace
        # + tau_syn)) exp(-delay / tau_trace), a weight decay of Poisson shot noise. The rule subtracts that term
        # (r_pre / r0 read as 1 + ahat). LIF units fire nearly periodically: the same term times kappa(r_pre).
        correction = " - sens_err_post * w * (1 + ahat_pre) * shot" + (
            "" if self.spiking.neuron == "poisson" else " * kappa_pre")
        w_eq = ("dw/dt = learn_w(t) * settled * (eta_w * (d_err_post * ahat_pre" + correction + ") - lambda_w * w)"
                f" : 1 (clock-driven)\nsettled = {_SETTLED} : 1\n" if self.plastic_w else "w : 1\n")
        forward = Synapses(pre.forward, post.forward, w_eq + "I_base_post = w : 1 (summed)",
                           on_pre="I_post += w / (r0 * tau_syn)", delay=p.delay, method="euler",
                           clock=self.clocks.plasticity if self.plastic_w else self.clocks.step,
                           namespace=self.namespace, name=f"{name}_W")
        i, j = np.nonzero(w_mask.T)  # pre-major order, as in the rate circuit
        forward.connect(i=i, j=j)
        forward.w = weight[j, i]
        self.forward_synapses[name] = forward

        row = SPIKING_RULES[rule]
        learns = row.equation is not None and (self.plastic_w or not row.needs_plastic_w)
        b_eq = f"{row.equation}\n" if learns else "b : 1\n"
        if "settled" in b_eq:  # (wm learns in mirror windows, whatever the settling)
            b_eq += f"settled = {_SETTLED} : 1\n"
        drives = source != self.circuit.input.name  # the input's error units read no drive
        syn = Synapses(upper.error, pre.error, b_eq + ("I_base_post = b : 1 (summed)" if drives else ""),
                       on_pre="I_post += b / (r0 * tau_syn)" if drives else None,
                       delay=p.delay if drives else None, method="euler",
                       clock=self.clocks.plasticity if learns else self.clocks.step,
                       namespace={**self.namespace, "lambda_b": self._lambda_b(name)} if learns else self.namespace,
                       name=f"{name}_B")
        j, k = np.nonzero(b_mask)
        syn.connect(i=j, j=k)
        syn.b = feedback[j, k]
        self.feedback_synapses[name] = [syn]

    # ------------------------------------------------------------------------------------------ results
    def readout(self) -> np.ndarray:
        """(steps + 1, n_out): row k + 1 is window k's answer, the output units' activity decoded from their spike
        counts after ``settle`` (the block_scores convention). A sample shown for several windows
        (``test_windows``) pools its counts: after ``settle`` in its first window and whole windows after that (the
        stimulus has not changed), so the row of its last window decodes them all."""
        p, steps = self.params, self.protocol.steps
        n_out = self.circuit.output.size
        mon = self.monitors["readout"]
        t = np.asarray(mon.t / second)
        window = float(p.presentation / second)
        settle = float(p.settle / second)
        continued = np.append(self.protocol.continued(), False)  # (steps + 1,): a spike at exactly t = end counts too
        index = np.floor(t / window + 1e-9).astype(int)
        late = continued[index] | ((t - index * window) >= settle - 1e-12)
        counts = np.zeros((steps + 1, n_out))
        np.add.at(counts, (index[late] + 1, np.asarray(mon.i)[late]), 1.0)
        seconds = np.concatenate([[window - settle], np.where(continued[:steps], window, window - settle)])
        # pool each row with the rows before it that show the same sample: sums since the group's first row
        row = np.arange(steps + 1)
        first = np.maximum.accumulate(np.where(np.concatenate([[False], continued[:steps]]), 0, row))
        running = np.concatenate([np.zeros((1, n_out)), np.cumsum(counts, axis=0)])
        running_seconds = np.concatenate([[0.0], np.cumsum(seconds)])
        counts = running[row + 1] - running[first]
        seconds = running_seconds[row + 1] - running_seconds[first]
        return counts / (seconds[:, None] * float(self.spiking.rate_max / Hz) / 2) - 1.0

    def firing_rates(self, times: np.ndarray) -> xr.Dataset:
        """Mean firing rate of every spiking population over each recording interval starting at ``times`` (s)."""
        data = {}
        edges = np.append(times, np.inf)
        for key, mon in self.monitors.items():
            if not key.endswith("_rate"):
                continue
            t, rate = np.asarray(mon.t / second), np.asarray(mon.rate / Hz)
            index = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, len(times) - 1)
            total = np.bincount(index, weights=rate, minlength=len(times))
            count = np.bincount(index, minlength=len(times))
            data[key] = ("time", total / np.maximum(count, 1), {
                "units": "Hz", "long_name": f"mean firing rate of {key[:-5]} (population)"})
        return xr.Dataset(data, coords={"time": ("time", times, {"units": "s", "long_name": "simulated time"})})

    def results(self) -> xr.Dataset:
        """As the rate circuit's, with ``<population>_y`` / ``_delta`` decoded from spike traces (x / r0 - 1),
        ``<population>_rate`` / ``<population>_error_rate`` (Hz, population mean over each recording interval) and,
        with test presentations, accuracy read from the output units' spike counts."""
        r0 = float(self.spiking.rate_max / Hz) / 2
        activity = activity_dataset(self, lambda trace: np.asarray(trace / Hz) / r0 - 1,
                                    "{kind} of {name} decoded from spike traces (x / r0 - 1)")
        parts = [alignment_over_time(self), activity, self.firing_rates(np.asarray(activity["time"]))]
        if "readout" in self.monitors and self.protocol.test_blocks:
            parts.append(accuracy_dataset(self.protocol, self.readout(), self.params.loss))
        ds = xr.merge(parts, compat="override", join="outer")
        ds.attrs["weight_transport"] = 0
        return ds
