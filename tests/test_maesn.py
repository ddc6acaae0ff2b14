"""MAESN (agents/maesn.py): the latent inner step, meta-test adapting only the latent distribution,
save/load, learnability."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from metabench.agents import maesn

from .helpers import assert_round_trip_acts_identically, budgeted_env_factory, play_trial, train_agent

POINT = "metabench/PointNav-v0"


def train(env_id: str = POINT, budget: int = 1_000, tier: str = "smoke", **overrides) -> maesn.MAESNAgent:
    return train_agent(maesn, env_id, budget, tier, **overrides)


@pytest.fixture(scope="module")
def point_agent() -> maesn.MAESNAgent:
    return train()


def test_the_latent_step_is_reinforce_on_the_latent_distribution():
    mean, log_std = torch.tensor([0.5, -1.0]), torch.tensor([0.0, math.log(2.0)])
    z, adv = torch.tensor([[1.0, 0.0], [0.0, -2.0]]), torch.tensor([1.0, -1.0])
    new_mean, new_log_std = maesn.latent_step(
        mean, log_std, torch.full((2,), 0.1), torch.full((2,), 0.2), z, adv
    )
    # d/dμ of mean_j log N(z_j; μ, σ) Â_j is mean_j (z_j - μ)/σ² Â_j; the step ascends it
    expected_mean = mean + 0.1 * ((z - mean) / log_std.exp() ** 2 * adv[:, None]).mean(0)
    expected_log_std = log_std + 0.2 * ((((z - mean) / log_std.exp()) ** 2 - 1) * adv[:, None]).mean(0)
    assert torch.allclose(new_mean, expected_mean) and torch.allclose(new_log_std, expected_log_std)


def test_meta_test_adapts_only_the_latent_distribution(point_agent):
    agent = point_agent
    before = {k: v.clone() for k, v in agent.policy.state_dict().items()}
    latents = {k: v.clone() for k, v in agent.latents.state_dict().items()}
    assert agent.episodes_per_step == 10  # PointNav's n_adapt, one latent step
    agent.begin_trial()
    assert torch.equal(agent._mean, torch.zeros(2)) and torch.equal(
        agent._log_std, torch.zeros(2)
    )  # the prior
    zs, dists = [], []

    def record(ep: int) -> None:  # after each episode (end_episode leaves its z as it was)
        zs.append(agent._z.clone())
        dists.append((agent._mean.clone(), agent._log_std.clone()))

    play_trial(agent, POINT, 0, 10, 3, after=record)
    assert len({tuple(z.tolist()) for z in zs[:10]}) == 10  # one z per exploration episode
    assert all(torch.equal(dists[i][0], torch.zeros(2)) for i in range(9))
    assert not torch.equal(dists[9][0], torch.zeros(2))  # the latent step after the 10th episode
    assert all(torch.equal(zs[i], dists[9][0]) for i in range(10, 13))  # evaluation: z = μ, no more steps
    assert all(torch.equal(dists[i][0], dists[9][0]) for i in range(10, 13))
    assert all(torch.equal(v, before[k]) for k, v in agent.policy.state_dict().items())
    assert all(torch.equal(v, latents[k]) for k, v in agent.latents.state_dict().items())


def test_meta_training_moves_policy_latents_and_step_sizes(point_agent):
    fresh = maesn.MAESNAgent(point_agent.config)
    fresh.setup(budgeted_env_factory(POINT, 100), seed=0, n_tasks=80)
    for name in ("policy", "latents"):
        a, b = getattr(fresh, name).state_dict(), getattr(point_agent, name).state_dict()
        assert any(not torch.equal(a[k], b[k]) for k in a), name
    assert not torch.equal(point_agent.latents.step_mean, fresh.latents.step_mean)


def test_save_load_round_trip_acts_identically(point_agent, tmp_path: Path):
    assert_round_trip_acts_identically(point_agent, tmp_path / "a", ["agent.json", "model.pt"], POINT)


def test_discrete_actions_on_bandit():
    agent = train("metabench/Bandit-v0", budget=1_000, trajectories_per_task=0)
    returns = play_trial(agent, "metabench/Bandit-v0", 0, 90, 10)
    assert len(returns) == 100 and set(returns) <= {0.0, 1.0}


@pytest.mark.slow
@pytest.mark.parametrize("disable_updates", [False])
def test_maesn_learns_to_adapt_on_point_nav(disable_updates: bool):
    """At the ci tier's settings and budget (100,000 steps), MAESN's evaluation return after adapting on
    PointNav's test tasks clears a bar that the same agent without meta-updates does not (checked with
    ``disable_updates=True``: this test then fails)."""
    agent = train(POINT, budget=100_000, tier="ci", disable_updates=disable_updates)
    finals = [np.mean(play_trial(agent, POINT, i, 10, 3, seed=100 + 13 * i)[10:]) for i in range(20)]
    assert np.mean(finals) > -15.0, np.mean(finals)
