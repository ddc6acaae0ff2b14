"""Non-stationary families: CEMRL's location schedule, HalfCheetahDirNonStationary, AntDirNonStationary."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import metabench
from metabench.env import LocationSchedule

VEL_NS = "metabench/HalfCheetahVelNonStationary-v0"
DIR_NS = "metabench/HalfCheetahDirNonStationary-v0"
ANT_NS = "metabench/AntDirNonStationary-v0"


def test_location_schedule_draws_and_moves_change_points() -> None:
    s = LocationSchedule(basis=10.0, interval=2.0)
    rng = np.random.default_rng(0)
    s.reset(rng)
    assert 10.0 <= s.positive <= 12.0 and -12.0 <= s.negative <= -10.0 and s.side == 0
    first = s.positive
    assert not s.should_change(1, first - 0.01, rng) and not s.should_change(2, -9.99, rng)
    assert s.should_change(3, first + 0.01, rng) and s.side == 1
    assert first + 10.0 <= s.positive <= first + 12.0  # the next point lies further out
    assert not s.should_change(4, first + 0.02, rng)  # passed once, counted once
    assert s.should_change(5, s.negative - 0.01, rng) and s.side == -1
    with pytest.raises(ValueError, match="basis > 0"):
        LocationSchedule(basis=0.0)


def drive_to(env: gym.Env, x: float) -> dict:
    """Put the torso at x (as if it had run there) and take one step; return the step's info."""
    env.unwrapped.data.qpos[0] = x
    return env.step(np.zeros(env.action_space.shape))[4]


def test_velocity_changes_when_the_torso_passes_a_change_point() -> None:
    env = gym.make(VEL_NS, schedule="location")
    task = metabench.tasks(VEL_NS, "test")[3]
    env.reset(seed=0, options={"task": task})
    sched = env.unwrapped.schedule
    assert isinstance(sched, LocationSchedule) and (sched.basis, sched.interval) == (10.0, 1.0)
    infos = [drive_to(env, 0.5 * sched.positive) for _ in range(3)]
    assert not any(i["task_changed"] for i in infos) and env.unwrapped.task == task
    seen = []
    for _ in range(4):  # forwards past each new change point, then backwards past the negative one
        info = drive_to(env, sched.positive + 0.1)
        assert info["task_changed"] and info["task_index"] == env.unwrapped.task.index
        seen.append(env.unwrapped.task)
    assert drive_to(env, sched.negative - 0.1)["task_changed"]
    seen.append(env.unwrapped.task)
    assert all(t.split == "test" for t in seen), "tasks inside a test episode must be test tasks"
    assert all(a != b for a, b in zip([task, *seen], seen, strict=False))
    env.reset(seed=1)
    assert env.unwrapped.task == task


def test_direction_turns_back_at_change_points() -> None:
    env = gym.make(DIR_NS)  # CEMRL's defaults: location schedule, basis 10, interval 2
    backward, forward = metabench.tasks(DIR_NS, "test")
    env.reset(seed=0, options={"task": forward})
    sched = env.unwrapped.schedule
    assert isinstance(sched, LocationSchedule) and (sched.basis, sched.interval) == (10.0, 2.0)
    info = drive_to(env, sched.positive + 0.1)
    assert info["task_changed"] and env.unwrapped.task == backward
    # The reward now pays for running backwards.
    _, r, _, _, info = env.step(np.zeros(6))
    assert r == pytest.approx(-info["x_velocity"])
    # Passing the (moved) positive point again while already heading back changes nothing (CEMRL).
    assert not drive_to(env, sched.positive + 0.1)["task_changed"] and env.unwrapped.task == backward
    info = drive_to(env, sched.negative - 0.1)
    assert info["task_changed"] and env.unwrapped.task == forward and info["task_index"] == forward.index
    with pytest.raises(ValueError, match="unknown schedule 'space'; valid: 'time', 'location'"):
        gym.make(DIR_NS, schedule="space")


def test_ant_direction_changes_by_time_within_the_split() -> None:
    env = gym.make(ANT_NS)
    task = metabench.tasks(ANT_NS, "test")[5]
    env.reset(seed=0, options={"task": task})
    changed_at, splits = [], set()
    for t in range(1, 251):  # zero torques: the ant stands, healthy, long enough for two changes
        _, _, term, _, info = env.step(np.zeros(8))
        assert not term
        if info["task_changed"]:
            changed_at.append(t)
        splits.add(env.unwrapped.task.split)
    assert changed_at == [100, 200]
    assert splits == {"test"}
    env.reset(seed=0)
    assert env.unwrapped.task == task
