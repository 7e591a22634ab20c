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

The mirror phase is a statistical twin only: each window is one :func:`~neurocircuit.nn.mirror.mirror_update`
with learning rate eta_mirror T and decay lambda_mirror T on Gaussian noise of std ``noise_sigma``, with as many
samples as the window holds correlation times (T / (2 noise_tau)); its noise is not the circuit's noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from brian2 import second
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

__all__ = ["TwinRun", "check_twin_parameters", "run_twin", "twin_learning_rate"]


@dataclass
class TwinRun:
    """What the twin ends with: W and B per projection (W's layout), per test block its accuracy and loss, and the
    B-W angle per projection at the end of every phase (keyed by the protocol's phase names, in order), and per
    validation block its accuracy and loss."""

    weights: dict[str, tuple[np.ndarray, np.ndarray]]
    test_accuracy: list[float]
    test_loss: list[float]
    phase_angles: dict[str, dict[str, float]]
    val_accuracy: list[float] = field(default_factory=list)  # per validation block (none without a split)
    val_loss: list[float] = field(default_factory=list)


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


def _loss(output: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "cross_entropy":
        return F.cross_entropy(output, target)  # target: one-hot rows or a distribution
    return 0.5 * (target - output).pow(2).sum()


def run_twin(circuit: Circuit, weights: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
             params: RateParameters, protocol: Protocol, *, seed: int = 0) -> TwinRun:
    """Run ``protocol`` on the torch network of ``circuit`` starting from ``weights`` (W, b, B per projection,
    float64), one presentation window per step. See the module docstring for the correspondence."""
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
    window = float(params.presentation / second)
    mirrored = [m for m in layers.values() if m.rule.name == "wm"]
    if mirrored and protocol.mirror.any() and float(params.lambda_mirror) == 0:
        raise ConfigError("brian2.twin: the torch twin's mirror needs a bound, brian2.lambda_mirror > 0")
    mirror = MirrorSettings(noise_std=float(params.noise_sigma),
                            learning_rate=float(params.eta_mirror * second) * window,
                            decay=min(1.0, float(params.lambda_mirror * second) * window),
                            batch_size=max(1, round(window / (2 * float(params.noise_tau / second)))))
    generator = torch.Generator().manual_seed(seed)
    stimulus = torch.from_numpy(np.asarray(protocol.stimulus, dtype=float))
    target = torch.from_numpy(np.asarray(protocol.target, dtype=float))
    outputs = np.zeros_like(protocol.target, dtype=float)
    phase_angles: dict[str, dict[str, float]] = {}
    for k in range(protocol.steps):
        if k and protocol.phase[k] != protocol.phase[k - 1]:
            phase_angles[str(protocol.phase[k - 1])] = _angles(layers)
        x, t = stimulus[k:k + 1], target[k:k + 1]
        if protocol.mirror[k]:
            for layer in mirrored:
                mirror_update(layer, mirror, generator=generator)
        elif protocol.learn_w[k]:
            optimizer.zero_grad(set_to_none=True)
            _loss(net(x), t, params.loss).backward()
            optimizer.step()
            if protocol.learn_b[k]:
                kp.step()
        if protocol.labels[k] >= 0:
            with torch.no_grad():
                outputs[k] = net(x)[0].numpy()
    scores = [readout_scores(outputs[start:end], protocol.labels[start:end], protocol.target[start:end], params.loss)
              for start, end, _ in protocol.test_blocks]
    val_scores = [readout_scores(outputs[start:end], protocol.labels[start:end], protocol.target[start:end],
                                 params.loss) for start, end, _ in protocol.val_blocks]
    final = {name: (m.weight.detach().numpy().copy(), m.current_feedback().detach().numpy().copy())
             for name, m in layers.items()}
    phase_angles[str(protocol.phase[-1])] = _angles(layers)
    return TwinRun(final, [a for a, _ in scores], [loss for _, loss in scores], phase_angles,
                   [a for a, _ in val_scores], [loss for _, loss in val_scores])


def _angles(layers: Mapping[str, FeedbackLayer]) -> dict[str, float]:
    out = {}
    for name, m in layers.items():
        if m.sends_direct:  # no B of W's shape to compare
            out[name] = math.nan
            continue
        b = m.current_feedback().detach()
        out[name] = angle_degrees(b, m.weight.detach()) if bool(b.any()) else math.nan
    return out
