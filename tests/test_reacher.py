"""ReacherGoal: TESP's goal sets at Reacher-v5's scale, its reward and observation, goals reachable."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import metabench
from metabench.tasks import TaskError

ID = "metabench/ReacherGoal-v0"


def goals(env_id: str, split: str) -> np.ndarray:
    return np.array([t.params["goal"] for t in metabench.tasks(env_id, split)])


def joint_targets(goal: np.ndarray, l1: float = 0.1, l2: float = 0.11) -> np.ndarray:
    """Inverse kinematics of Reacher-v5's arm (links 0.1 and 0.11 to the fingertip), elbow up."""
    c2 = (goal @ goal - l1 * l1 - l2 * l2) / (2 * l1 * l2)
    q2 = np.arccos(np.clip(c2, -1.0, 1.0))
    q1 = np.arctan2(goal[1], goal[0]) - np.arctan2(l2 * np.sin(q2), l1 + l2 * np.cos(q2))
    return np.array([q1, q2])


def run(env: gym.Env, task, policy) -> tuple[int, bool, dict]:
    obs, _ = env.reset(seed=0, options={"task": task})
    for t in range(1, 201):
        obs, _, terminated, truncated, info = env.step(policy(obs))
        if terminated or truncated:
            return t, terminated, info
    raise AssertionError("the time limit should have ended the episode")


def test_a_scripted_arm_reaches_every_test_and_ood_goal() -> None:
    env = gym.make(ID)
    for split in ("test", "test-ood"):
        for task in metabench.tasks(ID, split):
            q_star = joint_targets(np.array(task.params["goal"]))

            def pd(obs: np.ndarray, q_star: np.ndarray = q_star) -> np.ndarray:
                q = env.unwrapped.data.qpos[:2]
                return np.clip(0.5 * np.angle(np.exp(1j * (q_star - q))) - 0.05 * obs[4:6], -1.0, 1.0)

            steps, terminated, info = run(env, task, pd)
            assert terminated and info["success"] is True and steps < 60, (split, task, steps)
            assert info["distance"] < 0.0075


def test_doing_nothing_does_not_reach_and_the_time_limit_is_tesps() -> None:
    env = gym.make(ID)
    assert env.spec.max_episode_steps == 200
    steps, terminated, info = run(env, metabench.tasks(ID, "test")[0], lambda obs: np.zeros(2))
    assert steps == 200 and not terminated and info["success"] is False


def test_reward_is_tesps_and_the_goal_only_changes_the_reward() -> None:
    env = gym.make(ID)
    tasks = metabench.tasks(ID, "train")[:2]
    actions = np.random.default_rng(0).uniform(-1.0, 1.0, (40, 2))
    runs = []
    for task in tasks:
        env.reset(seed=3, options={"task": task})
        runs.append([env.step(a) for a in actions])
    for a, step_a, step_b in zip(actions, *runs, strict=True):
        np.testing.assert_array_equal(step_a[0], step_b[0])  # the goal is hidden and does not act
        ctrl = -1e-3 * 0.5 * float(a @ a)
        for (obs, r, *_, info), task in zip((step_a, step_b), tasks, strict=True):
            d = np.hypot(*(obs[6:8] - task.params["goal"]))
            assert info["reward_ctrl"] == pytest.approx(ctrl, rel=1e-12)
            assert r == pytest.approx(-d + ctrl, abs=1e-12) and info["distance"] == pytest.approx(d)
    assert sum(s[1] for s in runs[0]) != pytest.approx(sum(s[1] for s in runs[1]), abs=1e-3)
    assert env.step(np.array([3.0, -2.0]))[4]["reward_ctrl"] == pytest.approx(-1e-3)  # clipped first
    assert "distance" not in env.unwrapped.public_info_keys


def test_observation_is_tesps_angles_velocities_and_fingertip() -> None:
    env = gym.make(ID)
    task = metabench.tasks(ID, "test")[4]
    obs, _ = env.reset(seed=1, options={"task": task})
    for _ in range(10):
        obs, *_ = env.step(np.array([0.3, -0.2]))
    data = env.unwrapped.data
    assert obs.shape == (8,) and env.observation_space.contains(obs)
    np.testing.assert_allclose(obs[:2], np.cos(data.qpos[:2]))
    np.testing.assert_allclose(obs[2:4], np.sin(data.qpos[:2]))
    np.testing.assert_allclose(obs[4:6], data.qvel[:2])
    np.testing.assert_allclose(obs[6:8], data.body("fingertip").xpos[:2])
    # Reacher-v5's target marker sits at the goal (for rendering), and nothing in obs says where.
    np.testing.assert_allclose(data.body("target").xpos[:2], task.params["goal"])


def test_splits_are_tesps_goal_sets_at_one_eighth_scale() -> None:
    for split, (lo, hi) in {
        "train": (0.025, 0.1375),
        "test": (0.025, 0.1375),
        "test-ood": (0.1375, 0.1875),
    }.items():
        g = goals(ID, split)
        r = np.hypot(g[:, 0], g[:, 1])
        assert len(g) == 100 and np.all((lo < r) & (r < hi)) and r.max() < 0.21  # within reach
        np.testing.assert_allclose(g, goals("metabench/WheeledNav-v1", split) / 8, atol=1e-6)
    every = np.concatenate([goals(ID, s) for s in ("train", "test", "test-ood")])
    dist = np.hypot(*(every[:, None] - every[None]).transpose(2, 0, 1))
    np.fill_diagonal(dist, np.inf)
    assert dist.min() >= 0.0125 - 1e-6


def test_goals_outside_the_square_are_rejected() -> None:
    env = gym.make(ID).unwrapped
    with pytest.raises(TaskError, match=r"'goal' = \(0.3, 0.0\) is outside its valid range"):
        env.family.make_task(ID, {"goal": (0.3, 0.0)})
