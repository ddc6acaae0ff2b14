"""CEMRL: continuous environment meta-RL with a Gaussian-mixture task inference (Bing, Lerch, Huang,
Knoll: "Meta-Reinforcement Learning in Non-Stationary and Dynamic Environments", IEEE TPAMI 2022).

CEMRL infers the task from the **last T transitions** and recomputes its latent ``z`` at *every step*
from that sliding window, so ``z`` follows a task that changes inside an episode. Task inference and
control are trained apart: a variational encoder-decoder learns to reconstruct the environment
(next state and reward), and a soft actor-critic learns on ``[s, z]`` with ``z`` a label in the
replay buffer: **no RL gradient reaches the encoder**.

This file reads top to bottom: config and tiers, the encoder and decoder, the windowed replay
buffer, the SAC on ``[s, z]``, the agent (meta-training, then the meta-test protocol), save/load.

## What follows the official code (``zhenshan-bing/cemrl``: ``configs/default.py``,
## ``configs/cheetah-non-stationary-vel.json``, ``cerml/*.py``)
* Context: the ``T`` transitions ``(s, a, r, s')`` *before* the current step (``time_steps``, 10 in
  the cheetah configs), normalised per field by the replay buffer's mean and std (recomputed every
  epoch after data collection), zero-padded at the start of an episode. During collection and at
  meta-test ``z`` is recomputed before every action from that window (``RolloutWorker.rollout``).
* Encoder (``EncoderMixtureModelTransitionSharedY``, the cheetah configs' ``transitionSharedY``): a
  shared MLP (two hidden layers and an output layer, all of width ``net_complex_enc_dec x (2|S| + |A|
  + 1)``) encodes each transition of the window alone; a linear layer and a softmax give class
  probabilities over ``K = num_classes`` base tasks, averaged over the window (merge mode ``"add"``);
  per class a linear head gives one Gaussian factor per transition, multiplied over the window. At
  inference ``z`` is the mean of the most likely class's Gaussian.
* Decoder (``DecoderMDP``): two MLPs of two hidden layers of width ``net_complex_enc_dec x (|S| + |A| +
  |z|)``, predicting the current transition's ``s'`` (its first ``decoder_state_dims`` entries: the
  cheetah configs' ``state_reconstruction_clip``) and ``r`` from ``(s, a, z)``, all normalised.
* ELBO (``ReconstructionTrainer.training_step``): ``sum_k q(y=k|x) [-(w_s ||s' - s'^||^2 + w_r (r -
  r^)^2) - alpha_kl_z KL(q(z|x,k) || N(k, prior_sigma^2))] - beta_kl_y KL(q(y|x) || Uniform(K))``,
  ``z`` drawn from class k's Gaussian with the reparameterisation trick. The weights start at
  ``(1, d) / (1 + d)`` (``d`` the decoded state dimensions) and every ``eval_interval`` steps become
  ``(L_s, d L_r) / (L_s + d L_r)`` from the losses on a batch of training points. Early stopping: a
  fixed ``train_val_percent`` of the transitions is for validation; every ``eval_interval`` steps the
  validation reconstruction error (``z`` = inferred mean) is measured, the best encoder and decoder are
  kept, training stops ``early_stopping_threshold`` steps after the last improvement, and the best
  pair is restored (in memory; the original writes temporary files).
* Relabelling (``Relabeler``): after each encoder training every transition's ``z`` in the buffer is
  recomputed from its window. SAC's ``next z`` is the transition's own ``z``, as ``cerml/sac.py``
  does (``new_task_z = task_z.clone()``).
* SAC (rlkit's ``sac_v2`` in ``cerml/sac.py``): twin Q-functions with Polyak-averaged targets,
  automatic entropy tuning with target entropy ``-|A| x target_entropy_factor``, three hidden layers
  of 300, Adam 3e-4, discount 0.99, tau 5e-3. This is Stable-Baselines3's SAC, reused here: it trains
  from this file's buffer (:class:`LatentReplay` stands in for SB3's replay buffer), on observations
  ``[s, z]`` in which ``z`` is a number from the buffer, so no SAC loss can reach the encoder.
* Loop (``CEMRLAlgorithm.train``): ``num_transitions_initial`` transitions on every train task, then per
  epoch: ``num_transitions_per_episode`` transitions on each of ``num_train_tasks_per_episode`` train
  tasks (a random permutation's first ones), normalisation statistics, encoder training
  (``num_reconstruction_steps``), relabelling, ``num_policy_steps`` SAC steps. Collection samples
  actions from the policy; an episode is cut short when a task's transitions are reached.

## Pitfalls of the original not copied
* Its task sampler reseeds the global RNG (``np.random.seed(1337)``) so that its 30 evaluation
  velocities equal its first 30 training velocities. Here tasks come from the frozen splits and every
  draw from ``meta_train``'s seed: a NumPy Generator (tasks, batches, validation split), a torch
  Generator (initial weights, ``z`` samples), and SB3's SAC, which draws from the global generators,
  runs inside :func:`metabench.agents.common.rng.seeded_globals`, seeded from the run's seed (the
  caller's generator states are restored afterwards).
* Its product of Gaussians takes the softplus output, documented as a standard deviation, as a
  variance. Here the softplus output is the standard deviation and its square the variance.
* During collection its window starts as zeros in *normalised* space while its training windows pad
  with zeros in *raw* space (normalised afterwards to ``-mean/std``). Here both pad with zeros in
  normalised space.

## Meta-test (``begin_trial`` / ``act`` / ``observe`` / ``end_episode``)
``begin_trial`` empties the window. ``act`` infers ``z`` from the window (the last ``T`` observed
transitions) and acts on ``[obs, z]``: the policy's mean action (``explore_actions="mean"``, CEMRL's
deterministic evaluation) or a sample (``"sample"``); evaluation episodes always use the mean.
``observe`` appends the transition. ``end_episode`` empties the window (CEMRL's rollouts start from a
zero window), unless ``context_across_episodes`` keeps the last ``T`` transitions of the trial. So
CEMRL adapts within an episode: on a stationary family its zero-shot and final returns are alike.

## Actions
Box action spaces only (CEMRL, its paper and SB3's SAC are continuous-control): Bandit and TabularMDP,
whose actions are ``Discrete``, are refused with one line. Actions in the buffer and the context are
the policy's, in [-1, 1]; SB3 rescales them to the env's bounds.

## Where ours differs from the paper (tiers)
* The loop stops when the tier's env-step budget (or wall-clock budget) is spent; collection is cut at
  the budget mid-episode (a cut transition is not terminal, so it still bootstraps).
* The buffer holds every transition of the run (the original's holds 10M).
* The ci tier (``agents/hyperparams/cemrl.toml``) is far smaller than the paper: small networks and
  batches, discount 0.9, per epoch 10 tasks x 40 transitions (100 on PointNavNonStationary, 400 on the
  non-stationary cheetah), 150 encoder-decoder steps and 300 SAC steps (400 on PointNavNonStationary,
  1,000 on the cheetah, whose encoder-decoder is 3 x its input wide instead of 10 x). Epochs run until
  the family's env-step budget is spent (``num_epochs`` is only a cap). Measured (seed 0, a loaded
  2-core machine, so CPU times are high): the cheetah's ci settings cost 56 CPU-seconds for a 9k-step
  slice with 2 epochs, about 17 CPU-minutes extrapolated to the 200k budget (~40 epochs). On
  PointNavNonStationary, on the train tasks with 500 SAC steps an epoch, 50k env steps (21k SAC steps,
  380 CPU-seconds) gave a train return of -63 to -77 and -79 on 10 train tasks' evaluation episodes: not
  yet better than the goal-blind no-context agent's -70 (its ci record: -70.0 on the test tasks, PEARL
  -71.6). A full ci run (~77k SAC steps) has not been made: whether CEMRL beats them there is open.
  ``tests/test_cemrl.py`` on budget slices (seed 0): PointNav 10k env steps, final return -15.78
  (updates off -20.00, goal-blind -14.56); PointNavNonStationary 20k, return -72.15 (updates off
  -100.49), |dz| 0.894 across a jump against 0.186 within a goal's segment.

## Files
``save(path)`` writes ``config.json`` (config, spaces, normalisation statistics) and ``model.pt``
(state_dicts of the encoder, the decoder and SB3's SAC policy, the meta-test generator's state and the
window in progress), read back with ``torch.load(weights_only=True)``. Nothing is pickled.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.logger import Logger as SB3Logger
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from torch import nn

from metabench.agents.common.nets import MLP, product_of_gaussians
from metabench.agents.common.rng import seeded_globals
from metabench.agents.common.spaces import space_from_dict, space_to_dict
from metabench.protocol import Budget, Logger, Transition
from metabench.tasks import Task


@dataclasses.dataclass
class Config:
    """CEMRL's hyperparameters; defaults are ``configs/cheetah-non-stationary-vel.json`` over
    ``configs/default.py``."""

    time_steps: int = 10
    """T: transitions in the sliding context window."""
    latent_size: int = 1
    num_classes: int = 1
    """K: base-task classes of the Gaussian mixture (2 in the cheetah-dir configs)."""
    net_complex_enc_dec: float = 10.0
    """Encoder and decoder widths, as multiples of their input sizes."""
    decoder_state_dims: int | None = None
    """The decoder predicts the first this many entries of s' (``state_reconstruction_clip``, 8 for
    the cheetah); ``None``: all."""
    use_state_diff: bool = False
    """The decoder predicts s' - s instead of s'."""
    prior_sigma: float = 0.5
    alpha_kl_z: float = 1e-3
    beta_kl_y: float = 1e-3
    lr_encoder: float = 3e-4
    lr_decoder: float = 3e-4
    batch_size_reconstruction: int = 256
    train_val_percent: float = 0.8
    eval_interval: int = 50
    early_stopping_threshold: int = 500
    num_epochs: int = 301
    num_reconstruction_steps: int = 5000
    num_policy_steps: int = 2000
    num_train_tasks_per_episode: int = 20
    """Train tasks that collect data per epoch."""
    num_transitions_initial: int = 800
    """Transitions per train task before training starts."""
    num_transitions_per_episode: int = 800
    """Transitions per collecting task per epoch."""
    max_path_length: int | None = None
    """Episode cap during meta-training; ``None``: the env's ``max_episode_steps``."""
    batch_size_policy: int = 256
    batch_size_relabel: int = 1024
    sac_hidden_sizes: tuple[int, ...] = (300, 300, 300)
    sac_lr: float = 3e-4
    discount: float = 0.99
    tau: float = 5e-3
    target_entropy_factor: float = 1.0
    use_data_normalization: bool = True
    context_across_episodes: bool = False
    """Meta-test: keep the window across the episodes of a trial (CEMRL empties it every episode)."""
    explore_actions: str = "mean"
    """``act(explore=True)``: the policy's ``"mean"`` action or a ``"sample"``."""
    updates: bool = True
    """False skips every gradient step (a negative control for the learnability tests)."""
    log_every: int = 1
    torch_threads: int = 1
    device: str = "cpu"


def check_config(config: Config) -> None:
    """One-line errors for values CEMRL cannot use, before any work is spent."""
    if config.explore_actions not in ("mean", "sample"):
        raise ValueError(f"Config.explore_actions must be 'mean' or 'sample', got {config.explore_actions!r}")
    positive = (
        "time_steps",
        "latent_size",
        "num_classes",
        "batch_size_reconstruction",
        "batch_size_policy",
        "batch_size_relabel",
        "eval_interval",
        "num_train_tasks_per_episode",
    )
    for name in positive:
        if getattr(config, name) < 1:
            raise ValueError(f"Config.{name} must be >= 1, got {getattr(config, name)}")
    if not 0.0 < config.train_val_percent < 1.0:
        raise ValueError(f"Config.train_val_percent must lie in (0, 1), got {config.train_val_percent}")
    if config.net_complex_enc_dec <= 0:
        raise ValueError(f"Config.net_complex_enc_dec must be > 0, got {config.net_complex_enc_dec}")


# ------------------------------------------------------------------------------------ networks
class MixtureEncoder(nn.Module):
    """q(y, z | window): CEMRL's ``transitionSharedY`` Gaussian-mixture encoder (module docstring)."""

    def __init__(self, in_dim: int, shared_dim: int, latent: int, n_classes: int, generator: torch.Generator):
        super().__init__()
        self.latent, self.n_classes = latent, n_classes
        self.shared = MLP(in_dim, (shared_dim, shared_dim), shared_dim, generator)  # rlkit's Mlp
        self.class_head = nn.Linear(shared_dim, n_classes)
        self.gauss_heads = nn.Linear(shared_dim, n_classes * 2 * latent)  # K linear heads, batched
        with torch.no_grad():  # torch's default initialisation, drawn from our generator
            for layer in (self.class_head, self.gauss_heads):
                bound = 1.0 / math.sqrt(shared_dim)
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)

    def encode_rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each transition alone, ``(..., in)`` -> its class probabilities ``(..., K)`` and per class
        its Gaussian factor: means and variances ``(..., K, latent)``."""
        m = self.shared(rows)
        p = F.softmax(self.class_head(m), -1)
        out = self.gauss_heads(m).unflatten(-1, (self.n_classes, 2 * self.latent))  # (..., K, 2L)
        mu, std = out[..., : self.latent], F.softplus(out[..., self.latent :])
        # the softplus output is a standard deviation: its square is the factor's variance
        return p, mu, std.pow(2)

    @staticmethod
    def merge(
        p: torch.Tensor, mu: torch.Tensor, var: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The window's factors ``(B, T, K)``, ``(B, T, K, L)`` -> class probabilities averaged over
        the window (merge mode ``"add"``), ``(B, K)``, and per class the product of the Gaussians."""
        mu_k, var_k = product_of_gaussians(mu.transpose(-3, -2), var.transpose(-3, -2))
        return p.mean(-2), mu_k, var_k

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B, T, in)`` -> class probabilities ``(B, K)``, and per class the product over the window
        of the transitions' Gaussians: means and variances ``(B, K, latent)``."""
        return self.merge(*self.encode_rows(window))

    @staticmethod
    def pick(y: torch.Tensor, mu_k: torch.Tensor) -> torch.Tensor:
        """``z``: the mean of the most likely class's Gaussian, ``(B, latent)``."""
        k = y.argmax(-1)
        return mu_k[torch.arange(len(k), device=k.device), k]

    def infer(self, window: torch.Tensor) -> torch.Tensor:
        """``z``: the mean of the most likely class's Gaussian, ``(B, latent)``."""
        y, mu_k, _ = self(window)
        return self.pick(y, mu_k)


class Decoder(nn.Module):
    """CEMRL's ``DecoderMDP``: s' (or its first ``state_dims`` entries) and r from (s, a, z)."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        latent: int,
        state_dims: int,
        net_complex: float,
        gen: torch.Generator,
    ):
        super().__init__()
        in_dim = obs_dim + act_dim + latent
        width = int(in_dim * net_complex)
        self.state = MLP(in_dim, (width, width), state_dims, gen)
        self.reward = MLP(in_dim, (width, width), 1, gen)

    def forward(self, s: torch.Tensor, a: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([s, a, z], -1)
        return self.state(x), self.reward(x)


# ---------------------------------------------------------------------------------- replay buffer
class WindowBuffer:
    """Every transition of meta-training in arrays, with what a sliding window needs: the index of
    its episode's first transition. A row's window is the ``T`` transitions before it in its episode,
    zero-padded (in normalised space) where the episode has fewer. Each row also has its relabelled
    ``z`` and whether it belongs to the validation split of the encoder training."""

    def __init__(self, obs_dim: int, act_dim: int, latent: int, capacity: int):
        self.obs_dim, self.act_dim, self.capacity = obs_dim, act_dim, capacity
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.act = np.zeros((capacity, act_dim), np.float32)
        self.rew = np.zeros((capacity, 1), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.term = np.zeros((capacity, 1), np.float32)
        self.z = np.zeros((capacity, latent), np.float32)
        self.start = np.zeros(capacity, np.int64)
        self.val = np.zeros(capacity, bool)
        self.size = 0
        # normalisation: per-field mean and std of (s, a, r, s'), identity until the first stats
        width = 2 * obs_dim + act_dim + 1
        self.mean, self.std = np.zeros(width, np.float32), np.ones(width, np.float32)
        self._normalised: np.ndarray | None = None  # cache of normalised_rows()

    def add(self, obs, act, rew: float, next_obs, term: bool, start: int, val: bool) -> None:
        i = self.size
        if i >= self.capacity:
            raise RuntimeError("CEMRL's buffer is full: it is sized to the env-step budget")
        self.obs[i], self.act[i], self.rew[i, 0] = obs, act, rew
        self.next_obs[i], self.term[i, 0], self.start[i], self.val[i] = next_obs, term, start, val
        self.size += 1

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """The transitions ``idx`` as context rows ``(s, a, r, s')``, not normalised."""
        return np.concatenate([self.obs[idx], self.act[idx], self.rew[idx], self.next_obs[idx]], -1)

    def update_stats(self) -> None:
        rows = self.rows(np.arange(self.size))
        self.mean, self.std = rows.mean(0), rows.std(0) + 1e-9
        self._normalised = None

    def normalise(self, rows: np.ndarray) -> np.ndarray:
        return ((rows - self.mean) / self.std).astype(np.float32)

    def normalised_rows(self) -> np.ndarray:
        """Every transition as a normalised context row, and after them (at index ``size``) a row of
        zeros, the padding; kept until the buffer or its statistics change."""
        if self._normalised is None or len(self._normalised) != self.size + 1:
            rows = self.normalise(self.rows(np.arange(self.size)))
            self._normalised = np.concatenate([rows, np.zeros((1, rows.shape[1]), np.float32)])
        return self._normalised

    def window_indices(self, idx: np.ndarray, T: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows of the windows of ``idx``, ``(len(idx), T)`` oldest first, and whether each lies
        in the episode (the others are padding)."""
        offsets = np.arange(T, 0, -1)  # t-T, ..., t-1
        j = idx[:, None] - offsets[None]
        valid = j >= self.start[idx][:, None]
        return np.maximum(j, 0), valid

    def windows(self, idx: np.ndarray, T: int) -> np.ndarray:
        """``(len(idx), T, width)`` normalised windows, oldest first, zeros before the episode start."""
        j, valid = self.window_indices(idx, T)
        return self.normalised_rows()[np.where(valid, j, self.size)]


class LatentReplay:
    """What SB3's SAC samples from instead of its own replay buffer: ``[s, z]`` and ``[s', z]`` (the
    transition's relabelled ``z``, for s' too as in CEMRL), the action in [-1, 1], reward and
    ``terminated`` as ``dones`` (time-limit truncations bootstrap)."""

    def __init__(self, buffer: WindowBuffer, rng: np.random.Generator, device: torch.device):
        self.buffer, self.rng, self.device = buffer, rng, device

    def sample(self, batch_size: int, env: Any = None) -> ReplayBufferSamples:
        b = self.buffer
        idx = self.rng.integers(0, b.size, size=batch_size)

        def t(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(x, device=self.device)

        return ReplayBufferSamples(
            observations=t(np.concatenate([b.obs[idx], b.z[idx]], -1)),
            actions=t(b.act[idx]),
            next_observations=t(np.concatenate([b.next_obs[idx], b.z[idx]], -1)),
            dones=t(b.term[idx]),
            rewards=t(b.rew[idx]),
        )


# -------------------------------------------------------------------------------------- the SAC
class _SpacesOnly(gym.Env):
    """An env that only carries spaces: SB3 builds its networks from an env's spaces, and CEMRL's SAC
    is never stepped by SB3 (it trains from :class:`LatentReplay`)."""

    def __init__(self, observation_space: spaces.Box, action_space: spaces.Box):
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        return self.observation_space.sample(), {}

    def step(self, action):
        raise RuntimeError("CEMRL's SAC is trained from its buffer, never stepped")


def build_sac(config: Config, obs_dim: int, action_space: spaces.Box, device: str) -> SAC:
    """SB3's SAC on ``[s, z]`` (CEMRL's rlkit ``sac_v2`` settings; module docstring)."""
    latent_obs = spaces.Box(-np.inf, np.inf, (obs_dim + config.latent_size,), np.float32)
    n_act = int(np.prod(action_space.shape))
    model = SAC(
        "MlpPolicy",
        _SpacesOnly(latent_obs, action_space),
        learning_rate=config.sac_lr,
        buffer_size=1,  # unused: LatentReplay replaces it
        gamma=config.discount,
        tau=config.tau,
        ent_coef="auto",
        target_entropy=-float(n_act) * config.target_entropy_factor,
        # fused Adam: the same update as Adam's loop over tensors, in fewer kernel calls
        policy_kwargs={"net_arch": list(config.sac_hidden_sizes), "optimizer_kwargs": {"fused": True}},
        device=device,
        verbose=0,
    )
    model.set_logger(SB3Logger(None, []))
    return model


# ------------------------------------------------------------------------------------- the agent
class CEMRLAgent:
    """CEMRL behind the metabench protocol (see the module docstring)."""

    oracle: ClassVar[bool] = False

    def __init__(self, config: Config):
        check_config(config)
        self.config = config
        self.device = torch.device(config.device)
        self.obs_dim = self.act_dim = 0
        self.obs_space: spaces.Box | None = None
        self.act_space: spaces.Box | None = None
        self.encoder: MixtureEncoder | None = None
        self.decoder: Decoder | None = None
        self.sac: SAC | None = None
        self.mean = self.std = np.zeros(0, np.float32)
        self.test_gen = torch.Generator().manual_seed(0)
        #: what the last meta_train used: env steps, epochs, seconds
        self.stats: dict[str, float] = {}
        # the trial in progress: normalised context rows, oldest first (at most T)
        self.window: list[np.ndarray] = []
        self.z = torch.zeros(1, config.latent_size)

    # ------------------------------------------------------------------------------- building
    def _build(self, obs_space: spaces.Space, act_space: spaces.Space, gen: torch.Generator) -> None:
        if not isinstance(obs_space, spaces.Box):
            raise TypeError(f"CEMRL needs a Box observation space, got {obs_space}")
        if not isinstance(act_space, spaces.Box):
            raise TypeError(
                f"CEMRL needs a Box action space (its SAC is continuous-control), got {act_space}; "
                "for Discrete actions use agents/pearl.py or agents/rl2.py"
            )
        if not (np.isfinite(act_space.low).all() and np.isfinite(act_space.high).all()):
            raise ValueError(f"CEMRL needs a bounded Box action space, got {act_space}")
        self.obs_space, self.act_space = obs_space, act_space
        self.obs_dim = int(np.prod(obs_space.shape))
        self.act_dim = int(np.prod(act_space.shape))
        dims = self.config.decoder_state_dims
        if dims is not None and not 1 <= dims <= self.obs_dim:
            raise ValueError(f"Config.decoder_state_dims must lie in [1, {self.obs_dim}], got {dims}")
        width = self._context_dim()
        self.mean, self.std = np.zeros(width, np.float32), np.ones(width, np.float32)
        self._make_nets(gen)

    def _state_dims(self) -> int:
        return self.config.decoder_state_dims or self.obs_dim

    def _context_dim(self) -> int:
        return 2 * self.obs_dim + self.act_dim + 1

    def _make_nets(self, gen: torch.Generator) -> None:
        c = self.config
        in_dim = self._context_dim()
        shared = int(in_dim * c.net_complex_enc_dec)
        self.encoder = MixtureEncoder(in_dim, shared, c.latent_size, c.num_classes, gen).to(self.device)
        self.decoder = Decoder(
            self.obs_dim, self.act_dim, c.latent_size, self._state_dims(), c.net_complex_enc_dec, gen
        ).to(self.device)
        assert self.act_space is not None
        self.sac = build_sac(c, self.obs_dim, self.act_space, c.device)
        self.sac.policy.set_training_mode(False)

    # ------------------------------------------------------------------------------- acting
    def _scale(self, env_action: Any) -> np.ndarray:
        """The env's action as the policy's, in [-1, 1]."""
        assert self.sac is not None
        a = np.asarray(env_action, np.float32).reshape(self.act_space.shape)  # type: ignore[union-attr]
        return np.clip(self.sac.policy.scale_action(a), -1.0, 1.0).ravel().astype(np.float32)

    def _infer_z(self, window: np.ndarray) -> torch.Tensor:
        """``z`` from one ``(T, width)`` normalised window, ``(1, latent)``."""
        return self._infer_z_batch(window[None])

    def _infer_z_batch(self, windows: np.ndarray) -> torch.Tensor:
        """``z`` from ``(B, T, width)`` normalised windows, ``(B, latent)``."""
        assert self.encoder is not None
        with torch.inference_mode():
            return self.encoder.infer(torch.as_tensor(windows, device=self.device))

    def _policy_actions(
        self, obs: np.ndarray, z: torch.Tensor, deterministic: bool, gen: torch.Generator
    ) -> np.ndarray:
        """The policy's actions in [-1, 1] on ``[obs, z]``, a batch ``(B, |S|)``, ``(B, latent)``; a
        sample draws from ``gen``."""
        assert self.sac is not None
        o = torch.as_tensor(np.asarray(obs, np.float32).reshape(len(z), -1), device=self.device)
        with torch.inference_mode():
            mean, log_std, _ = self.sac.actor.get_action_dist_params(torch.cat([o, z], -1))
            if deterministic:
                pre = mean
            else:
                eps = torch.randn(mean.shape, generator=gen).to(self.device)
                pre = mean + log_std.exp() * eps
            return torch.tanh(pre).cpu().numpy()

    def _policy_action(
        self, obs: Any, z: torch.Tensor, deterministic: bool, gen: torch.Generator
    ) -> np.ndarray:
        """The policy's action in [-1, 1] on ``[obs, z]`` (one observation); a sample draws from ``gen``."""
        return self._policy_actions(np.ravel(obs)[None], z, deterministic, gen)[0]

    def _to_env_action(self, a: np.ndarray) -> np.ndarray:
        assert self.sac is not None and self.act_space is not None
        env_a = self.sac.policy.unscale_action(a).reshape(self.act_space.shape)
        return np.clip(env_a, self.act_space.low, self.act_space.high).astype(self.act_space.dtype)

    def _window_array(self, rows: Sequence[np.ndarray]) -> np.ndarray:
        """The last ``T`` normalised rows, zero-padded in front to ``(T, width)``."""
        T = self.config.time_steps
        w = np.zeros((T, self._context_dim()), np.float32)
        if rows:
            recent = np.stack(list(rows)[-T:])
            w[T - len(recent) :] = recent
        return w

    def _normalise_row(self, obs: Any, act: np.ndarray, rew: float, next_obs: Any) -> np.ndarray:
        row = np.concatenate(
            [np.asarray(obs, np.float32).ravel(), act, [rew], np.asarray(next_obs, np.float32).ravel()]
        )
        return ((row - self.mean) / self.std).astype(np.float32)

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
            raise ValueError("CEMRL.meta_train needs at least one train task")
        torch.set_num_threads(c.torch_threads)
        rng = np.random.default_rng(seed)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        self.test_gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        sb3_seed = int(rng.integers(2**31))
        env = make_env()
        envs = [env]  # the collection envs: this one, and more made by the trainer
        try:
            # SB3 draws from the global generators: seeded inside, restored on exit
            with seeded_globals(sb3_seed):
                self._build(env.observation_space, env.action_space, gen)
                spec_len = env.spec.max_episode_steps if env.spec is not None else None
                path_len = c.max_path_length or spec_len
                if path_len is None:
                    raise ValueError("the env has no max_episode_steps: set Config.max_path_length")
                _Trainer(self, make_env, envs, list(tasks), budget, rng, gen, path_len, seed, log).run()
        finally:
            for e in envs:
                e.close()
        self.begin_trial()

    # ----------------------------------------------------------------------------- meta-test
    def begin_trial(self) -> None:
        """Forget the task: empty the window."""
        if self.sac is None:
            raise RuntimeError("CEMRLAgent.begin_trial called before meta_train or load")
        self.window = []
        self.z = self._infer_z(self._window_array(self.window))

    def act(self, obs: Any, *, explore: bool) -> np.ndarray:
        if self.sac is None:
            raise RuntimeError("CEMRLAgent.act called before meta_train or load")
        self.z = self._infer_z(self._window_array(self.window))  # z follows the last T transitions
        deterministic = not explore or self.config.explore_actions == "mean"
        return self._to_env_action(self._policy_action(obs, self.z, deterministic, self.test_gen))

    def observe(self, transition: Transition) -> None:
        act = self._scale(transition.action)
        row = self._normalise_row(transition.obs, act, transition.reward, transition.next_obs)
        self.window.append(row)
        del self.window[: -self.config.time_steps]

    def end_episode(self) -> None:
        if not self.config.context_across_episodes:
            self.window = []

    # ------------------------------------------------------------------------------ save/load
    def save(self, path: str | Path) -> None:
        """Write ``path/config.json`` and ``path/model.pt`` (module docstring)."""
        if self.sac is None or self.encoder is None or self.decoder is None:
            raise RuntimeError("CEMRLAgent.save called before meta_train")
        assert self.obs_space is not None and self.act_space is not None
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "config": dataclasses.asdict(self.config),
            "observation_space": space_to_dict(self.obs_space),
            "action_space": space_to_dict(self.act_space),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
        }
        (path / "config.json").write_text(json.dumps(meta, indent=1))
        window = np.stack(self.window) if self.window else np.zeros((0, self._context_dim()), np.float32)
        state = {
            "encoder": self.encoder.state_dict(),
            "decoder": self.decoder.state_dict(),
            "sac_policy": self.sac.policy.state_dict(),
            "test_generator": {"state": self.test_gen.get_state()},
            "window": torch.as_tensor(window),
        }
        torch.save(state, path / "model.pt")

    @classmethod
    def load(cls, path: str | Path) -> CEMRLAgent:
        path = Path(path)
        meta = json.loads((path / "config.json").read_text())
        fields = {f.name for f in dataclasses.fields(Config)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items() if k in fields}
        agent = cls(Config(**values))
        obs_space, act_space = (
            space_from_dict(meta["observation_space"]),
            space_from_dict(meta["action_space"]),
        )
        agent._build(obs_space, act_space, torch.Generator().manual_seed(0))
        state = torch.load(path / "model.pt", map_location=agent.device, weights_only=True)
        assert agent.encoder is not None and agent.decoder is not None and agent.sac is not None
        agent.encoder.load_state_dict(state["encoder"])
        agent.decoder.load_state_dict(state["decoder"])
        agent.sac.policy.load_state_dict(state["sac_policy"])
        agent.sac.policy.set_training_mode(False)
        agent.test_gen.set_state(state["test_generator"]["state"])
        agent.mean = np.asarray(meta["mean"], np.float32)
        agent.std = np.asarray(meta["std"], np.float32)
        agent.window = list(state["window"].numpy())
        agent.z = agent._infer_z(agent._window_array(agent.window))
        return agent


# ------------------------------------------------------------------------------------ training
class _Episode:
    """A meta-training episode in progress: its transitions and its sliding window (the last ``T``
    normalised rows, zero-padded in front)."""

    def __init__(self, obs: np.ndarray, max_length: int, T: int, width: int):
        self.obs_seq: list[np.ndarray] = [obs]
        self.acts: list[np.ndarray] = []
        self.rews: list[float] = []
        self.terms: list[bool] = []
        self.vals: list[bool] = []
        self.max_length, self.ret = max_length, 0.0
        self.window = np.zeros((T, width), np.float32)

    @property
    def obs(self) -> np.ndarray:
        return self.obs_seq[-1]

    @property
    def length(self) -> int:
        return len(self.acts)

    def add(self, act: np.ndarray, rew: float, next_obs: np.ndarray, term: bool, val: bool, row: np.ndarray):
        self.obs_seq.append(next_obs)
        self.acts.append(act)
        self.rews.append(rew)
        self.terms.append(term)
        self.vals.append(val)
        self.ret += rew
        self.window = np.concatenate([self.window[1:], row[None]])


class _Trainer:
    """CEMRL's meta-training loop (``CEMRLAlgorithm.train``; module docstring)."""

    def __init__(
        self,
        agent: CEMRLAgent,
        make_env: Callable[[], gym.Env],
        envs: list[gym.Env],
        tasks: list[Task],
        budget: Budget,
        rng: np.random.Generator,
        gen: torch.Generator,
        path_len: int,
        seed: int,
        log: Logger,
    ):
        self.agent, self.c, self.make_env, self.tasks = agent, agent.config, make_env, tasks
        self.budget, self.rng, self.gen, self.path_len, self.log = budget, rng, gen, path_len, log
        # the collection envs (the caller closes them) and the seed of each one's first reset
        self.envs: list[gym.Env] = envs
        self.env_seeds: list[int | None] = [seed] * len(envs)
        self.steps = 0
        self.exhausted = False
        self.start_time = time.monotonic()
        self.buffer = WindowBuffer(agent.obs_dim, agent.act_dim, self.c.latent_size, max(budget.env_steps, 1))
        assert agent.encoder is not None and agent.decoder is not None and agent.sac is not None
        self.enc_opt = torch.optim.Adam(agent.encoder.parameters(), lr=self.c.lr_encoder, fused=True)
        self.dec_opt = torch.optim.Adam(agent.decoder.parameters(), lr=self.c.lr_decoder, fused=True)
        agent.sac.replay_buffer = LatentReplay(self.buffer, rng, agent.device)  # type: ignore[assignment]
        # CEMRL's initial loss weights: state 1, reward d (the decoded state dimensions), normalised
        d = agent._state_dims()
        self.factor_reward = float(d)
        self.w_state, self.w_reward = 1.0 / (1.0 + d), d / (1.0 + d)
        self.returns: list[float] = []

    # ------------------------------------------------------------------------- budget
    def out_of_time(self) -> bool:
        wall = self.budget.wall_clock_s
        return wall is not None and time.monotonic() - self.start_time > 0.95 * wall

    # ---------------------------------------------------------------------- collection
    def _env(self, slot: int) -> gym.Env:
        """The env of collection slot ``slot`` (made on first use; its first reset is seeded)."""
        while len(self.envs) <= slot:
            self.envs.append(self.make_env())
            self.env_seeds.append(int(self.rng.integers(2**31)))
        return self.envs[slot]

    def collect(self, task_ids: Sequence[int], n: int) -> None:
        """``n`` transitions on each train task of ``task_ids`` (episodes cut to fit), z from each
        episode's sliding window. The tasks' episodes run side by side, one env each, so that a
        step's windows and observations go through the encoder and the policy as one batch (CEMRL's
        rollout coordinator runs its tasks in parallel workers); each episode enters the buffer whole
        when it ends. At most ``num_train_tasks_per_episode`` envs run at once."""
        T, width = self.c.time_steps, self.agent._context_dim()
        n_slots = max(1, min(self.c.num_train_tasks_per_episode, len(self.tasks)))
        for lo in range(0, len(task_ids), n_slots):
            if self.exhausted:
                return
            self._collect_side_by_side(list(task_ids[lo : lo + n_slots]), n, T, width)

    def _collect_side_by_side(self, task_ids: list[int], n: int, T: int, width: int) -> None:
        a = self.agent
        due = [n] * len(task_ids)  # transitions still to collect per slot
        episodes: dict[int, _Episode] = {}
        while any(due) or episodes:
            room = self.budget.env_steps - self.steps
            if room <= 0 or self.out_of_time():  # the budget ends: cut episodes enter the buffer
                self.exhausted = True
                for ep in episodes.values():
                    self._store(ep)
                return
            for slot, task_i in enumerate(task_ids):  # a new episode where one is due
                if slot not in episodes and due[slot] > 0:
                    env, seed = self._env(slot), self.env_seeds[slot]
                    self.env_seeds[slot] = None
                    obs, _ = env.reset(seed=seed, options={"task": self.tasks[task_i]})
                    episodes[slot] = _Episode(np.ravel(obs), min(self.path_len, due[slot]), T, width)
            slots = sorted(episodes)[:room]
            windows = np.stack([episodes[i].window for i in slots])
            obs = np.stack([episodes[i].obs for i in slots])
            z = a._infer_z_batch(windows)
            acts = a._policy_actions(obs, z, deterministic=False, gen=self.gen)
            is_val = self.rng.random(len(slots)) >= self.c.train_val_percent
            for k, slot in enumerate(slots):
                ep = episodes[slot]
                next_obs, r, terminated, truncated, _ = self.envs[slot].step(a._to_env_action(acts[k]))
                self.steps += 1
                due[slot] -= 1
                flat_next = np.ravel(next_obs)
                row = a._normalise_row(ep.obs, acts[k], float(r), flat_next)
                ep.add(acts[k], float(r), flat_next, bool(terminated), bool(is_val[k]), row)
                if terminated or truncated or ep.length >= ep.max_length:
                    self.returns.append(ep.ret)
                    self._store(episodes.pop(slot))

    def _store(self, ep: _Episode) -> None:
        """A whole (or cut) episode into the buffer: its transitions are contiguous there."""
        b, start = self.buffer, self.buffer.size
        for t in range(ep.length):
            b.add(ep.obs_seq[t], ep.acts[t], ep.rews[t], ep.obs_seq[t + 1], ep.terms[t], start, ep.vals[t])

    # ------------------------------------------------------------------- reconstruction
    def _batch(self, points: np.ndarray, n: int) -> dict[str, torch.Tensor]:
        """Windows and the current transitions (normalised) of ``n`` points drawn from ``points``."""
        b, dev = self.buffer, self.agent.device
        idx = points[self.rng.integers(0, len(points), size=n)]
        cur = b.normalised_rows()[idx]
        o, a = self.agent.obs_dim, self.agent.act_dim
        s, act, r, s2 = cur[:, :o], cur[:, o : o + a], cur[:, o + a : o + a + 1], cur[:, o + a + 1 :]
        target = (s2 - s) if self.c.use_state_diff else s2
        t = {"window": b.windows(idx, self.c.time_steps), "s": s, "a": act, "r": r}
        t["s_target"] = target[:, : self.agent._state_dims()]
        return {k: torch.as_tensor(v, device=dev) for k, v in t.items()}

    def elbo_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, float, float]:
        """The negative ELBO (mean over the batch), and the state and reward errors."""
        a, c = self.agent, self.c
        assert a.encoder is not None and a.decoder is not None
        y, mu_k, var_k = a.encoder(batch["window"])
        K = c.num_classes
        eps = torch.randn(mu_k.shape, generator=self.gen).to(mu_k.device)
        z_k = mu_k + var_k.sqrt() * eps  # (B, K, L): one reparameterised sample per class
        B = len(y)
        rep = {k: batch[k].repeat_interleave(K, 0) for k in ("s", "a", "s_target", "r")}
        s_hat, r_hat = a.decoder(rep["s"], rep["a"], z_k.reshape(B * K, -1))
        state_err = (s_hat - rep["s_target"]).pow(2).sum(-1).view(B, K)
        reward_err = (r_hat - rep["r"]).pow(2).sum(-1).view(B, K)
        nll = self.w_state * state_err + self.w_reward * reward_err
        # KL(N(mu, var) || N(k, prior_sigma^2)) per class, summed over the latent dimensions
        prior_mu = torch.arange(K, dtype=mu_k.dtype, device=mu_k.device).view(1, K, 1)
        p_var = c.prior_sigma**2
        kl_z = 0.5 * (var_k / p_var + (mu_k - prior_mu).pow(2) / p_var - 1.0 - (var_k / p_var).log()).sum(-1)
        kl_y = (y * (y.clamp(min=1e-12) * K).log()).sum(-1)  # KL(q(y|x) || Uniform(K))
        elbo = (y * (-nll - c.alpha_kl_z * kl_z)).sum(-1) - c.beta_kl_y * kl_y
        with torch.no_grad():
            errors = float((y * state_err).sum(-1).mean()), float((y * reward_err).sum(-1).mean())
        return -elbo.mean(), *errors

    def reconstruction_errors(self, points: np.ndarray) -> tuple[float, float]:
        """State and reward errors of a batch of ``points`` with z = the inferred mean (``validate``)."""
        a = self.agent
        assert a.encoder is not None and a.decoder is not None
        batch = self._batch(points, self.c.batch_size_reconstruction)
        with torch.no_grad():
            z = a.encoder.infer(batch["window"])
            s_hat, r_hat = a.decoder(batch["s"], batch["a"], z)
        state = (s_hat - batch["s_target"]).pow(2).sum(-1).mean()
        reward = (r_hat - batch["r"]).pow(2).sum(-1).mean()
        return float(state), float(reward)

    def train_encoder(self) -> dict[str, float]:
        """``ReconstructionTrainer.train``: ELBO steps, loss rebalancing and early stopping."""
        a, c, b = self.agent, self.c, self.buffer
        assert a.encoder is not None and a.decoder is not None
        points = np.arange(b.size)
        train, val = points[~b.val[: b.size]], points[b.val[: b.size]]
        if len(train) == 0 or len(val) == 0:
            return {}
        best, best_step = math.inf, 0
        best_state = (copy.deepcopy(a.encoder.state_dict()), copy.deepcopy(a.decoder.state_dict()))
        loss = math.nan
        for step in range(c.num_reconstruction_steps):
            if self.out_of_time():
                self.exhausted = True
                break
            if step % c.eval_interval == 0:
                val_s, val_r = self.reconstruction_errors(val)
                tr_s, tr_r = self.reconstruction_errors(train)
                weights = np.array([tr_s, tr_r * self.factor_reward])
                if weights.sum() > 0:
                    self.w_state, self.w_reward = weights / weights.sum()
                if val_s + val_r < best:
                    best, best_step = val_s + val_r, step
                    best_state = (
                        copy.deepcopy(a.encoder.state_dict()),
                        copy.deepcopy(a.decoder.state_dict()),
                    )
                if step - best_step > c.early_stopping_threshold:
                    break
            neg_elbo, _, _ = self.elbo_loss(self._batch(train, c.batch_size_reconstruction))
            self.enc_opt.zero_grad()
            self.dec_opt.zero_grad()
            neg_elbo.backward()
            self.dec_opt.step()
            self.enc_opt.step()
            loss = float(neg_elbo.detach())
        # a last check, then the best pair
        val_s, val_r = self.reconstruction_errors(val)
        if val_s + val_r < best:
            best = val_s + val_r
            best_state = (copy.deepcopy(a.encoder.state_dict()), copy.deepcopy(a.decoder.state_dict()))
        a.encoder.load_state_dict(best_state[0])
        a.decoder.load_state_dict(best_state[1])
        return {"neg_elbo": loss, "val_reconstruction": best}

    def relabel(self) -> None:
        """Every transition's z from its window, with the trained encoder (``Relabeler.relabel``).

        The encoder encodes each transition of a window alone and then merges the window's factors, so
        each transition is encoded once (with the zero row of the padding) and every window merges the
        factors of its rows: the same z as encoding the windows (``T`` times fewer encoder passes)."""
        a, b, T = self.agent, self.buffer, self.c.time_steps
        assert a.encoder is not None
        n, chunk = b.size, self.c.batch_size_relabel
        with torch.inference_mode():
            rows = torch.as_tensor(b.normalised_rows(), device=a.device)  # row n: the padding
            parts = [a.encoder.encode_rows(rows[lo : lo + 16 * chunk]) for lo in range(0, n + 1, 16 * chunk)]
            p, mu, var = (torch.cat(x) for x in zip(*parts, strict=True))
            for lo in range(0, n, chunk):
                j, valid = b.window_indices(np.arange(lo, min(lo + chunk, n)), T)
                j = torch.as_tensor(np.where(valid, j, n), device=a.device)
                y, mu_k, _ = a.encoder.merge(p[j], mu[j], var[j])
                b.z[lo : lo + len(j)] = a.encoder.pick(y, mu_k).cpu().numpy()

    # -------------------------------------------------------------------------- the loop
    def run(self) -> None:
        a, c, b, n_tasks = self.agent, self.c, self.buffer, len(self.tasks)
        assert a.sac is not None
        self.collect(range(n_tasks), c.num_transitions_initial)  # initial collection on every train task
        epoch = 0
        for epoch in range(c.num_epochs):
            self.returns = []
            if not self.exhausted:
                chosen = self.rng.permutation(n_tasks)[: c.num_train_tasks_per_episode]
                self.collect([int(i) for i in chosen], c.num_transitions_per_episode)
            if b.size == 0:
                break
            if c.use_data_normalization:
                b.update_stats()
                a.mean, a.std = b.mean, b.std
            scalars: dict[str, float] = {}
            if c.updates:
                scalars.update(self.train_encoder())
                self.relabel()
                if not self.out_of_time() and c.num_policy_steps > 0:
                    a.sac.train(gradient_steps=c.num_policy_steps, batch_size=c.batch_size_policy)
                    a.sac.policy.set_training_mode(False)
                    for key in ("actor_loss", "critic_loss", "ent_coef"):
                        value = a.sac.logger.name_to_value.get(f"train/{key}")
                        if value is not None:
                            scalars[key] = float(value)
            if (epoch + 1) % c.log_every == 0 or self.exhausted or epoch == c.num_epochs - 1:
                if self.returns:
                    scalars["train_return"] = float(np.mean(self.returns))
                scalars["epoch"] = float(epoch)
                self.log.log(self.steps, **scalars)
            if self.exhausted:
                break
        a.stats = {
            "env_steps": float(self.steps),
            "epochs": float(epoch + 1),
            "wall_s": time.monotonic() - self.start_time,
        }


def make_agent(config: Config) -> CEMRLAgent:
    return CEMRLAgent(config)
