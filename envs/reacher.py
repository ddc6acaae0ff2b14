"""ReacherGoal: TESP's 2-link reacher goal family on Gymnasium's Reacher-v5 arm."""

from __future__ import annotations

import math
from typing import Any

import mujoco
import numpy as np
from gymnasium import spaces
from gymnasium.envs.mujoco.reacher_v5 import ReacherEnv
from gymnasium.utils import EzPickle

from metabench.env import MujocoMetaEnv, check_action
from metabench.envs.wheeled_nav import SeparatedGoals
from metabench.tasks import Param, Task

#: TESP's arm reaches 1.7 (links of 0.75 and 0.95 to the fingertip), Reacher-v5's 0.21: TESP's goal
#: sets and tolerance are scaled by 1/8 (1.7 / 8 = 0.2125).
SCALE = 0.125


class ScaledSeparatedGoals(SeparatedGoals):
    """TESP's goal sampler (:class:`metabench.envs.wheeled_nav.SeparatedGoals`) at 1/8 scale: goals
    uniform in [-0.1875, 0.1875]^2, 0.025 < |g| < 0.1375 in distribution, 0.1375 < |g| < 0.1875 out
    of it, at least 0.0125 apart."""

    params = {"goal": Param(-1.5 * SCALE, 1.5 * SCALE, size=2, doc="fingertip goal (x, y) in the plane (m)")}
    radii = {
        "train": (0.2 * SCALE, 1.1 * SCALE),
        "test": (0.2 * SCALE, 1.1 * SCALE),
        "test-ood": (1.1 * SCALE, 1.5 * SCALE),
    }
    min_separation = 0.1 * SCALE
    _low, _high = params["goal"].low, params["goal"].high


class ReacherGoalEnv(MujocoMetaEnv, ReacherEnv):
    """Gymnasium's Reacher-v5 arm must bring its fingertip to an unseen goal in the plane.

    The 2-link reacher of TESP (Lan et al., 2019, "Meta Reinforcement Learning with Task Embedding and
    Shared Policy"; llan-ml/tesp ``tesp/envs/mujoco/reacher.py``), with TESP's reward, observation,
    termination and goal sets, on Gymnasium's Reacher-v5 model: two links of 0.1 and 0.11 (to the
    fingertip) on hinges, torque motors (gear 200), RK4 at timestep 0.01, frame skip 2 (``dt`` = 0.02
    s). The goal is hidden: the target marker of Reacher-v5 is moved to it for rendering only.

    ## Observation
    ``Box(-inf, inf, (8,), float64)``, TESP's: the cosines (2) and sines (2) of the two joint angles,
    the two joint velocities, and the fingertip's position (x, y). Reacher-v5's target position and
    fingertip-to-target vector are left out.

    ## Action
    ``Box(-1, 1, (2,), float32)``: the two motors' torques, as Reacher-v5 (MuJoCo clamps actions
    outside the box).

    ## Reward
    ``r = -||p_tip - g||_2 - 1e-3 * 0.5 * sum(clip(a, -1, 1)**2)``, TESP's (``ctrl_cost_coeff`` 1e-3,
    ``calculate_ctrl_cost`` on the action normalised to [-1, 1], which Reacher-v5's already is), where
    ``p_tip`` is the fingertip body's (x, y) as Reacher-v5 reads it after the step (``data.xpos``) and
    ``g`` the goal. ``info`` holds ``distance`` (the first term's norm), ``reward_dist`` (the first
    term) and ``reward_ctrl``.

    ## Task parameters
    ``goal`` = (x, y) in metres, each coordinate valid in [-0.1875, 0.1875].

    ## Splits
    TESP's goal sets at 1/8 scale (TESP's arm reaches 1.7, Reacher-v5's 0.21), drawn by
    WheeledNav's sampler with its split seed (2019), as TESP draws its reacher and wheeled goals with
    one sampler and seed (so the goals are WheeledNav's divided by 8, to 6 decimals): goals uniform in
    [-0.1875, 0.1875]^2 kept by rejection, ``train`` (D) and
    ``test`` (D') 100 goals each with 0.025 < |g| < 0.1375, ``test-ood`` (D'') 100 goals with 0.1375 <
    |g| < 0.1875 (farther than any training goal, still within reach), every goal at least 0.0125
    from every other.

    ## Episode
    Reacher-v5's start: joint angles U(-0.1, 0.1) and velocities U(-0.005, 0.005) with
    ``self.np_random`` (the arm points along +x). 200 steps (TESP's horizon, 4 s); terminates when
    ``||p_tip - g|| < 0.0075`` (TESP's 0.06 at 1/8 scale). The harness gives each test task 2
    adaptation and 1 evaluation episode (``n_adapt``, ``n_eval``), as WheeledNav.

    ## Success
    ``info["success"]`` is true on the step that reaches the goal (the terminating step); an episode
    succeeds when any step does (``success_rule = "any"``).

    ## Source and departures
    Checked against TESP's ``tesp/envs/mujoco/reacher.py``, ``mujoco_env.py``, ``assets/reacher.xml``,
    ``envs/reset_wrapper.py``, ``main_train.py`` and its supplement (``materials/supplement.pdf``:
    2-link reacher, horizon 200, reward ``-||s - x|| - 0.001 ||a||^2``; the code has the 0.5). The
    reward, observation, horizon, termination rule and goal-set construction are TESP's. Departures:

    * **Model.** TESP's arm (``reacher.xml``): links of 0.75 and 0.95 to the fingertip, velocity
      actuators with a ±100 ctrl range, elbow range ±160°, total mass 24, frame skip 5 (``dt`` 0.05
      s, so 200 steps are 10 s). Ours is Reacher-v5's (above), so goals, the goal tolerance and the
      goal separation are TESP's divided by 8.
    * **Reset.** TESP starts the arm at rest, straight along +x, without noise; ours adds Reacher-v5's
      noise.
    * **Goal values.** TESP draws with numpy's ``RandomState(1)``; ours with another generator and seed
      (see :class:`metabench.envs.wheeled_nav.WheeledNavEnv` for the sampler's other details).
    * **Success** is ours (TESP reports returns).

    ## Version history
    * v0: initial version, on Reacher-v5's model.
    """

    env_id = "metabench/ReacherGoal-v0"
    family = ScaledSeparatedGoals()
    split_hashes = {
        "train": "2c8ad158f16e4df048226d278c250cb94f9cb63f908a1cbd99600619e768c8ad",
        "test": "0ee93eb73fb8f52a90b1331c93cfb0f2ddfcb83fe7290105cf41d794b6f7d57e",
        "test-ood": "d179dd9bafa9d7f37aaf70272db7f180385fa6de9e73fb49b150502fb12ff22a",
    }
    success_rule = "any"
    n_adapt, n_eval = 2, 1
    #: ``reward_ctrl`` follows from the action and ``success`` from the episode ending; the goal
    #: distance (``distance``, ``reward_dist``) is not passed on.
    public_info_keys = frozenset({"success", "reward_ctrl"})

    goal_tolerance = 0.06 * SCALE
    ctrl_cost_weight = 1e-3 * 0.5
    reset_qpos_noise = 0.1
    reset_qvel_noise = 0.005

    def __init__(self, **kwargs: Any):
        ReacherEnv.__init__(self, **kwargs)
        EzPickle.__init__(self, **kwargs)
        self.observation_space = spaces.Box(-np.inf, np.inf, (8,), np.float64)
        self._tip = int(self.model.body("fingertip").id)
        self._gx, self._gy = 0.0, 0.0

    # ------------------------------------------------------------------------------------------ tasks
    def _apply_task(self, task: Task) -> None:
        self._gx, self._gy = task.params["goal"]
        # The target's slide joints (qpos[2:4]) place Reacher-v5's marker; it has no contacts.
        self.data.qpos[2:4] = (self._gx, self._gy)

    # ---------------------------------------------------------------------------------------- physics
    def reset_model(self) -> np.ndarray:
        qpos = self.init_qpos.copy()
        qpos[:2] += self.np_random.uniform(-self.reset_qpos_noise, self.reset_qpos_noise, size=2)
        qpos[2:4] = (self._gx, self._gy)
        qvel = self.init_qvel.copy()
        qvel[:2] += self.np_random.uniform(-self.reset_qvel_noise, self.reset_qvel_noise, size=2)
        self.set_state(qpos, qvel)
        return self._get_obs()

    def _get_obs(self) -> np.ndarray:
        data = self.data
        theta = data.qpos[:2]
        return np.concatenate((np.cos(theta), np.sin(theta), data.qvel[:2], data.xpos[self._tip, :2]))

    def step(self, action):
        a = check_action(action, self.action_space)
        self.data.ctrl[:] = a
        mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        obs = self._get_obs()
        distance = math.hypot(obs[6] - self._gx, obs[7] - self._gy)
        u = np.clip(a, -1.0, 1.0)
        reward_ctrl = -self.ctrl_cost_weight * float(u @ u)
        reached = distance < self.goal_tolerance
        info = {
            "distance": distance,
            "reward_dist": -distance,
            "reward_ctrl": reward_ctrl,
            "success": reached,
            **self._task_info(),
        }
        if self.render_mode == "human":
            self.render()
        return obs, -distance + reward_ctrl, reached, False, info
