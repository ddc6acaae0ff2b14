"""TESP (agents/tesp.py): the encoder, the inner step that reaches only the encoder, the meta-test
mapping of warm-up and inner-step batches onto the trial's exploration episodes, save/load, learnability."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from metabench.agents import tesp

from .helpers import assert_round_trip_acts_identically, play_trial, train_agent

POINT = "metabench/PointNav-v0"


def train(env_id: str = POINT, budget: int = 1_000, tier: str = "smoke", **overrides) -> tesp.TESPAgent:
    return train_agent(tesp, env_id, budget, tier, **overrides)


@pytest.fixture(scope="module")
def point_agent() -> tesp.TESPAgent:
    return train()


def test_embedding_is_the_mean_over_episodes_and_ignores_padding():
    enc = tesp.Encoder(3, 8, 2)
    enc.reset_parameters(torch.Generator().manual_seed(0), 0.5)
    params = {k: v.detach() for k, v in enc.named_parameters()}
    seq = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 5)
    mask[1, 3:] = 0
    both = tesp.embed(params, seq, mask)
    one = tesp.embed(params, seq[:1], mask[:1])
    other = tesp.embed(params, seq[1:, :3], mask[1:, :3])  # the padding after an episode's end is ignored
    assert torch.allclose(both, (one + other) / 2, atol=1e-6)
    assert torch.equal(tesp.embed(params, seq[:0], mask[:0]), torch.zeros(2))  # empty buffer: e = 0


def test_the_inner_gradient_reaches_only_the_encoder(point_agent):
    agent = point_agent
    phi = agent.encoder_params()
    theta = {k: v.clone() for k, v in agent.policy.state_dict().items()}
    buffer = tesp.EpisodeBuffer(4, 1, 20, agent.encoder.kernel.shape[0])
    g = torch.Generator().manual_seed(0)
    buffer.add(
        torch.randn(1, 3, 20, buffer.seq.shape[-1], generator=g).numpy(),
        np.ones((1, 3, 20), np.float32),
        np.zeros((1, 3)),
    )
    seq, smask = buffer.tensors("cpu")
    obs, act = torch.randn(40, 2, generator=g), torch.randn(40, 2, generator=g)
    adv, mask = torch.randn(40, generator=g), torch.ones(40)
    grads = agent._inner_grad(phi, seq[0], smask[0], obs, act, adv, mask)
    assert set(grads) == set(phi) and any(float(v.abs().max()) > 0 for v in grads.values())
    # the same loss through autograd: the policy's parameters get no gradient from the inner step
    policy_params = dict(agent.policy.named_parameters())
    agent.policy.zero_grad(set_to_none=True)
    phi_leaf = {k: v.clone().requires_grad_(True) for k, v in phi.items()}
    e = tesp.embed(phi_leaf, seq[0], smask[0])
    x = torch.cat([obs, e.expand(40, -1)], -1)
    loss = tesp.pg.pg_loss(tesp.pg.log_prob(agent.policy, agent.policy_params(), x, act), adv, mask)
    loss.backward()
    assert all(p.grad is None for p in policy_params.values())
    # and a meta-test trial changes the encoder, never the policy
    play_trial(agent, POINT, 0, 10, 3)
    assert not all(torch.equal(agent._phi[k], phi[k]) for k in phi)
    assert all(torch.equal(v, theta[k]) for k, v in agent.policy.state_dict().items())


def test_warm_up_and_inner_step_batches_map_onto_the_exploration_episodes(point_agent):
    agent = point_agent
    assert agent.episodes_per_step == 2  # PointNav's n_adapt 10 over warm-up + 3 inner-step batches
    seen = []

    def record(ep: int) -> None:
        seen.append((agent._phi["kernel"].clone(), agent._e.clone(), agent._buffer.returns.shape[1]))

    play_trial(agent, POINT, 3, 10, 3, after=record)
    kernels, embeddings, sizes = zip(*seen, strict=True)
    assert torch.equal(embeddings[0], torch.zeros_like(embeddings[0]))  # the warm-up batch acts with e = 0
    assert sizes == (0, 2, 2, 4, 4, 6, 6, 8, 9, 10, 10, 10, 10)  # batches of 2, then leftovers, then eval
    steps = [i for i in range(1, 13) if not torch.equal(kernels[i], kernels[i - 1])]
    assert steps == [3, 5, 7]  # encoder steps after the 2nd, 3rd and 4th batches only
    assert all(torch.equal(embeddings[i], embeddings[9]) for i in range(10, 13))  # evaluation changes nothing


def test_save_load_round_trip_acts_identically(point_agent, tmp_path: Path):
    assert_round_trip_acts_identically(point_agent, tmp_path / "a", ["agent.json", "model.pt"], POINT)


def test_discrete_actions_on_tabular_mdp():
    agent = train("metabench/TabularMDP-v0", budget=1_000, trajectories_per_task=0)
    assert agent.episodes_per_step == 1  # n_adapt 7 over 4 batches
    assert len(play_trial(agent, "metabench/TabularMDP-v0", 0, 7, 3)) == 10


@pytest.mark.slow
@pytest.mark.parametrize("disable_updates", [False])
def test_tesp_learns_to_adapt_on_point_nav(disable_updates: bool):
    """At the ci tier's settings on 30,000 steps, TESP's evaluation return after adapting on PointNav's
    test tasks clears a bar that the same agent without meta-updates does not (checked with
    ``disable_updates=True``: this test then fails)."""
    agent = train(POINT, budget=30_000, tier="ci", disable_updates=disable_updates)
    finals = [np.mean(play_trial(agent, POINT, i, 10, 3, seed=100 + 13 * i)[10:]) for i in range(20)]
    assert np.mean(finals) > -14.0, np.mean(finals)
