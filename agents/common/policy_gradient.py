"""The policy-gradient machinery the gradient-adaptation agents share (MAML, Meta-SGD, MAESN, TESP).

What is the same in all four, written once:

* :class:`Spaces`: observation encoding (one-hot for ``Discrete``) and the map from the policy's
  [-1, 1] actions to a bounded ``Box`` (garage's ``normalize``), or from an index to ``Discrete``.
* :class:`MLPPolicy` and its functional pieces (:func:`log_prob`, :func:`dist`, :func:`kl`): a Gaussian
  MLP with a state-independent learned log-std, or a categorical MLP; parameters are passed as a dict
  (``torch.func.functional_call``) so that inner steps stay differentiable.
* :func:`sample_episodes`: every task × trajectory of a meta-batch stepped together, the policy called
  once per time step for all of them (:func:`per_task_forward`: per-task parameters through ``vmap``;
  :func:`shared_forward`: one set of parameters, optionally with a per-episode context).
* :func:`linear_baseline` and :func:`make_batch`: rllab/garage's ``LinearFeatureBaseline`` fitted per
  task, GAE, optional centring.
* the inner step: :func:`pg_loss`, :func:`clip_by_global_norm`, :func:`sgd_step` (a scalar rate, or one
  rate per parameter entry as in Meta-SGD/TESP).
* the outer steps: :func:`trpo_step` (MAML, MAESN) and :func:`ppo_best_iterate` (TESP's first-order
  PPO loop, used by Meta-SGD and TESP), with :func:`masked_task_mean` for their losses and KLs.
* :class:`TrialEpisodes`: the exploration episodes of a meta-test trial, as padded arrays.

The agent shell around these (the meta-training loop, ``act``/``observe``, ``save``/``load``) is
``agents/common/pg_agent.py``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn
from torch.func import functional_call, vmap

from metabench.tasks import Task

Params = dict[str, torch.Tensor]


class Spaces:
    """Observation encoding and action mapping between the policy and the env."""

    def __init__(
        self, observation_space: spaces.Space, action_space: spaces.Space, agent: str = "this agent"
    ):
        for name, space in (("observation", observation_space), ("action", action_space)):
            if not isinstance(space, (spaces.Box, spaces.Discrete)):
                raise TypeError(f"{agent} supports Box and Discrete {name} spaces, got {space}")
        if isinstance(action_space, spaces.Box) and not (
            np.isfinite(action_space.low).all() and np.isfinite(action_space.high).all()
        ):
            raise TypeError(f"{agent} needs a bounded Box action space, got {action_space}")
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

    def dist_dim(self) -> int:
        """Size of the action distribution's parameters: mean and log-std, or log-probabilities."""
        return self.act_dim if self.discrete else 2 * self.act_dim


def episode_spec(env: gym.Env, agent: str) -> tuple[int, int]:
    """(horizon, n_adapt) of a time-limited metabench env."""
    spec = env.spec
    if spec is None or not spec.max_episode_steps:
        raise ValueError(f"{agent} needs a time-limited env (spec.max_episode_steps), got spec {spec}")
    return int(spec.max_episode_steps), int(getattr(type(env.unwrapped), "n_adapt", 10))


# ------------------------------------------------------------------------------------ the policy
class MLPPolicy(nn.Module):
    """MLP giving a Gaussian's mean (with a learned state-independent log-std) or categorical logits."""

    def __init__(
        self,
        in_dim: int,
        act_dim: int,
        discrete: bool,
        hidden_sizes: Sequence[int],
        activation: str = "tanh",
        init_std: float = 1.0,
    ):
        super().__init__()
        if activation not in ("tanh", "relu"):
            raise ValueError(f"Config.activation must be 'tanh' or 'relu', got {activation!r}")
        act: type[nn.Module] = nn.Tanh if activation == "tanh" else nn.ReLU
        layers: list[nn.Module] = []
        sizes = (in_dim, *hidden_sizes)
        for a, b in itertools.pairwise(sizes):
            layers += [nn.Linear(a, b), act()]
        layers.append(nn.Linear(sizes[-1], act_dim))
        self.net = nn.Sequential(*layers)
        self.discrete = discrete
        if not discrete:
            self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Xavier-uniform weights, zero biases (garage's initialisation), from ``generator``."""
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight, generator=generator)
                nn.init.zeros_(m.bias)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


def _policy_params(policy: MLPPolicy, params: Params) -> Params:
    """The policy's own entries of ``params`` (a dict may also hold an agent's other parameters)."""
    return {k: v for k, v in params.items() if k.startswith("net.") or k == "log_std"}


def log_prob(policy: MLPPolicy, params: Params, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    out = functional_call(policy, _policy_params(policy, params), (obs,))
    if policy.discrete:
        return torch.log_softmax(out, -1).gather(-1, act.long().unsqueeze(-1)).squeeze(-1)
    log_std = params["log_std"]
    z = (act - out) / log_std.exp()
    return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def dist(policy: MLPPolicy, params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, log_std) for Gaussian policies, (log-probabilities, empty) for categorical ones."""
    out = functional_call(policy, _policy_params(policy, params), (obs,))
    if policy.discrete:
        return torch.log_softmax(out, -1), out.new_zeros(())
    return out, params["log_std"].expand_as(out)


def kl(policy: MLPPolicy, old: tuple[torch.Tensor, torch.Tensor], new: tuple[torch.Tensor, torch.Tensor]):
    """KL(old || new) per observation."""
    if policy.discrete:
        return (old[0].exp() * (old[0] - new[0])).sum(-1)
    (m0, s0), (m1, s1) = old, new
    return (s1 - s0 + ((2 * s0).exp() + (m0 - m1).pow(2)) / (2 * (2 * s1).exp()) - 0.5).sum(-1)


def per_task_log_prob(
    policy: MLPPolicy, params: Params, obs: torch.Tensor, act: torch.Tensor
) -> torch.Tensor:
    """:func:`log_prob` with per-task parameters: a leading task dimension on all of the arguments."""
    return vmap(log_prob, in_dims=(None, 0, 0, 0))(policy, params, obs, act)


def per_task_dist(policy: MLPPolicy, params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`dist` with per-task parameters: a leading task dimension on all of the arguments."""
    return vmap(dist, in_dims=(None, 0, 0))(policy, params, obs)


def sample_actions(
    discrete: bool, out: torch.Tensor, log_std: torch.Tensor | None, generator: torch.Generator
) -> torch.Tensor:
    """Actions drawn from the policy's outputs (logits, or means with ``log_std``), any leading dims."""
    if discrete:
        flat = torch.softmax(out, -1).reshape(-1, out.shape[-1])
        return torch.multinomial(flat, 1, generator=generator).reshape(out.shape[:-1])
    assert log_std is not None
    noise = torch.randn(out.shape, generator=generator, dtype=out.dtype)
    return out + log_std.exp() * noise


# ----------------------------------------------------------------------------- batches of episodes
#: ``forward(lo, hi, x)``: the policy's outputs for the tasks ``lo:hi`` of a meta-batch on observations
#: ``x`` of shape (hi - lo, K, obs_dim), and the log-std broadcastable to them (None for Discrete).
Forward = Callable[[int, int, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]


def per_task_forward(policy: MLPPolicy, params: Params) -> Forward:
    """Each task acting with its own parameters: ``params`` with a leading task dimension."""

    def forward(lo: int, hi: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        p = {name: v[lo:hi] for name, v in params.items()}
        out = vmap(functional_call, in_dims=(None, 0, 0))(policy, p, (x,))
        return out, (None if policy.discrete else p["log_std"][:, None, :])

    return forward


def shared_forward(policy: MLPPolicy, params: Params, context: torch.Tensor | None = None) -> Forward:
    """Every task acting with ``params``, on ``[s, context[i, j]]`` in episode j of task i when a
    ``context`` (tasks, K, d) is given."""

    def forward(lo: int, hi: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if context is not None:
            x = torch.cat([x, context[lo:hi]], -1)
        return functional_call(policy, params, (x,)), params.get("log_std")

    return forward


def sample_episodes(
    envs: Sequence[gym.Env],
    tasks: Sequence[Task],
    k: int,
    horizon: int,
    sp: Spaces,
    forward: Forward,
    generator: torch.Generator,
    device: str = "cpu",
) -> tuple[np.ndarray, ...]:
    """``k`` episodes for each task, all stepped together (``len(envs) // k`` tasks at a time).

    Returns (obs, act, rew, mask) of shape (tasks, k, T, ...), ``mask`` 1 on real steps.
    """
    n_tasks, group = len(tasks), max(1, len(envs) // k)
    obs = np.zeros((n_tasks, k, horizon, sp.obs_dim), np.float32)
    act = np.zeros((n_tasks, k, horizon) if sp.discrete else (n_tasks, k, horizon, sp.act_dim), np.float32)
    rew = np.zeros((n_tasks, k, horizon))
    mask = np.zeros((n_tasks, k, horizon))
    for start in range(0, n_tasks, group):
        stop = min(start + group, n_tasks)
        slots = [(i, j) for i in range(start, stop) for j in range(k)]
        cur = np.zeros((stop - start, k, sp.obs_dim), np.float32)
        alive = np.ones((stop - start, k), bool)
        for s, (i, j) in enumerate(slots):
            o, _ = envs[s].reset(options={"task": tasks[i]})
            cur[i - start, j] = sp.encode_obs(o)
        for t in range(horizon):
            with torch.no_grad():
                out, log_std = forward(start, stop, torch.as_tensor(cur, device=device))
                a = sample_actions(sp.discrete, out, log_std, generator).cpu().numpy()
            obs[start:stop, :, t] = cur
            act[start:stop, :, t] = a
            mask[start:stop, :, t] = alive
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


@dataclasses.dataclass
class Batch:
    """Episodes of a group of tasks, padded to the longest: arrays of shape (tasks, episodes × T, ...)."""

    obs: torch.Tensor
    act: torch.Tensor
    adv: torch.Tensor
    mask: torch.Tensor
    rew: torch.Tensor
    returns: np.ndarray
    """Undiscounted return of every episode, shape (tasks, episodes)."""
    first_adv: np.ndarray
    """The advantage at each episode's first step, shape (tasks, episodes) (MAESN's latent step)."""


def linear_baseline(
    obs: np.ndarray, rewards: np.ndarray, mask: np.ndarray, gamma: float, gae_lambda: float, reg: float
) -> np.ndarray:
    """GAE advantages with garage's LinearFeatureBaseline fitted on these episodes.

    Per task and batch, ridge regression (coefficient ``reg``, raised ×10 until the solve is finite) of
    the discounted returns on features ``[o, o², t/100, (t/100)², (t/100)³, 1]``, ``o`` clipped to
    [-10, 10]. Arrays are (episodes, T, ...) with ``mask`` 1 on real steps; returns advantages
    (episodes, T). Episodes ending by the time limit are treated as terminal, as in rllab/garage.
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
    obs: np.ndarray,
    act: np.ndarray,
    rew: np.ndarray,
    mask: np.ndarray,
    *,
    gamma: float,
    gae_lambda: float,
    reg: float,
    center: bool,
    device: str = "cpu",
) -> Batch:
    """Advantages per task from (tasks, episodes, T, ...) arrays, flattened to (tasks, episodes × T);
    ``center`` standardises them per task (rllab's ``center_adv``)."""
    n_tasks, n_eps, horizon = mask.shape
    adv = np.zeros_like(rew)
    for i in range(n_tasks):
        a = linear_baseline(obs[i], rew[i], mask[i], gamma, gae_lambda, reg)
        if center:
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
        rew=flat(rew.astype(np.float32)),
        returns=(rew * mask).sum(-1),
        first_adv=adv[:, :, 0],
    )


# ------------------------------------------------------------------------------------ inner step
def pg_loss(logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The vanilla policy-gradient loss −mean(log π(a|s) Â) over the real steps."""
    return -(logp * adv * mask).sum() / mask.sum().clamp(min=1.0)


def clip_by_global_norm(grads: Params, max_norm: float | None) -> Params:
    """``tf.clip_by_global_norm`` (TESP clips its inner gradients so); ``None`` leaves them as they are."""
    if max_norm is None:
        return grads
    norm = torch.sqrt(sum((g * g).sum() for g in grads.values()))
    scale = torch.clamp(max_norm / (norm + 1e-12), max=1.0)
    return {k: g * scale for k, g in grads.items()}


class LearnedRates(nn.Module):
    """One learned inner learning rate per entry of each parameter of ``module`` (Meta-SGD; TESP for its
    encoder), used clipped to [-bound, bound] (``tf.clip_by_value``: no gradient past the bound)."""

    def __init__(self, module: nn.Module, init: float):
        super().__init__()
        self.names = [n for n, _ in module.named_parameters()]
        self.values = nn.ParameterList(
            nn.Parameter(torch.full_like(p, init)) for _, p in module.named_parameters()
        )

    def clipped(self, bound: float) -> Params:
        return {n: v.clamp(-bound, bound) for n, v in zip(self.names, self.values, strict=True)}

    def detached(self, bound: float) -> Params:
        """:meth:`clipped`, detached: the rates of an inner step that is not differentiated."""
        return {n: v.detach() for n, v in self.clipped(bound).items()}

    def mean_abs(self, bound: float) -> float:
        """The mean absolute rate as used (clipped), for the logs."""
        return float(torch.cat([v.abs().reshape(-1) for v in self.detached(bound).values()]).mean())


def sgd_step(params: Params, grads: Params, lr: float | Params) -> Params:
    """θ − α ⊙ g for the entries of ``grads``: one rate, or one per parameter entry (a dict)."""
    out = dict(params)
    for k, g in grads.items():
        out[k] = params[k] - (lr[k] if isinstance(lr, dict) else lr) * g
    return out


# ------------------------------------------------------------------------------------ outer steps
def conjugate_gradient(
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


def unflatten(flat: torch.Tensor, like: Params) -> Params:
    out, i = {}, 0
    for name, p in like.items():
        out[name] = flat[i : i + p.numel()].view_as(p)
        i += p.numel()
    return out


def trpo_step(
    params: dict[str, nn.Parameter],
    objectives: Callable[[Params], tuple[torch.Tensor, torch.Tensor]],
    *,
    max_kl: float,
    cg_iters: int,
    cg_damping: float,
    backtrack_ratio: float,
    max_backtracks: int,
    apply: bool = True,
) -> dict[str, float]:
    """One TRPO step on ``params`` (garage's ``ConjugateGradientOptimizer``): minimise the loss of
    ``objectives(params) -> (loss, mean KL)`` subject to KL ≤ ``max_kl``; natural direction by conjugate
    gradient on KL Hessian-vector products, backtracking line search that rejects steps which do not
    improve the loss or break the bound. Gradients go through whatever ``objectives`` computes (for
    MAML, the inner step). Updates ``params`` in place when ``apply``; returns what to log."""
    theta = list(params.values())

    def flat_grad(y: torch.Tensor, **kwargs: bool) -> torch.Tensor:
        g = torch.autograd.grad(y, theta, allow_unused=True, **kwargs)
        return torch.cat(
            [(x if x is not None else torch.zeros_like(p)).reshape(-1) for x, p in zip(g, theta, strict=True)]
        )

    loss, kl_value = objectives(dict(params))
    g_flat = flat_grad(loss, retain_graph=True).detach()
    grad_kl_flat = flat_grad(kl_value, create_graph=True)

    def fvp(v: torch.Tensor) -> torch.Tensor:
        return flat_grad(grad_kl_flat @ v, retain_graph=True).detach() + cg_damping * v

    direction = conjugate_gradient(fvp, -g_flat, cg_iters)
    shs = float(direction @ fvp(direction))
    step = math.sqrt(2 * max_kl / max(shs, 1e-12)) * direction
    old_flat = torch.cat([p.detach().reshape(-1) for p in theta])
    like = {k: v.detach() for k, v in params.items()}
    loss_before = float(loss.detach())
    accepted, kl_after, loss_after, k = False, 0.0, loss_before, 0
    with torch.no_grad():
        for k in range(max_backtracks):
            candidate = unflatten(old_flat + backtrack_ratio**k * step, like)
            with torch.enable_grad():  # an inner step inside the objectives needs gradients
                new_loss, new_kl = objectives(candidate)
            loss_after, kl_after = float(new_loss), float(new_kl)
            if loss_after < loss_before and kl_after <= max_kl:
                accepted = True
                break
        if accepted and apply:
            new = unflatten(old_flat + backtrack_ratio**k * step, like)
            for p, v in zip(theta, new.values(), strict=True):
                p.copy_(v)
    return {
        "surrogate_before": -loss_before,
        "surrogate_after": -loss_after if accepted else -loss_before,
        "kl": kl_after if accepted else 0.0,
        "step_accepted": float(accepted),
    }


def masked_task_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean over tasks of the per-task mean of ``x`` over the real steps; (tasks, N) inputs."""
    return ((x * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()


def ppo_clip_loss(
    logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor, clip: float
) -> torch.Tensor:
    """PPO's clipped surrogate, −mean over tasks of the per-task mean over real steps; (tasks, N) inputs."""
    ratio = (logp - old_logp).exp()
    surr = torch.minimum(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)
    return -masked_task_mean(surr, mask)


def ppo_best_iterate(
    parameters: Sequence[nn.Parameter],
    loss_and_kl: Callable[[], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    *,
    iterations: int,
    kl_target: float,
    apply: bool = True,
) -> dict[str, float]:
    """TESP's outer loop (``MAMLOptimizer.step``): ``iterations`` full-batch Adam steps on the loss of
    ``loss_and_kl() -> (loss, policy loss, mean KL)``; keep the iterate with the lowest policy loss
    among those whose KL to the sampling policy is below ``kl_target`` (the first iterate, the
    sampling policy itself, always is). Restores the parameters when ``apply`` is false."""
    start = [p.detach().clone() for p in parameters]
    best: list[torch.Tensor] | None = None
    best_loss, best_kl, chosen = math.inf, 0.0, 0
    for i in range(iterations):
        loss, policy_loss, kl_value = loss_and_kl()
        pl, kv = float(policy_loss.detach()), float(kl_value.detach())
        if kv < kl_target and pl < best_loss:
            best_loss, best_kl, chosen = pl, kv, i
            best = [p.detach().clone() for p in parameters]
        if i < iterations - 1:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        for p, v in zip(parameters, best if (apply and best is not None) else start, strict=True):
            p.copy_(v)
    return {"surrogate_after": -best_loss, "kl": best_kl, "iterate_chosen": float(chosen)}


# ------------------------------------------------------------------------------------ meta-test
class TrialEpisodes:
    """The episodes of a meta-test trial as the agent saw them: per step the encoded observation,
    the policy's action, the reward and (optionally) extra per-step data."""

    def __init__(self) -> None:
        self.done: list[tuple[np.ndarray, ...]] = []
        self._current: list[tuple[np.ndarray, ...]] = []

    def add_step(self, *arrays: np.ndarray | float) -> None:
        self._current.append(tuple(np.asarray(a) for a in arrays))

    def end(self) -> bool:
        """Close the current episode; returns whether it had any step."""
        if not self._current:
            return False
        self.done.append(tuple(np.stack(x) for x in zip(*self._current, strict=True)))
        self._current = []
        return True

    def drop_current(self) -> None:
        self._current = []

    def take(self) -> list[tuple[np.ndarray, ...]]:
        out, self.done = self.done, []
        return out


def stack_episodes(episodes: Sequence[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """Episodes of (per-step arrays..., rewards last-but-none) to arrays of shape (1, n, T, ...) padded
    with zeros, plus the mask (1, n, T). Each episode is a tuple of arrays with a leading T axis."""
    horizon = max(len(e[0]) for e in episodes)
    n, fields = len(episodes), len(episodes[0])
    out = []
    for f in range(fields):
        first = np.asarray(episodes[0][f])
        arr = np.zeros((1, n, horizon, *first.shape[1:]), np.float64 if first.ndim == 1 else np.float32)
        for j, e in enumerate(episodes):
            arr[0, j, : len(e[f])] = e[f]
        out.append(arr)
    mask = np.zeros((1, n, horizon))
    for j, e in enumerate(episodes):
        mask[0, j, : len(e[0])] = 1.0
    return (*out, mask)


# ------------------------------------------------------------------------------------ meta-training
def run_meta_training(
    iteration: Callable[[], dict[str, float]],
    per_iteration: int,
    budget_steps: int,
    max_iterations: int | None,
    done_iterations: Callable[[], int],
    log: Any,
) -> int:
    """Call ``iteration()`` while another one (at most ``per_iteration`` env steps) fits the budget and
    the cap; each returns its stats with ``env_steps``, which are logged. Returns the steps used."""
    used = 0
    while used + per_iteration <= budget_steps and (
        max_iterations is None or done_iterations() < max_iterations
    ):
        stats = iteration()
        used += int(stats.pop("env_steps"))
        log.log(used, **stats)
    return used


def make_envs(make_env: Callable[[], gym.Env], probe: gym.Env, n: int, seed: int) -> list[gym.Env]:
    """``probe`` and ``n - 1`` more envs, each reset with a seed drawn from ``seed``."""
    env_seeds = np.random.default_rng([seed, 1])
    envs = [probe] + [make_env() for _ in range(n - 1)]
    for env in envs:
        env.reset(seed=int(env_seeds.integers(2**31)))
    return envs


def n_sampling_envs(requested: int, k: int, meta_batch_size: int) -> int:
    """Envs stepped together: ``requested`` (0: one per trajectory of a meta-batch), whole tasks."""
    n = requested or k * meta_batch_size
    n = max(k, n - n % k)
    return min(n, k * meta_batch_size)
