"""PointNav: PEARL's 2-D point robot that must find a goal on the unit half circle (or follow one
that jumps: PointNavNonStationary)."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import EzPickle

from metabench.env import CemrlTimeSchedule, MetaEnv, check_action, draw_other_task
from metabench.tasks import Param, Task, TaskFamily


class HalfCircleGoals(TaskFamily):
    """Goals on the unit circle: the upper half (angle in [0, pi]) in distribution, the lower half
    (angle in (pi, 2 pi)) out of distribution."""

    params = {"goal": Param(-1.0, 1.0, size=2, doc="goal position (x, y)")}
    split_sizes = {"train": 80, "test": 20, "test-ood": 20}
    split_seed = 1337

    def sample(self, rng: np.random.Generator, n: int, split: str) -> list[dict[str, Any]]:
        lo, hi = (0.0, np.pi) if split != "test-ood" else (np.pi, 2 * np.pi)
        angles = rng.uniform(lo, hi, size=n)
        return [{"goal": (float(np.cos(a)), float(np.sin(a)))} for a in angles]


class PointNavEnv(MetaEnv, EzPickle):
    """A point robot in the plane that must reach an unseen goal on the unit half circle.

    PEARL's point-robot task (Rakelly et al., 2019, ``rlkit/envs/point_robot.py``): the goal is the
    task and is not observed, so the agent has to find it by exploring and reading the reward.

    ## Observation
    ``Box(-inf, inf, (2,), float32)``: the robot's position (x, y). The goal is hidden; wrap with
    :class:`metabench.wrappers.ExplicitContext` to append it (the oracle).

    ## Action
    ``Box(-0.1, 0.1, (2,), float32)``: a displacement, added to the position. Actions outside the box
    are clipped (as in PEARL).

    ## Reward
    ``r = -||p - g||_2`` after the move (dense), where ``p`` is the position and ``g`` the goal.

    ## Task parameters
    ``goal`` = (cos a, sin a). Valid range: [-1, 1] per coordinate.

    ## Splits
    ``train``: 80 goals, ``test``: 20 goals, a uniform on [0, pi] (PEARL's 80/20); ``test-ood``: 20
    goals with a uniform on (pi, 2 pi), the unseen lower half circle. Split seed 1337.

    ## Episode
    Starts at the origin; 20 steps (PEARL's ``max_path_length``), never terminates early.
    ``info["success"]`` is true when the robot is within 0.2 of the goal; an episode succeeds when
    its final step does.

    ## Version history
    * v0: initial version.
    """

    env_id = "metabench/PointNav-v0"
    family = HalfCircleGoals()
    split_hashes = {
        "train": "f866689868daa8fd975206c2f804256f79b7fa0f03940c568125d7c306591f18",
        "test": "bc3acba89c0664c2195e5df930e4d03e47e62f62eede83cea61b0d91b5ad3cd6",
        "test-ood": "6910ca6d966c6460f822779fc02a0a1d63bb04816bc04950b9bb856d965b6ed8",
    }
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    goal_radius = 0.2
    #: ``distance`` is ``-reward`` here (the reward is dense), so it tells the agent nothing new.
    public_info_keys = frozenset({"success", "distance"})
    #: Meta-training env steps per tier. ``ci`` is what RL² needs to learn to adapt here (at 20k its
    #: final return was no better than no-context's, at 100k it is -7.9; agents/rl2.py); PEARL and MAML
    #: learn on less. Random and oracle returns at each tier: metabench/references.py.
    budgets = {"smoke": 2_000, "ci": 100_000, "standard": 2_000_000}

    def __init__(self, render_mode: str | None = None):
        EzPickle.__init__(self, render_mode=render_mode)
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        self.render_mode = render_mode
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = spaces.Box(-0.1, 0.1, (2,), np.float32)
        self._pos = np.zeros(2)
        self._goal = np.zeros(2)

    def _apply_task(self, task: Task) -> None:
        self._goal = task.array("goal")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._choose_task(options)
        self._pos = np.zeros(2)
        return self._pos.astype(np.float32), self._task_info()

    def step(self, action):
        a = check_action(action, self.action_space)
        self._pos = self._pos + np.clip(a, -0.1, 0.1)
        dist = float(np.linalg.norm(self._pos - self._goal))
        info = {"success": dist <= self.goal_radius, "distance": dist, **self._task_info()}
        return self._pos.astype(np.float32), -dist, False, False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        size, scale = 128, 40.0  # pixels; 40 px per unit, origin at the centre
        img = np.full((size, size, 3), 255, dtype=np.uint8)
        yy, xx = np.mgrid[0:size, 0:size]

        def disk(p: np.ndarray, r: float, colour: tuple[int, int, int]) -> None:
            cx, cy = size / 2 + scale * p[0], size / 2 - scale * p[1]
            img[(xx - cx) ** 2 + (yy - cy) ** 2 <= (scale * r) ** 2] = colour

        disk(self._goal, self.goal_radius, (255, 200, 200))
        disk(self._goal, 0.05, (220, 30, 30))
        disk(self._pos, 0.05, (30, 60, 220))
        return img


class PointNavSparseEnv(PointNavEnv):
    """PointNav with PEARL's sparse reward: nothing until the robot is within 0.2 of the goal.

    Same observation, action, tasks and episodes as :class:`PointNavEnv`, with its own frozen splits
    (same goals, same split seed).

    ## Reward
    ``r = 1 - ||p - g||_2`` if ``||p - g||_2 <= 0.2``, else ``0`` (PEARL's ``SparsePointEnv``: the
    dense reward masked outside the goal radius, plus one inside it). ``info["dense_reward"]`` holds
    ``-||p - g||_2``.

    ## Version history
    * v0: initial version.
    """

    env_id = "metabench/PointNavSparse-v0"
    split_hashes = {
        "train": "422a28174e6a03c41639105c0972cbcd8a16f42868503e0392e81adac94bdd45",
        "test": "803d6156d9d93bbbd54e92f8293fbba1eb471e9057314bce1ad0d3df7e6de8d3",
        "test-ood": "bfc8e87c66e7c09c15667bf18494288a9fcfe6753997b144abc837aedcb8489d",
    }
    #: ``distance`` and ``dense_reward`` are the dense goal distance that the sparse reward withholds.
    public_info_keys = frozenset({"success"})

    def step(self, action):
        obs, dense, terminated, truncated, info = super().step(action)
        info["dense_reward"] = dense
        return obs, (1.0 + dense if info["success"] else 0.0), terminated, truncated, info


class PointNavNonStationaryEnv(PointNavEnv):
    """PointNav whose hidden goal jumps to another goal of the half circle inside a longer episode.

    A cheap family for agents that must follow a task that changes within an episode (CEMRL, Bing et
    al., 2022): the point robot, goals and reward of :class:`PointNavEnv`, 100 steps, and CEMRL's time
    rule for when the goal jumps. A change is seen only through the reward.

    ## Observation
    ``Box(-inf, inf, (2,), float32)``: the robot's position (x, y). The goal is hidden; wrap with
    :class:`metabench.wrappers.ExplicitContext` to append the goal acting now (the oracle).

    ## Action
    ``Box(-0.1, 0.1, (2,), float32)``: a displacement, added to the position; actions outside the box
    are clipped (as in PEARL).

    ## Reward
    ``r = -||p - g_t||_2`` after the move, where ``g_t`` is the goal acting during the step.

    ## Task parameters
    ``goal`` = (cos a, sin a), valid in [-1, 1] per coordinate: the episode's first goal. Later goals
    are other tasks of the same split.

    ## Splits
    PointNav's goals (same sampler and split seed 1337): ``train`` 80 and ``test`` 20 goals with a
    uniform on [0, pi], ``test-ood`` 20 goals with a uniform on (pi, 2 pi). Their hashes differ from
    PointNav's with the id.

    ## Episode
    Starts at the origin; 100 steps, never terminates early. The robot keeps its position when the
    goal jumps. ``info["success"]`` is true when the robot is within 0.2 of the goal acting now; an
    episode succeeds when its final step does. The harness gives each test task 1 adaptation and 3
    evaluation episodes (``n_adapt``, ``n_eval``): adapting means following the jumps within an
    episode, and each evaluation episode draws its own jumps.

    ## Non-stationarity
    CEMRL's time rule (:class:`metabench.env.CemrlTimeSchedule`): once more than ``change_steps``
    (default 20) steps have passed since the start or the last jump, the goal jumps with probability
    ``change_prob`` (default 0.1) at each step, and the count restarts. So a goal acts for at least
    21 steps (enough to cross the half circle's diameter, 2, at the top speed of 0.1 a step) and for 30
    on average; an episode has no jump with probability 0.9**79 (about 2e-4). A jump moves the goal
    0.94 on average. The new goal is drawn
    with ``self.np_random`` from the split of the episode's first task (``train`` for a custom one),
    never the current one, so the jumps are reproducible from the reset seed.
    ``info["task_changed"]`` is true on the step after which the new goal acts, ``info["task_index"]``
    is the acting goal's index; ``env.unwrapped.task`` is the acting task and the task passed to
    ``reset``/``set_task`` starts every episode.

    ## Budgets
    ``smoke`` 2,000 env steps; ``ci`` 200,000: 2,000 episodes, in which about 7,800 goals act
    (measured: 3.9 goals per episode over 2,000 episodes), against the 5,000 single-goal episodes of
    PointNav's 100,000, where RL² learns to adapt (``agents/rl2.py``); that the reference agents
    learn to follow the jumps within it is still to be measured. ``standard`` 2,000,000.

    ## Scale of returns
    Mean return of scripted policies on the ``test`` split (20 goals x 3 seeded episodes;
    ``tests/test_non_stationary.py`` recomputes them): uniform random actions -111.3; standing still
    -100.0; heading for the episode's first goal and staying there (knows the first goal, ignores the
    jumps) -70.7; heading for the goal acting now (knows every jump at once) -16.7. Following the
    jumps is worth about 54 per episode over knowing only where the episode started.

    ## Source and departures
    PEARL's point robot (``rlkit/envs/point_robot.py``, as :class:`PointNavEnv`) with CEMRL's time rule
    (zhenshan-bing/meta_rand_envs ``base.py``, ``check_env_change``). CEMRL has no point-robot family:
    this one is ours. Its defaults (20 steps, probability 0.1) replace CEMRL's (100, 1.0), which would
    never change the goal inside a 100-step episode; CEMRL draws the next task from all tasks of the
    split, the current one included, with the global ``np.random``.

    ## Version history
    * v0: initial version.
    """

    env_id = "metabench/PointNavNonStationary-v0"
    split_hashes = {
        "train": "57dfd30b2c99094142ef45d9824336383cd3826a8da0f7f20596e9e439de4fb7",
        "test": "a6c38fa92f47b076a74101ee90b26d623871fb333b809af0f69755bb4669c203",
        "test-ood": "1fc52fd241bdf155bbee42c475bc2d8d195e4592d65e667f3fa2d207fddf77cd",
    }
    #: ``success`` only: the goal distance is the reward's negative here, but it is not passed on.
    public_info_keys = frozenset({"success"})
    n_adapt, n_eval = 1, 3
    budgets = {"smoke": 2_000, "ci": 200_000, "standard": 2_000_000}

    def __init__(self, render_mode: str | None = None, change_steps: int = 20, change_prob: float = 0.1):
        super().__init__(render_mode=render_mode)
        EzPickle.__init__(self, render_mode=render_mode, change_steps=change_steps, change_prob=change_prob)
        self.schedule = CemrlTimeSchedule(steps=change_steps, prob=change_prob)
        self._t = 0
        self._episode_task: Task | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = super().reset(seed=seed, options=options)
        self._t = 0
        self._episode_task = self._task
        self.schedule.reset(self.np_random)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        self._t += 1
        if self.schedule.should_change(self._t, 0.0, self.np_random):
            assert self._episode_task is not None and self._task is not None
            self._switch(draw_other_task(self, self._episode_task, self._task))
            info.update(self._task_info(True))
        return obs, reward, terminated, truncated, info
