"""A test fixture that reports what the harness shows it, as JSON in the file ``config.report``.

It checks nothing itself; tests read the report: observation sizes, the info keys it saw in
meta-training and in meta-test transitions, the explore flags per trial, and the calls it got.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np


@dataclasses.dataclass
class Config:
    report: str = ""
    oracle: bool = False
    train_steps: int = 40
    #: write the report after every this many episodes (files are slow to open on a busy disk)
    write_every: int = 13


class SpyAgent:
    def __init__(self, config: Config):
        self.config = config
        self.oracle = config.oracle
        self.seen = {
            "train_obs_dims": [],
            "train_info_keys": [],
            "test_obs_dims": [],
            "test_info_keys": [],
            "trials": [],
            "calls": {"begin_trial": 0, "end_episode": 0, "observe": 0, "act": 0},
        }
        self.action = None

    def meta_train(self, make_env, tasks, budget, *, seed, log):
        env = make_env()
        self.action = np.zeros(env.action_space.shape, dtype=env.action_space.dtype)
        obs, info = env.reset(seed=seed, options={"task": tasks[0]})
        keys = set(info)
        self.seen["train_obs_dims"].append(int(np.asarray(obs).size))
        self.seen["n_train_tasks"] = len(tasks)
        self.seen["train_task_splits"] = sorted({t.split for t in tasks})
        self.seen["budget"] = budget.env_steps
        for i in range(self.config.train_steps):
            obs, _, terminated, truncated, info = env.step(self.action)
            keys |= set(info)
            if terminated or truncated:
                env.reset()
            log(i + 1, step=float(i))
        self.seen["train_info_keys"] = sorted(keys)

    def begin_trial(self):
        self.seen["calls"]["begin_trial"] += 1
        self.trial: list[bool | None] = []
        if len(self.seen["trials"]) < 3:  # the explore flags of the first trials only
            self.seen["trials"].append(self.trial)

    def act(self, obs, *, explore):
        self.seen["calls"]["act"] += 1
        dim = int(np.asarray(obs).size)
        if dim not in self.seen["test_obs_dims"]:
            self.seen["test_obs_dims"].append(dim)
        trial = self.trial
        if not trial or trial[-1] is None:
            trial.append(bool(explore))
        return self.action

    def observe(self, transition):
        self.seen["calls"]["observe"] += 1
        for key in transition.info:
            if key not in self.seen["test_info_keys"]:
                self.seen["test_info_keys"].append(key)

    def end_episode(self):
        self.seen["calls"]["end_episode"] += 1
        self.trial.append(None)  # marks an episode boundary
        if self.config.report and self.seen["calls"]["end_episode"] % self.config.write_every == 0:
            with open(self.config.report, "w") as f:
                json.dump(self.seen, f)

    def save(self, path):
        raise NotImplementedError

    @classmethod
    def load(cls, path):
        raise NotImplementedError


def make_agent(config: Config) -> SpyAgent:
    return SpyAgent(config)
