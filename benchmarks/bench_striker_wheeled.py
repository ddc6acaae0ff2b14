"""StrikerDynamics-v0 and WheeledNav-v0 (issue 4): steps/s against raw MuJoCo.

Neither family has a Gymnasium counterpart, so each env is compared, in the same run and timed in
alternation, with the bare loop it wraps on the same compiled model: ``data.ctrl[:] = a;
mj_step(model, data, nstep=frame_skip)`` with the same actions. The ratios (env steps/s over raw-loop
steps/s), for the env as ``gym.make`` returns it and for the unwrapped env, are the price of the Python
around the physics (action check, observation, reward, info, wrappers); they go into
``benchmark.extra_info`` and are printed. ``set_task`` costs are in bench_set_task.py.

Run with ``make bench``.
"""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
import pytest

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
