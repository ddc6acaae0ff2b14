"""Random-dynamics families (rand_param_envs' scaling on the Gymnasium v5 models)."""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import metabench
from metabench.tasks import Task, TaskError, family

PAIRS = [
    ("metabench/HalfCheetahRandParams-v0", "HalfCheetah-v5"),
    ("metabench/HopperRandParams-v0", "Hopper-v5"),
    ("metabench/Walker2dRandParams-v0", "Walker2d-v5"),
]
IDS = [p[0] for p in PAIRS]
# The documented scales (rand_param_envs'): element = nominal * base**u.
BASES = {"body_mass": 1.5, "body_inertia": 1.5, "dof_damping": 1.3, "geom_friction": 1.5}
FIELDS = tuple(BASES)


def uniform_task(env_id: str, **exponents: float):
    """A custom task with one exponent per field (0 where not given)."""
    fam = family(env_id)
    return fam.make_task(env_id, {n: (exponents.get(n, 0.0),) * p.size for n, p in fam.params.items()})


@pytest.mark.parametrize(("env_id", "gym_id"), PAIRS)
def test_nominal_task_is_the_gymnasium_env(env_id: str, gym_id: str) -> None:
    """With every exponent 0 the model is v5's, and observation, reward and termination are v5's."""
    ours, ref = gym.make(env_id), gym.make(gym_id)
    model = ours.unwrapped.model
    sizes = {n: p.size for n, p in family(env_id).params.items()}
    assert sizes == {
        "body_mass": model.nbody,
        "body_inertia": 3 * model.nbody,
        "dof_damping": model.nv,
        "geom_friction": 3 * model.ngeom,
    }
    a, _ = ours.reset(seed=5, options={"task": uniform_task(env_id)})
    b, _ = ref.reset(seed=5)
    np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(0)
    for _ in range(120):
        act = rng.uniform(-1, 1, ref.action_space.shape)
        a, ra, ta, _, ia = ours.step(act)
        b, rb, tb, _, ib = ref.step(act)
        np.testing.assert_array_equal(a, b)
        assert ra == pytest.approx(rb, abs=1e-12) and ta == tb
        assert ia["x_velocity"] == pytest.approx(ib["x_velocity"], abs=1e-12)
        if ta:
            break


@pytest.mark.parametrize("env_id", IDS)
def test_in_place_edit_equals_a_model_compiled_with_the_values(env_id: str) -> None:
    """Reads the scaled fields back, then compiles the same values through MjSpec: same trajectory.

    The body_inertia exponents are made equal per body: rand_param_envs' independent per-element
    scaling breaks the principal inertias' triangle inequality, which MuJoCo's compiler rejects (the
    runtime simulates such bodies all the same).
    """
    env = gym.make(env_id).unwrapped
    params = dict(metabench.tasks(env_id, "train")[0].params)
    params["body_inertia"] = tuple(np.repeat(params["body_mass"], 3))
    task = env.family.make_task(env_id, params)
    base = mujoco.MjModel.from_xml_path(env.fullpath)
    scale = {n: BASES[n] ** np.asarray(params[n]).reshape(getattr(base, n).shape) for n in FIELDS}
    env.reset(seed=0, options={"task": task})
    for n in FIELDS:
        np.testing.assert_allclose(getattr(env.model, n), getattr(base, n) * scale[n], rtol=1e-15)

    spec = mujoco.MjSpec.from_file(env.fullpath)
    spec.compiler.inertiafromgeom = mujoco.mjtInertiaFromGeom.mjINERTIAFROMGEOM_FALSE
    spec.compiler.settotalmass = -1
    for i in range(1, base.nbody):
        body = spec.body(base.body(i).name)
        body.explicitinertial = True
        body.mass = base.body_mass[i] * scale["body_mass"][i]
        body.inertia = base.body_inertia[i] * scale["body_inertia"][i]
        body.ipos, body.iquat = base.body_ipos[i], base.body_iquat[i]
    for geom, friction, s in zip(spec.geoms, base.geom_friction, scale["geom_friction"], strict=True):
        geom.friction = friction * s
    for j in range(base.njnt):
        dof = base.jnt_dofadr[j]
        spec.joint(base.joint(j).name).damping = base.dof_damping[dof] * scale["dof_damping"][dof]
    compiled = spec.compile()
    for n in FIELDS:
        np.testing.assert_allclose(getattr(compiled, n), getattr(env.model, n), rtol=1e-12)

    rng = np.random.default_rng(1)
    datas = [mujoco.MjData(m) for m in (env.model, compiled, base)]
    for _ in range(200):
        u = rng.uniform(-1, 1, base.nu)
        for m, d in zip((env.model, compiled, base), datas, strict=True):
            d.ctrl[:] = u
            mujoco.mj_step(m, d, nstep=env.frame_skip)
    assert np.abs(datas[0].qpos - datas[1].qpos).max() < 1e-8
    assert np.abs(datas[0].qpos - datas[2].qpos).max() > 1e-2, "the task changed nothing"


def test_friction_changes_the_cheetah_trajectory() -> None:
    env_id = IDS[0]
    env = gym.make(env_id)
    rng = np.random.default_rng(3)
    actions = rng.uniform(-1, 1, (100, 6))
    final = []
    for u in (-3.0, 3.0):
        env.reset(seed=0, options={"task": uniform_task(env_id, geom_friction=u)})
        for a in actions:
            obs, *_ = env.step(a)
        final.append((obs, env.unwrapped.data.qpos[0]))
    assert np.abs(final[0][0] - final[1][0]).max() > 0.1
    assert abs(final[0][1] - final[1][1]) > 0.1  # the same actions carry it elsewhere


@pytest.mark.parametrize("env_id", IDS)
def test_splits_and_out_of_range_exponents(env_id: str) -> None:
    for split, lo, hi in (("train", 0.0, 3.0), ("test", 0.0, 3.0), ("test-ood", 3.0, 4.0)):
        tasks = metabench.tasks(env_id, split)
        assert len(tasks) == {"train": 40, "test": 10, "test-ood": 10}[split]
        u = np.abs(np.concatenate([np.concatenate([t.params[n] for n in FIELDS]) for t in tasks]))
        assert u.max() <= hi and (u.min() > lo if split == "test-ood" else u.min() >= lo)
    env = gym.make(env_id).unwrapped
    with pytest.raises(TaskError, match=r"'dof_damping' .* outside its valid range \[-4.0, 4.0\]"):
        env.set_task(_with(env_id, dof_damping=4.5))
    with pytest.raises(TaskError, match=r"'body_mass' has shape \(2,\)"):
        env.family.make_task(env_id, {**uniform_task(env_id).params, "body_mass": (0.0, 0.0)})


def _with(env_id: str, **exponents: float):
    """A train task with some fields' exponents all set to a value, bypassing validation."""
    task = metabench.tasks(env_id, "train")[0]
    params = dict(task.params)
    for name, value in exponents.items():
        params[name] = (value,) * len(params[name])
    return Task(task.family, "custom", -1, params)
