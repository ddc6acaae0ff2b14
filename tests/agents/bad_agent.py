"""A test fixture that breaks the protocol in the way ``config.mode`` says.

Modes:

* ``ok``: a fixed action drawn from the seed;
* ``nan``, ``out_of_space``: bad actions;
* ``raise_in_act``: an exception inside ``act``;
* ``over_budget``: steps past the budget; ``swallow_budget``: catches the overrun and goes on;
* ``pickle_env``: pickles make_env, as SubprocVecEnv would;
* ``test_task``: meta-trains on a test task;
* ``step_after``: steps a meta-training env at meta-test.

``fail_seed`` makes ``act`` raise only for that seed, to show that one failed unit does not lose the
others; ``die_seed`` makes the process exit inside ``act`` for that seed (a crashed Ray worker; never
use it in-process).
"""

from __future__ import annotations

import dataclasses
import os
import pickle

import numpy as np


@dataclasses.dataclass
class Config:
    mode: str = "ok"
    fail_seed: int = -1
    die_seed: int = -1


class BadAgent:
    def __init__(self, config: Config):
        self.config = config
        self.seed = -1
        self.env = None

    def meta_train(self, make_env, tasks, budget, *, seed, log):
        self.seed = seed
        mode = self.config.mode
        self.env = env = make_env()
        self.zero = np.zeros(env.action_space.shape, dtype=env.action_space.dtype)
        # a fixed, seed-dependent action for mode "ok", so that runs with different seeds differ
        self.ok = np.random.default_rng(seed).uniform(env.action_space.low, env.action_space.high)
        env.reset(seed=seed)
        if mode in ("over_budget", "swallow_budget"):
            try:
                for _ in range(budget.env_steps + 10):
                    env.step(self.zero)
            except RuntimeError:
                if mode == "over_budget":
                    raise
        elif mode == "pickle_env":
            pickle.dumps(make_env)
        elif mode == "test_task":
            import metabench

            env.reset(options={"task": metabench.tasks(tasks[0].family, "test")[0]})

    def begin_trial(self):
        pass

    def act(self, obs, *, explore):
        mode = self.config.mode
        if self.seed == self.config.die_seed:
            os._exit(3)
        if self.seed == self.config.fail_seed or mode == "raise_in_act":
            raise RuntimeError(f"boom in act (seed {self.seed})")
        if mode == "nan":
            return np.full_like(self.zero, np.nan)
        if mode == "out_of_space":
            return self.zero + 5.0
        if mode == "step_after":
            self.env.step(self.zero)
        return self.ok

    def observe(self, transition):
        pass

    def end_episode(self):
        pass

    def save(self, path):
        pass

    @classmethod
    def load(cls, path):
        return cls(Config())


def make_agent(config: Config) -> BadAgent:
    return BadAgent(config)
