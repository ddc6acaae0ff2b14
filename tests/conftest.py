"""Shared fixtures. Headless rendering goes through OSMesa unless the caller chose a backend."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
os.environ.setdefault("OMP_NUM_THREADS", "1")

import gymnasium as gym

import metabench  # noqa: F401  (registers the ids)


def quick_test_ids() -> list[str]:
    """Every registered id, but only a few of the 50 Meta-World ML1 ids (they share one class)."""
    ids = sorted(i for i in gym.registry if i.startswith("metabench/"))
    try:
        from metabench.envs.metaworld_names import QUICK_TEST_IDS
    except ImportError:
        quick = set()
    else:
        quick = set(QUICK_TEST_IDS)
    return [i for i in ids if not i.startswith("metabench/ML") or i in quick]
