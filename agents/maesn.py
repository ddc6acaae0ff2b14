"""MAESN: model-agnostic exploration with structured noise (Gupta et al., 2018).

"Meta-Reinforcement Learning of Structured Exploration Strategies" (NeurIPS 2018, arXiv:1802.07245), the
original method as in russellmendonca/maesn_suite (``maesn/sandbox/rocky/tf/algos/maesn_npo.py``,
``maesn/sandbox/rocky/tf/policies/maml_minimal_gauss_mlp_policy_adaStep.py``,
``maesn/rllab/sampler/base.py``; hyperparameters from ``maesn/launchers/train.py`` and
``maesn/metaTrainedPolicies/hyperParams.txt``), not TESP's simplification (one shared latent vector with an
L2 penalty, ``tesp/rllib_models/rllib_maesn.py``), which this file does not offer.

The policy acts on ``[s, z]``; z is drawn once per episode from a latent distribution N(μ, σ). Each train
task i has its own (μᵢ, log σᵢ) (μ initialised N(0, 1), log σ at 0); a meta-test task starts at the
prior N(0, I).

Meta-training, per iteration (all tasks of a meta-batch sampled together, ``agents/common/policy_gradient``):

1. draw ``meta_batch_size`` train tasks; sample ``trajectories_per_task`` episodes of each, z = μᵢ + ε σᵢ
   with ε ~ N(0, I) per episode;
2. inner step on the latent distribution only (the policy weights do not adapt): REINFORCE on
   log N(z; μᵢ, σᵢ) with each episode's advantage at its first step (linear baseline, GAE λ 1, centred
   over the task's episodes, as ``process_samples(joint_opt=True)``), μᵢ' = μᵢ − s_μ ⊙ ∇μ, log σᵢ' =
   log σᵢ − s_σ ⊙ ∇log σ with learned per-dimension step sizes s_μ, s_σ (initialised to ``inner_lr``);
3. sample as many episodes per task with z = μᵢ' + ε σᵢ';
4. outer TRPO step (max KL ``max_kl``) on the post-update surrogate of every parameter — policy, the
   tasks' μ and log σ, the step sizes — plus ``kl_weight`` · KL(N(μᵢ, σᵢ) ‖ N(0, I)); second-order: the
   gradient goes through the latent inner step and, by reparameterisation, through the post-update z.

Meta-test (the harness protocol): ``begin_trial`` sets μ, σ to the prior; each adaptation episode
(``explore=True``) draws its z from N(μ, σ) and samples actions; every ``n_adapt // test_inner_steps``
of them ``end_episode`` takes the latent step with the learned step sizes (only μ and σ change, up to
``test_inner_steps`` times). Evaluation episodes act with z = μ and the mean action (argmax for
``Discrete``), and do not adapt.

Published settings (``train.py``, ``hyperParams.txt``): policy MLP (100, 100) ReLU, initial std 1, latent
dim 2, fast learning rate 1, 50 trajectories per task, meta-batch 20, TRPO step size 0.01 (rllab's
conjugate-gradient optimiser: 10 iterations, damping 1e-5, backtrack 0.8 × 15), KL weight 0.1, one
inner step, discount 0.99, GAE λ 1, centred advantages. Where ours differ: the original meta-tests
with 100 VPG iterations of 10,000 steps on the latents; here meta-test has the family's ``n_adapt``
episodes, so it takes ``test_inner_steps`` latent steps; ``Discrete`` actions get a categorical
policy. Tier settings are in ``agents/hyperparams/maesn.toml`` (what we tried is said there).

Randomness: the agent's own ``torch.Generator`` and ``np.random.Generator`` seeded from ``meta_train``'s
seed. ``save`` writes ``model.pt`` (policy, latents and step sizes: a state dict read back with
``torch.load(weights_only=True)``) and ``agent.json``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.func import grad, vmap

from metabench.agents.common import pg_agent
from metabench.agents.common import policy_gradient as pg
from metabench.agents.common.policy_gradient import Batch, MLPPolicy, Params, Spaces
from metabench.tasks import Task


@dataclasses.dataclass
class Config(pg_agent.RunSettings):
    """MAESN hyperparameters; defaults are the published ones (see the module docstring)."""

    hidden_sizes: tuple[int, ...] = (100, 100)
    activation: str = "relu"
    init_std: float = 1.0
    latent_dim: int = 2
    inner_lr: float = 1.0
    """Initial value of the learned per-dimension step sizes of μ and log σ."""
    trajectories_per_task: int = 50
    """Episodes per task for the inner step (and the post-update batch); 0 means as many as a meta-test
    inner step gets (the family's ``n_adapt // test_inner_steps``)."""
    meta_batch_size: int = 20
    max_kl: float = 0.01
    kl_weight: float = 0.1
    cg_iters: int = 10
    cg_damping: float = 1e-5
    backtrack_ratio: float = 0.8
    max_backtracks: int = 15
    gamma: float = 0.99
    gae_lambda: float = 1.0
    baseline_reg: float = 1e-5
    center_advantages: bool = True
    test_inner_steps: int = 1


# Tier settings: agents/hyperparams/maesn.toml (metabench.protocol.build_config).


class Latents(nn.Module):
    """Every train task's latent distribution (μᵢ, log σᵢ) and the learned step sizes of the inner step."""

    def __init__(self, n_tasks: int, dim: int, step: float):
        super().__init__()
        self.latent_mean = nn.Parameter(torch.zeros(n_tasks, dim))
        self.latent_log_std = nn.Parameter(torch.zeros(n_tasks, dim))
        self.step_mean = nn.Parameter(torch.full((dim,), step))
        self.step_log_std = nn.Parameter(torch.full((dim,), step))


def latent_loss(
    mean: torch.Tensor, log_std: torch.Tensor, z: torch.Tensor, adv: torch.Tensor
) -> torch.Tensor:
    """−mean over episodes of log N(z; μ, σ) Â (one task: z (episodes, d), Â (episodes,))."""
    logp = (-0.5 * ((z - mean) / log_std.exp()).pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    return -(logp * adv).mean()


def latent_step(
    mean: torch.Tensor, log_std: torch.Tensor, step_mean: torch.Tensor, step_log_std: torch.Tensor, z, adv
) -> tuple[torch.Tensor, torch.Tensor]:
    """MAESN's inner step on one task's latent distribution (functional, differentiable)."""
    g_mean, g_log_std = grad(latent_loss, argnums=(0, 1))(mean, log_std, z, adv)
    return mean - step_mean * g_mean, log_std - step_log_std * g_log_std


def centred(x: np.ndarray) -> np.ndarray:
    """rllab's ``center_advantages`` along the last axis."""
    return (x - x.mean(-1, keepdims=True)) / (x.std(-1, keepdims=True) + 1e-8)


class MAESNAgent(pg_agent.PGAgent):
    """MAESN (see the module docstring)."""

    name = "MAESN"
    config: Config

    def __init__(self, config: Config):
        if config.test_inner_steps < 0:
            raise ValueError(f"Config.test_inner_steps must be >= 0, got {config.test_inner_steps}")
        super().__init__(config)
        self.latents: Latents | None = None
        # meta-test state: the trial's latent distribution and the current episode's z
        self._mean = self._log_std = self._z = torch.zeros(0)
        self._new_episode = True

    def _build(self, spaces: Spaces, n_tasks: int) -> None:
        cfg = self.config
        self.spaces = spaces
        in_dim, sp = spaces.obs_dim + cfg.latent_dim, spaces
        self.policy = MLPPolicy(
            in_dim, sp.act_dim, sp.discrete, cfg.hidden_sizes, cfg.activation, cfg.init_std
        )
        self.policy.to(cfg.device)
        self.latents = Latents(n_tasks, cfg.latent_dim, cfg.inner_lr).to(cfg.device)

    def _params(self) -> dict[str, nn.Parameter]:
        """Every meta-parameter by name: the policy's and the latents'."""
        assert self.policy is not None and self.latents is not None
        return {**dict(self.policy.named_parameters()), **dict(self.latents.named_parameters())}

    def _sample(self, envs: list[gym.Env], tasks: Sequence[Task], z: torch.Tensor) -> Batch:
        """Episodes of every task, episode j of task i acting on ``z[i, j]``."""
        assert self.policy is not None
        forward = pg.shared_forward(self.policy, self.policy_params(), context=z)
        return self._batch(*self._sample_episodes(envs, tasks, forward))

    def _noise(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, self.config.latent_dim, generator=self.generator).to(self.config.device)

    # ------------------------------------------------------------------------------ meta-training
    def setup(self, make_env: Callable[[], gym.Env], seed: int, n_tasks: int) -> list[gym.Env]:
        """Build the policy and the latents of ``n_tasks`` train tasks (initial values from ``seed``)
        and the sampling envs (``meta_train`` passes the number of train tasks)."""
        cfg = self.config
        probe, spaces, n_adapt = self._probe(make_env, seed)
        self._build(spaces, n_tasks)
        assert self.policy is not None and self.latents is not None
        self.policy.reset_parameters(self.generator)
        with torch.no_grad():
            self.latents.latent_mean.copy_(torch.randn(n_tasks, cfg.latent_dim, generator=self.generator))
        self.episodes_per_step = max(1, n_adapt // max(1, cfg.test_inner_steps))
        return self._sampling_envs(make_env, probe, seed)

    def _setup_meta_training(self, make_env: Callable[[], gym.Env], seed: int, n_tasks: int) -> list[gym.Env]:
        return self.setup(make_env, seed, n_tasks)

    def _meta_iteration_on(
        self, envs: list[gym.Env], tasks: Sequence[Task], idx: np.ndarray
    ) -> dict[str, float]:
        return self.meta_iteration(envs, [tasks[int(i)] for i in idx], [int(i) for i in idx])

    def _batches_per_iteration(self) -> int:
        return 2  # pre- and post-update

    def meta_iteration(
        self, envs: list[gym.Env], tasks: Sequence[Task], table_rows: Sequence[int] | None = None
    ) -> dict[str, float]:
        """Sample, take the latent step per task, sample again, take the TRPO step; returns the log.
        ``table_rows``: each task's row in the latent table (default: 0, 1, ...)."""
        cfg, policy, lat = self.config, self.policy, self.latents
        assert policy is not None and lat is not None
        rows = torch.as_tensor(list(table_rows if table_rows is not None else range(len(tasks))))
        m, k = len(tasks), self._k
        with torch.no_grad():
            mean, log_std = lat.latent_mean[rows], lat.latent_log_std[rows]
            z_pre = mean[:, None] + self._noise(m, k) * log_std.exp()[:, None]
        pre = self._sample(envs, tasks, z_pre)
        step = vmap(latent_step, in_dims=(0, 0, None, None, 0, 0))
        adv_pre = torch.as_tensor(centred(pre.first_adv), dtype=torch.float32, device=cfg.device)
        with torch.no_grad():
            new_mean, new_log_std = step(mean, log_std, lat.step_mean, lat.step_log_std, z_pre, adv_pre)
        eps_post = self._noise(m, k)
        post = self._sample(envs, tasks, new_mean[:, None] + eps_post * new_log_std.exp()[:, None])
        horizon = post.obs.shape[1] // k

        def context(mu: torch.Tensor, ls: torch.Tensor) -> torch.Tensor:
            """The post-update episodes' z, reparameterised, repeated over each episode's steps."""
            z = mu[:, None] + eps_post * ls.exp()[:, None]
            return z.repeat_interleave(horizon, dim=1)

        x_old = torch.cat([post.obs, context(new_mean, new_log_std)], -1)
        with torch.no_grad():
            old_params = self.policy_params()
            old_dist = pg.dist(policy, old_params, x_old)
            old_logp = pg.log_prob(policy, old_params, x_old, post.act)

        def objectives(params: Params) -> tuple[torch.Tensor, torch.Tensor]:
            mu, ls = params["latent_mean"][rows], params["latent_log_std"][rows]
            mu_new, ls_new = step(mu, ls, params["step_mean"], params["step_log_std"], z_pre, adv_pre)
            x = torch.cat([post.obs, context(mu_new, ls_new)], -1)
            ratio = (pg.log_prob(policy, params, x, post.act) - old_logp).exp()
            surrogate = -pg.masked_task_mean(ratio * post.adv, post.mask)
            prior_kl = (0.5 * (mu.pow(2) + (2 * ls).exp() - 1) - ls).sum(-1).mean()
            kl = pg.masked_task_mean(pg.kl(policy, old_dist, pg.dist(policy, params, x)), post.mask)
            return surrogate + cfg.kl_weight * prior_kl, kl

        stats = pg.trpo_step(
            self._params(),
            objectives,
            max_kl=cfg.max_kl,
            cg_iters=cfg.cg_iters,
            cg_damping=cfg.cg_damping,
            backtrack_ratio=cfg.backtrack_ratio,
            max_backtracks=cfg.max_backtracks,
            apply=not cfg.disable_updates,
        )
        self.iterations += 1
        return {
            "env_steps": float(pre.mask.sum().item() + post.mask.sum().item()),
            "pre_update_return": float(pre.returns.mean()),
            "post_update_return": float(post.returns.mean()),
            "latent_step_size": float(torch.cat([lat.step_mean, lat.step_log_std]).detach().mean()),
            **stats,
        }

    # -------------------------------------------------------------------------------- meta-testing
    def begin_trial(self) -> None:
        """The prior N(0, I) as the trial's latent distribution; forget the trial's episodes."""
        super().begin_trial()
        d = self.config.latent_dim
        self._mean, self._log_std = torch.zeros(d), torch.zeros(d)
        self._new_episode = True

    def _policy_outputs(self, obs: torch.Tensor, explore: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        assert self.policy is not None
        if self._new_episode:  # z once per episode: structured, temporally coherent exploration
            self._z = self._mean + self._noise() * self._log_std.exp() if explore else self._mean
            self._new_episode = False
        return self.policy(torch.cat([obs, self._z])), getattr(self.policy, "log_std", None)

    def _step_record(self, out: torch.Tensor, log_std: torch.Tensor | None) -> tuple[np.ndarray, ...]:
        return (self._z.cpu().numpy(),)  # the episode's z, for the latent step

    def end_episode(self) -> None:
        """After an adaptation episode: keep it with its z; every ``episodes_per_step``, a latent step."""
        self._new_episode = True
        episodes = self._adaptation_episodes(self.config.test_inner_steps)
        if episodes is not None:
            assert self.latents is not None
            obs, act, rew, _z, mask = pg.stack_episodes(episodes)
            batch = self._batch(obs, act, rew, mask)
            z = torch.as_tensor(np.stack([e[3][0] for e in episodes]), dtype=torch.float32)
            adv = torch.as_tensor(centred(batch.first_adv[0]), dtype=torch.float32)
            lat = self.latents
            with torch.no_grad():
                self._mean, self._log_std = latent_step(
                    self._mean, self._log_std, lat.step_mean, lat.step_log_std, z, adv
                )

    # -------------------------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> None:
        """Write the directory ``path``: ``model.pt`` (policy and latents) and ``agent.json``."""
        n_train_tasks = 0 if self.latents is None else int(self.latents.latent_mean.shape[0])
        path = self._save_agent_json(path, self.latents, n_train_tasks=n_train_tasks)
        pg_agent.save_networks(path / "model.pt", policy=self.policy, latents=self.latents)

    @classmethod
    def load(cls, path: str | Path) -> MAESNAgent:
        agent, meta = cls._load_agent_json(path, Config)
        assert agent.spaces is not None
        agent._build(agent.spaces, int(meta["n_train_tasks"]))
        pg_agent.load_networks(
            Path(path) / "model.pt", agent.config.device, policy=agent.policy, latents=agent.latents
        )
        agent.begin_trial()
        return agent


def make_agent(config: Config) -> MAESNAgent:
    return MAESNAgent(config)
