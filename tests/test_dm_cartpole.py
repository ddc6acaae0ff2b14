"""CartpoleSwingupParams-v0: dm_control's cartpole swing-up with cart mass, pole mass and length."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import metabench
from metabench.envs.dm_cartpole import NOMINAL, OBS_KEYS, CartpoleSwingupParamsEnv
from metabench.tasks import TaskError

ID = "metabench/CartpoleSwingupParams-v0"


def compiled(task) -> object:
    """A dm_control cartpole Physics compiled from cartpole.xml with the task's values written in."""
    from dm_control.suite import cartpole

    xml, assets = cartpole.get_model_and_assets()
    xml = xml.decode() if isinstance(xml, bytes) else xml
    p = task.params
    edits = [
        ('fromto="0 0 0 0 0 1"', f'fromto="0 0 0 0 0 {p["pole_length"]!r}"'),
        ('mass=".1"', f'mass="{p["pole_mass"]!r}"'),
        ('material="self"  mass="1"', f'material="self"  mass="{p["cart_mass"]!r}"'),
    ]
    for old, new in edits:
        assert xml.count(old) == 1, f"cartpole.xml changed: {old!r} not found once"
        xml = xml.replace(old, new)
    return cartpole.Physics.from_xml_string(xml, assets)


def model_differences(a: mujoco.MjModel, b: mujoco.MjModel) -> list[str]:
    """Names of the model arrays (and statistics) that differ by more than 1e-12."""
    out = []
    for name in dir(a):
        if name.startswith("_"):
            continue
        va = getattr(a, name)
        if isinstance(va, np.ndarray) and va.dtype.kind in "fiu":
            vb = getattr(b, name)
            if va.shape != vb.shape or (va.size and np.max(np.abs(va - vb)) > 1e-12):
                out.append(name)
    for name in ("meaninertia", "meanmass", "meansize", "extent"):
        if abs(getattr(a.stat, name) - getattr(b.stat, name)) > 1e-12:
            out.append(f"stat.{name}")
    return out


def test_nominal_values_are_dm_controls() -> None:
    env = CartpoleSwingupParamsEnv()
    m = env.physics.model.ptr
    assert m.body_mass[env._cart] == NOMINAL["cart_mass"]
    assert m.body_mass[env._pole] == NOMINAL["pole_mass"]
    assert 2 * m.geom_size[env._pole_geom, 1] == NOMINAL["pole_length"]


@pytest.mark.parametrize(("split", "index"), [("train", 0), ("train", 1), ("test-ood", 0), ("test-ood", 4)])
def test_in_place_edit_equals_a_model_compiled_with_the_values(split: str, index: int) -> None:
    """Every model array, the model statistics and a 300-step trajectory equal those of a model
    compiled from cartpole.xml with the task's masses and length written in."""
    env = CartpoleSwingupParamsEnv()
    env.reset(seed=0, options={"task": metabench.tasks(ID, "train")[5]})  # start from another task
    task = metabench.tasks(ID, split)[index]
    env.reset(seed=3, options={"task": task})
    ref = compiled(task)
    assert model_differences(env.physics.model.ptr, ref.model.ptr) == []
    ref.data.qpos[:] = env.physics.data.qpos
    ref.data.qvel[:] = env.physics.data.qvel
    ref.forward()
    rng = np.random.default_rng(0)
    for _ in range(300):
        a = rng.uniform(-1, 1, 1)
        env.step(a)
        ref.set_control(a)
        ref.step()
    np.testing.assert_allclose(env.physics.data.qpos, ref.data.qpos, rtol=0, atol=1e-10)


def test_nominal_task_steps_as_dm_control_suite() -> None:
    """With dm_control's values: observation and reward equal suite.load("cartpole", "swingup")'s
    over a whole episode of random actions started from the same state."""
    from dm_control import suite

    env = gym.make(ID)
    task = env.unwrapped.family.make_task(ID, NOMINAL)
    obs, _ = env.reset(seed=0, options={"task": task})
    ref = suite.load("cartpole", "swingup", task_kwargs={"random": 0})
    ref.reset()
    ref.physics.data.qpos[:] = env.unwrapped.physics.data.qpos
    ref.physics.data.qvel[:] = env.unwrapped.physics.data.qvel
    ref.physics.forward()
    rng = np.random.default_rng(1)
    rewards = []
    for t in range(1000):
        a = rng.uniform(-1, 1, 1) * (1.0 if t % 200 < 150 else 0.0)  # also exactly zero control
        obs, r, term, trunc, _ = env.step(a)
        ts = ref.step(a)
        np.testing.assert_allclose(
            obs, np.concatenate([ts.observation[k].ravel() for k in OBS_KEYS]), atol=1e-12
        )
        assert r == pytest.approx(ts.reward, abs=1e-12)
        assert not term
        rewards.append(r)
    assert trunc and ts.last()  # both end after 1000 steps
    assert 0.0 <= min(rewards) < max(rewards) <= 1.0


def trajectory(task, seed: int = 0, n: int = 150) -> np.ndarray:
    env = gym.make(ID)
    obs, _ = env.reset(seed=seed, options={"task": task})
    out = [obs]
    for t in range(n):
        out.append(env.step(np.array([1.0 if (t // 25) % 2 == 0 else -1.0], np.float32))[0])
    return np.array(out)


@pytest.mark.parametrize("name", list(NOMINAL))
def test_each_parameter_changes_the_trajectory(name: str) -> None:
    fam = CartpoleSwingupParamsEnv.family
    base = fam.make_task(ID, NOMINAL)
    heavier = fam.make_task(ID, {**NOMINAL, name: 2.0 * NOMINAL[name]})
    a, b = trajectory(base), trajectory(heavier)
    np.testing.assert_array_equal(a[0], b[0])  # same seed: same initial state
    assert np.max(np.abs(a - b)) > 0.05, f"doubling {name} barely changed the motion"


def test_initial_state_comes_from_the_env_rng_only() -> None:
    env = gym.make(ID)
    np.random.seed(0)
    global_state = np.random.get_state()[1].copy()
    a, _ = env.reset(seed=11)
    b, _ = env.reset(seed=11)
    c, _ = env.reset(seed=12)
    d, _ = env.reset()  # unseeded: continues self.np_random, a new initial state
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(c, d)
    assert abs(a[1] + 1.0) < 1e-3  # the pole hangs down (cos = -1), dm_control's swing-up start
    np.testing.assert_array_equal(np.random.get_state()[1], global_state)  # global RNG untouched


def test_splits_cover_the_documented_factors() -> None:
    nominal = np.array(list(NOMINAL.values()))
    for split in ("train", "test"):
        f = np.array([[t.params[k] for k in NOMINAL] for t in metabench.tasks(ID, split)]) / nominal
        assert np.all((f >= 0.5) & (f <= 2.0))
    f = np.array([[t.params[k] for k in NOMINAL] for t in metabench.tasks(ID, "test-ood")]) / nominal
    assert np.all((f >= 0.5) & (f <= 3.0)) and np.all((f > 2.0).sum(axis=1) == 1)
    assert len(metabench.tasks(ID, "train")) == 40 and len(metabench.tasks(ID, "test-ood")) == 10


def test_bad_parameters_are_rejected_with_the_valid_range() -> None:
    env = gym.make(ID).unwrapped
    task = metabench.tasks(ID, "train")[0]
    for name, value, valid in [
        ("cart_mass", -1.0, r"\[0.25, 4.0\]"),
        ("pole_mass", 0.0, r"\[0.025, 0.4\]"),
        ("pole_length", 5.0, r"\[0.25, 4.0\]"),
    ]:
        with pytest.raises(TaskError, match=rf"'{name}' = {value} is outside its valid range {valid}"):
            env.set_task(dataclasses.replace(task, params={**task.params, name: value}))
    with pytest.raises(TaskError, match="not finite"):
        env.set_task(dataclasses.replace(task, params={**task.params, "pole_mass": float("inf")}))
    with pytest.raises(TaskError, match=r"shape \(2,\), expected \(\)"):
        env.set_task(dataclasses.replace(task, params={**task.params, "cart_mass": (1.0, 1.0)}))
    with pytest.raises(TaskError, match="unknown task parameter"):
        env.set_task(dataclasses.replace(task, params={**task.params, "gravity": 9.81}))
    with pytest.raises(ValueError, match="not finite"):
        env.reset(seed=0)
        env.step(np.array([np.nan], np.float32))
