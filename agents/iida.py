"""IIDA, "Context is Everything: Implicit Identification for Dynamics Adaptation" (Evans, Thankaraj,
Pinto, ICRA 2022; code ``bennevans/iida``), as a meta-RL agent.

A dynamics predictor learns, from transitions of many environment variations, to infer a latent
context ``z`` from a set of the variation's transitions; an RL policy then acts on ``[obs, z]``. The
task is identified implicitly (no task labels, no reward model unless ``context_reward``) and at
meta-test ``z`` comes from the trial's own transitions: no gradient step adapts anything.

The three stages run inside one ``meta_train`` and share the family's env-step budget:

1. **Generator policy** (``generator_fraction`` of the budget): the no-context learner of
   ``agents/no_context.py`` (SB3 SAC for ``Box`` actions, PPO for ``Discrete``) trained on the train
   tasks; ``generator="random"`` uses uniformly random actions instead and spends nothing here.
2. **Predictor**: the generator's training transitions plus ``rollout_fraction`` of the budget of its
   rollouts (sampled actions), every transition labelled with the train task it came from (this file
   chooses the tasks, so no task information is read from the env). An encoder MLP (one hidden layer of
   256) maps each context tuple ``(s, a, s')`` to 8 numbers, mean-pooled over the tuples to ``z``; a
   decoder MLP (256, 256) predicts ``s'`` from ``[s, a, z]``; loss: one-step mean squared error, no
   KL. Context and target come from the same task, the target never among its context tuples. A
   fixed ``predictor_val_fraction`` of each task's transitions is held out as targets for validation.
3. **Latent-context PPO** (the rest of the budget): the encoder frozen, SB3's PPO learns on
   :class:`LatentContextEnv`, an observation wrapper that appends ``z`` of the current trial's
   transitions. A training trial is ``episodes_per_trial`` episodes on one train task (by default the
   family's ``n_adapt + n_eval``, as the harness will run it), so PPO sees ``z`` sharpen over a trial as
   it will at meta-test.

``z`` is the mean of the per-tuple encodings of the last ``context_size`` transitions of the trial
(zeros before the first), updated after every step, at training and at meta-test alike.

## What follows IIDA (the paper, its configs ``scripts/da_configs``, ``varyingsim/models``)
* Encoder (256) → 8-d ``z`` by mean pooling; decoder (256, 256); ReLU; Adam 1e-3, batch 64, context
  128 (``context-size: 128`` in its configs), MSE on the next state. Inputs and targets are normalised
  by the predictor data's mean and std.
* The RL stage is PPO on ``[obs, z]`` (the meta_rl seed's use of IIDA on the Striker).

## Where ours differs
* Context sizes: each predictor batch draws its context size uniformly from 1 to ``context_size``
  (IIDA trains on a fixed size), because at meta-test ``z`` is inferred from 0 to ``context_size``
  transitions as a trial goes on.
* ``context_reward`` (off by default, IIDA's setting) adds the reward to each context tuple and to the
  decoder's target. Families whose tasks differ only in the reward (PointNav's goal, HalfCheetahVel's
  target velocity, Bandit) leave IIDA's dynamics-only ``z`` nothing to identify: ``s'`` does not depend
  on the task there. The PointNav settings turn it on and say so.
* Tier settings (ci budgets are far below the papers') are in ``agents/hyperparams/iida.toml``.
  Measured on PointNav at the ci tier (seed 0, ``tests/test_iida.py``, 279 s of one core): final
  return -10.6 on the test tasks, -10.7 already in episode 0 (``z`` sharpens within the first
  episode); the best goal-blind policy gets -14.6, no-context -14.5, PEARL -9.6.
* Not applicable: Bandit (the observation is constant, so ``(s, a, s')`` carries nothing, and its
  reward variant is a bandit, not dynamics identification).

## Randomness and files
A NumPy Generator and a torch Generator from ``meta_train``'s seed (tasks, batches, initial weights);
SB3 (the generator learner and PPO) runs inside :func:`metabench.agents.common.rng.seeded_globals`, so
its global seeding is undone on exit. ``save(path)`` writes ``config.json`` (config, spaces,
normalisation, trial length) and ``model.pt`` (encoder, decoder and PPO policy state_dicts, the
meta-test generator and the trial's context), read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from torch import nn

from metabench.agents import no_context
from metabench.agents.common.rng import seeded_globals
from metabench.agents.common.spaces import space_from_dict, space_to_dict
from metabench.protocol import Budget, Logger, Transition
from metabench.tasks import Task


@dataclasses.dataclass
class Config:
    """IIDA's hyperparameters (predictor: its configs; PPO: SB3's defaults)."""

    # stage 1: the generator policy
    generator: str = "no_context"
    """``"no_context"`` (agents/no_context.py's learner) or ``"random"`` actions."""
    generator_fraction: float = 0.3
    """Share of the env-step budget that trains the generator."""
    generator_net_arch: tuple[int, ...] = (64, 64)
    generator_train_freq: int = 1
    generator_gradient_steps: int = 1
    generator_learning_starts: int = 1_000
    # stage 2: the predictor
    rollout_fraction: float = 0.1
    """Share of the budget for the generator's rollouts (predictor data besides its training data)."""
    latent_size: int = 8
    encoder_hidden: tuple[int, ...] = (256,)
    decoder_hidden: tuple[int, ...] = (256, 256)
    context_size: int = 128
    context_reward: bool = False
    """Add r to the context tuples and the decoder's target (module docstring)."""
    predictor_lr: float = 1e-3
    predictor_batch: int = 64
    predictor_steps: int = 5_000
    predictor_val_fraction: float = 0.1
    # stage 3: PPO on [obs, z]
    episodes_per_trial: int | None = None
    """Episodes on one task per training trial; ``None``: the family's ``n_adapt + n_eval``."""
    net_arch: tuple[int, ...] = (64, 64)
    learning_rate: float = 3e-4
    n_steps: int = 2048
    batch_size: int = 64
    n_epochs: int = 10
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    explore_actions: str = "mean"
    """``act(explore=True)``: the policy's ``"mean"`` (mode) action or a ``"sample"``."""
    updates: bool = True
    """False skips every gradient step of the predictor and of PPO (learnability tests' control)."""
    log_every: int = 5_000
    torch_threads: int = 1
    device: str = "cpu"


def check_config(config: Config) -> None:
    """One-line errors for values IIDA cannot use, before any work is spent."""
    if config.generator not in ("no_context", "random"):
        raise ValueError(f"Config.generator must be 'no_context' or 'random', got {config.generator!r}")
    if config.explore_actions not in ("mean", "sample"):
        raise ValueError(f"Config.explore_actions must be 'mean' or 'sample', got {config.explore_actions!r}")
    for name in ("generator_fraction", "rollout_fraction", "predictor_val_fraction"):
        if not 0.0 <= getattr(config, name) < 1.0:
            raise ValueError(f"Config.{name} must lie in [0, 1), got {getattr(config, name)}")
    if config.generator_fraction + config.rollout_fraction >= 1.0:
        raise ValueError("Config.generator_fraction + rollout_fraction must be < 1 (PPO needs the rest)")
    for name in ("latent_size", "context_size", "predictor_batch", "n_steps", "batch_size"):
        if getattr(config, name) < 1:
            raise ValueError(f"Config.{name} must be >= 1, got {getattr(config, name)}")


# ------------------------------------------------------------------------------------ spaces
class TupleCodec:
    """Flat float vectors for the spaces IIDA handles: a Box observation flattened; a bounded Box
    action rescaled to [-1, 1], a Discrete one one-hot."""

    def __init__(self, obs_space: spaces.Space, act_space: spaces.Space):
        if not isinstance(obs_space, spaces.Box):
            raise TypeError(f"IIDA needs a Box observation space, got {obs_space}")
        if isinstance(act_space, spaces.Box):
            if not (np.isfinite(act_space.low).all() and np.isfinite(act_space.high).all()):
                raise ValueError(f"IIDA needs a bounded Box action space, got {act_space}")
            self.act_dim = int(np.prod(act_space.shape))
        elif isinstance(act_space, spaces.Discrete):
            self.act_dim = int(act_space.n)
        else:
            raise TypeError(f"IIDA needs a Box or Discrete action space, got {act_space}")
        self.obs_space, self.act_space = obs_space, act_space
        self.obs_dim = int(np.prod(obs_space.shape))

    def obs(self, obs: Any) -> np.ndarray:
        return np.asarray(obs, np.float32).ravel()

    def action(self, action: Any) -> np.ndarray:
        space = self.act_space
        if isinstance(space, spaces.Discrete):
            return np.eye(self.act_dim, dtype=np.float32)[int(action) - int(space.start)]
        a = np.asarray(action, np.float32).ravel()
        low, high = space.low.ravel(), space.high.ravel()
        return np.clip(2.0 * (a - low) / (high - low) - 1.0, -1.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------------------------ predictor
def mlp(in_dim: int, hidden: Sequence[int], out_dim: int) -> nn.Sequential:
    """ReLU MLP as IIDA's ``FeedForward`` (torch's default initialisation)."""
    sizes = [in_dim, *hidden]
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], out_dim))


class Predictor(nn.Module):
    """Encoder (per context tuple, mean-pooled to ``z``) and decoder ``[s, a, z] -> s'`` (and ``r``
    with ``context_reward``). ``latent_size = 0`` makes the no-context predictor ``[s, a] -> s'``,
    the yardstick of the tests."""

    def __init__(self, obs_dim: int, act_dim: int, config: Config, latent_size: int | None = None):
        super().__init__()
        self.latent = config.latent_size if latent_size is None else latent_size
        r = 1 if config.context_reward else 0
        self.tuple_dim = 2 * obs_dim + act_dim + r  # (s, a, [r,] s')
        self.target_dim = obs_dim + r
        self.encoder = mlp(self.tuple_dim, config.encoder_hidden, self.latent) if self.latent else None
        self.decoder = mlp(obs_dim + act_dim + self.latent, config.decoder_hidden, self.target_dim)

    def encode(self, tuples: torch.Tensor) -> torch.Tensor:
        """Per-tuple encodings ``(..., N, tuple_dim) -> (..., N, latent)``; ``z`` is their mean."""
        assert self.encoder is not None
        return self.encoder(tuples)

    def forward(self, sa: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """``sa`` ``(B, obs + act)`` and ``context`` ``(B, N, tuple_dim)`` -> the target ``(B, target)``."""
        if self.encoder is None or context is None:
            return self.decoder(sa)
        z = self.encode(context).mean(-2)
        return self.decoder(torch.cat([sa, z], -1))


class PredictorData:
    """Labelled transitions: flat arrays of ``(s, a, r, s')`` rows (normalised), the task each came from
    and whether it is a held-out target."""

    def __init__(self, codec: TupleCodec, rows: list[tuple[int, np.ndarray, np.ndarray, float, np.ndarray]]):
        o, a = codec.obs_dim, codec.act_dim
        self.obs_dim, self.act_dim = o, a
        task = np.array([t for t, *_ in rows], np.int64)
        raw = np.stack([np.concatenate([s, act, [r], s2]) for _, s, act, r, s2 in rows]).astype(np.float32)
        self.mean, self.std = raw.mean(0), raw.std(0) + 1e-6
        self.data = (raw - self.mean) / self.std
        self.task = task
        self.val = np.zeros(len(task), bool)

    def split(self, fraction: float, rng: np.random.Generator) -> None:
        """Hold out ``fraction`` of the rows as validation targets; per task, the train and held-out row
        indices as padded arrays (tasks with fewer than two train rows cannot give a context)."""
        self.val = rng.random(len(self.task)) < fraction
        train, val = [], []
        for t in np.unique(self.task):
            rows = np.flatnonzero(self.task == t)
            if (~self.val[rows]).sum() >= 2:
                train.append(rows[~self.val[rows]])
                val.append(rows[self.val[rows]])

        def padded(groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            out = np.zeros((len(groups), max([len(g) for g in groups] + [1])), np.int64)
            for i, g in enumerate(groups):
                out[i, : len(g)] = g
            return out, np.array([len(g) for g in groups], np.int64)

        self.train_rows, self.n_train = padded(train)
        self.val_rows, self.n_val = padded(val)

    @property
    def has_held_out(self) -> bool:
        return bool(len(self.n_val) and self.n_val.max() > 0)

    def tuples(self, idx: np.ndarray, context_reward: bool) -> np.ndarray:
        """Context tuples ``(s, a, [r,] s')`` of rows ``idx`` (any shape)."""
        o, a = self.obs_dim, self.act_dim
        d = self.data[idx]
        return d if context_reward else np.concatenate([d[..., : o + a], d[..., o + a + 1 :]], -1)

    def targets(self, idx: np.ndarray, context_reward: bool) -> np.ndarray:
        o, a = self.obs_dim, self.act_dim
        d = self.data[idx]
        s2 = d[..., o + a + 1 :]
        return np.concatenate([s2, d[..., o + a : o + a + 1]], -1) if context_reward else s2

    def batch(
        self, rng: np.random.Generator, n: int, n_ctx: int, held_out: bool, context_reward: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` targets (from the train or the held-out rows) with ``n_ctx`` context tuples each, drawn
        from the same task's train rows and never the target itself."""
        eligible = np.flatnonzero(self.n_val > 0) if held_out else np.arange(len(self.n_train))
        ti = eligible[rng.integers(len(eligible), size=n)]
        n_train = self.n_train[ti]
        ctx = (rng.random((n, n_ctx)) * n_train[:, None]).astype(np.int64)
        if held_out:
            k = (rng.random(n) * self.n_val[ti]).astype(np.int64)
            targets = self.val_rows[ti, k]
        else:
            k = (rng.random(n) * n_train).astype(np.int64)
            targets = self.train_rows[ti, k]
            ctx = (rng.random((n, n_ctx)) * (n_train - 1)[:, None]).astype(np.int64)
            ctx += ctx >= k[:, None]  # skip the target
        contexts = self.train_rows[ti[:, None], ctx]
        o, a = self.obs_dim, self.act_dim
        sa = torch.as_tensor(self.data[targets, : o + a])
        return (
            sa,
            torch.as_tensor(self.tuples(contexts, context_reward)),
            torch.as_tensor(self.targets(targets, context_reward)),
        )


def train_predictor(
    model: Predictor,
    data: PredictorData,
    config: Config,
    rng: np.random.Generator,
    steps: int,
) -> float:
    """IIDA's one-step MSE training; returns the last batch's loss."""
    opt = torch.optim.Adam(model.parameters(), lr=config.predictor_lr)
    loss = torch.tensor(math.nan)
    for _ in range(steps):
        n_ctx = int(rng.integers(1, config.context_size + 1))
        sa, ctx, target = data.batch(rng, config.predictor_batch, n_ctx, False, config.context_reward)
        loss = (model(sa, ctx) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach())


def held_out_error(
    model: Predictor, data: PredictorData, config: Config, rng: np.random.Generator, n: int = 2048
) -> float:
    """Mean squared one-step error on held-out targets, each with ``context_size`` context tuples."""
    with torch.no_grad():
        sa, ctx, target = data.batch(rng, n, config.context_size, True, config.context_reward)
        return float((model(sa, ctx) - target).pow(2).mean())


# ------------------------------------------------------------------------------------ envs
class TaskRecorder(gym.Wrapper):
    """Draws a train task at every reset (its own generator) and records every transition with the
    index of the task it came from: the predictor's data."""

    def __init__(self, env: gym.Env, tasks: Sequence[Task], codec: TupleCodec, seed: int, max_rows: int):
        super().__init__(env)
        self.tasks, self.codec = list(tasks), codec
        self.rng = np.random.default_rng(seed)
        self.rows: list[tuple[int, np.ndarray, np.ndarray, float, np.ndarray]] = []
        self.max_rows = max_rows
        self._task, self._obs = 0, np.zeros(codec.obs_dim, np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._task = int(self.rng.integers(len(self.tasks)))
        obs, info = self.env.reset(seed=seed, options={"task": self.tasks[self._task]})
        self._obs = self.codec.obs(obs)
        return obs, info

    def step(self, action):
        obs, r, terminated, truncated, info = self.env.step(action)
        nxt = self.codec.obs(obs)
        if len(self.rows) < self.max_rows:
            self.rows.append((self._task, self._obs, self.codec.action(action), float(r), nxt))
        self._obs = nxt
        return obs, r, terminated, truncated, info


class TrialContext:
    """The context of one trial: per-tuple encodings of its last ``size`` transitions; ``z`` is their
    mean (zeros before the first transition)."""

    def __init__(
        self, predictor: Predictor, codec: TupleCodec, mean: np.ndarray, std: np.ndarray, config: Config
    ):
        self.predictor, self.codec, self.mean, self.std = predictor, codec, mean, std
        self.reward = config.context_reward
        self.codes: collections.deque[np.ndarray] = collections.deque(maxlen=config.context_size)
        self.latent = predictor.latent

    def clear(self) -> None:
        self.codes.clear()

    def add(self, obs: Any, action: Any, reward: float, next_obs: Any) -> None:
        c = self.codec
        raw = np.concatenate([c.obs(obs), c.action(action), [reward], c.obs(next_obs)]).astype(np.float32)
        row = (raw - self.mean) / self.std
        if not self.reward:
            o, a = c.obs_dim, c.act_dim
            row = np.concatenate([row[: o + a], row[o + a + 1 :]])
        with torch.inference_mode():
            self.codes.append(
                self.predictor.encode(torch.as_tensor(row[None], dtype=torch.float32))[0].numpy()
            )

    def z(self) -> np.ndarray:
        if not self.codes:
            return np.zeros(self.latent, np.float32)
        return np.mean(np.stack(self.codes), 0).astype(np.float32)


class LatentContextEnv(gym.Wrapper):
    """PPO's env: ``[obs, z]`` with ``z`` from the trial's transitions; a trial is
    ``episodes_per_trial`` episodes on one train task (drawn with the wrapper's generator)."""

    def __init__(self, env: gym.Env, tasks: Sequence[Task], context: TrialContext, episodes: int, seed: int):
        super().__init__(env)
        self.tasks, self.context, self.episodes = list(tasks), context, episodes
        self.rng = np.random.default_rng(seed)
        low = np.full(context.codec.obs_dim + context.latent, -np.inf, np.float32)
        self.observation_space = spaces.Box(low, -low, dtype=np.float32)
        self._episode, self._task, self._obs = episodes, None, None

    def _observe(self, obs: Any) -> np.ndarray:
        return np.concatenate([self.context.codec.obs(obs), self.context.z()]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        if self._episode >= self.episodes or self._task is None:  # a new trial
            self._task = self.tasks[int(self.rng.integers(len(self.tasks)))]
            self._episode = 0
            self.context.clear()
        self._episode += 1
        obs, info = self.env.reset(seed=seed, options={"task": self._task})
        self._obs = obs
        return self._observe(obs), info

    def step(self, action):
        obs, r, terminated, truncated, info = self.env.step(action)
        self.context.add(self._obs, action, float(r), obs)
        self._obs = obs
        return self._observe(obs), r, terminated, truncated, info


class _CurveCallback(BaseCallback):
    def __init__(self, log: Logger, every: int, offset: int):
        super().__init__()
        self.metabench_log, self.every, self.offset = log, max(1, every), offset

    def _on_step(self) -> bool:
        if self.num_timesteps % self.every == 0 and len(self.model.ep_info_buffer) > 0:
            returns = [float(ep["r"]) for ep in self.model.ep_info_buffer]
            self.metabench_log.log(self.offset + self.num_timesteps, episode_return=float(np.mean(returns)))
        return True


# ------------------------------------------------------------------------------------ the agent
class IIDAAgent:
    """IIDA behind the metabench protocol (see the module docstring)."""

    oracle: ClassVar[bool] = False

    def __init__(self, config: Config):
        check_config(config)
        self.config = config
        self.codec: TupleCodec | None = None
        self.predictor: Predictor | None = None
        self.ppo: PPO | None = None
        self.context: TrialContext | None = None
        self.mean = self.std = np.zeros(0, np.float32)
        self.episodes_per_trial = 0
        self.test_gen = torch.Generator().manual_seed(0)
        #: what the last meta_train measured: env steps per stage, predictor errors, seconds
        self.stats: dict[str, float] = {}

    # -------------------------------------------------------------------------- meta-training
    def meta_train(
        self,
        make_env: Callable[[], gym.Env],
        tasks: Sequence[Task],
        budget: Budget,
        *,
        seed: int,
        log: Logger,
    ) -> None:
        c = self.config
        if not tasks:
            raise ValueError("IIDA.meta_train needs at least one train task")
        torch.set_num_threads(c.torch_threads)
        rng = np.random.default_rng(seed)
        self.test_gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        start = time.monotonic()
        total = budget.env_steps
        probe = make_env()
        try:
            self.codec = TupleCodec(probe.observation_space, probe.action_space)
            base = type(probe.unwrapped)
            family_trial = int(getattr(base, "n_adapt", 10)) + int(getattr(base, "n_eval", 3))
        finally:
            probe.close()
        self.episodes_per_trial = c.episodes_per_trial or family_trial
        with seeded_globals(int(rng.integers(2**31))):
            rows, used = self._collect(make_env, tasks, total, rng, log)
            data = PredictorData(self.codec, rows)
            data.split(c.predictor_val_fraction, rng)
            self.mean, self.std = data.mean, data.std
            self.predictor = Predictor(self.codec.obs_dim, self.codec.act_dim, c)
            steps = c.predictor_steps if c.updates else 0
            loss = train_predictor(self.predictor, data, c, rng, steps)
            for p in self.predictor.parameters():
                p.requires_grad_(False)  # frozen from here on
            val_error = held_out_error(self.predictor, data, c, rng) if data.has_held_out else math.nan
            log.log(used, predictor_loss=loss, predictor_val_error=val_error)
            self.context = TrialContext(self.predictor, self.codec, self.mean, self.std, c)
            ppo_steps = self._train_ppo(make_env, tasks, total - used, rng, log, used)
        self.stats = {
            "env_steps_generator_and_data": float(used),
            "env_steps_ppo": float(ppo_steps),
            "predictor_val_error": val_error,
            "wall_s": time.monotonic() - start,
        }
        self.begin_trial()

    def _collect(
        self,
        make_env: Callable[[], gym.Env],
        tasks: Sequence[Task],
        total: int,
        rng: np.random.Generator,
        log: Logger,
    ) -> tuple[list[tuple[int, np.ndarray, np.ndarray, float, np.ndarray]], int]:
        """Stages 1 and 2's data: the generator's training and rollout transitions, task-labelled."""
        c, codec = self.config, self.codec
        assert codec is not None
        env = TaskRecorder(make_env(), tasks, codec, int(rng.integers(2**31)), total)
        used = 0
        try:
            generator = None
            if c.generator == "no_context":
                gen_config = no_context.Config(
                    net_arch=c.generator_net_arch,
                    train_freq=c.generator_train_freq,
                    gradient_steps=c.generator_gradient_steps,
                    learning_starts=c.generator_learning_starts,
                    learning_rate=3e-4 if c.updates else 0.0,
                    torch_threads=c.torch_threads,
                    device=c.device,
                )
                algo = no_context.choose_algo(gen_config, env.action_space)
                n_gen = int(c.generator_fraction * total)
                generator, n_gen = no_context.build_model(
                    gen_config, algo, env, n_gen, int(rng.integers(2**31))
                )
                if n_gen > 0:
                    generator.learn(total_timesteps=n_gen)
                    used += n_gen
                generator.policy.set_training_mode(False)
            # rollouts of the generator (sampled actions), or of random actions
            n_roll = int(c.rollout_fraction * total)
            env.action_space.seed(int(rng.integers(2**31)))
            n = 0
            while n < n_roll:
                obs, _ = env.reset()
                done = False
                while not done and n < n_roll:
                    if generator is None:
                        action = env.action_space.sample()
                    else:
                        action, _ = generator.predict(obs, deterministic=False)
                    obs, _, terminated, truncated, _ = env.step(action)
                    n += 1
                    done = terminated or truncated
            used += n
        finally:
            env.close()
        log.log(used, predictor_transitions=float(len(env.rows)))
        return env.rows, used

    def _train_ppo(
        self,
        make_env: Callable[[], gym.Env],
        tasks: Sequence[Task],
        total: int,
        rng: np.random.Generator,
        log: Logger,
        offset: int,
    ) -> int:
        c = self.config
        assert self.context is not None
        env = LatentContextEnv(
            make_env(), tasks, self.context, self.episodes_per_trial, int(rng.integers(2**31))
        )
        n_steps = max(2, min(c.n_steps, total))
        steps = total - total % n_steps  # PPO collects n_steps at a time: never past the budget
        self.ppo = PPO(
            "MlpPolicy",
            env,
            learning_rate=c.learning_rate if c.updates else 0.0,
            n_steps=n_steps,
            batch_size=min(c.batch_size, n_steps),
            n_epochs=c.n_epochs,
            gamma=c.gamma,
            gae_lambda=c.gae_lambda,
            clip_range=c.clip_range,
            ent_coef=c.ent_coef,
            policy_kwargs={"net_arch": list(c.net_arch)},
            device=c.device,
            verbose=0,
        )
        if steps > 0:
            self.ppo.learn(total_timesteps=steps, callback=_CurveCallback(log, c.log_every, offset))
        env.close()
        self.ppo.policy.set_training_mode(False)
        return steps

    # ----------------------------------------------------------------------------- meta-test
    def begin_trial(self) -> None:
        if self.context is None:
            raise RuntimeError("IIDAAgent.begin_trial called before meta_train or load")
        self.context.clear()

    def act(self, obs: Any, *, explore: bool) -> Any:
        if self.ppo is None or self.context is None or self.codec is None:
            raise RuntimeError("IIDAAgent.act called before meta_train or load")
        x = np.concatenate([self.codec.obs(obs), self.context.z()])[None].astype(np.float32)
        sample = explore and self.config.explore_actions == "sample"
        with torch.no_grad():
            dist = self.ppo.policy.get_distribution(torch.as_tensor(x)).distribution
            space = self.codec.act_space
            if isinstance(space, spaces.Discrete):
                probs = dist.probs[0]
                k = (
                    int(torch.multinomial(probs, 1, generator=self.test_gen))
                    if sample
                    else int(probs.argmax())
                )
                return np.int64(int(space.start) + k)
            mean = dist.mean[0]
            if sample:
                mean = mean + dist.stddev[0] * torch.randn(mean.shape, generator=self.test_gen)
        a = mean.numpy().reshape(space.shape)
        return np.clip(a, space.low, space.high).astype(space.dtype)

    def observe(self, transition: Transition) -> None:
        assert self.context is not None
        self.context.add(transition.obs, transition.action, transition.reward, transition.next_obs)

    def end_episode(self) -> None:
        pass  # the context spans the trial

    # ------------------------------------------------------------------------------ save/load
    def save(self, path: str | Path) -> None:
        if self.ppo is None or self.predictor is None or self.codec is None or self.context is None:
            raise RuntimeError("IIDAAgent.save called before meta_train")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "config": dataclasses.asdict(self.config),
            "observation_space": space_to_dict(self.codec.obs_space),
            "action_space": space_to_dict(self.codec.act_space),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "episodes_per_trial": self.episodes_per_trial,
        }
        (path / "config.json").write_text(json.dumps(meta, indent=1))
        codes = list(self.context.codes)
        state = {
            "predictor": self.predictor.state_dict(),
            "ppo_policy": self.ppo.policy.state_dict(),
            "test_generator": {"state": self.test_gen.get_state()},
            "context": torch.as_tensor(np.stack(codes) if codes else np.zeros((0, self.predictor.latent))),
        }
        torch.save(state, path / "model.pt")

    @classmethod
    def load(cls, path: str | Path) -> IIDAAgent:
        path = Path(path)
        meta = json.loads((path / "config.json").read_text())
        fields = {f.name for f in dataclasses.fields(Config)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items() if k in fields}
        agent = cls(Config(**values))
        c = agent.config
        obs_space, act_space = (
            space_from_dict(meta["observation_space"]),
            space_from_dict(meta["action_space"]),
        )
        agent.codec = TupleCodec(obs_space, act_space)
        agent.mean = np.asarray(meta["mean"], np.float32)
        agent.std = np.asarray(meta["std"], np.float32)
        agent.episodes_per_trial = int(meta["episodes_per_trial"])
        state = torch.load(path / "model.pt", weights_only=True)
        agent.predictor = Predictor(agent.codec.obs_dim, agent.codec.act_dim, c)
        agent.predictor.load_state_dict(state["predictor"])
        agent.predictor.requires_grad_(False)
        agent.context = TrialContext(agent.predictor, agent.codec, agent.mean, agent.std, c)
        agent.context.codes.extend(state["context"].numpy().astype(np.float32))
        # PPO is rebuilt from the spaces alone (an env that only carries them) and its weights loaded
        latent_obs = spaces.Box(-np.inf, np.inf, (agent.codec.obs_dim + c.latent_size,), np.float32)
        agent.ppo = PPO(
            "MlpPolicy",
            _SpacesOnly(latent_obs, act_space),
            n_steps=2,
            batch_size=2,
            policy_kwargs={"net_arch": list(c.net_arch)},
            device=c.device,
        )
        agent.ppo.policy.load_state_dict(state["ppo_policy"])
        agent.ppo.policy.set_training_mode(False)
        agent.test_gen.set_state(state["test_generator"]["state"])
        return agent


class _SpacesOnly(gym.Env):
    """An env that only carries spaces, for rebuilding a saved PPO policy (never stepped)."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space):
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        return self.observation_space.sample(), {}

    def step(self, action):
        raise RuntimeError("a loaded IIDA policy acts through IIDAAgent.act, never by stepping this env")


def make_agent(config: Config) -> IIDAAgent:
    return IIDAAgent(config)
