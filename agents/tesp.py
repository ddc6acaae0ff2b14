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

import dataclasses
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


class TESPAgent(pg_agent.PGAgent):
    """TESP (see the module docstring)."""

    name = "TESP"
    config: Config

    def __init__(self, config: Config):
        if config.inner_steps < 1 or config.buffer_size < 1:
            raise ValueError(
                f"Config.inner_steps and Config.buffer_size must be >= 1, got {config.inner_steps} "
                f"and {config.buffer_size}"
            )
        super().__init__(config)
        self.encoder: Encoder | None = None
        self.rates: pg.LearnedRates | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        # meta-test state
        self._phi: Params = {}
        self._buffer: EpisodeBuffer | None = None
        self._e = torch.zeros(0)
        self._batches_done = 0

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
        return self.rates.detached(self.config.inner_lr_bound)

    def _dist_features(self, obs: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """The policy's distribution at each step (mean and log-std, or log-probabilities) on [s, e]."""
        assert self.policy is not None
        x = torch.cat([obs, e.expand(*obs.shape[:-1], -1)], -1)
        first, second = pg.dist(self.policy, self.policy_params(), x)
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
        assert self.policy is not None
        context = e[:, None, :].expand(-1, self._k, -1)
        forward = pg.shared_forward(self.policy, self.policy_params(), context=context)
        return self._batch(*self._sample_episodes(envs, tasks, forward))

    def _inner_grad(self, phi: Params, seq, smask, obs, act, adv, mask) -> Params:
        """∇φ of the policy-gradient loss of one task's batch, through e(φ, buffer) (clipped)."""

        def loss(p: Params) -> torch.Tensor:
            e = embed(p, seq, smask)
            x = torch.cat([obs, e.expand(obs.shape[0], -1)], -1)
            return pg.pg_loss(pg.log_prob(self.policy, self.policy_params(), x, act), adv, mask)

        return pg.clip_by_global_norm(grad(loss)(phi), self.config.inner_grad_clip)

    # ------------------------------------------------------------------------------ meta-training
    def setup(self, make_env: Callable[[], gym.Env], seed: int) -> list[gym.Env]:
        """Build policy, encoder and rates (initial weights from ``seed``) and the sampling envs."""
        cfg = self.config
        probe, spaces, n_adapt = self._probe(make_env, seed)
        self._build(spaces)
        assert self.policy is not None and self.encoder is not None and self.rates is not None
        self.policy.reset_parameters(self.generator)
        self.encoder.reset_parameters(self.generator, cfg.projection_init)
        self.episodes_per_step = max(1, n_adapt // (cfg.inner_steps + 1))
        params = [*self.policy.parameters(), *self.encoder.parameters(), *self.rates.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=cfg.outer_lr)
        return self._sampling_envs(make_env, probe, seed)

    def _batches_per_iteration(self) -> int:
        return self.config.inner_steps + 2  # warm-up, inner-step and post-update batches

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
            old_dist = pg.dist(policy, self.policy_params(), x_old)
            old_logp = pg.log_prob(policy, self.policy_params(), x_old, post.act)

        def loss_and_kl() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            clipped = rates.clipped(cfg.inner_lr_bound)
            adapted = {name: p - clipped[name] * total[name] for name, p in encoder.named_parameters()}
            emb = vmap(embed)(adapted, seq, smask)
            x = torch.cat([post.obs, emb[:, None, :].expand(-1, n, -1)], -1)
            params = dict(policy.named_parameters())
            policy_loss = pg.ppo_clip_loss(
                pg.log_prob(policy, params, x, post.act), old_logp, post.adv, post.mask, cfg.ppo_clip
            )
            kl = pg.masked_task_mean(pg.kl(policy, old_dist, pg.dist(policy, params, x)), post.mask)
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
            "mean_abs_rate": rates.mean_abs(cfg.inner_lr_bound),
            **stats,
        }

    # -------------------------------------------------------------------------------- meta-testing
    def begin_trial(self) -> None:
        """Restore the meta-learned encoder; empty buffer (e = 0); forget the trial's episodes."""
        super().begin_trial()
        cfg = self.config
        self._phi = self.encoder_params() if self.encoder is not None else {}
        if self.spaces is not None:
            in_dim = self.spaces.obs_dim + self.spaces.dist_dim() + 1
            self._buffer = EpisodeBuffer(cfg.buffer_size, 1, self._horizon or 1, in_dim)
        self._e = torch.zeros(cfg.embedding_dim, device=cfg.device)
        self._batches_done = 0

    def _policy_outputs(self, obs: torch.Tensor, explore: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        assert self.policy is not None
        return self.policy(torch.cat([obs, self._e])), getattr(self.policy, "log_std", None)

    def _step_record(self, out: torch.Tensor, log_std: torch.Tensor | None) -> tuple[np.ndarray, ...]:
        """The policy's distribution at the step (an encoder input)."""
        assert self.spaces is not None
        if self.spaces.discrete:
            return (torch.log_softmax(out, -1).cpu().numpy(),)
        assert log_std is not None
        return (torch.cat([out, log_std]).cpu().numpy(),)

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
        path = self._save_agent_json(path, self.encoder, self.rates, horizon=self._horizon)
        pg_agent.save_networks(path / "model.pt", policy=self.policy, encoder=self.encoder, rates=self.rates)

    @classmethod
    def load(cls, path: str | Path) -> TESPAgent:
        agent, meta = cls._load_agent_json(path, Config)
        assert agent.spaces is not None
        agent._build(agent.spaces)
        networks = {"policy": agent.policy, "encoder": agent.encoder, "rates": agent.rates}
        pg_agent.load_networks(Path(path) / "model.pt", agent.config.device, **networks)
        agent._horizon = int(meta["horizon"])
        agent.begin_trial()
        return agent


def make_agent(config: Config) -> TESPAgent:
    return TESPAgent(config)
