"""MAML-TRPO (agents/maml.py): baseline and solver maths, budget, adaptation at meta-test, save/load,
learnability."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import metabench
from metabench.agents import maml
from metabench.agents.common import policy_gradient as pg
from metabench.harness import Budget, EnvFactory
from metabench.protocol import Transition, build_config

from .helpers import RecordingLogger, budgeted_env_factory

POINT = "metabench/PointNav-v0"
BANDIT = "metabench/Bandit-v0"


def train(
    env_id: str = POINT, budget: int = 1_900, seed: int = 0, tier: str = "smoke", **overrides
) -> tuple[maml.MAMLAgent, EnvFactory, RecordingLogger]:
    config = dataclasses.replace(build_config(maml, tier), **overrides)
    agent = maml.make_agent(config)
    factory, curve = budgeted_env_factory(env_id, budget), RecordingLogger()
    agent.meta_train(factory, metabench.tasks(env_id, "train"), Budget(budget), seed=seed, log=curve)
    return agent, factory, curve


@pytest.fixture(scope="module")
def point_agent() -> tuple[maml.MAMLAgent, EnvFactory, RecordingLogger]:
    return train()


def play_trial(agent, env_id: str, task_index: int, n_adapt: int, n_eval: int, seed: int = 0) -> list:
    """One harness trial on a test task: n_adapt exploring episodes, then n_eval evaluation ones."""
    env = gym.make(env_id)
    task = metabench.tasks(env_id, "test")[task_index]
    agent.begin_trial()
    actions = []
    for ep in range(n_adapt + n_eval):
        obs, _ = env.reset(seed=seed + ep, options={"task": task})
        done = False
        while not done:
            action = agent.act(obs, explore=ep < n_adapt)
            actions.append(np.asarray(action).copy())
            nxt, reward, term, trunc, info = env.step(action)
            agent.observe(Transition(obs, action, float(reward), nxt, term, trunc, info))
            obs, done = nxt, term or trunc
        agent.end_episode()
    return actions


# ------------------------------------------------------------------------------------------- maths
def test_linear_baseline_fits_returns_it_can_represent():
    # reward 1 per step, gamma 1: the return-to-go T - t is linear in t, so the advantages vanish
    rewards, mask = np.ones((4, 10)), np.ones((4, 10))
    obs = np.zeros((4, 10, 2))
    adv = pg.linear_baseline(obs, rewards, mask, gamma=1.0, gae_lambda=1.0, reg=1e-5)
    assert np.abs(adv).max() < 1e-2  # ridge (1e-5) leaves a little
    # padded steps get no advantage, and an episode's end is terminal
    mask[:, 6:] = 0
    adv = pg.linear_baseline(obs, rewards * mask, mask, gamma=1.0, gae_lambda=1.0, reg=1e-5)
    assert np.all(adv[:, 6:] == 0) and np.abs(adv[:, :6]).max() < 1e-2
    # returns it cannot represent (depend on something outside the features) leave advantages
    rng = np.random.default_rng(0)
    noisy = rng.normal(size=(4, 10))
    assert np.abs(pg.linear_baseline(obs, noisy, np.ones((4, 10)), 0.99, 1.0, 1e-5)).max() > 0.1


def test_conjugate_gradient_solves_a_positive_definite_system():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    spd = torch.as_tensor(a @ a.T + 6 * np.eye(6))
    b = torch.as_tensor(rng.normal(size=6))
    x = pg.conjugate_gradient(lambda v: spd @ v, b, iters=10)
    assert torch.allclose(spd @ x, b, atol=1e-6)


def test_gaussian_log_prob_and_kl_match_torch_distributions():
    policy = pg.MLPPolicy(3, 2, False, (8,))
    policy.reset_parameters(torch.Generator().manual_seed(0))
    params = {k: v.detach() for k, v in policy.named_parameters()}
    obs, act = torch.randn(5, 3), torch.randn(5, 2)
    mean = policy(obs)
    ref = torch.distributions.Normal(mean, params["log_std"].exp()).log_prob(act).sum(-1)
    assert torch.allclose(pg.log_prob(policy, params, obs, act), ref, atol=1e-5)
    other = {**params, "log_std": params["log_std"] + 0.3}
    kl = pg.kl(policy, pg.dist(policy, params, obs), pg.dist(policy, other, obs))
    p = torch.distributions.Normal(mean, params["log_std"].exp())
    q = torch.distributions.Normal(mean, other["log_std"].exp())
    assert torch.allclose(kl, torch.distributions.kl_divergence(p, q).sum(-1), atol=1e-5)


def test_the_outer_gradient_is_second_order():
    """MAML's outer loss differentiates through the inner step: its gradient equals a hand-written
    reference that builds the inner gradient with ``create_graph=True``, and differs from the
    first-order one (the inner gradient taken as a constant)."""
    config = maml.Config(hidden_sizes=(8,), inner_lr=0.5)
    agent = maml.MAMLAgent(config)
    env = gym.make(POINT)
    agent.spaces = pg.Spaces(env.observation_space, env.action_space)
    agent.policy = maml.make_policy(agent.spaces, config)
    agent.policy.reset_parameters(torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    tasks, n = 3, 30

    def batch() -> pg.Batch:
        obs, act, adv = (torch.randn(tasks, n, *s, generator=g) for s in ((2,), (2,), ()))
        ones, zeros = torch.ones(tasks, n), np.zeros((tasks, 1))
        return pg.Batch(obs, act, adv, ones, 0 * ones, returns=zeros, first_adv=zeros)

    pre, post = batch(), batch()
    theta = agent.meta_params()
    adapted_old = {k: v.detach() for k, v in agent.adapt_tasks(theta, pre).items()}
    params = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
    loss, _ = agent.objectives(pre, post, adapted_old)(params)
    ours = torch.autograd.grad(loss, list(params.values()))

    def logp(q: dict, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        mean = torch.tanh(obs @ q["net.0.weight"].T + q["net.0.bias"]) @ q["net.2.weight"].T + q["net.2.bias"]
        return torch.distributions.Normal(mean, q["log_std"].exp()).log_prob(act).sum(-1)

    def reference(second_order: bool) -> tuple[torch.Tensor, ...]:
        p = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
        total = torch.zeros(())
        for i in range(tasks):
            inner = -(logp(p, pre.obs[i], pre.act[i]) * pre.adv[i]).mean()
            grads = torch.autograd.grad(inner, list(p.values()), create_graph=second_order)
            q = {k: v - 0.5 * gk for (k, v), gk in zip(p.items(), grads, strict=True)}
            old = logp({k: v[i] for k, v in adapted_old.items()}, post.obs[i], post.act[i]).detach()
            total = total - ((logp(q, post.obs[i], post.act[i]) - old).exp() * post.adv[i]).mean()
        return torch.autograd.grad(total / tasks, list(p.values()))

    second, first = reference(True), reference(False)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(ours, second, strict=True))
    gap = max(float((a - b).abs().max()) for a, b in zip(ours, first, strict=True))
    assert gap > 1e-3, gap


# --------------------------------------------------------------------------------------- the agent
def test_smoke_meta_train_stays_within_the_budget_and_keeps_the_kl_bound(point_agent):
    agent, factory, curve = point_agent
    # smoke: 2 tasks x 5 trajectories x 20 steps, before and after the inner step = 400 per iteration
    assert factory.counter.steps == 1_600 <= 1_900 and agent.iterations == 4
    assert [s for s, _ in curve.rows] == [400, 800, 1_200, 1_600]
    for _, row in curve.rows:
        assert row["kl"] <= agent.config.max_kl + 1e-6
    assert any(row["step_accepted"] == 1.0 for _, row in curve.rows)


def test_end_episode_adapts_the_parameters_and_begin_trial_restores_them(point_agent):
    agent, _, _ = point_agent
    assert agent.episodes_per_step == 10  # PointNav's n_adapt, one inner step
    theta = agent.meta_params()
    env = gym.make(POINT)
    task = metabench.tasks(POINT, "test")[0]
    agent.begin_trial()

    def episode(explore: bool) -> None:
        obs, _ = env.reset(seed=0, options={"task": task})
        for _ in range(20):
            action = agent.act(obs, explore=explore)
            nxt, r, term, trunc, info = env.step(action)
            agent.observe(Transition(obs, action, float(r), nxt, term, trunc, info))
            obs = nxt
        agent.end_episode()

    for _ in range(9):
        episode(True)
        assert all(torch.equal(agent._params[k], theta[k]) for k in theta)  # not yet
    episode(True)
    adapted = {k: v.clone() for k, v in agent._params.items()}
    assert not all(torch.equal(adapted[k], theta[k]) for k in theta)
    episode(False)  # evaluation episodes do not adapt
    assert all(torch.equal(agent._params[k], adapted[k]) for k in theta)
    agent.begin_trial()
    assert all(torch.equal(agent._params[k], theta[k]) for k in theta)
    assert all(torch.equal(agent.meta_params()[k], theta[k]) for k in theta)  # meta-params untouched


def test_test_inner_steps_is_a_config_value(point_agent):
    agent, _, _ = point_agent
    two = maml.MAMLAgent(dataclasses.replace(agent.config, test_inner_steps=2))
    two.policy, two.spaces, two.episodes_per_step = agent.policy, agent.spaces, 5
    env = gym.make(POINT)
    task = metabench.tasks(POINT, "test")[0]
    two.begin_trial()
    snapshots = []
    for _ in range(12):
        obs, _ = env.reset(seed=0, options={"task": task})
        for _ in range(20):
            action = two.act(obs, explore=True)
            nxt, r, term, trunc, info = env.step(action)
            two.observe(Transition(obs, action, float(r), nxt, term, trunc, info))
            obs = nxt
        two.end_episode()
        snapshots.append(two._params["net.0.weight"].clone())
    changed = [i for i in range(1, 12) if not torch.equal(snapshots[i], snapshots[i - 1])]
    assert changed == [4, 9] and two._steps_taken == 2  # after episodes 5 and 10; then no more
    assert torch.equal(snapshots[0], two.meta_params()["net.0.weight"])


def test_save_load_round_trip_acts_identically(point_agent, tmp_path: Path):
    agent, _, _ = point_agent
    agent.save(tmp_path / "maml")
    loaded = maml.MAMLAgent.load(tmp_path / "maml")
    assert sorted(p.name for p in (tmp_path / "maml").iterdir()) == ["agent.json", "policy.pt"]
    a = play_trial(agent, POINT, 2, 10, 2)
    b = play_trial(loaded, POINT, 2, 10, 2)
    assert len(a) == 240 and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_discrete_actions_on_bandit_and_bad_config():
    agent, factory, _ = train(BANDIT, budget=1_000, meta_batch_size=2, trajectories_per_task=0)
    assert agent.episodes_per_step == 90 and 0 < factory.counter.steps <= 1_000
    actions = play_trial(agent, BANDIT, 0, 90, 10)
    assert all(0 <= int(a) < 5 for a in actions) and len({int(a) for a in actions}) > 1
    with pytest.raises(ValueError, match="'tanh' or 'relu'"):
        pg.MLPPolicy(2, 2, False, (8,), activation="elu")


# ----------------------------------------------------------------------------------- learnability
@pytest.mark.slow
@pytest.mark.parametrize("disable_updates", [False])
def test_maml_learns_an_initialisation_that_adapts_on_point_nav(disable_updates: bool):
    """Meta-trained at the ci tier's settings, MAML's post-adaptation (evaluation) return on PointNav's
    test tasks clears a bar that the same agent without meta-updates does not (checked with
    ``disable_updates=True``: this test then fails)."""
    agent, _factory, _curve = train(POINT, budget=20_000, tier="ci", disable_updates=disable_updates)
    finals = []
    for i in range(20):
        play_trial(agent, POINT, i, 10, 0, seed=100 + 10 * i)
        env = gym.make(POINT)
        obs, _ = env.reset(seed=i, options={"task": metabench.tasks(POINT, "test")[i]})
        total = 0.0
        for _ in range(20):
            obs, r, *_ = env.step(agent.act(obs, explore=False))
            total += float(r)
        finals.append(total)
    assert np.mean(finals) > -11.0, np.mean(finals)
