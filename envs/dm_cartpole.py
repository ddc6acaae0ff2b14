"""CartpoleSwingupParams: dm_control's cartpole swing-up with the cart mass, pole mass and pole
length as the task, exposed through Gymnasium by a thin wrapper of ours (no shimmy)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import mujoco
import numpy as np
from gymnasium import spaces
from gymnasium.utils import EzPickle

from metabench.env import MetaEnv, check_action
from metabench.tasks import Param, Task, TaskFamily

#: dm_control's cartpole.xml values: cart mass (kg), pole mass (kg), pole length (m).
NOMINAL = {"cart_mass": 1.0, "pole_mass": 0.1, "pole_length": 1.0}
#: The keys of dm_control's observation dict, in the order they are flattened.
OBS_KEYS = ("position", "velocity")


class CartpoleParams(TaskFamily):
    """Each parameter = its dm_control value x 2^u, u ~ U(-1, 1) (factors in [0.5, 2]); out of
    distribution, one parameter (chosen uniformly) gets a factor U(2, 3) instead."""

    params = {
        name: Param(0.25 * value, 4.0 * value, doc=doc)
        for (name, value), doc in zip(
            NOMINAL.items(), ("cart mass (kg)", "pole mass (kg)", "pole length (m)"), strict=True
        )
    }
    split_sizes = {"train": 40, "test": 10, "test-ood": 10}
    split_seed = 2018

    def sample(self, rng: np.random.Generator, n: int, split: str) -> list[dict[str, Any]]:
        factors = 2.0 ** rng.uniform(-1.0, 1.0, size=(n, len(NOMINAL)))
        if split == "test-ood":
            which = rng.integers(len(NOMINAL), size=n)
            factors[np.arange(n), which] = rng.uniform(2.0, 3.0, size=n)
        nominal = np.array(list(NOMINAL.values()))
        return [dict(zip(NOMINAL, (row * nominal).tolist(), strict=True)) for row in factors]

    def validate(self, params: Mapping[str, Any]) -> None:
        # A fast path for the common case, three floats in range (a few us instead of tens): anything
        # else, NaN included, goes to the generic checks, which raise the error naming the problem.
        ok = params.keys() == self.params.keys() and all(
            type(params[name]) is float and spec.low <= params[name] <= spec.high
            for name, spec in self.params.items()
        )
        if not ok:
            super().validate(params)


#: dm_control's Gaussian sigmoid scale for value_at_margin = 0.1: tolerance(margin) = 0.1.
_GAUSSIAN_SCALE = math.sqrt(-2.0 * math.log(0.1))


def _gaussian_tolerance(x: float, margin: float) -> float:
    """``dm_control.utils.rewards.tolerance(x, bounds=(0, 0), margin=margin)`` for a scalar."""
    return 1.0 if x == 0.0 else math.exp(-0.5 * (abs(x) / margin * _GAUSSIAN_SCALE) ** 2)


def capsule_inertia(mass: float, radius: float, half_length: float) -> np.ndarray:
    """Principal moments of inertia of a solid capsule about its centre, as MuJoCo's compiler
    computes them (a cylinder plus two hemispheres of one density; axis along z)."""
    height = 2.0 * half_length
    v_sphere, v_cylinder = 4.0 / 3.0 * np.pi * radius**3, np.pi * radius**2 * height
    density = mass / (v_sphere + v_cylinder)
    m_sphere, m_cylinder = density * v_sphere, density * v_cylinder
    r2, h2 = radius * radius, height * height
    i_xx = m_cylinder * (3.0 * r2 + h2) / 12.0 + m_sphere * (0.4 * r2 + 0.25 * h2 + 0.375 * height * radius)
    i_zz = 0.5 * m_cylinder * r2 + 0.4 * m_sphere * r2
    return np.array([i_xx, i_xx, i_zz])


class CartpoleSwingupParamsEnv(MetaEnv, EzPickle):
    """dm_control's ``cartpole`` ``swingup`` task whose cart mass, pole mass and pole length are the
    unseen task.

    Why cartpole: it is the suite's smallest domain (2 degrees of freedom, so it steps fast and a
    meta-test stays cheap), swinging up needs a model of the dynamics (the energy to pump and the
    timing depend on all three parameters), and all three are edited in place exactly: masses and
    inertias are model fields, and the pole length is the capsule's half-length, position, inertial
    offset, inertia and bounding volumes, recomputed as MuJoCo's compiler does. A test compares the
    edited model, field by field and over a trajectory, with one compiled from XML with the same values.

    The model, physics step, observation, reward and initial-state distribution are dm_control's: the
    wrapper holds a ``dm_control.suite.cartpole.Physics`` and a ``cartpole.Balance(swing_up=True)``
    task, which draws the initial states. A step is dm_control's for this RK4 model (``mj_step`` then
    ``mj_step1``), and the observation and reward are read from the raw MuJoCo arrays with the task's
    formulas (its named indexing and ``rewards.tolerance`` calls cost 10x the physics step). A test
    steps this env and ``suite.load("cartpole", "swingup")`` side by side for a whole episode: the
    observations and rewards agree within 1e-12. Unlike dm_control, a diverging simulation raises no
    ``PhysicsError`` (non-finite actions are rejected before they reach MuJoCo).

    ## Observation
    ``Box(-inf, inf, (5,), float64)``: dm_control's observation dict flattened in the fixed key
    order ``position`` (cart x, cos and sin of the pole angle), ``velocity`` (cart, pole).

    ## Action
    ``Box(-1, 1, (1,), float32)``: the motor control (force = 10 * a, gear 10).

    ## Reward
    dm_control's smooth swing-up reward, in [0, 1]:
    ``r = (1 + cos th) / 2 * (4 + q(a)) / 5 * (1 + g(th_dot, 5)) / 2 * (1 + g(x, 2)) / 2``, where
    ``q(a) = 1 - a**2`` (``tolerance(a, margin=1, value_at_margin=0, sigmoid="quadratic")``) and
    ``g(z, m) = tolerance(z, bounds=(0, 0), margin=m)``, a Gaussian equal to 0.1 at ``|z| = m``.

    ## Task parameters
    ``cart_mass`` in [0.25, 4] kg (dm_control: 1), ``pole_mass`` in [0.025, 0.4] kg (0.1),
    ``pole_length`` in [0.25, 4] m (1): every valid range is 0.25x to 4x dm_control's value. The pole
    keeps its radius (0.045 m) and its mass, so a longer pole is thinner in density and has a larger
    moment of inertia.

    ## Splits
    Each parameter = dm_control's value x 2^u, u ~ U(-1, 1): ``train`` 40 and ``test`` 10 tasks
    (factors in [0.5, 2]); ``test-ood`` 10 tasks where one parameter, chosen uniformly, has a factor
    U(2, 3) and the others are drawn as in training. Split seed 2018.

    ## Episode
    1000 steps of 0.01 s (dm_control's 10 s time limit, one physics step per control step, RK4),
    truncated by the registered ``max_episode_steps``; never terminates. Each reset draws
    dm_control's initial state (cart near 0, pole hanging down, small velocities) with a
    ``numpy.random.RandomState`` reseeded from ``self.np_random``. No success criterion.

    ## Protocol and budgets
    ``n_adapt = 2``, ``n_eval = 1`` (episodes per task at meta-test). Meta-training env steps per tier:
    smoke 2,000; ci 100,000; standard 1,000,000.

    ## Source
    Tassa et al., "DeepMind Control Suite", 2018 (``cartpole``, ``swingup``), after Barto, Sutton and
    Anderson, 1983. The parameter ranges are ours.

    ## Version history
    * v0: initial version, on dm_control 1.0.28's cartpole.xml.
    """

    env_id = "metabench/CartpoleSwingupParams-v0"
    family = CartpoleParams()
    split_hashes = {
        "train": "654e0a0c10cf3aced7bee68586c22f89e0d5592de888b450328c3e3dec6cab62",
        "test": "567a476c0ac2c224a6747923555f520b0c5adbffc919a3e61c1bb3ebaa27dc8f",
        "test-ood": "9bd3bf2398e13cb8a2a76881e2bda4a9a549dad98edaab7400f67663c2189133",
    }
    metadata = {"render_modes": ["rgb_array"], "render_fps": 100}
    #: ``info`` holds only ``task_index`` and ``task_changed``: nothing is public.
    public_info_keys = frozenset()
    n_adapt, n_eval = 2, 1
    budgets = {"smoke": 2_000, "ci": 100_000, "standard": 1_000_000}

    def __init__(
        self, render_mode: str | None = None, width: int = 320, height: int = 240, camera_id: int = 0
    ):
        EzPickle.__init__(self, render_mode=render_mode, width=width, height=height, camera_id=camera_id)
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        from dm_control.suite import cartpole

        self.render_mode, self.width, self.height, self.camera_id = render_mode, width, height, camera_id
        self.physics = cartpole.Physics.from_xml_string(*cartpole.get_model_and_assets())
        # dm_control's task object: initial states, observation and reward. Its RandomState is
        # reseeded from self.np_random at every reset.
        self.dm_task = cartpole.Balance(swing_up=True, sparse=False, random=np.random.RandomState(0))
        self.observation_space = spaces.Box(-np.inf, np.inf, (5,), np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

        self._model, self._data = self.physics.model.ptr, self.physics.data.ptr
        m = self._model
        self._cart, self._pole = m.body("cart").id, m.body("pole_1").id
        self._pole_geom = m.geom("pole_1").id
        self._pole_bvh = int(m.body_bvhadr[self._pole])
        self._radius = float(m.geom_size[self._pole_geom, 0])
        self._cart_inertia_per_kg = m.body_inertia[self._cart] / m.body_mass[self._cart]

    def _apply_task(self, task: Task) -> None:
        p = task.params
        m, half, r = self._model, 0.5 * p["pole_length"], self._radius
        m.body_mass[self._cart] = p["cart_mass"]
        m.body_inertia[self._cart] = p["cart_mass"] * self._cart_inertia_per_kg
        # The pole is a capsule from the hinge along +z ("fromto 0 0 0 0 0 L"): its centre, its
        # body's centre of mass and its bounding volumes sit at or reach to half its length.
        m.body_mass[self._pole] = p["pole_mass"]
        m.body_inertia[self._pole] = capsule_inertia(p["pole_mass"], r, half)
        m.body_ipos[self._pole, 2] = half
        m.geom_pos[self._pole_geom, 2] = half
        m.geom_size[self._pole_geom, 1] = half
        m.geom_rbound[self._pole_geom] = half + r
        m.geom_aabb[self._pole_geom, 5] = half + r
        m.bvh_aabb[self._pole_bvh, 5] = half + r
        mujoco.mj_setConst(m, self._data)

    def _observation(self) -> np.ndarray:
        # dm_control's {"position": (x, cos, sin), "velocity": qvel}, read from the raw arrays:
        # the pole's xmat entries zz (8) and xz (2), as Physics.bounded_position reads them by name.
        d = self._data
        return np.array([d.qpos[0], d.xmat[self._pole, 8], d.xmat[self._pole, 2], d.qvel[0], d.qvel[1]])

    def _reward(self) -> float:
        """dm_control's ``Balance._get_reward(physics, sparse=False)``, computed on scalars (its
        ``rewards.tolerance`` calls cost 10x the physics step); a test checks it equals dm_control's."""
        d = self._data
        upright = (d.xmat[self._pole, 8] + 1.0) / 2.0
        centered = (1.0 + _gaussian_tolerance(d.qpos[0], 2.0)) / 2.0
        u = abs(d.ctrl[0])
        small_control = (4.0 + (1.0 - u * u if u < 1.0 else 0.0)) / 5.0
        small_velocity = (1.0 + _gaussian_tolerance(d.qvel[1], 5.0)) / 2.0
        return float(upright * small_control * small_velocity * centered)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._choose_task(options)
        self.dm_task.random.seed(int(self.np_random.integers(2**32)))
        with self.physics.reset_context():  # as dm_control's Environment.reset
            self.dm_task.initialize_episode(self.physics)
        return self._observation(), self._task_info()

    def step(self, action):
        a = check_action(action, self.action_space)
        self._data.ctrl[:] = a  # dm_control's Task.before_step: Physics.set_control
        # dm_control's Physics.step for an RK4 model (legacy_step): mj_step, then mj_step1 so that
        # positions and xmat are current for the observation and reward.
        mujoco.mj_step(self._model, self._data)
        mujoco.mj_step1(self._model, self._data)
        return self._observation(), self._reward(), False, False, self._task_info()

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self.physics.render(height=self.height, width=self.width, camera_id=self.camera_id)

    def close(self) -> None:
        """Free dm_control's rendering contexts (the physics stays usable)."""
        physics = getattr(self, "physics", None)
        if physics is not None and physics._contexts is not None:
            with physics._contexts_lock:
                physics._free_rendering_contexts()
