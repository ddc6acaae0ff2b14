"""Meta-World's ML1, ML10 and ML45 benchmarks as metabench families, with frozen goal sets.

We wrap Meta-World 3.1.1's Sawyer tasks, we do not copy them. Importing this module does not import
Meta-World: an env builds the Sawyer env of a task class (and imports Meta-World) only when a task of
that class is first set, and keeps it for later tasks of the same class.

Goal sets are frozen JSON files in ``envs/assets/metaworld/``, drawn once by Meta-World's own sampling
(``envs/metaworld_goals.py`` regenerates them); a task's goal vector is applied through Meta-World's
own task mechanism (``_last_rand_vec`` with ``_freeze_rand_vec``, then ``_set_task_inner``), which is
what ``SawyerXYZEnv.set_task`` does after unpickling a ``metaworld.Task``: no pickle at run time.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import EzPickle

from metabench.env import MetaEnv
from metabench.envs.metaworld_names import (
    BENCHMARK_CLASSES,
    DEFAULT_REWARD_VERSION,
    GOAL_SEED,
    GOALS_PER_CLASS,
    ML1_NAMES,
    SPLIT_HASHES,
    ml1_class_name,
    ml1_id,
    ml1_name,
)
from metabench.tasks import CUSTOM_SPLIT, Param, Task, TaskError, TaskFamily

ASSETS = Path(__file__).resolve().parent / "assets" / "metaworld"

#: Meta-World's reward versions (``reward_function_version``); v2 is Meta-World's default.
REWARD_VERSIONS: tuple[str, ...] = ("v1", "v2")
#: Values of the ``task_classes`` env argument.
TASK_CLASS_CHOICES: tuple[str, ...] = ("all", "train", "test")
#: Longest goal vector of any class (3 or 6 values); ML10/ML45 contexts pad to it.
MAX_RAND_VEC = 6

# Bounds of the Sawyer hand in the observation: SawyerXYZEnv._HAND_SPACE (a test compares them).
_HAND_LOW = (-0.525, 0.348, -0.0525)
_HAND_HIGH = (0.525, 1.025, 0.7)


def goal_hidden_observation_space() -> spaces.Box:
    """Meta-World's goal-hidden observation space, the same for every class (39 values, float64).

    hand xyz (3), gripper opening (1), up to two objects' xyz + quaternion (14, zero-padded), the same
    18 values of the previous step, and the goal xyz (3), always zero here (the goal is hidden).
    """
    obj = np.full(14, np.inf)
    frame_low = np.hstack((_HAND_LOW, -1.0, -obj))
    frame_high = np.hstack((_HAND_HIGH, 1.0, obj))
    low = np.hstack((frame_low, frame_low, np.zeros(3)))
    high = np.hstack((frame_high, frame_high, np.zeros(3)))
    return spaces.Box(low, high, dtype=np.float64)


@functools.cache
def _load(name: str) -> Mapping[str, Any]:
    """A frozen JSON file of ``envs/assets/metaworld``, parsed once per process."""
    with open(ASSETS / f"{name}.json") as f:
        return json.load(f)


@functools.cache
def _class_box(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The box Meta-World draws class ``name``'s goal vectors from (its ``_random_reset_space``)."""
    spec = _load("classes")["classes"][name]
    low, high = np.array(spec["rand_vec_low"]), np.array(spec["rand_vec_high"])
    low.flags.writeable = high.flags.writeable = False
    return low, high


class MetaWorldGoals(TaskFamily):
    """Task classes of a Meta-World benchmark, each with frozen goal vectors.

    A task's parameters are ``rand_vec``, Meta-World's goal vector of the class (3 or 6 values: the
    object's initial position and/or the goal position, by class), and for ML10/ML45 ``class_id``, the
    class's Meta-World ``task_id`` (its position in :data:`~metabench.envs.metaworld_names.ML1_NAMES`).
    A ``rand_vec`` is valid inside the class's box (Meta-World's ``_random_reset_space``).

    Splits are read from JSON (see ``envs/metaworld_goals.py``), not drawn by :meth:`sample`.
    """

    def __init__(self, benchmark: str, train_classes: Sequence[str], test_classes: Sequence[str]):
        self.benchmark = benchmark
        self.train_classes = tuple(train_classes)
        self.test_classes = tuple(test_classes)
        self.classes = tuple(dict.fromkeys((*self.train_classes, *self.test_classes)))
        self.multi_class = benchmark != "ML1"
        self.split_seed = GOAL_SEED
        self.split_sizes = {
            "train": GOALS_PER_CLASS * len(self.train_classes),
            "test": GOALS_PER_CLASS * len(self.test_classes),
        }
        doc_vec = "Meta-World's goal vector (rand_vec) of the class, inside the class's box"
        boxes = [_class_box(n) for n in self.classes]
        low = float(min(b[0].min() for b in boxes))
        high = float(max(b[1].max() for b in boxes))
        if self.multi_class:
            # Documentation of the space: validate() checks each class's own box and length.
            self.params = {
                "class_id": Param(0.0, len(ML1_NAMES) - 1.0, doc="Meta-World task_id of the task class"),
                "rand_vec": Param(low, high, size=MAX_RAND_VEC, doc=doc_vec + " (3 or 6 values by class)"),
            }
        else:
            self.params = {"rand_vec": Param(low, high, size=boxes[0][0].size, doc=doc_vec)}

    @classmethod
    def ml1(cls, name: str) -> MetaWorldGoals:
        return cls("ML1", (name,), (name,))

    # -------------------------------------------------------------------------------- classes
    def class_name(self, params: Mapping[str, Any]) -> str:
        """The Meta-World class name of a (validated) task's parameters."""
        if not self.multi_class:
            return self.classes[0]
        return ML1_NAMES[int(params["class_id"])]

    def class_split(self, name: str) -> str:
        return "train" if name in self.train_classes else "test"

    # ----------------------------------------------------------------------------- TaskFamily
    def sample(self, rng: np.random.Generator, n: int, split: str) -> list[dict[str, Any]]:
        """Draw like Meta-World: a class of the split uniformly, then ``rand_vec`` uniform in its box.

        Not used for the splits, which are frozen; some classes reject vectors whose object and goal
        lie too close together (Meta-World redraws those at reset; metabench's env rejects them).
        """
        pool = self.test_classes if split == "test" else self.train_classes
        out: list[dict[str, Any]] = []
        for _ in range(n):
            name = pool[int(rng.integers(len(pool)))]
            low, high = _class_box(name)
            params: dict[str, Any] = {"rand_vec": tuple(float(v) for v in rng.uniform(low, high))}
            if self.multi_class:
                params = {"class_id": float(ML1_NAMES.index(name)), **params}
            out.append(params)
        return out

    def build_splits(self, env_id: str) -> dict[str, tuple[Task, ...]]:
        raw: dict[str, list[dict[str, Any]]] = {}
        if self.multi_class:
            goals = _load(f"{self.benchmark.lower()}_goals")["goals"]
            for split, names in (("train", self.train_classes), ("test", self.test_classes)):
                if tuple(goals[split]) != names:
                    raise TaskError(
                        f"{self.benchmark}'s {split} goals are for {list(goals[split])}, not {names}"
                    )
                raw[split] = [
                    {"class_id": float(ML1_NAMES.index(name)), "rand_vec": vec}
                    for name in names
                    for vec in goals[split][name]
                ]
        else:
            goals = _load("ml1_goals")["goals"][self.classes[0]]
            raw = {split: [{"rand_vec": vec} for vec in goals[split]] for split in ("train", "test")}
        return {
            split: tuple(Task(env_id, split, i, p) for i, p in enumerate(plist))
            for split, plist in raw.items()
        }

    def validate(self, params: Mapping[str, Any]) -> None:
        missing = sorted(set(self.params) - set(params))
        if missing:
            raise TaskError(f"task lacks parameter(s) {missing}; this family needs {sorted(self.params)}")
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            raise TaskError(f"unknown task parameter(s) {unknown}; this family has {sorted(self.params)}")
        values = {}
        for key in self.params:
            try:
                values[key] = np.asarray(params[key], dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise TaskError(f"task parameter {key!r} = {params[key]!r} is not numeric") from exc
            if not np.all(np.isfinite(values[key])):
                raise TaskError(f"task parameter {key!r} is not finite ({params[key]!r})")
        if self.multi_class:
            cid = values["class_id"]
            if cid.shape != () or cid != np.round(cid) or not 0 <= cid < len(ML1_NAMES):
                raise TaskError(
                    f"task parameter 'class_id' = {params['class_id']!r} is not a Meta-World task_id"
                )
            name = ML1_NAMES[int(cid)]
            if name not in self.classes:
                valid = ", ".join(f"{ML1_NAMES.index(n)} ({n})" for n in self.classes)
                raise TaskError(
                    f"class {name!r} (class_id {int(cid)}) is not in {self.benchmark}; valid: {valid}"
                )
        else:
            name = self.classes[0]
        low, high = _class_box(name)
        vec = values["rand_vec"]
        if vec.shape != low.shape:
            raise TaskError(
                f"task parameter 'rand_vec' has shape {vec.shape}; class {name!r} needs {low.shape}"
            )
        if np.any(vec < low) or np.any(vec > high):
            raise TaskError(
                f"task parameter 'rand_vec' = {params['rand_vec']!r} is outside class {name!r}'s box "
                f"[{low.tolist()}, {high.tolist()}]"
            )

    @property
    def context_size(self) -> int:
        if self.multi_class:
            return len(self.classes) + MAX_RAND_VEC
        return self.params["rand_vec"].size or 0

    def context(self, task: Task) -> np.ndarray:
        """``rand_vec`` mapped from its class's box to [-1, 1] (0 where the box is flat); for ML10/ML45
        a one-hot of the class (train classes first) in front, and the vector zero-padded to 6."""
        name = self.class_name(task.params)
        low, high = _class_box(name)
        span = high - low
        flat = span <= 0
        z = np.where(flat, 0.0, 2.0 * (task.array("rand_vec") - low) / np.where(flat, 1.0, span) - 1.0)
        if not self.multi_class:
            return z
        onehot = np.zeros(len(self.classes))
        onehot[self.classes.index(name)] = 1.0
        return np.concatenate([onehot, z, np.zeros(MAX_RAND_VEC - z.size)])


class _DrawLimit:
    """Stands in for a Sawyer env's ``_get_state_rand_vec`` while a hand-made goal is tried.

    With a frozen vector that breaks a class's own placement rule (e.g. object and goal closer than
    0.15), Meta-World's ``reset_model`` would redraw forever; this raises after ``limit`` draws.
    """

    def __init__(self, draw: Any, name: str, limit: int = 8):
        self.draw, self.name, self.limit, self.count = draw, name, limit, 0

    def __call__(self) -> np.ndarray:
        self.count += 1
        if self.count > self.limit:
            raise TaskError(
                f"rand_vec is rejected by Meta-World's {self.name!r}: its reset redraws such vectors "
                "(object and goal too close together), and a task's vector is fixed"
            )
        return self.draw()


def _apply_goal(sawyer: Any, rand_vec: Any) -> None:
    """What ``SawyerXYZEnv.set_task`` does with an unpickled ML task, from a JSON vector."""
    sawyer._set_task_called = True
    sawyer._freeze_rand_vec = True
    sawyer._last_rand_vec = np.array(rand_vec, dtype=np.float64)
    sawyer._set_task_inner()


class MetaWorldEnv(MetaEnv, EzPickle):
    """Base of the Meta-World families: one Gymnasium env whose task is a Sawyer task class and goal.

    ## Observation
    ``Box((39,), float64)``, Meta-World's goal-hidden observation for every class: hand position (3),
    gripper opening (1), object positions and quaternions (14, zero-padded), the same 18 values of the
    previous step, and 3 zeros where goal-observable Meta-World puts the goal. Bounds: the hand box
    ``[-0.525, 0.525] x [0.348, 1.025] x [-0.0525, 0.7]``, the gripper ``[-1, 1]``, objects unbounded.

    ## Action
    ``Box(-1, 1, (4,), float32)``: end-effector displacement (x, y, z; 1 = 1 cm) and gripper torque, as
    in Meta-World; NaN/inf actions raise ``ValueError``.

    ## Reward
    Meta-World's own reward of the task class, ``compute_reward`` of its Sawyer env, version
    ``reward_function_version`` (``"v2"``, Meta-World's default, or ``"v1"``); v2 rewards lie in
    [0, 10]. Each class has its own formula: see ``metaworld/envs/sawyer_<class>_v3.py``. ``info``
    holds Meta-World's ``success``, ``near_object``, ``grasp_success``, ``grasp_reward``,
    ``in_place_reward``, ``obj_to_target`` and ``unscaled_reward``, plus ``task_index`` and
    ``task_changed``.

    ## Episode
    500 steps (Meta-World's ``max_path_length``); never terminates. The Sawyer scene is deterministic
    given the task: the reset seed only drives which train task is drawn when none is set.

    ## Success
    ``info["success"]`` (a bool) is Meta-World's success flag of the step; an episode succeeds when
    any of its steps does (``success_rule = "any"``, Meta-World's evaluation). The harness's protocol
    is Meta-World's: 10 adaptation episodes, then 3 evaluation episodes, per task.

    ## Tasks
    ``set_task`` (or ``reset(options={"task": ...})``) switches the Sawyer task class and its goal; the
    new task acts from the next ``reset`` (``step`` before it raises ``ResetNeeded``). The Sawyer env of
    a class is built when a task of the class is first set, then kept inside this env: about 0.15 s
    and 25 MB (its MuJoCo model's meshes) per class used, as Meta-World's own one env per class.

    ## Oracle
    ``goal_position()`` returns the goal that goal-observable Meta-World puts in ``obs[-3:]``: what
    Meta-World's scripted experts (``metaworld.policies``) read; ``metaworld_env`` is the Sawyer env
    of the current task.

    ## Arguments
    * ``reward_function_version``: ``"v2"`` (default) or ``"v1"``, passed to every Sawyer env; it
      appears in ``env.spec.kwargs``, which results record.
    * ``task_classes``: ``"all"`` (default), ``"train"`` or ``"test"``: which of the benchmark's
      classes this env accepts; a task of another class is rejected (e.g. a meta-training env that
      must never see a held-out class).
    * ``render_mode`` (``"rgb_array"``, ``"depth_array"``, ``"human"``), ``camera_name``,
      ``camera_id``, ``width``, ``height``: passed to the Sawyer envs (Meta-World's defaults).

    ## Source and departures
    Yu et al., "Meta-World: A Benchmark and Evaluation for Multi-Task and Meta Reinforcement
    Learning", CoRL 2019; Meta-World 3.1.1 (Farama Foundation), whose Sawyer envs this wraps: the
    observation, action, reward, success flag and 500-step limit are Meta-World's own. Checked against
    Meta-World 3.1.1's ``evaluation.py``, ``wrappers.py`` and ``__init__.py``; where the harness's use
    of these envs departs from Meta-World's own evaluation:

    * **Returns are not comparable.** Meta-World's ``evaluation`` turns on
      ``AutoTerminateOnSuccessWrapper`` for evaluation episodes (and ``make_ml_envs_test`` builds test
      envs with ``terminate_on_success=True``), so an evaluation episode ends at its first success and
      its return stops there. Here every episode runs its 500 steps: a policy that succeeds early
      keeps collecting reward (up to 10 a step with v2 rewards), so our returns are larger and are not
      comparable with returns reported from Meta-World's evaluation. Success rates are comparable: an
      episode succeeds when any step does, which is what a success-terminated episode's final flag
      says. (Meta-World's adaptation episodes do not terminate on success either.)
    * **Tasks.** Meta-World's ``metalearning_evaluation`` resamples test tasks for each of its
      ``num_evals`` rounds; here the goal sets are frozen (50 per class and split) and the harness
      meta-tests each task once per seed.
    """

    metadata = {"render_modes": ["human", "rgb_array", "depth_array"], "render_fps": 80}
    family: ClassVar[MetaWorldGoals]
    success_rule = "any"
    n_adapt, n_eval = 10, 3
    #: Only Meta-World's ``success``. Its other keys are reward-shaping terms taken from the hidden
    #: goal: ``obj_to_target`` is the object's (reach: the hand's) distance to it, ``in_place_reward``
    #: its tolerance term, ``near_object``, ``grasp_reward`` and ``grasp_success`` are the hand's
    #: distance to the goal in reach-like classes; ``unscaled_reward`` repeats the reward in some
    #: classes only, so it is hidden with them.
    public_info_keys = frozenset({"success"})

    def __init__(
        self,
        reward_function_version: str = DEFAULT_REWARD_VERSION,
        task_classes: str = "all",
        render_mode: str | None = None,
        camera_name: str | None = None,
        camera_id: int | None = None,
        width: int = 480,
        height: int = 480,
    ):
        EzPickle.__init__(
            self,
            reward_function_version=reward_function_version,
            task_classes=task_classes,
            render_mode=render_mode,
            camera_name=camera_name,
            camera_id=camera_id,
            width=width,
            height=height,
        )
        if reward_function_version not in REWARD_VERSIONS:
            raise ValueError(
                f"reward_function_version must be one of {REWARD_VERSIONS}, got {reward_function_version!r}"
            )
        if task_classes not in TASK_CLASS_CHOICES:
            raise ValueError(f"task_classes must be one of {TASK_CLASS_CHOICES}, got {task_classes!r}")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        self.reward_function_version = reward_function_version
        self.task_classes = task_classes
        self.render_mode = render_mode
        self._sawyer_kwargs = {
            "reward_function_version": reward_function_version,
            "render_mode": render_mode,
            "camera_name": camera_name,
            "camera_id": camera_id,
            "width": width,
            "height": height,
        }
        fam = self.family
        self.allowed_classes = {
            "all": fam.classes,
            "train": fam.train_classes,
            "test": fam.test_classes,
        }[task_classes]
        self.observation_space = goal_hidden_observation_space()
        self.action_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
        self._sawyers: dict[str, Any] = {}
        self._sawyer: Any = None
        self._needs_reset = True

    # ------------------------------------------------------------------------------------ tasks
    def check_task(self, task: Any) -> None:
        super().check_task(task)
        name = self.family.class_name(task.params)
        if name not in self.allowed_classes:
            raise TaskError(
                f"task class {name!r} is one of {self.family.benchmark}'s {self.family.class_split(name)} "
                f"classes, but this {self.env_id} env was made with task_classes={self.task_classes!r}; "
                f"it accepts: {', '.join(self.allowed_classes)}"
            )
        if task.split == CUSTOM_SPLIT:
            self._try_goal(name, task.params["rand_vec"])

    def _try_goal(self, name: str, rand_vec: Any) -> None:
        """Reset class ``name``'s Sawyer env once with a hand-made goal, so that a goal Meta-World's
        reset would never accept raises here instead of hanging a later ``reset``."""
        sawyer = self._sawyer_for(name)
        self._needs_reset = True
        _apply_goal(sawyer, rand_vec)
        sawyer._get_state_rand_vec = _DrawLimit(type(sawyer)._get_state_rand_vec.__get__(sawyer), name)
        try:
            sawyer.reset()
        finally:
            del sawyer._get_state_rand_vec
            if self._task is not None and self.family.class_name(self._task.params) == name:
                _apply_goal(sawyer, self._task.params["rand_vec"])

    def _apply_task(self, task: Task) -> None:
        sawyer = self._sawyer_for(self.family.class_name(task.params))
        _apply_goal(sawyer, task.params["rand_vec"])
        self._sawyer = sawyer
        self._needs_reset = True

    def _sawyer_for(self, name: str) -> Any:
        """The Sawyer env of class ``name``, built on first use (this imports Meta-World)."""
        sawyer = self._sawyers.get(name)
        if sawyer is None:
            from metaworld.env_dict import ALL_V3_ENVIRONMENTS

            sawyer = ALL_V3_ENVIRONMENTS[name](**self._sawyer_kwargs)
            self._sawyers[name] = sawyer
        return sawyer

    @property
    def metaworld_env(self) -> Any:
        """The Sawyer env (``metaworld.SawyerXYZEnv``) of the current task; ``None`` before the first."""
        return self._sawyer

    def goal_position(self) -> np.ndarray:
        """The goal position Meta-World's goal-observable envs put in ``obs[-3:]`` (hidden here).

        For scripted experts (``metaworld.policies``) and oracles; valid after ``reset``.
        """
        if self._sawyer is None or self._needs_reset:
            raise gym.error.ResetNeeded("call reset() before goal_position()")
        return np.array(self._sawyer._get_pos_goal(), dtype=np.float64)

    # ---------------------------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._choose_task(options)
        if self._sawyer is None:  # closed since the task was set: rebuild its Sawyer env
            self._apply_task(self._task)
        obs, info = self._sawyer.reset()
        self._needs_reset = False
        info.update(self._task_info())
        return obs, info

    def step(self, action):
        if self._needs_reset:
            raise gym.error.ResetNeeded("call reset() after a task is set, before step()")
        a = np.asarray(action)
        if a.shape != (4,):
            raise ValueError(f"action has shape {a.shape}, expected (4,)")
        if not math.isfinite(a.dot(a)) and not np.isfinite(a).all():  # the dot: a fast path
            raise ValueError(f"action is not finite: {a}")
        obs, reward, terminated, truncated, info = self._sawyer.step(a)
        info["success"] = bool(info["success"])
        info["task_index"] = self._task.index
        info["task_changed"] = False
        return obs, float(reward), terminated, truncated, info

    def render(self):
        if self.render_mode is None:
            return None
        if self._sawyer is None:
            raise gym.error.ResetNeeded("call reset() before render()")
        return self._sawyer.render()

    def close(self) -> None:
        for sawyer in self._sawyers.values():
            sawyer.close()
        self._sawyers.clear()
        self._sawyer = None
        self._needs_reset = True


class ML1Env(MetaWorldEnv):
    """Meta-World's ML1: one Sawyer task class, train and test tasks differ in their goal.

    One id per Meta-World class, ``metabench/ML1-<class>-v0`` with the class name without Meta-World's
    ``-v3`` (``metabench/ML1-pick-place-v0`` wraps ``pick-place-v3``); :data:`ML1_CLASSES` maps
    Meta-World's names to the env classes, :func:`ml1_env_class` looks one up by name.
    Observation, action, reward, episode and success: see :class:`MetaWorldEnv`.

    ## Task parameters
    ``rand_vec``: Meta-World's goal vector of the class (3 or 6 values by class: object and/or goal
    position), valid inside the class's box (Meta-World's ``_random_reset_space``); hand-made goals
    that the class's reset would redraw (object and goal too close) are rejected.

    ## Splits
    ``train``: 50 goals, ``metaworld.ML1(class, seed=42).train_tasks``; ``test``: 50 goals,
    ``metaworld.ML1(class, seed=42).test_tasks`` (Meta-World draws them from seed 43); disjoint.
    Frozen as JSON in ``envs/assets/metaworld/ml1_goals.json``. The ``ci`` tier meta-tests a fixed
    subset, the first 10 test goals (``meta_test_tasks``); ``standard`` meta-tests all 50.

    ## Version history
    * v0: initial version, on Meta-World 3.1.1's v3 classes.
    """

    task_name: ClassVar[str]
    #: Meta-training env steps per tier, the same for every agent. ``ML1-reach`` is a headline family:
    #: ``ci`` (400 episodes of 500 steps) is sized so that every reference agent's unit, meta-training
    #: and meta-test (60 tasks x 13 episodes x 500 steps), fits 30 minutes on one core.
    budgets: ClassVar[Mapping[str, int]] = {"smoke": 2_000, "ci": 200_000, "standard": 2_000_000}
    #: At ci, the first 10 test goals and 10 of the train sample: all 60 took the random agent 577
    #: CPU-seconds alone (390k steps of 500-step episodes, measured on a loaded 2-core machine), more
    #: than a third of a unit's 30 minutes before any agent computes; standard meta-tests every goal.
    meta_test_tasks: ClassVar[Mapping[str, int]] = {"ci": 10}


class ML10Env(MetaWorldEnv):
    """Meta-World's ML10: meta-train on 10 Sawyer task classes, meta-test on 5 held-out classes.

    Observation, action, reward, episode and success: see :class:`MetaWorldEnv`.

    ## Task parameters
    ``class_id``: the class's Meta-World ``task_id`` (its position in ``ML1_NAMES``); ``rand_vec``:
    the class's goal vector (3 or 6 values), inside the class's box.

    ## Splits
    ``train``: the 10 train classes (reach, push, pick-place, door-open, drawer-close,
    button-press-topdown, peg-insert-side, window-open, sweep, basketball) x 50 goals = 500 tasks;
    ``test``: the 5 held-out classes (drawer-open, door-close, shelf-place, sweep-into, lever-pull)
    x 50 goals = 250 tasks; Meta-World's ``ML10(seed=42)`` goals, frozen in
    ``envs/assets/metaworld/ml10_goals.json``. ``gym.make(..., task_classes="train")`` makes an env that
    rejects held-out classes.

    ## Version history
    * v0: initial version, on Meta-World 3.1.1's v3 classes.
    """

    env_id = "metabench/ML10-v0"
    family = MetaWorldGoals("ML10", *BENCHMARK_CLASSES["ML10"])
    split_hashes = SPLIT_HASHES.get(env_id, {})


class ML45Env(MetaWorldEnv):
    """Meta-World's ML45: meta-train on 45 Sawyer task classes, meta-test on 5 held-out classes.

    Observation, action, reward, episode and success: see :class:`MetaWorldEnv`.

    ## Task parameters
    As :class:`ML10Env`: ``class_id`` (Meta-World ``task_id``) and ``rand_vec``.

    ## Splits
    ``train``: the 45 train classes x 50 goals = 2250 tasks; ``test``: the 5 held-out classes
    (bin-picking, box-close, hand-insert, door-lock, door-unlock) x 50 goals = 250 tasks; Meta-World's
    ``ML45(seed=42)`` goals, frozen in ``envs/assets/metaworld/ml45_goals.json``. Only the Sawyer envs of
    classes actually used are built, so ``gym.make`` + ``reset`` takes about a second where
    ``metaworld.ML45(...)`` takes about a minute.

    ## Version history
    * v0: initial version, on Meta-World 3.1.1's v3 classes.
    """

    env_id = "metabench/ML45-v0"
    family = MetaWorldGoals("ML45", *BENCHMARK_CLASSES["ML45"])
    split_hashes = SPLIT_HASHES.get(env_id, {})


def _make_ml1_class(name: str) -> type[ML1Env]:
    """The env class of ML1 class ``name``: an :class:`ML1Env` with its own id, family and hashes."""
    env_id, cls_name = ml1_id(name), ml1_class_name(name)
    attrs = {
        "__module__": __name__,
        "__qualname__": cls_name,
        "__doc__": f"Meta-World's ML1 ``{name}`` ({env_id}): see :class:`ML1Env`.",
        "env_id": env_id,
        "task_name": name,
        "family": MetaWorldGoals.ml1(name),
        "split_hashes": SPLIT_HASHES.get(env_id, {}),
    }
    return type(cls_name, (ML1Env,), attrs)


#: Meta-World class name (``"pick-place-v3"``) to its ML1 env class.
ML1_CLASSES: Mapping[str, type[ML1Env]] = MappingProxyType({n: _make_ml1_class(n) for n in ML1_NAMES})
# Module attributes, so that the registered entry points and pickle find the classes by name.
globals().update({cls.__name__: cls for cls in ML1_CLASSES.values()})


def ml1_env_class(name: str) -> type[ML1Env]:
    """The ML1 env class of a Meta-World class (``"pick-place"`` or ``"pick-place-v3"``).

    An unknown name raises ``ValueError`` listing the valid names.
    """
    return ML1_CLASSES[ml1_name(name)]
