"""Compile a Circuit and a Protocol into one Brian2 ``Network`` of rate populations and plastic synapses.

For every population l there is a forward group ``<name>`` (activity y) and a feedback group ``<name>_error``
(error delta). Equations, with m(t) the mirror flag, s(t) "the circuit has settled in this presentation":

forward      tau_l dy/dt = -y + (1 - m) phi(u) + m n          u = sum_i W_ji y_i + b       (input: y = stimulus or n)
spontaneous  d n/dt = -n / tau_n + sigma sqrt(2 / tau_n) xi                   (Ornstein-Uhlenbeck, std sigma)
feedback     tau_fb d delta/dt = -delta + (1 - m) err + m u_syn      (in the mirror phase delta copies its forward
             err = phi'(u) sum_j B_jk delta_j   (hidden)                partner's synaptic drive u_syn = W y_below)
             err = phi'(u) (target - y)  or  phi'(u) (target - softmax(y))   (top; mse / cross_entropy, the
             softmax's normaliser z = sum_k exp(y_k) summed by one extra unit)
W synapses   dW/dt = a_w(t) s(t) (eta_w delta_post y_pre - lambda_w W)
B synapses   fa: fixed;  kp: dB/dt = a_b(t) s(t) (eta_w delta_pre y_post - lambda_b B) (the transposed W rule;
             lambda_b = lambda_w, or the rule's own decay times eta_w);
             wm: dB/dt = m (eta_mirror delta_pre y_post - lambda_mirror B);  bp: B starts as W and follows W's
             rule exactly (weight transport, labelled as such);  dfa: fixed, and below the output layer the
             synapses come straight from the *output* error population (direct feedback alignment), so a hidden
             error unit reads err = phi'(u) sum_j D_jk delta_out_j.
(y_post: the activity of the forward partner of the postsynaptic error unit, which that unit reads through a linked
variable — the same locality as the kp rule.)

B is stored in W's layout (B_jk is the synapse from error unit j of the upper layer to error unit k below), so
the feedback drive is B^T delta. With m = 1 every forward group is independent noise x_l and the error units above
copy the zero-mean drive W x_l, so E[delta_upper x_lower^T] = W Var(x): the wm synapses learn W — Akrout et al.'s
dB = eta x (W x)^T, with the noise injected per layer, independently.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import brian2
import numpy as np
from brian2 import Clock, Network, NeuronGroup, StateMonitor, Synapses, TimedArray, linked_var, ms, second

from .._toml import close_name
from ..circuit import Circuit
from ..errors import ConfigError, NoAlignmentWarning
from ..rules import describe_rule
from .parameters import RateParameters
from .protocol import Protocol

__all__ = ["PHI", "PHI_PRIME", "SynapseRule", "SYNAPSE_RULES", "BRIAN_RULES", "BrianCircuit", "CircuitClocks",
           "RateCircuit", "brian_device", "check_cuda_device", "connection_mask",
           "standard_monitors"]

#: phi(u) and phi'(u) as Brian2 expressions.
PHI = {"identity": "u", "relu": "u * int(u > 0)", "tanh": "tanh(u)", "sigmoid": "1 / (1 + exp(-u))",
       "softplus": "log(1 + exp(u))", "leaky_relu": "u * (0.01 + 0.99 * int(u > 0))"}
PHI_PRIME = {"identity": "1", "relu": "int(u > 0)", "tanh": "1 - tanh(u)**2",
             "sigmoid": "exp(-u) / (1 + exp(-u))**2", "softplus": "1 / (1 + exp(-u))",
             "leaky_relu": "0.01 + 0.99 * int(u > 0)"}

@dataclass(frozen=True)
class SynapseRule:
    """The Brian2 implementation of one rule (:mod:`neurocircuit.rules` describes it): what the feedback synapses
    start from and the equation by which they learn.

    ``transported``: B starts as (and, learning with W's rule and gate, stays) a copy of W — weight transport,
    on W's connections. ``equation``: the feedback synapse's plasticity (None: fixed). ``needs_plastic_w``: the
    equation only applies while W itself learns (else B is fixed too).
    """

    transported: bool = False
    equation: str | None = None
    needs_plastic_w: bool = False


#: Rule -> feedback synapses of the rate circuit. One row per rule this backend implements; a rule without a row
#: is refused by name. Sign-symmetry rules need W's signs at the feedback synapse at every moment, a transport
#: this backend does not model.
SYNAPSE_RULES: dict[str, SynapseRule] = {
    "bp": SynapseRule(transported=True, needs_plastic_w=True, equation=(
        "db/dt = learn_w(t) * settled * (eta_w * delta_pre * y_fwd_post - lambda_w * b) : 1 (clock-driven)")),
    "fa": SynapseRule(),
    "dfa": SynapseRule(),  # fixed; RateCircuit connects it from the output error population (the rule is direct)
    "kp": SynapseRule(needs_plastic_w=True, equation=(
        "db/dt = learn_b(t) * settled * (eta_w * delta_pre * y_fwd_post - lambda_b * b) : 1 (clock-driven)")),
    "wm": SynapseRule(equation=(
        "db/dt = mirror(t) * (eta_mirror * delta_pre * y_fwd_post - lambda_mirror * b) : 1 (clock-driven)")),
}
BRIAN_RULES = tuple(SYNAPSE_RULES)

_SETTLED = "int(t - presentation * floor(t / presentation + 1e-9) >= settle)"


@contextlib.contextmanager
def brian_device(params: RateParameters, directory: str | None = None) -> Iterator[None]:
    """Select the Brian2 device/target and float precision of ``params`` for the objects built inside, and restore
    the runtime device, target and precision after. Ctrl-C raises ``KeyboardInterrupt`` inside a run: Brian2's own
    handler would end the run early and return, and a cut-short run must not pass for a finished one."""
    previous_target = brian2.prefs.codegen.target
    previous_dtype = brian2.prefs.core.default_float_dtype
    previous_stop = brian2.prefs.core.stop_on_keyboard_interrupt
    standalone = False
    try:  # every preference set here is restored, also when choosing the device fails (no GPU)
        brian2.prefs.core.stop_on_keyboard_interrupt = False
        brian2.prefs.core.default_float_dtype = np.float32 if params.precision == "single" else np.float64
        if params.device != "runtime":
            if params.device == "cuda_standalone":
                check_cuda_device()
                import brian2cuda  # noqa: F401  (registers the cuda_standalone device)
            folder = directory or tempfile.mkdtemp(prefix="neurocircuit_standalone_")
            brian2.set_device(params.device, directory=folder, build_on_run=True)
            standalone = True
        else:
            brian2.prefs.codegen.target = params.target
        with warnings.catch_warnings():
            if params.precision == "single":  # Brian2 checks every float32 it sets against 1e50, which overflows
                warnings.filterwarnings("ignore", "overflow encountered in cast", RuntimeWarning, r"brian2\.groups")
            yield
    finally:
        if standalone:
            brian2.device.reinit()
            brian2.device.activate()
            brian2.set_device("runtime")
        brian2.prefs.codegen.target = previous_target
        brian2.prefs.core.default_float_dtype = previous_dtype
        brian2.prefs.core.stop_on_keyboard_interrupt = previous_stop


def check_cuda_device() -> None:
    """Refuse ``device = "cuda_standalone"`` in one line where brian2cuda or the CUDA compiler is missing."""
    if importlib.util.find_spec("brian2cuda") is None:
        raise ConfigError('brian2.device = "cuda_standalone" needs brian2cuda, which is not installed '
                          '(pip install "neurocircuit[cuda]")')
    cuda_home = os.environ.get("CUDA_PATH") or os.environ.get("CUDA_HOME")
    if shutil.which("nvcc") is None and not (cuda_home and os.access(os.path.join(cuda_home, "bin", "nvcc"), os.X_OK)):
        raise ConfigError('brian2.device = "cuda_standalone" needs the CUDA compiler nvcc, found neither on PATH nor '
                          "in $CUDA_PATH/bin (a machine with an NVIDIA GPU and the CUDA toolkit)")


def connection_mask(shape: tuple[int, int], p: float, rng: np.random.Generator) -> np.ndarray:
    """Which synapses exist: all of them for p = 1, else each independently with probability p."""
    return np.ones(shape, dtype=bool) if p >= 1 else rng.random(shape) < p


@dataclass(frozen=True)
class CircuitClocks:
    """The few clocks a circuit runs on, each shared by every object of that time step.

    Brian2's runtime loop advances every clock of a network in Python at every step and compares all of them to
    find the next; an object built with ``dt=`` gets a clock of its own (a 784-256-10 circuit had 20, ten of them
    at ``dt``). Shared clocks give the same schedule, and bit-identical trajectories (tested), with three to five;
    the Python they save is small (a median 4 % of the loop on 64-100-10 in one interleaved measurement, within
    this machine's noise).
    """

    step: Clock  #: populations, summed drives, fixed synapses: ``dt``
    plasticity: Clock  #: plastic synapses: ``plasticity_dt`` (the ``step`` clock where it is not set)
    record: Clock  #: activity monitors: ``record_dt``
    weights: Clock  #: weight monitors: every ``record_every`` windows

    @classmethod
    def of(cls, params: RateParameters) -> CircuitClocks:
        """The clocks ``params`` asks for: the time step, plasticity, activity records and weight snapshots."""
        step = Clock(params.dt)
        return cls(step=step,
                   plasticity=step if params.plasticity_dt is None else Clock(params.plasticity_step),
                   record=Clock(params.record_dt), weights=Clock(params.record_every * params.presentation))


def standard_monitors(net: Any, forward_var: str, error_var: str) -> dict[str, Any]:
    """Activity of the first ``record_neurons`` units of every forward and error group (every ``record_dt``) and
    every W and B synapse (every ``record_every`` windows), keyed ``<pop>_y``, ``<pop>_delta``, ``<proj>_W``,
    ``<proj>_B<k>``."""
    p, clocks = net.params, net.clocks
    monitors: dict[str, Any] = {}
    for layer in net.layers.values():
        record = range(min(layer.size, p.record_neurons))
        for key, group, var in (("y", layer.forward, forward_var), ("delta", layer.error, error_var)):
            monitors[f"{layer.name}_{key}"] = StateMonitor(group, var, record=record, clock=clocks.record,
                                                           name=f"{layer.name}_{key}_monitor")
    for name, syn in net.forward_synapses.items():
        monitors[f"{name}_W"] = StateMonitor(syn, "w", record=True, clock=clocks.weights, name=f"{name}_W_monitor")
        for k, fb in enumerate(net.feedback_synapses[name]):
            monitors[f"{name}_B{k}"] = StateMonitor(fb, "b", record=True, clock=clocks.weights,
                                                    name=f"{name}_B{k}_monitor")
    return monitors


@dataclass
class _Layer:
    name: str
    size: int
    activation: str
    forward: NeuronGroup
    error: NeuronGroup


class BrianCircuit:
    """What the rate and spiking circuits share: running the whole protocol in one ``Network.run`` and reading W
    and B back as matrices. Subclasses set ``circuit``, ``params``, ``protocol``, ``layers``, ``forward_synapses``,
    ``feedback_synapses``, ``monitors`` (with ``<proj>_W`` / ``<proj>_B<k>``), ``network`` and ``clocks``."""

    circuit: Circuit
    params: RateParameters
    protocol: Protocol
    layers: dict[str, _Layer]
    forward_synapses: dict[str, Synapses]
    feedback_synapses: dict[str, list[Synapses]]
    monitors: dict[str, Any]
    network: Network
    clocks: CircuitClocks
    #: How long the protocol opens with mirror windows, in which error units never read the feedback drive.
    mirror_lead: brian2.Quantity = 0 * ms

    @property
    def duration(self) -> brian2.Quantity:
        return self.protocol.steps * self.params.presentation

    def run(self, duration: brian2.Quantity | None = None, *, report: Any = None, report_period: float = 10.0) -> None:
        """Run the whole protocol (or ``duration`` of it) in one ``Network.run`` — in two where it starts inside the
        leading mirror windows, the first of them without the feedback drive they never read (a standalone device
        then builds one program of both runs).

        ``report``: called with the simulated seconds done, every ``report_period`` wall-clock seconds and at the
        start and end of each ``Network.run`` (Brian2's ``report=``); a string is Brian2's own (``"stderr"``: the
        only kind a standalone device, which runs a compiled program, can give)."""
        if callable(report):
            done = report

            def simulated(elapsed: Any, completed: float, start: Any, length: Any) -> None:  # Brian2's signature
                done(float(start) + completed * float(length))

            report = simulated
        reporting = {} if report is None else {"report": report, "report_period": report_period * brian2.second}
        dt = self.params.dt
        steps = int(round(float((self.duration if duration is None else duration) / dt)))
        skip = min(max(int(round(float((self.mirror_lead - self.network.t) / dt))), 0), steps)
        device = brian2.get_device()
        build_on_run = getattr(device, "build_on_run", False)
        if skip:
            self._feedback_drive(False)
            if build_on_run and steps > skip:
                device.build_on_run = False  # a standalone device builds and runs the program on the second run
            try:
                self.network.run(skip * dt, namespace={}, **reporting)
            finally:
                if build_on_run:
                    device.build_on_run = True
                self._feedback_drive(True)
        if steps > skip or steps == 0:  # the rest, with the drive (a zero-length run still runs, as before)
            self.network.run((steps - skip) * dt, namespace={}, **reporting)

    def _feedback_drive(self, on: bool) -> None:
        for group in self.feedback_synapses.values():
            for syn in group:
                for updater in syn.summed_updaters.values():
                    updater.active = on

    def matrices(self, name: str, snapshot: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """W and B (W's layout; missing synapses are 0) now, or at recorded ``snapshot``."""
        w_syn = self.forward_synapses[name]
        proj = self.circuit.projection(name)
        pre, post = self.layers[proj.source], self.layers[proj.target]
        weight = np.zeros((post.size, pre.size))
        w = w_syn.w[:] if snapshot is None else self.monitors[f"{name}_W"].w[:, snapshot]
        weight[np.asarray(w_syn.j[:]), np.asarray(w_syn.i[:])] = np.asarray(w)
        # (upper error population, pre): W's shape, or (output, pre) for direct feedback (dfa)
        feedback = np.zeros((len(self.feedback_synapses[name][0].source), pre.size))
        for k, fb in enumerate(self.feedback_synapses[name]):
            b = fb.b[:] if snapshot is None else self.monitors[f"{name}_B{k}"].b[:, snapshot]
            np.add.at(feedback, (np.asarray(fb.i[:]), np.asarray(fb.j[:])), np.asarray(b))
        return weight, feedback

    def _lambda_b(self, name: str) -> brian2.Quantity:
        """kp's decay of B: W's lambda_w, or the rule's own ``decay`` (a weight decay per unit of learning rate,
        as in the torch backend) times eta_w."""
        decay = dict(self.circuit.feedback_for(name).options).get("decay")
        return self.params.lambda_w if decay is None else float(decay) * self.params.eta_w

    def _projection_arrays(self, name: str, source: str, target: str,
                           weight_bias_feedback: tuple[np.ndarray, np.ndarray, np.ndarray]
                           ) -> tuple[_Layer, _Layer, _Layer, np.ndarray, np.ndarray, np.ndarray]:
        """(pre, post, upper, W, b, B) of a projection, its arrays checked against the populations. ``upper`` is
        the error population B comes from: ``post``, or the output's for direct feedback (dfa below the output)."""
        pre, post = self.layers[source], self.layers[target]
        output = self.circuit.output.name
        upper = self.layers[output] if describe_rule(self.rules[name]).direct and target != output else post
        weight, bias, feedback = (np.asarray(a, dtype=float) for a in weight_bias_feedback)
        if weight.shape != (post.size, pre.size) or feedback.shape != (upper.size, pre.size) \
                or bias.shape != (post.size,):
            raise ConfigError(f"projection {name!r}: weights of shapes W {weight.shape}, b {bias.shape}, "
                              f"B {feedback.shape} do not fit {pre.size} -> {post.size}"
                              + (f" (B from {upper.name!r}'s errors)" if upper is not post else ""))
        return pre, post, upper, weight, bias, feedback

    def snapshot_times(self) -> np.ndarray:
        name = next(iter(self.forward_synapses))
        return np.asarray(self.monitors[f"{name}_W"].t / second)


class RateCircuit(BrianCircuit):
    """The Brian2 network of a dense circuit, ready to run a :class:`Protocol`.

    Parameters
    ----------
    circuit
        Dense projections only (conv/pool circuits run in the torch backend).
    weights
        Per projection name: ``(W, b, B)`` numpy arrays, W and B of shape (out, in) (B in W's layout).
    params
        :class:`RateParameters`.
    protocol
        The unrolled schedule.
    rules
        Per projection name, its rule (default: the circuit's feedback rules).
    """

    def __init__(self, circuit: Circuit, weights: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                 params: RateParameters, protocol: Protocol, rules: Mapping[str, str] | None = None) -> None:
        for proj in circuit.projections:
            if proj.kind != "dense":
                raise ConfigError(f"the Brian2 backend runs dense projections; {proj.name!r} is {proj.kind}")
        names = [p.name for p in circuit.populations]
        for name in params.tau_population:  # a misspelt name would leave that population at brian2.tau
            if name not in names:
                raise ConfigError(f"brian2.tau_population.{name}: circuit {circuit.name!r} has no population "
                                  f"{name!r}{close_name(name, names)}")
        if params.delay > 0 * ms:
            raise ConfigError(f"brian2.delay = {params.delay}: the rate circuit's summed inputs have no delays; "
                              "use the spiking variant for delays")
        if protocol.stimulus.shape[1] != circuit.input.size or protocol.target.shape[1] != circuit.output.size:
            raise ConfigError(f"the protocol's stimulus ({protocol.stimulus.shape[1]} units) and target "
                              f"({protocol.target.shape[1]}) do not fit circuit {circuit.name!r} "
                              f"({circuit.input.size} inputs, {circuit.output.size} outputs)")
        self.circuit, self.params, self.protocol = circuit, params, protocol
        self.rules = {p.name: (rules or {}).get(p.name, circuit.feedback_for(p.name).rule)
                      for p in circuit.projections}
        for name, rule in self.rules.items():
            if rule not in BRIAN_RULES:
                raise ConfigError(f"projection {name!r}: rule {rule!r} is not available in the Brian2 backend "
                                  f"(available: {', '.join(BRIAN_RULES)}; sign-symmetry needs sign transport)")
        self.weight_transport = any(SYNAPSE_RULES[r].transported for r in self.rules.values())
        kp_decays = [float(self._lambda_b(n)) for n, r in self.rules.items() if r == "kp"]
        if 0.0 in kp_decays and protocol.learn_b.any():
            # The decay is KP's only alignment force: without it W - B^T keeps its initial size for good.
            warnings.warn("kp feedback synapses without decay (brian2.lambda_w = 0 Hz and no kp decay option): "
                          "W - B^T never shrinks, so B never aligns with W (set brian2.lambda_w > 0)",
                          NoAlignmentWarning, stacklevel=2)
        self._rng = np.random.default_rng(params.seed)
        brian2.seed(params.seed)
        p = params
        self.clocks = CircuitClocks.of(p)
        self.namespace: dict[str, Any] = {
            "presentation": p.presentation, "settle": p.settle, "noise_tau": p.noise_tau,
            "noise_sigma": p.noise_sigma, "tau_fb": p.tau_feedback, "eta_w": p.eta_w, "lambda_w": p.lambda_w,
            "eta_mirror": p.eta_mirror, "lambda_mirror": p.lambda_mirror,
            # Fixed names: the generated code then depends only on the equations and the protocol's length, so
            # the cython target compiles once per circuit and schedule and reuses its cache after that.
            **{key: TimedArray(getattr(protocol, key), dt=p.presentation, name=f"protocol_{key}")
               for key in ("mirror", "learn_w", "learn_b", "stimulus", "target")},
        }
        self.plastic_w = bool(protocol.learn_w.any())  # else W stays a constant (no per-step ODE)
        # Error units read B's drive only through (1 - m) err, so during the protocol's leading mirror windows it is
        # never read: run() switches its summed B^T delta (a third of the mirror phase's time on large circuits) off
        # there. Exact: a summed variable is recomputed from scratch at every step, so the trajectory is unchanged.
        mirror = protocol.mirror == 1
        self.mirror_lead = int(len(mirror) if mirror.all() else np.argmin(mirror)) * p.presentation
        self.normaliser: list[Any] = []  # the softmax's summing unit (cross_entropy only)
        self.layers = self._populations()
        self.forward_synapses: dict[str, Synapses] = {}
        self.feedback_synapses: dict[str, list[Synapses]] = {}
        self.masks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for proj in circuit.projections:
            self._project(proj.name, proj.source, proj.target, weights[proj.name])
        self._monitors()
        self.network = Network(*[g for layer in self.layers.values() for g in (layer.forward, layer.error)],
                               *self.normaliser,
                               *self.forward_synapses.values(),
                               *[s for group in self.feedback_synapses.values() for s in group],
                               *self.monitors.values())

    # ------------------------------------------------------------------------------------------ building
    def _populations(self) -> dict[str, _Layer]:
        circuit, p = self.circuit, self.params
        layers = {}
        chain = [circuit.input] + [circuit.population(proj.target) for proj in circuit.projections]
        plastic_w = self.plastic_w
        for index, pop in enumerate(chain):
            noise = "dn/dt = -n / noise_tau + noise_sigma * sqrt(2 / noise_tau) * xi : 1\n"
            if index == 0:
                forward = NeuronGroup(pop.size, "y : 1\n" + noise, method="euler", clock=self.clocks.step,
                                      namespace=self.namespace, name=pop.name)
                forward.run_regularly("y = (1 - mirror(t)) * stimulus(t, i) + mirror(t) * n", when="start")
            else:
                eqs = (f"dy/dt = (-y + (1 - mirror(t)) * ({PHI[pop.activation]}) + mirror(t) * n) / tau : 1\n"
                       "u = u_syn + bias : 1\nu_syn : 1\nbias : 1 (constant)\n" + noise +
                       ("delta : 1 (linked)\n" if plastic_w else ""))
                forward = NeuronGroup(pop.size, eqs, method="euler", clock=self.clocks.step, name=pop.name,
                                      namespace={**self.namespace, "tau": p.tau_of(pop.name)})
            top = index == len(chain) - 1
            if index == 0:
                err, drive = "e_in", "0"
            elif top:
                # -dL/du: phi'(u) (target - y) for mse; phi'(u) (target - softmax(y)) for cross-entropy on the
                # outputs y, the softmax read from a normaliser unit that sums exp(y) over the population.
                predicted = "exp(y_fwd) / z_norm" if p.loss == "cross_entropy" else "y_fwd"
                err, drive = f"({PHI_PRIME[pop.activation]}) * (target(t, i) - {predicted})", "u_syn_fwd"
            else:
                err, drive = f"({PHI_PRIME[pop.activation]}) * e_in", "u_syn_fwd"
            eqs = f"d delta/dt = (-delta + (1 - mirror(t)) * err + mirror(t) * ({drive})) / tau_fb : 1\n"
            eqs += f"err = {err} : 1\ny_fwd : 1 (linked)\n"
            if top and p.loss == "cross_entropy":
                eqs += "z_norm : 1 (linked)\n"
            if index > 0:
                eqs += "u_syn_fwd : 1 (linked)\nbias_fwd : 1 (linked)\nu = u_syn_fwd + bias_fwd : 1\n"
            if not top:
                eqs += "e_in = e_exc + e_inh : 1\ne_exc : 1\ne_inh : 1\n" if p.dale else "e_in : 1\n"
            error = NeuronGroup(pop.size, eqs, method="euler", clock=self.clocks.step, namespace=self.namespace,
                                name=f"{pop.name}_error")
            error.y_fwd = linked_var(forward, "y")
            if top and p.loss == "cross_entropy":
                self.normaliser = self._softmax_normaliser(forward, error)
            if index > 0:
                error.u_syn_fwd = linked_var(forward, "u_syn")
                error.bias_fwd = linked_var(forward, "bias")
                if plastic_w:
                    forward.delta = linked_var(error, "delta")
            layers[pop.name] = _Layer(pop.name, pop.size, pop.activation, forward, error)
        return layers

    def _softmax_normaliser(self, output: NeuronGroup, error: NeuronGroup) -> list[Any]:
        """One unit z = sum_k exp(y_k) over the output population, read by every output error unit."""
        norm = NeuronGroup(1, "z : 1", clock=self.clocks.step, name=f"{output.name}_normaliser")
        summed = Synapses(output, norm, "z_post = exp(y_pre) : 1 (summed)", clock=self.clocks.step,
                          name=f"{output.name}_normaliser_input")
        summed.connect(i=np.arange(len(output)), j=0)
        error.z_norm = linked_var(norm, "z", index=np.zeros(len(error), dtype=int))
        return [norm, summed]

    def _project(self, name: str, source: str, target: str,
                 weight_bias_feedback: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        p, rule = self.params, self.rules[name]
        # Direct feedback (dfa below the output layer): B comes from the output error population, (n_out, pre).
        pre, post, upper, weight, bias, feedback = self._projection_arrays(name, source, target, weight_bias_feedback)
        w_mask = connection_mask(weight.shape, p.p_forward, self._rng)
        row = SYNAPSE_RULES[rule]
        b_mask = w_mask if row.transported else connection_mask(feedback.shape, p.p_feedback, self._rng)
        self.masks[name] = (w_mask, b_mask)
        post.forward.bias = bias
        plastic_w = self.plastic_w
        w_eq = ("dw/dt = learn_w(t) * settled * (eta_w * delta_post * y_pre - lambda_w * w) : 1 (clock-driven)\n"
                if plastic_w else "w : 1\n")
        forward = Synapses(pre.forward, post.forward, w_eq + f"settled = {_SETTLED} : 1\n"
                           "u_syn_post = w * y_pre : 1 (summed)", method="euler",
                           # Brian2 sums u_syn on the target's clock (every dt); only dw/dt takes this clock
                           clock=self.clocks.plasticity if plastic_w else self.clocks.step,
                           namespace=self.namespace, name=f"{name}_W")
        # Pre-major order (all targets of one input, then the next): consecutive synapses add into different
        # targets of the summed u_syn, so the adds do not wait on each other (post-major order ran 3x slower).
        i, j = np.nonzero(w_mask.T)  # pre i, post j
        forward.connect(i=i, j=j)
        forward.w = weight[j, i]
        self.forward_synapses[name] = forward

        learns = row.equation is not None and (plastic_w or not row.needs_plastic_w)
        b_eq = f"{row.equation}\n" if learns else "b : 1\n"
        initial = weight if row.transported else feedback
        j, k = np.nonzero(b_mask)  # upper (or output) error unit j -> lower error unit k
        groups = []
        signs = [("exc", "e_exc", "clip(b, 0, inf)", np.maximum), ("inh", "e_inh", "clip(b, -inf, 0)", np.minimum)] \
            if p.dale else [("", "e_in", None, None)]
        for suffix, target_var, clip, part in signs:
            syn = Synapses(upper.error, pre.error, b_eq + f"settled = {_SETTLED} : 1\n"
                           f"{target_var}_post = b * delta_pre : 1 (summed)", method="euler",
                           clock=self.clocks.plasticity if learns else self.clocks.step,
                           namespace={**self.namespace, "lambda_b": self._lambda_b(name)},
                           name=f"{name}_B{('_' + suffix) if suffix else ''}")
            syn.connect(i=j, j=k)
            values = initial[j, k]
            syn.b = part(values, 0.0) if part is not None else values
            if clip is not None:
                syn.run_regularly(f"b = {clip}", when="end")  # Dale's law: a synapse never changes sign
            groups.append(syn)
        self.feedback_synapses[name] = groups

    def _monitors(self) -> None:
        p = self.params
        self.monitors: dict[str, StateMonitor] = standard_monitors(self, "y", "delta")
        top = self.layers[self.circuit.output.name]
        if (self.protocol.labels >= 0).any():
            self.monitors["readout"] = StateMonitor(top.forward, "y", record=True, dt=p.presentation,
                                                    name="readout_monitor")

    # ------------------------------------------------------------------------------------------ running
    def state(self) -> dict[str, dict[str, np.ndarray]]:
        """Current y and delta of every population."""
        return {n: {"y": np.asarray(layer.forward.y[:]), "delta": np.asarray(layer.error.delta[:])}
                for n, layer in self.layers.items()}
