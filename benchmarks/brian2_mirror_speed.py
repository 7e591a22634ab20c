"""Simulated seconds per wall second of the Brian2 mirror phase, against a hand-written numpy Euler loop.

    python benchmarks/brian2_mirror_speed.py [--seconds 1 10] [--models mlp_digits,mlp_784_256_10] [--profile]
        [--plasticity-dt "1 ms"] [--repeats 3]
    python benchmarks/brian2_mirror_speed.py --models mlp_digits --seconds 0.04 --repeats 1 --numpy-only   # smallest

``--numpy-only`` times only the hand loop and the runtime device's numpy target (nothing to compile: seconds, where
cython and cpp_standalone take minutes to build their six programs), the ratio numpy ÷ hand taken within each round.

For each circuit (64-100-10 and 784-256-10 by default) the same mirror phase runs on Brian2's runtime device with
the numpy and cython targets, on ``cpp_standalone``, and as ``neurocircuit.brian.reference.mirror_loop`` (the same
equations in plain numpy, plasticity every dt: the reference every ratio divides by), all in this one run. Cython
and cpp_standalone also run with B's plasticity on the slower clock ``--plasticity-dt`` (double, then single
precision); the hand loop with the same plasticity step is printed beside them for context.

Everything is built first; then ``--repeats`` rounds each time every hand loop, cython network and standalone
binary once, in an order rotated from round to round (this machine's speed drifts by tens of per cent over
minutes). The rates are the best of the rounds; each ratio is taken within a round and printed as the median and
range over the rounds. Numpy runs once, on its own. The rates exclude code generation and compilation — on the
runtime device each ``Network.run`` rebuilds its code objects in ``Network.before_run`` (the first time compiling
them, later from the cache) after a full ``gc.collect()``; both are timed separately, subtracted, and printed as
the setup per run; standalone: the whole binary, rerun as built (both of its runs and its array I/O). The first
build is printed separately. The rates include the monitors (weights every second).
"""

from __future__ import annotations

import argparse
import functools
import gc
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from brian2 import ms, profiling_summary

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, not an installed one
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: standalone_program, also when loaded by path

from standalone_program import BuiltProgram

from neurocircuit.brian import RateCircuit, RateParameters, brian_device, build_protocol
from neurocircuit.brian.backend import initial_weights
from neurocircuit.brian.reference import mirror_loop
from neurocircuit.errors import ConfigError, NeurocircuitError
from neurocircuit.phases import MirrorPhase
from neurocircuit.registry import load_circuit

PARAMS = dict(dt=0.5 * ms, tau=2 * ms, tau_feedback=2 * ms, presentation=40 * ms, settle=30 * ms, noise_tau=1 * ms,
              eta_mirror="0.3 Hz", lambda_mirror="0.3 Hz", record_every=25, record_dt=10 * ms, record_neurons=5)


class _TimedCollector:
    """Stands in for the ``gc`` module inside ``brian2.core.network`` while a loop is timed, timing its collections.

    Brian2's ``Network.run`` starts with a full ``gc.collect()``, which visits every object the process tracks
    (0.2-0.5 s per run on this machine with torch loaded, more as the process holds more objects, whatever the
    run's length): a cost per run, like building the code objects, not per simulated second."""

    def __init__(self, spent: list[float]) -> None:
        self.spent = spent

    def collect(self, *args: int) -> int:
        t = time.perf_counter()
        found = gc.collect(*args)
        self.spent.append(time.perf_counter() - t)
        return found

    def __getattr__(self, name: str) -> object:
        return getattr(gc, name)


class RuntimeLoop:
    """A mirror phase on Brian2's runtime device, built once (its first 10 ms run generates and compiles, or loads
    from the cache, every code object: ``build`` seconds) and timed run by run.

    Every ``Network.run`` first collects garbage (a full ``gc.collect()``) and rebuilds its code objects
    (``Network.before_run``: code generation, and compilation or a cache hit for cython); both are timed and kept
    out of the loop's time, and ``setups`` holds their sum for every timed run.
    """

    def __init__(self, model: str, seconds: float, target: str, runs: int, profile: bool = False,
                 **settings: object) -> None:
        circuit = load_circuit(model, rule="wm")
        self.seconds, self.settings = seconds, settings
        self.params = RateParameters(**{**PARAMS, **settings}, device="runtime", target=target)
        self.spent: list[float] = []
        self.setups: list[float] = []
        # Per Network.run with profile: (loop wall s, s inside code objects, time steps, code objects run)
        self.loops: list[tuple[float, float, int, int]] = []
        with brian_device(self.params):
            self.circuit = RateCircuit(circuit, initial_weights(circuit, 0), self.params, build_protocol(
                [MirrorPhase(steps=int(round(seconds / 0.040)) * runs + 1)],
                n_in=circuit.input.size, n_out=circuit.output.size))
            network = self.circuit.network
            before_run, network_run = network.before_run, network.run

            def timed_before_run(*args: object, **kwargs: object) -> None:
                t = time.perf_counter()
                before_run(*args, **kwargs)
                self.spent.append(time.perf_counter() - t)

            def run_network(duration: object, **kw: object) -> None:
                built, t = len(self.spent), time.perf_counter()
                network_run(duration, profile=profile, **kw)
                if profile:
                    info = network.profiling_info
                    self.loops.append((time.perf_counter() - t - sum(self.spent[built:]),
                                       sum(float(s) for _, s in info), int(round(float(duration / self.params.dt))),
                                       len(info)))

            network.before_run = timed_before_run  # type: ignore[method-assign]
            network.run = run_network  # type: ignore[method-assign]
            t0 = time.perf_counter()
            self.circuit.run(10 * ms)  # the first build: code generation and compilation
            self.build = time.perf_counter() - t0
        self.first_timed = len(self.loops)

    def rate(self) -> float:
        """Simulated s per wall s of one run of ``seconds`` (as the backend runs it: the mirror phase without the
        feedback drive), its setup (garbage collection, code objects) left out."""
        import brian2.core.network

        with brian_device(self.params):
            built = len(self.spent)
            brian2.core.network.gc = _TimedCollector(self.spent)  # type: ignore[assignment]
            try:
                t0 = time.perf_counter()
                self.circuit.run(self.seconds * 1000 * ms)
                wall = time.perf_counter() - t0
            finally:
                brian2.core.network.gc = gc
            setup = sum(self.spent[built:])
            self.setups.append(setup)
            return self.seconds / (wall - setup)

    def profile_report(self, model: str) -> str:
        """Brian2's per-code-object profile of the timed runs and the time outside the code objects: Brian2's own
        dispatch (at every time step the runtime device calls each due code object from Python)."""
        wall, inside, steps, objects = (sum(x) for x in zip(*self.loops[self.first_timed:]))
        runs = len(self.loops[self.first_timed:])
        return (f"{model}, {self.params.target}, {self.seconds} s simulated, {self.settings or 'defaults'}:\n"
                f"{profiling_summary(self.circuit.network, show=8)}\n"
                f"timed loops: {wall:.3f} s wall, {inside:.3f} s inside code objects; outside them "
                f"{1e6 * (wall - inside) / steps:.0f} us per time step ({objects / runs:.0f} code objects per "
                f"Network.run)")


class StandaloneBinary:
    """A mirror phase built once as a ``cpp_standalone`` program (``build`` seconds: code generation, compilation
    and Brian2's work around the first run), then timed run by run: the whole binary (both of its runs — the mirror
    windows without the feedback drive, then the last window — and its reading and writing of the arrays), as
    Brian2's own ``run_binary`` timer measures it."""

    def __init__(self, model: str, seconds: float, **settings: object) -> None:
        circuit = load_circuit(model, rule="wm")
        self.seconds = seconds
        params = RateParameters(**{**PARAMS, **settings}, device="cpp_standalone", target="numpy")
        with brian_device(params, directory=tempfile.mkdtemp(prefix="nc_bench_")):
            protocol = build_protocol([MirrorPhase(steps=int(round(seconds / 0.040)))],
                                      n_in=circuit.input.size, n_out=circuit.output.size)
            net = RateCircuit(circuit, initial_weights(circuit, 0), params, protocol)
            t0 = time.perf_counter()
            net.run()
            self.program = BuiltProgram()
            self.build = time.perf_counter() - t0 - self.program.first
            self.first = seconds / self.program.first

    def rate(self) -> float:
        """Simulated s per wall s of one more run of the same binary (same program, same initial state)."""
        return self.seconds / self.program.seconds()


def brian_rate(model: str, seconds: float, device: str, target: str, profile: bool = False, repeats: int = 1,
               **settings: object) -> tuple[float, float]:
    """(simulated s / wall s of the simulation loop, best of ``repeats`` runs; seconds of code generation and
    compilation) of one device and target alone. With ``profile`` (runtime device) also print where the time goes.
    """
    if device == "cpp_standalone":
        binary = StandaloneBinary(model, seconds, **settings)
        return max([binary.first] + [binary.rate() for _ in range(repeats - 1)]), binary.build
    loop = RuntimeLoop(model, seconds, target, repeats, profile=profile, **settings)
    rate = max(loop.rate() for _ in range(repeats))
    if profile:
        print(loop.profile_report(model), flush=True)
    return rate, loop.build


def hand_rate(model: str, seconds: float, plasticity_every: int = 1, repeats: int = 1) -> float:
    """Simulated s per wall s of :func:`~neurocircuit.brian.reference.mirror_loop`, best of ``repeats``."""
    circuit = load_circuit(model, rule="wm")
    weights = initial_weights(circuit, 0)
    names = [p.name for p in circuit.projections]
    w = [weights[n][0] for n in names]
    b = [weights[n][2] for n in names]
    dt = 0.5e-3
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        mirror_loop(w, b, steps=int(round(seconds / dt)), dt=dt, tau=2e-3, tau_feedback=2e-3, noise_tau=1e-3,
                    noise_sigma=1.0, eta=0.3, decay=0.3, plasticity_every=plasticity_every)
        best = max(best, seconds / (time.perf_counter() - t0))
    return best


def interleaved(timers: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Rates of every timer, round by round: each round runs each timer once, in an order rotated from round to
    round, so that the machine's drift over minutes reaches every timer alike and the ratios of one round compare
    runs made moments apart."""
    names = list(timers)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            rates[name].append(timers[name]())
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, nargs="+", default=[1.0, 10.0],
                        help="simulated seconds per measurement (one row each)")
    parser.add_argument("--models", default="mlp_digits,mlp_784_256_10")
    parser.add_argument("--plasticity-dt", default="1 ms",
                        help="B's plasticity clock of the tuned rows (a whole multiple of dt = 0.5 ms)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved rounds: each times the hand loops, cython and standalone once")
    parser.add_argument("--numpy-only", action="store_true",
                        help="only the hand loop and the numpy target, interleaved (no compiled targets)")
    parser.add_argument("--profile", action="store_true",
                        help="also print Brian2's per-code-object profile of each cython run")
    args = parser.parse_args()
    try:
        if args.repeats < 1:
            raise ConfigError(f"--repeats must be at least 1, got {args.repeats}")
        if min(args.seconds) <= 0:
            raise ConfigError(f"--seconds must be positive, got {min(args.seconds)}")
        tuned = RateParameters(**PARAMS, plasticity_dt=args.plasticity_dt)  # checks it as a simulation file's would be
        every = int(round(float(tuned.plasticity_step / tuned.dt)))
        for model in args.models.split(","):
            load_circuit(model, rule="wm")
    except NeurocircuitError as exc:  # bad input: one line, exit 2, before anything runs
        print(f"brian2_mirror_speed.py: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        sys.exit(2)
    if args.numpy_only:
        numpy_only(args.models.split(","), args.seconds, args.repeats)
        return
    print(f"mirror phase, dt 0.5 ms; simulated seconds per wall second of the simulation loop, the best of "
          f"{args.repeats} interleaved rounds (numpy: one run); the ratios divide by the hand loop with plasticity "
          f"every dt of the same round: median [min-max] over the rounds; code generation and compilation excluded, "
          f"shown in seconds as 'build'; so is what Brian2 does at the start of every Network.run (a full garbage "
          f"collection, rebuilding the code objects from the cache): 'setup s/run', median over the cython runs")
    print(f"{'circuit':<16} {'sim s':>6} {'plasticity, precision':>22} {'hand numpy':>11} {'numpy':>8} {'cython':>8} "
          f"{'standalone':>11} {'cython/hand':>18} {'standalone/hand':>18} {'build s (numpy/cython/standalone)':>34} "
          f"{'cython setup s/run':>19}")
    for model in args.models.split(","):
        for seconds in args.seconds:
            numpy_rate, numpy_build = brian_rate(model, seconds, "runtime", "numpy")
            rows = [("every dt, double", {})] + [(f"{args.plasticity_dt}, {precision}",
                                                  {"plasticity_dt": args.plasticity_dt, "precision": precision})
                                                 for precision in ("double", "single")]
            timers: dict[str, Callable[[], float]] = {
                "hand": functools.partial(hand_rate, model, seconds),
                "hand tuned": functools.partial(hand_rate, model, seconds, every)}
            builds = {}
            for label, settings in rows:
                loop = RuntimeLoop(model, seconds, "cython", args.repeats, profile=args.profile, **settings)
                binary = StandaloneBinary(model, seconds, **settings)
                timers[f"cython {label}"], timers[f"standalone {label}"] = loop.rate, binary.rate
                builds[label] = (loop, binary)
            rates = interleaved(timers, args.repeats)
            hand = np.asarray(rates["hand"])
            for index, (label, _) in enumerate(rows):
                loop, binary = builds[label]
                cython, standalone = (np.asarray(rates[f"{kind} {label}"]) for kind in ("cython", "standalone"))
                # the tuned rows print the hand loop with their plasticity step, for context; ratios divide by the
                # hand loop with plasticity every dt
                row_hand = max(rates["hand" if index == 0 else "hand tuned"])
                numpy_text = f"{numpy_rate:8.3f}" if index == 0 else ""
                numpy_build_text = f"{numpy_build:11.1f}" if index == 0 else f"{'':>11}"
                print(f"{model:<16} {seconds:6.2f} {label:>22} {row_hand:11.3f} {numpy_text:>8} {cython.max():8.3f} "
                      f"{standalone.max():11.3f} {_ratio(cython / hand):>18} {_ratio(standalone / hand):>18} "
                      f"{numpy_build_text} /{loop.build:6.1f} /{binary.build:6.1f} {np.median(loop.setups):19.2f}",
                      flush=True)
                if args.profile:
                    print(loop.profile_report(model), flush=True)


def numpy_only(models: list[str], seconds_list: list[float], repeats: int) -> None:
    """The smallest table: the hand loop and Brian2's runtime numpy target (plasticity every dt), interleaved."""
    print(f"mirror phase, dt 0.5 ms, plasticity every dt; simulated seconds per wall second, the best of {repeats} "
          f"interleaved rounds; numpy/hand: median [min-max] over the rounds; code generation ('build') and the "
          f"setup of every Network.run excluded")
    print(f"{'circuit':<16} {'sim s':>6} {'hand numpy':>11} {'numpy':>8} {'numpy/hand':>18} {'build s':>8}")
    for model in models:
        for seconds in seconds_list:
            loop = RuntimeLoop(model, seconds, "numpy", repeats)
            rates = interleaved({"hand": functools.partial(hand_rate, model, seconds), "numpy": loop.rate}, repeats)
            hand, numpy_rates = np.asarray(rates["hand"]), np.asarray(rates["numpy"])
            print(f"{model:<16} {seconds:6.2f} {hand.max():11.3f} {numpy_rates.max():8.3f} "
                  f"{_ratio(numpy_rates / hand):>18} {loop.build:8.1f}", flush=True)


def _ratio(ratios: np.ndarray) -> str:
    return f"{np.median(ratios):.2f} [{ratios.min():.2f}-{ratios.max():.2f}]"


if __name__ == "__main__":
    main()
