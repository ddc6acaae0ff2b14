"""A held-out cheat for PointNav (tests/test_trust.py): replays the public meta-test order (the
harness meta-tests the splits' tasks in a fixed order) to know each trial's goal, and checks the
guess against the first reward of the trial: while the replay holds it drives straight to the goal,
once it fails it acts as ``agents/random_agent.py`` does. In-process every guess holds; under
``metabench evaluate --isolate`` the order is secret. ``config.report`` gets how many guesses held.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from metabench.harness import meta_test_groups


@dataclasses.dataclass
class Config:
    tier: str = "smoke"
    report: str = ""


class ReplayCheat:
    def __init__(self, config: Config):
        self.config = config
        self.space = None
        self.order: list = []
        self.trial = -1
        self.in_sync = True
        self.checked = False
        self.held = 0

    def meta_train(self, make_env, tasks, budget, *, seed, log):
        env = make_env()
        self.space = env.action_space
        env_id = type(env.unwrapped).env_id
        env.close()
        self.space.seed(seed)
        self.order = [t for _, group in meta_test_groups(env_id, self.config.tier) for t in group]

    def begin_trial(self):
        self.trial += 1
        self.checked = False

    @property
    def goal(self):
        if not self.in_sync or self.trial >= len(self.order):
            return None
        return np.asarray(self.order[self.trial].params["goal"])

    def act(self, obs, *, explore):
        goal = self.goal
        if goal is None:
            return self.space.sample()
        return np.clip(goal - np.asarray(obs, dtype=np.float64), -0.1, 0.1).astype(np.float32)

    def observe(self, transition):
        if self.checked or self.goal is None:
            return
        self.checked = True
        pos = np.asarray(transition.next_obs, dtype=np.float64)
        expected = -float(np.linalg.norm(pos - self.goal))
        if abs(expected - transition.reward) < 1e-4:
            self.held += 1
        else:
            self.in_sync = False  # found out: the order is not the one it replays
        if self.config.report:
            with open(self.config.report, "w") as f:
                json.dump({"held": self.held, "trials": self.trial + 1}, f)

    def end_episode(self):
        pass

    def save(self, path):
        pass

    @classmethod
    def load(cls, path):
        raise NotImplementedError


def make_agent(config: Config) -> ReplayCheat:
    return ReplayCheat(config)
