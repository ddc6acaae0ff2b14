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

Baseline: garage's/rllab's ``LinearFeatureBaseline`` fitted per task and batch; advantages are GAE and
centred per task (rllab's ``center_adv``). Sampling, baseline, inner step and TRPO step are the shared
ones of ``agents/common/policy_gradient.py`` (Meta-SGD, MAESN and TESP use them too), and so is the
agent's shell around them: the meta-training loop, ``act``/``observe`` and ``save``/``load``
(``agents/common/pg_agent.py``).

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
  The ``ci`` and ``standard`` tiers meta-train the inner step on as many trajectories per task as a
  meta-test inner step gets (``trajectories_per_task = 0``: the family's ``n_adapt``, 10 on PointNav,
  90 one-pull episodes on Bandit, 7 on TabularMDP), not the paper's 20, so that the inner step is
  meta-trained on the amount of data it meets at meta-test. ``ci`` also uses a meta-batch of 10, so
  that several meta-iterations fit its budgets (``docs/agents/maml.md``).
* training takes exactly one inner step; only meta-test can take several.
* evaluation acts with the mode of the adapted policy. On Bandit that alone is strong, whatever the
  meta-training (``docs/agents/maml.md``); on PointNav meta-training matters (see
  ``tests/test_maml.py``'s learnability test).

Meta-training runs as many iterations as the budget allows (``meta_iterations`` caps it), never
stepping past it. Randomness: the agent's own ``torch.Generator`` and ``np.random.Generator`` seeded
from ``meta_train``'s seed (initial weights, actions, task draws, env seeds); nothing global. ``save``
writes ``policy.pt`` (a state dict, read back with ``torch.load(weights_only=True)``) and
``agent.json`` (config, spaces, generator state).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch.func import grad, vmap

from metabench.agents.common import pg_agent
from metabench.agents.common import policy_gradient as pg
from metabench.agents.common.policy_gradient import Batch, MLPPolicy, Params, Spaces
from metabench.tasks import Task


@dataclasses.dataclass
class Config(pg_agent.RunSettings):
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


# Tier settings: agents/hyperparams/maml.toml (metabench.protocol.build_config).


def make_policy(spaces: Spaces, config: Config) -> MLPPolicy:
    sp, cfg = spaces, config
    return MLPPolicy(sp.obs_dim, sp.act_dim, sp.discrete, cfg.hidden_sizes, cfg.activation, cfg.init_std)


# ------------------------------------------------------------------------------------- the agent
class MAMLAgent(pg_agent.PolicyAdaptingAgent):
    """MAML-TRPO (see the module docstring)."""

    name = "MAML"
    config: Config

    def __init__(self, config: Config):
        if config.test_inner_steps < 0:
            raise ValueError(f"Config.test_inner_steps must be >= 0, got {config.test_inner_steps}")
        super().__init__(config)

    # ------------------------------------------------------------------------ functional pieces
    def _inner_loss(self, params: Params, obs, act, adv, mask) -> torch.Tensor:
        return pg.pg_loss(pg.log_prob(self.policy, params, obs, act), adv, mask)

    def _adapt(self, params: Params, obs, act, adv, mask) -> Params:
        """One inner policy-gradient step (functional, differentiable in ``params``)."""
        return pg.sgd_step(params, grad(self._inner_loss)(params, obs, act, adv, mask), self.config.inner_lr)

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
        assert self.policy is not None
        if per_task:
            return self._sample_episodes(envs, tasks, pg.per_task_forward(self.policy, params))
        return self._sample_episodes(envs, tasks, pg.shared_forward(self.policy, params))

    # ------------------------------------------------------------------------------ TRPO step
    def objectives(
        self, pre: Batch, post: Batch, adapted_old: Params
    ) -> Callable[[Params], tuple[torch.Tensor, torch.Tensor]]:
        """θ ↦ (MAML's outer loss, mean KL): the importance-weighted surrogate of the post-update
        episodes under θ'ᵢ(θ), the inner step taken *inside* (second-order)."""
        policy = self.policy
        with torch.no_grad():
            old_dist = pg.per_task_dist(policy, adapted_old, post.obs)
            old_logp = pg.per_task_log_prob(policy, adapted_old, post.obs, post.act)

        def objectives(params: Params) -> tuple[torch.Tensor, torch.Tensor]:
            adapted = self.adapt_tasks(params, pre)
            logp = pg.per_task_log_prob(policy, adapted, post.obs, post.act)
            ratio = (logp - old_logp).exp()
            loss = -pg.masked_task_mean(ratio * post.adv, post.mask)
            new_dist = pg.per_task_dist(policy, adapted, post.obs)
            kl = pg.masked_task_mean(pg.kl(policy, old_dist, new_dist), post.mask)
            return loss, kl

        return objectives

    def _outer_step(self, pre: Batch, post: Batch, adapted_old: Params) -> dict[str, float]:
        cfg = self.config
        assert self.policy is not None
        return pg.trpo_step(
            dict(self.policy.named_parameters()),
            self.objectives(pre, post, adapted_old),
            max_kl=cfg.max_kl,
            cg_iters=cfg.cg_iters,
            cg_damping=cfg.cg_damping,
            backtrack_ratio=cfg.backtrack_ratio,
            max_backtracks=cfg.max_backtracks,
            apply=not cfg.disable_updates,
        )

    # ------------------------------------------------------------------------------ meta-training
    def setup(self, make_env: Callable[[], gym.Env], seed: int) -> list[gym.Env]:
        """Build the policy (initial weights from ``seed``) and the sampling envs (seeded)."""
        cfg = self.config
        probe, self.spaces, n_adapt = self._probe(make_env, seed)
        self.episodes_per_step = cfg.test_episodes_per_step or max(1, n_adapt // max(1, cfg.test_inner_steps))
        self.policy = make_policy(self.spaces, cfg)
        self.policy.reset_parameters(self.generator)
        self.policy.to(cfg.device)
        return self._sampling_envs(make_env, probe, seed)

    def _batches_per_iteration(self) -> int:
        return 2  # pre- and post-update

    def meta_iteration(self, envs: list[gym.Env], tasks: Sequence[Task]) -> dict[str, float]:
        """Sample, adapt per task, sample again, take the TRPO step; returns what to log."""
        theta = self.meta_params()
        pre = self._batch(*self._sample(envs, tasks, theta, per_task=False))
        adapted = {n: v.detach() for n, v in self.adapt_tasks(theta, pre).items()}
        post = self._batch(*self._sample(envs, tasks, adapted, per_task=True))
        stats = self._outer_step(pre, post, adapted)
        self.iterations += 1
        return {
            "env_steps": float(pre.mask.sum().item() + post.mask.sum().item()),
            "pre_update_return": float(pre.returns.mean()),
            "post_update_return": float(post.returns.mean()),
            **stats,
        }

    # -------------------------------------------------------------------------------- meta-testing
    def _test_steps(self) -> int:
        return self.config.test_inner_steps

    def _test_step(self, params: Params, episodes: list[tuple[np.ndarray, ...]]) -> Params:
        obs, act, rew, mask = pg.stack_episodes(episodes)
        batch = self._batch(obs, act, rew, mask)
        adapted = self._adapt(params, batch.obs[0], batch.act[0], batch.adv[0], batch.mask[0])
        return {k: v.detach() for k, v in adapted.items()}

    # -------------------------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> None:
        """Write the directory ``path``: ``policy.pt`` (state dict) and ``agent.json``."""
        path = self._save_agent_json(path)
        assert self.policy is not None
        torch.save(self.policy.state_dict(), path / "policy.pt")

    @classmethod
    def load(cls, path: str | Path) -> MAMLAgent:
        agent, _ = cls._load_agent_json(path, Config)
        assert agent.spaces is not None
        agent.policy = make_policy(agent.spaces, agent.config)
        state = torch.load(Path(path) / "policy.pt", map_location=agent.config.device, weights_only=True)
        agent.policy.load_state_dict(state)
        agent.begin_trial()
        return agent


def make_agent(config: Config) -> MAMLAgent:
    return MAMLAgent(config)
