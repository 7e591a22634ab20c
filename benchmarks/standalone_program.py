"""The ``cpp_standalone`` program Brian2 just built and ran, captured so a benchmark can rerun it as built (same
program, same initial state) and time the binary alone — shared by the Brian2 speed benchmarks."""

from __future__ import annotations

import os
import subprocess
import time


class BuiltProgram:
    """Capture, right after a standalone ``Network.run`` (inside the device's context), how Brian2 ran its binary:
    the command (``run_cmd_unix`` plus the results folder), the project folder and the environment (LD_BIND_NOW
    by default). ``first`` is Brian2's own ``run_binary`` timer of that run."""

    def __init__(self) -> None:
        import brian2

        command = brian2.prefs.devices.cpp_standalone.run_cmd_unix  # "./main" or a list, as Brian2 runs it
        self.command = [*([command] if isinstance(command, str) else command), "--results_dir",
                        brian2.device.results_dir]
        self.directory = brian2.device.project_dir
        self.environment = {**os.environ, **brian2.prefs.devices.cpp_standalone.run_environment_variables,
                            **brian2.device.run_environment_variables}
        self.first = float(brian2.device.timers["run_binary"])

    def seconds(self) -> float:
        """Wall seconds of one more run of the binary."""
        t0 = time.perf_counter()
        subprocess.run(self.command, cwd=self.directory, env=self.environment, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0
