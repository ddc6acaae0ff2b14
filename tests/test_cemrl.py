"""CEMRL (agents/cemrl.py): the mixture encoder's maths, sliding windows, no RL gradient into the
encoder, the meta-test protocol, budget, save/load, learnability and following a change."""

from __future__ import annotations

import dataclasses
import os
import time

import gymnasium as gym
import numpy as np
import pytest
import torch

import metabench
from metabench.agents import cemrl
from metabench.protocol import Budget, Transition, build_config
from metabench.tasks import env_class

from .helpers import RecordingLogger, budgeted_env_factory

ENV_ID = "metabench/PointNav-v0"
NS_ENV_ID = "metabench/PointNavNonStationary-v0"


def smoke_config(**overrides) -> cemrl.Config:
    return dataclasses.replace(build_config(cemrl, "smoke"), **overrides)


def train(config: cemrl.Config, budget: int, env_id: str = ENV_ID, seed: int = 0):
    agent = cemrl.make_agent(config)
    factory, log = budgeted_env_factory(env_id, budget), RecordingLogger()
    agent.meta_train(factory, metabench.tasks(env_id, "train"), Budget(budget), seed=seed, log=log)
    factory.counter.close()  # raises if the agent stepped past the budget and swallowed the error
    return agent, factory.counter, log


@pytest.fixture(scope="module")
def smoke_run():
    """(agent, step counter, log) of one smoke-tier meta-training on 2,000 steps."""
    return train(smoke_config(), 2_000)


@pytest.fixture(scope="module")
def smoke_agent(smoke_run) -> cemrl.CEMRLAgent:
    return smoke_run[0]


def run_trial(agent, task, n_episodes: int = 2, seed: int = 0, env_id: str = ENV_ID, n_adapt: int = 1):
    """The harness's trial loop: per-episode returns, every action, and z before every action."""
    env = gym.make(env_id)
    returns, actions, zs, infos = [], [], [], []
    agent.begin_trial()
    for episode in range(n_episodes):
        obs, _ = env.reset(seed=seed + episode, options={"task": task})
        done, ret = False, 0.0
        while not done:
            action = agent.act(obs, explore=episode < n_adapt)
            actions.append(np.array(action))
            zs.append(agent.z[0].clone())
            next_obs, reward, terminated, truncated, info = env.step(action)
            agent.observe(Transition(obs, action, float(reward), next_obs, terminated, truncated, {}))
            infos.append(info)
            ret += float(reward)
            obs, done = next_obs, terminated or truncated
        agent.end_episode()
        returns.append(ret)
    return returns, actions, torch.stack(zs), infos


# ---------------------------------------------------------------------------------- the maths
def test_window_factors_multiply_with_std_squared_as_variance() -> None:
    """Each transition's softplus output is a standard deviation: T equal factors of std s give a
    posterior variance s^2 / T (the original's code would give s / T)."""
    gen = torch.Generator().manual_seed(0)
    enc = cemrl.MixtureEncoder(5, 16, 3, 2, gen)
    row = torch.randn(1, 1, 5, generator=gen)
    _, mu1, var1 = enc(row)
    _, mu4, var4 = enc(row.expand(1, 4, 5))
    out = enc.gauss_heads(enc.shared(row))[0, 0].view(2, 6)
    std = torch.nn.functional.softplus(out[:, 3:])
    torch.testing.assert_close(var1[0], std.pow(2))
    torch.testing.assert_close(var4[0], std.pow(2) / 4)
    torch.testing.assert_close(mu4, mu1)
    # class probabilities are averaged over the window; z is the most likely class's mean
    y, _, _ = enc(torch.randn(3, 4, 5, generator=gen))
    torch.testing.assert_close(y.sum(-1), torch.ones(3))
    z = enc.infer(torch.randn(3, 4, 5, generator=gen))
    assert z.shape == (3, 3)


def test_windows_are_the_transitions_before_zero_padded_at_the_episode_start() -> None:
    buf = cemrl.WindowBuffer(obs_dim=1, act_dim=1, latent=1, capacity=10)
    for episode_start, n in ((0, 3), (3, 4)):
        for t in range(n):
            i = episode_start + t
            buf.add([i], [0.5], float(i), [i + 1], False, episode_start, False)
    w = buf.windows(np.array([2, 3, 6]), T=3)  # identity normalisation: raw rows
    np.testing.assert_array_equal(w[0, :, 0], [0, 0, 1])  # transitions 0 and 1 before 2, one pad
    np.testing.assert_array_equal(w[1], np.zeros((3, 4)))  # first of its episode: all padding
    np.testing.assert_array_equal(w[2, :, 0], [3, 4, 5])  # not reaching into the first episode
    np.testing.assert_array_equal(w[2, 2], [5, 0.5, 5, 6])  # (s, a, r, s')


def test_meta_test_window_slides_and_z_is_recomputed_every_step(smoke_agent) -> None:
    agent, T = smoke_agent, smoke_agent.config.time_steps
    _, _, zs, _ = run_trial(agent, metabench.tasks(ENV_ID, "test")[0], n_episodes=1)
    assert len(agent.window) == 0  # end_episode emptied it (CEMRL's rollouts start from zeros)
    assert not torch.allclose(zs[1], zs[0]) and not torch.allclose(zs[T + 5], zs[T + 4])
    agent.begin_trial()
    for i in range(T + 3):
        agent.observe(Transition(np.zeros(2), np.full(2, 0.1), -float(i), np.full(2, 0.1), False, False, {}))
    assert len(agent.window) == T  # the last T transitions only


# ------------------------------------------------------------------------------ meta-training
def test_smoke_meta_train_stays_within_budget_and_logs(smoke_run) -> None:
    # the second budget is smaller than the initial collection over 80 tasks
    for budget, (agent, counter, log) in ((2_000, smoke_run), (500, train(smoke_config(), 500))):
        assert 0 < counter.steps <= budget
        assert agent.stats["env_steps"] == counter.steps
        assert log.rows and all(0 < steps <= budget for steps, _ in log.rows)


def test_encoder_gets_no_gradient_from_the_sac_losses(smoke_agent) -> None:
    """SAC learns on [s, z] with z a number from the buffer: its losses leave the encoder untouched."""
    agent = smoke_agent
    before = {k: v.clone() for k, v in agent.encoder.state_dict().items()}
    for p in agent.encoder.parameters():
        p.grad = None
    buf = cemrl.WindowBuffer(agent.obs_dim, agent.act_dim, agent.config.latent_size, 64)
    rng = np.random.default_rng(0)
    for i in range(64):
        buf.add(rng.normal(size=2), rng.uniform(-1, 1, 2), -1.0, rng.normal(size=2), False, i - i % 8, False)
    buf.z[:64] = rng.normal(size=(64, agent.config.latent_size))
    agent.sac.replay_buffer = cemrl.LatentReplay(buf, rng, agent.device)
    actor_before = [p.clone() for p in agent.sac.actor.parameters()]
    agent.sac.train(gradient_steps=3, batch_size=16)
    agent.sac.policy.set_training_mode(False)
    assert any(not torch.equal(a, b) for a, b in zip(actor_before, agent.sac.actor.parameters(), strict=True))
    assert all(p.grad is None for p in agent.encoder.parameters())
    for k, v in agent.encoder.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_discrete_actions_are_refused_with_one_line() -> None:
    agent = cemrl.make_agent(smoke_config())
    factory = budgeted_env_factory("metabench/Bandit-v0", 100)
    with pytest.raises(TypeError, match="Box action space"):
        agent.meta_train(
            factory,
            metabench.tasks("metabench/Bandit-v0", "train"),
            Budget(100),
            seed=0,
            log=RecordingLogger(),
        )


def test_bad_config_values_are_named() -> None:
    with pytest.raises(ValueError, match="explore_actions"):
        cemrl.make_agent(smoke_config(explore_actions="greedy"))
    with pytest.raises(ValueError, match="time_steps"):
        cemrl.make_agent(smoke_config(time_steps=0))


def test_save_load_round_trip_acts_identically(tmp_path, smoke_agent) -> None:
    task = metabench.tasks(ENV_ID, "test")[3]
    smoke_agent.config.explore_actions = "sample"  # the generator's state must round-trip too
    try:
        smoke_agent.begin_trial()
        smoke_agent.save(tmp_path / "cemrl")
        loaded = cemrl.CEMRLAgent.load(tmp_path / "cemrl")
        assert loaded.config == smoke_agent.config
        ret_a, act_a, z_a, _ = run_trial(smoke_agent, task)
        ret_b, act_b, z_b, _ = run_trial(loaded, task)
    finally:
        smoke_agent.config.explore_actions = "mean"
    np.testing.assert_array_equal(np.array(act_a), np.array(act_b))
    torch.testing.assert_close(z_a, z_b)
    assert ret_a == ret_b


# ---------------------------------------------------------------------------------- learnability
def best_goal_blind_return(goals: np.ndarray, steps: int = 20) -> float:
    """The best mean return over ``goals`` of a policy that ignores the goal: head for one fixed point
    and stay; grid search over the point."""
    xs, ys = np.meshgrid(np.linspace(-0.6, 0.6, 25), np.linspace(0.0, 1.2, 25))
    targets = np.stack([xs.ravel(), ys.ravel()], -1)
    pos, total = np.zeros_like(targets), np.zeros((len(targets), len(goals)))
    for _ in range(steps):
        pos = pos + np.clip(targets - pos, -0.1, 0.1)
        total -= np.linalg.norm(pos[:, None] - goals[None], axis=-1)
    return float(total.mean(1).max())


def updates_enabled() -> bool:
    return os.environ.get("CEMRL_NO_UPDATES", "0") != "1"


@pytest.mark.slow
@pytest.mark.xfail(
    run=False,
    reason="not yet shown at the full ci budget: a partial run (15.2k of 100k env steps, seed 0) gave "
    "-13.7 against the goal-blind -14.6, too close to count as learning; its full run is hours of "
    "CPU on a loaded machine and was not made",
)
def test_cemrl_learns_on_pointnav() -> None:
    """At the ci tier on PointNav's ci budget CEMRL's evaluation episodes beat the best policy that
    ignores the goal (measured, seed 0: -13.7 against -14.6; CEMRL's context is the current episode's,
    and 20-step episodes leave it few informed steps). ``CEMRL_NO_UPDATES=1`` runs it with
    ``updates=False``: it must then fail."""
    updates = updates_enabled()
    config = dataclasses.replace(build_config(cemrl, "ci", env_id=ENV_ID), updates=updates)
    t0 = time.process_time()
    agent = train(config, env_class(ENV_ID).budgets["ci"])[0]
    tasks = metabench.tasks(ENV_ID, "test")
    returns = np.array([run_trial(agent, t, n_episodes=2)[0] for t in tasks])
    blind = best_goal_blind_return(np.array([t.params["goal"] for t in tasks]))
    final, cpu = returns[:, -1].mean(), time.process_time() - t0
    print(f"CEMRL ci (updates={updates}): final {final:.2f}, goal-blind {blind:.2f}, {cpu:.0f} s CPU")
    assert final > blind + 0.5, "CEMRL does not beat the best goal-blind policy: it did not learn"


@pytest.mark.slow
@pytest.mark.xfail(
    run=False,
    reason="the encoder follows the jumps (|dz| 1.52 across against 0.19 within, seed 0, 38k of 200k "
    "env steps) but the return beat the goal-blind policy by 1.1 only, and the full 200k-step run was "
    "not made; CEMRL's ci settings need more SAC steps",
)
def test_cemrl_follows_a_goal_that_jumps_inside_an_episode() -> None:
    """On PointNavNonStationary at the ci tier: z moves when the goal jumps (the windows just before
    and T steps after a jump lie further apart than two windows T steps apart inside one goal's
    segment), and the return beats the best goal-blind policy over the episode. Measured (seed 0):
    |dz| 1.52 across jumps against 0.19 within a segment; return -68.6 against -69.7 goal-blind (the
    encoder follows the jumps; the ci tier's 9k SAC steps barely use it). ``CEMRL_NO_UPDATES=1``
    must make it fail."""
    if NS_ENV_ID not in gym.registry:
        pytest.skip(f"{NS_ENV_ID} is not registered")
    updates = updates_enabled()
    config = dataclasses.replace(build_config(cemrl, "ci", env_id=NS_ENV_ID), updates=updates)
    agent = train(config, env_class(NS_ENV_ID).budgets["ci"], env_id=NS_ENV_ID)[0]
    T = agent.config.time_steps
    across, within, returns = [], [], []
    for i, task in enumerate(metabench.tasks(NS_ENV_ID, "test")):
        rets, _, zs, infos = run_trial(agent, task, n_episodes=1, seed=100 + i, env_id=NS_ENV_ID)
        returns.append(rets[0])
        changed = [t for t, info in enumerate(infos) if info["task_changed"]]
        for t in changed:  # z before step t+1 comes from steps up to t: the jump acts from t+1 on
            if t - T >= 0 and t + 1 + T < len(zs) and not any(t < u <= t + T for u in changed):
                across.append(float((zs[t + 1 + T] - zs[t + 1]).norm()))
                if not any(t - 2 * T < u < t for u in changed) and t + 1 - T >= 0:
                    within.append(float((zs[t + 1] - zs[t + 1 - T]).norm()))
    assert across and within
    mean_across, mean_within = np.mean(across), np.mean(within)
    # the acting goals are the test split's, about uniformly: the blind bound over them, 100 steps
    goals = np.array([t.params["goal"] for t in metabench.tasks(NS_ENV_ID, "test")])
    blind, mean_return = best_goal_blind_return(goals, steps=100), float(np.mean(returns))
    print(
        f"CEMRL non-stationary (updates={updates}): |dz| across jumps {mean_across:.3f}, within "
        f"{mean_within:.3f}; return {mean_return:.2f}, goal-blind {blind:.2f}"
    )
    assert mean_return > blind + 0.5, "CEMRL does not beat the best goal-blind policy"
    assert mean_across > 2 * mean_within, "z does not follow the goal's jumps"
