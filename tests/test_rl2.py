"""RL² (agents/rl2.py): the trial wrapper, memory across episodes, budget, save/load, learnability."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy

import metabench
from metabench.agents import rl2
from metabench.harness import Budget, EnvFactory
from metabench.protocol import Transition, build_config

from .helpers import RecordingLogger, budgeted_env_factory

POINT = "metabench/PointNav-v0"
BANDIT = "metabench/Bandit-v0"


def train(
    env_id: str = POINT, budget: int = 1_100, seed: int = 0, tier: str = "smoke", **overrides
) -> tuple[rl2.RL2Agent, EnvFactory]:
    config = dataclasses.replace(build_config(rl2, tier), **overrides)
    agent = rl2.make_agent(config)
    factory = budgeted_env_factory(env_id, budget)
    agent.meta_train(
        factory, metabench.tasks(env_id, "train"), Budget(budget), seed=seed, log=RecordingLogger()
    )
    return agent, factory


@pytest.fixture(scope="module")
def point_agent() -> tuple[rl2.RL2Agent, EnvFactory]:
    return train()


def play_trial(agent, env_id: str, task_index: int, episodes: int, explore: bool, seed: int = 0) -> list:
    """Run ``episodes`` episodes of one test task as the harness does; return the actions."""
    env = gym.make(env_id)
    task = metabench.tasks(env_id, "test")[task_index]
    actions = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep, options={"task": task})
        done = False
        while not done:
            action = agent.act(obs, explore=explore)
            actions.append(np.asarray(action).copy())
            nxt, reward, term, trunc, info = env.step(action)
            agent.observe(Transition(obs, action, float(reward), nxt, term, trunc, info))
            obs, done = nxt, term or trunc
        agent.end_episode()
    return actions


# ------------------------------------------------------------------------------------- the wrapper
def test_trial_env_is_one_gym_episode_of_n_inner_episodes_on_one_task():
    inner = gym.make(POINT)
    tasks = metabench.tasks(POINT, "train")
    env = rl2.TrialEnv(inner, tasks, episodes_per_trial=3)
    obs, _ = env.reset(seed=1)
    assert env.observation_space.shape == (2 + 2 + 2,) and env.action_space == spaces.Box(-1, 1, (2,))
    assert np.array_equal(obs[2:], np.zeros(4))  # no previous action, reward or done at a trial start
    task = inner.unwrapped.task
    flags, steps, terminated = [], 0, False
    while not terminated:
        obs, reward, terminated, truncated, _info = env.step(np.array([1.0, -1.0], np.float32))
        steps += 1
        assert not truncated and inner.unwrapped.task == task
        assert np.allclose(obs[2:4], [1.0, -1.0]) and obs[4] == np.float32(reward)
        flags.append(obs[5])
    assert steps == 60  # 3 episodes of 20 steps, inside one Gym episode
    assert [i for i, f in enumerate(flags) if f == 1.0] == [19, 39, 59]
    # +1 in [-1, 1] is the top of the env's box: the wrapper rescales to the env's bounds
    assert np.allclose(inner.unwrapped._pos, [2.0, -2.0], atol=1e-5)  # 20 steps of (0.1, -0.1)
    # the next trial draws its task with the wrapper's seeded generator
    drawn = []
    for seed in (5, 5, 6):
        env.reset(seed=seed)
        drawn.append(inner.unwrapped.task)
    assert drawn[0] == drawn[1]


def test_encoder_one_hot_for_discrete_spaces_and_clear_error_otherwise():
    enc = rl2.Encoder(spaces.Discrete(3), spaces.Discrete(4))
    x = enc.encode(2, enc.encode_action(1), 0.5, True)
    assert np.array_equal(x, [0, 0, 1, 0, 1, 0, 0, 0.5, 1])
    assert enc.to_env_action(np.int64(3)) == 3
    with pytest.raises(TypeError, match="Box and Discrete"):
        rl2.Encoder(spaces.MultiBinary(3), spaces.Discrete(2))


def test_fast_sequence_path_matches_sb3_loop():
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(5, 8)
    n_seq, length = 3, 7
    features = torch.randn(n_seq * length, 5)
    states = (torch.randn(1, n_seq, 8), torch.randn(1, n_seq, 8))
    for starts in (torch.zeros(n_seq, length), torch.zeros(n_seq, length)):
        starts[0, 0] = starts[2, 0] = 1.0
        ours = rl2.TrialLstmPolicy._process_sequence(features, states, starts.flatten(), lstm)
        sb3 = RecurrentActorCriticPolicy._process_sequence(features, states, starts.flatten(), lstm)
        assert torch.allclose(ours[0], sb3[0]) and torch.allclose(ours[1][0], sb3[1][0])
    starts[1, 3] = 1.0  # a start inside a sequence: falls back to SB3's loop
    ours = rl2.TrialLstmPolicy._process_sequence(features, states, starts.flatten(), lstm)
    sb3 = RecurrentActorCriticPolicy._process_sequence(features, states, starts.flatten(), lstm)
    assert torch.allclose(ours[0], sb3[0])


# --------------------------------------------------------------------------------------- the agent
def test_smoke_meta_train_stays_within_an_odd_budget(point_agent):
    agent, factory = point_agent
    # 2 envs x one 260-step trial per rollout: two rollouts (1,040 steps) fit 1,100, a third would not
    assert factory.counter.steps == 1_040 <= 1_100
    assert agent.episodes_per_trial == 13  # PointNav's n_adapt + n_eval
    assert agent.policy.lstm_actor.hidden_size == 16  # the smoke tier's LSTM


def test_begin_trial_resets_the_memory(point_agent):
    agent, _ = point_agent
    agent.begin_trial()
    first = play_trial(agent, POINT, 0, 2, explore=False)
    second = play_trial(agent, POINT, 0, 2, explore=False)  # memory carried over: acts differently
    agent.begin_trial()
    again = play_trial(agent, POINT, 0, 2, explore=False)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    # and the recurrent state does carry across episodes inside a trial (not reset by end_episode)
    assert not np.array_equal(first[0], first[20])


def test_save_load_round_trip_acts_identically(point_agent, tmp_path: Path):
    agent, _ = point_agent
    agent.begin_trial()
    agent.save(tmp_path / "rl2")
    loaded = rl2.RL2Agent.load(tmp_path / "rl2")
    for explore in (True, False):
        agent.begin_trial()
        loaded.begin_trial()
        a = play_trial(agent, POINT, 3, 2, explore=explore)
        b = play_trial(loaded, POINT, 3, 2, explore=explore)
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    # a loaded agent saves and loads again
    loaded.save(tmp_path / "again")
    assert rl2.RL2Agent.load(tmp_path / "again").episodes_per_trial == agent.episodes_per_trial
    assert all(p.endswith(("agent.json", "model.zip")) for p in map(str, (tmp_path / "rl2").iterdir()))


def test_discrete_actions_on_bandit():
    agent, factory = train(BANDIT, budget=600, n_envs=2)
    assert 0 < factory.counter.steps <= 600
    agent.begin_trial()
    actions = play_trial(agent, BANDIT, 0, 30, explore=True)
    assert all(0 <= int(a) < 5 for a in actions) and len({int(a) for a in actions}) > 1


@pytest.mark.parametrize("env_id", [POINT, BANDIT])
def test_meta_test_inputs_equal_training_inputs_on_the_same_trajectory(point_agent, env_id: str):
    """The policy reads at meta-test exactly what it read in training: the harness's trial (act,
    observe, end_episode after each episode) and a TrialEnv trial over the same task, reset seeds and
    actions feed the same (obs, previous action, previous reward, done) vectors, step for step."""
    agent = point_agent[0] if env_id == POINT else train(BANDIT, budget=600, n_envs=2)[0]
    inputs, policy_actions = [], []
    encode, to_env = agent.encoder.encode, agent.encoder.to_env_action

    def spy_encode(*args):
        x = encode(*args)
        inputs.append(x.copy())
        return x

    def spy_to_env(action):
        policy_actions.append(np.asarray(action).copy())
        return to_env(action)

    agent.encoder.encode, agent.encoder.to_env_action = spy_encode, spy_to_env
    task = metabench.tasks(env_id, "train")[3]
    episodes, seed = 4, 11
    try:
        env = gym.make(env_id)
        agent.begin_trial()
        for episode in range(episodes):  # TrialEnv seeds only the first reset of a trial
            obs, _ = env.reset(seed=seed if episode == 0 else None, options={"task": task})
            done = False
            while not done:
                action = agent.act(obs, explore=True)
                nxt, reward, term, trunc, info = env.step(action)
                agent.observe(Transition(obs, action, float(reward), nxt, term, trunc, info))
                obs, done = nxt, term or trunc
            agent.end_episode()
    finally:
        agent.encoder.encode, agent.encoder.to_env_action = encode, to_env

    trial = rl2.TrialEnv(gym.make(env_id), [task], episodes_per_trial=episodes)
    trained_on = [trial.reset(seed=seed)[0]]
    for action in policy_actions:
        obs, _, terminated, _, _ = trial.step(action)
        trained_on.append(obs)
    assert terminated and len(trained_on) == len(inputs) + 1  # the last observation ends the trial
    assert any(x[-1] == 1.0 for x in inputs[1:])  # the done flag was exercised
    for step, (seen, trained) in enumerate(zip(inputs, trained_on, strict=False)):
        assert np.array_equal(seen, trained), (
            f"step {step}: meta-test input {seen} != training input {trained}"
        )


# ----------------------------------------------------------------------------------- learnability
@pytest.mark.slow
@pytest.mark.parametrize("disable_updates", [False])
def test_rl2_learns_to_adapt_on_point_nav(disable_updates: bool):
    """With the ci tier's settings and 100,000 env steps of meta-training, RL² on PointNav reaches the
    goal region after adapting: its evaluation return beats -11 (the best non-adaptive policy gets
    -14.6 on the test split, the untrained one about -18) and its last adaptation episode beats its
    first by more than 1.5. With ``disable_updates=True`` this test fails (checked)."""
    agent, factory = train(POINT, budget=100_000, tier="ci", disable_updates=disable_updates)
    assert factory.counter.steps <= 100_000
    env = gym.make(POINT)
    returns = np.zeros((10, 13))
    for i, task in enumerate(metabench.tasks(POINT, "test")[:10]):
        agent.begin_trial()
        for ep in range(13):
            obs, _ = env.reset(seed=ep, options={"task": task})
            done = False
            while not done:
                action = agent.act(obs, explore=ep < 10)
                nxt, r, term, trunc, info = env.step(action)
                agent.observe(Transition(obs, action, float(r), nxt, term, trunc, info))
                obs, done = nxt, term or trunc
                returns[i, ep] += float(r)
            agent.end_episode()
    first, last_adapt, final = returns[:, 0].mean(), returns[:, 9].mean(), returns[:, 10:].mean()
    assert final > -11.0 and last_adapt > first + 1.5, (first, last_adapt, final)
