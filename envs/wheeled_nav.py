"""WheeledNav: drive a two-wheeled car to an unseen goal on a plane (TESP's wheeled-robot task)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
from gymnasium import spaces
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from gymnasium.utils import EzPickle

from metabench.env import MujocoMetaEnv, check_action
from metabench.tasks import Param, Task, TaskFamily

ASSET = Path(__file__).parent / "assets" / "wheeled_nav.xml"


class SeparatedGoals(TaskFamily):
    """Goals uniform in [-1.5, 1.5]^2, kept in an annulus per split and at least 0.1 apart.

    In distribution (``train``, ``test``): 0.2 < |g| < 1.1; out of distribution (``test-ood``):
    1.1 < |g| < 1.5. Every goal is at least ``min_separation`` from every other goal of every split.
    Subclasses rescale it by setting ``params``, ``radii``, ``min_separation``, ``_low`` and ``_high``.
    """

    params = {"goal": Param(-1.5, 1.5, size=2, doc="goal position (x, y) on the floor (m)")}
    split_sizes = {"train": 100, "test": 100, "test-ood": 100}
    split_seed = 2019
    min_separation = 0.1
    radii = {"train": (0.2, 1.1), "test": (0.2, 1.1), "test-ood": (1.1, 1.5)}
    _low, _high = params["goal"].low, params["goal"].high

    def validate(self, params: Mapping[str, Any]) -> None:
        # The common case (a pair of in-range floats) checked in plain Python: set_task stays cheap.
        # Anything else gets the base class's message naming the problem.
        g = params.get("goal")
        if not (
            len(params) == 1
            and type(g) is tuple
            and len(g) == 2
            and type(g[0]) is float
            and type(g[1]) is float
            and self._low <= g[0] <= self._high
            and self._low <= g[1] <= self._high
        ):
            super().validate(params)

    def sample(
        self, rng: np.random.Generator, n: int, split: str, avoid: np.ndarray | None = None
    ) -> list[dict[str, Any]]:
        """``n`` goals of ``split``'s annulus by rejection: each candidate is drawn uniform in the square,
        rounded to :attr:`decimals`, and kept if its norm lies in the annulus and it is at least
        :attr:`min_separation` from every goal kept so far and from every row of ``avoid``."""
        if split not in self.radii:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(self.radii)}")
        lo, hi = self.radii[split]
        kept = np.zeros((0, 2)) if avoid is None else np.asarray(avoid, dtype=np.float64).reshape(-1, 2)
        n_before = len(kept)
        while len(kept) < n_before + n:
            g = np.round(rng.uniform(self._low, self._high, size=2), self.decimals)
            r = float(np.hypot(g[0], g[1]))
            if not lo < r < hi:
                continue
            if len(kept) and np.min(np.hypot(*(kept - g).T)) < self.min_separation:
                continue
            kept = np.vstack((kept, g))
        return [{"goal": (float(x), float(y))} for x, y in kept[n_before:]]

    def build_splits(self, env_id: str) -> dict[str, tuple[Task, ...]]:
        rng = np.random.default_rng(self.split_seed)
        taken = np.zeros((0, 2))
        out: dict[str, tuple[Task, ...]] = {}
        for name in ("train", "test", "test-ood"):
            plist = self.sample(rng, self.split_sizes[name], name, avoid=taken)
            taken = np.vstack((taken, [p["goal"] for p in plist]))
            out[name] = self._freeze(env_id, name, plist)
        return out


class WheeledNavEnv(MujocoMetaEnv, MujocoEnv, EzPickle):
    """A two-wheeled car must drive to an unseen goal on the floor.

    The wheeled-robot task of TESP (Lan et al., 2019, "Meta Reinforcement Learning with Task Embedding
    and Shared Policy"), on a MuJoCo model written for metabench (``envs/assets/wheeled_nav.xml``): a
    box chassis (1 kg) on a free joint, two wheels of radius 0.04 on hinges 0.15 apart, each driven by
    a velocity actuator (``kv`` = 0.02), and two frictionless casters. Timestep 0.01, frame skip 5
    (``dt`` = 0.05 s). The goal is hidden and has to be found from the reward.

    ## Observation
    ``Box(-inf, inf, (9,), float64)``: the chassis position (x, y, z), the sine and cosine of its
    heading (yaw of the chassis' x axis in the floor plane), and four velocities: the chassis' linear
    velocity along world x and y, then the left and right wheels' angular velocities (rad/s).

    ## Action
    ``Box(-50, 50, (2,), float32)``: target angular velocities (rad/s) of the left and right wheel.
    50 rad/s is about 1.9 m/s of forward speed. MuJoCo clamps actions outside the box; the control
    cost uses the action as given.

    ## Reward
    ``r = -||p_xy - g||_2 - 1e-3 * sum(a**2)``, where ``p_xy`` is the chassis' (x, y) after the step
    and ``g`` the goal. ``info`` holds ``distance`` (the first term's norm) and ``reward_ctrl``.

    ## Task parameters
    ``goal`` = (x, y), valid in [-1.5, 1.5] per coordinate. Switching a task moves the goal site of the
    compiled model (``model.site_pos``) for rendering; the reward reads the goal directly.

    ## Splits
    Goals drawn uniform in [-1.5, 1.5]^2 and kept by rejection (split seed 2019): ``train`` and
    ``test``, 100 goals each with 0.2 < |g| < 1.1; ``test-ood``, 100 goals with 1.1 < |g| < 1.5
    (farther than any training goal). Every goal is at least 0.1 from every other, within and across
    splits.

    ## Episode
    The car starts near the origin, heading along +x: x, y and the heading are perturbed by
    U(-0.01, 0.01) m and U(-0.05, 0.05) rad with ``self.np_random``; it starts at rest. 200 steps
    (10 s); terminates when ``||p_xy - g|| < 0.02``. A proportional steering controller reaches such
    goals in 20 to 55 steps (``tests/test_wheeled_nav.py``). The harness gives each test task 2
    adaptation and 1 evaluation episode (``n_adapt``, ``n_eval``).

    ## Success
    ``info["success"]`` is true on the step that reaches the goal (the terminating step); an episode
    succeeds when any step does (``success_rule = "any"``).

    ## Source and departures
    Checked against TESP's code (llan-ml/tesp: ``tesp/envs/mujoco/wheeled.py``, ``mujoco_env.py``,
    ``assets/wheeled.xml``, ``envs/reset_wrapper.py``, ``main_train.py``) and its supplement
    (``materials/supplement.pdf``). Where this family departs from it:

    * **Control cost (fixed in v1).** TESP's policy acts in [-1, 1], scaled to the ±50 ctrl range and
      clipped, and its cost is ``1e-3 * 0.5 * sum((a / 50)**2)``; here the raw ±50 action is squared,
      ``1e-3 * sum(a**2)``: 5,000 times TESP's for the same action (the supplement writes
      ``0.001 * ||a||^2`` without the 0.5; we follow the code).
    * **Model.** TESP's car (``wheeled.xml``, total mass 24) moves on x, y, z slide joints and a yaw
      hinge, with two wheels of radius 0.1, 0.4 apart, velocity actuators of gain 1 and no casters;
      ours is a free-jointed 1 kg chassis with wheels of radius 0.04, 0.15 apart, actuators of gain
      0.02 and two casters. Same timestep (0.01) and frame skip (5).
    * **Observation.** TESP's 9 values are the x, y, z slide positions, the sine and cosine of the yaw,
      and the x, y, z and yaw velocities (no wheel velocities); ours replace the z and yaw velocities
      with the two wheels' angular velocities.
    * **Reset.** TESP starts the car at rest at the origin, heading +x, with no noise; ours perturbs
      x, y and the heading (see Episode).
    * **Goal sets.** TESP draws D (train), D' (test) and D'' (test-ood) of 100 goals each with numpy's
      ``RandomState(1)``: D and D' uniform in the square, kept if 0.2 < |g| < 1.1 (the supplement says
      only "within a circle ρ < 1.1"), D'' if 1.1 < |g| < 1.5; D' keeps 0.1 from D and itself, D'' only
      from itself. Ours: the same annuli, sizes and 0.1 separation, but another generator and seed (so
      other goal values), every goal 0.1 from every other split's too (this binds only near
      |g| = 1.1), and coordinates rounded to 6 decimals.
    * **Success** is ours (TESP reports returns only); reaching the goal terminates, as in TESP.

    ## Version history
    * v1 (``metabench/WheeledNav-v1``): TESP's normalised control cost. Supersedes v0.
    * v0: initial version; its control cost squares the raw ±50 action (see above). Kept registered
      so that published numbers stay reproducible; use v1.
    """

    env_id = "metabench/WheeledNav-v0"
    family = SeparatedGoals()
    split_hashes = {
        "train": "fb8eaff4ee1c2a74179180bbb5dc8b6bc989ccc646658f78aa72b981acd4c64d",
        "test": "b190d417a982649ebb494ecdc78cdf170f034fbf21d26d9d75abe200cd7e07ed",
        "test-ood": "7a50092da72606b480b7ee837c9270cebbf4627c37e1c3475c9e3557613c6fdb",
    }
    success_rule = "any"
    n_adapt, n_eval = 2, 1
    metadata = {"render_modes": ["human", "rgb_array", "depth_array"], "render_fps": 20}

    frame_skip = 5
    goal_tolerance = 0.02
    #: ``reward_ctrl`` follows from the action, ``distance`` is ``reward_ctrl - reward`` and
    #: ``success`` is ``distance < goal_tolerance``: nothing the reward does not say already.
    public_info_keys = frozenset({"success", "distance", "reward_ctrl"})
    ctrl_cost_weight = 1e-3
    reset_pos_noise = 0.01
    reset_yaw_noise = 0.05

    def __init__(self, render_mode: str | None = None, width: int = 480, height: int = 480, **kwargs: Any):
        EzPickle.__init__(self, render_mode=render_mode, width=width, height=height, **kwargs)
        obs_space = spaces.Box(-np.inf, np.inf, (9,), np.float64)
        MujocoEnv.__init__(
            self,
            str(ASSET),
            self.frame_skip,
            observation_space=obs_space,
            render_mode=render_mode,
            width=width,
            height=height,
            default_camera_config={
                "distance": 4.5,
                "elevation": -60.0,
                "azimuth": 90.0,
                "lookat": [0.0, 0.0, 0.0],
            },
            **kwargs,
        )
        m = self.model
        self._goal_sites = np.array([m.site("goal").id, m.site("goal_marker").id])
        left, right = m.joint("left_wheel").dofadr[0], m.joint("right_wheel").dofadr[0]
        assert right == left + 1, "the wheels' dofs must be adjacent"
        self._wheel_dofs = slice(int(left), int(right) + 1)
        self._gx, self._gy = 0.0, 0.0

    # ------------------------------------------------------------------------------------------ tasks
    def _apply_task(self, task: Task) -> None:
        self._gx, self._gy = task.params["goal"]
        self.model.site_pos[self._goal_sites, :2] = (self._gx, self._gy)

    # ---------------------------------------------------------------------------------------- physics
    def reset_model(self) -> np.ndarray:
        qpos = self.init_qpos.copy()
        qpos[:2] += self.np_random.uniform(-self.reset_pos_noise, self.reset_pos_noise, size=2)
        half_yaw = 0.5 * self.np_random.uniform(-self.reset_yaw_noise, self.reset_yaw_noise)
        qpos[3:7] = (np.cos(half_yaw), 0.0, 0.0, np.sin(half_yaw))
        self.set_state(qpos, self.init_qvel.copy())
        return self._get_obs()

    def _get_obs(self) -> np.ndarray:
        qpos, qvel = self.data.qpos, self.data.qvel
        w, x, y, z = qpos[3:7].tolist()
        # Heading of the chassis' x axis in the floor plane: its (x, y) is (1 - 2(y^2 + z^2), 2(wz + xy)).
        hx, hy = 1.0 - 2.0 * (y * y + z * z), 2.0 * (w * z + x * y)
        norm = math.hypot(hx, hy)
        obs = np.empty(9)
        obs[:3] = qpos[:3]
        obs[3], obs[4] = hy / norm, hx / norm
        obs[5:7] = qvel[:2]
        obs[7:9] = qvel[self._wheel_dofs]
        return obs

    def _ctrl_reward(self, a: np.ndarray) -> float:
        """The control term of the reward for action ``a`` (v0: the raw action squared)."""
        return -self.ctrl_cost_weight * float(a @ a)

    def step(self, action):
        a = check_action(action, self.action_space)
        self.data.ctrl[:] = a
        mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        obs = self._get_obs()
        distance = math.hypot(obs[0] - self._gx, obs[1] - self._gy)
        reward_ctrl = self._ctrl_reward(a)
        reached = distance < self.goal_tolerance
        info = {"distance": distance, "reward_ctrl": reward_ctrl, "success": reached, **self._task_info()}
        if self.render_mode == "human":
            self.render()
        return obs, -distance + reward_ctrl, reached, False, info


class WheeledNavV1Env(WheeledNavEnv):
    """WheeledNav with TESP's control cost: a two-wheeled car must drive to an unseen goal.

    Everything is as in :class:`WheeledNavEnv` (model, observation, action, goal sets drawn the same
    way, episode, success) except the control term of the reward.

    ## Reward
    ``r = -||p_xy - g||_2 - 1e-3 * 0.5 * sum((clip(a, -50, 50) / 50)**2)``: TESP's
    (``tesp/envs/mujoco/mujoco_env.py``, ``calculate_ctrl_cost`` with ``ctrl_cost_coeff`` 1e-3 from
    ``main_train.py``), whose policy acts in [-1, 1] scaled to the ±50 ctrl range. Here the action is
    the wheels' target velocity in rad/s as in v0; the cost normalises it to [-1, 1] first, so a
    full-speed action costs 1e-3 a step, against 5 in v0. ``info`` holds ``distance`` (the first
    term's norm) and ``reward_ctrl``.

    ## Splits
    Drawn as v0's (same sampler, seed and sizes): ``train`` = D and ``test`` = D' (100 goals each,
    0.2 < |g| < 1.1), ``test-ood`` = D'' (100 goals, 1.1 < |g| < 1.5), every goal at least 0.1 from
    every other. The same goal values as v0's splits; the split hashes differ with the id.

    ## Source and departures
    TESP's wheeled-robot task; the departures are v0's (see :class:`WheeledNavEnv`) except the
    control cost, which is TESP's here: the model, observation (z and yaw velocities replaced by the
    wheels'), reset noise, goal values (other generator and seed, cross-split separation, 6-decimal
    rounding) and the success flag are ours.

    ## Version history
    * v1: TESP's normalised control cost; supersedes v0.
    * v0: the control cost squared the raw ±50 action (5,000 times TESP's).
    """

    env_id = "metabench/WheeledNav-v1"
    split_hashes = {
        "train": "9c2dff1560bcd71dd9711b4d46ba9b32baaaf31de97fc2201fedb2fdc82a35cf",
        "test": "79f1087ba75f63054cb7fdcf1d0564cb68ab942ddbc7f7e99b961fb4e45fc584",
        "test-ood": "69bbfaa61e1f2e9447fe58238974872c15607ae5f820600b35d1c1d2db9553b0",
    }
    #: ``reward_ctrl`` follows from the action and ``success`` from the episode ending; the goal
    #: distance (the reward's other term) is not passed on.
    public_info_keys = frozenset({"success", "reward_ctrl"})
    ctrl_cost_weight = 1e-3 * 0.5
    action_limit = 50.0

    def _ctrl_reward(self, a: np.ndarray) -> float:
        u = np.clip(a, -self.action_limit, self.action_limit) / self.action_limit
        return -self.ctrl_cost_weight * float(u @ u)
