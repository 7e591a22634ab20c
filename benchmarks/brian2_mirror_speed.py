"""Simulated seconds per wall second of the Brian2 mirror phase, against a hand-written numpy Euler loop.

    python benchmarks/brian2_mirror_speed.py [--seconds 1 10] [--models mlp_digits,mlp_784_256_10] [--profile]
        [--plasticity-dt "1 ms"]

For each circuit (64-100-10 and 784-256-10 by default) the same mirror phase runs on Brian2's runtime device with
the numpy and cython targets, on ``cpp_standalone``, and as ``neurocircuit.brian.reference.mirror_loop`` (the same
equations in plain numpy, plasticity every dt: the reference every ratio divides by), all in this one run. Then
cython and cpp_standalone run again with B's plasticity on the slower clock ``--plasticity-dt`` (double, then
single precision); the hand loop with the same plasticity step is printed beside them for context.

The hand loop and the runtime targets print the best of ``--repeats`` timed runs (numpy once); standalone runs its
binary once. The rates exclude code generation and compilation — on the runtime
device each ``Network.run`` rebuilds its code objects in ``Network.before_run`` (the first time compiling them, later
from the cache), which is timed separately and subtracted; standalone: Brian2's timing of the whole binary. The first
build is printed separately. The rates include the monitors (weights every second).
"""

from __future__ import annotations

import argparse
import tempfile
import time

from brian2 import ms, profiling_summary

from neurocircuit.brian import RateCircuit, RateParameters, brian_device, build_protocol, parse_quantity
from neurocircuit.brian.backend import initial_weights
from neurocircuit.brian.reference import mirror_loop
from neurocircuit.phases import MirrorPhase
from neurocircuit.registry import load_model

PARAMS = dict(dt=0.5 * ms, tau=2 * ms, tau_feedback=2 * ms, presentation=40 * ms, settle=30 * ms, noise_tau=1 * ms,
              eta_mirror="0.3 Hz", lambda_mirror="0.3 Hz", record_every=25, record_dt=10 * ms, record_neurons=5)


def brian_rate(model: str, seconds: float, device: str, target: str, profile: bool = False, repeats: int = 1,
               **settings: object) -> tuple[float, float]:
    """(simulated s / wall s of the simulation loop, seconds of code generation and compilation).

    Runtime device: the network's first ``run`` (10 ms) generates and compiles (or loads from the cache) every code
    object — that run's wall time is the second number — and the timed ``run`` of the same network reuses them.
    cpp_standalone: Brian2's timing of the compiled binary (its runs and its array I/O); the rest of the build
    is the second number.
    """
    circuit = load_model(model, rule="wm")
    weights = initial_weights(circuit, 0)
    steps = int(round(seconds / 0.040))
    n_in, n_out = circuit.input.size, circuit.output.size
    params = RateParameters(**{**PARAMS, **settings}, device=device, target=target)
    if device == "cpp_standalone":
        # One build: code generation and compilation happen in run(); time the binary from Brian2's own profile.
        with brian_device(params, directory=tempfile.mkdtemp(prefix="nc_bench_")):
            protocol = build_protocol([MirrorPhase(steps=steps)], n_in=n_in, n_out=n_out)
            net = RateCircuit(circuit, weights, params, protocol)
            t0 = time.perf_counter()
            net.run()
            total = time.perf_counter() - t0
            import brian2

            # the whole binary: both of its runs (mirror windows without the feedback drive, then the last window)
            # and its reading and writing of the arrays
            run_time = brian2.device.timers["run_binary"]
        return seconds / run_time, total - run_time
    with brian_device(params):
        net = RateCircuit(circuit, weights, params,
                          build_protocol([MirrorPhase(steps=steps * repeats + 1)], n_in=n_in, n_out=n_out))
        # Every Network.run first builds its code objects (Network.before_run: code generation, and compilation or
        # a cache hit for cython); that time is measured by wrapping before_run and kept out of the loop's time.
        before_run = net.network.before_run
        spent: list[float] = []

        def timed_before_run(*args: object, **kwargs: object) -> None:
            t = time.perf_counter()
            before_run(*args, **kwargs)
            spent.append(time.perf_counter() - t)

        net.network.before_run = timed_before_run  # type: ignore[method-assign]
        network_run = net.network.run
        # Per Network.run with --profile: (loop wall s, s inside code objects, time steps, code objects run)
        loops: list[tuple[float, float, int, int]] = []

        def run_network(duration: object, **kw: object) -> None:
            built, t = len(spent), time.perf_counter()
            network_run(duration, profile=profile, **kw)
            if profile:
                info = net.network.profiling_info
                loops.append((time.perf_counter() - t - sum(spent[built:]), sum(float(s) for _, s in info),
                              int(round(float(duration / params.dt))), len(info)))

        net.network.run = run_network  # type: ignore[method-assign]
        t0 = time.perf_counter()
        net.run(10 * ms)  # the first build: code generation and compilation
        build = time.perf_counter() - t0
        rate, timed = 0.0, len(loops)
        for _ in range(repeats):  # the best of the repeats: this machine's load varies from minute to minute
            built = len(spent)
            t0 = time.perf_counter()
            net.run(seconds * 1000 * ms)  # as the backend runs it (in the mirror phase without the feedback drive)
            rate = max(rate, seconds / (time.perf_counter() - t0 - sum(spent[built:])))
        if profile:  # where the loop's time goes, per code object (profiling adds its own overhead to the rate)
            # What the code objects do not account for is Brian2's own dispatch: every time step the runtime
            # device calls each due code object from Python.
            wall, inside, steps_run, objects = (sum(x) for x in zip(*loops[timed:]))
            print(f"{model}, {target}, {seconds} s simulated, {settings or 'defaults'}:\n"
                  f"{profiling_summary(net.network, show=8)}\n"
                  f"timed loops: {wall:.3f} s wall, {inside:.3f} s inside code objects; outside them "
                  f"{1e6 * (wall - inside) / steps_run:.0f} us per time step ({objects / len(loops[timed:]):.0f} "
                  f"code objects per Network.run)", flush=True)
        return rate, build


def hand_rate(model: str, seconds: float, plasticity_every: int = 1, repeats: int = 1) -> float:
    circuit = load_model(model, rule="wm")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, nargs="+", default=[1.0, 10.0],
                        help="simulated seconds per measurement (one row each)")
    parser.add_argument("--models", default="mlp_digits,mlp_784_256_10")
    parser.add_argument("--plasticity-dt", default="1 ms",
                        help="B's plasticity clock of the tuned rows (a whole multiple of dt = 0.5 ms)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs of the hand loop and the runtime targets; the best is printed")
    parser.add_argument("--profile", action="store_true",
                        help="also print Brian2's per-code-object profile of each cython run")
    args = parser.parse_args()
    every = int(round(float(parse_quantity(args.plasticity_dt, dimension=ms, where="--plasticity-dt") / (0.5 * ms))))
    print("mirror phase, dt 0.5 ms; simulated seconds per wall second of the simulation loop (code generation and "
          "compilation excluded, shown in seconds as 'build'); ratios divide by the hand loop with plasticity every dt")
    print(f"{'circuit':<16} {'sim s':>6} {'plasticity, precision':>22} {'hand numpy':>11} {'numpy':>8} {'cython':>8} "
          f"{'standalone':>11} {'cython/hand':>12} {'standalone/hand':>16} {'build s (numpy/cython/standalone)':>34}")
    for model in args.models.split(","):
        for seconds in args.seconds:
            hand = hand_rate(model, seconds, repeats=args.repeats)
            numpy_rate, numpy_build = brian_rate(model, seconds, "runtime", "numpy")
            rows = [("every dt, double", {}, hand, f"{numpy_rate:8.3f}", numpy_build)]
            tuned_hand = hand_rate(model, seconds, every, repeats=args.repeats)
            for precision in ("double", "single"):
                rows.append((f"{args.plasticity_dt}, {precision}",
                             {"plasticity_dt": args.plasticity_dt, "precision": precision}, tuned_hand, "", None))
            for label, settings, row_hand, numpy_text, built in rows:
                cython_rate, cython_build = brian_rate(model, seconds, "runtime", "cython", profile=args.profile,
                                                       repeats=args.repeats, **settings)
                standalone, standalone_build = brian_rate(model, seconds, "cpp_standalone", "numpy", **settings)
                numpy_build_text = f"{built:11.1f}" if built is not None else f"{'':>11}"
                print(f"{model:<16} {seconds:6.1f} {label:>22} {row_hand:11.3f} {numpy_text:>8} {cython_rate:8.3f} "
                      f"{standalone:11.3f} {cython_rate / hand:12.2f} {standalone / hand:16.2f} "
                      f"{numpy_build_text} /{cython_build:6.1f} /{standalone_build:6.1f}", flush=True)


if __name__ == "__main__":
    main()
