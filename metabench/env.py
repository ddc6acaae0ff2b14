"""The env contract every metabench family keeps, and the pieces MuJoCo families share.

:class:`MetaEnv` is a mixin for a Gymnasium env: ``set_task(task)``, ``task``,
``reset(options={"task": task})``, a train task drawn with ``self.np_random`` when none is set, and
``info["task_index"]`` / ``info["task_changed"]``. :class:`MujocoMetaEnv` adds the reset order MuJoCo
families need (seed, choose and apply the task, then reset the physics) and :class:`ModelParams`
edits a compiled model in place from values kept at construction. Non-stationary families add a
:class:`Schedule` that says when the task changes inside an episode.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from metabench.tasks import CUSTOM_SPLIT, Task, TaskError, TaskFamily, tasks


class MetaEnv(gym.Env):
    """Mixin giving a Gymnasium env a task: put it first among the bases.

    Subclasses set ``env_id``, ``family`` and ``split_hashes`` and implement :meth:`_apply_task`.
    They call :meth:`_choose_task` in ``reset`` right after seeding, and merge :meth:`_task_info`
    into the infos they return.
    """

    env_id: ClassVar[str]
    family: ClassVar[TaskFamily]
    #: sha256 of each frozen split's canonical JSON; :func:`metabench.tasks` checks them.
    split_hashes: ClassVar[Mapping[str, str]] = {}
    #: How an episode's success is read from ``info["success"]``: at the ``"final"`` step or ``"any"``.
    success_rule: ClassVar[str] = "final"
    #: Harness protocol defaults for this family: adaptation and evaluation episodes per task.
    n_adapt: ClassVar[int] = 10
    n_eval: ClassVar[int] = 3
    #: Meta-training budget in env steps per tier; the same for every agent, so that the
    #: leaderboard compares like with like. Families override with what their tier needs.
    budgets: ClassVar[Mapping[str, int]] = {"smoke": 2_000, "ci": 100_000, "standard": 2_000_000}
    #: Tasks per split meta-tested at a tier (the first ones of each split), where meta-testing every
    #: task does not fit the tier; a tier not named here meta-tests every task (smoke: 5 per split).
    meta_test_tasks: ClassVar[Mapping[str, int]] = {}
    #: The ``info`` keys an agent that is not an oracle may see (the harness passes only these).
    #: Declare a key public only when it tells nothing the agent cannot work out from what it sees
    #: anyway (observations, its actions and the reward): ``success``, reward terms that follow from
    #: the reward and the action. Goal distances, positions the observation hides and other
    #: task-derived values stay hidden. ``task_*`` keys are never public.
    public_info_keys: ClassVar[frozenset[str]] = frozenset({"success"})

    _fixed_task: Task | None = None
    _task: Task | None = None

    # ---------------------------------------------------------------------------------------- tasks
    @property
    def task(self) -> Task | None:
        """The task acting now (for non-stationary families it changes inside an episode)."""
        return self._task

    def set_task(self, task: Task) -> None:
        """Fix the task for every following episode (until another ``set_task``)."""
        self.check_task(task)
        self._fixed_task = task
        self._switch(task)

    def check_task(self, task: Any) -> None:
        if not isinstance(task, Task):
            raise TaskError(
                f"{self.env_id} expects a metabench.Task, got {type(task).__name__}; "
                f"use metabench.tasks({self.env_id!r}, 'train') or family.make_task(...)"
            )
        if task.family != self.env_id:
            raise TaskError(
                f"task of family {task.family!r} cannot be set on {self.env_id}; "
                f"use a task from metabench.tasks({self.env_id!r}, split)"
            )
        if task.split not in ("train", "test", "test-ood", CUSTOM_SPLIT):
            raise TaskError(f"task has unknown split {task.split!r}; valid: train, test, test-ood, custom")
        self.family.validate(task.params)

    def _switch(self, task: Task) -> None:
        self._task = task
        self._apply_task(task)

    @abc.abstractmethod
    def _apply_task(self, task: Task) -> None:
        """Make ``task`` act: edit the model in place or set the reward's target. Keep it cheap."""

    def _choose_task(self, options: Mapping[str, Any] | None) -> None:
        """Pick the episode's task: ``options["task"]``, the fixed one, or a train task drawn."""
        given = (options or {}).get("task")
        if given is not None:
            self.set_task(given)
        elif self._fixed_task is None:
            train = tasks(self.env_id, "train")
            self._switch(train[int(self.np_random.integers(len(train)))])
        elif self._task is not self._fixed_task:
            self._switch(self._fixed_task)

    def _task_info(self, changed: bool = False) -> dict[str, Any]:
        if self._task is None:  # never reset, or the first reset failed (e.g. on a bad task)
            raise gym.error.ResetNeeded(
                f"{self.env_id} has no task yet: call reset() successfully before step() "
                "(a reset that raised sets none)"
            )
        return {"task_index": self._task.index, "task_changed": changed}

    # ------------------------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()  # type: ignore[misc]  # EzPickle's
        state["_metabench_task"] = None if self._fixed_task is None else self._fixed_task.to_dict()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        task = state.pop("_metabench_task", None)
        super().__setstate__(state)  # type: ignore[misc]
        if task is not None:
            self.set_task(Task.from_dict(task))


def check_action(action: Any, space: gym.spaces.Box) -> np.ndarray:
    """The action as a float64 array of the space's shape; NaN/inf raise (MuJoCo would silently
    reset its simulation instead). On the hot path of every step, so kept to a few numpy calls."""
    a = np.asarray(action, dtype=np.float64)
    if a.shape != space.shape:
        raise ValueError(f"action has shape {a.shape}, expected {space.shape}")
    if not math.isfinite(a.sum()) and not np.isfinite(a).all():
        raise ValueError(f"action is not finite: {a}")
    return a


class MujocoMetaEnv(MetaEnv):
    """MetaEnv for a Gymnasium ``MujocoEnv``: seed, choose and apply the task, then reset physics.

    The task is applied before ``mj_resetData`` because ``mj_setConst`` (needed after mass edits)
    uses ``data`` as scratch space.
    """

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        gym.Env.reset(self, seed=seed)
        self._choose_task(options)
        import mujoco

        mujoco.mj_resetData(self.model, self.data)
        obs = self.reset_model()
        info = {**self._get_reset_info(), **self._task_info()}
        if self.render_mode == "human":
            self.render()
        return obs, info


class ModelParams:
    """Scales fields of a compiled ``MjModel`` in place relative to values kept at construction.

    ``mj_setConst`` refreshes derived quantities (``body_subtreemass``, …): without it a model
    edited in place drifts from one compiled with the same values. The simulation state (qpos, qvel)
    is kept, so a switch in the middle of an episode changes the dynamics, not the pose.
    """

    def __init__(self, model: Any, data: Any, fields: Iterable[str]):
        self.model, self.data = model, data
        self.nominal = {f: np.array(getattr(model, f), copy=True) for f in fields}

    def set(self, **values: np.ndarray | float) -> None:
        """Set each named field to ``nominal * factor`` (broadcast) and refresh derived constants."""
        import mujoco

        for name, factor in values.items():
            getattr(self.model, name)[:] = self.nominal[name] * factor
        # mj_setConst uses data as scratch and leaves qpos at qpos0: keep the state, so that a task
        # set in the middle of an episode (non-stationary families) does not move the robot.
        qpos = self.data.qpos.copy()
        mujoco.mj_setConst(self.model, self.data)
        self.data.qpos[:] = qpos
        mujoco.mj_forward(self.model, self.data)

    def restore(self) -> None:
        self.set(**{name: 1.0 for name in self.nominal})


# ------------------------------------------------------------------------------------- schedules
class Schedule(abc.ABC):
    """When a non-stationary family changes its task inside an episode."""

    def reset(self, np_random: np.random.Generator) -> None:  # noqa: B027 - optional hook
        """Called at every episode start (e.g. to draw change points)."""

    @abc.abstractmethod
    def should_change(self, step: int, position: float, np_random: np.random.Generator) -> bool:
        """After ``step`` steps of the episode, with the torso at ``position``: change now?"""


@dataclasses.dataclass
class TimeSchedule(Schedule):
    """Every ``every`` steps, change the task with probability ``prob`` (CEMRL's ``"time"`` mode)."""

    every: int = 100
    prob: float = 1.0

    def __post_init__(self) -> None:
        if self.every < 1 or not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"TimeSchedule needs every >= 1 and 0 <= prob <= 1, got {self}")

    def should_change(self, step: int, position: float, np_random: np.random.Generator) -> bool:
        return step % self.every == 0 and bool(np_random.random() < self.prob)


@dataclasses.dataclass
class CemrlTimeSchedule(Schedule):
    """CEMRL's ``"time"`` mode as its code has it (``meta_rand_envs/base.py``, ``check_env_change``):
    once more than ``steps`` steps have passed since the episode start or the last change, the task
    changes with probability ``prob`` at every step, and a change restarts the count.

    With ``prob`` = 1 the task changes every ``steps + 1`` steps: for ``steps`` = 100, the new task acts
    from the 102nd step on (after 101 steps), then after 202, 303, ... steps. With ``prob`` < 1 each
    gap is ``steps + 1`` plus a geometric wait (mean ``1/prob - 1`` more steps).
    """

    steps: int = 100
    prob: float = 1.0
    last: int = dataclasses.field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.steps < 0 or not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"CemrlTimeSchedule needs steps >= 0 and 0 <= prob <= 1, got {self}")

    def reset(self, np_random: np.random.Generator) -> None:
        self.last = 0

    def should_change(self, step: int, position: float, np_random: np.random.Generator) -> bool:
        if step - self.last > self.steps and (self.prob >= 1.0 or np_random.random() < self.prob):
            self.last = step
            return True
        return False


@dataclasses.dataclass
class LocationSchedule(Schedule):
    """Change the task when the torso passes a change point (CEMRL's ``"location"`` mode).

    At each episode start the change points are ``+(basis + U(0,1) * interval)`` and
    ``-(basis + U(0,1) * interval)``. When the torso's x passes the positive one, the task changes and
    that point moves ``basis + U(0,1) * interval`` further out (the negative one likewise), so a
    runner meets a new change point about every ``basis`` metres. :attr:`side` says which point was
    passed last (``+1``/``-1``; ``0`` before any). CEMRL (Bing et al., 2022): basis 10, interval 1
    for target velocities, 2 for directions.
    """

    basis: float = 10.0
    interval: float = 1.0
    positive: float = dataclasses.field(default=math.inf, init=False)
    negative: float = dataclasses.field(default=-math.inf, init=False)
    side: int = dataclasses.field(default=0, init=False)

    def __post_init__(self) -> None:
        if not (self.basis > 0 and self.interval >= 0 and math.isfinite(self.basis + self.interval)):
            raise ValueError(f"LocationSchedule needs basis > 0 and interval >= 0, got {self}")

    def _gap(self, np_random: np.random.Generator) -> float:
        return self.basis + float(np_random.random()) * self.interval

    def reset(self, np_random: np.random.Generator) -> None:
        self.positive, self.negative, self.side = self._gap(np_random), -self._gap(np_random), 0

    def should_change(self, step: int, position: float, np_random: np.random.Generator) -> bool:
        if position > self.positive:
            self.positive += self._gap(np_random)
            self.side = 1
            return True
        if position < self.negative:
            self.negative -= self._gap(np_random)
            self.side = -1
            return True
        return False


def draw_other_task(env: MetaEnv, episode_task: Task, current: Task) -> Task:
    """A task from ``episode_task``'s split (train for custom tasks), other than ``current``."""
    split = episode_task.split if episode_task.split != CUSTOM_SPLIT else "train"
    pool = tasks(env.env_id, split)
    i = int(env.np_random.integers(len(pool) - 1))
    # Skip the current task so that a change really changes something.
    if current.split == split and 0 <= current.index <= i:
        i += 1
    return pool[i]
