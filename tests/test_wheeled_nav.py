"""WheeledNav: the car can reach a goal, the goal sets the reward, the splits keep their annuli."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import metabench
from metabench.tasks import TaskError, env_class

ID = "metabench/WheeledNav-v0"


def goals(split: str) -> np.ndarray:
    return np.array([t.params["goal"] for t in metabench.tasks(ID, split)])


def drive_to(obs: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """A differential-drive P controller: turn towards the goal, drive forward while facing it."""
    dx, dy = goal[0] - obs[0], goal[1] - obs[1]
    heading = np.arctan2(obs[3], obs[4])
    error = np.angle(np.exp(1j * (np.arctan2(dy, dx) - heading)))
    forward = 3.0 * np.hypot(dx, dy) * max(np.cos(error), 0.0)  # m/s
    turn = 4.0 * error  # rad/s
    half_track, radius = 0.075, 0.04
    wheels = np.array([forward - half_track * turn, forward + half_track * turn]) / radius
    return np.clip(wheels, -50.0, 50.0)


def test_a_scripted_controller_reaches_nearby_goals() -> None:
    env = gym.make(ID)
    test = metabench.tasks(ID, "test")
    near = sorted(test, key=lambda t: np.hypot(*t.params["goal"]))[:2]
    behind = min(test, key=lambda t: t.params["goal"][0])  # the car starts facing +x: it must turn round
    for task in (*near, behind):
        obs, _ = env.reset(seed=0, options={"task": task})
        goal = np.array(task.params["goal"])
        steps, terminated, truncated = 0, False, False
        while not (terminated or truncated):
            obs, _, terminated, truncated, info = env.step(drive_to(obs, goal))
            steps += 1
        assert terminated and not truncated and info["success"] is True, (task, info)
        assert info["distance"] < 0.02 and steps < 200
        assert np.hypot(*(obs[:2] - goal)) == pytest.approx(info["distance"])
        assert abs(obs[2] - 0.04) < 0.005, "the chassis stays on its wheels"


def test_doing_nothing_never_reaches_the_goal() -> None:
    env = gym.make(ID)
    env.reset(seed=0, options={"task": metabench.tasks(ID, "test")[0]})
    for _ in range(200):
        _, _, terminated, truncated, info = env.step(np.zeros(2))
        assert not terminated and info["success"] is False
    assert truncated


def test_a_different_goal_changes_the_reward() -> None:
    env = gym.make(ID)
    tasks = metabench.tasks(ID, "train")[:2]
    rng = np.random.default_rng(0)
    actions = rng.uniform(-20.0, 20.0, (30, 2))
    runs = []
    for task in tasks:
        env.reset(seed=5, options={"task": task})
        runs.append([env.step(a)[:2] for a in actions])
    for a, (obs_a, r_a), (obs_b, r_b) in zip(actions, *runs, strict=True):
        np.testing.assert_array_equal(obs_a, obs_b)  # the goal is hidden and does not act on the car
        ctrl = -1e-3 * float(a @ a)
        for r, task in ((r_a, tasks[0]), (r_b, tasks[1])):
            assert r == pytest.approx(-np.hypot(*(obs_a[:2] - task.params["goal"])) + ctrl, abs=1e-12)
    assert sum(r for _, r in runs[0]) != pytest.approx(sum(r for _, r in runs[1]), abs=1e-3)


def test_the_goal_site_moves_in_place() -> None:
    env = gym.make(ID).unwrapped
    model = env.model
    for task in metabench.tasks(ID, "test-ood")[:3]:
        env.set_task(task)
        assert env.model is model
        np.testing.assert_array_equal(model.site("goal").pos[:2], task.params["goal"])


def test_observation_holds_position_heading_and_velocities() -> None:
    env = gym.make(ID)
    env.reset(seed=1, options={"task": metabench.tasks(ID, "test")[0]})
    for _ in range(20):
        obs, *_ = env.step(np.array([10.0, 30.0]))  # a left turn
    data = env.unwrapped.data
    w, _, _, z = data.qpos[3:7]
    yaw = 2 * np.arctan2(z, w)  # the chassis stays level: a rotation about z only
    np.testing.assert_allclose(obs[:3], data.qpos[:3])
    np.testing.assert_allclose(obs[3:5], [np.sin(yaw), np.cos(yaw)], atol=1e-3)
    np.testing.assert_allclose(obs[5:7], data.qvel[:2])
    np.testing.assert_allclose(obs[7:9], data.qvel[6:8])
    assert obs[8] > obs[7] > 0


def test_splits_keep_their_annuli_and_separation() -> None:
    split_goals = {s: goals(s) for s in ("train", "test", "test-ood")}
    for split, (lo, hi) in {"train": (0.2, 1.1), "test": (0.2, 1.1), "test-ood": (1.1, 1.5)}.items():
        g = split_goals[split]
        r = np.hypot(g[:, 0], g[:, 1])
        assert len(g) == 100 and np.all((lo < r) & (r < hi)) and np.all(np.abs(g) <= 1.5)
    every = np.concatenate(list(split_goals.values()))
    dist = np.hypot(*(every[:, None] - every[None]).transpose(2, 0, 1))
    np.fill_diagonal(dist, np.inf)
    assert dist.min() >= 0.1


def test_goals_outside_the_square_are_rejected_with_the_valid_range() -> None:
    env = gym.make(ID).unwrapped
    with pytest.raises(TaskError, match=r"'goal' = \(2.0, 0.0\) is outside its valid range \[-1.5, 1.5\]"):
        env.family.make_task(ID, {"goal": (2.0, 0.0)})
    with pytest.raises(TaskError, match=r"has shape \(3,\), expected \(2,\)"):
        env.family.make_task(ID, {"goal": (0.5, 0.5, 0.0)})


# ------------------------------------------------------------------------------------------------ v1
V1 = "metabench/WheeledNav-v1"


def test_v1_control_cost_is_tesps_normalised_cost() -> None:
    """TESP (tesp/envs/mujoco/mujoco_env.py): a = clip(a, -50, 50); cost = 0.5 * sum((a / 50)**2),
    weighted by ctrl_cost_coeff 1e-3. v0 squares the raw action: 5,000 times more."""
    task = metabench.tasks(V1, "test")[0]
    v0, v1 = gym.make(ID), gym.make(V1)
    v0.reset(seed=3, options={"task": metabench.tasks(ID, "test")[0]})
    v1.reset(seed=3, options={"task": task})
    goal = np.array(task.params["goal"])
    for a in (np.array([50.0, -50.0]), np.array([10.0, 30.0]), np.array([-25.0, 5.0])):
        obs0, _, _, _, info0 = v0.step(a)
        obs1, r1, *_, info1 = v1.step(a)
        np.testing.assert_array_equal(obs0, obs1)  # same car, same physics
        want = -1e-3 * 0.5 * float(np.sum((a / 50.0) ** 2))
        assert info1["reward_ctrl"] == pytest.approx(want, rel=1e-12)
        assert info0["reward_ctrl"] == pytest.approx(5_000 * want, rel=1e-12)
        assert r1 == pytest.approx(-np.hypot(*(obs1[:2] - goal)) + want, abs=1e-12)
    assert v1.step(np.array([50.0, 50.0]))[4]["reward_ctrl"] == pytest.approx(-1e-3)
    # Beyond the box TESP clips before the cost (MuJoCo clamps the ctrl the same way).
    assert v1.step(np.array([500.0, -80.0]))[4]["reward_ctrl"] == pytest.approx(-1e-3)


def test_v1_keeps_v0s_goal_sets_and_hides_the_distance() -> None:
    for split in ("train", "test", "test-ood"):
        np.testing.assert_array_equal(goals(split), [t.params["goal"] for t in metabench.tasks(V1, split)])
    cls = env_class(V1)
    assert "distance" not in cls.public_info_keys and "reward_ctrl" in cls.public_info_keys
    assert "Supersedes v0" in env_class(ID).__doc__


def test_v1_a_scripted_controller_pays_little_for_control() -> None:
    """The audit found v0's control term 76% of a P controller's return; under TESP's cost it is small."""
    far = int(np.argmax(np.hypot(*goals("test").T)))
    shares = {}
    for env_id in (ID, V1):
        env = gym.make(env_id)
        task = metabench.tasks(env_id, "test")[far]
        obs, _ = env.reset(seed=0, options={"task": task})
        total = ctrl = 0.0
        done = False
        while not done:
            obs, r, terminated, truncated, info = env.step(drive_to(obs, np.array(task.params["goal"])))
            total, ctrl, done = total + r, ctrl + info["reward_ctrl"], terminated or truncated
        shares[env_id] = ctrl / total
    assert shares[ID] > 0.5 and shares[V1] < 0.01, shares
