"""No-context baseline: one Stable-Baselines3 policy trained across the train tasks, task hidden.

The agent learns a single policy that does as well as it can on the *average* train task: it sees
only the env's observation (never the task) and does not adapt at meta-test. Learning is not
adaptation: ``act`` ignores trial and episode boundaries and ``observe`` throws transitions away, so
its zero-shot and final returns differ only by the env's own randomness. It is the "no context"
reference of the leaderboard; ``agents/explicit_context.py`` is the same learner given the task.

Learner: SB3 SAC for continuous (``Box``) action spaces, PPO for ``Discrete`` ones (``algo="auto"``),
with an MLP policy, trained on ``make_env()``, which draws a fresh train task at every reset. It
trains for ``min(total_timesteps, budget.env_steps)`` env steps, rounded down so that SB3's rollout
granularity (SAC's ``train_freq``, PPO's ``n_steps``) never steps past the budget. At meta-test it
acts deterministically (the policy's mean or mode) whether ``explore`` is set or not: a policy that
cannot adapt gains nothing from exploring, and deterministic actions make runs reproducible and a
loaded agent act exactly as the saved one.

SB3 seeds Python's, NumPy's and torch's global generators from the run's seed when the model is
built (``seed=``); that is SB3's behaviour, kept as is.

``save(path)`` writes a directory: ``agent.json`` (learner and config) and ``model.zip`` (SB3's
format; SB3 reads it back with ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from metabench.protocol import Budget, Logger, Transition
from metabench.tasks import Task


@dataclasses.dataclass
class Config:
    algo: str = "auto"
    """``"sac"``, ``"ppo"`` or ``"auto"`` (SAC for Box actions, PPO for Discrete)."""
    total_timesteps: int | None = None
    """Env steps to train for; ``None`` means the whole budget. Never more than the budget."""
    net_arch: tuple[int, ...] = (64, 64)
    learning_rate: float = 3e-4
    gamma: float = 0.99
    batch_size: int = 256
    # SAC
    buffer_size: int = 100_000
    learning_starts: int = 1_000
    train_freq: int = 1
    gradient_steps: int = 1
    tau: float = 0.005
    # PPO
    n_steps: int = 1024
    n_epochs: int = 10
    ent_coef: float = 0.0
    # bookkeeping
    log_every: int = 1_000
    """Report the mean return of the last 100 training episodes every this many env steps."""
    torch_threads: int = 1
    device: str = "cpu"


# Tier settings: agents/hyperparams/no_context.toml (metabench.protocol.build_config).

ALGOS: dict[str, type[BaseAlgorithm]] = {"sac": SAC, "ppo": PPO}


class _CurveCallback(BaseCallback):
    """Sends the mean return of recent training episodes to the harness's logger."""

    def __init__(self, log: Logger, every: int):
        super().__init__()
        self.metabench_log, self.every = log, max(1, every)

    def _on_step(self) -> bool:
        if self.num_timesteps % self.every == 0 and len(self.model.ep_info_buffer) > 0:
            returns = [float(ep["r"]) for ep in self.model.ep_info_buffer]
            self.metabench_log.log(self.num_timesteps, episode_return=float(np.mean(returns)))
        return True


def choose_algo(config: Config, action_space: spaces.Space) -> str:
    if config.algo not in ("auto", *ALGOS):
        raise ValueError(f"Config.algo must be one of auto, {', '.join(ALGOS)}; got {config.algo!r}")
    if config.algo != "auto":
        return config.algo
    if isinstance(action_space, spaces.Box):
        return "sac"
    if isinstance(action_space, spaces.Discrete):
        return "ppo"
    raise TypeError(f"no_context supports Box (SAC) and Discrete (PPO) action spaces, got {action_space}")


def build_model(config: Config, algo: str, env: gym.Env, total: int, seed: int) -> tuple[BaseAlgorithm, int]:
    """The SB3 learner and the number of env steps it will take (<= ``total``)."""
    common = {
        "policy": "MlpPolicy",
        "env": env,
        "learning_rate": config.learning_rate,
        "gamma": config.gamma,
        "policy_kwargs": {"net_arch": list(config.net_arch)},
        "seed": seed,
        "device": config.device,
        "verbose": 0,
    }
    if algo == "sac":
        steps = total - total % config.train_freq  # SAC collects train_freq steps at a time
        model = SAC(
            **common,
            buffer_size=config.buffer_size,
            learning_starts=min(config.learning_starts, steps),
            batch_size=config.batch_size,
            tau=config.tau,
            train_freq=config.train_freq,
            gradient_steps=config.gradient_steps,
        )
        return model, steps
    n_steps = max(2, min(config.n_steps, total))
    steps = total - total % n_steps  # PPO collects n_steps at a time
    model = PPO(
        **common,
        n_steps=n_steps,
        batch_size=min(config.batch_size, n_steps),
        n_epochs=config.n_epochs,
        ent_coef=config.ent_coef,
    )
    return model, steps


class NoContextAgent:
    """An SB3 policy over the plain observation; does not adapt (see the module docstring)."""

    oracle: ClassVar[bool] = False

    def __init__(self, config: Config):
        self.config = config
        self.algo: str | None = None
        self.model: BaseAlgorithm | None = None

    def meta_train(
        self,
        make_env: Callable[[], gym.Env],
        tasks: Sequence[Task],
        budget: Budget,
        *,
        seed: int,
        log: Logger,
    ) -> None:
        torch.set_num_threads(self.config.torch_threads)
        total = budget.env_steps
        if self.config.total_timesteps is not None:
            total = min(total, self.config.total_timesteps)
        env = make_env()
        self.algo = choose_algo(self.config, env.action_space)
        self.model, steps = build_model(self.config, self.algo, env, total, seed)
        if steps > 0:
            self.model.learn(total_timesteps=steps, callback=_CurveCallback(log, self.config.log_every))
        env.close()
        self.model.policy.set_training_mode(False)

    def begin_trial(self) -> None:
        pass  # nothing task-specific to forget

    def act(self, obs: Any, *, explore: bool) -> Any:
        if self.model is None:
            raise RuntimeError(f"{type(self).__name__}.act called before meta_train or load")
        # What ``model.predict(obs, deterministic=True)`` computes (SAC's squashed action unscaled, PPO's
        # Box action clipped to the bounds), without its per-call switch of the networks to eval mode
        # (done once after meta_train and load), which costs more than the forward pass itself.
        policy = self.model.policy
        with torch.no_grad():
            x, _ = policy.obs_to_tensor(obs)
            if self.algo == "sac":
                action = policy.unscale_action(policy.actor(x, deterministic=True).cpu().numpy()[0])
            else:
                action = policy.get_distribution(x).get_actions(deterministic=True).cpu().numpy()[0]
                if isinstance(policy.action_space, spaces.Box):  # PPO's Gaussian is unbounded: clip
                    action = np.clip(action, policy.action_space.low, policy.action_space.high)
        return action

    def observe(self, transition: Transition) -> None:
        pass

    def end_episode(self) -> None:
        pass

    def save(self, path: str | Path) -> None:
        """Write the directory ``path``: ``agent.json`` and SB3's ``model.zip``."""
        if self.model is None or self.algo is None:
            raise RuntimeError(f"{type(self).__name__}.save called before meta_train")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {"algo": self.algo, "config": dataclasses.asdict(self.config)}
        (path / "agent.json").write_text(json.dumps(meta, indent=1))
        self.model.save(path / "model.zip")

    @classmethod
    def load(cls, path: str | Path) -> NoContextAgent:
        path = Path(path)
        meta = json.loads((path / "agent.json").read_text())
        config = meta["config"]
        config["net_arch"] = tuple(config["net_arch"])
        agent = cls(Config(**config))
        agent.algo = meta["algo"]
        agent.model = ALGOS[agent.algo].load(path / "model.zip", device=agent.config.device)
        agent.model.policy.set_training_mode(False)
        return agent


def make_agent(config: Config) -> NoContextAgent:
    return NoContextAgent(config)
