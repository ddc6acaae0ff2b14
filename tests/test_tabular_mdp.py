"""TabularMDP-v0: RL²'s random finite MDPs, and the exact oracle and random values."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest

import metabench
from metabench.envs.tabular_mdp import (
    N_ACTIONS,
    N_STATES,
    TabularMDPEnv,
    optimal_values,
    policy_values,
)
from metabench.tasks import TaskError

ID = "metabench/TabularMDP-v0"


def episode_return(env: gym.Env, task, actions, seed: int) -> tuple[float, list[int]]:
    obs, _ = env.reset(seed=seed, options={"task": task})
    states, total = [int(obs.argmax())], 0.0
    for t, a in enumerate(actions):
        obs, r, term, _, _ = env.step(a)
        total += r
        states.append(int(obs.argmax()))
        assert term == (t == 9)
    return total, states


def test_one_hot_state_zero_start_and_ten_steps() -> None:
    env = gym.make(ID)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (N_STATES,) and obs[0] == 1.0 and obs.sum() == 1.0
    for t in range(10):
        obs, _, term, trunc, _ = env.step(t % N_ACTIONS)
        assert obs.sum() == 1.0 and term == (t == 9)
    assert trunc  # the registered TimeLimit(10) agrees


def test_reward_means_act() -> None:
    """Same seed, same actions, reward means shifted by +3 everywhere: the noise and the state path
    are the same draws, so the return rises by exactly 3 per step."""
    env = gym.make(ID)
    task = metabench.tasks(ID, "test")[0]
    means = tuple(v + 3.0 for v in task.params["reward_means"])
    shifted = dataclasses.replace(task, params={**task.params, "reward_means": means})
    actions = [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    base, path = episode_return(env, task, actions, seed=4)
    more, path2 = episode_return(env, shifted, actions, seed=4)
    assert path == path2 and more == pytest.approx(base + 30.0)
    # Another MDP of the split: other transitions, other states visited, another return.
    other, path3 = episode_return(env, metabench.tasks(ID, "test")[1], actions, seed=4)
    assert path3 != path and other != base


def test_transitions_follow_the_task() -> None:
    """A deterministic cycle s -> s + 1 (mod S) under every action is what the env does."""
    p = np.zeros((N_STATES, N_ACTIONS, N_STATES))
    for s in range(N_STATES):
        p[s, :, (s + 1) % N_STATES] = 1.0
    task = TabularMDPEnv.family.make_task(
        ID, {"transitions": p.ravel(), "reward_means": np.arange(N_STATES * N_ACTIONS) / 10.0}
    )
    _, states = episode_return(gym.make(ID), task, [0] * 10, seed=0)
    assert states == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    # R(s, a) = (5 s + a) / 10 and the path is fixed, so the best is always action 4:
    # sum over s of (5 s + 4) / 10 = 26.5; the random policy gets (5 s + 2) / 10 on average: 24.5.
    assert TabularMDPEnv.optimal_return(task) == pytest.approx(26.5)
    assert TabularMDPEnv.random_return(task) == pytest.approx(24.5)


def test_value_iteration_on_a_hand_solved_mdp() -> None:
    """Two states. In s0, action 0 pays 1 and stays; action 1 pays 0 and moves to s1. In s1 every
    action pays 3 and stays. From s0: with one step left the best is 1; with three, move then 3 + 3."""
    p = np.zeros((2, 2, 2))
    p[0, 0, 0] = p[0, 1, 1] = p[1, 0, 1] = p[1, 1, 1] = 1.0
    r = np.array([[1.0, 0.0], [3.0, 3.0]])
    assert optimal_values(p, r, 1) == pytest.approx([1.0, 3.0])
    assert optimal_values(p, r, 2) == pytest.approx([3.0, 6.0])  # max(1 + 1, 0 + 3)
    assert optimal_values(p, r, 3) == pytest.approx([6.0, 9.0])  # max(1 + 3, 0 + 6)
    # Random policy: V1 = [1/2, 3]; V2(s0) = 1/2 (1 + 1/2) + 1/2 (0 + 3) = 9/4;
    # V3(s0) = 1/2 (1 + 9/4) + 1/2 (0 + 6) = 37/8.
    uniform = np.full((2, 2), 0.5)
    assert policy_values(p, r, uniform, 3) == pytest.approx([37 / 8, 9.0])
    # A stochastic transition: from s0 action 1 reaches s1 only half the time.
    p[0, 1] = [0.5, 0.5]
    assert optimal_values(p, r, 2)[0] == pytest.approx(max(1 + 1, 0 + 0.5 * 1 + 0.5 * 3))


def test_oracle_beats_random_and_matches_monte_carlo() -> None:
    test = metabench.tasks(ID, "test")
    for task in test[:20]:
        assert TabularMDPEnv.optimal_return(task) > TabularMDPEnv.random_return(task)
    # The env's uniformly random play averages to the exact random value (checks the env's sampling
    # of next states and rewards against the model the values are computed on).
    task = test[3]
    env = TabularMDPEnv()
    env.reset(seed=0, options={"task": task})
    rng = np.random.default_rng(0)
    returns = []
    for _ in range(3000):
        env.reset()
        returns.append(sum(env.step(int(rng.integers(N_ACTIONS)))[1] for _ in range(10)))
    err = np.std(returns) / np.sqrt(len(returns))
    assert abs(np.mean(returns) - TabularMDPEnv.random_return(task)) < 4 * err


def test_test_split_references_are_the_exact_values() -> None:
    test = metabench.tasks(ID, "test")
    refs = TabularMDPEnv.TEST_SPLIT_REFERENCES
    assert refs["random"] == pytest.approx(np.mean([TabularMDPEnv.random_return(t) for t in test]), abs=5e-6)
    assert refs["oracle"] == pytest.approx(np.mean([TabularMDPEnv.optimal_return(t) for t in test]), abs=5e-6)
    assert TabularMDPEnv.reference_returns(test[0]) == {
        "random": TabularMDPEnv.random_return(test[0]),
        "oracle": TabularMDPEnv.optimal_return(test[0]),
    }


def test_bad_tasks_name_the_problem() -> None:
    env = gym.make(ID).unwrapped
    task = metabench.tasks(ID, "train")[0]
    p = np.array(task.params["transitions"]).reshape(N_STATES, N_ACTIONS, N_STATES)
    p[2, 3] *= 0.5
    with pytest.raises(TaskError, match=r"\(state 2, action 3\) sums to 0\.5.*must sum to 1"):
        env.set_task(dataclasses.replace(task, params={**task.params, "transitions": tuple(p.ravel())}))
    with pytest.raises(TaskError, match=r"'reward_means'.*outside its valid range \[-10.0, 10.0\]"):
        env.set_task(dataclasses.replace(task, params={**task.params, "reward_means": (11.0,) * 50}))
    with pytest.raises(TaskError, match=r"'transitions'.*outside its valid range \[0.0, 1.0\]"):
        q = np.array(task.params["transitions"])
        q[:2] = [1.5, -0.5]
        env.set_task(dataclasses.replace(task, params={**task.params, "transitions": tuple(q)}))
    with pytest.raises(TaskError, match=r"shape \(49,\), expected \(50,\)"):
        env.set_task(dataclasses.replace(task, params={**task.params, "reward_means": (0.0,) * 49}))
    env.reset(seed=0)
    for bad in (5, -1, 0.5, [1, 2]):
        with pytest.raises(ValueError, match=r"one integer in 0\.\.4"):
            env.step(bad)
