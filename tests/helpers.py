"""What the agent tests share: the harness's own ``make_env``, a logger that keeps its rows, meta-training
an agent on a small budget, playing one harness trial and a save/load round trip."""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym

import metabench
from metabench.harness import EnvFactory, StepCounter
from metabench.protocol import Budget, Transition, build_config


class RecordingLogger:
    """A :class:`metabench.protocol.Logger` that keeps every ``log`` call as ``(env_steps, scalars)``."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, dict[str, float]]] = []

    def log(self, env_steps: int, **scalars: float) -> None:
        self.rows.append((env_steps, scalars))


def budgeted_env_factory(env_id: str, budget: int, *, oracle: bool = False) -> EnvFactory:
    """The ``make_env`` the harness hands to ``meta_train``: envs counted on one StepCounter that
    raises past ``budget`` (``factory.counter.steps`` is what was used)."""
    return EnvFactory(env_id, oracle, StepCounter(Budget(budget), "smoke"))


def train_agent(module: types.ModuleType, env_id: str, budget: int, tier: str, **overrides: Any) -> Any:
    """``module``'s agent at ``tier``'s config (with ``overrides``), meta-trained from seed 0 on
    ``env_id``'s train tasks within ``budget`` env steps, which it must use some of and not exceed."""
    config = dataclasses.replace(build_config(module, tier), **overrides)
    agent = module.make_agent(config)
    factory = budgeted_env_factory(env_id, budget)
    agent.meta_train(factory, metabench.tasks(env_id, "train"), Budget(budget), seed=0, log=RecordingLogger())
    assert 0 < factory.counter.steps <= budget
    return agent


def play_trial(
    agent: Any,
    env_id: str,
    task_index: int,
    n_adapt: int,
    n_eval: int,
    seed: int = 0,
    after: Callable[[int], None] | None = None,
) -> list[float]:
    """One harness trial on a test task: ``n_adapt`` exploring episodes, then ``n_eval`` evaluation ones;
    returns the episodes' returns (``after(ep)`` runs after each episode)."""
    env = gym.make(env_id)
    task = metabench.tasks(env_id, "test")[task_index]
    agent.begin_trial()
    returns = []
    for ep in range(n_adapt + n_eval):
        obs, _ = env.reset(seed=seed + ep, options={"task": task})
        done, total = False, 0.0
        while not done:
            action = agent.act(obs, explore=ep < n_adapt)
            nxt, reward, term, trunc, info = env.step(action)
            agent.observe(Transition(obs, action, float(reward), nxt, term, trunc, info))
            obs, done, total = nxt, term or trunc, total + float(reward)
        agent.end_episode()
        returns.append(total)
        if after is not None:
            after(ep)
    return returns


def assert_round_trip_acts_identically(agent: Any, path: Path, files: list[str], env_id: str) -> None:
    """``agent.save(path)`` writes exactly ``files``, and the agent its class loads from them plays a
    trial on ``env_id`` (test task 1: 10 adaptation, 3 evaluation episodes) with the same returns."""
    agent.save(path)
    loaded = type(agent).load(path)
    assert sorted(p.name for p in path.iterdir()) == files
    assert play_trial(agent, env_id, 1, 10, 3) == play_trial(loaded, env_id, 1, 10, 3)
