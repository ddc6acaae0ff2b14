"""Non-stationary families: CEMRL's location schedule, HalfCheetahDirNonStationary, AntDirNonStationary."""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest

import metabench
from metabench.env import CemrlTimeSchedule, LocationSchedule
from metabench.tasks import env_class
from metabench.wrappers import ExplicitContext

VEL_NS = "metabench/HalfCheetahVelNonStationary-v0"
DIR_NS = "metabench/HalfCheetahDirNonStationary-v0"
ANT_NS = "metabench/AntDirNonStationary-v0"
VEL_CEMRL = "metabench/HalfCheetahVelNonStationary-v1"
DIR_CEMRL = "metabench/HalfCheetahDirNonStationary-v1"


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


# ------------------------------------------------------------------------- CEMRL's configuration (v1)
def change_steps_of(env: gym.Env, n: int, action: np.ndarray | None = None) -> list[int]:
    """The (1-based) steps after which the task changed, over ``n`` steps."""
    action = np.zeros(env.action_space.shape) if action is None else action
    return [t for t in range(1, n + 1) if env.step(action)[4]["task_changed"]]


def test_cemrl_time_schedule_flips_a_coin_once_the_count_has_passed() -> None:
    """meta_rand_envs base.py: change when steps > change_steps and a coin says so; restart the count."""
    rng = np.random.default_rng(0)
    s = CemrlTimeSchedule(steps=100, prob=1.0)
    s.reset(rng)
    assert [t for t in range(1, 400) if s.should_change(t, 0.0, rng)] == [101, 202, 303]
    s = CemrlTimeSchedule(steps=10, prob=0.25)
    s.reset(rng)
    changes = [t for t in range(1, 2_001) if s.should_change(t, 0.0, rng)]
    gaps = np.diff([0, *changes])
    assert gaps.min() >= 11 and gaps.max() > 11  # never sooner than steps + 1, sometimes later
    # The wait after steps + 1 is geometric with p = 0.25: mean 1 / p - 1 = 3 more steps.
    assert np.mean(gaps) == pytest.approx(11 + 3, abs=1.0)
    s.reset(rng)
    assert s.last == 0
    with pytest.raises(ValueError, match="0 <= prob <= 1"):
        CemrlTimeSchedule(steps=10, prob=1.5)


def test_cemrl_velocity_cheetah_is_cemrls_configuration() -> None:
    env = gym.make(VEL_CEMRL)
    sched = env.unwrapped.schedule
    assert isinstance(sched, LocationSchedule) and (sched.basis, sched.interval) == (10.0, 1.0)
    assert env.spec.max_episode_steps == 800 and env.unwrapped.n_adapt == 1
    for split, (lo, hi) in {"train": (0.5, 3.0), "test": (0.5, 3.0), "test-ood": (3.0, 4.0)}.items():
        v = np.array([t.params["velocity"] for t in metabench.tasks(VEL_CEMRL, split)])
        assert len(v) == {"train": 100, "test": 30, "test-ood": 30}[split]
        assert lo <= v.min() and v.max() <= hi
    budgets, cls = env.unwrapped.budgets, type(env.unwrapped)
    assert budgets["smoke"] == gym.make(VEL_NS).unwrapped.budgets["smoke"]
    assert budgets["ci"] == env_class("metabench/HalfCheetahVel-v0").budgets["ci"]
    assert budgets["standard"] == 100 * 800 + 301 * 20 * 800
    assert "reward_run" not in cls.public_info_keys and "x_velocity" not in cls.public_info_keys
    # CEMRL's observation: qpos[1:], the torso body's position, qvel.
    data = env.unwrapped.data
    for step in range(2):
        if step == 0:
            o, _ = env.reset(seed=0, options={"task": metabench.tasks(VEL_CEMRL, "test")[0]})
        else:
            o = env.step(env.action_space.sample())[0]
        assert o.shape == (20,) and env.observation_space.contains(o)
        np.testing.assert_array_equal(o[:8], data.qpos[1:])
        np.testing.assert_array_equal(o[8:11], data.body("torso").xpos)
        np.testing.assert_array_equal(o[11:], data.qvel)


def test_cemrl_velocity_cheetah_changes_at_location_and_by_cemrls_time_rule() -> None:
    env = gym.make(VEL_CEMRL)
    task = metabench.tasks(VEL_CEMRL, "test")[2]
    env.reset(seed=0, options={"task": task})
    sched = env.unwrapped.schedule
    assert not drive_to(env, sched.positive - 0.2)["task_changed"]
    info = drive_to(env, sched.positive + 0.2)
    assert info["task_changed"] and env.unwrapped.task != task and env.unwrapped.task.split == "test"
    # Standing still meets no change point in 800 steps.
    env.reset(seed=0, options={"task": task})
    assert change_steps_of(env, 799) == [] and env.unwrapped.task == task
    # The time mode is a kwarg: CEMRL's count (after 101, 202, ... steps), not v0's multiples of 100.
    timed = gym.make(VEL_CEMRL, schedule="time")
    assert isinstance(timed.unwrapped.schedule, CemrlTimeSchedule)
    timed.reset(seed=0, options={"task": task})
    assert change_steps_of(timed, 400) == [101, 202, 303]
    v0 = gym.make(VEL_NS, schedule="time")
    v0.reset(seed=0, options={"task": metabench.tasks(VEL_NS, "test")[2]})
    assert change_steps_of(v0, 400) == [100, 200, 300, 400]
    # With a coin, changes come later and the sequence is reproducible from the reset seed.
    runs = []
    for _ in range(2):
        coin = gym.make(VEL_CEMRL, schedule="time", change_steps=20, change_prob=0.1)
        coin.reset(seed=7, options={"task": task})
        runs.append([(t, coin.unwrapped.task.index) for t in change_steps_of(coin, 799)])
    assert runs[0] == runs[1] and len(runs[0]) >= 5
    assert min(np.diff([0] + [t for t, _ in runs[0]])) >= 21


def test_cemrl_direction_cheetah_flips_both_ways_by_time() -> None:
    env = gym.make(DIR_CEMRL)
    sched = env.unwrapped.schedule
    assert isinstance(sched, LocationSchedule) and (sched.basis, sched.interval) == (10.0, 2.0)
    assert env.observation_space.shape == (20,)
    backward, forward = metabench.tasks(DIR_CEMRL, "test")
    env.reset(seed=0, options={"task": forward})
    assert drive_to(env, sched.positive + 0.1)["task_changed"] and env.unwrapped.task == backward
    timed = gym.make(DIR_CEMRL, schedule="time")
    timed.reset(seed=0, options={"task": forward})
    seen = []
    for t in range(1, 304):
        if timed.step(np.zeros(6))[4]["task_changed"]:
            seen.append((t, timed.unwrapped.task.params["direction"]))
    assert seen == [(101, -1.0), (202, 1.0), (303, -1.0)]


# ---------------------------------------------------------------------------- PointNavNonStationary
POINT_NS = "metabench/PointNavNonStationary-v0"


def point_episode(seed: int, task) -> list[tuple[int, int, float]]:
    """(step, acting goal index, reward) at every jump of one 100-step episode of a still robot."""
    env = gym.make(POINT_NS)
    env.reset(seed=seed, options={"task": task})
    out = []
    for t in range(1, 101):
        obs, r, _, truncated, info = env.step(np.zeros(2))
        goal = np.array(env.unwrapped.task.params["goal"])
        if info["task_changed"]:
            out.append((t, info["task_index"], r))
        else:  # the reward is the distance to the goal acting during the step
            assert r == pytest.approx(-np.hypot(*(obs - goal)), abs=1e-6)
    assert truncated
    return out


def test_point_goal_jumps_within_the_episode_reproducibly_from_the_seed() -> None:
    task = metabench.tasks(POINT_NS, "test")[7]
    a, b, c = point_episode(0, task), point_episode(0, task), point_episode(1, task)
    assert a == b and a != c
    for jumps in (a, c):
        steps = [t for t, _, _ in jumps]
        assert len(steps) >= 1 and steps[0] >= 21 and min(np.diff([0, *steps])) >= 21
        indices = [task.index] + [i for _, i, _ in jumps]
        assert all(x != y for x, y in itertools.pairwise(indices)), "a jump changes the goal"


def test_point_jumps_stay_in_the_split_and_move_the_reward_not_the_robot() -> None:
    env = gym.make(POINT_NS)
    assert env.spec.max_episode_steps == 100 and env.unwrapped.n_adapt == 1
    assert env.unwrapped.public_info_keys == frozenset({"success"})
    task = metabench.tasks(POINT_NS, "test-ood")[3]
    obs, _ = env.reset(seed=4, options={"task": task})
    seen = set()
    for _ in range(100):
        before = obs
        obs = env.step(np.array([0.05, 0.0]))[0]
        np.testing.assert_allclose(
            obs, before + np.array([0.05, 0.0]), atol=1e-6
        )  # a jump does not move the robot
        seen.add(env.unwrapped.task.split)
    assert seen == {"test-ood"}
    env.reset(seed=5)
    assert env.unwrapped.task == task  # the task given to reset starts every episode
    # The oracle's context follows the goal acting now.
    wrapped = ExplicitContext(gym.make(POINT_NS))
    wrapped.reset(seed=0, options={"task": task})
    for _ in range(100):
        obs = wrapped.step(np.zeros(2))[0]
        np.testing.assert_allclose(obs[2:], wrapped.unwrapped.task.params["goal"], atol=1e-6)


def test_point_change_rule_is_a_kwarg() -> None:
    env = gym.make(POINT_NS, change_steps=10, change_prob=1.0)
    env.reset(seed=0, options={"task": metabench.tasks(POINT_NS, "train")[0]})
    assert change_steps_of(env, 100) == [11, 22, 33, 44, 55, 66, 77, 88, 99]
    still = gym.make(POINT_NS, change_prob=0.0)
    still.reset(seed=0)
    assert change_steps_of(still, 100) == []


def test_point_following_the_jumps_pays_the_returns_in_the_docstring() -> None:
    env = gym.make(POINT_NS)
    rng = np.random.default_rng(0)

    def toward(obs: np.ndarray, goal: np.ndarray) -> np.ndarray:
        return np.clip(goal - obs, -0.1, 0.1)

    policies = {
        "random": lambda obs, first: rng.uniform(-0.1, 0.1, 2),
        "still": lambda obs, first: np.zeros(2),
        "first goal": lambda obs, first: toward(obs, first),
        "tracking": lambda obs, first: toward(obs, np.array(env.unwrapped.task.params["goal"])),
    }
    mean = {}
    for name, policy in policies.items():
        returns = []
        for k, task in enumerate(metabench.tasks(POINT_NS, "test")):
            first = np.array(task.params["goal"])
            for e in range(3):
                obs, _ = env.reset(seed=100 * k + e, options={"task": task})
                total = 0.0
                for _ in range(100):
                    obs, r, *_ = env.step(policy(obs, first))
                    total += r
                returns.append(total)
        mean[name] = np.mean(returns)
    want = {"random": -111.3, "still": -100.0, "first goal": -70.7, "tracking": -16.7}
    assert mean == pytest.approx(want, abs=0.05)
