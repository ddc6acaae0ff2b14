"""TESP: a task encoder that adapts by gradient steps and a policy shared by every task (Lan et al., 2019).

"Meta Reinforcement Learning with Task Embedding and Shared Policy" (IJCAI 2019, arXiv:1905.06527), as in
llan-ml/tesp: ``tesp/tesp/tesp_policy_graph.py`` and ``tesp_policy_evaluator.py`` (the episode buffer and
the warm-up batch), ``tesp/keras_models/keras_tesp.py`` (the encoder), ``tesp/maml/maml_optimizer.py`` (the
outer loop), hyperparameters from ``tesp/main_train.py``.

* **Encoder.** A GRU (``rnn_units``) reads each episode of the task's episode buffer step by step, with
  inputs ``[s_t, the policy's distribution at s_t (mean and log-std; log-probabilities for Discrete), r_t]``;
  its final state is projected linearly (normc-initialised kernel, std ``projection_init``) to an
  embedding of size ``embedding_dim``; the task embedding e is the mean over the buffer's episodes, and
  0 while the buffer is empty. The buffer keeps the ``buffer_size`` best episodes so far (total reward).
* **Policy.** A tanh MLP on ``[s, e]``, shared by all tasks: it never adapts in the inner loop.
* **Inner loop**, per task: a warm-up batch collected with e = 0 only fills the buffer; then
  ``inner_steps`` times: a batch with the current e, one policy-gradient step on the *encoder only*,
  φ ← φ − clip(α, ±``inner_lr_bound``) ⊙ clip_norm(∇φ L, ``inner_grad_clip``) with learned per-entry
  rates α (init ``inner_lr``) and L = −mean(log π(a | s, e(φ, buffer)) Â), then the batch joins the
  buffer. The post-update batch is sampled with the final e.
* **Outer loop** (first-order: the inner gradients Gᵢ are constants, the rates still get gradient through
  φᵢ' = φ − clip(α) ⊙ Gᵢ): ``outer_iterations`` full-batch Adam steps (``outer_lr``) over policy, encoder and
  rates on PPO's clipped surrogate (``ppo_clip``) of the post-update episodes plus ``embedding_l2`` ·
  mean(e²), keeping the best iterate whose KL to the sampling policy is below ``kl_target``. Advantages:
  linear feature baseline, GAE (γ 0.99, λ 0.97), not centred.

Meta-test: the trial's ``n_adapt`` exploration episodes are TESP's batches, ``n_adapt // (inner_steps +
1)`` episodes each (PointNav: 2): the first batch is the warm-up (e = 0, fills the buffer), each of the
next ``inner_steps`` is sampled with the current e, then ``end_episode`` takes the encoder step on it and
adds it to the buffer. Exploration episodes left over (PointNav: 2 of 10) act with the current e and join
the buffer (which changes e, as every TESP batch does) without a gradient step. Evaluation episodes act
with the final e and the mean action (argmax for ``Discrete``) and change nothing. Meta-training uses the
same batch size per task (``trajectories_per_task = 0``) at the ci tier.

Published settings (``main_train.py``: GRU 256, embedding 8, MLP 256×2 tanh, projection init 0.01,
inner_lr 0.001 clipped to ±0.1, inner gradient clip 60, 3 inner updates, Adam 3e-4 × 20 iterations, PPO
clip 0.15, model loss coefficient 0.01, γ 0.99, λ 0.97; ``tesp.py``: buffer of 16 episodes; ``maml.py``:
kl_target 0.01, 20 tasks × 25 episodes per batch) are the defaults. Where ours differ: the log-std is a
learned state-independent parameter (RLlib's network outputs it); the GRU gates use the logistic
sigmoid (Keras 2.2's default was the hard sigmoid); ``Discrete`` actions get a categorical policy. Tier
settings are in ``agents/hyperparams/tesp.toml`` (what we tried is said there).

Randomness: the agent's own ``torch.Generator`` and ``np.random.Generator`` seeded from ``meta_train``'s
seed. ``save`` writes ``model.pt`` (policy, encoder and rates: a state dict read back with
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
from torch import nn
from torch.func import functional_call, grad, vmap

from metabench.agents.common import policy_gradient as pg
from metabench.agents.common.policy_gradient import Batch, MLPPolicy, Params, Spaces
from metabench.agents.common.spaces import space_from_dict, space_to_dict
from metabench.protocol import Budget, Logger, Transition
from metabench.tasks import Task


@dataclasses.dataclass
class Config:
    """TESP hyperparameters; defaults are the published ones (see the module docstring)."""

    hidden_sizes: tuple[int, ...] = (256, 256)
    activation: str = "tanh"
    init_std: float = 1.0
    rnn_units: int = 256
    embedding_dim: int = 8
    projection_init: float = 0.01
    buffer_size: int = 16
    inner_lr: float = 1e-3
    """Initial value of every learned inner learning rate of the encoder."""
    inner_lr_bound: float = 0.1
    inner_grad_clip: float | None = 60.0
    inner_steps: int = 3
    trajectories_per_task: int = 25
    """Episodes per task in each batch (warm-up, inner steps, post-update); 0 means as many as a
    meta-test batch gets (the family's ``n_adapt // (inner_steps + 1)``)."""
    meta_batch_size: int = 20
    outer_lr: float = 3e-4
    outer_iterations: int = 20
    ppo_clip: float = 0.15
    kl_target: float = 0.01
    embedding_l2: float = 0.01
    gamma: float = 0.99
    gae_lambda: float = 0.97
    baseline_reg: float = 1e-5
    center_advantages: bool = False
    meta_iterations: int | None = None
    """Cap on meta-iterations; ``None`` means as many as the budget allows."""
    n_envs: int = 0
    """Envs stepped together; 0 means one per trajectory of a meta-batch."""
    disable_updates: bool = False
    """Keep all parameters as they are after each outer loop (sampling and inner steps still run)."""
    torch_threads: int = 1
    device: str = "cpu"


# Tier settings: agents/hyperparams/tesp.toml (metabench.protocol.build_config).


# ------------------------------------------------------------------------------------ the encoder
class Encoder(nn.Module):
    """GRU over each buffered episode, final state projected to the embedding, mean over episodes."""

    def __init__(self, in_dim: int, units: int, out_dim: int):
        super().__init__()
        self.kernel = nn.Parameter(torch.zeros(in_dim, 3 * units))
        self.recurrent_kernel = nn.Parameter(torch.zeros(units, 3 * units))
        self.bias = nn.Parameter(torch.zeros(3 * units))
        self.projection = nn.Parameter(torch.zeros(units, out_dim))
        self.projection_bias = nn.Parameter(torch.zeros(out_dim))
        self.units = units

    def reset_parameters(self, generator: torch.Generator, projection_init: float) -> None:
        """Keras's GRU initialisation (Glorot kernel, orthogonal recurrent kernel, zero bias) and TESP's
        normc projection: Gaussian columns scaled to norm ``projection_init``."""
        with torch.no_grad():
            nn.init.xavier_uniform_(self.kernel, generator=generator)
            for i in range(3):
                block = self.recurrent_kernel[:, i * self.units : (i + 1) * self.units]
                block.copy_(nn.init.orthogonal_(torch.empty_like(block), generator=generator))
            w = torch.randn(self.projection.shape, generator=generator)
            self.projection.copy_(w * projection_init / w.pow(2).sum(0, keepdim=True).sqrt())


def embed(params: Params, seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One task's embedding from its buffer: ``seq`` (episodes, T, in), ``mask`` (episodes, T); zeros for
    an empty buffer. Functional in ``params`` (the encoder's), so inner steps stay differentiable."""
    n_eps, horizon = mask.shape
    units = params["recurrent_kernel"].shape[0]
    if n_eps == 0:
        return params["projection_bias"] * 0.0
    xw = seq @ params["kernel"] + params["bias"]  # (episodes, T, 3H)
    u_zr, u_h = params["recurrent_kernel"][:, : 2 * units], params["recurrent_kernel"][:, 2 * units :]
    h = seq.new_zeros(n_eps, units)
    for t in range(horizon):
        x_zr, x_h = xw[:, t, : 2 * units], xw[:, t, 2 * units :]
        z, r = torch.sigmoid(x_zr + h @ u_zr).chunk(2, -1)
        h_new = z * h + (1 - z) * torch.tanh(x_h + (r * h) @ u_h)
        m = mask[:, t, None]
        h = m * h_new + (1 - m) * h  # an ended episode keeps its final state
    return (h @ params["projection"] + params["projection_bias"]).mean(0)


class EpisodeBuffer:
    """Per task, the best ``size`` episodes so far by total reward, as encoder inputs: arrays
    (tasks, episodes, T, in), mask (tasks, episodes, T), returns (tasks, episodes)."""

    def __init__(self, size: int, n_tasks: int, horizon: int, in_dim: int):
        self.size = size
        self.seq = np.zeros((n_tasks, 0, horizon, in_dim), np.float32)
        self.mask = np.zeros((n_tasks, 0, horizon), np.float32)
        self.returns = np.zeros((n_tasks, 0))

    def add(self, seq: np.ndarray, mask: np.ndarray, returns: np.ndarray) -> None:
        all_seq = np.concatenate([self.seq, seq], 1)
        all_mask = np.concatenate([self.mask, mask], 1)
        all_ret = np.concatenate([self.returns, returns], 1)
        order = np.argsort(-all_ret, axis=1, kind="stable")[:, : self.size]
        take = np.arange(len(order))[:, None]
        self.seq, self.mask, self.returns = all_seq[take, order], all_mask[take, order], all_ret[take, order]

    def tensors(self, device: str) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.as_tensor(self.seq, device=device), torch.as_tensor(self.mask, device=device)


class TESPAgent:
    """TESP (see the module docstring)."""

    oracle: ClassVar[bool] = False

    def __init__(self, config: Config):
        if config.inner_steps < 1 or config.buffer_size < 1:
            raise ValueError(
                f"Config.inner_steps and Config.buffer_size must be >= 1, got {config.inner_steps} "
                f"and {config.buffer_size}"
            )
        self.config = config
        self.spaces: Spaces | None = None
        self.policy: MLPPolicy | None = None
        self.encoder: Encoder | None = None
        self.rates: pg.LearnedRates | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.generator = torch.Generator()
        self.episodes_per_step = 1
        self.iterations = 0
        self._horizon = self._k = 0
        # meta-test state
        self._phi: Params = {}
        self._buffer: EpisodeBuffer | None = None
        self._e = torch.zeros(0)
        self._batches_done = 0
        self._trial = pg.TrialEpisodes()
        self._explore = False
        self._last: tuple[np.ndarray, ...] | None = None

    def _build(self, spaces: Spaces) -> None:
        cfg, sp = self.config, spaces
        self.spaces = spaces
        self.policy = MLPPolicy(
            sp.obs_dim + cfg.embedding_dim,
            sp.act_dim,
            sp.discrete,
            cfg.hidden_sizes,
            cfg.activation,
            cfg.init_std,
        ).to(cfg.device)
        self.encoder = Encoder(sp.obs_dim + sp.dist_dim() + 1, cfg.rnn_units, cfg.embedding_dim).to(
            cfg.device
        )
        self.rates = pg.LearnedRates(self.encoder, cfg.inner_lr).to(cfg.device)

    def encoder_params(self) -> Params:
        assert self.encoder is not None
        return {k: v.detach() for k, v in self.encoder.named_parameters()}

    def learning_rates(self) -> Params:
        assert self.rates is not None
        return {k: v.detach() for k, v in self.rates.clipped(self.config.inner_lr_bound).items()}

    def _batch(self, o: np.ndarray, a: np.ndarray, r: np.ndarray, m: np.ndarray) -> Batch:
        cfg = self.config
        return pg.make_batch(
            o, a, r, m, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda, reg=cfg.baseline_reg,
            center=cfg.center_advantages, device=cfg.device,
        )  # fmt: skip

    def _dist_features(self, obs: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """The policy's distribution at each step (mean and log-std, or log-probabilities) on [s, e]."""
        assert self.policy is not None
        params = {k: v.detach() for k, v in self.policy.named_parameters()}
        first, second = pg.dist(self.policy, params, torch.cat([obs, e.expand(*obs.shape[:-1], -1)], -1))
        return first if self.policy.discrete else torch.cat([first, second], -1)

    def _encoder_inputs(self, batch: Batch, e: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        """A sampled batch as encoder input sequences (tasks, k, T, in) and their masks (tasks, k, T)."""
        m, n = batch.mask.shape
        horizon = n // k
        with torch.no_grad():
            feats = self._dist_features(batch.obs, e[:, None, :])
        seq = torch.cat([batch.obs, feats, batch.rew[..., None]], -1)
        return seq.reshape(m, k, horizon, -1).cpu().numpy(), batch.mask.reshape(m, k, horizon).cpu().numpy()

    def _sample(self, envs: list[gym.Env], tasks: Sequence[Task], e: torch.Tensor) -> Batch:
        """Episodes of every task acting on ``[s, e_i]``."""
        policy = self.policy
        assert policy is not None and self.spaces is not None
        params = {k: v.detach() for k, v in policy.named_parameters()}

        def forward(lo: int, hi: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            ctx = e[lo:hi, None, :].expand(-1, x.shape[1], -1)
            return functional_call(policy, params, (torch.cat([x, ctx], -1),)), params.get("log_std")

        arrays = pg.sample_episodes(
            envs, tasks, self._k, self._horizon, self.spaces, forward, self.generator, self.config.device
        )
        return self._batch(*arrays)

    def _inner_grad(self, phi: Params, seq, smask, obs, act, adv, mask) -> Params:
        """∇φ of the policy-gradient loss of one task's batch, through e(φ, buffer) (clipped)."""

        def loss(p: Params) -> torch.Tensor:
            e = embed(p, seq, smask)
            x = torch.cat([obs, e.expand(obs.shape[0], -1)], -1)
            return pg.pg_loss(pg.log_prob(self.policy, self._policy_params, x, act), adv, mask)

        return pg.clip_by_global_norm(grad(loss)(phi), self.config.inner_grad_clip)

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
            raise ValueError("TESP.meta_train needs at least one train task")
        rng = np.random.default_rng(seed)
        envs = self.setup(make_env, seed)
        m = cfg.meta_batch_size

        def iteration() -> dict[str, float]:
            idx = rng.choice(len(tasks), size=m, replace=len(tasks) < m)
            return self.meta_iteration(envs, [tasks[int(i)] for i in idx])

        try:  # warm-up, inner-step and post-update batches
            per_iteration = (cfg.inner_steps + 2) * m * self._k * self._horizon
            pg.run_meta_training(
                iteration, per_iteration, budget.env_steps, cfg.meta_iterations, lambda: self.iterations, log
            )
        finally:
            for env in envs:
                env.close()
        self.begin_trial()

    def setup(self, make_env: Callable[[], gym.Env], seed: int) -> list[gym.Env]:
        """Build policy, encoder and rates (initial weights from ``seed``) and the sampling envs."""
        cfg = self.config
        self.generator.manual_seed(seed)
        probe = make_env()
        self._horizon, n_adapt = pg.episode_spec(probe, "TESP")
        self._build(Spaces(probe.observation_space, probe.action_space, "TESP"))
        assert self.policy is not None and self.encoder is not None and self.rates is not None
        self.policy.reset_parameters(self.generator)
        self.encoder.reset_parameters(self.generator, cfg.projection_init)
        self.episodes_per_step = max(1, n_adapt // (cfg.inner_steps + 1))
        k = self._k = cfg.trajectories_per_task or self.episodes_per_step
        params = [*self.policy.parameters(), *self.encoder.parameters(), *self.rates.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=cfg.outer_lr)
        return pg.make_envs(make_env, probe, pg.n_sampling_envs(cfg.n_envs, k, cfg.meta_batch_size), seed)

    @property
    def _policy_params(self) -> Params:
        assert self.policy is not None
        return {k: v.detach() for k, v in self.policy.named_parameters()}

    def meta_iteration(self, envs: list[gym.Env], tasks: Sequence[Task]) -> dict[str, float]:
        """Warm-up, inner steps on the encoder, post-update batch, TESP's PPO outer loop; returns the log."""
        cfg, policy, encoder, rates, sp = self.config, self.policy, self.encoder, self.rates, self.spaces
        assert policy is not None and encoder is not None and rates is not None and sp is not None
        assert self.optimizer is not None
        m, k, dev = len(tasks), self._k, cfg.device
        buffer = EpisodeBuffer(cfg.buffer_size, m, self._horizon, sp.obs_dim + sp.dist_dim() + 1)
        e = torch.zeros(m, cfg.embedding_dim, device=dev)
        warm = self._sample(envs, tasks, e)
        buffer.add(*self._encoder_inputs(warm, e, k), warm.returns)
        steps, returns = float(warm.mask.sum()), [float(warm.returns.mean())]
        lr = self.learning_rates()
        cur = {name: v.expand(m, *v.shape).clone() for name, v in self.encoder_params().items()}
        total = {name: torch.zeros_like(v) for name, v in cur.items()}
        inner = vmap(self._inner_grad, in_dims=(0, 0, 0, 0, 0, 0, 0))
        for _ in range(cfg.inner_steps):
            with torch.no_grad():
                e = vmap(embed)(cur, *buffer.tensors(dev))
            batch = self._sample(envs, tasks, e)
            g = inner(cur, *buffer.tensors(dev), batch.obs, batch.act, batch.adv, batch.mask)
            cur = {n: (cur[n] - lr[n] * g[n]).detach() for n in cur}
            total = {n: total[n] + g[n].detach() for n in total}
            buffer.add(*self._encoder_inputs(batch, e, k), batch.returns)
            steps += float(batch.mask.sum())
            returns.append(float(batch.returns.mean()))
        seq, smask = buffer.tensors(dev)
        with torch.no_grad():
            e = vmap(embed)(cur, seq, smask)
        post = self._sample(envs, tasks, e)
        steps += float(post.mask.sum())
        n = post.obs.shape[1]
        with torch.no_grad():
            x_old = torch.cat([post.obs, e[:, None, :].expand(-1, n, -1)], -1)
            old_dist = pg.dist(policy, self._policy_params, x_old)
            old_logp = pg.log_prob(policy, self._policy_params, x_old, post.act)
        denom = post.mask.sum(-1).clamp(min=1.0)

        def loss_and_kl() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            clipped = rates.clipped(cfg.inner_lr_bound)
            adapted = {name: p - clipped[name] * total[name] for name, p in encoder.named_parameters()}
            emb = vmap(embed)(adapted, seq, smask)
            x = torch.cat([post.obs, emb[:, None, :].expand(-1, n, -1)], -1)
            params = dict(policy.named_parameters())
            policy_loss = pg.ppo_clip_loss(
                pg.log_prob(policy, params, x, post.act), old_logp, post.adv, post.mask, cfg.ppo_clip
            )
            kl = ((pg.kl(policy, old_dist, pg.dist(policy, params, x)) * post.mask).sum(-1) / denom).mean()
            return policy_loss + cfg.embedding_l2 * emb.pow(2).mean(), policy_loss, kl

        stats = pg.ppo_best_iterate(
            [*policy.parameters(), *encoder.parameters(), *rates.parameters()],
            loss_and_kl,
            self.optimizer,
            iterations=cfg.outer_iterations,
            kl_target=cfg.kl_target,
            apply=not cfg.disable_updates,
        )
        self.iterations += 1
        return {
            "env_steps": steps,
            "warmup_return": returns[0],
            "pre_update_return": returns[1],
            "post_update_return": float(post.returns.mean()),
            "embedding_norm": float(e.norm(dim=-1).mean()),
            "mean_abs_rate": float(
                torch.cat([v.abs().reshape(-1) for v in self.learning_rates().values()]).mean()
            ),
            **stats,
        }

    # -------------------------------------------------------------------------------- meta-testing
    def begin_trial(self) -> None:
        """Restore the meta-learned encoder; empty buffer (e = 0); forget the trial's episodes."""
        cfg = self.config
        self._phi = self.encoder_params() if self.encoder is not None else {}
        if self.spaces is not None:
            in_dim = self.spaces.obs_dim + self.spaces.dist_dim() + 1
            self._buffer = EpisodeBuffer(cfg.buffer_size, 1, self._horizon or 1, in_dim)
        self._e = torch.zeros(cfg.embedding_dim, device=cfg.device)
        self._batches_done = 0
        self._trial = pg.TrialEpisodes()
        self._last = None

    def act(self, obs: Any, *, explore: bool) -> Any:
        if self.policy is None or self.spaces is None:
            raise RuntimeError("TESPAgent.act called before meta_train or load")
        x = self.spaces.encode_obs(obs)
        with torch.no_grad():
            inp = torch.cat([torch.as_tensor(x, device=self.config.device), self._e])
            out = self.policy(inp)
            log_std = getattr(self.policy, "log_std", None)
            if explore:
                a = pg.sample_actions(self.spaces.discrete, out, log_std, self.generator)
            else:
                a = out.argmax() if self.spaces.discrete else out
            action = np.asarray(a.cpu().numpy(), np.float32)
            feats = torch.log_softmax(out, -1) if self.spaces.discrete else torch.cat([out, log_std])
        self._explore = explore
        self._last = (x, action, feats.cpu().numpy())
        return self.spaces.to_env_action(action)

    def observe(self, transition: Transition) -> None:
        if self._last is None:
            raise RuntimeError("TESPAgent.observe called without a preceding act")
        if self._explore:
            x, action, feats = self._last
            self._trial.add_step(x, action, float(transition.reward), feats)

    def end_episode(self) -> None:
        """Warm-up batch, then an encoder step per batch, then leftover episodes into the buffer."""
        if not self._explore:
            self._trial.drop_current()
            return
        self._trial.end()
        cfg = self.config
        last_batch = self._batches_done >= cfg.inner_steps + 1
        if not self._trial.done or (len(self._trial.done) < self.episodes_per_step and not last_batch):
            return
        episodes = self._trial.take()
        obs, act, rew, feats, mask = pg.stack_episodes(episodes)
        assert self._buffer is not None
        pad = self._buffer.seq.shape[2] - mask.shape[2]  # buffered episodes have the env's full horizon
        seq = np.concatenate([obs, feats, rew[..., None]], -1).astype(np.float32)
        seq = np.pad(seq, ((0, 0), (0, 0), (0, pad), (0, 0)))
        if 0 < self._batches_done <= cfg.inner_steps:
            b = self._batch(obs, act, rew, mask)
            s, sm = self._buffer.tensors(cfg.device)
            g = self._inner_grad(self._phi, s[0], sm[0], b.obs[0], b.act[0], b.adv[0], b.mask[0])
            self._phi = {k: (v - self.learning_rates()[k] * g[k]).detach() for k, v in self._phi.items()}
        self._buffer.add(
            seq, np.pad(mask, ((0, 0), (0, 0), (0, pad))).astype(np.float32), (rew * mask).sum(-1)
        )
        self._batches_done += 1
        s, sm = self._buffer.tensors(cfg.device)
        with torch.no_grad():
            self._e = embed(self._phi, s[0], sm[0])

    # -------------------------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> None:
        """Write the directory ``path``: ``model.pt`` (policy, encoder, rates) and ``agent.json``."""
        if self.policy is None or self.spaces is None or self.encoder is None or self.rates is None:
            raise RuntimeError("TESPAgent.save called before meta_train")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {f"policy.{k}": v for k, v in self.policy.state_dict().items()}
        state.update({f"encoder.{k}": v for k, v in self.encoder.state_dict().items()})
        state.update({f"rates.{k}": v for k, v in self.rates.state_dict().items()})
        torch.save(state, path / "model.pt")
        meta = {
            "config": dataclasses.asdict(self.config),
            "observation_space": space_to_dict(self.spaces.observation_space),
            "action_space": space_to_dict(self.spaces.action_space),
            "episodes_per_step": self.episodes_per_step,
            "horizon": self._horizon,
            "iterations": self.iterations,
            "generator_state": base64.b64encode(self.generator.get_state().numpy().tobytes()).decode(),
        }
        (path / "agent.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> TESPAgent:
        path = Path(path)
        meta = json.loads((path / "agent.json").read_text())
        config = dict(meta["config"])
        config["hidden_sizes"] = tuple(config["hidden_sizes"])
        agent = cls(Config(**config))
        agent._build(
            Spaces(space_from_dict(meta["observation_space"]), space_from_dict(meta["action_space"]), "TESP")
        )
        assert agent.policy is not None and agent.encoder is not None and agent.rates is not None
        state = torch.load(path / "model.pt", map_location=agent.config.device, weights_only=True)
        for prefix, module in (
            ("policy.", agent.policy),
            ("encoder.", agent.encoder),
            ("rates.", agent.rates),
        ):
            module.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
        agent.episodes_per_step = int(meta["episodes_per_step"])
        agent._horizon = int(meta["horizon"])
        agent.iterations = int(meta["iterations"])
        gen = np.frombuffer(base64.b64decode(meta["generator_state"]), dtype=np.uint8).copy()
        agent.generator.set_state(torch.from_numpy(gen))
        agent.begin_trial()
        return agent


def make_agent(config: Config) -> TESPAgent:
    return TESPAgent(config)
