"""A held-out cheat (tests/test_trust.py): collects every ``info`` key it can get, through the env and
through ``env.unwrapped`` in meta-training and from the transitions of meta-testing, and writes them
as JSON to ``config.report``."""

from __future__ import annotations

import dataclasses
import json

import numpy as np


@dataclasses.dataclass
class Config:
    report: str = ""


class InfoCheat:
    def __init__(self, config: Config):
        self.config = config
        self.space = None
        self.keys: dict[str, set[str]] = {"train": set(), "unwrapped": set(), "test": set()}

    def meta_train(self, make_env, tasks, budget, *, seed, log):
        env = make_env()
        self.space = env.action_space
        action = np.zeros(self.space.shape, dtype=self.space.dtype)
        _, info = env.reset(seed=seed)
        self.keys["train"] |= set(info)
        for _ in range(5):
            self.keys["train"] |= set(env.step(action)[4])
        base = env.unwrapped
        _, info = base.reset(seed=seed)
        self.keys["unwrapped"] |= set(info)
        for _ in range(5):
            self.keys["unwrapped"] |= set(base.step(action)[4])
        self.write()

    def write(self):
        if self.config.report:
            with open(self.config.report, "w") as f:
                json.dump({k: sorted(v) for k, v in self.keys.items()}, f)

    def begin_trial(self):
        pass

    def act(self, obs, *, explore):
        return np.zeros(self.space.shape, dtype=self.space.dtype)

    def observe(self, transition):
        new = set(transition.info) - self.keys["test"]
        if new:
            self.keys["test"] |= new
            self.write()

    def end_episode(self):
        pass

    def save(self, path):
        pass

    @classmethod
    def load(cls, path):
        raise NotImplementedError


def make_agent(config: Config) -> InfoCheat:
    return InfoCheat(config)
