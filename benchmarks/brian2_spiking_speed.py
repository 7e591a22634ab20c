"""Simulated seconds per wall second of the spiking variant learning digits, Poisson and LIF units, on Brian2's cython
target and on ``cpp_standalone``, beside the rate circuit on the same protocol — all in this one run.

    python benchmarks/brian2_spiking_speed.py [--samples 100] [--repeats 2] [--epoch]
    python benchmarks/brian2_spiking_speed.py --samples 2 --repeats 1 --devices numpy   # smallest (nothing to compile)

The protocol is ``simulations/brian2_learning_spiking.toml``'s (mlp_digits, fa, 100 ms windows, plasticity after
50 ms, rate_max 400 Hz): ``--samples`` training presentations, then a test block of a quarter as many. Every network is
built first: cython runs its first window to generate and compile its code objects (``build``, not in the rate);
cpp_standalone builds and runs its program once (``build``: code generation, compilation and Brian2's work around
that first run), then the same binary is rerun. Then ``--repeats`` rounds time every loop once, in an order rotated
from round to round (this machine's speed drifts); each rate is the best of the rounds and the ratio spiking / rate
circuit is taken within a round (median and range over rounds). ``--epoch`` also runs one whole epoch of the
simulation file's wm-free arm (fa, LIF, cpp_standalone) through the library and prints its wall time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, not an installed one
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: standalone_program, also when loaded by path
from brian2 import second
from standalone_program import BuiltProgram

from neurocircuit.brian import RateCircuit, RateParameters, SpikingParameters, brian_device, build_protocol
from neurocircuit.brian.backend import initial_weights
from neurocircuit.brian.spiking import SpikingCircuit
from neurocircuit.data import load_digits
from neurocircuit.phases import EngagedPhase
from neurocircuit.registry import load_circuit

PARAMS = dict(dt="0.5 ms", presentation="100 ms", settle="50 ms", eta_w="0.8 Hz", lambda_w="0.02 Hz",
              record_every=100, record_dt="20 ms")
SPIKING = dict(rate_max="400 Hz", tau_synapse="10 ms", tau_trace="10 ms")


def protocol(samples: int, epochs: int = 1) -> object:
    """``samples`` training presentations and a test block of a quarter as many, ``epochs`` times, one blank end."""
    train, test, _ = load_digits(train_samples=samples, test_samples=max(1, samples // 4))

    def arrays(ds: object) -> tuple[np.ndarray, np.ndarray]:
        return ds.tensors[0].numpy().reshape(len(ds), -1).astype(float), ds.tensors[1].numpy()

    return build_protocol([EngagedPhase(epochs=epochs)], n_in=64, n_out=10, train=arrays(train), test=arrays(test))


def network(kind: str, params: RateParameters, proto: object) -> object:
    circuit = load_circuit("mlp_digits", rule="fa")
    if kind == "rate":  # the spiking circuit's twin: tau = tau_feedback = tau_synapse
        return RateCircuit(circuit, initial_weights(circuit, 0), params, proto)
    return SpikingCircuit(circuit, initial_weights(circuit, 0), params,
                          SpikingParameters(neuron=kind, **SPIKING), proto)


class Runtime:
    """A network on the runtime device (``target`` numpy or cython) over ``repeats`` copies of the protocol: its first
    window generates (and compiles) the code (``build``); each :meth:`rate` runs one more copy (the same work)."""

    def __init__(self, kind: str, samples: int, repeats: int, target: str) -> None:
        self.params = RateParameters(**PARAMS, **({"tau": "10 ms", "tau_feedback": "10 ms"} if kind == "rate" else {}),
                                     target=target)
        with brian_device(self.params):
            self.net = network(kind, self.params, protocol(samples, epochs=repeats))
            self.seconds = (self.net.protocol.steps - 1) / repeats * float(self.params.presentation)
            t0 = time.perf_counter()
            self.net.run(self.params.presentation)
            self.build = time.perf_counter() - t0

    def rate(self) -> float:
        with brian_device(self.params):
            t0 = time.perf_counter()
            self.net.run(self.seconds * second)
            return self.seconds / (time.perf_counter() - t0)


class Standalone:
    """A network built once as a ``cpp_standalone`` program, then its binary rerun."""

    def __init__(self, kind: str, samples: int) -> None:
        params = RateParameters(**PARAMS, **({"tau": "10 ms", "tau_feedback": "10 ms"} if kind == "rate" else {}),
                                device="cpp_standalone")
        with brian_device(params, directory=tempfile.mkdtemp(prefix="nc_spiking_bench_")):
            net = network(kind, params, protocol(samples))
            self.seconds = float(net.duration)
            t0 = time.perf_counter()
            net.run()
            self.program = BuiltProgram()
            self.build = time.perf_counter() - t0 - self.program.first
            self.first = self.seconds / self.program.first

    def rate(self) -> float:
        return self.seconds / self.program.seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100, help="training presentations per timed run")
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds")
    parser.add_argument("--devices", default="cython,cpp_standalone",
                        help="comma-separated: numpy, cython (runtime device targets), cpp_standalone")
    parser.add_argument("--epoch", action="store_true", help="also time one epoch of brian2_learning_spiking's fa")
    args = parser.parse_args()
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    unknown = set(devices) - {"numpy", "cython", "cpp_standalone"}
    if unknown or args.samples < 1 or args.repeats < 1:
        parser.error(f"unknown devices {sorted(unknown)}" if unknown else "--samples and --repeats must be >= 1")
    kinds = ("rate", "poisson", "lif")
    loops: dict[tuple[str, str], object] = {}
    for device in devices:
        for kind in kinds:
            loops[kind, device] = Standalone(kind, args.samples) if device == "cpp_standalone" \
                else Runtime(kind, args.samples, args.repeats, device)
    seconds = next(iter(loops.values())).seconds
    print(f"mlp_digits, fa, {args.samples} training + {max(1, args.samples // 4)} test presentations of 100 ms "
          f"({seconds:.1f} s simulated), {args.repeats} round(s)")
    rates: dict[tuple[str, str], list[float]] = {key: [] for key in loops}
    order = list(loops)
    for round_ in range(args.repeats):
        for key in order[round_ % len(order):] + order[:round_ % len(order)]:
            rates[key].append(loops[key].rate())
    print(f"{'circuit/device':<26}{'sim s / wall s':>16}{'build s':>10}{'÷ rate circuit (median, range)':>34}")
    for (kind, device), values in rates.items():
        ratio = np.asarray(values) / np.asarray(rates["rate", device])
        spread = "" if kind == "rate" else f"{np.median(ratio):.3f} ({ratio.min():.3f}-{ratio.max():.3f})"
        print(f"{kind + '/' + device:<26}{max(values):>16.3f}{loops[kind, device].build:>10.1f}{spread:>34}")
    if args.epoch:
        from neurocircuit.runs import run_simulation
        from neurocircuit.simulation import load_simulation

        sim = load_simulation("brian2_learning_spiking", ['arms=["fa"]', "brian2.twin=false"])
        t0 = time.perf_counter()
        run_simulation(sim, progress=False)
        print(f"one epoch of brian2_learning_spiking, arm fa (LIF, cpp_standalone, build included): "
              f"{time.perf_counter() - t0:.1f} s wall")


if __name__ == "__main__":
    main()
