"""Cost of a weight-mirror training step, its interleaved mirroring included, relative to a BP step.

    python benchmarks/mirror_cost.py [SIMULATION] [--arm wm] [--rounds 20] [--steps 20] [--set KEY=VALUE ...]
    python benchmarks/mirror_cost.py --rounds 1 --steps 2      # smallest (smoke test)

Reads the model, batch size, optimizer and the mirror schedule of the arm from the simulation file (default:
rules_fashion_mnist), then times, in interleaved rounds on random data: plain autograd, the bp rule, fa, and the
arm with its mirror steps every ``mirror_every`` training steps (amortised per training step).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, not an installed one
from neurocircuit.errors import ConfigError, NeurocircuitError
from neurocircuit.nn import FeedbackOptimizer
from neurocircuit.phases import EngagedPhase
from neurocircuit.registry import load_circuit
from neurocircuit.simulation import load_simulation
from neurocircuit.torch.nn.circuit_network import network_from_circuit
from neurocircuit.torch.nn.mirror import mirror_step
from neurocircuit.torch.optim import make_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("simulation", nargs="?", default="rules_fashion_mnist")
    parser.add_argument("--arm", default="wm")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=20, help="training steps per arm per round")
    parser.add_argument("--set", action="append", default=[], dest="settings", metavar="KEY=VALUE",
                        help="change a setting of the simulation, as `neurocircuit run --set` does (repeatable)")
    args = parser.parse_args()
    try:
        for name in ("rounds", "steps"):
            if getattr(args, name) < 1:
                raise ConfigError(f"--{name} must be at least 1, got {getattr(args, name)}")
        sim = load_simulation(args.simulation, args.settings)
        spec = sim.arm(args.arm)
    except NeurocircuitError as exc:  # a bad name or setting: one line and exit code 2, as the CLI does
        print(f"error: {exc.args[0] if exc.args else exc}".replace("\n", " "), file=sys.stderr)
        sys.exit(2)
    engaged = sim.schedule_for(spec).engaged or EngagedPhase()
    settings = {k: v for k, v in sim.optimizer.items() if k != "name"}
    circuit = load_circuit(sim.model, rule=spec.rule, overrides=spec.overrides, options=spec.options)
    x = torch.randn(sim.train.batch_size, *circuit.input.shape)
    y = torch.randint(0, circuit.output.size, (sim.train.batch_size,))

    arms = {}
    for name, rule in (("bp", "bp"), ("fa", "fa"), (args.arm, spec.rule)):
        model = network_from_circuit(circuit.with_rules(rule), seed=0)
        opt = make_optimizer(model.parameters(), sim.optimizer["name"], **settings)
        FeedbackOptimizer(model, opt)
        arms[name] = (model, opt, name == args.arm)
    generator = torch.Generator().manual_seed(0)

    def run(name: str) -> float:
        model, opt, mirrored = arms[name]
        t0 = time.perf_counter()
        for step in range(1, args.steps + 1):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if mirrored and engaged.mirror_every and step % engaged.mirror_every == 0:
                for _ in range(engaged.mirror_steps):
                    mirror_step(model, sim.mirror, generator=generator)
        return (time.perf_counter() - t0) / args.steps

    for name in arms:
        run(name)
    times = {name: [] for name in arms}
    for _ in range(args.rounds):
        for name in arms:
            times[name].append(run(name))
    ref = statistics.median(times["bp"])
    print(f"{sim.name}: {circuit.name}, batch {sim.train.batch_size}, {args.arm} mirrors every "
          f"{engaged.mirror_every} step(s) x {engaged.mirror_steps} (noise batch {sim.mirror.batch_size}, "
          f"active_units {sim.mirror.active_units}), cpu x{torch.get_num_threads()}")
    print(f"{'arm':<8} {'ms/step':>8} {'÷ bp':>6}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<8} {1e3 * med:8.3f} {med / ref:6.3f}")


if __name__ == "__main__":
    main()
