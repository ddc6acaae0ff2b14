"""AntDir and AntGoal on Gymnasium's Ant-v5."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import metabench
from metabench.tasks import TaskError, family

DIR, GOAL = "metabench/AntDir-v0", "metabench/AntGoal-v0"


def test_ant_dir_along_x_is_ant_v5() -> None:
    """Angle 0: observation (with contact forces), reward and termination are exactly Ant-v5's."""
    ours, ref = gym.make(DIR), gym.make("Ant-v5")
    a, _ = ours.reset(seed=3, options={"task": family(DIR).make_task(DIR, {"angle": 0.0})})
    b, _ = ref.reset(seed=3)
    np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(0)
    forces = 0.0
    for _ in range(100):
        act = rng.uniform(-1, 1, 8)
        a, ra, ta, _, _ = ours.step(act)
        b, rb, tb, _, _ = ref.step(act)
        np.testing.assert_array_equal(a, b)
        assert ra == pytest.approx(rb, abs=1e-12) and ta == tb
        forces = max(forces, np.abs(a[27:]).max())
        if ta:
            break
    assert ta, "random actions topple Ant-v5 within 100 steps: termination was compared"
    assert forces > 0, "the contact forces in the observation were all zero"


def test_ant_dir_rewards_velocity_along_the_direction() -> None:
    env = gym.make(DIR)
    rng = np.random.default_rng(1)
    actions = rng.uniform(-1, 1, (30, 8))
    fam = family(DIR)
    forward = []
    for angle in (1.0, 1.0 + math.pi):
        env.reset(seed=0, options={"task": fam.make_task(DIR, {"angle": angle})})
        for act in actions:
            _, r, _, _, info = env.step(act)
            v = np.array([info["x_velocity"], info["y_velocity"]])
            assert info["reward_forward"] == pytest.approx(v @ [math.cos(angle), math.sin(angle)], abs=1e-12)
            parts = (
                info["reward_forward"] + info["reward_survive"] + info["reward_ctrl"] + info["reward_contact"]
            )
            assert r == pytest.approx(parts, abs=1e-12)
            forward.append(info["reward_forward"])
    forward = np.array(forward).reshape(2, -1)
    np.testing.assert_allclose(forward[0], -forward[1], atol=1e-12)  # the opposite direction flips it
    assert np.abs(forward).max() > 0.05


def test_ant_goal_reward_observation_and_no_termination() -> None:
    env = gym.make(GOAL)
    task = metabench.tasks(GOAL, "test")[0]
    obs, _ = env.reset(seed=0, options={"task": task})
    assert obs.shape == (107,)
    g = np.array(task.params["goal"])
    rng = np.random.default_rng(2)
    for _ in range(20):
        act = rng.uniform(-1, 1, 8)
        obs, r, term, _, info = env.step(act)
        xy = env.unwrapped.data.qpos[:2]
        np.testing.assert_array_equal(obs[:2], xy)  # the position is observed, as in PEARL
        assert info["reward_goal"] == pytest.approx(-np.abs(xy - g).sum(), abs=1e-12)
        assert info["reward_ctrl"] == pytest.approx(-0.1 * float(act @ act), abs=1e-12)
        assert r == pytest.approx(
            info["reward_goal"] + info["reward_ctrl"] + info["reward_contact"], abs=1e-12
        )
        assert not term
    # Lifted out of Ant-v5's healthy range, AntGoal goes on while AntDir ends.
    for env_id, ends in ((GOAL, False), (DIR, True)):
        e = gym.make(env_id)
        e.reset(seed=0)
        e.unwrapped.data.qpos[2] = 3.0
        assert e.step(np.zeros(8))[2] is ends


def test_ant_goal_splits_and_ranges() -> None:
    radius = {
        s: np.array([np.hypot(*t.params["goal"]) for t in metabench.tasks(GOAL, s)])
        for s in ("train", "test", "test-ood")
    }
    assert {s: len(r) for s, r in radius.items()} == {"train": 150, "test": 30, "test-ood": 30}
    assert radius["train"].max() <= 3.0 and radius["test"].max() <= 3.0
    assert radius["test-ood"].min() > 3.0 and radius["test-ood"].max() <= 4.0 + 1e-6
    angles = [t.params["angle"] for t in metabench.tasks(DIR, "train") + metabench.tasks(DIR, "test")]
    assert len(set(angles)) == 130 and 0 <= min(angles) and max(angles) < 2 * math.pi
    with pytest.raises(TaskError, match=r"'goal' = \(5.0, 0.0\) is outside its valid range \[-4.0, 4.0\]"):
        gym.make(GOAL).unwrapped.set_task(family(GOAL).make_task(GOAL, {"goal": (5.0, 0.0)}))
