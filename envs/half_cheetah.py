"""HalfCheetahVel and HalfCheetahDir, stationary or not, on Gymnasium's HalfCheetah-v5 model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mujoco
import numpy as np
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.utils import EzPickle

from metabench.env import (
    LocationSchedule,
    MujocoMetaEnv,
    Schedule,
    TimeSchedule,
    check_action,
    draw_other_task,
)
from metabench.tasks import CUSTOM_SPLIT, Param, Task, TaskError, TaskFamily, tasks


class TargetVelocity(TaskFamily):
    """Target velocities: U(0, 3) in distribution, U(3, 4) out of distribution."""

    params = {"velocity": Param(0.0, 4.0, doc="target forward velocity (m/s)")}
    split_sizes = {"train": 100, "test": 30, "test-ood": 30}
    split_seed = 2019

    def sample(self, rng: np.random.Generator, n: int, split: str) -> list[dict[str, Any]]:
        lo, hi = (0.0, 3.0) if split != "test-ood" else (3.0, 4.0)
        return [{"velocity": float(v)} for v in rng.uniform(lo, hi, size=n)]


class HalfCheetahVelEnv(MujocoMetaEnv, HalfCheetahEnv):
    """Gymnasium's HalfCheetah-v5 whose reward asks for an unseen target forward velocity.

    The task family of MAML (Finn et al., 2017) and PEARL (Rakelly et al., 2019). Model, observation,
    action, reset noise and physics are exactly HalfCheetah-v5's (a test steps both side by side); only
    the reward differs.

    ## Observation
    ``Box(-inf, inf, (17,), float64)``: qpos without the root x (8) and qvel (9), as HalfCheetah-v5.

    ## Action
    ``Box(-1, 1, (6,), float32)``: joint torques, as HalfCheetah-v5.

    ## Reward
    ``r = -|v - v*| - 0.05 * sum(a**2)``, where ``v = (x_after - x_before) / dt`` is the forward
    velocity of the root over the step (``dt`` = 0.05 s: timestep 0.01, frame skip 5) and ``v*`` is the
    task's target. ``info`` holds ``x_velocity``, ``reward_run`` (the first term) and ``reward_ctrl``.

    ## Task parameters
    ``velocity`` (m/s), valid in [0, 4].

    ## Splits
    ``train``: 100 and ``test``: 30 targets drawn from U(0, 3); ``test-ood``: 30 targets from U(3, 4),
    faster than any training target. Split seed 2019.

    ## Episode
    200 steps (MAML's and PEARL's horizon); never terminates early. No success criterion.

    ## Version history
    * v0: initial version, on HalfCheetah-v5's model.
    """

    env_id = "metabench/HalfCheetahVel-v0"
    family = TargetVelocity()
    split_hashes = {
        "train": "9c89f104c21e9dde421810b46cd5552505c7e947bbd634db4f28eabc089bd57e",
        "test": "9602f70a9e49c07207811b386658a36b1d0b8a5aab6af09f186b6c4a55c02df5",
        "test-ood": "c8281b0c0d0e47f28f3214df26b9b81576270dafb5f6fe1d7baba45f9718a6cb",
    }
    n_adapt, n_eval = 2, 1
    ctrl_cost_weight = 0.05

    def __init__(self, **kwargs: Any):
        HalfCheetahEnv.__init__(self, **kwargs)
        EzPickle.__init__(self, **kwargs)
        self._target = 0.0
        self._dt = self.dt  # timestep * frame_skip; tasks never change either

    def _apply_task(self, task: Task) -> None:
        self._target = task.params["velocity"]

    def _run_reward(self, v: float) -> float:
        """The task's term of the reward for forward velocity ``v``."""
        return -abs(v - self._target)

    def _advance(self, action: Any) -> tuple[np.ndarray, float, dict[str, Any]]:
        """One step of HalfCheetah-v5's physics with this family's reward; no info about tasks."""
        a = check_action(action, self.action_space)
        data = self.data
        x_before = data.qpos[0]
        data.ctrl[:] = a
        # Gymnasium also calls mj_rnePostConstraint, which fills cfrc_* only: the observation and the
        # state do not use them, so skipping it keeps the same trajectory at a lower cost.
        mujoco.mj_step(self.model, data, nstep=self.frame_skip)
        v = (data.qpos[0] - x_before) / self._dt
        run = self._run_reward(v)
        ctrl = -self.ctrl_cost_weight * a.dot(a)  # ndarray.dot: the cheapest numpy call for it
        obs = np.concatenate((data.qpos[1:], data.qvel))
        if self.render_mode == "human":
            self.render()
        return obs, run + ctrl, {"x_velocity": v, "reward_run": run, "reward_ctrl": ctrl}

    def step(self, action):
        obs, reward, info = self._advance(action)
        info.update(self._task_info())
        return obs, reward, False, False, info


class HalfCheetahVelNonStationaryEnv(HalfCheetahVelEnv):
    """HalfCheetahVel whose target velocity changes inside the episode (CEMRL, Bing et al., 2022).

    Everything is as in :class:`HalfCheetahVelEnv` (observation, action, reward with the target acting
    at each step, splits drawn the same way) except:

    ## Episode
    800 steps (CEMRL's non-stationary configuration).

    ## Non-stationarity
    Each change makes another task act, drawn with ``self.np_random`` from the split of the episode's
    first task (a custom first task draws from ``train``), never the current one. (CEMRL drew its test
    velocities equal to its first training velocities; here the tasks inside a test episode are
    always test tasks.) When the task changes is the ``schedule``:

    * ``"time"`` (default): after every ``change_steps`` steps (default 100, CEMRL's), with
      probability ``change_prob`` (default 1.0, CEMRL's).
    * ``"location"`` (CEMRL's ``cheetah-non-stationary-vel`` configuration): when the torso's x passes
      a change point at ``±(change_point_basis + U(0,1) * change_point_interval)`` (defaults 10 and 1,
      CEMRL's); the passed point then moves ``change_point_basis + U(0,1) * change_point_interval``
      further out (:class:`metabench.env.LocationSchedule`). A cheetah that does not run far meets no
      change point.

    ``info["task_changed"]`` is true on the step after which the new target acts,
    ``info["task_index"]`` is the acting task's index. ``env.unwrapped.task`` is the acting task; the
    task passed to ``reset``/``set_task`` starts every episode.

    ## Version history
    * v0: initial version, ``"time"`` and ``"location"`` schedules.
    """

    env_id = "metabench/HalfCheetahVelNonStationary-v0"
    split_hashes = {
        "train": "5375b54680228c027583d8f95c31b08f1f851e7747147dc72fafe4e4a03f04f3",
        "test": "cf2472853c08274736ce113149a07e8d86ce2f56fc3b3a17eb43542563e57097",
        "test-ood": "3b33ba7d8d07edf1d6e95cdef88f235cbef10a439518966b2aa9e407be41cbd1",
    }
    n_adapt, n_eval = 1, 1
    schedules = ("time", "location")

    def __init__(
        self,
        schedule: str = "time",
        change_steps: int = 100,
        change_prob: float = 1.0,
        change_point_basis: float = 10.0,
        change_point_interval: float = 1.0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        EzPickle.__init__(
            self,
            schedule=schedule,
            change_steps=change_steps,
            change_prob=change_prob,
            change_point_basis=change_point_basis,
            change_point_interval=change_point_interval,
            **kwargs,
        )
        self.schedule = self._make_schedule(
            schedule, change_steps, change_prob, change_point_basis, change_point_interval
        )
        self._t = 0
        self._episode_task: Task | None = None

    @classmethod
    def _make_schedule(
        cls, kind: str, change_steps: int, change_prob: float, basis: float, interval: float
    ) -> Schedule:
        if kind not in cls.schedules:
            raise ValueError(f"unknown schedule {kind!r}; valid: {', '.join(map(repr, cls.schedules))}")
        if kind == "time":
            return TimeSchedule(every=change_steps, prob=change_prob)
        return LocationSchedule(basis=basis, interval=interval)

    def _next_task(self) -> Task | None:
        """The task to act after a change point, or None to keep the current one."""
        assert self._episode_task is not None and self._task is not None
        return draw_other_task(self, self._episode_task, self._task)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = super().reset(seed=seed, options=options)
        self._t = 0
        self._episode_task = self._task
        self.schedule.reset(self.np_random)
        return obs, info

    def step(self, action):
        obs, reward, info = self._advance(action)
        self._t += 1
        changed = self.schedule.should_change(self._t, float(self.data.qpos[0]), self.np_random)
        if changed:
            new = self._next_task()
            changed = new is not None
            if new is not None:
                self._switch(new)
        info.update(self._task_info(changed))
        return obs, reward, False, False, info


class Directions(TaskFamily):
    """Run forward (+1) or backward (-1): two tasks, shared by ``train`` and ``test``."""

    params = {"direction": Param(-1.0, 1.0, doc="+1 forward, -1 backward")}
    split_sizes = {"train": 2, "test": 2}
    shared_train_test = True
    directions = (-1.0, 1.0)

    def sample(self, rng: np.random.Generator, n: int, split: str) -> list[dict[str, Any]]:
        return [{"direction": float(d)} for d in rng.choice(self.directions, size=n)]

    def build_splits(self, env_id: str) -> dict[str, tuple[Task, ...]]:
        both = [{"direction": d} for d in self.directions]
        return {name: self._freeze(env_id, name, both) for name in ("train", "test")}

    def validate(self, params: Mapping[str, Any]) -> None:
        super().validate(params)
        if float(params["direction"]) not in self.directions:
            raise TaskError(
                f"task parameter 'direction' = {params['direction']!r} is not a direction; "
                "valid: -1.0 (backward) or 1.0 (forward)"
            )


class HalfCheetahDirEnv(HalfCheetahVelEnv):
    """Gymnasium's HalfCheetah-v5 rewarded for running forward or backward (the hidden task).

    The cheetah-dir task of MAML (Finn et al., 2017) and PEARL (Rakelly et al., 2019, ``rlkit/envs/
    half_cheetah_dir.py``). There are only two tasks, so ``test`` is the same two tasks as ``train``
    (the family declares ``shared_train_test``): the family measures how fast an agent *identifies*
    the direction from rewards, not how well it generalises to unseen tasks.

    ## Observation
    ``Box(-inf, inf, (17,), float64)``: qpos without the root x (8) and qvel (9), as HalfCheetah-v5.

    ## Action
    ``Box(-1, 1, (6,), float32)``: joint torques, as HalfCheetah-v5.

    ## Reward
    ``r = d * v - 0.05 * sum(a**2)``, where ``v = (x_after - x_before) / dt`` is the forward velocity
    of the root over the step (``dt`` = 0.05 s) and ``d`` the task's direction; the control weight
    0.05 is MAML's and PEARL's (``0.5 * 1e-1``), not HalfCheetah-v5's 0.1. ``info`` holds
    ``x_velocity``, ``reward_run`` (the first term) and ``reward_ctrl``.

    ## Task parameters
    ``direction``: -1.0 (backward) or 1.0 (forward); other values are rejected.

    ## Splits
    ``train`` and ``test``: the same two tasks, index 0 backward and index 1 forward. No ``test-ood``.

    ## Episode
    200 steps (MAML's and PEARL's horizon); never terminates early. No success criterion.

    ## Version history
    * v0: initial version, on HalfCheetah-v5's model.
    """

    env_id = "metabench/HalfCheetahDir-v0"
    family = Directions()
    split_hashes = {
        "train": "5a30334301f883a948f2c1c8f47388c84f446d172b2af966827870f760885d75",
        "test": "cd3e351f87eb0ff368cba80868d0b829d674df8b28fb1c3c654793e2c4ca77fa",
    }
    n_adapt, n_eval = 2, 1

    def _apply_task(self, task: Task) -> None:
        self._target = task.params["direction"]

    def _run_reward(self, v: float) -> float:
        return self._target * v


class HalfCheetahDirNonStationaryEnv(HalfCheetahDirEnv, HalfCheetahVelNonStationaryEnv):
    """HalfCheetahDir whose direction flips at change points inside the episode (CEMRL's
    ``cheetah-non-stationary-dir``, Bing et al., 2022).

    Observation, action, reward and tasks are as in :class:`HalfCheetahDirEnv`; the episode's first
    direction is the task passed to ``reset`` (or a train task drawn).

    ## Non-stationarity
    ``schedule="location"`` (default, CEMRL's): change points at ``±(change_point_basis + U(0,1) *
    change_point_interval)`` (defaults 10 and 2, CEMRL's; :class:`metabench.env.LocationSchedule`).
    Passing the positive change point makes the direction backward (-1), passing the negative one
    makes it forward (+1), so a good runner turns round every ~10 m; if the direction already points
    back, nothing changes (as in CEMRL). The passed point moves ``change_point_basis + U(0,1) *
    change_point_interval`` further out. ``schedule="time"``: the direction flips every
    ``change_steps`` steps with probability ``change_prob``. ``info["task_changed"]`` and
    ``info["task_index"]`` as in :class:`HalfCheetahVelNonStationaryEnv`.

    ## Episode
    800 steps (CEMRL's ``max_path_length``); never terminates early.

    ## Version history
    * v0: initial version.
    """

    env_id = "metabench/HalfCheetahDirNonStationary-v0"
    split_hashes = {
        "train": "ad9944061256b3fb904b49b4753106e2e99ab01d686786955d5a0985e69f0423",
        "test": "443f210d55a2ddd3413d78e276e2f1e9bc601e16a60edaa6168b6da0433e36c0",
    }
    n_adapt, n_eval = 1, 1

    def __init__(
        self,
        schedule: str = "location",
        change_steps: int = 100,
        change_prob: float = 1.0,
        change_point_basis: float = 10.0,
        change_point_interval: float = 2.0,
        **kwargs: Any,
    ):
        HalfCheetahVelNonStationaryEnv.__init__(
            self,
            schedule=schedule,
            change_steps=change_steps,
            change_prob=change_prob,
            change_point_basis=change_point_basis,
            change_point_interval=change_point_interval,
            **kwargs,
        )

    def _next_task(self) -> Task | None:
        assert self._episode_task is not None and self._task is not None
        if not isinstance(self.schedule, LocationSchedule):
            return draw_other_task(self, self._episode_task, self._task)
        want = -float(self.schedule.side)  # turn back towards the start
        if want == self._target:
            return None
        split = self._episode_task.split if self._episode_task.split != CUSTOM_SPLIT else "train"
        return next(t for t in tasks(self.env_id, split) if t.params["direction"] == want)
