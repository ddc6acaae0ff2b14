"""AntDir and AntGoal (PEARL's ant-dir and ant-goal), and AntDirNonStationary, on Gymnasium's Ant-v5."""

from __future__ import annotations

import math
from typing import Any

import mujoco
import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.utils import EzPickle

from metabench.env import MujocoMetaEnv, TimeSchedule, check_action, draw_other_task
from metabench.tasks import Param, Task, TaskFamily


class DirectionAngles(TaskFamily):
    """Running directions: angles U(0, 2 pi) for ``train`` and ``test`` (disjoint draws)."""

    params = {"angle": Param(0.0, 2 * math.pi, doc="running direction (rad) from the +x axis")}
    split_sizes = {"train": 100, "test": 30}
    split_seed = 2020

    def sample(self, rng: np.random.Generator, n: int, split: str) -> list[dict[str, Any]]:
        return [{"angle": float(a)} for a in rng.uniform(0.0, 2 * math.pi, size=n)]


class GoalsInDisc(TaskFamily):
    """Goal positions uniform in area on the disc of radius 3 (PEARL's ant-goal); ``test-ood`` goals
    uniform in area on the ring 3 < r <= 4 around it."""

    params = {"goal": Param(-4.0, 4.0, size=2, doc="goal position (x, y) of the torso (m)")}
    split_sizes = {"train": 150, "test": 30, "test-ood": 30}
    split_seed = 2021

    def sample(self, rng: np.random.Generator, n: int, split: str) -> list[dict[str, Any]]:
        angle = rng.uniform(0.0, 2 * math.pi, size=n)
        # Uniform in area: r^2 uniform on [r_in^2, r_out^2].
        r_in, r_out = (0.0, 3.0) if split != "test-ood" else (3.0, 4.0)
        # 1 - U(0,1) lies in (0, 1], so that an ood goal is never exactly on the inner circle.
        r = np.sqrt(r_in**2 + (1.0 - rng.random(n)) * (r_out**2 - r_in**2))
        return [
            {"goal": (float(x), float(y))} for x, y in zip(r * np.cos(angle), r * np.sin(angle), strict=True)
        ]


class _AntMetaEnv(MujocoMetaEnv, AntEnv):
    """Ant-v5 with a task term in place of its forward reward, stepped without Gymnasium's overhead.

    The physics, observation (with the clipped contact forces ``cfrc_ext``, for which
    ``mj_rnePostConstraint`` runs after every step, as in Gymnasium), reset noise, healthy check and
    termination are Ant-v5's and follow its constructor arguments. Subclasses define the task term.
    """

    #: Ant-v5 constructor arguments this family changes (the user's own kwargs still win).
    ant_defaults: dict[str, Any] = {}
    #: ``reward_ctrl`` follows from the action, ``reward_survive`` from the observed torso height,
    #: ``reward_contact`` from the observed contact forces, and the task term (``reward_forward``,
    #: ``reward_goal``) is the reward minus those. Hidden: ``x_position``, ``y_position`` and
    #: ``distance_from_origin`` where the observation leaves the torso's x, y out, and ``x_velocity``,
    #: ``y_velocity`` (the step's mean velocity; with ``reward_forward`` it gives AntDir's direction).
    public_info_keys = frozenset(
        {"reward_forward", "reward_goal", "reward_ctrl", "reward_contact", "reward_survive"}
    )

    def __init__(self, **kwargs: Any):
        AntEnv.__init__(self, **{**self.ant_defaults, **kwargs})
        EzPickle.__init__(self, **kwargs)
        self._dt = self.dt
        self._main_id = int(self.model.body(self._main_body).id)
        self._first_obs_qpos = 2 if self._exclude_current_positions_from_observation else 0

    def _task_term(self, xy_velocity: np.ndarray) -> tuple[str, float]:
        """The task's reward term (name, value) after a step with torso velocity ``xy_velocity``."""
        raise NotImplementedError

    def _advance(self, action: Any) -> tuple[np.ndarray, float, bool, dict[str, Any]]:
        a = check_action(action, self.action_space)
        model, data = self.model, self.data
        xy_before = data.xpos[self._main_id, :2].copy()
        data.ctrl[:] = a
        mujoco.mj_step(model, data, nstep=self.frame_skip)
        mujoco.mj_rnePostConstraint(model, data)  # fills cfrc_ext: observation and contact cost
        xy_velocity = (data.xpos[self._main_id, :2] - xy_before) / self._dt

        qpos, qvel = data.qpos, data.qvel
        lo, hi = self._contact_force_range
        forces = data.cfrc_ext.clip(lo, hi).ravel()
        contact_cost = self._contact_cost_weight * forces.dot(forces)
        ctrl_cost = self._ctrl_cost_weight * a.dot(a)
        finite = math.isfinite(qpos.sum() + qvel.sum()) or (
            np.isfinite(qpos).all() and np.isfinite(qvel).all()
        )
        min_z, max_z = self._healthy_z_range
        healthy = finite and min_z <= qpos[2] <= max_z
        survive = self._healthy_reward if healthy else 0.0
        name, term = self._task_term(xy_velocity)
        reward = term + survive - ctrl_cost - contact_cost

        parts = [qpos[self._first_obs_qpos :], qvel]
        if self._include_cfrc_ext_in_observation:
            parts.append(forces[6:])  # the world body's 6 components are left out, as in Ant-v5
        obs = np.concatenate(parts)
        info = {
            "x_position": qpos[0],
            "y_position": qpos[1],
            "x_velocity": xy_velocity[0],
            "y_velocity": xy_velocity[1],
            name: term,
            "reward_ctrl": -ctrl_cost,
            "reward_contact": -contact_cost,
            "reward_survive": survive,
        }
        if self.render_mode == "human":
            self.render()
        return obs, reward, (not healthy) and self._terminate_when_unhealthy, info

    def step(self, action):
        obs, reward, terminated, info = self._advance(action)
        info.update(self._task_info())
        return obs, reward, terminated, False, info


class AntDirEnv(_AntMetaEnv):
    """Gymnasium's Ant-v5 rewarded for running in a hidden direction of the plane.

    PEARL's ant-dir (Rakelly et al., 2019, ``rlkit/envs/ant_dir.py``), whose reward is Ant-v5's with
    the torso's planar velocity projected on the task's direction; PEARL's experiments used 2
    directions, here the directions are continuous and ``test`` directions are unseen in training.

    ## Observation
    ``Box(-inf, inf, (105,), float64)``, Ant-v5's: qpos without the torso's x, y (13), qvel (14) and
    the external contact forces ``cfrc_ext`` of the 13 non-world bodies clipped to [-1, 1] (78).

    ## Action
    ``Box(-1, 1, (8,), float32)``: hip and ankle torques, as Ant-v5.

    ## Reward
    ``r = v_xy · (cos θ, sin θ) + 1[healthy] - 0.5 * sum(a**2) - 5e-4 * sum(clip(cfrc_ext, -1, 1)**2)``,
    where ``v_xy`` is the torso's planar velocity over the step (``dt`` = 0.05 s, from ``xpos`` as
    Ant-v5 computes ``x_velocity``) and θ the task's angle; for θ = 0 this is exactly Ant-v5's reward.
    ``info`` holds ``reward_forward`` (the first term), ``reward_survive``, ``reward_ctrl``,
    ``reward_contact``, ``x_velocity``, ``y_velocity``, ``x_position``, ``y_position``.

    ## Task parameters
    ``angle`` (rad), valid in [0, 2π].

    ## Splits
    ``train``: 100 and ``test``: 30 angles from U(0, 2π), drawn together and cut apart (disjoint).
    Split seed 2020. No ``test-ood``: every direction lies in the same range.

    ## Episode
    200 steps (PEARL's horizon). Terminates as Ant-v5 when unhealthy: a non-finite state or the torso's
    height outside [0.2, 1.0]. No success criterion.

    ## Source and departures
    Checked against PEARL's ``rlkit/envs/ant_dir.py``, ``ant.py``, ``ant_multitask_base.py`` and
    ``configs/ant-dir.json`` (katerakelly/oyster). The reward terms and weights (velocity along the
    direction, control 0.5, contact 5e-4, survival 1), the healthy range and the horizon are PEARL's.
    Departures:

    * **Observation.** PEARL's has 27 values: qpos without the torso's x, y (13) and qvel (14), no
      contact forces; ours is Ant-v5's 105, with the clipped contact forces.
    * **Directions.** PEARL's config asks for 2 tasks with ``forward_backward`` left False, so its two
      directions are drawn from U(0, 2π) by the unseeded global ``np.random`` and serve as both train
      and eval tasks; ours are 100 train and 30 unseen test directions.
    * **Model.** PEARL's ``assets/ant.xml`` ("same as gym ant but with sites") under mujoco-py; ours is
      Ant-v5's model under MuJoCo 3.3.0.

    ## Version history
    * v0: initial version, on Ant-v5's model.
    """

    env_id = "metabench/AntDir-v0"
    family = DirectionAngles()
    split_hashes = {
        "train": "abbee2fa9cf42c73bbb031f3b322999e19878aa8a09bee9bf79183b87e460491",
        "test": "aa2881b3c5864921dc6441effd083e20d9332bcb2f7b071d4062b95983b6b898",
    }
    n_adapt, n_eval = 2, 1

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._direction = np.array([1.0, 0.0])

    def _apply_task(self, task: Task) -> None:
        angle = task.params["angle"]
        self._direction = np.array([math.cos(angle), math.sin(angle)])

    def _task_term(self, xy_velocity: np.ndarray) -> tuple[str, float]:
        return "reward_forward", xy_velocity.dot(self._direction)


class AntGoalEnv(_AntMetaEnv):
    """Gymnasium's Ant-v5 model that must walk to a hidden goal position.

    PEARL's ant-goal (Rakelly et al., 2019, ``rlkit/envs/ant_goal.py``, from ProMP's ant_rand_goal):
    goals uniform on a disc of radius 3, an L1 distance reward, no survival bonus and no termination.

    ## Observation
    ``Box(-inf, inf, (107,), float64)``: Ant-v5's observation *with* the torso's x, y (PEARL's too, as
    the goal is a position): qpos (15), qvel (14), ``cfrc_ext`` of the 13 non-world bodies clipped to
    [-1, 1] (78).

    ## Action
    ``Box(-1, 1, (8,), float32)``, as Ant-v5.

    ## Reward
    ``r = -(|x - g_x| + |y - g_y|) - 0.1 * sum(a**2) - 5e-4 * sum(clip(cfrc_ext, -1, 1)**2)``, with
    (x, y) the torso's position after the step (``qpos[:2]``) and g the goal: PEARL's weights (its
    control weight is 0.1, not Ant-v5's 0.5; its survival reward is 0). ``info`` holds ``reward_goal``
    (the first term), ``reward_ctrl``, ``reward_contact``, ``reward_survive`` (0) and the positions.

    ## Task parameters
    ``goal`` = (x, y) in metres, each coordinate valid in [-4, 4].

    ## Splits
    ``train``: 150 and ``test``: 30 goals uniform in area on the disc of radius 3 (PEARL's 150/30),
    drawn together and cut apart; ``test-ood``: 30 goals uniform in area on the ring 3 < r <= 4,
    farther than any training goal. Split seed 2021.

    ## Episode
    200 steps (PEARL's horizon); never terminates early (PEARL's ``done = False``: with a negative
    reward and no survival bonus, ending the episode by falling over would otherwise pay). No success
    criterion.

    ## Source and departures
    Checked against PEARL's ``rlkit/envs/ant_goal.py`` and ``configs/ant-goal.json``: reward weights,
    goal distribution (uniform in area on the disc of radius 3), 150/30 tasks, no termination and the
    horizon are PEARL's. Departures: PEARL's observation has 113 values (its contact forces include
    the world body's 6, which ours leave out as Ant-v5 does); PEARL reads the torso's position from
    ``get_body_com`` (``xpos``), ours from ``qpos[:2]``; PEARL draws its goals with the unseeded global
    ``np.random``; ``test-ood`` is ours; the model is Ant-v5's under MuJoCo 3.3.0.

    ## Version history
    * v0: initial version, on Ant-v5's model.
    """

    env_id = "metabench/AntGoal-v0"
    family = GoalsInDisc()
    split_hashes = {
        "train": "30cdfae485346d52f024405ea2a6287d090d984a1a04097600b80402486c3837",
        "test": "14c92b2d9b9314b3c8b28d5b425608467d57d2f632f1d0a4b554b7a43b41d9c5",
        "test-ood": "aac893ae5fd5db2ad9b5f5af4e49170bf7dadcf085fa96b892e25b3df81d1a6d",
    }
    n_adapt, n_eval = 2, 1
    ant_defaults = {
        "ctrl_cost_weight": 0.1,
        "healthy_reward": 0.0,
        "terminate_when_unhealthy": False,
        "exclude_current_positions_from_observation": False,
    }
    #: Here the observation holds the torso's x, y: positions and velocities are public as well.
    public_info_keys = _AntMetaEnv.public_info_keys | {
        "x_position",
        "y_position",
        "distance_from_origin",
        "x_velocity",
        "y_velocity",
    }

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._goal = (0.0, 0.0)

    def _apply_task(self, task: Task) -> None:
        self._goal = task.params["goal"]

    def _task_term(self, xy_velocity: np.ndarray) -> tuple[str, float]:
        qpos = self.data.qpos
        return "reward_goal", -(abs(qpos[0] - self._goal[0]) + abs(qpos[1] - self._goal[1]))


class AntDirNonStationaryEnv(AntDirEnv):
    """AntDir whose direction changes inside the episode (after CEMRL's ``ant-non-stationary-dir``,
    Bing et al., 2022).

    Observation, action, reward, termination and tasks are as in :class:`AntDirEnv`; the episode's
    first direction is the task passed to ``reset`` (or a train task drawn).

    ## Non-stationarity
    ``"time"`` schedule: after every ``change_steps`` steps (default 100), with probability
    ``change_prob`` (default 1.0), another direction acts, drawn with ``self.np_random`` from the split
    of the episode's first task (``train`` for a custom one), never the current one. CEMRL's ant had
    two directions (±x) switched by location change points along x; with directions all round the
    plane, change points on one axis mean little, so this family switches by time.
    ``info["task_changed"]`` and ``info["task_index"]`` as in the cheetah's non-stationary families.

    ## Episode
    800 steps (CEMRL's ``max_path_length``); terminates when unhealthy, as Ant-v5 (CEMRL's
    ``termination_possible`` for its ant).

    ## Source and departures
    After CEMRL's ``configs/ant-non-stationary-dir.json`` and meta_rand_envs'
    ``ant_non_stationary_direction.py``, from which it departs in most respects: CEMRL has two
    directions (±x) switched by the location rule (basis 10, interval 2), a reward of
    ``10 * v_x * d - 0.5 * sum(a**2) - contact + 1``, termination when the torso's height leaves
    [0.3, 10], and a 30-value observation (qpos without x, y; the torso's position; qvel; no contact
    forces). Ours has continuous directions switched by time, AntDir's reward (velocity weight 1),
    Ant-v5's healthy range [0.2, 1.0] and Ant-v5's 105-value observation.

    ## Version history
    * v0: initial version.
    """

    env_id = "metabench/AntDirNonStationary-v0"
    split_hashes = {
        "train": "4a2d743947da9ad6d66182d9fcf90ebf008543288f6f9fb6d18b8bb9506025f1",
        "test": "7f312bfe0f812aede6f3b7f559e907c2c88cb49957504034a73a427c7c37d5a9",
    }
    n_adapt, n_eval = 1, 1

    def __init__(self, change_steps: int = 100, change_prob: float = 1.0, **kwargs: Any):
        super().__init__(**kwargs)
        EzPickle.__init__(self, change_steps=change_steps, change_prob=change_prob, **kwargs)
        self.schedule = TimeSchedule(every=change_steps, prob=change_prob)
        self._t = 0
        self._episode_task: Task | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = super().reset(seed=seed, options=options)
        self._t = 0
        self._episode_task = self._task
        self.schedule.reset(self.np_random)
        return obs, info

    def step(self, action):
        obs, reward, terminated, info = self._advance(action)
        self._t += 1
        changed = self.schedule.should_change(self._t, float(self.data.qpos[0]), self.np_random)
        if changed:
            assert self._episode_task is not None and self._task is not None
            self._switch(draw_other_task(self, self._episode_task, self._task))
        info.update(self._task_info(changed))
        return obs, reward, terminated, False, info
