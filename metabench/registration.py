"""Every metabench id, registered with Gymnasium when ``import metabench`` runs.

The table below is the single list of ids. Entry points are strings, so registering imports no family
module (and no MuJoCo or Meta-World): a module is imported only when its env is made or its tasks are
asked for. To add a family, add its rows here (see CONTRIBUTING.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import gymnasium as gym


@dataclasses.dataclass(frozen=True)
class EnvEntry:
    id: str
    entry_point: str
    max_episode_steps: int
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=lambda: MappingProxyType({}))


ENVS: tuple[EnvEntry, ...] = (
    EnvEntry("metabench/PointNav-v0", "metabench.envs.point_nav:PointNavEnv", 20),
    EnvEntry("metabench/PointNavSparse-v0", "metabench.envs.point_nav:PointNavSparseEnv", 20),
    EnvEntry("metabench/HalfCheetahVel-v0", "metabench.envs.half_cheetah:HalfCheetahVelEnv", 200),
    EnvEntry(
        "metabench/HalfCheetahVelNonStationary-v0",
        "metabench.envs.half_cheetah:HalfCheetahVelNonStationaryEnv",
        800,
    ),
)


def register_envs() -> None:
    """Register every entry of :data:`ENVS` that is not registered yet (idempotent)."""
    for entry in ENVS:
        if entry.id not in gym.registry:
            gym.register(
                id=entry.id,
                entry_point=entry.entry_point,
                max_episode_steps=entry.max_episode_steps,
                kwargs=dict(entry.kwargs),
            )
