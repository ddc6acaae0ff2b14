"""From scratch: Stable-Baselines3's TD3 trained on each test env of a transfer suite, with no meta-training.

The reference learner of transfer suites (:mod:`metabench.suites`): a suite's normalised score is 0 for
the random agent and 1 for this agent at the suite's ``adapt_steps`` (``metabench.references``), so a
learned objective scoring above 1 trained a fresh agent better than TD3's hand-designed one did.

``meta_train`` spends no env steps. ``begin_trial(observation_space, action_space)`` builds a new
``TD3`` for the env's spaces; the harness then drives it step by step: ``act(explore=True)`` draws
uniform actions for the first ``learning_starts`` steps, then the deterministic policy plus Gaussian
noise (``action_noise`` x half the action range, clipped to the bounds, as SB3 does with
``NormalActionNoise`` on its [-1, 1] scale); ``observe`` stores the transition, with the bootstrap
cut only at true terminals (``terminated``; a time-limit end is not one), and runs ``train_freq``
gradient steps per env step once ``learning_starts`` transitions are stored. Evaluation episodes
(``explore=False``) act deterministically and are not learned from.

Defaults are TD3's (Fujimoto et al. 2018) as SB3 ships them, with the 10k uniform warm-up steps and
batch of 100 that MetaGenRL's meta-test uses (Kirsch et al. 2019, ``ray_configs.py``), so both learn
from the same amount of random data. SB3 seeds Python's, NumPy's and torch's global generators from
the trial's seed when the model is built (``seed=``); that is SB3's behaviour, kept as is. Exploration
noise and warm-up actions come from the agent's own ``np.random.default_rng``.

Run it with ``metabench evaluate agents/from_scratch.py --suite suite/PendulumReacher-v0 --tier ci``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3 import TD3
from stable_baselines3.common.logger import Logger as SB3Logger

from metabench.protocol import Budget, Logger, Transition
from metabench.tasks import Task


@dataclasses.dataclass
class Config:
    learning_rate: float = 1e-3
    buffer_size: int = 1_000_000
    learning_starts: int = 10_000
    batch_size: int = 100
    tau: float = 0.005
    gamma: float = 0.99
    policy_delay: int = 2
    target_policy_noise: float = 0.2
    target_noise_clip: float = 0.5
    #: std of the Gaussian exploration noise on the [-1, 1] action scale
    action_noise: float = 0.1
    #: gradient steps per env step
    train_freq: int = 1
    net_arch: tuple[int, ...] = (400, 300)


#: Settings per tier; the ci values match agents/metagenrl.py's ci learner (network, warm-up, batch).
TIERS: dict[str, dict[str, Any]] = {
    "smoke": {"net_arch": (32, 32), "learning_starts": 100, "batch_size": 32},
    "ci": {"net_arch": (64, 64), "learning_starts": 1_000},
}


class _SpacesOnly(gym.Env):
    """An env that only carries spaces: SB3 builds its networks from it; the harness does the stepping."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space):
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        raise RuntimeError("from_scratch's TD3 is stepped by the harness, not by SB3")

    def step(self, action: Any):
        raise RuntimeError("from_scratch's TD3 is stepped by the harness, not by SB3")


class FromScratchAgent:
    """TD3 from scratch on every test env; nothing is meta-learned."""

    oracle = False
    suites = True

    def __init__(self, config: Config):
        self.config = config
        self.seed = 0
        self.trials = 0
        self.model: TD3 | None = None
        self.rng = np.random.default_rng(0)
        self.steps = 0
        self._explored = False

    def meta_train(
        self,
        make_env: Callable[..., gym.Env],
        tasks: Sequence[Task],
        budget: Budget,
        *,
        seed: int,
        log: Logger,
    ) -> None:
        self.seed, self.trials = int(seed), 0

    def begin_trial(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        if not isinstance(action_space, spaces.Box) or not isinstance(observation_space, spaces.Box):
            raise TypeError(f"from_scratch (TD3) needs Box spaces; got {observation_space}, {action_space}")
        c = self.config
        trial_seed = self.seed * 1_000 + self.trials
        self.trials += 1
        self.rng = np.random.default_rng(trial_seed)
        self.model = TD3(
            "MlpPolicy",
            _SpacesOnly(observation_space, action_space),
            learning_rate=c.learning_rate,
            buffer_size=c.buffer_size,
            learning_starts=c.learning_starts,
            batch_size=c.batch_size,
            tau=c.tau,
            gamma=c.gamma,
            policy_delay=c.policy_delay,
            target_policy_noise=c.target_policy_noise,
            target_noise_clip=c.target_noise_clip,
            policy_kwargs={"net_arch": list(c.net_arch)},
            seed=trial_seed,
            device="cpu",
        )
        self.model.set_logger(SB3Logger(folder=None, output_formats=[]))
        self.steps = 0

    def _scaled(self, obs: Any) -> np.ndarray:
        """The policy's action on SB3's [-1, 1] scale."""
        assert self.model is not None
        action, _ = self.model.predict(np.asarray(obs), deterministic=True)
        return self.model.policy.scale_action(np.asarray(action))

    def act(self, obs: Any, *, explore: bool) -> Any:
        if self.model is None:
            raise RuntimeError("FromScratchAgent.act called before begin_trial")
        self._explored = explore
        space = self.model.action_space
        if explore and self.steps < self.config.learning_starts:
            scaled = self.rng.uniform(-1.0, 1.0, size=space.shape)
        else:
            scaled = self._scaled(obs)
            if explore:
                scaled = np.clip(
                    scaled + self.config.action_noise * self.rng.standard_normal(space.shape), -1, 1
                )
        return self.model.policy.unscale_action(np.asarray(scaled, dtype=np.float32))

    def observe(self, transition: Transition) -> None:
        if self.model is None or not self._explored:
            return  # evaluation episodes are not learned from
        m = self.model
        buffer_action = m.policy.scale_action(np.asarray(transition.action, dtype=np.float32))
        m.replay_buffer.add(
            np.asarray(transition.obs)[None],
            np.asarray(transition.next_obs)[None],
            buffer_action[None],
            np.asarray([transition.reward]),
            np.asarray([transition.terminated]),  # time-limit ends bootstrap: only true terminals cut
            [{}],
        )
        self.steps += 1
        m.num_timesteps = self.steps
        if self.steps >= self.config.learning_starts:
            m.train(gradient_steps=self.config.train_freq, batch_size=self.config.batch_size)

    def end_episode(self) -> None:
        pass

    def save(self, path: str | Path) -> None:
        """Write ``path/agent.json``: nothing is meta-learned, so the config and seed are the agent."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {"config": dataclasses.asdict(self.config), "seed": self.seed, "trials": self.trials}
        (path / "agent.json").write_text(json.dumps(state, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> FromScratchAgent:
        state = json.loads((Path(path) / "agent.json").read_text())
        config = state["config"]
        config["net_arch"] = tuple(config["net_arch"])
        agent = cls(Config(**config))
        agent.seed, agent.trials = int(state["seed"]), int(state["trials"])
        return agent


def make_agent(config: Config) -> FromScratchAgent:
    return FromScratchAgent(config)
