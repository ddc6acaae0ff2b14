"""Speed targets of the MuJoCo families of issue 4, as same-run ratios against their Gymnasium base.

Run with ``make bench``. Targets: steps/s >= 1.0x the Gymnasium env each family is built on (both
made with gym.make, so both carry the same wrappers; random actions, resetting when an episode ends;
random-dynamics families on their nominal task, whose model is Gymnasium's). ``set_task`` costs are
in bench_set_task.py; HalfCheetahVel-v0 against HalfCheetah-v5 is in bench_core.py.
"""

from __future__ import annotations

import gymnasium as gym
import pytest

from .conftest import env_stepper, interleaved_rates, report

PAIRS = [
    ("metabench/HalfCheetahDir-v0", "HalfCheetah-v5"),
    ("metabench/HalfCheetahDirNonStationary-v0", "HalfCheetah-v5"),
    ("metabench/AntDir-v0", "Ant-v5"),
    ("metabench/AntGoal-v0", "Ant-v5"),
    ("metabench/AntDirNonStationary-v0", "Ant-v5"),
    ("metabench/HalfCheetahRandParams-v0", "HalfCheetah-v5"),
    ("metabench/HopperRandParams-v0", "Hopper-v5"),
    ("metabench/Walker2dRandParams-v0", "Walker2d-v5"),
]
N = 1000


@pytest.mark.parametrize(("env_id", "gym_id"), PAIRS, ids=[p[0].split("/")[1] for p in PAIRS])
def test_steps_vs_gymnasium(benchmark, env_id: str, gym_id: str) -> None:
    ours, ref = gym.make(env_id), gym.make(gym_id)
    extra = {}
    if "RandParams" in env_id:
        # A random-dynamics task changes the physics' own cost (heavier or stickier bodies need more
        # solver iterations), which is no cost of the env: the ratio is taken on the nominal task,
        # whose model is Gymnasium's; the ratio over train tasks is reported beside it.
        drawn = interleaved_rates({"ours": env_stepper(ours, N), "gymnasium": env_stepper(ref, N)}, N)
        extra["ratio_over_train_tasks"] = drawn["ours"] / drawn["gymnasium"]
        fam = ours.unwrapped.family
        ours.unwrapped.set_task(fam.make_task(env_id, {n: (0.0,) * p.size for n, p in fam.params.items()}))
    rates = interleaved_rates({"ours": env_stepper(ours, N), "gymnasium": env_stepper(ref, N)}, N)
    ratio = rates["ours"] / rates["gymnasium"]
    report(
        benchmark,
        ours_steps_per_s=rates["ours"],
        gymnasium_steps_per_s=rates["gymnasium"],
        ratio_vs_gymnasium=ratio,
        **extra,
    )
    benchmark.pedantic(env_stepper(ours, N), rounds=3, iterations=1)
    assert ratio >= 1.0, f"{env_id} runs at {ratio:.2f}x {gym_id} (target >= 1.0x)"
