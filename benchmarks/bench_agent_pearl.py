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

The second benchmark times one gradient step alone, at the ci tier's sizes (64-unit networks, 256
transitions: PEARL's 8 tasks x 32, SAC's batch 256) on buffers filled beforehand: PEARL's
``_Trainer.update`` against SB3 SAC's ``train(gradient_steps=...)``. Measured in one run on this
2-core machine under load (7 rounds of 100 steps), PEARL's step before it was fused (four Adams,
three backward passes) took 1.11x SB3 SAC's; after (two fused Adams, two backward passes, Q frozen
in the policy's Q evaluation) 0.85x, i.e. 0.76x the old step; this benchmark then read 1.01x.

Run with ``make bench`` or ``.venv/bin/pytest benchmarks/bench_agent_pearl.py -p no:xdist
--benchmark-enable --benchmark-only -s``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import gymnasium as gym
import numpy as np
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
        num_iterations=None,  # the budget ends it
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


GRAD_STEPS = 100


def _pearl_grad_steps() -> Callable[[], None]:
    """``GRAD_STEPS`` PEARL gradient steps at the ci tier's sizes, on buffers filled beforehand."""
    config = build_config(pearl, "ci", env_id=ENV_ID)
    agent, env = pearl.make_agent(config), gym.make(ENV_ID)
    gen = torch.Generator().manual_seed(0)
    agent._build(env.observation_space, env.action_space, gen)
    tasks = list(metabench.tasks(ENV_ID, "train"))
    trainer = pearl._Trainer(
        agent, env, tasks, Budget(10**6), np.random.default_rng(0), gen, 20, 0, _NullLogger()
    )
    for i in range(len(tasks)):
        trainer.collect(i, config.num_initial_steps, None, add_to_enc=True)
    ready = np.flatnonzero(trainer.rl_buffer.size > 0)

    def run() -> None:
        for _ in range(GRAD_STEPS):
            trainer.update(trainer.rng.choice(ready, size=config.meta_batch))

    return run


def _sac_grad_steps(hidden: tuple[int, ...], batch: int) -> Callable[[], None]:
    model = SAC("MlpPolicy", gym.make(ENV_ID), policy_kwargs={"net_arch": list(hidden)}, batch_size=batch,
                learning_starts=1_000, seed=0, device="cpu")  # fmt: skip
    model.learn(total_timesteps=1_100)  # fills the buffer (and takes 100 steps)
    return lambda: model.train(gradient_steps=GRAD_STEPS, batch_size=batch)


def test_pearl_gradient_step_vs_sb3_sac(benchmark) -> None:
    """One gradient step, at equal network sizes and batch: PEARL's time over SB3 SAC's."""
    torch.set_num_threads(1)
    config = build_config(pearl, "ci", env_id=ENV_ID)
    assert config.hidden_sizes == config.encoder_hidden_sizes
    batch = config.meta_batch * config.batch_size
    runs = {"pearl": _pearl_grad_steps(), "sac": _sac_grad_steps(config.hidden_sizes, batch)}
    rates = interleaved_rates(runs, GRAD_STEPS, rounds=7)
    ratio = rates["sac"] / rates["pearl"]  # step time ratio
    report(
        benchmark,
        pearl_grad_steps_per_s=rates["pearl"],
        sb3_sac_grad_steps_per_s=rates["sac"],
        pearl_step_time_vs_sb3_sac=ratio,
    )
    benchmark.pedantic(runs["pearl"], rounds=1, iterations=1)
    assert ratio < 1.5, f"PEARL's gradient step takes {ratio:.2f}x SB3 SAC's (measured ~0.85x)"
