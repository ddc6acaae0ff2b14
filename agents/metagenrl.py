"""MetaGenRL: a learned objective function that trains new agents from scratch (Kirsch et al., 2019).

"Improving Generalization in Meta Reinforcement Learning using Learned Objectives" (ICLR 2020,
arXiv:1910.04098; code: louiskirsch/metagenrl, TensorFlow). It runs on transfer suites
(:mod:`metabench.suites`, ``suites = True``): meta-train on some Gymnasium envs, then train a fresh
agent with the learned objective on others, other observation and action spaces included.

**The agents.** A population of TD3 agents (20 in the paper, split evenly over the suite's train
envs): a deterministic tanh policy and twin critics, MLPs (3 x 350, ReLU, LayerNorm), target
networks (Polyak 0.995), target-policy smoothing (noise 0.2, clip 0.5), uniform actions for the first
10k steps then Gaussian exploration noise 0.1. Actions live in [-1, 1] inside the agent (the buffer,
the networks and the objective see normalised actions) and are rescaled to the env's bounds, so an
objective meets the same action scale in every env. Critics: TD3's clipped double-Q target
``r + γ (1 - terminated) min Q'(s', π'(s') + ε)``, the bootstrap cut only at true terminals.

**The objective L_α** reads windows of ``trajectory_len`` (20) consecutive steps of one episode from
the replay buffer. Per step t:

* an action-size-independent encoding: an MLP (3 x 32, ``[relu, square]`` halves, LayerNorm) of each
  action dimension's pair (buffer action, current policy action), averaged over the dimensions;
* an MLP (32, 32 -> 8) of [normalised r_t, t/T, normalised V(s_{t+1})(1 - d_t), normalised V(s_t)]
  with V(s) = Q₁(s, π(s)) (gradient stopped) and d_t the true terminal flag; normalisation is over
  the batch (z-score over every valid step);
* both go through an LSTM (32 units) run **backwards in time** from each window's last valid step,
  then an MLP (3 x 32) to a scalar bounded by ``tanh(x · 1e-3) / 1e-3``.

Policies minimise the mean of L_α over the window's valid steps (the policy enters only through its
actions). During meta-training the policy loss anneals from TD3's ``-Q₁(s, π(s))`` to L_α over the
first 10k steps of each agent (``anneal_steps``), as in the original.

**Meta-gradient** (second-order): on a batch of 2 x ``batch_trajectories`` windows, one SGD step of
L_α on the first half, θ' = θ - η ∇θ Σ L_α(θ) (η = 1e-3 on the *sum* of the errors over the half's
valid steps, as the original's ``tf.gradients(objective_val * seq_mask)``; the graph kept), then the
meta-loss ``-Q₁(s, π_θ'(s))`` on the whole batch; its gradient with respect to α, clipped to norm 1 per agent,
is averaged over the population and applied by Adam (lr 1e-3), every ``objective_delay`` (2) env
steps. Critics update every step, policies (and targets) every ``policy_delay`` (2) steps, all with
gradients clipped to norm 1.

**Meta-test** (``begin_trial(observation_space, action_space)``): only the objective is kept, frozen;
a fresh agent of the same kind trains from scratch with it (no annealing: L_α alone moves the policy),
uniform actions for its first ``random_steps``, one critic update per env step. Evaluation episodes
act deterministically and are not learned from.

**Budget.** All agents' env steps count: the population splits the suite's budget evenly and steps in
lock-step (one env step of every agent, then their updates). With ``ray = True`` (or
``ray_address``) the agents' networks and updates run as Ray actors, one per agent, as the original
runs them, while the driver steps every env (so the harness counts every step); the default runs the
population in this process.

Published settings, and where ours differ:

* Config defaults are the paper's (``ray_configs.base`` and ``ray_experiments.train``): 20 agents,
  3 x 350 networks, lr 1e-3 everywhere, batch of 100 windows of 20 steps, γ 0.99, objective units 32.
* Not copied from the original: its TD3 target adds ``+ d`` (1 at terminal steps, a reward the env
  never gave), and it stores time-limit ends as terminals; here neither. Its backward LSTM over
  padded windows starts in the padding (TensorFlow's ``sequence_length`` on a reversed list); here it
  starts at each window's last valid step. V(s_{t+1}) is each step's own next state's value, not the
  window's last observation.
* Updates start after ``update_after`` (1000) stored steps per agent, not at once.
* The ``ci`` tier (module ``TIERS``) shrinks everything to fit 30 minutes on one core: 2 agents,
  2 x 64 networks, 16 windows, 1000 random steps, annealing over 2000 steps; ``smoke`` is a wiring
  check. The standard tier is the paper's.

The meta-training curve logs, besides losses and each agent's recent returns, ``alignment``: the
cosine between ∇θ L_α and ∇θ(-Q₁(s, π(s))) on a fresh batch, averaged over the population (the
original logs a similar ``objective_critic_correlation``): what the meta-gradient trains the objective
towards, and the first sign that it learns.

Measured, before the inner-step change (2026-11-30, seed 0): the ci suite at a reduced scale (6k
meta-training steps, 3k adaptation steps, updates from step 500; ``tests/test_metagenrl.py``'s scale)
gave evaluation returns on the held-out InvertedPendulum of 4.0 for metagenrl, 2.0 with the
objective's updates disabled (``objective_lr=0``), 6.8 for the random agent and 83.4 for from_scratch
(TD3): the learned objective did not train a fresh agent.

Diagnosis (2026-11-30, issue 15). The meta-gradient itself is right (``tests/test_metagenrl.py`` checks
it against finite differences of a hand-written meta-loss, and that α reaches the meta-loss only through
θ'). But the inner step took η = 1e-3 on the *mean* of L_α, 100 to 2000 times smaller than the
original's (η on the sum over the batch's steps: η_eff ≈ 0.3 on the mean at ci, 2 at the paper's batch).
With so small a step the meta-loss only sees the critic's local slope at π: the meta-gradient can reward
making ∇θ L_α larger along whatever direction Q₁ favours there, state-independent pushes included (a
hypothesis: saturating the action, often good in Pendulum, is fatal in InvertedPendulum, whose returns
of 2 to 4 look like saturated actions; not checked), and never sees the step overshoot. Evidence,
train-split and synthetic only: (a) one random 2 x 64 policy, Q₁ fitted to Q = -(a - tanh s₀)², 200 Adam
steps on α (ci sizes): with the mean step the logged meta-loss went 0.19 -> 0.12 and the alignment 0.30
-> 0.72; with the sum step 0.82 -> 0.05 and -0.02 -> 0.93 (the stepped policy nearly reaches the
critic's optimum); (b) on the ci train envs (Pendulum, Reacher) with the mean step and one objective
update per env step, the population's alignment logged after 1000 steps per agent (500 of updates,
policies following L_α; one logged value, our own driver, run stopped there) was -0.89, as if the
policies, following L_α, had gone past the critic's optimum. Now the inner step is the original's (sum).
Not changed: everything else, the ci settings included.

Measured after the change (2026-11-30, seed 0, the same reduced scale, through the harness: the slow
test's unit, 307 CPU-seconds): the population's alignment on the train envs, logged every 1000 steps
per agent, was 0.38, 0.71, 0.54 (before: averaged 0.28), and the Reacher agent, its policy moved by
L_α alone from its 1000th step, improved from -64 to -16 (mean of its last 5 episodes); the Pendulum
agent stayed at -1440. On the held-out InvertedPendulum the fresh agent scored 5.2 (5 eval episodes:
5, 5, 5, 6, 5) against 2.0 with the objective's updates disabled (measured before; that path never
takes the inner step) and 6.8 for the random agent: **the issue's done-when is not met**; the learned
objective still does not train a fresh agent on the held-out env at this scale. Not tried for lack of
CPU time (one run of this scale took 50 minutes of wall time there): more meta-gradient steps per env
step (``objective_delay=1`` fits a ci unit's 30 minutes only just; since tried, (d) below), a full ci
unit, other seeds.

What the fresh agent's policy does at meta-test (2026-11-30, issue 15, seed 0; the scripts were our own
drivers around this module's classes, not the harness, unless said). (a) Constant actions on
InvertedPendulum-v5 (5 episodes, reset seeds 999 to 1003; env units, bounds ±3) score 25.2 for the
action 0, 10 for ±0.3, 6.0 for 0.9 and 2.0 for the bound 3. The updates-disabled control's 2.0 is
exactly the saturated action, and metagenrl's 5.2 lies between the scores of the constant actions 0.9
and 3. A policy that does nothing scores well above random (6.8). (b) An objective meta-trained with
``objective_delay=1`` for 2000 steps (1000 per agent, updates from step 500, annealing over 500 steps so
that L_α alone moves the policies from the first update; train-env alignment 0.70, 0.30, 0.62 logged at
500, 750 and 1000 steps per agent; 87 CPU-seconds) then trained a fresh InvertedPendulum agent for 2000
steps (updates from step 500). Over the updates the policy collapsed to a near-constant action: the
standard deviation of π(s) over a batch's states (normalised actions) fell from 0.32 to 0.05, and the
mean of |π(s)| from 0.22 to 0.03. The alignment with the held-out env's own critic, logged every 250
steps, swung between -0.85 and +0.90: a state-independent push hovering around the critic's preferred
action, not a direction of improvement. Its evaluation return, 23.2 (16.0 in a rerun whose alignment
logging drew from the learner's generator at other times), is the zero action's score. So a return above
random's on InvertedPendulum does not show that the objective learned anything. A check of learning has
to beat the best constant action (about 25) or show that π depends on the state. The objective's
gradient *scale* is not the problem (item 3 of the issue's next steps): the policy's optimiser is Adam,
which is invariant to it. The problem is its direction, which here is towards the replay buffer's mean
action (the uniform random actions' mean, 0). (c) The same objective on a fresh agent of a *train* env,
Reacher-v5 (2000 steps, updates from step 500), did the same thing: mean |π(s)| 0.49 -> 0.04, evaluation
-12.2 on reset seeds 999 to 1003, where the zero action scores -12.4 on the same seeds (Pendulum-v1:
-1266 over 10 seeds). So the population's Reacher gain in meta-training (-64 to -16 above) is the zero
action's score too: dropping the control cost. The objective has learned "shrink the action". That is
what both train critics reward locally, and it gives a positive train-env alignment, but it is not an
improvement operator. (d) Through the harness, at the slow test's scale with ``objective_delay=1`` (a
script calling ``prepare_suite_units`` and ``run`` as the slow test does, with its overrides plus
``objective_delay=1``; 399 CPU-seconds for the unit): train-env alignment 0.65, 0.50, 0.58;
Pendulum -1421, -1521, -1517, Reacher -82, -12, -10; held-out InvertedPendulum 5.6 (5, 5, 6, 6, 6).
The issue's done-when is still not met, and beating random alone would not meet its intent. Left to
try: give the meta-gradient something other than the control cost to learn from, for example train envs
whose critics do not favour small actions everywhere, the warm-up of the issue's item 2, or longer
meta-training in which Pendulum's critic comes to favour swinging up (some of it tried since: the table
below). Also check at meta-test that std π(s) over states does not collapse.

The committed ci records (``leaderboards/ci/suite__PendulumReacher-v0__ci.md``, seeds 0-4): on the
held-out InvertedPendulum metagenrl's normalised score is about 0, the random agent's level, with
evaluation returns of 2 to 8, a near-constant action; from_scratch (TD3) is well above.

Tried on the train envs only (2026-12-07, issue 15): meta-train with the ci settings plus one change,
then train fresh agents with the frozen objective for 10k steps on Reacher and Pendulum. Scored on 5
evaluation episodes (reset seeds 999-1003), where the zero action scores -12.4 and -1026:

========================================  ==========  ===========  =====================
change (seed 0 unless said)               Reacher     Pendulum     std π(s) Reacher/Pend.
========================================  ==========  ===========  =====================
none (the ci settings)                    -9.9        -1220        0.01 / 0.09
``inner_lr=6.25e-3`` (the paper's η·B·T)  -78.9       -1433        0.03 / 0.08
``exploration_noise=0.3``                 -12.1       -955         0.08 / 0.16
``exploration_noise=0.3``, seed 1         -107.2      -1452        0.00 / 0.00 (bound)
``exploration_noise=0.5``                 -10.4       -1045        0.42 / 0.06
4x meta-training (80k steps)              -59.1       -1490        0.00 / 0.44
========================================  ==========  ===========  =====================

None beats the zero action clearly on an env it was meta-trained on, and most collapse to a
near-constant action. Nor did the population's returns rise over meta-training once L_α alone moved
the policies (Pendulum -991 to -1623; Reacher -8 to -15 with noise 0.1, worse with more noise).
At 2 agents and up to 40k steps each, the meta-gradient does not turn L_α into an improvement operator;
the paper's 20 agents and its budget are the standard tier, which needs a Ray cluster or a GPU machine.

Cost of a ci unit (20k steps of meta-training, 10k of adaptation; CPU time with child processes, two
units at a time on a 2-core machine, 2026-12-07): 6.1 to 7.2 CPU-minutes over seeds 0-4, and 8.5 in a
rerun of seeds 0 and 1 with the same code but for docstrings. Meta-training for 80k steps took 29.5
CPU-minutes, so 4x the ci budget does not fit a 30-minute unit.

Randomness: each agent has its own ``np.random.Generator`` and ``torch.Generator`` from
``meta_train``'s seed (initial weights, exploration, replay sampling, target noise); nothing global.
``save`` writes ``objective.pt`` (a state dict, read back with ``torch.load(weights_only=True)``) and
``agent.json`` (config and seed).

Run it: ``metabench evaluate agents/metagenrl.py --suite suite/PendulumReacher-v0 --tier ci --seeds 0-4``;
the paper's experiment on a Ray cluster: ``metabench evaluate agents/metagenrl.py --suite
suite/MetaGenRL-CheetahLunar-v0 --tier standard --seeds 0-2 --config ray=true --ray-address auto``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn
from torch.func import functional_call

from metabench.protocol import Budget, Logger, Transition
from metabench.tasks import Task


@dataclasses.dataclass
class Config:
    #: agents in the population, spread evenly over the train envs
    population: int = 20
    hidden: int = 350
    layers: int = 3
    layernorm: bool = True
    policy_lr: float = 1e-3
    critic_lr: float = 1e-3
    objective_lr: float = 1e-3
    gamma: float = 0.99
    tau: float = 0.005
    policy_delay: int = 2
    objective_delay: int = 2
    target_noise: float = 0.2
    noise_clip: float = 0.5
    exploration_noise: float = 0.1
    #: uniform random actions for each agent's first steps (meta-training and meta-test)
    random_steps: int = 10_000
    #: stored steps before an agent updates
    update_after: int = 1_000
    batch_trajectories: int = 100
    trajectory_len: int = 20
    buffer_size: int = 1_000_000
    grad_clip: float = 1.0
    #: step size of the inner SGD step of the meta-gradient
    inner_lr: float = 1e-3
    #: meta-training steps (per agent) over which the policy loss anneals from -Q to L_α
    anneal_steps: int = 10_000
    obj_units: int = 32
    obj_lstm: int = 32
    obj_value_units: int = 8
    error_scale: float = 1e-3
    #: run the population's networks as Ray actors (the driver still steps every env)
    ray: bool = False
    ray_address: str = ""
    #: env steps (per agent) between two rows of the meta-training curve
    log_every: int = 1_000


TIERS: dict[str, dict[str, Any]] = {
    "smoke": {
        "population": 2,
        "hidden": 16,
        "layers": 2,
        "random_steps": 50,
        "update_after": 50,
        "batch_trajectories": 2,
        "trajectory_len": 4,
        "anneal_steps": 100,
        "obj_units": 8,
        "obj_lstm": 8,
        "log_every": 50,
    },
    "ci": {
        "population": 2,
        "hidden": 64,
        "layers": 2,
        "random_steps": 1_000,
        "update_after": 1_000,
        "batch_trajectories": 16,
        "anneal_steps": 2_000,
        "log_every": 1_000,
    },
}


# ------------------------------------------------------------------------------------------ networks
def init_(module: nn.Module, gen: torch.Generator) -> nn.Module:
    """PyTorch's default uniform init, drawn from ``gen`` (no global generator)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.in_features)
            with torch.no_grad():
                m.weight.uniform_(-bound, bound, generator=gen)
                if m.bias is not None:
                    m.bias.uniform_(-bound, bound, generator=gen)
        elif isinstance(m, nn.LSTMCell):
            bound = 1.0 / math.sqrt(m.hidden_size)
            with torch.no_grad():
                for p in m.parameters():
                    p.uniform_(-bound, bound, generator=gen)
    return module


class ReluSquare(nn.Module):
    """The original's mixed activation: ReLU on the first half of the units, x² on the second."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=-1)
        return torch.cat([torch.relu(a), b * b], dim=-1)


def mlp(
    n_in: int, n_out: int, hidden: int, layers: int, layernorm: bool, act: Callable[[], nn.Module] = nn.ReLU
) -> nn.Sequential:
    """``layers`` hidden layers (Linear, activation, LayerNorm), then a linear output (none if
    ``n_out`` is 0)."""
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Linear(n_in if i == 0 else hidden, hidden), act()]
        if layernorm:
            mods.append(nn.LayerNorm(hidden))
    if n_out:
        mods.append(nn.Linear(hidden if layers else n_in, n_out))
    return nn.Sequential(*mods)


class Policy(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, c: Config):
        super().__init__()
        self.net = mlp(obs_dim, act_dim, c.hidden, c.layers, c.layernorm)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))  # in [-1, 1]; the agent rescales to the env's bounds


class Critic(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, c: Config):
        super().__init__()
        self.net = mlp(obs_dim + act_dim, 1, c.hidden, c.layers, c.layernorm)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, act], dim=-1)).squeeze(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def znorm(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """z-score over the valid entries of the batch (the original's ``z_normalize_online``)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) / torch.sqrt(var + 1e-8)


class Objective(nn.Module):
    """L_α: per step of a window, a bounded scalar the policy minimises (see the module docstring).
    Its parameters do not depend on the action or observation size."""

    def __init__(self, c: Config):
        super().__init__()
        u = c.obj_units
        self.action_encoder = mlp(2, 0, u, 3, True, ReluSquare)
        self.value_encoder = mlp(4, c.obj_value_units, u, 2, False, ReluSquare)
        self.lstm = nn.LSTMCell(u + c.obj_value_units, c.obj_lstm)
        self.head = mlp(c.obj_lstm, 1, u, 2, True, ReluSquare)
        self.error_scale = c.error_scale

    def forward(
        self,
        batch: Mapping[str, torch.Tensor],
        pi_action: torch.Tensor,
        v: torch.Tensor,
        v_next: torch.Tensor,
    ) -> torch.Tensor:
        """Per-step errors, shape (B, T): ``batch`` holds the windows (``act`` (B, T, A) in [-1, 1],
        ``rew``, ``term``, ``mask`` (B, T)); ``pi_action`` the policy's actions (B, T, A); ``v`` and
        ``v_next`` V(s_t) and V(s_{t+1}) (B, T), gradient already stopped."""
        mask = batch["mask"]
        b, t = mask.shape
        pairs = torch.stack([batch["act"], pi_action], dim=-1)  # (B, T, A, 2)
        actions = self.action_encoder(pairs).mean(dim=-2)  # (B, T, u): any action size
        values = torch.cat([v, v_next], dim=1)
        vmask = torch.cat([mask, mask], dim=1)
        nv = znorm(values, vmask)
        nv_t, nv_next = nv[:, :t], nv[:, t:]
        time = torch.arange(t, dtype=mask.dtype).expand(b, t) / t
        other = torch.stack([znorm(batch["rew"], mask), time, nv_next * (1.0 - batch["term"]), nv_t], dim=-1)
        x = torch.cat([actions, self.value_encoder(other)], dim=-1)
        h = x.new_zeros(b, self.lstm.hidden_size)
        cell = torch.zeros_like(h)
        outs = []
        for i in reversed(range(t)):  # backwards in time; padded steps keep the state at zero
            h, cell = self.lstm(x[:, i], (h, cell))
            m = mask[:, i : i + 1]
            h, cell = h * m, cell * m
            outs.append(h)
        out = self.head(torch.stack(outs[::-1], dim=1)).squeeze(-1)
        return torch.tanh(out * self.error_scale) / self.error_scale

    def loss(
        self,
        batch: Mapping[str, torch.Tensor],
        pi_action: torch.Tensor,
        v: torch.Tensor,
        v_next: torch.Tensor,
    ) -> torch.Tensor:
        return masked_mean(self(batch, pi_action, v, v_next), batch["mask"])


def values(
    policy: nn.Module, q1: nn.Module, batch: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """V(s_t) and V(s_{t+1}) = Q₁(s, π(s)), gradient stopped."""
    with torch.no_grad():
        return q1(batch["obs"], policy(batch["obs"])), q1(batch["next_obs"], policy(batch["next_obs"]))


def half(batch: Mapping[str, torch.Tensor], first: bool) -> dict[str, torch.Tensor]:
    n = batch["mask"].shape[0] // 2
    return {k: (v[:n] if first else v[n:]) for k, v in batch.items()}


def meta_loss(
    policy: nn.Module, q1: nn.Module, objective: Objective, batch: Mapping[str, torch.Tensor], inner_lr: float
) -> torch.Tensor:
    """-Q₁(s, π_θ'(s)) on the whole batch, θ' = θ - η ∇θ Σ L_α(θ) (the sum over the valid steps of the
    batch's first half); differentiable in α through the inner step (second order)."""
    params = dict(policy.named_parameters())
    inner = half(batch, True)
    v, v_next = values(policy, q1, inner)
    errors = objective(inner, functional_call(policy, params, (inner["obs"],)), v, v_next)
    # the gradient of the *sum* over the valid steps, as the original's ``tf.gradients(objective_val *
    # seq_mask)``: η = 1e-3 on a sum of B·T errors is a real step (η_eff = η·B·T on the mean), so the
    # meta-loss sees where the step lands (overshoot is penalised), not only the critic's local slope
    inner_loss = (errors * inner["mask"]).sum()
    grads = torch.autograd.grad(inner_loss, list(params.values()), create_graph=True)
    updated = {k: p - inner_lr * g for (k, p), g in zip(params.items(), grads, strict=True)}
    q = q1(batch["obs"], functional_call(policy, updated, (batch["obs"],)))
    return -masked_mean(q, batch["mask"])


def meta_gradient(
    policy: nn.Module, q1: nn.Module, objective: Objective, batch: Mapping[str, torch.Tensor], c: Config
) -> tuple[list[torch.Tensor], float]:
    """∂ meta_loss / ∂α, clipped to norm ``grad_clip``, and the meta-loss."""
    loss = meta_loss(policy, q1, objective, batch, c.inner_lr)
    grads = torch.autograd.grad(loss, list(objective.parameters()), allow_unused=True)
    grads = [
        torch.zeros_like(p) if g is None else g for p, g in zip(objective.parameters(), grads, strict=True)
    ]
    norm = torch.sqrt(sum((g * g).sum() for g in grads))
    scale = min(1.0, c.grad_clip / (float(norm) + 1e-12))
    return [g * scale for g in grads], float(loss.detach())


# ---------------------------------------------------------------------------------------- the buffer
class WindowBuffer:
    """A FIFO replay buffer that hands out windows of consecutive steps of one episode."""

    def __init__(self, obs_dim: int, act_dim: int, size: int):
        self.obs = np.zeros((size, obs_dim), np.float32)
        self.next_obs = np.zeros((size, obs_dim), np.float32)
        self.act = np.zeros((size, act_dim), np.float32)
        self.rew = np.zeros(size, np.float32)
        self.term = np.zeros(size, np.float32)
        self.episode = np.full(size, -1, np.int64)
        self.ptr, self.size, self.cap, self.current = 0, 0, size, 0

    def add(self, obs: Any, act: np.ndarray, rew: float, next_obs: Any, terminated: bool, done: bool) -> None:
        i = self.ptr
        self.obs[i], self.act[i], self.rew[i], self.next_obs[i] = obs, act, rew, next_obs
        self.term[i], self.episode[i] = float(terminated), self.current
        self.ptr, self.size = (i + 1) % self.cap, min(self.size + 1, self.cap)
        self.current += bool(done)

    def sample(self, n: int, length: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        start = rng.integers(0, self.size, size=n)
        idx = (start[:, None] + np.arange(length)[None]) % self.cap
        offset = np.arange(length)[None]
        # a window stays inside its episode and inside the stored steps (never wraps past ptr)
        ahead = (
            (self.ptr - start[:, None] - 1) % self.cap
            if self.size == self.cap
            else self.size - 1 - start[:, None]
        )
        mask = (self.episode[idx] == self.episode[start][:, None]) & (offset <= ahead)
        mask = np.cumprod(mask, axis=1).astype(np.float32)
        idx = np.where(mask > 0, idx, start[:, None])  # padded steps repeat the first (masked out)
        out = {
            "obs": self.obs[idx],
            "act": self.act[idx],
            "rew": self.rew[idx] * mask,
            "next_obs": self.next_obs[idx],
            "term": self.term[idx] * mask,
            "mask": mask,
        }
        return {k: torch.as_tensor(v) for k, v in out.items()}


# --------------------------------------------------------------------------------------- the learner
class Learner:
    """One TD3 agent whose policy minimises the (shared) objective: a population member, or the fresh
    agent of a meta-test trial."""

    def __init__(
        self, obs_dim: int, act_dim: int, c: Config, objective: Objective, seed: int, buffer_size: int
    ):
        self.c, self.objective = c, objective
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator().manual_seed(int(self.rng.integers(2**62)))
        self.policy = init_(Policy(obs_dim, act_dim, c), self.gen)
        self.q1 = init_(Critic(obs_dim, act_dim, c), self.gen)
        self.q2 = init_(Critic(obs_dim, act_dim, c), self.gen)
        self.target = copy.deepcopy(nn.ModuleList([self.policy, self.q1, self.q2])).requires_grad_(False)
        self.pi_opt = torch.optim.Adam(self.policy.parameters(), lr=c.policy_lr)
        self.q_opt = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], lr=c.critic_lr)
        self.buffer = WindowBuffer(obs_dim, act_dim, buffer_size)
        self.act_dim = act_dim
        self.steps = 0
        self.updates = 0

    def act(self, obs: Any, explore: bool) -> np.ndarray:
        """An action in [-1, 1]."""
        if explore and self.steps < self.c.random_steps:
            return self.rng.uniform(-1.0, 1.0, self.act_dim).astype(np.float32)
        with torch.no_grad():
            a = self.policy(torch.tensor(np.asarray(obs), dtype=torch.float32)[None])[0].numpy()
        if explore:
            a = np.clip(a + self.c.exploration_noise * self.rng.standard_normal(self.act_dim), -1.0, 1.0)
        return a.astype(np.float32)

    def store(
        self, obs: Any, act: np.ndarray, rew: float, next_obs: Any, terminated: bool, done: bool
    ) -> None:
        self.buffer.add(obs, act, rew, next_obs, terminated, done)
        self.steps += 1

    @property
    def ready(self) -> bool:
        return self.buffer.size >= max(self.c.update_after, 2)

    def batch(self, n: int) -> dict[str, torch.Tensor]:
        return self.buffer.sample(n, self.c.trajectory_len, self.rng)

    def update(self, anneal: float) -> dict[str, float]:
        """One critic update; every ``policy_delay`` updates a policy update (loss
        ``anneal · L_α - (1 - anneal) · Q₁``) and the target update."""
        c = self.c
        b = self.batch(c.batch_trajectories)
        mask = b["mask"]
        with torch.no_grad():
            target_pi, target_q1, target_q2 = self.target
            noise = (torch.randn(b["act"].shape, generator=self.gen) * c.target_noise).clamp(
                -c.noise_clip, c.noise_clip
            )
            a2 = (target_pi(b["next_obs"]) + noise).clamp(-1.0, 1.0)
            q_next = torch.minimum(target_q1(b["next_obs"], a2), target_q2(b["next_obs"], a2))
            backup = b["rew"] + c.gamma * (1.0 - b["term"]) * q_next  # no +1 at terminals
        q_loss = masked_mean((self.q1(b["obs"], b["act"]) - backup) ** 2, mask) + masked_mean(
            (self.q2(b["obs"], b["act"]) - backup) ** 2, mask
        )
        self.q_opt.zero_grad()
        q_loss.backward()
        nn.utils.clip_grad_norm_([*self.q1.parameters(), *self.q2.parameters()], c.grad_clip)
        self.q_opt.step()
        out = {"critic_loss": float(q_loss.detach())}
        self.updates += 1
        if self.updates % c.policy_delay == 0:
            pi = self.policy(b["obs"])
            loss = masked_mean(-self.q1(b["obs"], pi), mask) * (1.0 - anneal) if anneal < 1.0 else 0.0
            if anneal > 0.0:
                v, v_next = values(self.policy, self.q1, b)
                loss = loss + anneal * self.objective.loss(b, pi, v, v_next)
            self.pi_opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(self.policy.parameters(), c.grad_clip)
            self.pi_opt.step()
            self.q1.zero_grad(set_to_none=True)
            self.objective.zero_grad(set_to_none=True)
            with torch.no_grad():
                for net, targ in zip((self.policy, self.q1, self.q2), self.target, strict=True):
                    for p, tp in zip(net.parameters(), targ.parameters(), strict=True):
                        tp.lerp_(p, c.tau)
            out["policy_loss"] = float(loss.detach()) if torch.is_tensor(loss) else loss
        return out

    def alignment(self) -> float:
        """cos(∇θ L_α, ∇θ -Q₁(s, π(s))) on a fresh batch: whether a step on the objective moves the
        policy the way the critic would (what the meta-gradient trains for); nan before updates start."""
        if not self.ready:
            return math.nan
        b = self.batch(self.c.batch_trajectories)
        params = list(self.policy.parameters())
        pi = self.policy(b["obs"])
        v, v_next = values(self.policy, self.q1, b)
        g_obj = torch.autograd.grad(self.objective.loss(b, pi, v, v_next), params, retain_graph=True)
        g_q = torch.autograd.grad(masked_mean(-self.q1(b["obs"], pi), b["mask"]), params)
        a, c = torch.cat([g.reshape(-1) for g in g_obj]), torch.cat([g.reshape(-1) for g in g_q])
        return float(torch.dot(a, c) / (a.norm() * c.norm() + 1e-12))

    def objective_gradient(self) -> tuple[list[torch.Tensor], float]:
        return meta_gradient(
            self.policy, self.q1, self.objective, self.batch(2 * self.c.batch_trajectories), self.c
        )


class _LocalWorker:
    """The in-process population member: the same calls as :class:`_RemoteLearner`."""

    def __init__(self, learner: Learner):
        self.learner = learner

    def act(self, obs: Any, explore: bool) -> np.ndarray:
        return self.learner.act(obs, explore)

    def step(self, transition: tuple, anneal: float, objective: bool) -> tuple[dict, list | None, float]:
        self.learner.store(*transition)
        if not self.learner.ready:
            return {}, None, math.nan
        out = self.learner.update(anneal)
        if not objective:
            return out, None, math.nan
        grads, loss = self.learner.objective_gradient()
        return out, grads, loss

    def alignment(self) -> float:
        return self.learner.alignment()


class _RemoteLearner(_LocalWorker):
    """A population member in a Ray actor: built there, given the objective's weights by value."""

    def __init__(self, obs_dim: int, act_dim: int, c: Config, objective_state: dict, seed: int, size: int):
        torch.set_num_threads(1)  # one core per actor, as Ray reserves it
        objective = Objective(c)
        objective.load_state_dict(objective_state)
        super().__init__(Learner(obs_dim, act_dim, c, objective, seed, size))

    def set_objective(self, state: dict) -> None:
        self.learner.objective.load_state_dict(state)

    def step(self, transition: tuple, anneal: float, objective: bool) -> tuple[dict, list | None, float]:
        out, grads, loss = super().step(transition, anneal, objective)
        return out, None if grads is None else [g.numpy() for g in grads], loss


# ----------------------------------------------------------------------------------------- the agent
def _tensor(g: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A gradient as a tensor (a Ray actor's arrive as read-only arrays: copied)."""
    return g if isinstance(g, torch.Tensor) else torch.from_numpy(np.array(g))


def _check_box(space: spaces.Space, what: str) -> None:
    if not isinstance(space, spaces.Box) or len(space.shape) != 1:
        raise TypeError(f"metagenrl needs flat Box {what} spaces; got {space}")


def _scale(space: spaces.Box, a: np.ndarray) -> np.ndarray:
    """[-1, 1] -> the space's bounds."""
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    return (low + (a + 1.0) * 0.5 * (high - low)).astype(space.dtype)


def _unscale(space: spaces.Box, a: Any) -> np.ndarray:
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    return np.clip(2.0 * (np.asarray(a, np.float64) - low) / (high - low) - 1.0, -1.0, 1.0).astype(np.float32)


class MetaGenRLAgent:
    """A learned objective, meta-trained by a TD3 population; meta-test trains a fresh TD3 agent with it."""

    oracle = False
    suites = True

    def __init__(self, config: Config):
        self.config = config
        self.objective = Objective(config)
        self.seed = 0
        self.trials = 0
        self.learner: Learner | None = None
        self.action_space: spaces.Box | None = None
        self._explored = False
        self._started_ray = False

    # ------------------------------------------------------------------ meta-training
    def meta_train(
        self,
        make_env: Callable[..., gym.Env],
        tasks: Sequence[Task],
        budget: Budget,
        *,
        seed: int,
        log: Logger,
    ) -> None:
        c = self.config
        if not tasks or not isinstance(tasks[0].params.get("env"), str):
            raise TypeError(
                "metagenrl runs on transfer suites (metabench evaluate --suite NAME), not families"
            )
        self.seed, self.trials = int(seed), 0
        gen = torch.Generator().manual_seed(int(seed))
        init_(self.objective, gen)
        rng = np.random.default_rng(seed)
        envs = [make_env(tasks[k % len(tasks)]) for k in range(c.population)]
        per_agent = budget.env_steps // c.population
        for env in envs:
            _check_box(env.observation_space, "observation")
            _check_box(env.action_space, "action")
        buffer_size = max(1, min(c.buffer_size, per_agent))
        seeds = [int(s) for s in rng.integers(2**31, size=c.population)]
        opt = torch.optim.Adam(self.objective.parameters(), lr=c.objective_lr)
        use_ray = c.ray or bool(c.ray_address)
        workers = self._workers(envs, seeds, buffer_size, use_ray)
        obs = [env.reset(seed=s)[0] for env, s in zip(envs, seeds, strict=True)]
        returns = [0.0] * c.population
        finished: list[list[float]] = [[] for _ in envs]
        stats: dict[str, list[float]] = {}
        try:
            for step in range(per_agent):
                anneal = min(1.0, step / c.anneal_steps) if c.anneal_steps else 1.0
                with_objective = step % c.objective_delay == 0 and c.objective_lr > 0
                actions = self._call(workers, "act", [(o, True) for o in obs], use_ray)
                transitions = []
                for k, (env, a) in enumerate(zip(envs, actions, strict=True)):
                    next_obs, r, term, trunc, _ = env.step(_scale(env.action_space, a))
                    returns[k] += float(r)
                    transitions.append((obs[k], a, float(r), next_obs, bool(term), bool(term or trunc)))
                    if term or trunc:
                        finished[k].append(returns[k])
                        returns[k] = 0.0
                        next_obs = env.reset(seed=int(rng.integers(2**31)))[0]
                    obs[k] = next_obs
                results = self._call(
                    workers, "step", [(t, anneal, with_objective) for t in transitions], use_ray
                )
                grads = [g for _, g, _ in results if g is not None]
                for out, _, loss in results:
                    for key, value in out.items():
                        stats.setdefault(key, []).append(value)
                    if not math.isnan(loss):
                        stats.setdefault("meta_loss", []).append(loss)
                if grads:
                    opt.zero_grad()
                    for p, *gs in zip(self.objective.parameters(), *grads, strict=True):
                        p.grad = torch.stack([_tensor(g) for g in gs]).mean(0)
                    opt.step()
                    if use_ray:
                        self._broadcast(workers)
                if (step + 1) % c.log_every == 0 or step + 1 == per_agent:
                    row = {k: float(np.mean(v)) for k, v in stats.items()}
                    aligned = self._call(workers, "alignment", [()] * len(workers), use_ray)
                    if not all(math.isnan(a) for a in aligned):
                        row["alignment"] = float(np.nanmean(aligned))
                    for k, env in enumerate(envs):
                        if finished[k]:
                            row[f"return_{k}_{env.spec.id if env.spec else k}"] = float(
                                np.mean(finished[k][-5:])
                            )
                    log.log((step + 1) * c.population, anneal=anneal, **row)
                    stats = {}
        finally:
            for env in envs:
                env.close()
            if use_ray:
                import ray

                for w in workers:
                    ray.kill(w)
                if self._started_ray:
                    ray.shutdown()

    def _workers(self, envs: list[gym.Env], seeds: list[int], buffer_size: int, use_ray: bool) -> list[Any]:
        dims = [(env.observation_space.shape[0], env.action_space.shape[0]) for env in envs]
        if not use_ray:
            return [
                _LocalWorker(Learner(o, a, self.config, self.objective, s, buffer_size))
                for (o, a), s in zip(dims, seeds, strict=True)
            ]
        import ray

        self._started_ray = not ray.is_initialized()
        if self._started_ray:
            ray.init(address=self.config.ray_address or None, include_dashboard=False)
        module = sys.modules[_RemoteLearner.__module__]
        if not module.__name__.startswith("metabench."):  # loaded from a file path: workers cannot import it
            ray.cloudpickle.register_pickle_by_value(module)
        remote = ray.remote(num_cpus=1)(_RemoteLearner)
        state = self.objective.state_dict()
        return [
            remote.remote(o, a, self.config, state, s, buffer_size)
            for (o, a), s in zip(dims, seeds, strict=True)
        ]

    def _broadcast(self, workers: list[Any]) -> None:
        import ray

        ref = ray.put(self.objective.state_dict())
        ray.get([w.set_objective.remote(ref) for w in workers])

    @staticmethod
    def _call(workers: list[Any], method: str, args: list[tuple], use_ray: bool) -> list[Any]:
        if not use_ray:
            return [getattr(w, method)(*a) for w, a in zip(workers, args, strict=True)]
        import ray

        return ray.get([getattr(w, method).remote(*a) for w, a in zip(workers, args, strict=True)])

    # ------------------------------------------------------------------ meta-testing
    def begin_trial(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        """A fresh TD3 agent for these spaces, trained by the frozen objective."""
        _check_box(observation_space, "observation")
        _check_box(action_space, "action")
        frozen = copy.deepcopy(self.objective).requires_grad_(False)
        seed = self.seed * 1_000 + self.trials
        self.trials += 1
        self.action_space = action_space
        self.learner = Learner(
            observation_space.shape[0],
            action_space.shape[0],
            self.config,
            frozen,
            seed,
            self.config.buffer_size,
        )

    def act(self, obs: Any, *, explore: bool) -> Any:
        if self.learner is None or self.action_space is None:
            raise RuntimeError("MetaGenRLAgent.act called before begin_trial")
        self._explored = explore
        return _scale(self.action_space, self.learner.act(obs, explore))

    def observe(self, transition: Transition) -> None:
        if self.learner is None or self.action_space is None or not self._explored:
            return  # evaluation episodes are not learned from
        t = transition
        done = t.terminated or t.truncated
        a = _unscale(self.action_space, t.action)
        self.learner.store(t.obs, a, t.reward, t.next_obs, t.terminated, done)
        if self.learner.ready:
            self.learner.update(anneal=1.0)

    def end_episode(self) -> None:
        pass

    # ------------------------------------------------------------------ save / load
    def save(self, path: str | Path) -> None:
        """``path/objective.pt`` (state dict) and ``path/agent.json`` (config, seed)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.objective.state_dict(), path / "objective.pt")
        state = {"config": dataclasses.asdict(self.config), "seed": self.seed, "trials": self.trials}
        (path / "agent.json").write_text(json.dumps(state, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> MetaGenRLAgent:
        path = Path(path)
        state = json.loads((path / "agent.json").read_text())
        agent = cls(Config(**state["config"]))
        agent.objective.load_state_dict(torch.load(path / "objective.pt", weights_only=True))
        agent.seed, agent.trials = int(state["seed"]), int(state["trials"])
        return agent


def make_agent(config: Config) -> MetaGenRLAgent:
    return MetaGenRLAgent(config)
