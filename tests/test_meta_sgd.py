"""Meta-SGD (agents/meta_sgd.py): learned rates, the reduction to MAML's inner step, adaptation at
meta-test, save/load, learnability."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from metabench.agents import maml, meta_sgd
from metabench.agents.common.policy_gradient import Spaces

from .helpers import assert_round_trip_acts_identically, play_trial, train_agent

POINT = "metabench/PointNav-v0"


def train(
    env_id: str = POINT, budget: int = 1_000, tier: str = "smoke", **overrides
) -> meta_sgd.MetaSGDAgent:
    return train_agent(meta_sgd, env_id, budget, tier, **overrides)


@pytest.fixture(scope="module")
def point_agent() -> meta_sgd.MetaSGDAgent:
    return train()


def test_the_learned_rates_move_and_frozen_rates_do_not(point_agent):
    rates = torch.cat([v.reshape(-1) for v in point_agent.rates.values])
    assert not torch.allclose(rates, torch.full_like(rates, point_agent.config.inner_lr))
    frozen = train(learn_inner_lr=False)
    rates = torch.cat([v.reshape(-1) for v in frozen.rates.values])
    assert torch.equal(rates, torch.full_like(rates, frozen.config.inner_lr))
    assert not all(
        torch.equal(a, b)
        for a, b in zip(frozen.policy.parameters(), point_agent.policy.parameters(), strict=True)
    )


def test_with_rates_frozen_at_init_the_inner_step_is_mamls():
    config = meta_sgd.Config(hidden_sizes=(16, 16), inner_lr=0.1, inner_grad_clip=None, learn_inner_lr=False)
    ours = meta_sgd.MetaSGDAgent(config)
    env = gym.make(POINT)
    ours._build(Spaces(env.observation_space, env.action_space))
    ours.policy.reset_parameters(torch.Generator().manual_seed(0))
    theirs = maml.MAMLAgent(maml.Config(hidden_sizes=(16, 16), inner_lr=0.1))
    theirs.policy = maml.make_policy(ours.spaces, theirs.config)
    theirs.policy.load_state_dict(ours.policy.state_dict())
    g = torch.Generator().manual_seed(1)
    obs, act = torch.randn(40, 2, generator=g), torch.randn(40, 2, generator=g)
    adv, mask = torch.randn(40, generator=g), (torch.rand(40, generator=g) > 0.2).float()
    theta = ours.meta_params()
    new, _ = ours.inner_step(theta, ours.learning_rates(), obs, act, adv, mask)
    reference = theirs._adapt(theta, obs, act, adv, mask)
    assert all(torch.allclose(new[k], reference[k], atol=1e-7) for k in theta)
    assert not all(torch.allclose(new[k], theta[k]) for k in theta)


def test_meta_test_takes_three_inner_steps_then_evaluates_without_adapting(point_agent):
    agent = point_agent
    assert agent.episodes_per_step == 3  # PointNav's n_adapt 10 over 3 inner steps
    snapshots = []

    def record(ep: int) -> None:
        snapshots.append(agent._params["net.0.weight"].clone())

    play_trial(agent, POINT, 0, 10, 3, after=record)
    changed = [i for i in range(1, 13) if not torch.equal(snapshots[i], snapshots[i - 1])]
    assert changed == [2, 5, 8] and agent._steps_taken == 3  # after episodes 3, 6, 9; not in evaluation
    agent.begin_trial()
    assert torch.equal(agent._params["net.0.weight"], agent.policy.net[0].weight)


def test_save_load_round_trip_acts_identically(point_agent, tmp_path: Path):
    assert_round_trip_acts_identically(point_agent, tmp_path / "a", ["agent.json", "model.pt"], POINT)


def test_discrete_actions_on_bandit():
    agent = train("metabench/Bandit-v0", budget=1_000, trajectories_per_task=0)
    assert agent.episodes_per_step == 30
    returns = play_trial(agent, "metabench/Bandit-v0", 0, 90, 10)
    assert len(returns) == 100 and set(returns) <= {0.0, 1.0}


@pytest.mark.slow
@pytest.mark.parametrize("disable_updates", [False])
def test_meta_sgd_learns_to_adapt_on_point_nav(disable_updates: bool):
    """At the ci tier's settings on 30,000 steps, Meta-SGD's evaluation return after adapting on PointNav's
    test tasks clears a bar that the same agent without meta-updates does not (checked with
    ``disable_updates=True``: this test then fails)."""
    agent = train(POINT, budget=30_000, tier="ci", disable_updates=disable_updates)
    finals = [np.mean(play_trial(agent, POINT, i, 10, 3, seed=100 + 13 * i)[10:]) for i in range(20)]
    assert np.mean(finals) > -13.0, np.mean(finals)
