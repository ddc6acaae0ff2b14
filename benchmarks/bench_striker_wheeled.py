"""StrikerDynamics-v0 and WheeledNav-v0 (issue 4): ``set_task`` cost, and steps/s against raw MuJoCo.

Neither family has a Gymnasium counterpart, so each env is compared, in the same run and timed in
alternation, with the bare loop it wraps on the same compiled model: ``data.ctrl[:] = a;
mj_step(model, data, nstep=frame_skip)`` with the same actions. The ratios (env steps/s over raw-loop
steps/s), for the env as ``gym.make`` returns it and for the unwrapped env, are the price of the Python
around the physics (action check, observation, reward, info, wrappers); they go into
``benchmark.extra_info`` and are printed. Target: ``set_task`` under 50 µs.

Run with ``make bench``.
"""

from __future__ import annotations

import time

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import metabench

from .conftest import env_stepper, interleaved_rates, report

ENV_IDS = ["metabench/StrikerDynamics-v0", "metabench/WheeledNav-v0"]
N = 2000


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_steps_vs_raw_mujoco(benchmark, env_id: str) -> None:
    made = gym.make(env_id)
    bare = gym.make(env_id).unwrapped
    model, frame_skip = bare.model, bare.frame_skip
    data = mujoco.MjData(model)
    made.action_space.seed(0)
    actions = [np.asarray(made.action_space.sample(), dtype=np.float64) for _ in range(N)]

    def raw() -> None:
        mujoco.mj_resetData(model, data)
        for a in actions:
            data.ctrl[:] = a
            mujoco.mj_step(model, data, nstep=frame_skip)

    runs = {"made": env_stepper(made, N), "unwrapped": env_stepper(bare, N), "raw": raw}
    rates = interleaved_rates(runs, N)
    report(
        benchmark,
        steps_per_s=rates["made"],
        unwrapped_steps_per_s=rates["unwrapped"],
        raw_mujoco_steps_per_s=rates["raw"],
        ratio_vs_raw=rates["made"] / rates["raw"],
        unwrapped_ratio_vs_raw=rates["unwrapped"] / rates["raw"],
    )
    benchmark.pedantic(env_stepper(made, N), rounds=3, iterations=1)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_set_task_cost(benchmark, env_id: str) -> None:
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    tasks = metabench.tasks(env_id, "train")
    state = {"i": 0}

    def switch() -> None:  # a different task every call, so that every call edits the model
        state["i"] = (state["i"] + 1) % len(tasks)
        env.set_task(tasks[state["i"]])

    benchmark(switch)
    t0 = time.perf_counter()
    for _ in range(20):
        mujoco.MjModel.from_xml_path(env.fullpath)
    reparse = (time.perf_counter() - t0) / 20
    stats = benchmark.stats.stats
    report(
        benchmark,
        set_task_us=stats.mean * 1e6,
        set_task_median_us=stats.median * 1e6,
        xml_reparse_us=reparse * 1e6,
    )
    # The median: on this shared machine the mean also counts other processes' time slices.
    assert stats.median < 50e-6, f"set_task takes {stats.median * 1e6:.1f} µs (target < 50 µs)"
