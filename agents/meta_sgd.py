"""Meta-SGD: MAML with a learned learning rate for every policy parameter (Li et al., 2017), as TESP runs it.

"Meta-SGD: Learning to Learn Quickly for Few-Shot Learning" (arXiv:1707.09835), in the version that
"Meta Reinforcement Learning with Task Embedding and Shared Policy" (Lan et al., IJCAI 2019) re-implements
beside TESP: llan-ml/tesp ``tesp/maml/meta_sgd.py`` (``adaptive_inner_lr=True`` on ``tesp/maml/maml.py``),
hyperparameters from ``tesp/main_train.py``. We follow TESP's version, not Li et al.'s one-step RL setting:
three inner steps and TESP's first-order PPO outer loop (``inner_steps = 1`` gives Li et al.'s number of
inner steps, still with PPO).

Meta-training, per iteration (all tasks of a meta-batch sampled together, ``agents/common/policy_gradient``):

1. draw ``meta_batch_size`` train tasks; θ'ᵢ ← θ;
2. ``inner_steps`` times: sample ``trajectories_per_task`` episodes per task with θ'ᵢ; inner step
   θ'ᵢ ← θ'ᵢ − clip(α, ±``inner_lr_bound``) ⊙ clip_norm(∇ Lᵢ(θ'ᵢ), ``inner_grad_clip``), with Lᵢ the
   vanilla policy-gradient loss −mean(log π Â) (advantages: linear feature baseline, GAE γ 0.99, λ 0.97,
   not centred, as TESP's ``postprocess_trajectory``); α has θ's shape, initialised to ``inner_lr``;
3. sample as many episodes per task with θ'ᵢ (the post-update batch);
4. outer step, first-order as TESP's (the inner gradients Gᵢ = Σ gᵢ are constants, but the rates still get
   gradient through θ'ᵢ = θ − clip(α) ⊙ Gᵢ): ``outer_iterations`` full-batch Adam steps (lr ``outer_lr``)
   on PPO's clipped surrogate (clip ``ppo_clip``) of the post-update episodes, averaged over tasks, over θ
   and α; the iterate kept is the one with the best surrogate among those with mean KL to the sampling
   policies below ``kl_target`` (TESP's ``MAMLOptimizer.step``).

Meta-test (the harness protocol): ``begin_trial`` restores θ; every ``n_adapt // inner_steps`` adaptation
episodes (``explore=True``) ``end_episode`` takes one inner step with the learned rates, up to
``inner_steps``; evaluation episodes act with the adapted parameters and the mean action (argmax for
``Discrete``), and do not adapt.

Published settings (``main_train.py``: inner_lr 0.001, inner_lr_bound 0.1, inner_grad_clip 60,
num_inner_updates 3, outer_lr 3e-4, num_sgd_iter 20, clip_param 0.15, γ 0.99, λ 0.97, MLP 256×2 tanh;
``maml.py``: kl_target 0.01; 20 workers = 20 tasks per meta-batch, 25 episodes each) are the defaults.
Where ours differ: the log-std is a learned state-independent parameter (RLlib's network outputs it),
adapted with its own rates like every parameter; ``Discrete`` actions get a categorical policy. Tier
settings are in ``agents/hyperparams/meta_sgd.toml`` (what we tried is said there).

Randomness: the agent's own ``torch.Generator`` and ``np.random.Generator`` seeded from ``meta_train``'s
seed. ``save`` writes ``model.pt`` (policy and rates, a state dict read back with
``torch.load(weights_only=True)``) and ``agent.json``.
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
    """Meta-SGD hyperparameters; defaults are TESP's published ones (see the module docstring)."""

    hidden_sizes: tuple[int, ...] = (256, 256)
    activation: str = "tanh"
    init_std: float = 1.0
    inner_lr: float = 1e-3
    """Initial value of every learned inner learning rate."""
    inner_lr_bound: float = 0.1
    """The rates are clipped to [-bound, bound] where they are used."""
    learn_inner_lr: bool = True
    """False freezes the rates at ``inner_lr``: then the inner step is MAML's."""
    inner_grad_clip: float | None = 60.0
    inner_steps: int = 3
    trajectories_per_task: int = 25
    """Episodes per task for each inner step (and the post-update batch); 0 means as many as a meta-test
    inner step gets (the family's ``n_adapt // inner_steps``)."""
    meta_batch_size: int = 20
    outer_lr: float = 3e-4
    outer_iterations: int = 20
    ppo_clip: float = 0.15
    kl_target: float = 0.01
    gamma: float = 0.99
    gae_lambda: float = 0.97
    baseline_reg: float = 1e-5
    center_advantages: bool = False


# Tier settings: agents/hyperparams/meta_sgd.toml (metabench.protocol.build_config).


class MetaSGDAgent(pg_agent.PolicyAdaptingAgent):
    """Meta-SGD (see the module docstring)."""

    name = "Meta-SGD"
    config: Config

    def __init__(self, config: Config):
        if config.inner_steps < 1:
            raise ValueError(f"Config.inner_steps must be >= 1, got {config.inner_steps}")
        super().__init__(config)
        self.rates: pg.LearnedRates | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    # ------------------------------------------------------------------------ functional pieces
    def _build(self, spaces: Spaces) -> None:
        cfg = self.config
        self.spaces = spaces
        self.policy = MLPPolicy(
            spaces.obs_dim, spaces.act_dim, spaces.discrete, cfg.hidden_sizes, cfg.activation, cfg.init_std
        ).to(cfg.device)
        self.rates = pg.LearnedRates(self.policy, cfg.inner_lr).to(cfg.device)
        self.rates.requires_grad_(cfg.learn_inner_lr)

    def learning_rates(self) -> Params:
        assert self.rates is not None
        return self.rates.detached(self.config.inner_lr_bound)

    def _inner_grad(self, params: Params, obs, act, adv, mask) -> Params:
        def loss(p: Params) -> torch.Tensor:
            return pg.pg_loss(pg.log_prob(self.policy, p, obs, act), adv, mask)

        return pg.clip_by_global_norm(grad(loss)(params), self.config.inner_grad_clip)

    def inner_step(self, params: Params, rates: Params, obs, act, adv, mask) -> tuple[Params, Params]:
        """(θ − α ⊙ g, g) for one task's batch: the step and the (clipped) gradient it used."""
        g = self._inner_grad(params, obs, act, adv, mask)
        return pg.sgd_step(params, g, rates), g

    def _sample(self, envs: list[gym.Env], tasks: Sequence[Task], params: Params) -> Batch:
        """Episodes of every task with its own parameters (leading task dimension)."""
        assert self.policy is not None
        return self._batch(*self._sample_episodes(envs, tasks, pg.per_task_forward(self.policy, params)))

    # ------------------------------------------------------------------------------ meta-training
    def setup(self, make_env: Callable[[], gym.Env], seed: int) -> list[gym.Env]:
        """Build the policy and rates (initial weights from ``seed``) and the sampling envs (seeded)."""
        cfg = self.config
        probe, spaces, n_adapt = self._probe(make_env, seed)
        self._build(spaces)
        assert self.policy is not None and self.rates is not None
        self.policy.reset_parameters(self.generator)
        self.episodes_per_step = max(1, n_adapt // cfg.inner_steps)
        params = list(self.policy.parameters()) + (
            list(self.rates.parameters()) if cfg.learn_inner_lr else []
        )
        self.optimizer = torch.optim.Adam(params, lr=cfg.outer_lr)
        return self._sampling_envs(make_env, probe, seed)

    def _batches_per_iteration(self) -> int:
        return self.config.inner_steps + 1  # the inner steps' and the post-update one

    def meta_iteration(self, envs: list[gym.Env], tasks: Sequence[Task]) -> dict[str, float]:
        """Inner steps on fresh episodes, a post-update batch, TESP's PPO outer loop; returns the log."""
        cfg, policy, rates = self.config, self.policy, self.rates
        assert policy is not None and rates is not None and self.optimizer is not None
        m = len(tasks)
        lr = self.learning_rates()
        cur = {k: v.expand(m, *v.shape).clone() for k, v in self.meta_params().items()}
        total = {k: torch.zeros_like(v) for k, v in cur.items()}
        steps, returns = 0.0, []
        step = vmap(self.inner_step, in_dims=(0, None, 0, 0, 0, 0))
        for _ in range(cfg.inner_steps):
            batch = self._sample(envs, tasks, cur)
            cur, g = step(cur, lr, batch.obs, batch.act, batch.adv, batch.mask)
            cur = {k: v.detach() for k, v in cur.items()}
            total = {k: total[k] + g[k].detach() for k in total}
            steps += float(batch.mask.sum())
            returns.append(float(batch.returns.mean()))
        post = self._sample(envs, tasks, cur)
        steps += float(post.mask.sum())
        with torch.no_grad():
            old_dist = pg.per_task_dist(policy, cur, post.obs)
            old_logp = pg.per_task_log_prob(policy, cur, post.obs, post.act)

        def loss_and_kl() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            clipped = rates.clipped(cfg.inner_lr_bound)
            adapted = {k: p - clipped[k] * total[k] for k, p in policy.named_parameters()}
            logp = pg.per_task_log_prob(policy, adapted, post.obs, post.act)
            loss = pg.ppo_clip_loss(logp, old_logp, post.adv, post.mask, cfg.ppo_clip)
            new_dist = pg.per_task_dist(policy, adapted, post.obs)
            kl = pg.masked_task_mean(pg.kl(policy, old_dist, new_dist), post.mask)
            return loss, loss, kl

        params = list(policy.parameters()) + list(rates.parameters())
        stats = pg.ppo_best_iterate(
            params,
            loss_and_kl,
            self.optimizer,
            iterations=cfg.outer_iterations,
            kl_target=cfg.kl_target,
            apply=not cfg.disable_updates,
        )
        self.iterations += 1
        return {
            "env_steps": steps,
            "pre_update_return": returns[0],
            "post_update_return": float(post.returns.mean()),
            "mean_abs_rate": rates.mean_abs(cfg.inner_lr_bound),
            **stats,
        }

    # -------------------------------------------------------------------------------- meta-testing
    def _test_steps(self) -> int:
        return self.config.inner_steps

    def _test_step(self, params: Params, episodes: list[tuple[np.ndarray, ...]]) -> Params:
        """The inner step with the learned rates on the trial's last ``episodes_per_step`` episodes."""
        obs, act, rew, mask = pg.stack_episodes(episodes)
        b = self._batch(obs, act, rew, mask)
        new, _ = self.inner_step(params, self.learning_rates(), b.obs[0], b.act[0], b.adv[0], b.mask[0])
        return {k: v.detach() for k, v in new.items()}

    # -------------------------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> None:
        """Write the directory ``path``: ``model.pt`` (policy and rates) and ``agent.json``."""
        path = self._save_agent_json(path, self.rates)
        pg_agent.save_networks(path / "model.pt", policy=self.policy, rates=self.rates)

    @classmethod
    def load(cls, path: str | Path) -> MetaSGDAgent:
        agent, _ = cls._load_agent_json(path, Config)
        assert agent.spaces is not None
        agent._build(agent.spaces)
        pg_agent.load_networks(
            Path(path) / "model.pt", agent.config.device, policy=agent.policy, rates=agent.rates
        )
        agent.begin_trial()
        return agent


def make_agent(config: Config) -> MetaSGDAgent:
    return MetaSGDAgent(config)
