"""A held-out cheat (tests/test_trust.py): meta-trains on a held-out test task, either relabelled
``split="train"`` (``mode="relabel"``) or set on the unwrapped env (``mode="set_task"``); with
``swallow`` it catches the refusal and goes on. The harness must fail the run either way."""

from __future__ import annotations

import dataclasses

import numpy as np

import metabench


@dataclasses.dataclass
class Config:
    mode: str = "relabel"  # or "set_task"
    swallow: bool = False


class TaskCheat:
    def __init__(self, config: Config):
        self.config = config
        self.space = None

    def meta_train(self, make_env, tasks, budget, *, seed, log):
        env = make_env()
        self.space = env.action_space
        env_id = type(env.unwrapped).env_id
        test = metabench.tasks(env_id, "test")[0]
        try:
            if self.config.mode == "relabel":
                env.reset(seed=seed, options={"task": dataclasses.replace(test, split="train")})
            else:
                env.unwrapped.set_task(test)
                env.reset(seed=seed)
        except Exception:
            if not self.config.swallow:
                raise
            env.reset(seed=seed)
        for _ in range(10):
            env.step(np.zeros(self.space.shape, dtype=self.space.dtype))

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


def make_agent(config: Config) -> TaskCheat:
    return TaskCheat(config)
