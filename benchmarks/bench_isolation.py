"""The cost of ``metabench evaluate --isolate`` (issue 11), as same-run ratios.

Run with ``make bench``. A meta-training env as the harness hands it out in-process
(:class:`metabench.harness.EnvFactory`: counted, train tasks only, public info) against the same env
behind the isolated proxy (:class:`metabench.isolation.IsolatedEnvFactory`: one request and one reply
per step over a socket to the env process), stepped interleaved with the same pre-drawn random
actions. ``wall_ratio`` is the isolated run's wall time over the in-process one's (target <= 1.3x on
MuJoCo families); ``cpu_ratio`` is the CPU time both processes spent over the in-process CPU time:
on a loaded machine the wall ratio also holds the time the two processes wait for a core at every
hand-over, which the CPU ratio leaves out. PointNav's step costs a few microseconds, so its ratio is
the hand-over's cost itself (no target).

Measured on the shared 2-core development machine at a load average of about 11 (four runs,
2026-11-30; ``MUJOCO_GL=disable``): HalfCheetahVel wall 3.0-4.0x, CPU 2.6-3.8x; PointNav wall
5.4-7.3x. The 1.3x target was not met there: the in-process step itself waited for a core two thirds
of its time, and each of the isolated step's two hand-overs waits again. It remains the target for a
machine with a free core per process.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from metabench.harness import EnvFactory, StepCounter
from metabench.isolation import EnvServer, IsolatedEnvFactory
from metabench.protocol import Budget

from .conftest import env_stepper, interleaved_rates, report

CASES = [("metabench/PointNav-v0", None), ("metabench/HalfCheetahVel-v0", 1.3)]
N = 2000
BIG = Budget(10**9)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize(("env_id", "target"), CASES, ids=[c[0].split("/")[1] for c in CASES])
def test_isolated_vs_in_process_steps(benchmark, env_id: str, target: float | None) -> None:
    in_process = EnvFactory(env_id, False, StepCounter(BIG, "ci"))()
    server = EnvServer(env_id, budget=BIG, tier="ci", seed=0, agent="bench")
    try:
        server.begin_training(False)
        isolated = IsolatedEnvFactory(server, StepCounter(BIG, "ci"))()
        runs = {"in_process": env_stepper(in_process, N), "isolated": env_stepper(isolated, N)}
        runs["isolated"]()  # warm both paths up
        runs["in_process"]()
        rates = interleaved_rates(runs, N)
        # CPU time of one more pass of each: this process's, and the env process's for the isolated one
        t0, s0 = time.process_time(), _cpu_seconds(server._proc.pid)
        runs["in_process"]()
        t1 = time.process_time()
        runs["isolated"]()
        t2, s2 = time.process_time(), _cpu_seconds(server._proc.pid)
        wall_ratio = rates["in_process"] / rates["isolated"]
        report(
            benchmark,
            in_process_steps_per_s=rates["in_process"],
            isolated_steps_per_s=rates["isolated"],
            wall_ratio=wall_ratio,
            cpu_ratio=((t2 - t1) + (s2 - s0)) / max(t1 - t0, 1e-9),
        )
        benchmark.pedantic(runs["isolated"], rounds=3, iterations=1)
    finally:
        server.close()
    if target is not None:
        assert wall_ratio <= target, f"{env_id}: isolated steps take {wall_ratio:.2f}x (target <= {target}x)"
