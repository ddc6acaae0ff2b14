"""HalfCheetahVel and HalfCheetahDir, stationary or not, on Gymnasium's HalfCheetah-v5 model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium import spaces
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.utils import EzPickle

from metabench.env import (
    CemrlTimeSchedule,
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

    ## Source and departures
    Checked against PEARL's code (katerakelly/oyster: ``rlkit/envs/half_cheetah_vel.py``,
    ``rlkit/envs/half_cheetah.py``, ``configs/cheetah-vel.json``, ``launch_experiment.py``). The
    reward (``-|v - v*| - 0.5 * 1e-1 * sum(a**2)``), horizon (200) and split sizes (100 train, 30
    eval) are PEARL's. Where this family departs from it:

    * **Observation.** PEARL's has 20 values (float32): qpos without the root x (8), qvel (9) and the
      torso's position ``get_body_com("torso")`` (3, absolute x included). Ours is HalfCheetah-v5's 17
      values: no torso position.
    * **Model.** PEARL steps Gym's mujoco-py HalfCheetah; ours is Gymnasium's HalfCheetah-v5 model and
      reset noise under MuJoCo 3.3.0.
    * **Targets.** PEARL draws 130 targets from U(0, 3) after ``np.random.seed(1337)`` and takes the
      first 100 for training, the last 30 for evaluation (its docstring says U(0, 2), MAML's range;
      the code draws U(0, 3)). Ours: the same range and sizes, another generator and seed (other
      values); ``test-ood`` (U(3, 4)) is ours.

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
    #: Meta-training env steps per tier, the same for every agent. A headline family: ``ci`` is sized so
    #: that every reference agent's unit (meta-training and meta-test) fits 30 minutes on one core (the
    #: records' wall times show it; leaderboards/ci/campaign.toml runs them); ``standard`` is the papers'.
    budgets = {"smoke": 2_000, "ci": 200_000, "standard": 2_000_000}
    ctrl_cost_weight = 0.05
    #: ``reward_ctrl`` follows from the action and ``reward_run`` is ``reward - reward_ctrl``. Hidden:
    #: ``x_position`` (the observation leaves it out) and ``x_velocity`` (the step's mean velocity,
    #: which the observation does not give exactly; with ``reward_run`` it pins the target in a step).
    public_info_keys = frozenset({"reward_run", "reward_ctrl"})

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

    ## Source and departures
    Checked against CEMRL's code (zhenshan-bing/cemrl ``configs/cheetah-non-stationary-vel.json``,
    ``rlkit/envs/half_cheetah_non_stationary_vel.py``; the env itself is in
    zhenshan-bing/meta_rand_envs ``half_cheetah_non_stationary_velocity.py`` and ``base.py``). CEMRL's
    configuration is :class:`HalfCheetahVelNonStationaryV1Env` (``-v1``); this v0 departs from it:

    * **Default schedule.** CEMRL's configuration changes by ``"location"``; v0 defaults to ``"time"``.
    * **Time rule.** CEMRL flips a coin at every step once more than ``change_steps`` steps have passed
      since the last change, then restarts the count (with ``change_prob`` 1: every 101 steps); v0
      changes at ``step % change_steps == 0`` with probability ``change_prob`` (every 100 steps).
    * **Targets.** CEMRL's are U(0.5, 3.0); v0's U(0, 3) (``test-ood`` U(3, 4), ours). CEMRL draws
      its 100 train and 30 eval targets each after ``np.random.seed(1337)``, so its eval targets are
      its first 30 train targets; here the splits are disjoint.
    * **Change draws.** CEMRL draws the next target from all train (or eval) targets, the current one
      included; here never the current one, from the split of the episode's first task.
    * **Observation.** CEMRL's has 20 values: qpos without the root x, the torso's position (3) and
      qvel; v0 has HalfCheetah-v5's 17. The location rule reads the torso body's x
      (``get_body_com``) in CEMRL, ``qpos[0]`` here (the same point, one substep apart).

    ## Version history
    * v0: initial version, ``"time"`` and ``"location"`` schedules.
    * v1 (``metabench/HalfCheetahVelNonStationary-v1``): CEMRL's configuration (see above).
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

    def _position(self) -> float:
        """The x that the location schedule reads after a step: the root's."""
        return float(self.data.qpos[0])

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
        changed = self.schedule.should_change(self._t, self._position(), self.np_random)
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

    ## Source and departures
    Checked against PEARL's ``rlkit/envs/half_cheetah_dir.py`` and ``half_cheetah.py``
    (katerakelly/oyster): the reward, the two tasks and the horizon are PEARL's. Departures: the
    observation is HalfCheetah-v5's 17 values, where PEARL's 20 add the torso's position
    (``get_body_com("torso")``, absolute x included); the model is Gymnasium's HalfCheetah-v5 under
    MuJoCo 3.3.0, not Gym's mujoco-py one.

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

    ## Source and departures
    Checked against CEMRL's ``configs/cheetah-non-stationary-dir.json`` and meta_rand_envs'
    ``half_cheetah_non_stationary_direction.py`` and ``base.py``: the location rule (basis 10,
    interval 2), the turn-back rule, the reward and the horizon are CEMRL's. Departures (v1,
    :class:`HalfCheetahDirNonStationaryV1Env`, removes the first two):

    * **Observation.** CEMRL's 20 values add the torso's position to HalfCheetah-v5's 17.
    * **Time rule.** CEMRL's time mode flips a coin at every step once more than ``change_steps``
      steps have passed since the last change; v0 changes at ``step % change_steps == 0``. (CEMRL's
      time mode also turns forward into backward only, never back: its ``change_active_task`` is
      called without a side, which counts as the positive one. Here the direction flips both ways.)

    ## Version history
    * v0: initial version.
    * v1 (``metabench/HalfCheetahDirNonStationary-v1``): CEMRL's observation and time rule.
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


# ------------------------------------------------------------------------------- CEMRL's configuration
class CemrlTargetVelocity(TargetVelocity):
    """CEMRL's target velocities: U(0.5, 3) in distribution; U(3, 4) out of distribution (ours)."""

    split_seed = 2022

    def sample(self, rng: np.random.Generator, n: int, split: str) -> list[dict[str, Any]]:
        lo, hi = (0.5, 3.0) if split != "test-ood" else (3.0, 4.0)
        return [{"velocity": float(v)} for v in rng.uniform(lo, hi, size=n)]


class _CemrlCheetah:
    """CEMRL's observation and time rule for the non-stationary cheetahs (meta_rand_envs' ``base.py``
    and ``half_cheetah_non_stationary_*.py``): put it first among the bases of a v0 class."""

    schedules: ClassVar[tuple[str, ...]] = ("location", "time")
    #: The step's reward minus its control term is the task's term, so only the control term is
    #: passed on; ``x_velocity`` and ``reward_run`` stay hidden.
    public_info_keys = frozenset({"reward_ctrl"})

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._torso = int(self.model.body("torso").id)
        self.observation_space = spaces.Box(-np.inf, np.inf, (20,), np.float64)

    @classmethod
    def _make_schedule(
        cls, kind: str, change_steps: int, change_prob: float, basis: float, interval: float
    ) -> Schedule:
        if kind == "time":
            return CemrlTimeSchedule(steps=change_steps, prob=change_prob)
        return super()._make_schedule(kind, change_steps, change_prob, basis, interval)  # type: ignore[misc]

    def _get_obs(self) -> np.ndarray:
        # CEMRL's (PEARL's) order: qpos without the root x, the torso body's position, qvel.
        data = self.data
        return np.concatenate((data.qpos[1:], data.xpos[self._torso], data.qvel))

    def _advance(self, action: Any) -> tuple[np.ndarray, float, dict[str, Any]]:
        _, reward, info = super()._advance(action)  # type: ignore[misc]
        return self._get_obs(), reward, info

    def _position(self) -> float:
        # CEMRL reads get_body_com("torso")[0]: the torso's xpos, as of the last substep's forward pass.
        return float(self.data.xpos[self._torso, 0])


class HalfCheetahVelNonStationaryV1Env(_CemrlCheetah, HalfCheetahVelNonStationaryEnv):
    """CEMRL's non-stationary velocity cheetah: the target velocity changes as the cheetah runs.

    CEMRL's ``cheetah-non-stationary-vel`` configuration (Bing et al., 2022; zhenshan-bing/cemrl
    ``configs/cheetah-non-stationary-vel.json``, the env in zhenshan-bing/meta_rand_envs
    ``half_cheetah_non_stationary_velocity.py`` and ``base.py``), on Gymnasium's HalfCheetah-v5 model.

    ## Observation
    ``Box(-inf, inf, (20,), float64)``, CEMRL's (and PEARL's cheetah's): qpos without the root x (8),
    the torso body's world position (x, y, z; 3, absolute x included, so an agent sees how far it
    has run) and qvel (9).

    ## Action
    ``Box(-1, 1, (6,), float32)``: joint torques, as HalfCheetah-v5.

    ## Reward
    ``r = -|v - v*| - 0.05 * sum(a**2)``, where ``v = (x_after - x_before) / dt`` is the root's forward
    velocity over the step (``dt`` = 0.05 s) and ``v*`` the target acting during the step. ``info``
    holds ``x_velocity``, ``reward_run`` (the first term) and ``reward_ctrl``.

    ## Task parameters
    ``velocity`` (m/s), valid in [0, 4].

    ## Splits
    ``train``: 100 and ``test``: 30 targets from U(0.5, 3) (CEMRL's range and sizes), drawn together
    and cut apart; ``test-ood``: 30 targets from U(3, 4), faster than any training target. Split seed
    2022.

    ## Episode
    800 steps (CEMRL's ``max_path_length``); never terminates early (``termination_possible`` false).
    The harness gives each test task 1 adaptation and 1 evaluation episode: adapting means following
    the changes inside an episode.

    ## Non-stationarity
    Each change makes another target act, drawn with ``self.np_random`` from the split of the
    episode's first task (``train`` for a custom first task), never the current one. When:

    * ``schedule="location"`` (default, CEMRL's): change points at ``+(10 + U(0,1))`` and
      ``-(10 + U(0,1))`` along x (``change_point_basis`` 10, ``change_point_interval`` 1), drawn at
      every reset; when the torso's x passes one, the target changes and that point moves
      ``10 + U(0,1)`` further out (:class:`metabench.env.LocationSchedule`). A cheetah running at 2 m/s
      meets a change point about every 100 steps; one that stands still meets none.
    * ``schedule="time"``: CEMRL's rule (:class:`metabench.env.CemrlTimeSchedule`): once more than
      ``change_steps`` (100) steps have passed since the start or the last change, the target changes
      with probability ``change_prob`` (1.0) at each step, and the count restarts: with the defaults,
      after 101, 202, ... steps.

    ``info["task_changed"]`` is true on the step after which the new target acts,
    ``info["task_index"]`` is the acting task's index; ``env.unwrapped.task`` is the acting task.

    ## Budgets
    ``smoke`` 2,000 env steps (v0's); ``ci`` HalfCheetahVel's (a placeholder until it is measured);
    ``standard`` 4,896,000, CEMRL's configuration: 800 steps on each of 100 train tasks first, then
    301 epochs of 800 steps on each of 20 tasks.

    ## Source and departures
    Checked against the files named above. Location rule, basis and interval, target range, split
    sizes, reward, horizon and observation are CEMRL's; where this family departs from it:

    * **Splits.** CEMRL draws its 100 train and 30 eval targets each after ``np.random.seed(1337)``,
      so its eval targets are its first 30 train targets; here ``test`` is disjoint from ``train``,
      drawn with another generator and seed, and ``test-ood`` is ours.
    * **Change draws.** CEMRL draws the next target from all train (or eval) targets, the current one
      included, with the global ``np.random``; here never the current one, with ``self.np_random``,
      and a test episode's targets are all test targets.
    * **Model.** Gymnasium's HalfCheetah-v5 model and reset noise under MuJoCo 3.3.0, not Gym's
      mujoco-py HalfCheetah. The observation is float64 (CEMRL's float32).

    ## Version history
    * v1: CEMRL's configuration (location schedule by default, targets U(0.5, 3), its observation and
      its time rule).
    * v0 (``metabench/HalfCheetahVelNonStationary-v0``): time schedule by default, targets U(0, 3),
      HalfCheetah-v5's observation, changes at multiples of ``change_steps``.
    """

    env_id = "metabench/HalfCheetahVelNonStationary-v1"
    family = CemrlTargetVelocity()
    split_hashes = {
        "train": "42566e1a88a0f2adc630d15844e9b7a23cc7c56e56984b9266b4d680e11a14c7",
        "test": "b3fbce282cc5389fd326b314451928257c1ee7d9fc89a6b3e5d4938b6e9219c9",
        "test-ood": "08d92d201e0504ad8919eb644e7619becc76d5013d8d47dc5d03387319beed2d",
    }
    budgets = {
        "smoke": HalfCheetahVelNonStationaryEnv.budgets["smoke"],
        "ci": 200_000,  # a headline family: as HalfCheetahVel-v0's, 250 episodes of 800 steps
        "standard": 4_896_000,
    }

    def __init__(
        self,
        schedule: str = "location",
        change_steps: int = 100,
        change_prob: float = 1.0,
        change_point_basis: float = 10.0,
        change_point_interval: float = 1.0,
        **kwargs: Any,
    ):
        super().__init__(
            schedule=schedule,
            change_steps=change_steps,
            change_prob=change_prob,
            change_point_basis=change_point_basis,
            change_point_interval=change_point_interval,
            **kwargs,
        )


class HalfCheetahDirNonStationaryV1Env(_CemrlCheetah, HalfCheetahDirNonStationaryEnv):
    """CEMRL's non-stationary direction cheetah: run forward or backward, turned round by location.

    CEMRL's ``cheetah-non-stationary-dir`` configuration (zhenshan-bing/cemrl
    ``configs/cheetah-non-stationary-dir.json``; meta_rand_envs
    ``half_cheetah_non_stationary_direction.py``). As :class:`HalfCheetahDirNonStationaryEnv` (reward
    ``d * v - 0.05 * sum(a**2)``, the two directions shared by ``train`` and ``test``, 800 steps, the
    location rule with basis 10 and interval 2, turning back towards the start) except:

    ## Observation
    ``Box(-inf, inf, (20,), float64)``, CEMRL's: qpos without the root x (8), the torso body's world
    position (3) and qvel (9).

    ## Non-stationarity
    ``schedule="location"`` (default) as v0. ``schedule="time"`` follows CEMRL's time rule
    (:class:`metabench.env.CemrlTimeSchedule`): once more than ``change_steps`` steps have passed since
    the last change, the direction flips with probability ``change_prob`` at each step.

    ## Budgets
    ``standard`` 1,609,600 env steps, CEMRL's configuration (3,200 steps on each of the 2 tasks, then
    501 epochs of 1,600 steps on each); ``smoke`` and ``ci`` the defaults.

    ## Source and departures
    Location rule, tasks, reward, horizon and observation are CEMRL's. Departures: in CEMRL's time
    mode the direction turns from forward to backward only, never back (its ``change_active_task``
    is called without a side, which counts as passing the positive change point); here it flips both
    ways. The model is Gymnasium's HalfCheetah-v5 under MuJoCo 3.3.0 and the observation float64.

    ## Version history
    * v1: CEMRL's observation and time rule.
    * v0 (``metabench/HalfCheetahDirNonStationary-v0``): HalfCheetah-v5's observation, changes at
      multiples of ``change_steps`` in the time mode.
    """

    env_id = "metabench/HalfCheetahDirNonStationary-v1"
    split_hashes = {
        "train": "578821b42b1867bb8746ea17065a1a1f694d183d3e2343ab7e8cf5e0ed6ab97c",
        "test": "3774c8f92b3a8b0825f5050164d7abcf68dafaba6cd23b703c1acbda633ddf76",
    }
    budgets = {"smoke": 2_000, "ci": 100_000, "standard": 1_609_600}
