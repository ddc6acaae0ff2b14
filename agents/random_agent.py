"""Random baseline: samples uniformly from the action space and never learns nor adapts.

It is the lower reference of every family's normalised score (``metabench.references``): a score
of 0 means "no better than acting at random". Meta-training spends no env steps; it only reads the
action space from one env. Actions come from the space's own seeded generator (seeded with the run's
seed), whose state is saved with the agent, so a loaded agent draws the same actions as the one saved.

On a transfer suite (``suites = True``, :mod:`metabench.suites`) it is the 0 of the normalised score:
``begin_trial(observation_space, action_space)`` takes the test env's action space and seeds it from
(run seed, trial number), so each test env gets its own reproducible stream.

Run it with ``metabench evaluate agents/random_agent.py --env metabench/PointNav-v0 --tier ci``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
from gymnasium import spaces

from metabench.agents.common.spaces import space_from_dict, space_to_dict
from metabench.protocol import Budget, Logger, Transition
from metabench.suites import is_suite_task
from metabench.tasks import Task


@dataclasses.dataclass
class Config:
    """The random agent has nothing to tune; the dataclass exists so every agent looks the same."""


class RandomAgent:
    """Uniform random actions (``explore`` is ignored); nothing task-specific to forget."""

    oracle = False
    suites = True

    def __init__(self, config: Config):
        self.config = config
        self.action_space: spaces.Space | None = None
        self.seed = 0
        self.trials = 0

    def meta_train(
        self,
        make_env: Callable[[], gym.Env],
        tasks: Sequence[Task],
        budget: Budget,
        *,
        seed: int,
        log: Logger,
    ) -> None:
        self.seed, self.trials = int(seed), 0
        if tasks and is_suite_task(tasks[0]):
            return  # a transfer suite: the action space comes with each begin_trial
        env = make_env()
        try:
            self.action_space = env.action_space
        finally:
            env.close()
        self.action_space.seed(seed)

    def begin_trial(
        self, observation_space: spaces.Space | None = None, action_space: spaces.Space | None = None
    ) -> None:
        if action_space is not None:  # a transfer suite's fresh learner for this env
            self.action_space = action_space
            self.action_space.seed(self.seed * 1_000 + self.trials)
            self.trials += 1

    def act(self, obs: Any, *, explore: bool) -> Any:
        if self.action_space is None:
            raise RuntimeError("RandomAgent.act called before meta_train or load")
        return self.action_space.sample()

    def observe(self, transition: Transition) -> None:
        pass

    def end_episode(self) -> None:
        pass

    def save(self, path: str | Path) -> None:
        """Write ``path/agent.json``: the action space and its generator's state."""
        if self.action_space is None:
            raise RuntimeError("RandomAgent.save called before meta_train")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {
            "config": dataclasses.asdict(self.config),
            "action_space": space_to_dict(self.action_space),
            "rng_state": self.action_space.np_random.bit_generator.state,
            "seed": self.seed,
            "trials": self.trials,
        }
        (path / "agent.json").write_text(json.dumps(state, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> RandomAgent:
        state = json.loads((Path(path) / "agent.json").read_text())
        agent = cls(Config(**state["config"]))
        agent.action_space = space_from_dict(state["action_space"])
        agent.action_space.seed(0)  # creates the generator; its state is then overwritten
        agent.action_space.np_random.bit_generator.state = state["rng_state"]
        agent.seed, agent.trials = int(state.get("seed", 0)), int(state.get("trials", 0))
        return agent


def make_agent(config: Config) -> RandomAgent:
    return RandomAgent(config)
