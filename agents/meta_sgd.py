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
    meta_iterations: int | None = None
    """Cap on meta-iterations; ``None`` means as many as the budget allows."""
    n_envs: int = 0
    """Envs stepped together; 0 means one per trajectory of a meta-batch."""
    disable_updates: bool = False
    """Keep θ and α as they are after each outer loop (sampling and inner steps still run). For tests."""
    torch_threads: int = 1
    device: str = "cpu"


# Tier settings: agents/hyperparams/meta_sgd.toml (metabench.protocol.build_config).


class MetaSGDAgent:
    """Meta-SGD (see the module docstring)."""

    oracle: ClassVar[bool] = False

    def __init__(self, config: Config):
        if config.inner_steps < 1:
            raise ValueError(f"Config.inner_steps must be >= 1, got {config.inner_steps}")
        self.config = config
        self.spaces: Spaces | None = None
        self.policy: MLPPolicy | None = None
        self.rates: pg.LearnedRates | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.generator = torch.Generator()
        self.episodes_per_step = 1
        self.iterations = 0
        self._horizon = self._k = 0
        self._params: Params = {}
        self._steps_taken = 0
        self._trial = pg.TrialEpisodes()
        self._explore = False
        self._last: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------------ functional pieces
    def _build(self, spaces: Spaces) -> None:
        cfg = self.config
        self.spaces = spaces
        self.policy = MLPPolicy(
            spaces.obs_dim, spaces.act_dim, spaces.discrete, cfg.hidden_sizes, cfg.activation, cfg.init_std
        ).to(cfg.device)
        self.rates = pg.LearnedRates(self.policy, cfg.inner_lr).to(cfg.device)
        self.rates.requires_grad_(cfg.learn_inner_lr)

    def meta_params(self) -> Params:
        assert self.policy is not None
        return {k: v.detach() for k, v in self.policy.named_parameters()}

    def learning_rates(self) -> Params:
        assert self.rates is not None
        return {k: v.detach() for k, v in self.rates.clipped(self.config.inner_lr_bound).items()}

    def _inner_grad(self, params: Params, obs, act, adv, mask) -> Params:
        def loss(p: Params) -> torch.Tensor:
            return pg.pg_loss(pg.log_prob(self.policy, p, obs, act), adv, mask)

        return pg.clip_by_global_norm(grad(loss)(params), self.config.inner_grad_clip)

    def inner_step(self, params: Params, rates: Params, obs, act, adv, mask) -> tuple[Params, Params]:
        """(θ − α ⊙ g, g) for one task's batch: the step and the (clipped) gradient it used."""
        g = self._inner_grad(params, obs, act, adv, mask)
        return pg.sgd_step(params, g, rates), g

    def _batch(self, o: np.ndarray, a: np.ndarray, r: np.ndarray, m: np.ndarray) -> Batch:
        cfg = self.config
        return pg.make_batch(
            o, a, r, m, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda, reg=cfg.baseline_reg,
            center=cfg.center_advantages, device=cfg.device,
        )  # fmt: skip

    def _sample(self, envs: list[gym.Env], tasks: Sequence[Task], params: Params) -> Batch:
        """Episodes of every task with its own parameters (leading task dimension)."""
        policy = self.policy
        assert policy is not None and self.spaces is not None

        def forward(lo: int, hi: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            p = {name: v[lo:hi] for name, v in params.items()}
            out = vmap(functional_call, in_dims=(None, 0, 0))(policy, p, (x,))
            return out, (None if policy.discrete else p["log_std"][:, None, :])

        arrays = pg.sample_episodes(
            envs, tasks, self._k, self._horizon, self.spaces, forward, self.generator, self.config.device
        )
        return self._batch(*arrays)

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
            raise ValueError("MetaSGD.meta_train needs at least one train task")
        rng = np.random.default_rng(seed)
        envs = self.setup(make_env, seed)
        m = cfg.meta_batch_size

        def iteration() -> dict[str, float]:
            idx = rng.choice(len(tasks), size=m, replace=len(tasks) < m)
            return self.meta_iteration(envs, [tasks[int(i)] for i in idx])

        try:
            per_iteration = (cfg.inner_steps + 1) * m * self._k * self._horizon
            pg.run_meta_training(
                iteration, per_iteration, budget.env_steps, cfg.meta_iterations, lambda: self.iterations, log
            )
        finally:
            for env in envs:
                env.close()
        self.begin_trial()

    def setup(self, make_env: Callable[[], gym.Env], seed: int) -> list[gym.Env]:
        """Build the policy and rates (initial weights from ``seed``) and the sampling envs (seeded)."""
        cfg = self.config
        self.generator.manual_seed(seed)
        probe = make_env()
        self._horizon, n_adapt = pg.episode_spec(probe, "Meta-SGD")
        self._build(Spaces(probe.observation_space, probe.action_space, "Meta-SGD"))
        assert self.policy is not None and self.rates is not None
        self.policy.reset_parameters(self.generator)
        self.episodes_per_step = max(1, n_adapt // cfg.inner_steps)
        k = self._k = cfg.trajectories_per_task or self.episodes_per_step
        params = list(self.policy.parameters()) + (
            list(self.rates.parameters()) if cfg.learn_inner_lr else []
        )
        self.optimizer = torch.optim.Adam(params, lr=cfg.outer_lr)
        return pg.make_envs(make_env, probe, pg.n_sampling_envs(cfg.n_envs, k, cfg.meta_batch_size), seed)

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
            old_dist = vmap(pg.dist, in_dims=(None, 0, 0))(policy, cur, post.obs)
            old_logp = vmap(pg.log_prob, in_dims=(None, 0, 0, 0))(policy, cur, post.obs, post.act)
        denom = post.mask.sum(-1).clamp(min=1.0)

        def loss_and_kl() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            clipped = rates.clipped(cfg.inner_lr_bound)
            adapted = {k: p - clipped[k] * total[k] for k, p in policy.named_parameters()}
            logp = vmap(pg.log_prob, in_dims=(None, 0, 0, 0))(policy, adapted, post.obs, post.act)
            loss = pg.ppo_clip_loss(logp, old_logp, post.adv, post.mask, cfg.ppo_clip)
            new_dist = vmap(pg.dist, in_dims=(None, 0, 0))(policy, adapted, post.obs)
            kl = ((pg.kl(policy, old_dist, new_dist) * post.mask).sum(-1) / denom).mean()
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
            "mean_abs_rate": float(
                torch.cat([v.abs().reshape(-1) for v in self.learning_rates().values()]).mean()
            ),
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
            raise RuntimeError("MetaSGDAgent.act called before meta_train or load")
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
            raise RuntimeError("MetaSGDAgent.observe called without a preceding act")
        if self._explore:
            self._trial.add_step(*self._last, float(transition.reward))

    def end_episode(self) -> None:
        """After an adaptation episode: keep it; every ``episodes_per_step`` of them, one inner step."""
        if not self._explore:
            self._trial.drop_current()
        self._trial.end()
        if self._steps_taken < self.config.inner_steps and len(self._trial.done) >= self.episodes_per_step:
            obs, act, rew, mask = pg.stack_episodes(self._trial.take())
            b = self._batch(obs, act, rew, mask)
            new, _ = self.inner_step(
                self._params, self.learning_rates(), b.obs[0], b.act[0], b.adv[0], b.mask[0]
            )
            self._params = {k: v.detach() for k, v in new.items()}
            self._steps_taken += 1

    # -------------------------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> None:
        """Write the directory ``path``: ``model.pt`` (policy and rates) and ``agent.json``."""
        if self.policy is None or self.spaces is None or self.rates is None:
            raise RuntimeError("MetaSGDAgent.save called before meta_train")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {f"policy.{k}": v for k, v in self.policy.state_dict().items()}
        state.update({f"rates.{k}": v for k, v in self.rates.state_dict().items()})
        torch.save(state, path / "model.pt")
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
    def load(cls, path: str | Path) -> MetaSGDAgent:
        path = Path(path)
        meta = json.loads((path / "agent.json").read_text())
        config = dict(meta["config"])
        config["hidden_sizes"] = tuple(config["hidden_sizes"])
        agent = cls(Config(**config))
        agent._build(
            Spaces(
                space_from_dict(meta["observation_space"]), space_from_dict(meta["action_space"]), "Meta-SGD"
            )
        )
        assert agent.policy is not None and agent.rates is not None
        state = torch.load(path / "model.pt", map_location=agent.config.device, weights_only=True)
        agent.policy.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("policy.")})
        agent.rates.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("rates.")})
        agent.episodes_per_step = int(meta["episodes_per_step"])
        agent.iterations = int(meta["iterations"])
        gen = np.frombuffer(base64.b64decode(meta["generator_state"]), dtype=np.uint8).copy()
        agent.generator.set_state(torch.from_numpy(gen))
        agent.begin_trial()
        return agent


def make_agent(config: Config) -> MetaSGDAgent:
    return MetaSGDAgent(config)
