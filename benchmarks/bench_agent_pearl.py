"""PEARL's meta-training throughput against Stable-Baselines3's SAC, measured in the same run.

Both learn on metabench/PointNav-v0 for the same number of env steps with the same update-to-data
ratio and the same amount of data per gradient step:

* networks: two hidden layers of 64 units for every network (PEARL's encoder too);
* 1,600 env steps of initial data without updates (PEARL: one episode per train task, 80 tasks;
  SAC: ``learning_starts=1600``), then one gradient step per env step (PEARL: 200 steps collected per
  iteration, then 200 gradient steps; SAC: ``train_freq=1, gradient_steps=1``);
* 256 transitions per gradient step (PEARL: a meta-batch of 16 tasks x 16; SAC: ``batch_size=256``).

PEARL's gradient step does more (a context encoder, a V-function and its target, sampling per task),
so a ratio below 1 is expected. Rates are medians of runs timed in alternation in one process (the
machine is shared: the ratio is the result, not the absolute rates); they go to ``extra_info``.

Run with ``make bench`` or ``.venv/bin/pytest benchmarks/bench_agent_pearl.py -p no:xdist
--benchmark-enable --benchmark-only -s``.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import torch
from stable_baselines3 import SAC

import metabench
from metabench.agents import pearl
from metabench.protocol import Budget, build_config

from .conftest import interleaved_rates, report

ENV_ID = "metabench/PointNav-v0"
ENV_STEPS = 4_000
INITIAL = 1_600
ROUNDS = 3


class _NullLogger:
    def log(self, env_steps: int, **scalars: float) -> None:
        pass


def _pearl_config() -> pearl.Config:
    return dataclasses.replace(
        build_config(pearl, "ci"),
        hidden_sizes=(64, 64),
        encoder_hidden_sizes=(64, 64),
        num_initial_steps=20,  # x 80 train tasks = INITIAL
        num_tasks_sample=5,
        num_steps_prior=20,
        num_extra_rl_steps_posterior=20,
        num_train_steps_per_itr=200,  # = env steps per iteration: one update per env step
        num_iterations=10_000,  # the budget ends it
        meta_batch=16,
        batch_size=16,
        embedding_batch_size=16,
    )


def _train_pearl(seed: int) -> int:
    agent = pearl.make_agent(_pearl_config())
    agent.meta_train(
        lambda: gym.make(ENV_ID),
        metabench.tasks(ENV_ID, "train"),
        Budget(ENV_STEPS),
        seed=seed,
        log=_NullLogger(),
    )
    return int(agent.stats["env_steps"])


def _train_sac(seed: int) -> int:
    model = SAC(
        "MlpPolicy",
        gym.make(ENV_ID),
        policy_kwargs={"net_arch": [64, 64]},
        batch_size=256,
        learning_starts=INITIAL,
        train_freq=1,
        gradient_steps=1,
        seed=seed,
        device="cpu",
    )
    model.learn(total_timesteps=ENV_STEPS)
    return int(model.num_timesteps)


def test_pearl_training_throughput_vs_sb3_sac(benchmark) -> None:
    torch.set_num_threads(1)
    runs = {"pearl": lambda: _train_pearl(0), "sac": lambda: _train_sac(0)}
    rates = interleaved_rates(runs, ENV_STEPS, rounds=ROUNDS)
    ratio = rates["pearl"] / rates["sac"]
    report(
        benchmark,
        pearl_env_steps_per_s=rates["pearl"],
        sb3_sac_env_steps_per_s=rates["sac"],
        ratio_vs_sb3_sac=ratio,
    )
    steps = benchmark.pedantic(runs["pearl"], rounds=1, iterations=1)
    assert steps == ENV_STEPS  # 1,600 initial + 12 iterations of 200 steps
    assert ratio > 0.25, f"PEARL meta-trains at {ratio:.2f}x SB3 SAC's env steps/s (expected ~0.7x)"
