"""PEARL: probabilistic embeddings for actor-critic meta-RL (Rakelly et al., ICML 2019).

Off-policy meta-RL by posterior inference over a latent task variable ``z``. An encoder maps every
context transition ``c_n = (s, a, r)`` (plus ``s'`` with ``use_next_obs_in_context``) to a Gaussian
factor ``N(mu_n, sigma_n^2)``; the posterior is their product,
``q(z | c_1..N) = prod_n N(mu_n, sigma_n^2)``, i.e. ``sigma^2 = 1 / sum_n sigma_n^-2`` and
``mu = sigma^2 * sum_n mu_n / sigma_n^2`` (per latent dimension; as in the paper's code the prior is
not one of the factors), so the order of the context does not matter. A soft actor-critic whose actor
and critics take ``(s, z)`` learns on top; the encoder is trained by the critic's Bellman error plus
``kl_lambda * KL(q(z | c) || N(0, I))``.

This file reads top to bottom: config and tiers, networks, replay buffers, the agent (meta-training,
then the meta-test protocol), save/load. Plain torch; SB3's SAC is not reused because every network
takes ``z`` and the critic's gradient must reach the encoder, which SB3's policies cannot express.

## What follows the official code (``katerakelly/oyster``: ``configs/default.py``,
## ``rlkit/torch/sac/{sac,agent}.py``, ``rlkit/core/rl_algorithm.py``)
* Config defaults are ``configs/default.py``: latent 5, three hidden layers of 300 units (encoder
  3 x 200), meta-batch 16 tasks, RL batch 256 per task, context batch 64 per task, Adam 3e-4
  everywhere, discount 0.99, tau 0.005, reward scale 5, KL weight 0.1, policy mean/log-std L2
  regularisation 1e-3, 500 iterations of: 5 tasks sampled, 400 prior + 400 extra-RL posterior steps
  each, then 2000 gradient steps; 2000 initial steps per train task. The standard tier is
  ``configs/cheetah-vel.json`` (2000 initial, 400 prior, 600 extra-RL posterior steps, context batch
  100, two exploration episodes at meta-test).
* The context is ``(s, a, r)``: ``use_next_obs_in_context=False`` is the official default (only the
  rand-params Walker/Hopper runs set it, where dynamics differ between tasks). On PointNav ``s' = s + a``
  adds nothing; on HalfCheetahVel the reward already carries the task.
* SAC as in PEARL (SAC v1): twin Q-functions, a state-value function V with a Polyak-averaged target
  V, ``Q target = reward_scale * r + (1 - terminated) * discount * V_target(s', z)``, ``V target =
  min(Q1, Q2)(s, a~pi) - log pi``, policy loss ``log pi - min(Q1, Q2)``. The entropy temperature is
  fixed at 1 and the reward scale sets the trade-off (no automatic entropy tuning), as in PEARL.
  Time-limit truncations do not cut the bootstrap; only ``terminated`` does.
* Gradients: the encoder gets the Q loss and the KL term; the policy and V see ``z`` detached.
* Separate batches: the context batch of a task comes from its *encoder* buffer, which is cleared
  every time the task is sampled for collection and then holds only that iteration's prior (and
  ``num_steps_posterior``) data; the RL batch comes from the task's full replay buffer. Both are drawn
  uniformly with replacement; the meta-batch's tasks are drawn with replacement from the train tasks.
* Data collection per iteration: ``num_tasks_sample`` train tasks; for each, ``num_steps_prior`` steps
  with ``z`` from the prior (re-drawn every episode), ``num_steps_posterior`` steps with ``z`` from the
  posterior (re-inferred from an encoder-buffer context batch after every ``update_post_train``
  episodes; the first episode starts from the prior, as in ``collect_data``), then
  ``num_extra_rl_steps_posterior`` steps likewise that go to the RL buffer only. Collection uses
  whole episodes, so a phase may overshoot its step count by up to one episode, as in rlkit.
* Networks: ReLU MLPs initialised as rlkit's (hidden weights U(+-1/sqrt(size[0])), biases 0.1,
  last layers U(+-3e-3), policy heads U(+-1e-3)); tanh-Gaussian policy with log-std clamped to
  [-20, 2]; actions in [-1, 1] are rescaled to the env's Box bounds (rlkit's ``NormalizedBoxEnv``);
  buffers and contexts hold the [-1, 1] action.

## Discrete actions (Bandit, TabularMDP)
PEARL is SAC-based and its paper has only continuous actions. For a ``Discrete`` action space the SAC
underneath becomes discrete SAC (Christodoulou, 2019, arXiv:1910.07207) with PEARL's fixed temperature
1 and reward scale: a categorical policy pi(. | s, z), twin critics Q(s, z) with one output per
action, V's target ``sum_a pi(a) (min Q(s, z)[a] - log pi(a))`` and the policy loss
``sum_a pi(a) (log pi(a) - min Q(s, z)[a])``, both exact expectations over the actions (no
reparameterisation). Actions are one-hot in the buffers and in the context ``(s, one-hot a, r)``;
the posterior, the encoder's training and the meta-test protocol are unchanged. Acting
"deterministically" takes the most probable action, so exploration at meta-test comes from drawing
``z`` (posterior sampling, Thompson-style on Bandit). The ci tier's values are PointNav's,
with more gradient steps per iteration on Bandit and TabularMDP (and TabularMDP's own latent size and
discount; ``agents/hyperparams/pearl.toml``).

## Meta-test (``begin_trial`` / ``act`` / ``observe`` / ``end_episode``)
``begin_trial`` empties the context and draws ``z`` from the prior. ``observe`` appends every
transition of the trial (adaptation and evaluation episodes alike; PEARL accumulates its whole
evaluation context). ``end_episode``: once ``num_exp_traj_eval`` episodes are done, infer the posterior
from the whole accumulated context; then draw a new ``z`` from the current distribution (prior before
that), so ``z`` is re-drawn after every episode. ``act(explore=True)`` acts on the drawn ``z`` with
the policy's mean action (PEARL evaluates with ``eval_deterministic=True``: exploration comes from
posterior sampling, not action noise; ``explore_actions="sample"`` samples actions instead).
``act(explore=False)`` uses the *posterior mean* of ``z`` (``eval_z="mean"``; ``"sample"`` keeps
PEARL's sampled ``z``) and the mean action: evaluation episodes should exploit what was inferred.

## Where ours differs from the paper
* Iterations run until the tier's env-step budget (or wall-clock budget) cannot take another whole
  episode (``num_iterations=None``; a number caps them); the iteration in progress still does its
  gradient steps. With the 2M-step standard budget the cheetah-vel settings run about 360 iterations
  (oyster's 500 would need 2.5M steps).
* ``meta_train`` refuses a ``num_exp_traj_eval`` above the family's ``n_adapt`` (the meta-test's
  exploration episodes): every evaluation episode would then act on the prior.
* Tasks whose buffers are still empty (a budget smaller than the initial collection) are not drawn
  into meta-batches.
* No recurrent encoder (rlkit's ``--rnn`` option) and so no ``embedding_mini_batch_size``.
* Tier and per-family settings live in ``agents/hyperparams/pearl.toml`` with what was tried: the
  standard tier is oyster's per-environment configs (point robot, sparse point robot, cheetah,
  ant, rand-params with ``use_next_obs_in_context``); the ci tier is far smaller (64-unit networks,
  small batches, discount 0.9, reward scale 10, Adam 3e-3, one gradient step per 5 env steps) so that
  a unit spends the family's whole ci budget in minutes of one core.
* The two Q-functions are evaluated as one batched network (:class:`TwinQ`). Adam is per
  parameter, so one Adam per backward pass with a parameter group per network (critics + encoder;
  policy + V) is the paper's four Adams. V's and the policy's losses, whose parameters are disjoint,
  share one backward pass; Q's weights are frozen in the policy's Q evaluation (its gradient reaches
  the action only).
* The standard tier keeps PEARL's network sizes and batch sizes: ~0.7M gradient steps of
  16 x 256 transitions through 300-unit networks, which wants a GPU (``device="auto"`` takes CUDA
  when there is one; on one CPU core a run takes days: ``docs/agents/pearl.md``).

## Randomness
Everything is drawn from ``meta_train``'s ``seed``: a NumPy Generator (task and batch choice), a
torch Generator (weight initialisation, ``z`` and action noise during training) and a second torch
Generator for meta-test (seeded from the first, saved with the agent, so a loaded agent draws the same
``z`` and acts identically). No global seeding. ``torch.set_num_threads(torch_threads)`` is the one
process-global setting.

## Files
``save(path)`` writes a directory: ``config.json`` (config, dimensions, action bounds) and
``model.pt`` (state_dicts of all networks, the meta-test generator state and the trial in progress:
context, posterior, ``z``), read back with ``torch.load(weights_only=True)``; the loaded agent acts
exactly as the saved one would have. Replay buffers and optimiser state are not saved: ``meta_train``
always starts afresh.
"""

from __future__ import annotations

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
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from metabench.agents.common.nets import MLP, product_of_gaussians
from metabench.protocol import Budget, Logger, Transition
from metabench.tasks import Task

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


@dataclasses.dataclass
class Config:
    """PEARL's hyperparameters; defaults are the official ``configs/default.py``."""

    latent_size: int = 5
    hidden_sizes: tuple[int, ...] = (300, 300, 300)
    """Actor, twin critics and V (``net_size`` x 3 in the paper's code)."""
    encoder_hidden_sizes: tuple[int, ...] = (200, 200, 200)
    meta_batch: int = 16
    """Tasks per gradient step."""
    num_iterations: int | None = None
    """Cap on iterations; ``None``: as many as the env-step budget allows (oyster's 500 iterations
    exceed its own 2M-step runs, so the budget ends them either way)."""
    num_initial_steps: int = 2000
    """Env steps per train task with ``z`` from the prior before training starts."""
    num_tasks_sample: int = 5
    num_steps_prior: int = 400
    num_steps_posterior: int = 0
    num_extra_rl_steps_posterior: int = 400
    num_train_steps_per_itr: int = 2000
    batch_size: int = 256
    """RL batch per task (from the full replay buffer)."""
    embedding_batch_size: int = 64
    """Context batch per task (from the recent-data encoder buffer)."""
    max_path_length: int | None = None
    """Episode cap during meta-training; ``None``: the env's ``max_episode_steps``."""
    discount: float = 0.99
    soft_target_tau: float = 0.005
    policy_lr: float = 3e-4
    qf_lr: float = 3e-4
    vf_lr: float = 3e-4
    context_lr: float = 3e-4
    reward_scale: float = 5.0
    kl_lambda: float = 0.1
    policy_mean_reg_weight: float = 1e-3
    policy_std_reg_weight: float = 1e-3
    use_information_bottleneck: bool = True
    """False: deterministic ``z`` = mean of the encoder outputs (no KL term)."""
    use_next_obs_in_context: bool = False
    update_post_train: int = 1
    """Episodes between posterior updates while collecting posterior data."""
    num_exp_traj_eval: int = 1
    """Meta-test episodes with ``z`` from the prior before posterior inference starts."""
    replay_buffer_size: int = 1_000_000
    """Per task (rlkit's ``MultiTaskReplayBuffer``)."""
    eval_z: str = "mean"
    """``act(explore=False)``: ``"mean"`` of the posterior or a ``"sample"`` (PEARL)."""
    explore_actions: str = "mean"
    """``act(explore=True)``: policy ``"mean"`` (PEARL's ``eval_deterministic``) or ``"sample"``."""
    updates: bool = True
    """False skips every gradient step (a negative control for the learnability test)."""
    log_every: int = 1
    """Report to the harness's logger every this many iterations."""
    torch_threads: int = 1
    device: str = "auto"
    """``"cpu"``, ``"cuda"``, ... or ``"auto"`` (CUDA when available). Random draws stay on CPU
    generators either way, so a run's draws do not depend on the device."""


# Tier and per-family settings: agents/hyperparams/pearl.toml (metabench.protocol.build_config).


def check_config(config: Config) -> None:
    """Clear errors for values PEARL cannot use."""
    if config.eval_z not in ("mean", "sample"):
        raise ValueError(f"Config.eval_z must be 'mean' or 'sample', got {config.eval_z!r}")
    if config.explore_actions not in ("mean", "sample"):
        raise ValueError(f"Config.explore_actions must be 'mean' or 'sample', got {config.explore_actions!r}")
    positive = ("latent_size", "meta_batch", "batch_size", "embedding_batch_size", "update_post_train")
    for name in positive:
        if getattr(config, name) < 1:
            raise ValueError(f"Config.{name} must be >= 1, got {getattr(config, name)}")
    if config.num_exp_traj_eval < 0:
        raise ValueError(f"Config.num_exp_traj_eval must be >= 0, got {config.num_exp_traj_eval}")
    per_iteration = config.num_steps_prior + config.num_steps_posterior + config.num_extra_rl_steps_posterior
    if config.num_iterations is None and (config.num_tasks_sample < 1 or per_iteration < 1):
        raise ValueError(
            "Config.num_iterations=None runs until the budget ends, so every iteration must collect data: "
            "set num_tasks_sample >= 1 and num_steps_prior/posterior/extra_rl_steps_posterior > 0"
        )


def check_family(config: Config, env: gym.Env) -> None:
    """The family's meta-test protocol must leave PEARL its exploration episodes: with
    ``num_exp_traj_eval`` above the family's ``n_adapt`` every evaluation episode would act on the
    prior (z from N(0, I)) instead of the posterior."""
    n_adapt = int(getattr(env.unwrapped, "n_adapt", 10))
    if config.num_exp_traj_eval > n_adapt:
        env_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        raise ValueError(
            f"PEARL's num_exp_traj_eval={config.num_exp_traj_eval} exceeds {env_id}'s n_adapt={n_adapt} "
            f"exploration episodes at meta-test; set num_exp_traj_eval <= {n_adapt} for this family "
            f'(agents/hyperparams/pearl.toml [<tier>."{env_id}"], or --config num_exp_traj_eval={n_adapt})'
        )


# ------------------------------------------------------------------------------------ networks
class TwinQ(nn.Module):
    """PEARL's two Q-functions, evaluated together with one batched matmul per layer (faster on CPU
    than two MLPs); each member is initialised as rlkit's MLP. ``forward``: ``(N, in) -> (2, N, out)``
    (``out`` is 1 for Q(s, a, z), the number of actions for discrete Q(s, z))."""

    def __init__(
        self, in_dim: int, hidden: Sequence[int], generator: torch.Generator, out_dim: int = 1, n: int = 2
    ):
        super().__init__()
        sizes = [in_dim, *hidden, out_dim]
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            w, b = torch.empty(n, fan_in, fan_out), torch.empty(n, 1, fan_out)
            if i == len(sizes) - 2:
                w.uniform_(-3e-3, 3e-3, generator=generator)
                b.uniform_(-3e-3, 3e-3, generator=generator)
            else:
                bound = 1.0 / math.sqrt(fan_out)  # as MLP: rlkit's fanin_init on the (out, in) weight
                w.uniform_(-bound, bound, generator=generator)
                b.fill_(0.1)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(0).expand(len(self.weights[0]), -1, -1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = F.relu(h)
        return h


class TanhGaussianPolicy(nn.Module):
    """pi(a | s, z): a Gaussian squashed by tanh into [-1, 1]."""

    def __init__(self, in_dim: int, hidden: Sequence[int], act_dim: int, generator: torch.Generator):
        super().__init__()
        self.net = MLP(in_dim, hidden, act_dim, generator, init_w=1e-3)  # ``last`` is the mean head
        self.log_std = nn.Linear(hidden[-1] if hidden else in_dim, act_dim)
        with torch.no_grad():
            self.log_std.weight.uniform_(-1e-3, 1e-3, generator=generator)
            self.log_std.bias.uniform_(-1e-3, 1e-3, generator=generator)

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """A reparameterised sample: (action, log_prob, mean, log_std)."""
        h = self.net.trunk(x)
        mean = self.net.last(h)
        log_std = self.log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX)
        std = log_std.exp()
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
        pre = mean + std * eps
        # log N(pre; mean, std) - log(1 - tanh(pre)^2), the latter in a stable form
        log_prob = (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - (2.0 * (math.log(2.0) - pre - F.softplus(-2.0 * pre))).sum(-1)
        return torch.tanh(pre), log_prob, mean, log_std

    def act(self, x: torch.Tensor, deterministic: bool, generator: torch.Generator | None) -> torch.Tensor:
        """An action without its log-probability (cheaper: used for acting)."""
        h = self.net.trunk(x)
        mean = self.net.last(h)
        if deterministic:
            return torch.tanh(mean)
        std = self.log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX).exp()
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
        return torch.tanh(mean + std * eps)


class CategoricalPolicy(nn.Module):
    """pi(a | s, z) over ``n`` discrete actions (discrete SAC, Christodoulou 2019): logits from an MLP
    initialised as the Gaussian policy's mean head."""

    def __init__(self, in_dim: int, hidden: Sequence[int], n_actions: int, generator: torch.Generator):
        super().__init__()
        self.net = MLP(in_dim, hidden, n_actions, generator, init_w=1e-3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole distribution: (probabilities, log-probabilities), each ``(N, n)``."""
        log_probs = F.log_softmax(self.net(x), -1)
        return log_probs.exp(), log_probs

    def act(self, x: torch.Tensor, deterministic: bool, generator: torch.Generator | None) -> torch.Tensor:
        """A one-hot action: the most probable one, or a sample."""
        logits = self.net(x)
        if deterministic:
            index = logits.argmax(-1)
        else:
            probs = F.softmax(logits, -1).cpu()
            index = torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(logits.device)
        return F.one_hot(index, logits.shape[-1]).to(logits.dtype)


class ContextEncoder(nn.Module):
    """q(z | c): one Gaussian factor per transition, combined by a product (or a mean without IB)."""

    def __init__(self, in_dim: int, hidden: Sequence[int], latent: int, ib: bool, generator: torch.Generator):
        super().__init__()
        self.latent, self.ib = latent, ib
        self.net = MLP(in_dim, hidden, 2 * latent if ib else latent, generator)

    def forward(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tasks, N, in_dim)`` -> posterior mean and variance, each ``(tasks, latent)``."""
        out = self.net(context)
        if not self.ib:
            mu = out.mean(-2)
            return mu, torch.zeros_like(mu)
        mu, var = out[..., : self.latent], F.softplus(out[..., self.latent :])
        return product_of_gaussians(mu, var)


def gaussian_kl_to_standard(mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, var) || N(0, I)), summed over every axis (PEARL sums over tasks too)."""
    return 0.5 * (var + mu.pow(2) - 1.0 - var.log()).sum()


# ---------------------------------------------------------------------------------- replay buffers
class MultiTaskBuffer:
    """Per-task replay buffers (rlkit's ``MultiTaskReplayBuffer``) in one array, so that a meta-batch
    is drawn with one gather. A row is ``[obs, action, reward, next obs, terminated]``, the action in
    [-1, 1] (Box) or one-hot (Discrete); each task is a ring of ``capacity`` rows, allocated by
    doubling as it fills."""

    def __init__(self, n_tasks: int, obs_dim: int, act_dim: int, capacity: int):
        self.obs_dim, self.act_dim, self.capacity = obs_dim, act_dim, capacity
        self.width = 2 * obs_dim + act_dim + 2
        self.data = np.zeros((n_tasks, min(capacity, 256), self.width), np.float32)
        self.size = np.zeros(n_tasks, np.int64)
        self.top = np.zeros(n_tasks, np.int64)

    def add(self, task: int, row: np.ndarray) -> None:
        allocated = self.data.shape[1]
        if self.top[task] == allocated and allocated < self.capacity:
            grow = min(self.capacity, 2 * allocated) - allocated
            self.data = np.concatenate(
                [self.data, np.zeros((len(self.data), grow, self.width), np.float32)], 1
            )
        self.data[task, self.top[task]] = row
        self.top[task] = (self.top[task] + 1) % self.capacity
        self.size[task] = min(self.size[task] + 1, self.capacity)

    def clear(self, task: int) -> None:
        self.size[task] = self.top[task] = 0

    def sample(self, rng: np.random.Generator, tasks: np.ndarray, n: int) -> np.ndarray:
        """``(len(tasks), n, width)`` rows drawn uniformly with replacement from each task's buffer."""
        idx = rng.integers(0, self.size[tasks][:, None], size=(len(tasks), n))
        return self.data[tasks[:, None], idx]

    def split(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        o, a = self.obs_dim, self.act_dim
        cuts = {"obs": (0, o), "act": (o, o + a), "rew": (o + a, o + a + 1)}
        cuts |= {"next_obs": (o + a + 1, 2 * o + a + 1), "term": (2 * o + a + 1, 2 * o + a + 2)}
        return {k: rows[..., i:j] for k, (i, j) in cuts.items()}


# ------------------------------------------------------------------------------------- the agent
class PEARLAgent:
    """PEARL behind the metabench protocol (see the module docstring)."""

    oracle: ClassVar[bool] = False

    def __init__(self, config: Config):
        check_config(config)
        self.config = config
        auto = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(auto if config.device == "auto" else config.device)
        self.obs_dim = self.act_dim = 0
        self.act_shape: tuple[int, ...] = ()
        self.act_low = self.act_high = np.zeros(0, np.float32)
        #: a Discrete action space's ``n`` and ``start``; ``n_actions == 0`` for a Box
        self.n_actions = self.act_start = 0
        self.encoder: ContextEncoder | None = None
        self.policy: TanhGaussianPolicy | CategoricalPolicy | None = None
        self.test_gen = torch.Generator().manual_seed(0)
        #: what the last meta_train used: env steps and seconds
        self.stats: dict[str, float] = {}
        # the trial in progress (begin_trial resets it)
        self.context: list[np.ndarray] = []
        self.episodes = 0
        self.z_mu = self.z_var = self.z = torch.zeros(1, config.latent_size)

    # ------------------------------------------------------------------------------- building
    def _build(self, obs_space: spaces.Space, act_space: spaces.Space, gen: torch.Generator) -> None:
        if not isinstance(obs_space, spaces.Box):
            raise TypeError(f"PEARL needs a Box observation space, got {obs_space}")
        if isinstance(act_space, spaces.Discrete):
            self.n_actions, self.act_start = int(act_space.n), int(act_space.start)
            self.act_dim = self.n_actions  # one-hot in the buffers and the context
        elif isinstance(act_space, spaces.Box):
            if not (np.isfinite(act_space.low).all() and np.isfinite(act_space.high).all()):
                raise ValueError(f"PEARL needs a bounded Box action space, got {act_space}")
            self.act_dim = int(np.prod(act_space.shape))
            self.act_shape = tuple(act_space.shape)
            self.act_low = act_space.low.astype(np.float32).ravel()
            self.act_high = act_space.high.astype(np.float32).ravel()
        else:
            raise TypeError(
                f"PEARL needs a Box or Discrete action space, got {act_space}; MultiDiscrete, "
                "MultiBinary and composite action spaces are not supported"
            )
        self.obs_dim = int(np.prod(obs_space.shape))
        self._make_nets(gen)

    @property
    def discrete(self) -> bool:
        return self.n_actions > 0

    def _context_dim(self) -> int:
        return self.obs_dim * (2 if self.config.use_next_obs_in_context else 1) + self.act_dim + 1

    def _make_nets(self, gen: torch.Generator) -> None:
        c = self.config
        sa_z = self.obs_dim + self.act_dim + c.latent_size
        self.encoder = ContextEncoder(
            self._context_dim(), c.encoder_hidden_sizes, c.latent_size, c.use_information_bottleneck, gen
        )
        s_z = self.obs_dim + c.latent_size
        if self.discrete:  # Q(s, z) has one output per action
            self.policy = CategoricalPolicy(s_z, c.hidden_sizes, self.n_actions, gen)
            self.qf = TwinQ(s_z, c.hidden_sizes, gen, out_dim=self.n_actions)
        else:
            self.policy = TanhGaussianPolicy(s_z, c.hidden_sizes, self.act_dim, gen)
            self.qf = TwinQ(sa_z, c.hidden_sizes, gen)
        self.vf = MLP(self.obs_dim + c.latent_size, c.hidden_sizes, 1, gen)
        self.target_vf = MLP(self.obs_dim + c.latent_size, c.hidden_sizes, 1, gen)
        self.target_vf.load_state_dict(self.vf.state_dict())
        for p in self.target_vf.parameters():
            p.requires_grad_(False)
        for net in self._nets().values():
            net.to(self.device)

    def _nets(self) -> dict[str, nn.Module]:
        assert self.encoder is not None and self.policy is not None
        return {
            "encoder": self.encoder,
            "policy": self.policy,
            "qf": self.qf,
            "vf": self.vf,
            "target_vf": self.target_vf,
        }

    # -------------------------------------------------------------------------- action scaling
    def _to_env_action(self, a: np.ndarray) -> Any:
        """The agent's action (in [-1, 1], or one-hot) as the env's."""
        if self.discrete:
            return np.int64(self.act_start + int(np.argmax(a)))
        env_a = self.act_low + (a + 1.0) * 0.5 * (self.act_high - self.act_low)
        return np.clip(env_a, self.act_low, self.act_high).reshape(self.act_shape)

    def _from_env_action(self, a: Any) -> np.ndarray:
        if self.discrete:
            return np.eye(self.n_actions, dtype=np.float32)[int(a) - self.act_start]
        a = np.asarray(a, np.float32).ravel()
        return np.clip(2.0 * (a - self.act_low) / (self.act_high - self.act_low) - 1.0, -1.0, 1.0)

    def _context_row(self, obs: Any, act: np.ndarray, rew: float, next_obs: Any) -> np.ndarray:
        parts = [np.asarray(obs, np.float32).ravel(), act, np.array([rew], np.float32)]
        if self.config.use_next_obs_in_context:
            parts.append(np.asarray(next_obs, np.float32).ravel())
        return np.concatenate(parts)

    def _posterior(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.encoder is not None
        return self.encoder(context)

    def _prior(self, n: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (n, self.config.latent_size)
        var = torch.ones if self.config.use_information_bottleneck else torch.zeros
        return torch.zeros(shape, device=self.device), var(shape, device=self.device)

    def _sample_z(self, mu: torch.Tensor, var: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return mu + var.sqrt() * torch.randn(mu.shape, generator=gen).to(self.device)

    def _policy_action(
        self, obs: Any, z: torch.Tensor, deterministic: bool, gen: torch.Generator
    ) -> np.ndarray:
        assert self.policy is not None
        o = torch.as_tensor(np.asarray(obs, np.float32).reshape(1, -1), device=self.device)
        with torch.inference_mode():
            a = self.policy.act(torch.cat([o, z], -1), deterministic, gen)
        return a[0].cpu().numpy()

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
            raise ValueError("PEARL.meta_train needs at least one train task")
        torch.set_num_threads(c.torch_threads)
        rng = np.random.default_rng(seed)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        self.test_gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        env = make_env()
        try:
            check_family(c, env)
            self._build(env.observation_space, env.action_space, gen)
            spec_len = env.spec.max_episode_steps if env.spec is not None else None
            path_len = c.max_path_length or spec_len
            if path_len is None:
                raise ValueError("the env has no max_episode_steps: set Config.max_path_length")
            trainer = _Trainer(self, env, list(tasks), budget, rng, gen, path_len, seed, log)
            trainer.run()
        finally:
            env.close()
        self.begin_trial()

    # ----------------------------------------------------------------------------- meta-test
    def begin_trial(self) -> None:
        """Forget the task: empty the context, z from the prior."""
        if self.policy is None:
            raise RuntimeError("PEARLAgent.begin_trial called before meta_train or load")
        self.context = []
        self.episodes = 0
        self.z_mu, self.z_var = self._prior()
        self.z = self._sample_z(self.z_mu, self.z_var, self.test_gen)

    def act(self, obs: Any, *, explore: bool) -> np.ndarray:
        if self.policy is None:
            raise RuntimeError("PEARLAgent.act called before meta_train or load")
        if explore:
            z, deterministic = self.z, self.config.explore_actions == "mean"
        else:
            z, deterministic = (self.z_mu if self.config.eval_z == "mean" else self.z), True
        return self._to_env_action(self._policy_action(obs, z, deterministic, self.test_gen))

    def observe(self, transition: Transition) -> None:
        act = self._from_env_action(transition.action)
        self.context.append(self._context_row(transition.obs, act, transition.reward, transition.next_obs))

    def end_episode(self) -> None:
        """After the exploration episodes, infer q(z | context) from the whole trial; re-draw z."""
        self.episodes += 1
        if self.episodes >= self.config.num_exp_traj_eval and self.context:
            ctx = torch.as_tensor(np.stack(self.context)[None], device=self.device)
            with torch.no_grad():
                self.z_mu, self.z_var = self._posterior(ctx)
        self.z = self._sample_z(self.z_mu, self.z_var, self.test_gen)

    # ------------------------------------------------------------------------------ save/load
    def save(self, path: str | Path) -> None:
        """Write ``path/config.json`` and ``path/model.pt`` (state_dicts; see the module docstring)."""
        if self.policy is None:
            raise RuntimeError("PEARLAgent.save called before meta_train")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "config": dataclasses.asdict(self.config),
            "obs_dim": self.obs_dim,
            "act_shape": list(self.act_shape),
            "act_low": self.act_low.tolist(),
            "act_high": self.act_high.tolist(),
            "n_actions": self.n_actions,
            "act_start": self.act_start,
        }
        (path / "config.json").write_text(json.dumps(meta, indent=1))
        state = {name: net.state_dict() for name, net in self._nets().items()}
        state["test_generator"] = {"state": self.test_gen.get_state()}
        # the trial in progress too, so that the loaded agent is the saved one mid-trial as well
        context = np.stack(self.context) if self.context else np.zeros((0, self._context_dim()), np.float32)
        state["trial"] = {
            "context": torch.as_tensor(context),
            "episodes": torch.tensor(self.episodes),
            "z_mu": self.z_mu.cpu(),
            "z_var": self.z_var.cpu(),
            "z": self.z.cpu(),
        }
        torch.save(state, path / "model.pt")

    @classmethod
    def load(cls, path: str | Path) -> PEARLAgent:
        path = Path(path)
        meta = json.loads((path / "config.json").read_text())
        fields = {f.name: f for f in dataclasses.fields(Config)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items() if k in fields}
        agent = cls(Config(**values))
        agent.obs_dim = meta["obs_dim"]
        agent.act_shape = tuple(meta["act_shape"])
        agent.n_actions, agent.act_start = meta["n_actions"], meta["act_start"]
        agent.act_dim = agent.n_actions if agent.discrete else int(np.prod(agent.act_shape))
        agent.act_low = np.asarray(meta["act_low"], np.float32)
        agent.act_high = np.asarray(meta["act_high"], np.float32)
        agent._make_nets(torch.Generator().manual_seed(0))
        state = torch.load(path / "model.pt", map_location=agent.device, weights_only=True)
        for name, net in agent._nets().items():
            net.load_state_dict(state[name])
        agent.test_gen.set_state(state["test_generator"]["state"])
        trial = state["trial"]
        agent.context = list(trial["context"].numpy())
        agent.episodes = int(trial["episodes"])
        agent.z_mu, agent.z_var, agent.z = (trial[k].to(agent.device) for k in ("z_mu", "z_var", "z"))
        return agent


# ------------------------------------------------------------------------------------ training
class _Trainer:
    """PEARL's meta-training loop (rlkit's ``MetaRLAlgorithm.train`` + ``PEARLSoftActorCritic``)."""

    def __init__(
        self,
        agent: PEARLAgent,
        env: gym.Env,
        tasks: list[Task],
        budget: Budget,
        rng: np.random.Generator,
        gen: torch.Generator,
        path_len: int,
        seed: int,
        log: Logger,
    ):
        self.agent, self.c, self.env, self.tasks = agent, agent.config, env, tasks
        self.budget, self.rng, self.gen, self.path_len, self.log = budget, rng, gen, path_len, log
        self.seed = seed
        self.steps = 0
        self.exhausted = False
        self.start = time.monotonic()
        self.first_reset = True
        cap = min(self.c.replay_buffer_size, budget.env_steps)
        obs_dim, act_dim = agent.obs_dim, agent.act_dim
        self.rl_buffer = MultiTaskBuffer(len(tasks), obs_dim, act_dim, cap)
        self.enc_buffer = MultiTaskBuffer(len(tasks), obs_dim, act_dim, cap)
        # the context is the first columns of a row: (s, a, r), or (s, a, r, s')
        self.context_width = agent._context_dim()
        c, dev = self.c, agent.device
        assert agent.policy is not None and agent.encoder is not None

        def adam(*groups: tuple[nn.Module, float]) -> torch.optim.Adam:
            params = [{"params": list(net.parameters()), "lr": lr} for net, lr in groups]
            return torch.optim.Adam(params, fused=True)

        # Adam is per parameter, so one Adam with a parameter group per network is the paper's four
        # Adams; two of them (one per backward pass) halve the optimiser's Python overhead.
        self.critic_opt = adam((agent.qf, c.qf_lr), (agent.encoder, c.context_lr))
        self.actor_opt = adam((agent.policy, c.policy_lr), (agent.vf, c.vf_lr))
        self.dev = dev
        self.returns: list[float] = []

    # ------------------------------------------------------------------------- budget
    def out_of_time(self) -> bool:
        """Past 95% of the wall-clock budget (the harness's clock started a little earlier)."""
        wall = self.budget.wall_clock_s
        return wall is not None and time.monotonic() - self.start > 0.95 * wall

    def can_step_episode(self) -> bool:
        return self.steps + self.path_len <= self.budget.env_steps and not self.out_of_time()

    # ---------------------------------------------------------------------- collection
    def rollout(self, task_i: int, z: torch.Tensor, add_to_enc: bool) -> bool:
        """One episode of train task ``task_i`` with latent ``z``; False if the budget forbids it."""
        if not self.can_step_episode():
            self.exhausted = True
            return False
        agent, env = self.agent, self.env
        options = {"task": self.tasks[task_i]}
        obs, _ = env.reset(seed=self.seed if self.first_reset else None, options=options)
        self.first_reset = False
        ret = 0.0
        for _ in range(self.path_len):
            a = agent._policy_action(obs, z, deterministic=False, gen=self.gen)
            next_obs, r, terminated, truncated, _ = env.step(agent._to_env_action(a))
            self.steps += 1
            row = np.concatenate([np.ravel(obs), a, [r], np.ravel(next_obs), [float(terminated)]])
            self.rl_buffer.add(task_i, row)
            if add_to_enc:
                self.enc_buffer.add(task_i, row)
            ret += float(r)
            obs = next_obs
            if terminated or truncated:
                break
        self.returns.append(ret)
        return True

    def collect(
        self, task_i: int, num_samples: int, update_posterior_every: int | None, add_to_enc: bool
    ) -> bool:
        """rlkit's ``collect_data``: start from the prior; z re-drawn every episode; with
        ``update_posterior_every``, q(z|c) is re-inferred from an encoder-buffer batch that often."""
        mu, var = self.agent._prior()
        z = self.agent._sample_z(mu, var, self.gen)
        n0, episodes = self.steps, 0
        while self.steps - n0 < num_samples:
            if not self.rollout(task_i, z, add_to_enc):
                return False
            episodes += 1
            if update_posterior_every is not None and episodes % update_posterior_every == 0:
                ctx = self.context_batch(np.array([task_i]))
                with torch.no_grad():
                    mu, var = self.agent._posterior(ctx)
            z = self.agent._sample_z(mu, var, self.gen)
        return True

    # ------------------------------------------------------------------------- batches
    def context_batch(self, indices: np.ndarray) -> torch.Tensor:
        """``(tasks, embedding_batch_size, context)`` from the encoder buffers."""
        rows = self.enc_buffer.sample(self.rng, indices, self.c.embedding_batch_size)
        return torch.as_tensor(rows[..., : self.context_width], device=self.dev)

    def rl_batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        """``(tasks * batch_size, ...)`` per field from the full replay buffers."""
        rows = self.rl_buffer.sample(self.rng, indices, self.c.batch_size)
        rows_t = torch.as_tensor(rows.reshape(-1, rows.shape[-1]), device=self.dev)
        return self.rl_buffer.split(rows_t)  # type: ignore[arg-type]

    # ---------------------------------------------------------------------- SAC update
    def update(self, indices: np.ndarray) -> dict[str, float]:
        """One PEARL gradient step on the meta-batch ``indices`` (``PEARLSoftActorCritic._take_step``)."""
        a, c = self.agent, self.c
        assert a.encoder is not None and a.policy is not None
        context = self.context_batch(indices)
        batch = self.rl_batch(indices)
        obs, act, rew, next_obs, term = (batch[k] for k in ("obs", "act", "rew", "next_obs", "term"))

        # z ~ q(z | context batch), one per task, repeated over the task's RL batch
        mu, var = a.encoder(context)
        if c.use_information_bottleneck:
            z_task = mu + var.sqrt() * torch.randn(mu.shape, generator=self.gen).to(self.dev)
        else:
            z_task = mu
        z = z_task.repeat_interleave(c.batch_size, dim=0)
        zd = z.detach()  # the policy and V do not train the encoder

        s_zd = torch.cat([obs, zd], -1)
        if a.discrete:
            probs, log_probs = a.policy(s_zd)  # type: ignore[misc]
            q = (a.qf(torch.cat([obs, z], -1)) * act).sum(-1, keepdim=True)  # Q(s, z)[a], a one-hot
        else:
            new_act, log_pi, pol_mean, pol_log_std = a.policy(s_zd, self.gen)
            log_pi = log_pi.unsqueeze(-1)
            q = a.qf(torch.cat([obs, act, z], -1))

        # critics and encoder: Bellman error (+ KL on the encoder)
        with torch.no_grad():
            target_v = a.target_vf(torch.cat([next_obs, z], -1))
            q_target = c.reward_scale * rew + (1.0 - term) * c.discount * target_v
        qf_loss = (q - q_target).pow(2).mean(dim=(1, 2)).sum()
        kl = gaussian_kl_to_standard(mu, var) if c.use_information_bottleneck else torch.zeros(())
        self.critic_opt.zero_grad()
        (qf_loss + c.kl_lambda * kl).backward()
        self.critic_opt.step()

        # V: towards min Q(s, a~pi) - log pi (temperature 1; the reward scale sets the trade-off)
        if a.discrete:  # exact expectations over the actions, as in discrete SAC
            with torch.no_grad():
                min_q_all = a.qf(s_zd).min(0).values
            v_target = (probs * (min_q_all - log_probs)).sum(-1, keepdim=True)
        else:
            # the policy's gradient flows through Q to the action; Q's own weights get none (frozen
            # for this forward pass, which skips their weight gradients in the backward pass)
            a.qf.requires_grad_(False)
            min_q_new = a.qf(torch.cat([obs, new_act, zd], -1)).min(0).values
            a.qf.requires_grad_(True)
            v_target = min_q_new - log_pi
        v_pred = a.vf(s_zd)
        vf_loss = F.mse_loss(v_pred, v_target.detach())

        # policy
        if a.discrete:
            policy_loss = (probs * (log_probs - min_q_all)).sum(-1).mean()
        else:
            policy_loss = (log_pi - min_q_new).mean()
            policy_loss = policy_loss + c.policy_mean_reg_weight * pol_mean.pow(2).mean()
            policy_loss = policy_loss + c.policy_std_reg_weight * pol_log_std.pow(2).mean()
        # V's and the policy's parameters are disjoint and both losses use the updated Q, as rlkit's:
        # one backward pass over their sum gives each the gradient of its own loss
        self.actor_opt.zero_grad()
        (vf_loss + policy_loss).backward()
        self.actor_opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(a.target_vf.parameters()), list(a.vf.parameters()), c.soft_target_tau)
        return {
            "qf_loss": qf_loss.item(),
            "vf_loss": vf_loss.item(),
            "policy_loss": policy_loss.item(),
            "kl": kl.item(),
            "z_var": var.mean().item() if c.use_information_bottleneck else 0.0,
        }

    # -------------------------------------------------------------------------- the loop
    def run(self) -> None:
        c, n_tasks = self.c, len(self.tasks)
        steps_per_task = max(c.num_initial_steps, 1)
        for i in range(n_tasks):  # initial pool: prior data into both buffers
            if not self.collect(i, steps_per_task, None, add_to_enc=True):
                break
        iterations = itertools.count() if c.num_iterations is None else range(c.num_iterations)
        for it in iterations:
            self.returns = []
            for _ in range(c.num_tasks_sample):
                if self.exhausted:
                    break
                i = int(self.rng.integers(n_tasks))
                self.enc_buffer.clear(i)
                ok = True
                if c.num_steps_prior > 0:
                    ok = self.collect(i, c.num_steps_prior, None, add_to_enc=True)
                if ok and c.num_steps_posterior > 0:
                    ok = self.collect(i, c.num_steps_posterior, c.update_post_train, add_to_enc=True)
                if ok and c.num_extra_rl_steps_posterior > 0:
                    # posterior inference needs context: skip for tasks whose encoder buffer is empty
                    if self.enc_buffer.size[i] > 0:
                        self.collect(i, c.num_extra_rl_steps_posterior, c.update_post_train, False)
            ready = np.flatnonzero((self.rl_buffer.size > 0) & (self.enc_buffer.size > 0))
            losses: dict[str, float] = {}
            if len(ready) and c.updates:
                for _ in range(c.num_train_steps_per_itr):
                    if self.out_of_time():
                        self.exhausted = True
                        break
                    indices = self.rng.choice(ready, size=c.meta_batch)
                    losses = self.update(indices)
            last = c.num_iterations is not None and it == c.num_iterations - 1
            if (it + 1) % c.log_every == 0 or self.exhausted or last:
                scalars = dict(losses)
                if self.returns:
                    scalars["train_return"] = float(np.mean(self.returns))
                scalars["iteration"] = float(it)
                self.log.log(self.steps, **scalars)
            if self.exhausted:
                break
        self.agent.stats = {"env_steps": float(self.steps), "wall_s": time.monotonic() - self.start}


def make_agent(config: Config) -> PEARLAgent:
    return PEARLAgent(config)
