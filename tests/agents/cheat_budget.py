"""A held-out cheat (tests/test_trust.py): steps its meta-training env through ``env.unwrapped``,
which research code does "for speed", past the budget; with ``swallow`` it catches the harness's
error and goes on. The harness must count every such step and fail the run."""

from __future__ import annotations

import dataclasses

import numpy as np

from metabench.protocol import BudgetExceeded


@dataclasses.dataclass
class Config:
    extra: int = 500  # steps past the budget it tries
    swallow: bool = False


class BudgetCheat:
    def __init__(self, config: Config):
        self.config = config
        self.space = None

    def meta_train(self, make_env, tasks, budget, *, seed, log):
        env = make_env()
        self.space = env.action_space
        action = np.zeros(env.action_space.shape, dtype=env.action_space.dtype)
        env.reset(seed=seed)
        base = env.unwrapped
        for _ in range(budget.env_steps + self.config.extra):
            try:
                base.step(action)
            except BudgetExceeded:
                if not self.config.swallow:
                    raise

    def begin_trial(self):
        pass

    def act(self, obs, *, explore):
        return np.zeros(self.space.shape, dtype=self.space.dtype)

    def observe(self, transition):
        pass

    def end_episode(self):
        pass

    def save(self, path):
        pass

    @classmethod
    def load(cls, path):
        raise NotImplementedError


def make_agent(config: Config) -> BudgetCheat:
    return BudgetCheat(config)
