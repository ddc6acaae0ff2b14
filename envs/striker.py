"""StrikerDynamics: strike a ball of unknown mass and damping into a goal (EPI's Striker task)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
from gymnasium import spaces
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from gymnasium.utils import EzPickle

from metabench.env import ModelParams, MujocoMetaEnv, check_action
from metabench.tasks import Param, Task, TaskFamily

ASSET = Path(__file__).parent / "assets" / "striker.xml"

#: EPI's training grid (Zhou et al., 2019): ball mass/inertia factor x ball slide damping.
TRAIN_MASS_SCALES = (0.2, 1.0, 1.8, 2.6, 3.4)
TRAIN_DAMPINGS = (0.1, 0.3, 0.5, 0.7, 0.9)
#: The grid interleaved with it; points beyond the training range (factor > 3.4 or damping > 0.9)
#: form ``test-ood``.
TEST_MASS_SCALES = (0.6, 1.4, 2.2, 3.0, 3.8, 4.6)
TEST_DAMPINGS = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2)


class BallDynamics(TaskFamily):
    """Ball mass/inertia factor and slide damping on fixed grids (EPI's 5x5 train, interleaved 6x6 test)."""

    params = {
        # Mass must be positive: the low bound is a tiny positive number, so 0 is rejected.
        "mass_scale": Param(1e-6, 10.0, doc="factor on the ball's body_mass and body_inertia"),
        "damping": Param(0.0, 5.0, doc="damping of the ball's two slide joints (absolute, N s/m)"),
    }
    split_sizes = {"train": 25, "test": 16, "test-ood": 20}
    split_seed = 0  # unused: the splits are grids
    _mass_low, _mass_high = params["mass_scale"].low, params["mass_scale"].high
    _damping_low, _damping_high = params["damping"].low, params["damping"].high

    def build_splits(self, env_id: str) -> dict[str, tuple[Task, ...]]:
        train = [
            {"mass_scale": m, "damping": d} for m, d in itertools.product(TRAIN_MASS_SCALES, TRAIN_DAMPINGS)
        ]
        test: list[dict[str, Any]] = []
        ood: list[dict[str, Any]] = []
        for m, d in itertools.product(TEST_MASS_SCALES, TEST_DAMPINGS):
            inside = m <= max(TRAIN_MASS_SCALES) and d <= max(TRAIN_DAMPINGS)
            (test if inside else ood).append({"mass_scale": m, "damping": d})
        raw = {"train": train, "test": test, "test-ood": ood}
        for name, plist in raw.items():
            assert len(plist) == self.split_sizes[name], (name, len(plist))
        return {name: self._freeze(env_id, name, plist) for name, plist in raw.items()}

    def validate(self, params: Mapping[str, Any]) -> None:
        # The common case (two in-range floats) checked in plain Python: set_task stays cheap. Anything
        # else (a missing, unknown, non-finite or out-of-range value) gets the base class's message.
        m, d = params.get("mass_scale"), params.get("damping")
        if not (
            len(params) == 2
            and type(m) is float
            and type(d) is float
            and self._mass_low <= m <= self._mass_high
            and self._damping_low <= d <= self._damping_high
        ):
            super().validate(params)

    def sample(self, rng: np.random.Generator, n: int, split: str) -> list[dict[str, Any]]:
        """Off-grid points (for domain randomisation; the frozen splits are the grids): uniform over the
        training box [0.2, 3.4] x [0.1, 0.9], or for ``"test-ood"`` over the test grid's box minus it."""
        out: list[dict[str, Any]] = []
        while len(out) < n:
            if split != "test-ood":
                m, d = rng.uniform(0.2, 3.4), rng.uniform(0.1, 0.9)
            else:
                m, d = rng.uniform(0.2, 4.6), rng.uniform(0.1, 1.2)
                if m <= 3.4 and d <= 0.9:
                    continue
            out.append({"mass_scale": float(m), "damping": float(d)})
        return out


class StrikerDynamicsEnv(MujocoMetaEnv, MujocoEnv, EzPickle):
    """A 7-joint arm must strike a ball into a goal; the ball's mass and damping are the task.

    The Striker variant of EPI (Zhou et al., 2019, "Environment Probing Interaction Policies"), on a
    MuJoCo model of the old Gym ``Striker`` arm written for metabench (``envs/assets/striker.xml``):
    seven hinge joints (``shoulder_pan``, ``shoulder_lift``, ``upper_arm_roll``, ``elbow_flex``,
    ``forearm_roll``, ``wrist_flex``, ``wrist_roll``), a ball on two slide joints (``ball_x``,
    ``ball_y``) on a frictionless table, a goal with a three-walled cup facing the ball, zero gravity,
    timestep 0.01 and frame skip 5 (``dt`` = 0.05 s). As in EPI the ball starts at (0.5, -0.3) and the
    goal is fixed at (0, 1); only the ball's dynamics change between tasks, so a policy must find out
    how heavy and how damped the ball is to strike it with the right impulse.

    ## Observation
    ``Box(-inf, inf, (23,), float64)``: the 7 arm joint angles, the 7 arm joint velocities, then the
    world positions (x, y, z) of the striker plate's body (``tips_arm``), of the ball and of the goal.
    Positions are those of the state after the step. The ball's mass and damping are hidden; wrap with
    :class:`metabench.wrappers.ExplicitContext` to append them (the oracle).

    ## Action
    ``Box(-3, 3, (7,), float32)``: torques of the seven joint motors (gear 1). MuJoCo clamps actions
    outside the box; the control cost uses the action as given.

    ## Reward
    ``r = 3 * reward_dist + 0.1 * reward_ctrl + 0.5 * reward_near`` with
    ``reward_dist = -||p_ball - p_goal||``, ``reward_ctrl = -sum(a**2)`` and
    ``reward_near = -||p_tips - p_ball||`` (Euclidean norms of 3-D world positions after the step; the
    ball's centre is 0.048 above the goal's, so ``reward_dist`` <= -0.048). This is Gym Striker's
    reward with its two stateful terms made plain: the ball-goal distance now rather than the minimum
    so far, and the arm-ball distance always rather than the distance from the strike point after a
    strike. ``info`` holds ``reward_dist``, ``reward_ctrl``, ``reward_near`` and ``distance`` (the ball's
    distance to the goal centre in the table plane).

    ## Task parameters
    * ``mass_scale``: factor on the ball's ``body_mass`` (0.157 kg nominal: a sphere of radius 0.05 at
      density 300) and ``body_inertia``, together (EPI's "mass and inertia"). Valid: (0, 10] (the
      low bound is 1e-6: zero or negative masses are rejected).
    * ``damping``: ``dof_damping`` of the ball's two slide joints, absolute (0.5 nominal). Valid:
      [0, 5].

    The slide joints carry an armature of 0.1 (as Gym's), so the ball's inertia along each slide is
    0.157 * mass_scale + 0.1 kg. The ball's rotational inertia is scaled too, as in EPI, but has no
    effect: the ball only slides.

    Switching a task edits the compiled model in place (no XML re-parse) and calls ``mj_setConst``;
    a test checks the edited model against one compiled from XML with the same values.

    ## Splits
    ``train``: EPI's 5x5 grid, mass factor {0.2, 1.0, 1.8, 2.6, 3.4} x damping {0.1, 0.3, 0.5, 0.7,
    0.9} (25 tasks, factor-major order, as EPI's ``env_id = 5 i + j``). The interleaved 6x6 grid, factor
    {0.6, 1.4, 2.2, 3.0, 3.8, 4.6} x damping {0.2, 0.4, 0.6, 0.8, 1.0, 1.2}, is split in two: ``test``
    holds its 16 points inside the training range (factor <= 3.4 and damping <= 0.9), ``test-ood`` the
    20 beyond it (heavier or more damped balls than any seen in training).

    ## Episode
    The arm starts at EPI's pose (pan -0.2, lift 0.5, upper-arm roll -1.7, elbow -1.5, forearm roll 1.0,
    wrist 0 and 0, in radians) with joint velocities drawn from U(-0.1, 0.1) with ``self.np_random``;
    the ball is at rest at its start. 200 steps (EPI's horizon), never terminates early. The harness
    gives each test task 2 adaptation and 1 evaluation episode (``n_adapt``, ``n_eval``).

    ## Success
    ``info["success"]`` is true while the ball's centre lies within the goal's radius (0.08) of the
    goal's centre in the table plane; an episode succeeds when its final step does
    (``success_rule = "final"``). The goal is 1.39 from the ball's start: with the motors' +-3 limits a
    strike carries the ball that far only when its damping is low. In our checks a cross-entropy search
    over open-loop strikes (torques for the first 10 or 25 steps, 12 x 40 episodes) left the ball 0.01
    from the goal for (mass_scale 1.0, damping 0.1) but no closer than 0.75 for (1.0, 0.5); on damped
    tasks success may be out of reach, and the reward's distance term is what ranks agents.

    ## Source and departures
    Checked against EPI's code (Wenxuan-Zhou/EPI: ``EPI/envs/striker_avg.py``,
    ``striker_original.py``, ``train.py``, ``evaluate.py``). The training grid (``change_env``:
    ``scale`` in {0, 0.1, ..., 0.4}, mass factor ``(scale - 0.1) * 8 + 1``, slide damping
    ``(scale - 0.2) * 2 + 0.5``), the ball's and goal's start, the arm's start pose and velocity noise,
    the observation and the 200-step horizon are EPI's. Departures:

    * **Test grid.** EPI's test grid is its 5x5 grid offset by 0.05 in ``scale`` (its first commit's
      ``striker_avg.py``; the released code samples the training grid): factor {0.6, 1.4, 2.2, 3.0,
      3.8} x damping {0.2, 0.4, 0.6, 0.8, 1.0}. Ours is a 6x6 grid: EPI's 25 points plus 11 of ours
      (factor 4.6, or damping 1.2). ``test`` is EPI's 16 points inside the training range;
      ``test-ood`` is EPI's other 9 (factor 3.8 or damping 1.0) and our 11.
    * **Reward.** EPI's (Gym Striker's) terms are computed before the step, and once the plate has
      come within 0.1 of the ball its ``reward_near`` is the ball's distance from where it was struck;
      ours uses positions after the step and the plate-ball distance always (see Reward).
    * **Model.** EPI steps its own ``striker.xml`` under mujoco-py (MuJoCo 1.31); ours is written for
      metabench (same joints, ball and goal layout) and runs under MuJoCo 3.3.0.
    * **Metric.** EPI reports the final step's ``reward_dist``; here the return and the final success.

    ## Version history
    * v0: initial version.
    """

    env_id = "metabench/StrikerDynamics-v0"
    family = BallDynamics()
    split_hashes = {
        "train": "b7e61723b02b4a2597e088f13b1cb6a45b52d18dc8c78f3222f718e92713a2b3",
        "test": "ad81a6fa11713d59b6a68701030132b482881cd592ab3c296a93ef79fb681a25",
        "test-ood": "ec73756e0f61d8de985d95b388090bdf3261140c16b88db2c93f17d9bbb7c131",
    }
    success_rule = "final"
    n_adapt, n_eval = 2, 1
    #: Meta-training env steps per tier, the same for every agent. A headline family: ``ci`` is sized so
    #: that every reference agent's unit (meta-training and meta-test) fits 30 minutes on one core (the
    #: records' wall times show it; leaderboards/ci/campaign.toml runs them); ``standard`` is the papers'.
    budgets = {"smoke": 2_000, "ci": 200_000, "standard": 2_000_000}
    metadata = {"render_modes": ["human", "rgb_array", "depth_array"], "render_fps": 20}

    frame_skip = 5
    goal_radius = 0.08
    #: Every key follows from the observation (which holds the tips', ball's and goal's positions)
    #: and the action; the task (the ball's mass and damping) enters none of them directly.
    public_info_keys = frozenset({"success", "distance", "reward_dist", "reward_near", "reward_ctrl"})
    #: EPI's start pose of the arm (radians).
    init_arm_qpos = (-0.2, 0.5, -1.7, -1.5, 1.0, 0.0, 0.0)
    reset_noise_scale = 0.1

    def __init__(self, render_mode: str | None = None, width: int = 480, height: int = 480, **kwargs: Any):
        EzPickle.__init__(self, render_mode=render_mode, width=width, height=height, **kwargs)
        obs_space = spaces.Box(-np.inf, np.inf, (23,), np.float64)
        MujocoEnv.__init__(
            self,
            str(ASSET),
            self.frame_skip,
            observation_space=obs_space,
            render_mode=render_mode,
            width=width,
            height=height,
            default_camera_config={
                "distance": 2.6,
                "elevation": -50.0,
                "azimuth": 90.0,
                "lookat": [0.2, 0.2, -0.3],
            },
            **kwargs,
        )
        m = self.model
        self._ball = m.body("ball").id
        self._obs_bodies = np.array([m.body("tips_arm").id, self._ball, m.body("goal").id])
        x, y = m.joint("ball_x").dofadr[0], m.joint("ball_y").dofadr[0]
        assert y == x + 1, "the ball's slide dofs must be adjacent"
        self._ball_dofs = slice(int(x), int(y) + 1)
        self._params = ModelParams(m, self.data, ("body_mass", "body_inertia"))
        self._mass_factor = np.ones(m.nbody)
        self._init_arm = np.array(self.init_arm_qpos)

    # ------------------------------------------------------------------------------------------ tasks
    def _apply_task(self, task: Task) -> None:
        p = task.params
        self.model.dof_damping[self._ball_dofs] = p["damping"]
        self._mass_factor[self._ball] = p["mass_scale"]
        # ModelParams keeps the state: a task set mid-episode does not move the arm or the ball.
        self._params.set(body_mass=self._mass_factor, body_inertia=self._mass_factor[:, None])

    @property
    def ball_mass(self) -> float:
        """The ball's mass now in the compiled model (kg)."""
        return float(self.model.body_mass[self._ball])

    # ---------------------------------------------------------------------------------------- physics
    def reset_model(self) -> np.ndarray:
        qpos = self.init_qpos.copy()
        qpos[:7] = self._init_arm
        qvel = self.init_qvel.copy()
        s = self.reset_noise_scale
        qvel[:7] += self.np_random.uniform(-s, s, size=7)
        self.set_state(qpos, qvel)
        return self._get_obs()

    def _get_obs(self) -> np.ndarray:
        d = self.data
        return np.concatenate((d.qpos[:7], d.qvel[:7], d.xpos[self._obs_bodies].ravel()))

    def step(self, action):
        a = check_action(action, self.action_space)
        m, d = self.model, self.data
        d.ctrl[:] = a
        mujoco.mj_step(m, d, nstep=self.frame_skip)
        # mj_step leaves body positions at the last substep's start: bring them to the new state.
        mujoco.mj_kinematics(m, d)
        positions = d.xpos[self._obs_bodies]  # tips, ball, goal
        (tx, ty, tz), (bx, by, bz), (gx, gy, gz) = positions.tolist()
        reward_dist = -math.sqrt((bx - gx) ** 2 + (by - gy) ** 2 + (bz - gz) ** 2)
        reward_near = -math.sqrt((tx - bx) ** 2 + (ty - by) ** 2 + (tz - bz) ** 2)
        reward_ctrl = -float(a @ a)
        reward = 3.0 * reward_dist + 0.1 * reward_ctrl + 0.5 * reward_near
        planar = math.hypot(bx - gx, by - gy)
        obs = np.concatenate((d.qpos[:7], d.qvel[:7], positions.ravel()))
        info = {
            "reward_dist": reward_dist,
            "reward_ctrl": reward_ctrl,
            "reward_near": reward_near,
            "distance": planar,
            "success": planar <= self.goal_radius,
            **self._task_info(),
        }
        if self.render_mode == "human":
            self.render()
        return obs, reward, False, False, info
