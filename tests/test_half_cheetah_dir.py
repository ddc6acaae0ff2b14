"""HalfCheetahDir: forward/backward on HalfCheetah-v5, two tasks shared by train and test."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import metabench
from metabench.tasks import TaskError, check_disjoint, family

DIR = "metabench/HalfCheetahDir-v0"


def test_physics_are_half_cheetah_v5_and_the_direction_flips_the_reward() -> None:
    backward, forward = metabench.tasks(DIR, "test")
    assert (backward.params["direction"], forward.params["direction"]) == (-1.0, 1.0)
    envs = {-1.0: gym.make(DIR), 1.0: gym.make(DIR)}
    ref = gym.make("HalfCheetah-v5")
    start = ref.reset(seed=2)[0]
    for task in (backward, forward):
        np.testing.assert_array_equal(
            envs[task.params["direction"]].reset(seed=2, options={"task": task})[0], start
        )
    rng = np.random.default_rng(0)
    runs = []
    for _ in range(100):
        act = rng.uniform(-1, 1, 6)
        (ob, rb, *_), (of, rf, _, _, info) = envs[-1.0].step(act), envs[1.0].step(act)
        oref, *_ = ref.step(act)
        np.testing.assert_array_equal(ob, oref)
        np.testing.assert_array_equal(of, oref)
        v, ctrl = info["x_velocity"], 0.05 * float(np.sum(act**2))
        assert rf == pytest.approx(v - ctrl, abs=1e-12)  # MAML's/PEARL's weight 0.05
        assert rb == pytest.approx(-v - ctrl, abs=1e-12)
        runs.append(info["reward_run"])
    assert np.abs(runs).max() > 0.1  # the run term was not trivially zero


def test_two_tasks_shared_by_train_and_test_by_declaration() -> None:
    fam = family(DIR)
    assert fam.shared_train_test
    train, test = metabench.tasks(DIR, "train"), metabench.tasks(DIR, "test")
    assert [t.params for t in train] == [t.params for t in test] and len(train) == 2
    assert metabench.split_names(DIR) == ("train", "test")
    with pytest.raises(TaskError, match="share the task params"):
        check_disjoint({"train": train, "test": test})  # allowed only on the family's declaration


def test_a_direction_must_be_plus_or_minus_one() -> None:
    env = gym.make(DIR).unwrapped
    with pytest.raises(TaskError, match=r"valid: -1.0 \(backward\) or 1.0 \(forward\)"):
        env.set_task(family(DIR).make_task(DIR, {"direction": 0.5}))
    with pytest.raises(TaskError, match=r"outside its valid range \[-1.0, 1.0\]"):
        family(DIR).make_task(DIR, {"direction": 2.0})
