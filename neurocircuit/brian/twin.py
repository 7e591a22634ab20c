"""The torch twin of a rate circuit: the algorithm the circuit implements, run step by step in discrete time.

The Brian2 rate circuit learns in continuous time: each presentation window of length T settles for ``settle``,
then its synapses integrate dW/dt = eta_w delta_post y_pre - lambda_w W over the learning window
T_learn = presentation - settle. Once the circuit has settled, delta and y are the torch network's -dL/du and
activity (the parity tests), so one window is one SGD step of the torch backend's rule layers on that one sample
with

    lr = eta_w T_learn,     weight_decay = lambda_w / eta_w      (so lr * weight_decay = lambda_w T_learn),

kp's B getting the same update (:class:`~neurocircuit.nn.FeedbackOptimizer`, only where the protocol's
``learn_b`` is on), biases fixed (the circuit has no bias plasticity). What differs is second order: the circuit's
W moves *during* the window, so delta shrinks as the sample is learnt (relative size ~ eta_w T_learn ||y_pre||^2 / 2
per window), and the state has not fully settled (the residual of a cascade of low-pass stages).

A mirror window (of a mirror phase, or interleaved in an engaged phase) is a statistical twin only: one
:func:`~neurocircuit.nn.mirror.mirror_update` per ``wm`` layer with learning rate eta_mirror T, the circuit's decay
over the window, and Gaussian noise whose variance and sample count give B the circuit's expected drift and the
circuit's noise per window (:func:`mirror_statistics`): the circuit's Hebbian drive is E[delta_upper y_lower] =
C_l W, with C_l the covariance of the *low-pass-filtered* noise, not noise_sigma^2 (docs/brian2.md, "The torch
twin"). Its noise is not the circuit's noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from brian2 import Quantity, second
from torch.nn import functional as F

from ..circuit import Circuit
from ..errors import ConfigError
from ..phases import MirrorSettings
from ..torch.nn.circuit_network import network_from_circuit
from ..torch.nn.feedback_optim import FeedbackOptimizer
from ..torch.nn.layers import FeedbackLayer
from ..torch.nn.metrics import angle_degrees
from ..torch.nn.mirror import mirror_update
from .parameters import RateParameters
from .protocol import Protocol
from .record import readout_scores

__all__ = ["TwinRun", "check_twin_parameters", "mirror_decay", "mirror_statistics", "run_twin",
           "twin_learning_rate", "twin_mirror_settings"]


@dataclass
class TwinRun:
    """What the twin ends with: W and B per projection (W's layout), per test block its accuracy and loss, the
    B-W angle per projection at the end of every phase (keyed by the protocol's phase names, in order), per
    validation block its accuracy and loss, and the B-W angle per projection before each window of ``angle_steps``
    (``angles[name][k]``; the protocol's length: at the end)."""

    weights: dict[str, tuple[np.ndarray, np.ndarray]]
    test_accuracy: list[float]
    test_loss: list[float]
    phase_angles: dict[str, dict[str, float]]
    val_accuracy: list[float] = field(default_factory=list)  # per validation block (none without a split)
    val_loss: list[float] = field(default_factory=list)
    angle_steps: list[int] = field(default_factory=list)
    angles: dict[str, list[float]] = field(default_factory=dict)


def check_twin_parameters(params: RateParameters) -> None:
    """Refuse circuits the twin cannot mirror: its layers are dense matrices without sign constraints."""
    if params.p_forward < 1 or params.p_feedback < 1 or params.dale:
        raise ConfigError("brian2.twin needs dense connections without Dale's law (p_forward = p_feedback = 1, "
                          f"dale = false); got p_forward = {params.p_forward}, p_feedback = {params.p_feedback}, "
                          f"dale = {str(params.dale).lower()}")


def twin_learning_rate(params: RateParameters) -> tuple[float, float]:
    """(lr, weight_decay) of the per-sample SGD step that one presentation window of the circuit performs."""
    window = float((params.presentation - params.settle) / second)
    eta, decay = float(params.eta_w * second), float(params.lambda_w * second)
    return eta * window, (decay / eta if eta > 0 else 0.0)


def mirror_statistics(params: RateParameters, source_tau: Quantity | None) -> tuple[float, float]:
    """(C, K) of one ``wm`` projection's mirror in the circuit, exactly for its Euler scheme.

    In a mirror window the lower forward units carry noise x (the OU noise n itself for the input population, n
    low-pass filtered with the source population's tau, ``source_tau``, for the others), and the upper error units
    low-pass filter W x with tau_feedback. Every unit is an independent copy of the same linear chain, so
    E[delta_upper x_lower^T] = C W with C = E[f x] of one chain (f: the filtered x), computed from the chain's
    stationary covariance (a discrete Lyapunov equation: n, x and f after each Euler step of ``dt``, in the order
    Brian2 steps them: every update reads the state at the start of the step). K is the number of independent
    Gaussian samples of variance C whose mean has the variance of the circuit's Hebbian term averaged over one
    window (``presentation``, sampled every ``plasticity_dt``): K = N C^2 / sum_m R_f(m) R_x(m), N samples per
    window, R the autocovariances (the cross-unit terms, which dominate a layer of many inputs)."""
    dt = float(params.dt / second)
    a, b = 1 - dt / float(params.noise_tau / second), dt / float(params.tau_feedback / second)
    if source_tau is None:  # state (n, f): the lower units are the noise
        chain, x, f = np.array([[a, 0.0], [b, 1 - b]]), 0, 1
    else:  # state (n, y, f): the lower units filter the noise
        g = dt / float(source_tau / second)
        chain, x, f = np.array([[a, 0.0, 0.0], [g, 1 - g, 0.0], [0.0, b, 1 - b]]), 1, 2
    size = len(chain)
    drive = np.zeros((size, size))
    drive[0, 0] = float(params.noise_sigma) ** 2 * 2 * dt / float(params.noise_tau / second)
    cov = np.linalg.solve(np.eye(size * size) - np.kron(chain, chain), drive.ravel()).reshape(size, size)
    stride = max(1, round(float(params.plasticity_step / params.dt)))
    lag, step = cov.copy(), np.linalg.matrix_power(chain, stride)
    spectrum = cov[f, f] * cov[x, x]
    for _ in range(100_000):  # the chain's eigenvalues are < 1: the autocovariances decay geometrically
        lag = step @ lag
        term = 2 * lag[f, f] * lag[x, x]
        spectrum += term
        if abs(term) <= 1e-14 * spectrum:
            break
    samples = float(params.presentation / params.plasticity_step)
    return float(cov[f, x]), float(samples * cov[f, x] ** 2 / spectrum)


def mirror_decay(params: RateParameters) -> float:
    """The share of B that the circuit's wm decay removes over one mirror window (its Euler steps, exactly)."""
    window, step = float(params.presentation / second), float(params.plasticity_step / second)
    return min(1.0, 1 - (1 - float(params.lambda_mirror * second) * step) ** round(window / step))


def twin_mirror_settings(circuit: Circuit, params: RateParameters) -> dict[str, MirrorSettings | None]:
    """Per projection, the settings of the twin's mirror update for one window (see :func:`mirror_statistics`):
    noise of variance C (so E[dB] = eta_mirror T C W, the circuit's), batch round(K) (so the circuit's noise per
    window), learning rate eta_mirror T, and the decay the circuit's Euler steps apply over the window (None where
    C = 0: with noise_tau = dt the error units, a step late, see no correlation, and B only decays)."""
    window = float(params.presentation / second)
    out: dict[str, MirrorSettings | None] = {}
    for proj in circuit.projections:
        source = None if proj.source == circuit.input.name else params.tau_of(proj.source)
        variance, samples = mirror_statistics(params, source)
        out[proj.name] = MirrorSettings(noise_std=math.sqrt(variance),
                                        learning_rate=float(params.eta_mirror * second) * window,
                                        decay=mirror_decay(params), batch_size=max(1, round(samples))) \
            if variance > 1e-12 * float(params.noise_sigma) ** 2 else None
    return out


def _loss(output: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "cross_entropy":
        return F.cross_entropy(output, target)  # target: one-hot rows or a distribution
    return 0.5 * (target - output).pow(2).sum()


def run_twin(circuit: Circuit, weights: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
             params: RateParameters, protocol: Protocol, *, seed: int = 0,
             record_at: Sequence[int] | None = None) -> TwinRun:
    """Run ``protocol`` on the torch network of ``circuit`` starting from ``weights`` (W, b, B per projection,
    float64), one presentation window per step, recording the B-W angles before each window of ``record_at``
    (default: every ``record_every`` windows from 0, and the protocol's length, i.e. the end: where the circuit
    takes its weight snapshots). See the module docstring for the correspondence."""
    check_twin_parameters(params)
    net = network_from_circuit(circuit, seed=seed).double()
    layers: dict[str, FeedbackLayer] = {}
    with torch.no_grad():
        for name, (w, b, fb) in weights.items():
            layer = getattr(net, name)
            layer.weight.copy_(torch.from_numpy(np.asarray(w, dtype=float)))
            layer.bias.copy_(torch.from_numpy(np.asarray(b, dtype=float)))
            layer.bias.requires_grad_(False)  # the circuit's biases are constants
            if layer.rule.stores_feedback and not layer.sends_direct:  # (D: the same seed, the same draw)
                layer.feedback_weight.copy_(torch.from_numpy(np.asarray(fb, dtype=float)))
            layers[name] = layer
    lr, weight_decay = twin_learning_rate(params)
    optimizer = torch.optim.SGD([m.weight for m in layers.values()], lr=lr, weight_decay=weight_decay)
    kp = FeedbackOptimizer(net, optimizer, hook=False)
    mirrored = {name: m for name, m in layers.items() if m.rule.name == "wm"}
    if mirrored and protocol.mirror.any() and float(params.lambda_mirror) == 0:
        raise ConfigError("brian2.twin: the torch twin's mirror needs a bound, brian2.lambda_mirror > 0")
    mirror = twin_mirror_settings(circuit, params)
    record = sorted(set(range(0, protocol.steps, params.record_every)) | {protocol.steps} if record_at is None
                    else {int(k) for k in record_at})
    if record and not 0 <= record[0] <= record[-1] <= protocol.steps:
        raise ValueError(f"record_at must lie in [0, {protocol.steps}], got {record[0]}..{record[-1]}")
    angles: dict[str, list[float]] = {name: [] for name in layers}
    generator = torch.Generator().manual_seed(seed)
    stimulus = torch.from_numpy(np.asarray(protocol.stimulus, dtype=float))
    target = torch.from_numpy(np.asarray(protocol.target, dtype=float))
    outputs = np.zeros_like(protocol.target, dtype=float)
    phase_angles: dict[str, dict[str, float]] = {}
    recording = iter(record + [-1])
    due = next(recording)
    for k in range(protocol.steps + 1):
        if k == due:
            for name, value in _angles(layers).items():
                angles[name].append(value)
            due = next(recording)
        if k == protocol.steps:
            break
        if k and protocol.phase[k] != protocol.phase[k - 1]:
            phase_angles[str(protocol.phase[k - 1])] = _angles(layers)
        x, t = stimulus[k:k + 1], target[k:k + 1]
        if protocol.mirror[k]:  # spontaneous activity: the wm synapses learn, nothing else does
            for name, layer in mirrored.items():
                settings = mirror[name]
                if settings is None:
                    with torch.no_grad():
                        layer.feedback_weight.mul_(1 - mirror_decay(params))
                else:
                    mirror_update(layer, settings, generator=generator)
        elif protocol.learn_w[k]:
            optimizer.zero_grad(set_to_none=True)
            _loss(net(x), t, params.loss).backward()
            optimizer.step()
            if protocol.learn_b[k]:
                kp.step()
        if protocol.labels[k] >= 0:
            with torch.no_grad():
                outputs[k] = net(x)[0].numpy()
    def scored(blocks: list[tuple[int, int, int]]) -> list[tuple[float, float]]:
        rows = [protocol.answer_steps(start, end) for start, end, _ in blocks]
        return [readout_scores(outputs[at], protocol.labels[at], protocol.target[at], params.loss) for at in rows]

    scores, val_scores = scored(protocol.test_blocks), scored(protocol.val_blocks)
    final = {name: (m.weight.detach().numpy().copy(), m.current_feedback().detach().numpy().copy())
             for name, m in layers.items()}
    phase_angles[str(protocol.phase[-1])] = _angles(layers)
    return TwinRun(final, [a for a, _ in scores], [loss for _, loss in scores], phase_angles,
                   [a for a, _ in val_scores], [loss for _, loss in val_scores], record, angles)


def _angles(layers: Mapping[str, FeedbackLayer]) -> dict[str, float]:
    out = {}
    for name, m in layers.items():
        if m.sends_direct:  # no B of W's shape to compare
            out[name] = math.nan
            continue
        b = m.current_feedback().detach()
        out[name] = angle_degrees(b, m.weight.detach()) if bool(b.any()) else math.nan
    return out
