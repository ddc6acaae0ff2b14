"""MAML-TRPO: a policy initialisation that one policy-gradient step adapts to a task (Finn et al., 2017).

"Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks" (ICML 2017, arXiv:1703.03400),
reinforcement-learning setting, as in the authors' ``maml_rl`` code and garage's ``MAMLTRPO``.

Meta-training, per iteration:

1. draw ``meta_batch_size`` train tasks; for each, sample ``trajectories_per_task`` episodes with the
   meta-parameters θ (all tasks at once: one env per trajectory, the policy batched over tasks with
   ``torch.func.vmap``);
2. inner step per task: θ'ᵢ = θ − α ∇θ Lᵢ(θ), the vanilla policy-gradient loss
   Lᵢ = −mean(log π(a|s) Â) with advantages from a linear feature baseline and GAE, computed
   functionally with ``torch.func.functional_call`` and ``torch.func.grad``;
3. sample as many episodes per task with θ'ᵢ;
4. outer TRPO step on θ: maximise the importance-weighted surrogate of the post-update episodes,
   mean over tasks of E[π_θ'ᵢ(θ)(a|s) / π_θ'ᵢ,old(a|s) Â], subject to the mean KL between the old and
   new adapted policies ≤ ``max_kl``; the gradient and the KL's Hessian-vector products go *through*
   the inner step (second-order MAML), the step is found by conjugate gradient and a backtracking
   line search that rejects steps which do not improve the surrogate or break the KL bound.

Baseline: garage's/rllab's ``LinearFeatureBaseline`` — per task and batch, ridge regression (coefficient
1e-5, raised ×10 until the solve is finite) of the discounted returns on features
``[o, o², t/100, (t/100)², (t/100)³, 1]`` with ``o`` clipped to [-10, 10]. Advantages are GAE and
centred (zero mean, unit variance) per task, rllab's ``center_adv``. Episodes ending by the time limit
are treated as terminal, as in rllab/garage.

Policy: Gaussian MLP (100, 100), tanh, state-independent learned log-std (initial std 1) for ``Box``
actions, which the policy takes in [-1, 1] and the agent rescales to the env's bounds (garage's
``normalize`` wrapper); a categorical MLP for ``Discrete`` actions. ``Discrete`` observations are
one-hot.

Meta-test: ``begin_trial`` restores θ. The harness's adaptation episodes (``explore=True``, actions
sampled) are collected; every ``test_episodes_per_step`` of them (default: the family's ``n_adapt``
divided by ``test_inner_steps``) ``end_episode`` takes one inner step from the current adapted
parameters, up to ``test_inner_steps`` steps (garage could take only one). Evaluation episodes
(``explore=False``) act with the adapted parameters and the mean action (argmax for ``Discrete``).

Published settings and where ours differ:

* inner step: one, learning rate 0.1, 20 trajectories per task; meta-batch 20 tasks (the paper's 2-D
  navigation; 40 for locomotion); TRPO max KL 0.01 (garage: 10 CG iterations, damping 1e-5,
  backtrack ratio 0.8, 15 backtracks); discount 0.99; GAE λ 1.0 (rllab's default, i.e. Monte-Carlo
  returns minus the baseline). All defaults here.
* the paper's text says ReLU hidden units; its code and garage use tanh, which we follow.
* the ``smoke`` tier is tiny (2 tasks × 5 trajectories, (32, 32)) and only checks that things run.
  The ``ci`` tier uses a meta-batch of 10 and as many trajectories per task as a meta-test inner step
  gets (the family's ``n_adapt``: 10 on PointNav, 90 one-pull episodes on Bandit, 7 on TabularMDP),
  so that the inner step is meta-trained on the amount of data it meets at meta-test and several
  meta-iterations fit the ci budgets (25 on PointNav's 100,000 steps, 27 on Bandit, 35 on
  TabularMDP).
* training takes exactly one inner step; only meta-test can take several.
* evaluation acts with the mode of the adapted policy. On Bandit that alone is strong: the greedy arm
  after one inner step from 90 exploratory pulls is explore-then-commit, whatever the meta-training
  (measured: ``disable_updates=True`` scores the same there). On PointNav meta-training matters
  (see ``tests/test_maml.py``'s learnability test).

Meta-training runs as many iterations as the budget allows (``meta_iterations`` caps it), never
stepping past it. Randomness: the agent's own ``torch.Generator`` and ``np.random.Generator`` seeded
from ``meta_train``'s seed (initial weights, actions, task draws, env seeds); nothing global. ``save``
writes ``policy.pt`` (a state dict, read back with ``torch.load(weights_only=True)``) and
``agent.json`` (config, spaces, generator state).
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn
from torch.func import functional_call, grad, vmap

from metabench.agents.common.spaces import space_from_dict, space_to_dict
from metabench.protocol import Budget, Logger, Transition
from metabench.tasks import Task

Params = dict[str, torch.Tensor]


@dataclasses.dataclass
class Config:
    """MAML-TRPO hyperparameters; defaults are the published ones (see the module docstring)."""

    hidden_sizes: tuple[int, ...] = (100, 100)
    activation: str = "tanh"
    """``"tanh"`` or ``"relu"``."""
    init_std: float = 1.0
    inner_lr: float = 0.1
    trajectories_per_task: int = 20
    """Episodes per task for each meta-training inner step; 0 means as many as a meta-test inner step
    gets (``test_episodes_per_step``)."""
    meta_batch_size: int = 20
    max_kl: float = 0.01
    cg_iters: int = 10
    cg_damping: float = 1e-5
    backtrack_ratio: float = 0.8
    max_backtracks: int = 15
    gamma: float = 0.99
    gae_lambda: float = 1.0
    baseline_reg: float = 1e-5
    center_advantages: bool = True
    test_inner_steps: int = 1
    """Inner steps at meta-test."""
    test_episodes_per_step: int = 0
    """Adaptation episodes per meta-test inner step; 0 means the family's ``n_adapt // test_inner_steps``."""
    meta_iterations: int | None = None
    """Cap on meta-iterations; ``None`` means as many as the budget allows."""
    n_envs: int = 0
    """Envs stepped together; 0 means one per trajectory of a meta-batch (rounded to whole tasks)."""
    disable_updates: bool = False
    """Skip the outer (meta) update: sampling, inner steps and the TRPO solve still run. For tests."""
    torch_threads: int = 1
    device: str = "cpu"


#: Tier overrides (metabench.protocol.build_config applies them over the defaults).
TIERS: dict[str, dict[str, Any]] = {
    "smoke": {"hidden_sizes": (32, 32), "meta_batch_size": 2, "trajectories_per_task": 5},
    "ci": {"meta_batch_size": 10, "trajectories_per_task": 0},
    "standard": {},
}


class Spaces:
    """Observation encoding and action mapping between the policy and the env."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space):
        for name, space in (("observation", observation_space), ("action", action_space)):
            if not isinstance(space, (spaces.Box, spaces.Discrete)):
                raise TypeError(f"MAML supports Box and Discrete {name} spaces, got {space}")
        if isinstance(action_space, spaces.Box) and not (
            np.isfinite(action_space.low).all() and np.isfinite(action_space.high).all()
        ):
            raise TypeError(f"MAML needs a bounded Box action space, got {action_space}")
        self.observation_space, self.action_space = observation_space, action_space
        self.discrete = isinstance(action_space, spaces.Discrete)
        if isinstance(observation_space, spaces.Discrete):
            self.obs_dim = int(observation_space.n)
        else:
            self.obs_dim = int(np.prod(observation_space.shape))
        self.act_dim = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))

    def encode_obs(self, obs: Any) -> np.ndarray:
        if isinstance(self.observation_space, spaces.Discrete):
            o = np.zeros(self.obs_dim, np.float32)
            o[int(obs) - self.observation_space.start] = 1.0
            return o
        return np.asarray(obs, np.float32).ravel()

    def to_env_actions(self, policy_actions: np.ndarray) -> np.ndarray:
        """:meth:`to_env_action` over a batch (leading dimensions kept)."""
        if self.discrete:
            return policy_actions.astype(np.int64) + int(self.action_space.start)
        low, high = self.action_space.low.ravel(), self.action_space.high.ravel()
        a = np.clip(policy_actions.astype(np.float64), -1.0, 1.0)
        out = (low + 0.5 * (a + 1.0) * (high - low)).astype(self.action_space.dtype)
        return out.reshape(*policy_actions.shape[:-1], *self.action_space.shape)

    def to_env_action(self, policy_action: np.ndarray) -> Any:
        if self.discrete:
            return int(policy_action) + int(self.action_space.start)
        low, high = self.action_space.low, self.action_space.high
        a = np.clip(np.asarray(policy_action, np.float64).reshape(self.action_space.shape), -1.0, 1.0)
        return (low + 0.5 * (a + 1.0) * (high - low)).astype(self.action_space.dtype)


# ------------------------------------------------------------------------------------ the policy
class MLPPolicy(nn.Module):
    """MLP giving a Gaussian's mean (with a learned state-independent log-std) or categorical logits."""

    def __init__(self, obs_dim: int, act_dim: int, discrete: bool, config: Config):
        super().__init__()
        if config.activation not in ("tanh", "relu"):
            raise ValueError(f"Config.activation must be 'tanh' or 'relu', got {config.activation!r}")
        act: type[nn.Module] = nn.Tanh if config.activation == "tanh" else nn.ReLU
        layers: list[nn.Module] = []
        sizes = (obs_dim, *config.hidden_sizes)
        for a, b in itertools.pairwise(sizes):
            layers += [nn.Linear(a, b), act()]
        layers.append(nn.Linear(sizes[-1], act_dim))
        self.net = nn.Sequential(*layers)
        self.discrete = discrete
        if not discrete:
            self.log_std = nn.Parameter(torch.full((act_dim,), math.log(config.init_std)))

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Xavier-uniform weights, zero biases (garage's initialisation), from ``generator``."""
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight, generator=generator)
                nn.init.zeros_(m.bias)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


def _log_prob(policy: MLPPolicy, params: Params, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    out = functional_call(policy, params, (obs,))
    if policy.discrete:
        return torch.log_softmax(out, -1).gather(-1, act.long().unsqueeze(-1)).squeeze(-1)
    log_std = params["log_std"]
    z = (act - out) / log_std.exp()
    return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def _dist(policy: MLPPolicy, params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, log_std) for Gaussian policies, (log-probabilities, empty) for categorical ones."""
    out = functional_call(policy, params, (obs,))
    if policy.discrete:
        return torch.log_softmax(out, -1), out.new_zeros(())
    return out, params["log_std"].expand_as(out)


def _kl(policy: MLPPolicy, old: tuple[torch.Tensor, torch.Tensor], new: tuple[torch.Tensor, torch.Tensor]):
    """KL(old || new) per observation."""
    if policy.discrete:
        return (old[0].exp() * (old[0] - new[0])).sum(-1)
    (m0, s0), (m1, s1) = old, new
    return (s1 - s0 + ((2 * s0).exp() + (m0 - m1).pow(2)) / (2 * (2 * s1).exp()) - 0.5).sum(-1)


# ----------------------------------------------------------------------------- batches of episodes
@dataclasses.dataclass
class Batch:
    """Episodes of a group of tasks, padded to the longest: arrays of shape (tasks, episodes × T, ...)."""

    obs: torch.Tensor
    act: torch.Tensor
    adv: torch.Tensor
    mask: torch.Tensor
    returns: np.ndarray
    """Undiscounted return of every episode, shape (tasks, episodes)."""


def linear_baseline(
    obs: np.ndarray, rewards: np.ndarray, mask: np.ndarray, gamma: float, gae_lambda: float, reg: float
) -> np.ndarray:
    """GAE advantages with garage's LinearFeatureBaseline fitted on these episodes.

    Arrays are (episodes, T, ...) with ``mask`` 1 on real steps; returns advantages (episodes, T).
    """
    n, horizon = mask.shape
    discounted = np.zeros_like(rewards)
    acc = np.zeros(n)
    for t in reversed(range(horizon)):
        acc = rewards[:, t] + gamma * acc * mask[:, t]
        discounted[:, t] = acc
    o = np.clip(obs, -10.0, 10.0)
    al = np.broadcast_to(np.arange(horizon)[None, :, None] / 100.0, (n, horizon, 1))
    feats = np.concatenate([o, o**2, al, al**2, al**3, np.ones((n, horizon, 1))], axis=-1)
    valid = mask.astype(bool)
    x, y = feats[valid], discounted[valid]
    coeffs = np.zeros(feats.shape[-1])
    for _ in range(5):
        a = x.T @ x + reg * np.eye(x.shape[1])
        try:
            coeffs = np.linalg.solve(a, x.T @ y)
        except np.linalg.LinAlgError:
            coeffs = np.full(x.shape[1], np.nan)
        if np.all(np.isfinite(coeffs)):
            break
        reg *= 10
    values = np.where(valid, feats @ np.nan_to_num(coeffs), 0.0)
    next_values = np.concatenate([values[:, 1:], np.zeros((n, 1))], axis=1) * np.concatenate(
        [mask[:, 1:], np.zeros((n, 1))], axis=1
    )
    deltas = (rewards + gamma * next_values - values) * mask
    adv = np.zeros_like(rewards)
    acc = np.zeros(n)
    for t in reversed(range(horizon)):
        acc = deltas[:, t] + gamma * gae_lambda * acc * mask[:, t]
        adv[:, t] = acc
    return adv


def make_batch(
    obs: np.ndarray, act: np.ndarray, rew: np.ndarray, mask: np.ndarray, config: Config, device: str
) -> Batch:
    """Advantages per task from (tasks, episodes, T, ...) arrays, flattened to (tasks, episodes × T)."""
    n_tasks, n_eps, horizon = mask.shape
    adv = np.zeros_like(rew)
    for i in range(n_tasks):
        a = linear_baseline(obs[i], rew[i], mask[i], config.gamma, config.gae_lambda, config.baseline_reg)
        if config.center_advantages:
            valid = mask[i].astype(bool)
            a = np.where(valid, (a - a[valid].mean()) / (a[valid].std() + 1e-8), 0.0)
        adv[i] = a

    def flat(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x.reshape(n_tasks, n_eps * horizon, *x.shape[3:]), device=device)

    return Batch(
        obs=flat(obs.astype(np.float32)),
        act=flat(act.astype(np.float32)),
        adv=flat(adv.astype(np.float32)),
        mask=flat(mask.astype(np.float32)),
        returns=(rew * mask).sum(-1),
    )


# ------------------------------------------------------------------------------------- the agent
class MAMLAgent:
    """MAML-TRPO (see the module docstring)."""

    oracle: ClassVar[bool] = False

    def __init__(self, config: Config):
        if config.test_inner_steps < 0:
            raise ValueError(f"Config.test_inner_steps must be >= 0, got {config.test_inner_steps}")
        self.config = config
        self.spaces: Spaces | None = None
        self.policy: MLPPolicy | None = None
        self.generator = torch.Generator()
        self.episodes_per_step = 1
        self.iterations = 0
        # meta-test state
        self._params: Params = {}
        self._steps_taken = 0
        self._episodes: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._current: list[tuple[np.ndarray, np.ndarray, float]] = []
        self._explore = False
        self._last_action: np.ndarray | None = None
        self._last_obs: np.ndarray | None = None
        self._horizon = 0
        self._k = 0

    # ------------------------------------------------------------------------ functional pieces
    def meta_params(self) -> Params:
        assert self.policy is not None
        return {k: v.detach() for k, v in self.policy.named_parameters()}

    def _inner_loss(self, params: Params, obs, act, adv, mask) -> torch.Tensor:
        logp = _log_prob(self.policy, params, obs, act)
        return -(logp * adv * mask).sum() / mask.sum().clamp(min=1.0)

    def _adapt(self, params: Params, obs, act, adv, mask) -> Params:
        """One inner policy-gradient step (functional, differentiable in ``params``)."""
        g = grad(self._inner_loss)(params, obs, act, adv, mask)
        return {k: params[k] - self.config.inner_lr * g[k] for k in params}

    def adapt_tasks(self, params: Params, batch: Batch) -> Params:
        """θ'ᵢ for every task of ``batch``: parameters with a leading task dimension."""
        return vmap(self._adapt, in_dims=(None, 0, 0, 0, 0))(
            params, batch.obs, batch.act, batch.adv, batch.mask
        )

    # ------------------------------------------------------------------------------ sampling
    def _sample(
        self, envs: list[gym.Env], tasks: Sequence[Task], params: Params, per_task: bool
    ) -> tuple[np.ndarray, ...]:
        """``K`` episodes for each task, acting with ``params`` (a leading task dimension when
        ``per_task``). Returns (obs, act, rew, mask) of shape (tasks, K, T, ...)."""
        cfg, sp = self.config, self.spaces
        k, horizon = self._k, self._horizon
        n_tasks, group = len(tasks), max(1, len(envs) // k)
        obs = np.zeros((n_tasks, k, horizon, sp.obs_dim), np.float32)
        act = np.zeros(
            (n_tasks, k, horizon) if sp.discrete else (n_tasks, k, horizon, sp.act_dim), np.float32
        )
        rew = np.zeros((n_tasks, k, horizon))
        mask = np.zeros((n_tasks, k, horizon))
        for start in range(0, n_tasks, group):
            ids = list(range(start, min(start + group, n_tasks)))
            slots = [(i, j) for i in ids for j in range(k)]
            cur = np.zeros((len(ids), k, sp.obs_dim), np.float32)
            alive = np.ones((len(ids), k), bool)
            for s, (i, j) in enumerate(slots):
                o, _ = envs[s].reset(options={"task": tasks[i]})
                cur[i - start, j] = sp.encode_obs(o)
            if per_task:
                p = {name: v[start : start + len(ids)] for name, v in params.items()}
            for t in range(horizon):
                with torch.no_grad():
                    x = torch.as_tensor(cur, device=cfg.device)
                    if per_task:
                        out = vmap(functional_call, in_dims=(None, 0, 0))(self.policy, p, (x,))
                    else:
                        out = functional_call(self.policy, params, (x,))
                    if sp.discrete:
                        flat = torch.softmax(out, -1).reshape(-1, sp.act_dim)
                        a = torch.multinomial(flat, 1, generator=self.generator).reshape(out.shape[:-1])
                    else:
                        std = (p if per_task else params)["log_std"].exp()
                        if per_task:
                            std = std[:, None, :]
                        noise = torch.randn(out.shape, generator=self.generator, dtype=out.dtype)
                        a = out + std * noise
                    a = a.cpu().numpy()
                n = len(ids)
                obs[start : start + n, :, t] = cur
                act[start : start + n, :, t] = a
                mask[start : start + n, :, t] = alive
                env_actions = sp.to_env_actions(a)
                for s, (i, j) in enumerate(slots):
                    r = i - start
                    if not alive[r, j]:
                        continue
                    o, reward, terminated, truncated, _ = envs[s].step(env_actions[r, j])
                    rew[i, j, t] = float(reward)
                    cur[r, j] = sp.encode_obs(o)
                    alive[r, j] = not (terminated or truncated)
                if not alive.any():
                    break
        return obs, act, rew, mask

    # ------------------------------------------------------------------------------ TRPO step
    def _outer_step(self, pre: Batch, post: Batch, adapted_old: Params) -> dict[str, float]:
        cfg, policy = self.config, self.policy
        names = [n for n, _ in policy.named_parameters()]
        theta = [p for _, p in policy.named_parameters()]
        with torch.no_grad():
            old_dist = vmap(_dist, in_dims=(None, 0, 0))(policy, adapted_old, post.obs)
            old_logp = vmap(_log_prob, in_dims=(None, 0, 0, 0))(policy, adapted_old, post.obs, post.act)
        denom = post.mask.sum(-1).clamp(min=1.0)

        def objectives(params: Params) -> tuple[torch.Tensor, torch.Tensor]:
            adapted = self.adapt_tasks(params, pre)
            logp = vmap(_log_prob, in_dims=(None, 0, 0, 0))(policy, adapted, post.obs, post.act)
            ratio = (logp - old_logp).exp()
            loss = -((ratio * post.adv * post.mask).sum(-1) / denom).mean()
            new_dist = vmap(_dist, in_dims=(None, 0, 0))(policy, adapted, post.obs)
            kl = ((_kl(policy, old_dist, new_dist) * post.mask).sum(-1) / denom).mean()
            return loss, kl

        params = dict(zip(names, theta, strict=True))
        loss, kl = objectives(params)
        g = torch.autograd.grad(loss, theta, retain_graph=True)
        g_flat = torch.cat([x.reshape(-1) for x in g]).detach()
        grad_kl = torch.autograd.grad(kl, theta, create_graph=True)
        grad_kl_flat = torch.cat([x.reshape(-1) for x in grad_kl])

        def fvp(v: torch.Tensor) -> torch.Tensor:
            hv = torch.autograd.grad(grad_kl_flat @ v, theta, retain_graph=True)
            return torch.cat([x.reshape(-1) for x in hv]).detach() + cfg.cg_damping * v

        direction = _conjugate_gradient(fvp, -g_flat, cfg.cg_iters)
        shs = float(direction @ fvp(direction))
        step = math.sqrt(2 * cfg.max_kl / max(shs, 1e-12)) * direction
        old_flat = torch.cat([p.detach().reshape(-1) for p in theta])
        loss_before = float(loss.detach())
        accepted, kl_after, loss_after = False, 0.0, loss_before
        with torch.no_grad():
            for k in range(cfg.max_backtracks):
                candidate = _unflatten(old_flat + cfg.backtrack_ratio**k * step, params)
                with torch.enable_grad():  # the inner step needs gradients
                    new_loss, new_kl = objectives(candidate)
                loss_after, kl_after = float(new_loss), float(new_kl)
                if loss_after < loss_before and kl_after <= cfg.max_kl:
                    accepted = True
                    break
            if accepted and not cfg.disable_updates:
                for p, v in zip(
                    theta, _unflatten(old_flat + cfg.backtrack_ratio**k * step, params).values(), strict=True
                ):
                    p.copy_(v)
        return {
            "surrogate_before": -loss_before,
            "surrogate_after": -loss_after if accepted else -loss_before,
            "kl": kl_after if accepted else 0.0,
            "step_accepted": float(accepted),
        }

    # ------------------------------------------------------------------------------ meta-training
    def meta_train(
        self,
        make_env: Callable[[], gym.Env],
        tasks: Sequence[Task],
        budget: Budget,
        *,
        seed: int,
        log: Logger,
    ) -> None:
        cfg = self.config
        torch.set_num_threads(cfg.torch_threads)
        if len(tasks) == 0:
            raise ValueError("MAML.meta_train needs at least one train task")
        rng = np.random.default_rng(seed)
        envs = self.setup(make_env, seed)
        m = cfg.meta_batch_size
        per_iteration = 2 * m * self._k * self._horizon  # an upper bound: episodes may end early
        used = 0
        try:
            while used + per_iteration <= budget.env_steps and (
                cfg.meta_iterations is None or self.iterations < cfg.meta_iterations
            ):
                idx = rng.choice(len(tasks), size=m, replace=len(tasks) < m)
                stats = self.meta_iteration(envs, [tasks[int(i)] for i in idx])
                used += int(stats.pop("env_steps"))
                log.log(used, **stats)
        finally:
            for env in envs:
                env.close()
        self.begin_trial()

    def setup(self, make_env: Callable[[], gym.Env], seed: int) -> list[gym.Env]:
        """Build the policy (initial weights from ``seed``) and the sampling envs (seeded)."""
        cfg = self.config
        self.generator.manual_seed(seed)
        env_seeds = np.random.default_rng([seed, 1])
        probe = make_env()
        base = type(probe.unwrapped)
        self.spaces = Spaces(probe.observation_space, probe.action_space)
        spec = probe.spec
        if spec is None or not spec.max_episode_steps:
            raise ValueError(f"MAML needs a time-limited env (spec.max_episode_steps), got spec {spec}")
        self._horizon = int(spec.max_episode_steps)
        n_adapt = int(getattr(base, "n_adapt", 10))
        self.episodes_per_step = cfg.test_episodes_per_step or max(1, n_adapt // max(1, cfg.test_inner_steps))
        self.policy = MLPPolicy(self.spaces.obs_dim, self.spaces.act_dim, self.spaces.discrete, cfg)
        self.policy.reset_parameters(self.generator)
        self.policy.to(cfg.device)
        k = self._k = cfg.trajectories_per_task or self.episodes_per_step
        n_envs = cfg.n_envs or k * cfg.meta_batch_size
        n_envs = max(k, n_envs - n_envs % k)  # whole tasks per group
        envs = [probe] + [make_env() for _ in range(min(n_envs, k * cfg.meta_batch_size) - 1)]
        for env in envs:
            env.reset(seed=int(env_seeds.integers(2**31)))
        return envs

    def meta_iteration(self, envs: list[gym.Env], tasks: Sequence[Task]) -> dict[str, float]:
        """Sample, adapt per task, sample again, take the TRPO step; returns what to log."""
        cfg = self.config
        theta = self.meta_params()
        o, a, r, msk = self._sample(envs, tasks, theta, per_task=False)
        pre = make_batch(o, a, r, msk, cfg, cfg.device)
        adapted = {n: v.detach() for n, v in self.adapt_tasks(theta, pre).items()}
        o, a, r, msk = self._sample(envs, tasks, adapted, per_task=True)
        post = make_batch(o, a, r, msk, cfg, cfg.device)
        stats = self._outer_step(pre, post, adapted)
        self.iterations += 1
        return {
            "env_steps": float(pre.mask.sum().item() + post.mask.sum().item()),
            "pre_update_return": float(pre.returns.mean()),
            "post_update_return": float(post.returns.mean()),
            **stats,
        }

    # -------------------------------------------------------------------------------- meta-testing
    def begin_trial(self) -> None:
        """Restore the meta-learned parameters; forget the trial's episodes."""
        self._params = self.meta_params() if self.policy is not None else {}
        self._steps_taken = 0
        self._episodes, self._current = [], []
        self._last_action = None

    def act(self, obs: Any, *, explore: bool) -> Any:
        if self.policy is None or self.spaces is None:
            raise RuntimeError("MAMLAgent.act called before meta_train or load")
        x = self.spaces.encode_obs(obs)
        with torch.no_grad():
            out = functional_call(self.policy, self._params, (torch.as_tensor(x, device=self.config.device),))
            if self.spaces.discrete:
                if explore:
                    a = torch.multinomial(torch.softmax(out, -1), 1, generator=self.generator)[0]
                else:
                    a = out.argmax()
                action = np.asarray(int(a), np.float32)
            else:
                if explore:
                    noise = torch.randn(out.shape, generator=self.generator, dtype=out.dtype)
                    out = out + self._params["log_std"].exp() * noise
                action = out.cpu().numpy()
        self._explore = explore
        self._last_action = action
        self._last_obs = x
        return self.spaces.to_env_action(action)

    def observe(self, transition: Transition) -> None:
        if self._last_action is None:
            raise RuntimeError("MAMLAgent.observe called without a preceding act")
        if self._explore:
            self._current.append((self._last_obs, self._last_action, float(transition.reward)))

    def end_episode(self) -> None:
        """After an adaptation episode: keep it; every ``episodes_per_step`` of them, one inner step."""
        if self._explore and self._current:
            o, a, r = (np.stack(x) for x in zip(*self._current, strict=True))
            self._episodes.append((o, a, r))
        self._current = []
        if len(self._episodes) >= self.episodes_per_step and self._steps_taken < self.config.test_inner_steps:
            self._params = self._test_step(self._params, self._episodes)
            self._steps_taken += 1
            self._episodes = []

    def _test_step(self, params: Params, episodes: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Params:
        horizon = max(len(e[2]) for e in episodes)
        n, sp = len(episodes), self.spaces
        obs = np.zeros((1, n, horizon, sp.obs_dim), np.float32)
        act = np.zeros((1, n, horizon) if sp.discrete else (1, n, horizon, sp.act_dim), np.float32)
        rew, mask = np.zeros((1, n, horizon)), np.zeros((1, n, horizon))
        for j, (o, a, r) in enumerate(episodes):
            length = len(r)
            obs[0, j, :length], act[0, j, :length], rew[0, j, :length], mask[0, j, :length] = o, a, r, 1.0
        batch = make_batch(obs, act, rew, mask, self.config, self.config.device)
        adapted = self._adapt(params, batch.obs[0], batch.act[0], batch.adv[0], batch.mask[0])
        return {k: v.detach() for k, v in adapted.items()}

    # -------------------------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> None:
        """Write the directory ``path``: ``policy.pt`` (state dict) and ``agent.json``."""
        if self.policy is None or self.spaces is None:
            raise RuntimeError("MAMLAgent.save called before meta_train")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.policy.state_dict(), path / "policy.pt")
        meta = {
            "config": dataclasses.asdict(self.config),
            "observation_space": space_to_dict(self.spaces.observation_space),
            "action_space": space_to_dict(self.spaces.action_space),
            "episodes_per_step": self.episodes_per_step,
            "iterations": self.iterations,
            "generator_state": base64.b64encode(self.generator.get_state().numpy().tobytes()).decode(),
        }
        (path / "agent.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> MAMLAgent:
        path = Path(path)
        meta = json.loads((path / "agent.json").read_text())
        config = dict(meta["config"])
        config["hidden_sizes"] = tuple(config["hidden_sizes"])
        agent = cls(Config(**config))
        agent.spaces = Spaces(
            space_from_dict(meta["observation_space"]), space_from_dict(meta["action_space"])
        )
        agent.episodes_per_step = int(meta["episodes_per_step"])
        agent.iterations = int(meta["iterations"])
        agent.policy = MLPPolicy(
            agent.spaces.obs_dim, agent.spaces.act_dim, agent.spaces.discrete, agent.config
        )
        state = torch.load(path / "policy.pt", map_location=agent.config.device, weights_only=True)
        agent.policy.load_state_dict(state)
        gen = np.frombuffer(base64.b64decode(meta["generator_state"]), dtype=np.uint8).copy()
        agent.generator.set_state(torch.from_numpy(gen))
        agent.begin_trial()
        return agent


def _conjugate_gradient(
    fvp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int
) -> torch.Tensor:
    """Solve F x = b for x with ``iters`` conjugate-gradient iterations (F given as a product)."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    for _ in range(iters):
        fp = fvp(p)
        alpha = rr / (p @ fp)
        x += alpha * p
        r -= alpha * fp
        new_rr = r @ r
        if new_rr < 1e-10:
            break
        p = r + (new_rr / rr) * p
        rr = new_rr
    return x


def _unflatten(flat: torch.Tensor, like: Params) -> Params:
    out, i = {}, 0
    for name, p in like.items():
        out[name] = flat[i : i + p.numel()].view_as(p)
        i += p.numel()
    return out


def make_agent(config: Config) -> MAMLAgent:
    return MAMLAgent(config)
