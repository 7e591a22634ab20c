"""Simulated seconds per wall second of the Brian2 mirror phase, against a hand-written numpy Euler loop.

    python benchmarks/brian2_mirror_speed.py [--seconds 2] [--models mlp_digits,mlp_784_256_10]

For each circuit (64-100-10 and 784-256-10 by default) the same mirror phase runs on Brian2's runtime device with
the numpy and cython targets, on ``cpp_standalone``, and as ``neurocircuit.brian.reference.mirror_loop`` (the same
equations in plain numpy), all in this one run. Wall times exclude code generation/compilation (each device runs a
short warm-up first) and include the whole ``Network.run`` (monitors of the weights every second).
"""

from __future__ import annotations

import argparse
import tempfile
import time

from brian2 import ms

from neurocircuit.brian import RateCircuit, RateParameters, brian_device, build_protocol
from neurocircuit.brian.backend import initial_weights
from neurocircuit.brian.reference import mirror_loop
from neurocircuit.phases import MirrorPhase
from neurocircuit.registry import load_model

PARAMS = dict(dt=0.5 * ms, tau=2 * ms, tau_feedback=2 * ms, presentation=40 * ms, settle=30 * ms, noise_tau=1 * ms,
              eta_mirror="0.3 Hz", lambda_mirror="0.3 Hz", record_every=25, record_dt=10 * ms, record_neurons=5)


def brian_rate(model: str, seconds: float, device: str, target: str) -> float:
    """Simulated s / wall s of one Network.run (after a warm-up run that compiles the code)."""
    circuit = load_model(model, rule="wm")
    weights = initial_weights(circuit, 0)
    steps = int(round(seconds / 0.040))
    n_in, n_out = circuit.input.size, circuit.output.size
    params = RateParameters(**PARAMS, device=device, target=target)
    if device == "cpp_standalone":
        # One build: code generation and compilation happen in run(); time the binary from Brian2's own profile.
        with brian_device(params, directory=tempfile.mkdtemp(prefix="nc_bench_")):
            protocol = build_protocol([MirrorPhase(steps=steps)], n_in=n_in, n_out=n_out)
            net = RateCircuit(circuit, weights, params, protocol)
            net.run()
            import brian2

            run_time = brian2.device._last_run_time
        return seconds / run_time
    with brian_device(params):
        # The same protocol length, so the cython target compiles here and reuses its cache below.
        warm = RateCircuit(circuit, weights, params, build_protocol([MirrorPhase(steps=steps)], n_in=n_in,
                                                                    n_out=n_out))
        warm.run(10 * ms)
        net = RateCircuit(circuit, weights, params, build_protocol([MirrorPhase(steps=steps)], n_in=n_in, n_out=n_out))
        t0 = time.perf_counter()
        net.run()
        return seconds / (time.perf_counter() - t0)


def hand_rate(model: str, seconds: float) -> float:
    circuit = load_model(model, rule="wm")
    weights = initial_weights(circuit, 0)
    names = [p.name for p in circuit.projections]
    w = [weights[n][0] for n in names]
    b = [weights[n][2] for n in names]
    dt = 0.5e-3
    t0 = time.perf_counter()
    mirror_loop(w, b, steps=int(round(seconds / dt)), dt=dt, tau=2e-3, tau_feedback=2e-3, noise_tau=1e-3,
                noise_sigma=1.0, eta=0.3, decay=0.3)
    return seconds / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="simulated seconds per measurement")
    parser.add_argument("--models", default="mlp_digits,mlp_784_256_10")
    args = parser.parse_args()
    print(f"mirror phase, dt 0.5 ms, {args.seconds} s simulated; simulated seconds per wall second")
    print(f"{'circuit':<16} {'hand numpy':>11} {'numpy':>8} {'cython':>8} {'standalone':>11} "
          f"{'numpy/hand':>11} {'cython/hand':>12} {'standalone/hand':>16}")
    for model in args.models.split(","):
        hand = hand_rate(model, args.seconds)
        numpy_rate = brian_rate(model, args.seconds, "runtime", "numpy")
        cython_rate = brian_rate(model, args.seconds, "runtime", "cython")
        standalone = brian_rate(model, args.seconds, "cpp_standalone", "numpy")
        print(f"{model:<16} {hand:11.3f} {numpy_rate:8.3f} {cython_rate:8.3f} {standalone:11.3f} "
              f"{numpy_rate / hand:11.2f} {cython_rate / hand:12.2f} {standalone / hand:16.2f}", flush=True)


if __name__ == "__main__":
    main()
