"""A hand-written numpy Euler loop of the rate circuit's mirror-phase equations (the benchmark's reference).

Same state, same equations, same time step as :class:`~neurocircuit.brian.network.RateCircuit` in a mirror phase
(see its module docstring), with dense matrices: per step every population's OU noise, forward activity, synaptic
drive W y, error activity, feedback drive B^T delta and the Hebbian wm update of B.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["mirror_loop"]


def mirror_loop(weights: Sequence[np.ndarray], feedback: Sequence[np.ndarray], *, steps: int, dt: float, tau: float,
                tau_feedback: float, noise_tau: float, noise_sigma: float, eta: float, decay: float,
                plasticity_every: int = 1, seed: int = 0) -> list[np.ndarray]:
    """Run ``steps`` Euler steps (times in seconds, rates in 1/s), B's plasticity every ``plasticity_every`` of them
    (an Euler step of that length); returns the final B matrices (W's layout)."""
    rng = np.random.default_rng(seed)
    sizes = [weights[0].shape[1]] + [w.shape[0] for w in weights]
    noise = [np.zeros(n) for n in sizes]
    y = [np.zeros(n) for n in sizes]
    delta = [np.zeros(n) for n in sizes]
    b = [f.copy() for f in feedback]
    a_noise = dt / noise_tau
    s_noise = noise_sigma * math.sqrt(2 * dt / noise_tau)
    for step in range(steps):
        for n in noise:
            n += -a_noise * n + s_noise * rng.standard_normal(n.shape)
        y[0] = noise[0].copy()
        # No feedback drive B^T delta: error units do not read it in the mirror phase (the circuit skips it too).
        drives = [w @ y[k] for k, w in enumerate(weights)]
        for k in range(1, len(sizes)):
            y[k] += dt / tau * (-y[k] + noise[k])
            delta[k] += dt / tau_feedback * (-delta[k] + drives[k - 1])
        if step % plasticity_every == 0:
            for k, bk in enumerate(b):
                bk += plasticity_every * dt * (eta * np.outer(delta[k + 1], y[k]) - decay * bk)
    return b
