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

import base64
import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from metabench.agents.common import policy_gradient as pg
from metabench.agents.common.policy_gradient import Batch, MLPPolicy, Params, Spaces
from metabench.agents.common.spaces import space_from_dict, space_to_dict
from metabench.protocol import Budget, Logger, Transition
from metabench.tasks import Task


@dataclasses.dataclass
class Config:
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
    meta_iterations: int | None = None
    """Cap on meta-iterations; ``None`` means as many as the budget allows."""
    n_envs: int = 0
    """Envs stepped together; 0 means one per trajectory of a meta-batch."""
    disable_updates: bool = False
    """Skip the outer (meta) update: sampling, inner steps and the TRPO solve still run. For tests."""
    torch_threads: int = 1
    device: str = "cpu"


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


class MAESNAgent:
    """MAESN (see the module docstring)."""

    oracle: ClassVar[bool] = False

    def __init__(self, config: Config):
        if config.test_inner_steps < 0:
            raise ValueError(f"Config.test_inner_steps must be >= 0, got {config.test_inner_steps}")
        self.config = config
        self.spaces: Spaces | None = None
        self.policy: MLPPolicy | None = None
        self.latents: Latents | None = None
        self.generator = torch.Generator()
        self.episodes_per_step = 1
        self.iterations = 0
        self._horizon = self._k = 0
        # meta-test state: the trial's latent distribution and the current episode's z
        self._mean = self._log_std = self._z = torch.zeros(0)
        self._steps_taken = 0
        self._trial = pg.TrialEpisodes()
        self._explore = False
        self._new_episode = True
        self._last: tuple[np.ndarray, np.ndarray] | None = None

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

    def _batch(self, o: np.ndarray, a: np.ndarray, r: np.ndarray, m: np.ndarray) -> Batch:
        cfg = self.config
        return pg.make_batch(
            o, a, r, m, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda, reg=cfg.baseline_reg,
            center=cfg.center_advantages, device=cfg.device,
        )  # fmt: skip

    def _sample(self, envs: list[gym.Env], tasks: Sequence[Task], z: torch.Tensor) -> Batch:
        """Episodes of every task, episode j of task i acting on ``z[i, j]``."""
        policy = self.policy
        assert policy is not None and self.spaces is not None
        params = {k: v.detach() for k, v in policy.named_parameters()}

        def forward(lo: int, hi: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            out = functional_call(policy, params, (torch.cat([x, z[lo:hi]], -1),))
            return out, params.get("log_std")

        arrays = pg.sample_episodes(
            envs, tasks, self._k, self._horizon, self.spaces, forward, self.generator, self.config.device
        )
        return self._batch(*arrays)

    def _noise(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, self.config.latent_dim, generator=self.generator).to(self.config.device)

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
            raise ValueError("MAESN.meta_train needs at least one train task")
        rng = np.random.default_rng(seed)
        envs = self.setup(make_env, seed, len(tasks))
        m = cfg.meta_batch_size

        def iteration() -> dict[str, float]:
            idx = rng.choice(len(tasks), size=m, replace=len(tasks) < m)
            return self.meta_iteration(envs, [tasks[int(i)] for i in idx], [int(i) for i in idx])

        try:
            per_iteration = 2 * m * self._k * self._horizon
            pg.run_meta_training(
                iteration, per_iteration, budget.env_steps, cfg.meta_iterations, lambda: self.iterations, log
            )
        finally:
            for env in envs:
                env.close()
        self.begin_trial()

    def setup(self, make_env: Callable[[], gym.Env], seed: int, n_tasks: int) -> list[gym.Env]:
        """Build the policy and the latents (initial values from ``seed``) and the sampling envs."""
        cfg = self.config
        self.generator.manual_seed(seed)
        probe = make_env()
        self._horizon, n_adapt = pg.episode_spec(probe, "MAESN")
        self._build(Spaces(probe.observation_space, probe.action_space, "MAESN"), n_tasks)
        assert self.policy is not None and self.latents is not None
        self.policy.reset_parameters(self.generator)
        with torch.no_grad():
            self.latents.latent_mean.copy_(torch.randn(n_tasks, cfg.latent_dim, generator=self.generator))
        self.episodes_per_step = max(1, n_adapt // max(1, cfg.test_inner_steps))
        k = self._k = cfg.trajectories_per_task or self.episodes_per_step
        return pg.make_envs(make_env, probe, pg.n_sampling_envs(cfg.n_envs, k, cfg.meta_batch_size), seed)

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
            old_params = {k: v.detach() for k, v in policy.named_parameters()}
            old_dist = pg.dist(policy, old_params, x_old)
            old_logp = pg.log_prob(policy, old_params, x_old, post.act)
        denom = post.mask.sum(-1).clamp(min=1.0)

        def objectives(params: Params) -> tuple[torch.Tensor, torch.Tensor]:
            mu, ls = params["latent_mean"][rows], params["latent_log_std"][rows]
            mu_new, ls_new = step(mu, ls, params["step_mean"], params["step_log_std"], z_pre, adv_pre)
            x = torch.cat([post.obs, context(mu_new, ls_new)], -1)
            ratio = (pg.log_prob(policy, params, x, post.act) - old_logp).exp()
            surrogate = -((ratio * post.adv * post.mask).sum(-1) / denom).mean()
            prior_kl = (0.5 * (mu.pow(2) + (2 * ls).exp() - 1) - ls).sum(-1).mean()
            kl = ((pg.kl(policy, old_dist, pg.dist(policy, params, x)) * post.mask).sum(-1) / denom).mean()
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
        d = self.config.latent_dim
        self._mean, self._log_std = torch.zeros(d), torch.zeros(d)
        self._steps_taken = 0
        self._trial = pg.TrialEpisodes()
        self._new_episode = True
        self._last = None

    def act(self, obs: Any, *, explore: bool) -> Any:
        if self.policy is None or self.spaces is None:
            raise RuntimeError("MAESNAgent.act called before meta_train or load")
        if self._new_episode:  # z once per episode: structured, temporally coherent exploration
            self._z = self._mean + self._noise() * self._log_std.exp() if explore else self._mean
            self._new_episode = False
        x = self.spaces.encode_obs(obs)
        with torch.no_grad():
            inp = torch.cat([torch.as_tensor(x, device=self.config.device), self._z])
            out = self.policy(inp)
            if explore:
                a = pg.sample_actions(
                    self.spaces.discrete, out, getattr(self.policy, "log_std", None), self.generator
                )
            else:
                a = out.argmax() if self.spaces.discrete else out
            action = np.asarray(a.cpu().numpy(), np.float32)
        self._explore = explore
        self._last = (x, action)
        return self.spaces.to_env_action(action)

    def observe(self, transition: Transition) -> None:
        if self._last is None:
            raise RuntimeError("MAESNAgent.observe called without a preceding act")
        if self._explore:
            self._trial.add_step(*self._last, float(transition.reward), self._z.cpu().numpy())

    def end_episode(self) -> None:
        """After an adaptation episode: keep it with its z; every ``episodes_per_step``, a latent step."""
        self._new_episode = True
        if not self._explore:
            self._trial.drop_current()
        self._trial.end()
        steps_left = self._steps_taken < self.config.test_inner_steps
        if steps_left and len(self._trial.done) >= self.episodes_per_step:
            assert self.latents is not None
            episodes = self._trial.take()
            obs, act, rew, _z, mask = pg.stack_episodes(episodes)
            batch = self._batch(obs, act, rew, mask)
            z = torch.as_tensor(np.stack([e[3][0] for e in episodes]), dtype=torch.float32)
            adv = torch.as_tensor(centred(batch.first_adv[0]), dtype=torch.float32)
            lat = self.latents
            with torch.no_grad():
                self._mean, self._log_std = latent_step(
                    self._mean, self._log_std, lat.step_mean, lat.step_log_std, z, adv
                )
            self._steps_taken += 1

    # -------------------------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> None:
        """Write the directory ``path``: ``model.pt`` (policy and latents) and ``agent.json``."""
        if self.policy is None or self.spaces is None or self.latents is None:
            raise RuntimeError("MAESNAgent.save called before meta_train")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {f"policy.{k}": v for k, v in self.policy.state_dict().items()}
        state.update({f"latents.{k}": v for k, v in self.latents.state_dict().items()})
        torch.save(state, path / "model.pt")
        meta = {
            "config": dataclasses.asdict(self.config),
            "observation_space": space_to_dict(self.spaces.observation_space),
            "action_space": space_to_dict(self.spaces.action_space),
            "n_train_tasks": int(self.latents.latent_mean.shape[0]),
            "episodes_per_step": self.episodes_per_step,
            "iterations": self.iterations,
            "generator_state": base64.b64encode(self.generator.get_state().numpy().tobytes()).decode(),
        }
        (path / "agent.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> MAESNAgent:
        path = Path(path)
        meta = json.loads((path / "agent.json").read_text())
        config = dict(meta["config"])
        config["hidden_sizes"] = tuple(config["hidden_sizes"])
        agent = cls(Config(**config))
        spaces = Spaces(
            space_from_dict(meta["observation_space"]), space_from_dict(meta["action_space"]), "MAESN"
        )
        agent._build(spaces, int(meta["n_train_tasks"]))
        assert agent.policy is not None and agent.latents is not None
        state = torch.load(path / "model.pt", map_location=agent.config.device, weights_only=True)
        agent.policy.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("policy.")})
        agent.latents.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("latents.")})
        agent.episodes_per_step = int(meta["episodes_per_step"])
        agent.iterations = int(meta["iterations"])
        gen = np.frombuffer(base64.b64decode(meta["generator_state"]), dtype=np.uint8).copy()
        agent.generator.set_state(torch.from_numpy(gen))
        agent.begin_trial()
        return agent


def make_agent(config: Config) -> MAESNAgent:
    return MAESNAgent(config)
