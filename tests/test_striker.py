"""StrikerDynamics: EPI's grids, the ball's parameters in the compiled model, reward and success."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import metabench
from metabench.tasks import TaskError

ID = "metabench/StrikerDynamics-v0"
# EPI's grids, written out again here so that a change in the module shows up as a failure.
EPI_TRAIN = list(itertools.product((0.2, 1.0, 1.8, 2.6, 3.4), (0.1, 0.3, 0.5, 0.7, 0.9)))
INTERLEAVED = list(itertools.product((0.6, 1.4, 2.2, 3.0, 3.8, 4.6), (0.2, 0.4, 0.6, 0.8, 1.0, 1.2)))


def points(split: str) -> list[tuple[float, float]]:
    return [(t.params["mass_scale"], t.params["damping"]) for t in metabench.tasks(ID, split)]


def test_splits_are_epis_grids() -> None:
    assert points("train") == EPI_TRAIN
    inside = [(m, d) for m, d in INTERLEAVED if m <= 3.4 and d <= 0.9]
    beyond = [(m, d) for m, d in INTERLEAVED if not (m <= 3.4 and d <= 0.9)]
    assert points("test") == inside and len(inside) == 16
    assert points("test-ood") == beyond and len(beyond) == 20


def test_train_tasks_set_the_grid_values_in_the_compiled_model() -> None:
    env = gym.make(ID).unwrapped
    model = env.model
    fresh = mujoco.MjModel.from_xml_path(env.fullpath)
    ball = model.body("ball").id
    dofs = [model.joint("ball_x").dofadr[0], model.joint("ball_y").dofadr[0]]
    others = np.setdiff1d(np.arange(model.nbody), [ball])
    arm_dofs = np.setdiff1d(np.arange(model.nv), dofs)
    for task, (factor, damping) in zip(metabench.tasks(ID, "train"), EPI_TRAIN, strict=True):
        env.reset(seed=0, options={"task": task})
        assert env.model is model, "a task switch must edit the compiled model, not build a new one"
        assert model.body_mass[ball] == pytest.approx(factor * fresh.body_mass[ball], rel=1e-12)
        np.testing.assert_allclose(model.body_inertia[ball], factor * fresh.body_inertia[ball], rtol=1e-12)
        np.testing.assert_array_equal(model.dof_damping[dofs], [damping, damping])
        # Nothing else moves: the arm's masses and damping stay as compiled.
        np.testing.assert_array_equal(model.body_mass[others], fresh.body_mass[others])
        np.testing.assert_array_equal(model.dof_damping[arm_dofs], fresh.dof_damping[arm_dofs])
        assert model.body_subtreemass[ball] == model.body_mass[ball]  # mj_setConst ran


def strike(env: gym.Env, task, n_steps: int = 60) -> np.ndarray:
    """The ball's (x, y) after the same scripted strike: full shoulder-pan torque for 6 steps."""
    env.reset(seed=0, options={"task": task})
    action = np.zeros(7)
    for k in range(n_steps):
        action[0] = 3.0 if k < 6 else 0.0
        obs, *_ = env.step(action)
    return obs[17:19]


def test_ball_mass_and_damping_change_the_balls_motion() -> None:
    env = gym.make(ID)
    fam = env.unwrapped.family
    start = np.array([0.5, -0.3])
    light = strike(env, fam.make_task(ID, {"mass_scale": 0.2, "damping": 0.1}))
    heavy = strike(env, fam.make_task(ID, {"mass_scale": 3.4, "damping": 0.1}))
    damped = strike(env, fam.make_task(ID, {"mass_scale": 0.2, "damping": 0.9}))
    assert np.linalg.norm(light - start) > 0.1, "the strike must hit the ball"
    assert np.linalg.norm(light - heavy) > 0.1
    assert np.linalg.norm(light - damped) > 0.1
    # More damping, shorter run after the same strike.
    assert np.linalg.norm(damped - start) < np.linalg.norm(light - start)


def compiled_with(path: str, mass_scale: float, damping: float) -> mujoco.MjModel:
    """The Striker model compiled from XML with the ball's mass and slide damping written in it."""
    root = ET.parse(path).getroot()
    nominal = mujoco.MjModel.from_xml_path(path).body("ball").mass[0]
    (geom,) = [g for g in root.iter("geom") if g.get("name") == "ball"]
    geom.set("mass", repr(float(nominal * mass_scale)))  # the inertia follows from the mass
    for joint in root.iter("joint"):
        if joint.get("name") in ("ball_x", "ball_y"):
            joint.set("damping", repr(damping))
    return mujoco.MjModel.from_xml_string(ET.tostring(root, encoding="unicode"))


def test_in_place_edit_matches_a_model_compiled_with_the_same_values() -> None:
    env = gym.make(ID).unwrapped
    task = metabench.tasks(ID, "test-ood")[-1]  # factor 4.6, damping 1.2: the farthest from nominal
    env.set_task(task)
    env.set_task(metabench.tasks(ID, "train")[0])  # switch away and back: the values must not drift
    env.reset(seed=0, options={"task": task})
    ref = compiled_with(env.fullpath, task.params["mass_scale"], task.params["damping"])
    for field in ("body_mass", "body_inertia", "dof_damping", "body_subtreemass", "dof_invweight0"):
        np.testing.assert_allclose(getattr(env.model, field), getattr(ref, field), rtol=1e-12, err_msg=field)
    data = mujoco.MjData(ref)
    data.qpos[:], data.qvel[:] = env.data.qpos, env.data.qvel
    rng = np.random.default_rng(0)
    for k in range(200):
        action = rng.uniform(-1.0, 1.0, 7)
        action[0] = 3.0 if k < 6 else action[0]  # strike the ball first
        env.step(action)
        data.ctrl[:] = action
        mujoco.mj_step(ref, data, nstep=5)
    assert np.linalg.norm(env.data.qpos[7:]) > 0.1, "the ball must have moved"
    np.testing.assert_allclose(env.data.qpos, data.qpos, rtol=0, atol=1e-8)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (
            {"mass_scale": -1.0, "damping": 0.5},
            r"'mass_scale' = -1.0 is outside its valid range \[1e-06, 10.0\]",
        ),
        (
            {"mass_scale": 0.0, "damping": 0.5},
            r"'mass_scale' = 0.0 is outside its valid range \[1e-06, 10.0\]",
        ),
        ({"mass_scale": 1.0, "damping": -0.1}, r"'damping' = -0.1 is outside its valid range \[0.0, 5.0\]"),
        ({"mass_scale": 11.0, "damping": 0.5}, r"outside its valid range \[1e-06, 10.0\]"),
        ({"mass_scale": 1.0}, r"lacks parameter\(s\) \['damping'\]"),
        ({"mass_scale": 1.0, "damping": 0.5, "friction": 1.0}, r"unknown task parameter\(s\) \['friction'\]"),
    ],
)
def test_bad_parameters_are_rejected_with_the_valid_range(params: dict, match: str) -> None:
    env = gym.make(ID).unwrapped
    with pytest.raises(TaskError, match=match):
        env.family.make_task(ID, params)
    task = metabench.tasks(ID, "train")[0]
    with pytest.raises(TaskError, match=match):
        env.set_task(type(task)(ID, "custom", -1, params))


def test_reward_is_the_documented_formula_and_success_needs_the_ball_in_the_goal() -> None:
    env = gym.make(ID)
    env.reset(seed=3, options={"task": metabench.tasks(ID, "test")[0]})
    action = np.linspace(-2.0, 2.0, 7)
    obs, reward, terminated, truncated, info = env.step(action)
    tips, ball, goal = obs[14:17], obs[17:20], obs[20:23]
    expected = 3 * -np.linalg.norm(ball - goal) - 0.1 * np.sum(action**2) + 0.5 * -np.linalg.norm(tips - ball)
    assert reward == pytest.approx(expected, abs=1e-12)
    assert not terminated and not truncated and info["success"] is False
    np.testing.assert_allclose(goal, [0.0, 1.0, -0.323])
    # Put the ball into the goal by hand: success while it is within 0.08 of the goal's centre.
    u = env.unwrapped
    for offset, inside in ((0.05, True), (0.1, False)):
        qpos, qvel = u.data.qpos.copy(), np.zeros(u.model.nv)
        qpos[7:9] = np.array([0.0, 1.0 - offset]) - np.array([0.5, -0.3])
        u.set_state(qpos, qvel)
        _, _, _, _, info = env.step(np.zeros(7))
        assert info["success"] is inside and info["distance"] == pytest.approx(offset, abs=1e-3)


def test_set_task_inside_an_episode_keeps_the_state() -> None:
    env = gym.make(ID).unwrapped
    env.reset(seed=0, options={"task": metabench.tasks(ID, "train")[0]})
    for _ in range(5):
        env.step(np.full(7, 1.0))
    qpos, qvel, tips = env.data.qpos.copy(), env.data.qvel.copy(), env.data.body("tips_arm").xpos.copy()
    env.set_task(metabench.tasks(ID, "test-ood")[0])
    np.testing.assert_array_equal(env.data.qpos, qpos)
    np.testing.assert_array_equal(env.data.qvel, qvel)
    np.testing.assert_array_equal(env.data.body("tips_arm").xpos, tips)
