"""Random dynamics as rand_param_envs defines them (PEARL's hopper/walker "rand params", and a cheetah).

Each task scales every element of a MuJoCo model's ``body_mass``, ``body_inertia`` and
``geom_friction`` by ``1.5**u`` and of its ``dof_damping`` by ``1.3**u``, one exponent ``u`` per element
(rand_param_envs' ``RandomEnv.sample_tasks`` with ``log_scale_limit=3``: ``u ~ U(-3, 3)``). The rewards,
observations and terminations are those of the Gymnasium v5 envs the classes subclass.

As in rand_param_envs, the three principal inertias of a body are scaled independently, which mostly
breaks their triangle inequality (A + B >= C, impossible for a real body): MuJoCo simulates such a
model all the same, but would refuse to compile it from XML. Elements whose nominal value is 0 (the
world body's mass and inertia, undamped dofs) and the torsional and rolling friction components (the
contacts have ``condim`` 3) change nothing, and a contact takes the larger friction of its two geoms.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv
from gymnasium.utils import EzPickle

from metabench.env import ModelParams, MujocoMetaEnv, check_action
from metabench.tasks import Param, Task, TaskFamily

#: Model fields a task scales, in the order of the task's parameters, and the base of each scale.
FIELDS: tuple[str, ...] = ("body_mass", "body_inertia", "dof_damping", "geom_friction")
BASES: Mapping[str, float] = {"body_mass": 1.5, "body_inertia": 1.5, "dof_damping": 1.3, "geom_friction": 1.5}


class LogScales(TaskFamily):
    """One exponent per model element: U(-3, 3) in distribution, |u| in (3, 4] out of distribution.

    The parameter sizes are the model's (``nbody``, ``3 nbody``, ``nv``, ``3 ngeom``), written here so
    that splits are built without loading MuJoCo; a test checks them against the model.
    """

    split_sizes = {"train": 40, "test": 10, "test-ood": 10}
    limit = 3.0  # rand_param_envs' log_scale_limit
    ood_limit = 4.0

    def __init__(self, nbody: int, nv: int, ngeom: int, split_seed: int):
        sizes = {"body_mass": nbody, "body_inertia": 3 * nbody, "dof_damping": nv, "geom_friction": 3 * ngeom}
        self.params = {
            name: Param(
                -self.ood_limit,
                self.ood_limit,
                size=n,
                doc=f"exponents u: {name} is scaled by {BASES[name]}**u element-wise",
            )
            for name, n in sizes.items()
        }
        self.split_seed = split_seed
        self._sizes = tuple((name, p.size) for name, p in self.params.items())

    def validate(self, params: Mapping[str, Any]) -> None:
        """As :meth:`TaskFamily.validate`, with a vectorised fast path for well-formed tasks (on the
        path of every ``set_task``); anything else goes to the base class for its error message."""
        if len(params) == len(self._sizes) and all(
            isinstance(params.get(name), tuple) and len(params[name]) == n for name, n in self._sizes
        ):
            u = np.array(sum((params[name] for name, _ in self._sizes), ()), dtype=np.float64)
            lo, hi = u.min(), u.max()  # NaN propagates and fails the comparison below
            if -self.ood_limit <= lo and hi <= self.ood_limit:
                return
        super().validate(params)

    def sample(self, rng: np.random.Generator, n: int, split: str) -> list[dict[str, Any]]:
        total = sum(p.size or 1 for p in self.params.values())
        if split != "test-ood":
            u = rng.uniform(-self.limit, self.limit, size=(n, total))
        else:
            # |u| in (limit + 1e-6, ood_limit]: outside the training range even after rounding.
            span = self.ood_limit - self.limit - 1e-6
            u = (self.ood_limit - rng.uniform(0.0, span, size=(n, total))) * rng.choice(
                (-1.0, 1.0), (n, total)
            )
        out = []
        for row in u:
            params, i = {}, 0
            for name, p in self.params.items():
                params[name] = tuple(float(x) for x in row[i : i + p.size])
                i += p.size
            out.append(params)
        return out


class _RandParamsEnv(MujocoMetaEnv):
    """Edits the compiled model in place per task (:class:`metabench.env.ModelParams`) and steps the
    physics without Gymnasium's per-step overhead (no ``mj_rnePostConstraint``: it fills ``cfrc_*``
    only, which neither the observation nor the state uses, so trajectories are the same)."""

    #: Task exponents are turned into scale factors once per task object and kept (bounded).
    _cache_size: ClassVar[int] = 256
    #: The task is the dynamics, not a target: ``reward_ctrl`` follows from the action,
    #: ``reward_survive`` from the observed state, ``reward_forward`` is the reward minus those,
    #: ``x_velocity`` is ``reward_forward`` over its weight and ``z_distance_from_origin`` is the
    #: observed height. Hidden: ``x_position``, which the observation leaves out.
    public_info_keys = frozenset(
        {"reward_forward", "reward_ctrl", "reward_survive", "x_velocity", "z_distance_from_origin"}
    )

    def _init_rand_params(self) -> None:
        self._dt = self.dt
        self._obs_start = 1 if self._exclude_current_positions_from_observation else 0
        self._params = ModelParams(self.model, self.data, FIELDS)
        self._shapes = {name: self._params.nominal[name].shape for name in FIELDS}
        self._factors: dict[int, tuple[Task, dict[str, np.ndarray]]] = {}

    def _apply_task(self, task: Task) -> None:
        hit = self._factors.get(id(task))
        if hit is None or hit[0] is not task:
            if len(self._factors) >= self._cache_size:
                self._factors.clear()
            factors = {
                name: np.power(BASES[name], np.asarray(task.params[name])).reshape(self._shapes[name])
                for name in FIELDS
            }
            hit = self._factors[id(task)] = (task, factors)
        self._params.set(**hit[1])

    def _simulate(self, action: Any) -> tuple[np.ndarray, Any, float]:
        """Step the physics; return the action, ``data.qpos`` and the root's forward velocity."""
        a = check_action(action, self.action_space)
        data = self.data
        qpos = data.qpos  # MuJoCo hands out the same array view every time
        x_before = qpos[0]
        data.ctrl[:] = a
        mujoco.mj_step(self.model, data, nstep=self.frame_skip)
        return a, qpos, (qpos[0] - x_before) / self._dt


class HalfCheetahRandParamsEnv(_RandParamsEnv, HalfCheetahEnv):
    """Gymnasium's HalfCheetah-v5 with hidden random dynamics (rand_param_envs' scaling, our family).

    rand_param_envs' random dynamics (the scaling PEARL, Rakelly et al., 2019, uses for its hopper and
    walker) applied to HalfCheetah-v5's model; the reward is HalfCheetah-v5's, so the task only changes
    how the body responds.

    ## Observation
    ``Box(-inf, inf, (17,), float64)``: qpos without the root x (8) and qvel (9), as HalfCheetah-v5.

    ## Action
    ``Box(-1, 1, (6,), float32)``: joint torques, as HalfCheetah-v5.

    ## Reward
    HalfCheetah-v5's: ``r = v - 0.1 * sum(a**2)``, with ``v = (x_after - x_before) / dt`` the root's
    forward velocity over the step (``dt`` = 0.05 s). ``info`` holds ``x_position``, ``x_velocity``,
    ``reward_forward`` and ``reward_ctrl``, as HalfCheetah-v5.

    ## Task parameters
    Exponents ``u``, one per model element, each valid in [-4, 4]: ``body_mass`` (8, one per body
    including the world), ``body_inertia`` (24, the 8 bodies' principal inertias), ``dof_damping`` (9)
    and ``geom_friction`` (27, sliding/torsional/rolling of the 9 geoms). The model's element is its
    nominal value times ``1.5**u`` (``1.3**u`` for ``dof_damping``). Some elements change nothing (the
    world's mass, the root dofs' damping, torsional and rolling friction): see the notes in
    ``metabench.envs.rand_params``.

    ## Splits
    ``train``: 40 and ``test``: 10 tasks (PEARL's 40/10) with every ``u ~ U(-3, 3)``, drawn together
    and cut apart; ``test-ood``: 10 tasks with every ``|u|`` in (3, 4] (random signs): every element
    beyond the training range. Split seed 4.

    ## Episode
    200 steps (PEARL's horizon); never terminates early. No success criterion.

    ## Source and departures
    This family is ours. rand_param_envs (dennisl88/rand_param_envs) ships ``hopper_rand_params.py``,
    ``walker2d_rand_params.py`` and a PR2 reacher, no cheetah; PEARL (katerakelly/oyster) has
    ``configs/hopper_rand_params.json`` and ``walker_rand_params.json`` only. (CEMRL's
    meta_rand_envs has cheetah random-parameter envs, non-stationary, with other choices.) What it
    takes from rand_param_envs' ``base.py`` (``RandomEnv.sample_tasks``): the fields, the bases
    (1.5; 1.3 for damping), one exponent per element, ``log_scale_limit`` 3; from PEARL: 40/10 tasks
    and the 200-step horizon. ``test-ood`` is ours.

    ## Version history
    * v0: initial version, on HalfCheetah-v5's model.
    """

    env_id = "metabench/HalfCheetahRandParams-v0"
    family = LogScales(nbody=8, nv=9, ngeom=9, split_seed=4)
    split_hashes = {
        "train": "cdb569e8920dfbdc78272efd949e4eea2ff2676a5acc351afff2d2a6c5d96832",
        "test": "309062a67fa4ce4219bd014baa0c67d3ed39cab59e0f7cbf2554218c5a927725",
        "test-ood": "0e042885b087824445a0dbb041b5affdb6672b7642503497d3c34fce69466686",
    }
    n_adapt, n_eval = 2, 1

    def __init__(self, **kwargs: Any):
        HalfCheetahEnv.__init__(self, **kwargs)
        EzPickle.__init__(self, **kwargs)
        self._init_rand_params()

    def step(self, action):
        a, qpos, v = self._simulate(action)
        forward = self._forward_reward_weight * v
        ctrl = self._ctrl_cost_weight * a.dot(a)
        obs = np.concatenate((qpos[self._obs_start :], self.data.qvel))
        info = {
            "x_position": qpos[0],
            "x_velocity": v,
            "reward_forward": forward,
            "reward_ctrl": -ctrl,
            **self._task_info(),
        }
        if self.render_mode == "human":
            self.render()
        return obs, forward - ctrl, False, False, info


class _HopperLike(_RandParamsEnv):
    """The step of Hopper-v5 and Walker2d-v5, which differ only in their healthy check."""

    def _is_healthy(self, qpos: np.ndarray, qvel: np.ndarray) -> bool:
        raise NotImplementedError

    def step(self, action):
        a, qpos, v = self._simulate(action)
        qvel = self.data.qvel
        healthy = self._is_healthy(qpos, qvel)
        forward = self._forward_reward_weight * v
        survive = self._healthy_reward if healthy else 0.0
        ctrl = self._ctrl_cost_weight * a.dot(a)
        obs = np.concatenate((qpos[self._obs_start :], qvel.clip(-10.0, 10.0)))
        info = {
            "x_position": qpos[0],
            "z_distance_from_origin": qpos[1] - self.init_qpos[1],
            "x_velocity": v,
            "reward_forward": forward,
            "reward_ctrl": -ctrl,
            "reward_survive": survive,
            **self._task_info(),
        }
        if self.render_mode == "human":
            self.render()
        return obs, forward + survive - ctrl, (not healthy) and self._terminate_when_unhealthy, False, info


class HopperRandParamsEnv(_HopperLike, HopperEnv):
    """Gymnasium's Hopper-v5 with hidden random dynamics (PEARL's ``hopper-rand-params``).

    rand_param_envs' random dynamics (used by PEARL, Rakelly et al., 2019) on Hopper-v5's model; the
    reward and termination are Hopper-v5's.

    ## Observation
    ``Box(-inf, inf, (11,), float64)``: qpos without the root x (5) and qvel clipped to [-10, 10] (6),
    as Hopper-v5.

    ## Action
    ``Box(-1, 1, (3,), float32)``: joint torques, as Hopper-v5.

    ## Reward
    Hopper-v5's: ``r = v + 1[healthy] - 1e-3 * sum(a**2)``, with ``v`` the root's forward velocity over
    the step (``dt`` = 0.008 s). ``info`` as Hopper-v5.

    ## Task parameters
    Exponents ``u``, each valid in [-4, 4]: ``body_mass`` (5), ``body_inertia`` (15), ``dof_damping``
    (6), ``geom_friction`` (15); element = nominal × ``1.5**u`` (``1.3**u`` for damping). Some elements
    change nothing: see the notes in ``metabench.envs.rand_params``.

    ## Splits
    ``train``: 40 and ``test``: 10 tasks with every ``u ~ U(-3, 3)``; ``test-ood``: 10 tasks with every
    ``|u|`` in (3, 4]. Split seed 5.

    ## Episode
    200 steps (PEARL's horizon). Terminates as Hopper-v5 when unhealthy: height <= 0.7, torso angle
    outside (-0.2, 0.2), or any of qpos[2:], qvel outside (-100, 100). No success criterion.

    ## Source and departures
    Checked against rand_param_envs' ``hopper_rand_params.py`` and ``base.py`` and PEARL's
    ``configs/hopper_rand_params.json`` and ``rlkit/envs/hopper_rand_params_wrapper.py``. Reward,
    termination rule, observation, reset noise (U(-0.005, 0.005)), the scaling of the four fields and
    the 40/10 tasks of PEARL's 50 are theirs. Departures:

    * **Step length.** rand_param_envs' bundled ``hopper.xml`` integrates RK4 at timestep 0.004 with
      frame skip 4 (``dt`` = 0.016 s); Hopper-v5's model uses timestep 0.002 (``dt`` = 0.008 s), so
      the forward reward and 200 steps (1.6 s here, 3.2 s there) are on another time scale.
    * **Tasks.** PEARL draws its 50 tasks with the unseeded global ``np.random``; ours come from a
      fixed seed, and ``test-ood`` is ours.

    ## Version history
    * v0: initial version, on Hopper-v5's model.
    """

    env_id = "metabench/HopperRandParams-v0"
    family = LogScales(nbody=5, nv=6, ngeom=5, split_seed=5)
    split_hashes = {
        "train": "3bda7c858494b7e2b0ca56986279102447c07cddfcc8bcb7717b199a8aa4e55c",
        "test": "e9e3d0c5f8abcaaa92d87570349826958a10d5b231633533e448d2ad21edb72b",
        "test-ood": "401f2056eaa45456065e23c97c2e44e57c261d85af956ca50a44d7255b9d2147",
    }
    n_adapt, n_eval = 2, 1

    def __init__(self, **kwargs: Any):
        HopperEnv.__init__(self, **kwargs)
        EzPickle.__init__(self, **kwargs)
        self._init_rand_params()

    def _is_healthy(self, qpos: np.ndarray, qvel: np.ndarray) -> bool:
        # Hopper-v5's check (NaN fails every comparison), cheapest tests first.
        min_z, max_z = self._healthy_z_range
        min_a, max_a = self._healthy_angle_range
        if not (min_z < qpos[1] < max_z and min_a < qpos[2] < max_a):
            return False
        state = np.concatenate((qpos[2:], qvel))
        lo, hi = self._healthy_state_range
        return bool(lo < state.min() and state.max() < hi)


class Walker2dRandParamsEnv(_HopperLike, Walker2dEnv):
    """Gymnasium's Walker2d-v5 with hidden random dynamics (PEARL's ``walker-rand-params``).

    rand_param_envs' random dynamics (used by PEARL, Rakelly et al., 2019) on Walker2d-v5's model; the
    reward and termination are Walker2d-v5's.

    ## Observation
    ``Box(-inf, inf, (17,), float64)``: qpos without the root x (8) and qvel clipped to [-10, 10] (9),
    as Walker2d-v5.

    ## Action
    ``Box(-1, 1, (6,), float32)``: joint torques, as Walker2d-v5.

    ## Reward
    Walker2d-v5's: ``r = v + 1[healthy] - 1e-3 * sum(a**2)``, with ``v`` the root's forward velocity
    over the step (``dt`` = 0.008 s). ``info`` as Walker2d-v5.

    ## Task parameters
    Exponents ``u``, each valid in [-4, 4]: ``body_mass`` (8), ``body_inertia`` (24), ``dof_damping``
    (9), ``geom_friction`` (24); element = nominal × ``1.5**u`` (``1.3**u`` for damping). Some elements
    change nothing: see the notes in ``metabench.envs.rand_params``.

    ## Splits
    ``train``: 40 and ``test``: 10 tasks with every ``u ~ U(-3, 3)``; ``test-ood``: 10 tasks with every
    ``|u|`` in (3, 4]. Split seed 6.

    ## Episode
    200 steps (PEARL's horizon). Terminates as Walker2d-v5 when unhealthy: height outside (0.8, 2.0) or
    torso angle outside (-1, 1). No success criterion.

    ## Source and departures
    Checked against rand_param_envs' ``walker2d_rand_params.py`` and ``base.py`` and PEARL's
    ``configs/walker_rand_params.json``. Reward, termination rule, observation, reset noise, the
    scaling and the 40/10 tasks are theirs. Departures:

    * **Model and step length.** rand_param_envs' bundled ``walker2d.xml`` integrates RK4 at timestep
      0.004 with frame skip 5 (``dt`` = 0.02 s) and gives the left foot friction 1.9, the right 0.9;
      Walker2d-v5's model uses timestep 0.002 and frame skip 4 (``dt`` = 0.008 s) and friction 1.9
      on both feet.
    * **Tasks.** PEARL draws its tasks with the unseeded global ``np.random``; ours come from a fixed
      seed, and ``test-ood`` is ours.

    ## Version history
    * v0: initial version, on Walker2d-v5's model.
    """

    env_id = "metabench/Walker2dRandParams-v0"
    family = LogScales(nbody=8, nv=9, ngeom=8, split_seed=6)
    split_hashes = {
        "train": "ca51bfb48269252b5c17546cb91752dd75774498003b645bfad4f6fed72a32ac",
        "test": "3d1b82de01a61e022477eedd72a95ae5d419d9957ea3fc7278919cf13b71ebbb",
        "test-ood": "d9db617276e12a903b0bb8c375dabc12f5f4f85233c0a1ad37d1f43b02c097b0",
    }
    n_adapt, n_eval = 2, 1

    def __init__(self, **kwargs: Any):
        Walker2dEnv.__init__(self, **kwargs)
        EzPickle.__init__(self, **kwargs)
        self._init_rand_params()

    def _is_healthy(self, qpos: np.ndarray, qvel: np.ndarray) -> bool:
        min_z, max_z = self._healthy_z_range
        min_a, max_a = self._healthy_angle_range
        return bool(min_z < qpos[1] < max_z and min_a < qpos[2] < max_a)
