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
ones of ``agents/common/policy_gradient.py`` (Meta-SGD, MAESN and TESP use them too).

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

import base64
import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch.func import functional_call, grad, vmap

from metabench.agents.common import policy_gradient as pg
from metabench.agents.common.policy_gradient import Batch, MLPPolicy, Params, Spaces
from metabench.agents.common.spaces import space_from_dict, space_to_dict
from metabench.protocol import Budget, Logger, Transition
from metabench.tasks import Task


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


# Tier settings: agents/hyperparams/maml.toml (metabench.protocol.build_config).


def make_policy(spaces: Spaces, config: Config) -> MLPPolicy:
    sp, cfg = spaces, config
    return MLPPolicy(sp.obs_dim, sp.act_dim, sp.discrete, cfg.hidden_sizes, cfg.activation, cfg.init_std)


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
        self._trial = pg.TrialEpisodes()
        self._explore = False
        self._last: tuple[np.ndarray, np.ndarray] | None = None
        self._horizon = 0
        self._k = 0

    # ------------------------------------------------------------------------ functional pieces
    def meta_params(self) -> Params:
        assert self.policy is not None
        return {k: v.detach() for k, v in self.policy.named_parameters()}

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

    def _batch(self, o: np.ndarray, a: np.ndarray, r: np.ndarray, m: np.ndarray) -> Batch:
        cfg = self.config
        return pg.make_batch(
            o, a, r, m, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda, reg=cfg.baseline_reg,
            center=cfg.center_advantages, device=cfg.device,
        )  # fmt: skip

    # ------------------------------------------------------------------------------ sampling
    def _sample(
        self, envs: list[gym.Env], tasks: Sequence[Task], params: Params, per_task: bool
    ) -> tuple[np.ndarray, ...]:
        """``K`` episodes for each task, acting with ``params`` (a leading task dimension when
        ``per_task``). Returns (obs, act, rew, mask) of shape (tasks, K, T, ...)."""
        policy = self.policy
        assert policy is not None and self.spaces is not None

        def forward(lo: int, hi: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            if per_task:
                p = {name: v[lo:hi] for name, v in params.items()}
                out = vmap(functional_call, in_dims=(None, 0, 0))(policy, p, (x,))
                return out, (None if policy.discrete else p["log_std"][:, None, :])
            return functional_call(policy, params, (x,)), params.get("log_std")

        return pg.sample_episodes(
            envs, tasks, self._k, self._horizon, self.spaces, forward, self.generator, self.config.device
        )

    # ------------------------------------------------------------------------------ TRPO step
    def objectives(
        self, pre: Batch, post: Batch, adapted_old: Params
    ) -> Callable[[Params], tuple[torch.Tensor, torch.Tensor]]:
        """θ ↦ (MAML's outer loss, mean KL): the importance-weighted surrogate of the post-update
        episodes under θ'ᵢ(θ), the inner step taken *inside* (second-order)."""
        policy = self.policy
        with torch.no_grad():
            old_dist = vmap(pg.dist, in_dims=(None, 0, 0))(policy, adapted_old, post.obs)
            old_logp = vmap(pg.log_prob, in_dims=(None, 0, 0, 0))(policy, adapted_old, post.obs, post.act)
        denom = post.mask.sum(-1).clamp(min=1.0)

        def objectives(params: Params) -> tuple[torch.Tensor, torch.Tensor]:
            adapted = self.adapt_tasks(params, pre)
            logp = vmap(pg.log_prob, in_dims=(None, 0, 0, 0))(policy, adapted, post.obs, post.act)
            ratio = (logp - old_logp).exp()
            loss = -((ratio * post.adv * post.mask).sum(-1) / denom).mean()
            new_dist = vmap(pg.dist, in_dims=(None, 0, 0))(policy, adapted, post.obs)
            kl = ((pg.kl(policy, old_dist, new_dist) * post.mask).sum(-1) / denom).mean()
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

        def iteration() -> dict[str, float]:
            idx = rng.choice(len(tasks), size=m, replace=len(tasks) < m)
            return self.meta_iteration(envs, [tasks[int(i)] for i in idx])

        try:  # an upper bound per iteration: episodes may end early
            per_iteration = 2 * m * self._k * self._horizon
            pg.run_meta_training(
                iteration, per_iteration, budget.env_steps, cfg.meta_iterations, lambda: self.iterations, log
            )
        finally:
            for env in envs:
                env.close()
        self.begin_trial()

    def setup(self, make_env: Callable[[], gym.Env], seed: int) -> list[gym.Env]:
        """Build the policy (initial weights from ``seed``) and the sampling envs (seeded)."""
        cfg = self.config
        self.generator.manual_seed(seed)
        probe = make_env()
        self.spaces = Spaces(probe.observation_space, probe.action_space, "MAML")
        self._horizon, n_adapt = pg.episode_spec(probe, "MAML")
        self.episodes_per_step = cfg.test_episodes_per_step or max(1, n_adapt // max(1, cfg.test_inner_steps))
        self.policy = make_policy(self.spaces, cfg)
        self.policy.reset_parameters(self.generator)
        self.policy.to(cfg.device)
        k = self._k = cfg.trajectories_per_task or self.episodes_per_step
        return pg.make_envs(make_env, probe, pg.n_sampling_envs(cfg.n_envs, k, cfg.meta_batch_size), seed)

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
    def begin_trial(self) -> None:
        """Restore the meta-learned parameters; forget the trial's episodes."""
        self._params = self.meta_params() if self.policy is not None else {}
        self._steps_taken = 0
        self._trial = pg.TrialEpisodes()
        self._last = None

    def act(self, obs: Any, *, explore: bool) -> Any:
        if self.policy is None or self.spaces is None:
            raise RuntimeError("MAMLAgent.act called before meta_train or load")
        x = self.spaces.encode_obs(obs)
        with torch.no_grad():
            out = functional_call(self.policy, self._params, (torch.as_tensor(x, device=self.config.device),))
            if explore:
                a = pg.sample_actions(self.spaces.discrete, out, self._params.get("log_std"), self.generator)
            else:
                a = out.argmax() if self.spaces.discrete else out
            action = np.asarray(a.cpu().numpy(), np.float32)
        self._explore = explore
        self._last = (x, action)
        return self.spaces.to_env_action(action)

    def observe(self, transition: Transition) -> None:
        if self._last is None:
            raise RuntimeError("MAMLAgent.observe called without a preceding act")
        if self._explore:
            self._trial.add_step(*self._last, float(transition.reward))

    def end_episode(self) -> None:
        """After an adaptation episode: keep it; every ``episodes_per_step`` of them, one inner step."""
        if not self._explore:
            self._trial.drop_current()
        self._trial.end()
        steps_left = self._steps_taken < self.config.test_inner_steps
        if steps_left and len(self._trial.done) >= self.episodes_per_step:
            self._params = self._test_step(self._params, self._trial.take())
            self._steps_taken += 1

    def _test_step(self, params: Params, episodes: list[tuple[np.ndarray, ...]]) -> Params:
        obs, act, rew, mask = pg.stack_episodes(episodes)
        batch = self._batch(obs, act, rew, mask)
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
            space_from_dict(meta["observation_space"]), space_from_dict(meta["action_space"]), "MAML"
        )
        agent.episodes_per_step = int(meta["episodes_per_step"])
        agent.iterations = int(meta["iterations"])
        agent.policy = make_policy(agent.spaces, agent.config)
        state = torch.load(path / "policy.pt", map_location=agent.config.device, weights_only=True)
        agent.policy.load_state_dict(state)
        gen = np.frombuffer(base64.b64decode(meta["generator_state"]), dtype=np.uint8).copy()
        agent.generator.set_state(torch.from_numpy(gen))
        agent.begin_trial()
        return agent


def make_agent(config: Config) -> MAMLAgent:
    return MAMLAgent(config)
