"""Wrappers over metabench envs."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from metabench.env import MetaEnv


class ExplicitContext(gym.ObservationWrapper):
    """Append the acting task's parameters, normalised to [-1, 1], to a ``Box`` observation.

    The observation of the explicit-context (oracle) baseline. Parameters come in the order of the
    family's ``params``; each ``Param`` maps its valid range ``[low, high]`` to ``[-1, 1]``. For a
    non-stationary family the context follows the task acting now.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        base = env.unwrapped
        if not isinstance(base, MetaEnv):
            raise TypeError(f"ExplicitContext needs a metabench env, got {type(base).__name__}")
        if not isinstance(env.observation_space, spaces.Box) or len(env.observation_space.shape) != 1:
            raise TypeError(f"ExplicitContext needs a flat Box observation, got {env.observation_space}")
        self._base = base
        box = env.observation_space
        k = base.family.context_size
        self.observation_space = spaces.Box(
            low=np.concatenate([box.low, np.full(k, -1.0)]).astype(box.dtype),
            high=np.concatenate([box.high, np.full(k, 1.0)]).astype(box.dtype),
            dtype=box.dtype,
        )
        self._ctx_task: Any = None
        self._ctx = np.zeros(k, dtype=box.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        task = self._base.task
        if task is not self._ctx_task:  # recompute only when the task changes
            self._ctx = self._base.family.context(task).astype(self.observation_space.dtype)
            self._ctx_task = task
        return np.concatenate([observation, self._ctx])
