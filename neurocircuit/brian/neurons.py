"""The spiking variant's neuron models: how a unit turns the activity ``a`` in [-1, 1] it carries into spikes at rate
``r0 (1 + a)`` (``r0 = rate_max / 2``), as Brian2 equations.

Both models read ``a`` (a variable of the group's equations) and keep a spike trace ``x`` (``tau_trace dx/dt = -x``,
``x += 1 / tau_trace`` per spike: its mean is the firing rate), from which other units and the plasticity read the
activity back as ``x / r0 - 1``.

- ``poisson`` (linear-nonlinear-Poisson): a spike in each step with probability ``rate dt``.
- ``lif`` (leaky integrate-and-fire): ``tau_m dv/dt = v_inf - v`` between spikes, a spike when ``v`` crosses the
  threshold, then ``v = reset`` held for the refractory period. From reset, ``v`` reaches the threshold after
  ``T = tau ln((v_inf - reset) / (v_inf - threshold))``, so a unit should fire at ``rate`` when
  ``v_inf = (threshold - reset k) / (1 - k)``, ``k = exp(-T / tau)``, ``T = 1 / rate - refractory`` — the inverse of
  its f-I curve. Two corrections make it exact for the simulated unit, not only for the continuous one: the Euler
  step decays ``v`` by ``1 - dt / tau_m`` per step, so ``tau = -dt / ln(1 - dt / tau_m)``; and time is counted in
  steps: after a spike ``v`` is held for ``floor(refractory / dt) - 1`` steps (the spike's own step is the first of
  the refractory period), then integrates until the first step that ends above threshold, on average half a step
  after the continuous crossing. So ``T = 1 / rate - held - dt / 2``, with ``held`` the steps held times dt.
  Rates whose ``T`` exceeds about ``tau ln((threshold - reset) / (eps |threshold|))`` come out as silence (``v_inf``
  then lies within an Euler step's round-off of the threshold; docs/brian2.md works the defaults out).
"""

from __future__ import annotations

import math
from typing import Any

from brian2 import Hz, Quantity

from .parameters import SpikingParameters

__all__ = ["NeuronModel", "neuron_model"]

_TRACE = "dx/dt = -x / tau_trace : Hz\n"


class NeuronModel(dict):
    """Keyword arguments of a Brian2 ``NeuronGroup`` for the spiking part of a unit (``model`` to append to the
    group's equations, ``threshold``, ``reset``, ``refractory``), plus ``namespace`` (its constants) and
    ``initial`` (state to set once the group exists: name -> value or expression)."""


def neuron_model(spiking: SpikingParameters, dt: Quantity) -> NeuronModel:
    """The spiking part of a unit whose equations define ``a`` (its activity) — see the module docstring."""
    r0 = spiking.rate_max / 2
    namespace: dict[str, Any] = {"r0": r0, "tau_trace": spiking.tau_trace}
    model = "rate = r0 * (1 + clip(a, -1, 1)) : Hz\n" + _TRACE
    if spiking.neuron == "poisson":
        return NeuronModel(model=model, threshold="rand() < rate * dt", reset="x += 1 / tau_trace", refractory=False,
                           namespace=namespace, initial={"x": r0})
    tau_m = spiking.tau_membrane
    tau_eff = -dt / math.log(1 - float(dt / tau_m))  # the Euler step's own decay time
    held = max(0, math.floor(float(spiking.refractory / dt) + 1e-6) - 1) * dt  # Brian2 counts whole steps
    namespace.update(tau_m=tau_m, tau_eff=tau_eff, v_threshold=spiking.threshold, v_reset=spiking.reset,
                     t_ref=spiking.refractory, offset=held + dt / 2, rate_floor=1e-3 * Hz,
                     # rate_max < 1 / (refractory + dt) keeps T >= dt / 2: the clip only guards the expression
                     shortest=dt / 4)
    model += ("period = clip(1 / (rate + rate_floor) - offset, shortest, 1e9 * second) : second\n"
              "k_period = exp(-period / tau_eff) : 1\n"
              "v_inf = (v_threshold - v_reset * k_period) / (1 - k_period) : volt\n"
              "dv/dt = (v_inf - v) / tau_m : volt (unless refractory)\n")
    # Start every unit at a random phase of its cycle, so units at the same rate do not fire in lockstep.
    return NeuronModel(model=model, threshold="v > v_threshold", reset="v = v_reset\nx += 1 / tau_trace",
                       refractory="t_ref", namespace=namespace,
                       initial={"x": r0, "v": "v_reset + rand() * (v_threshold - v_reset)"})

