"""PointNav, HalfCheetahVel(+NonStationary), registration and in-place model edits."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import metabench
from metabench.env import ModelParams
from metabench.tasks import TaskError

VEL = "metabench/HalfCheetahVel-v0"
NS = "metabench/HalfCheetahVelNonStationary-v0"


def test_half_cheetah_vel_steps_gymnasium_physics() -> None:
    ours, ref = gym.make(VEL), gym.make("HalfCheetah-v5")
    task = metabench.tasks(VEL, "test")[0]
    a, _ = ours.reset(seed=11, options={"task": task})
    b, _ = ref.reset(seed=11)
    np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(0)
    for _ in range(200):
        act = rng.uniform(-1, 1, 6)
        a, ra, *_ = ours.step(act)
        b, _, _, _, info = ref.step(act)
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ours.unwrapped.data.qpos, ref.unwrapped.data.qpos)
    np.testing.assert_array_equal(ours.unwrapped.data.qvel, ref.unwrapped.data.qvel)
    # The reward is the documented formula: -|v - v*| - 0.05 |a|^2, with v as Gymnasium computes it.
    expected = -abs(info["x_velocity"] - task.params["velocity"]) - 0.05 * float(np.sum(act**2))
    assert ra == pytest.approx(expected, abs=1e-12)


def test_a_changed_task_changes_the_reward() -> None:
    env = gym.make(VEL)
    slow, fast = metabench.tasks(VEL, "train")[0], metabench.tasks(VEL, "test-ood")[0]
    returns = []
    for task in (slow, fast):
        env.reset(seed=0, options={"task": task})
        returns.append(sum(env.step(np.zeros(6))[1] for _ in range(20)))
    # Standing still costs |v*| per step: the faster target pays more.
    assert returns[1] < returns[0] - 20 * (fast.params["velocity"] - slow.params["velocity"]) + 1.0


def test_non_stationary_changes_target_inside_episode() -> None:
    env = gym.make(NS)
    task = metabench.tasks(NS, "test")[4]
    env.reset(seed=0, options={"task": task})
    changes, seen, steps = 0, set(), 0
    done = False
    while not done:
        _, _, term, trunc, info = env.step(env.action_space.sample())
        changes += info["task_changed"]
        seen.add(env.unwrapped.task.split)
        steps, done = steps + 1, term or trunc
    assert steps == 800 and changes >= 1
    assert seen == {"test"}, "tasks inside a test episode must come from the test split"
    env.reset(seed=1)
    assert env.unwrapped.task == task, "every episode starts from the task that was set"


def test_non_stationary_rejects_unknown_schedule() -> None:
    with pytest.raises(ValueError, match="unknown schedule 'space'; valid: 'time'"):
        gym.make(NS, schedule="space")


def test_point_nav_rewards() -> None:
    dense, sparse = gym.make("metabench/PointNav-v0"), gym.make("metabench/PointNavSparse-v0")
    goal = metabench.tasks("metabench/PointNav-v0", "test")[0]
    dense.reset(seed=0, options={"task": goal})
    sparse.reset(seed=0, options={"task": metabench.tasks("metabench/PointNavSparse-v0", "test")[0]})
    g = np.array(goal.params["goal"])
    pos = np.zeros(2)
    step_s = np.clip(g, -0.1, 0.1) * 0.9
    for _ in range(20):
        pos, rd, _, _, info_d = dense.step(np.clip(g - pos, -0.1, 0.1) * 0.9)  # walk to the goal
        step = np.clip(g - pos, -0.1, 0.1) * 0.9
        _, rs, _, _, info_s = sparse.step(step_s)
        step_s = step
        assert rd == pytest.approx(-info_d["distance"])
        assert rs == (1.0 + rd if info_d["distance"] <= 0.2 else 0.0)
    assert info_d["success"] and info_s["success"] and rs > 0.8
    # Actions beyond the box are clipped to 0.1 per coordinate, as in PEARL.
    dense.reset(seed=0)
    obs, *_ = dense.step(np.array([0.1, -0.1], dtype=np.float32))
    np.testing.assert_allclose(obs, [0.1, -0.1])
    with pytest.raises(ValueError, match="not finite"):
        dense.step(np.array([np.nan, 0.0]))


def test_in_place_edit_matches_a_compiled_model() -> None:
    """ModelParams + mj_setConst gives the same trajectory as a model compiled with those values."""
    env = gym.make(VEL).unwrapped
    scale = np.linspace(0.6, 1.6, env.model.nbody)
    edited_model = env.model
    ModelParams(edited_model, env.data, ["body_mass", "body_inertia"]).set(
        body_mass=scale, body_inertia=scale[:, None]
    )
    spec = mujoco.MjSpec.from_file(env.fullpath)
    spec.compiler.inertiafromgeom = mujoco.mjtInertiaFromGeom.mjINERTIAFROMGEOM_FALSE
    spec.compiler.settotalmass = -1  # the XML rescales masses to a total of 14
    base = mujoco.MjModel.from_xml_path(env.fullpath)
    for i in range(1, base.nbody):
        body = spec.body(base.body(i).name)
        body.explicitinertial = True
        body.mass = base.body_mass[i] * scale[i]
        body.inertia = base.body_inertia[i] * scale[i]
        body.ipos, body.iquat = base.body_ipos[i], base.body_iquat[i]
    compiled = spec.compile()
    np.testing.assert_allclose(compiled.body_mass, edited_model.body_mass)
    rng = np.random.default_rng(1)
    datas = [mujoco.MjData(m) for m in (edited_model, compiled)]
    for _ in range(200):
        u = rng.uniform(-1, 1, 6)
        for m, d in zip((edited_model, compiled), datas, strict=True):
            d.ctrl[:] = u
            mujoco.mj_step(m, d, nstep=5)
    assert np.abs(datas[0].qpos - datas[1].qpos).max() < 1e-8
    # Without mj_setConst the derived constants stay stale and the trajectories drift apart.
    stale = mujoco.MjModel.from_xml_path(env.fullpath)
    stale.body_mass[:] *= scale
    stale.body_inertia[:] *= scale[:, None]
    np.testing.assert_allclose(stale.body_subtreemass[0], base.body_subtreemass[0])
    assert abs(edited_model.body_subtreemass[0] - base.body_subtreemass[0]) > 1e-3


def test_registration_works_without_import() -> None:
    code = (
        "import gymnasium as gym, sys; "
        "env = gym.make('metabench:metabench/PointNav-v0'); env.reset(seed=0); "
        "print(env.spec.id)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "metabench/PointNav-v0"


def test_import_is_light() -> None:
    heavy = ("mujoco", "metaworld", "torch", "dm_control", "ray")
    code = f"import sys, metabench; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", "import metabench must not import heavy modules"


def test_unknown_env_id_is_a_clear_error() -> None:
    with pytest.raises(gym.error.NameNotFound):
        gym.make("metabench/HalfCheetahVell-v0")
    with pytest.raises(TaskError, match="unknown env id"):
        metabench.tasks("metabench/Nope-v0")
