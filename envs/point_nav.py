"""PointNav: PEARL's 2-D point robot that must find a goal on the unit half circle."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import EzPickle

from metabench.env import MetaEnv, check_action
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

    def step(self, action):
        obs, dense, terminated, truncated, info = super().step(action)
        info["dense_reward"] = dense
        return obs, (1.0 + dense if info["success"] else 0.0), terminated, truncated, info
