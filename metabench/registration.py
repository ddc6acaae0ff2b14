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

from metabench.envs.metaworld_names import DEFAULT_REWARD_VERSION, ML1_NAMES, ml1_class_name, ml1_id


@dataclasses.dataclass(frozen=True)
class EnvEntry:
    id: str
    entry_point: str
    max_episode_steps: int
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=lambda: MappingProxyType({}))


ENVS: tuple[EnvEntry, ...] = (
    EnvEntry("metabench/PointNav-v0", "metabench.envs.point_nav:PointNavEnv", 20),
    EnvEntry("metabench/PointNavSparse-v0", "metabench.envs.point_nav:PointNavSparseEnv", 20),
    EnvEntry("metabench/PointNavNonStationary-v0", "metabench.envs.point_nav:PointNavNonStationaryEnv", 100),
    EnvEntry("metabench/HalfCheetahVel-v0", "metabench.envs.half_cheetah:HalfCheetahVelEnv", 200),
    EnvEntry(
        "metabench/HalfCheetahVelNonStationary-v0",
        "metabench.envs.half_cheetah:HalfCheetahVelNonStationaryEnv",
        800,
    ),
    EnvEntry(
        "metabench/HalfCheetahVelNonStationary-v1",
        "metabench.envs.half_cheetah:HalfCheetahVelNonStationaryV1Env",
        800,
    ),
    EnvEntry("metabench/StrikerDynamics-v0", "metabench.envs.striker:StrikerDynamicsEnv", 200),
    EnvEntry("metabench/WheeledNav-v0", "metabench.envs.wheeled_nav:WheeledNavEnv", 200),
    EnvEntry("metabench/WheeledNav-v1", "metabench.envs.wheeled_nav:WheeledNavV1Env", 200),
    EnvEntry("metabench/ReacherGoal-v0", "metabench.envs.reacher:ReacherGoalEnv", 200),
    EnvEntry("metabench/HalfCheetahDir-v0", "metabench.envs.half_cheetah:HalfCheetahDirEnv", 200),
    EnvEntry(
        "metabench/HalfCheetahDirNonStationary-v0",
        "metabench.envs.half_cheetah:HalfCheetahDirNonStationaryEnv",
        800,
    ),
    EnvEntry(
        "metabench/HalfCheetahDirNonStationary-v1",
        "metabench.envs.half_cheetah:HalfCheetahDirNonStationaryV1Env",
        800,
    ),
    EnvEntry("metabench/AntDir-v0", "metabench.envs.ant:AntDirEnv", 200),
    EnvEntry("metabench/AntGoal-v0", "metabench.envs.ant:AntGoalEnv", 200),
    EnvEntry("metabench/AntDirNonStationary-v0", "metabench.envs.ant:AntDirNonStationaryEnv", 800),
    EnvEntry(
        "metabench/HalfCheetahRandParams-v0", "metabench.envs.rand_params:HalfCheetahRandParamsEnv", 200
    ),
    EnvEntry("metabench/HopperRandParams-v0", "metabench.envs.rand_params:HopperRandParamsEnv", 200),
    EnvEntry("metabench/Walker2dRandParams-v0", "metabench.envs.rand_params:Walker2dRandParamsEnv", 200),
    EnvEntry("metabench/Bandit-v0", "metabench.envs.bandit:BanditEnv", 1),
    EnvEntry("metabench/TabularMDP-v0", "metabench.envs.tabular_mdp:TabularMDPEnv", 10),
    EnvEntry(
        "metabench/CartpoleSwingupParams-v0", "metabench.envs.dm_cartpole:CartpoleSwingupParamsEnv", 1000
    ),
    # Meta-World (envs/metaworld.py): one ML1 id per Sawyer task class, then ML10 and ML45.
    *(
        EnvEntry(
            ml1_id(name),
            f"metabench.envs.metaworld:{ml1_class_name(name)}",
            500,
            MappingProxyType({"reward_function_version": DEFAULT_REWARD_VERSION}),
        )
        for name in ML1_NAMES
    ),
    EnvEntry(
        "metabench/ML10-v0",
        "metabench.envs.metaworld:ML10Env",
        500,
        MappingProxyType({"reward_function_version": DEFAULT_REWARD_VERSION}),
    ),
    EnvEntry(
        "metabench/ML45-v0",
        "metabench.envs.metaworld:ML45Env",
        500,
        MappingProxyType({"reward_function_version": DEFAULT_REWARD_VERSION}),
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
