"""Speed of the Bandit, TabularMDP and CartpoleSwingupParams families (issue 4).

Run with ``make bench``. Targets: CartpoleSwingupParams-v0 steps/s at least 1.0x dm_control's own
``suite.load("cartpole", "swingup")`` stepping the same physics with the same actions (measured
interleaved in one run). ``set_task`` costs are in bench_set_task.py.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from .conftest import env_stepper, interleaved_rates, report

CARTPOLE = "metabench/CartpoleSwingupParams-v0"
N = 2000


def dm_control_stepper(n: int, seed: int = 0):
    """dm_control's suite env stepped ``n`` times with pre-drawn actions, reset at episode ends."""
    from dm_control import suite

    env = suite.load("cartpole", "swingup", task_kwargs={"random": seed})
    actions = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(n, 1))
    env.reset()

    def run() -> None:
        for a in actions:
            if env.step(a).last():
                env.reset()

    return run


def test_cartpole_steps_vs_dm_control(benchmark) -> None:
    ours = gym.make(CARTPOLE)  # with gym.make's wrappers (TimeLimit, order and passive checks)
    rates = interleaved_rates({"ours": env_stepper(ours, N), "dm_control": dm_control_stepper(N)}, N)
    ratio = rates["ours"] / rates["dm_control"]
    report(
        benchmark,
        ours_steps_per_s=rates["ours"],
        dm_control_steps_per_s=rates["dm_control"],
        ratio_vs_dm_control=ratio,
    )
    benchmark.pedantic(env_stepper(ours, N), rounds=3, iterations=1)
    assert ratio >= 1.0, (
        f"CartpoleSwingupParams-v0 runs at {ratio:.2f}x dm_control's suite env (target >= 1.0x)"
    )
