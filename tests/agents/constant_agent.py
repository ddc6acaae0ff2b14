"""A constant-action agent, written against the protocol in DESIGN.md and nothing else.

It pushes along the last action dimension at a seed-dependent fraction of the bound, and meta-trains
by running a few episodes on random train tasks and logging their returns. A test fixture: it shows
that an agent file written outside metabench runs unchanged.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np


@dataclasses.dataclass
class Config:
    train_episodes: int = 5
    #: fraction of the action bound pushed along the last dimension, scaled per seed into [0.5, 1] of it
    strength: float = 1.0


TIERS = {"smoke": {"train_episodes": 3}}


class ConstantAgent:
    def __init__(self, config: Config):
        self.config = config
        self.action: np.ndarray | None = None

    def meta_train(self, make_env, tasks, budget, *, seed, log):
        rng = np.random.default_rng(seed)
        env = make_env()
        high = np.where(np.isfinite(env.action_space.high), env.action_space.high, 1.0)
        self.action = np.zeros(env.action_space.shape)
        self.action[-1] = high[-1] * self.config.strength * rng.uniform(0.5, 1.0)
        steps = 0
        for _ in range(self.config.train_episodes):
            task = tasks[int(rng.integers(len(tasks)))]
            env.reset(seed=int(rng.integers(2**31)), options={"task": task})
            ret, done = 0.0, False
            while not done and steps < budget.env_steps:
                _, reward, terminated, truncated, _ = env.step(self.action)
                ret, steps, done = ret + float(reward), steps + 1, terminated or truncated
            log.log(steps, episode_return=ret)
        env.close()

    def begin_trial(self):
        pass

    def act(self, obs, *, explore):
        return self.action

    def observe(self, transition):
        pass

    def end_episode(self):
        pass

    def save(self, path):
        with open(path, "w") as f:
            json.dump({"config": dataclasses.asdict(self.config), "action": self.action.tolist()}, f)

    @classmethod
    def load(cls, path):
        with open(path) as f:
            data = json.load(f)
        agent = cls(Config(**data["config"]))
        agent.action = np.asarray(data["action"])
        return agent


def make_agent(config: Config) -> ConstantAgent:
    return ConstantAgent(config)
