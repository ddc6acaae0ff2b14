"""The env contract, checked on every registered metabench id (DESIGN.md, "Environments")."""

from __future__ import annotations

import dataclasses
import functools
import math
import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import metabench
from metabench.gl import rendering_unavailable
from metabench.tasks import SPLIT_NAMES, Task, TaskError, env_class, split_digest
from metabench.wrappers import ExplicitContext

from .conftest import quick_test_ids

IDS = quick_test_ids()
N_STEPS = 60


def rollout(env: gym.Env, seed: int, n: int = N_STEPS, task: Task | None = None) -> list:
    """(obs, reward, terminated, truncated, task_index) for ``n`` steps of seeded random actions."""
    options = None if task is None else {"task": task}
    obs, info = env.reset(seed=seed, options=options)
    env.action_space.seed(seed)
    out = [(np.asarray(obs).copy(), 0.0, False, False, info["task_index"])]
    for _ in range(n):
        obs, r, term, trunc, info = env.step(env.action_space.sample())
        out.append((np.asarray(obs).copy(), float(r), term, trunc, info["task_index"]))
        if term or trunc:
            obs, info = env.reset()
    return out


def assert_same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x[0], y[0])
        assert x[1:] == y[1:]


@functools.cache
def gl_unavailable() -> str | None:
    """Why rendering cannot work here, or None. Needs an OpenGL backend (OSMesa on Debian: libosmesa6)."""
    reason = rendering_unavailable()  # MUJOCO_GL=disable: metabench.gl found no backend
    if reason:
        return reason
    try:
        env = gym.make("metabench/HalfCheetahVel-v0", render_mode="rgb_array")
        env.reset(seed=0)
        env.render()
        env.close()
    except Exception as exc:
        return f"no OpenGL backend for MUJOCO_GL={__import__('os').environ.get('MUJOCO_GL')}: {exc!r}"
    return None


@pytest.mark.parametrize("env_id", IDS)
def test_check_env(env_id: str) -> None:
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_trajectory(env_id: str) -> None:
    a, b = gym.make(env_id), gym.make(env_id)
    first = rollout(a, seed=7)
    assert_same(first, rollout(b, seed=7))
    assert_same(first, rollout(a, seed=7))  # the same instance, reset again
    # A different seed draws a different train task or start (else the seed would not matter).
    other = rollout(b, seed=8)
    assert any(x[4] != y[4] or not np.array_equal(x[0], y[0]) for x, y in zip(first, other, strict=True))


@pytest.mark.parametrize("env_id", IDS)
def test_pickle_keeps_task_and_dynamics(env_id: str) -> None:
    env = gym.make(env_id)
    task = metabench.tasks(env_id, "test")[1]
    env.unwrapped.set_task(task)
    clone = pickle.loads(pickle.dumps(env))
    assert clone.unwrapped.task == task
    assert_same(rollout(env, seed=3), rollout(clone, seed=3))


@pytest.mark.parametrize("env_id", IDS)
def test_render_rgb_array(env_id: str) -> None:
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    try:
        img = env.render()
    except Exception:
        reason = gl_unavailable()
        if reason:
            pytest.skip(reason)
        raise
    finally:
        env.close()
    assert isinstance(img, np.ndarray) and img.dtype == np.uint8
    assert img.ndim == 3 and img.shape[2] == 3 and img.shape[0] >= 64
    assert img.std() > 0, "rendered a blank image"


@pytest.mark.parametrize("env_id", IDS)
def test_set_task_and_reset_option(env_id: str) -> None:
    env = gym.make(env_id)
    test = metabench.tasks(env_id, "test")
    k = min(2, len(test) - 1)
    _, info = env.reset(seed=0, options={"task": test[k]})
    assert env.unwrapped.task == test[k] and info["task_index"] == k and info["task_changed"] is False
    _, info = env.reset(seed=1)  # the task stays fixed until another is set
    assert info["task_index"] == k
    env.unwrapped.set_task(test[0])
    _, info = env.reset(seed=2)
    assert info["task_index"] == 0
    # With no task ever set, every reset draws a train task with the env's own RNG.
    fresh = gym.make(env_id)
    drawn = {fresh.reset(seed=s)[1]["task_index"] for s in range(8)}
    assert fresh.unwrapped.task.split == "train"
    train = metabench.tasks(env_id, "train")
    assert len(train) == 1 or len(drawn) > 1


@pytest.mark.parametrize("env_id", IDS)
def test_bad_tasks_are_rejected_with_the_reason(env_id: str) -> None:
    env = gym.make(env_id).unwrapped
    task = metabench.tasks(env_id, "train")[0]
    other_id = "metabench/PointNav-v0" if env_id != "metabench/PointNav-v0" else "metabench/HalfCheetahVel-v0"
    with pytest.raises(TaskError, match="cannot be set on"):
        env.set_task(metabench.tasks(other_id, "train")[0])
    with pytest.raises(TaskError, match=r"expects a metabench\.Task"):
        env.set_task(task.params)
    name = next(iter(task.params))
    missing = {k: v for k, v in task.params.items() if k != name}
    with pytest.raises(TaskError, match="lacks parameter"):
        env.set_task(dataclasses.replace(task, params=missing))
    value = task.params[name]
    nan = tuple(math.nan for _ in value) if isinstance(value, tuple) else math.nan
    with pytest.raises(TaskError, match="not finite"):
        env.set_task(dataclasses.replace(task, params={**task.params, name: nan}))
    with pytest.raises(TaskError, match="valid splits"):
        metabench.tasks(env_id, "validation")


@pytest.mark.parametrize("env_id", IDS)
def test_splits_are_frozen_disjoint_and_hashed(env_id: str) -> None:
    cls = env_class(env_id)
    names = metabench.split_names(env_id)
    assert names[:2] == ("train", "test") and set(names) <= set(SPLIT_NAMES)
    assert set(cls.split_hashes) == set(names), "every split needs its hash written in the code"
    seen: dict[str, str] = {}
    for split in names:
        tasks = metabench.tasks(env_id, split)
        assert len(tasks) > 0
        assert [t.index for t in tasks] == list(range(len(tasks)))
        assert all(t.family == env_id and t.split == split for t in tasks)
        assert metabench.split_hash(env_id, split) == split_digest(tasks) == cls.split_hashes[split]
        for t in tasks:  # every task is a valid point and survives JSON both ways
            cls.family.validate(t.params)
            key = str(sorted(t.to_dict()["params"].items()))
            if not (cls.family.shared_train_test and {seen.get(key), split} == {"train", "test"}):
                assert key not in seen, f"{split} repeats a task of {seen.get(key)}"
            seen[key] = split
    t = metabench.tasks(env_id, "test")[0]
    assert Task.from_json(t.to_json()) == t


@pytest.mark.parametrize("env_id", IDS)
def test_explicit_context_appends_the_normalised_task(env_id: str) -> None:
    env = gym.make(env_id)
    if not isinstance(env.observation_space, gym.spaces.Box):
        pytest.skip("ExplicitContext needs a Box observation")
    wrapped = ExplicitContext(env)
    task = metabench.tasks(env_id, "test")[0]
    obs, _ = wrapped.reset(seed=0, options={"task": task})
    fam = env.unwrapped.family
    k = fam.context_size
    assert obs.shape == (env.observation_space.shape[0] + k,)
    assert wrapped.observation_space.contains(obs)
    np.testing.assert_allclose(obs[-k:], fam.context(task).astype(obs.dtype))
    assert np.all(np.abs(obs[-k:]) <= 1.0)
