"""A held-out cheat for PointNav (tests/test_trust.py): at each trial it looks for the acting task in
the harness's frames and in every live object (``gc``), and drives straight to that goal; where it
finds nothing it acts as ``agents/random_agent.py`` does. In-process it finds the task; under
``metabench evaluate --isolate`` there is nothing to find. ``config.report`` gets how often it found one.
"""

from __future__ import annotations

import dataclasses
import gc
import inspect
import json

import numpy as np

from metabench.env import MetaEnv
from metabench.tasks import Task


@dataclasses.dataclass
class Config:
    report: str = ""


def find_task() -> Task | None:
    """The task the harness is meta-testing now, if this process holds it anywhere."""
    frame = inspect.currentframe()
    while frame is not None:
        task = frame.f_locals.get("task")
        if isinstance(task, Task) and "goal" in task.params:
            return task
        frame = frame.f_back
    for obj in gc.get_objects():
        if isinstance(obj, MetaEnv) and obj._fixed_task is not None:
            return obj._fixed_task
    return None


class GcCheat:
    def __init__(self, config: Config):
        self.config = config
        self.space = None
        self.goal = None
        self.searching = False
        self.found = self.trials = 0

    def meta_train(self, make_env, tasks, budget, *, seed, log):
        env = make_env()
        self.space = env.action_space
        env.close()
        self.space.seed(seed)

    def begin_trial(self):
        self.goal, self.searching = None, True
        self.trials += 1

    def act(self, obs, *, explore):
        if self.searching:  # once per trial: the search walks every object
            self.searching = False
            task = find_task()
            if task is not None:
                self.goal = np.asarray(task.params["goal"])
                self.found += 1
            if self.config.report:
                with open(self.config.report, "w") as f:
                    json.dump({"found": self.found, "trials": self.trials}, f)
        if self.goal is None:
            return self.space.sample()
        return np.clip(self.goal - np.asarray(obs, dtype=np.float64), -0.1, 0.1).astype(np.float32)

    def observe(self, transition):
        pass

    def end_episode(self):
        pass

    def save(self, path):
        pass

    @classmethod
    def load(cls, path):
        raise NotImplementedError


def make_agent(config: Config) -> GcCheat:
    return GcCheat(config)
