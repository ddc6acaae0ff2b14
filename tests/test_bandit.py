"""Bandit-v0: RL²'s Bernoulli bandits, one pull per episode, and their reference values."""

from __future__ import annotations

import math
import pickle

import gymnasium as gym
import numpy as np
import pytest

import metabench
from metabench.envs.bandit import (
    BanditEnv,
    bayes_optimal_return,
    gittins_index_table,
    gittins_returns,
)
from metabench.tasks import TaskError

ID = "metabench/Bandit-v0"


def make_task(*means: float):
    return BanditEnv.family.make_task(ID, {"means": means})


def pulls(env: gym.Env, arm: int, n: int, seed: int) -> list[float]:
    """Rewards of ``n`` one-pull episodes of ``arm``, the first reset seeded."""
    env.reset(seed=seed)
    out = []
    for i in range(n):
        if i:
            env.reset()
        obs, r, term, _, _ = env.step(arm)
        assert term and obs.shape == (1,) and obs[0] == 0.0
        out.append(r)
    return out


def test_an_episode_is_one_pull_and_the_means_act() -> None:
    env = gym.make(ID)
    env.unwrapped.set_task(make_task(0.1, 0.9, 0.5, 0.0, 1.0))
    rewards = pulls(env, 1, 400, seed=0)
    assert set(rewards) <= {0.0, 1.0}
    assert np.mean(rewards) == pytest.approx(0.9, abs=0.05)
    assert pulls(env, 3, 50, seed=0) == [0.0] * 50 and pulls(env, 4, 50, seed=0) == [1.0] * 50
    # Different means, same seed and actions: different returns.
    env.unwrapped.set_task(make_task(0.1, 0.2, 0.5, 0.0, 1.0))
    assert np.mean(pulls(env, 1, 400, seed=0)) == pytest.approx(0.2, abs=0.05)
    # The registered TimeLimit(1) agrees with the env: after one step the episode is over.
    fresh = gym.make(ID)
    fresh.reset(seed=0)
    _, _, term, trunc, _ = fresh.step(0)
    assert term and trunc


def test_bad_input_is_rejected_naming_the_valid_choices() -> None:
    env = gym.make(ID).unwrapped
    with pytest.raises(TaskError, match=r"outside its valid range \[0.0, 1.0\]"):
        make_task(0.1, 0.2, 1.5, 0.3, 0.4)
    with pytest.raises(TaskError, match=r"shape \(3,\), expected \(5,\)"):
        make_task(0.1, 0.2, 0.3)
    env.reset(seed=0)
    for bad in (5, -1, 1.0, np.array([0, 1])):
        with pytest.raises(ValueError, match=r"arm index in 0\.\.4"):
            env.step(bad)
    with pytest.raises(ValueError, match="k >= 2"):
        BanditEnv(k=1)


def test_other_k_draws_fresh_bandits_and_pickles() -> None:
    env = BanditEnv(k=3)
    assert env.action_space.n == 3 and env.family.context_size == 3
    env.reset(seed=1)
    first = env.task
    assert first.split == "custom" and len(first.params["means"]) == 3
    env.reset(seed=1)
    assert env.task == first  # drawn with self.np_random: the seed fixes it
    env.reset()
    assert env.task != first
    with pytest.raises(TaskError, match="shape"):
        env.set_task(metabench.tasks(ID, "train")[0])  # a 5-armed task
    task = env.unwrapped.family.make_task(ID, {"means": (0.0, 0.0, 1.0)})
    env.set_task(task)
    clone = pickle.loads(pickle.dumps(env))
    assert clone.k == 3 and clone.task == task and clone.reset(seed=0) and clone.step(2)[1] == 1.0


def test_reference_values_per_task() -> None:
    task = make_task(0.2, 0.8, 0.5, 0.1, 0.4)
    assert BanditEnv.oracle_return(task, 100) == pytest.approx(80.0)
    assert BanditEnv.random_return(task, 100) == pytest.approx(40.0)
    assert BanditEnv.reference_returns(task) == pytest.approx({"random": 0.4, "oracle": 0.8})
    g = BanditEnv.gittins_return(task, 30, n_runs=2000, seed=0)
    assert BanditEnv.random_return(task, 30) < g < BanditEnv.oracle_return(task, 30)
    assert g == BanditEnv.gittins_return(task, 30, n_runs=2000, seed=0)  # fixed seed: reproducible
    # One clearly best arm is found almost at once: little regret.
    easy = make_task(0.0, 0.0, 1.0, 0.0, 0.0)
    assert BanditEnv.gittins_return(easy, 30, n_runs=200) > 30 - 4


def test_bayes_optimal_value_by_hand_and_against_oracle_and_random() -> None:
    # One pull: every arm pays 1/2 under the prior.
    assert bayes_optimal_return(5, 1) == pytest.approx(0.5)
    # Two arms, two pulls: pull one arm (pays 1/2); on a success pull it again (posterior mean 2/3),
    # on a failure pull the other (1/2): 1/2 + 1/2 * 2/3 + 1/2 * 1/2 = 13/12.
    assert bayes_optimal_return(2, 2) == pytest.approx(13 / 12)
    # k = 5, 10 pulls (RL²'s smallest setting). Random: 10 * E[mean] = 5; oracle: 10 * E[max of 5
    # uniforms] = 10 * 5/6.
    value = bayes_optimal_return(5, 10)
    assert 5.0 < value < 10 * 5 / 6
    assert value == pytest.approx(6.66, abs=0.01)


def test_gittins_policy_is_near_bayes_optimal() -> None:
    """Over bandits drawn from the prior, the finite-horizon Gittins policy's mean return is between
    random and oracle and within Monte Carlo error of the exact Bayes-optimal value (never above it
    by more than that error)."""
    rng = np.random.default_rng(123)
    means = rng.uniform(0, 1, size=(4000, 5))
    returns = gittins_returns(means, 10, n_runs=5, seed=1)
    mean, err = returns.mean(), returns.std() / math.sqrt(means.shape[0])  # per-bandit means: iid
    bayes = bayes_optimal_return(5, 10)
    assert 10 * means.mean() < mean < 10 * means.max(axis=1).mean()
    assert abs(mean - bayes) < 4 * err + 1e-3, (mean, bayes, err)


def test_gittins_index_table_properties() -> None:
    g = gittins_index_table(12)
    assert not g.flags.writeable
    # With one pull left the index is the posterior mean (1 + s) / (2 + s + f).
    for s, f in [(0, 0), (3, 1), (0, 5), (6, 4)]:
        assert g[1, s, f] == pytest.approx((1 + s) / (2 + s + f), abs=2e-3)
    # More pulls left: worth more than the posterior mean (exploration bonus), growing with m.
    assert g[12, 0, 0] > g[6, 0, 0] > g[2, 0, 0] > g[1, 0, 0]
    # More successes, higher index; more failures, lower.
    assert g[5, 3, 1] > g[5, 2, 1] > g[5, 2, 2]


def test_test_split_references_are_the_exact_values() -> None:
    test = metabench.tasks(ID, "test")
    refs = BanditEnv.TEST_SPLIT_REFERENCES
    assert refs["random"] == pytest.approx(np.mean([BanditEnv.random_return(t) for t in test]), abs=5e-5)
    assert refs["oracle"] == pytest.approx(np.mean([BanditEnv.oracle_return(t) for t in test]), abs=5e-5)
    assert refs["random"] < refs["gittins"] < refs["oracle"]


def test_test_split_gittins_reference_recomputed() -> None:
    test = metabench.tasks(ID, "test")
    returns = gittins_returns([t.array("means") for t in test], 100, n_runs=2000, seed=0)
    assert returns.mean() / 100 == pytest.approx(BanditEnv.TEST_SPLIT_REFERENCES["gittins"], abs=5e-7)
