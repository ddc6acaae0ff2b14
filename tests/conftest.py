"""Shared fixtures. Rendering uses the OpenGL backend metabench.gl chooses (osmesa, egl or disable)
unless the caller set MUJOCO_GL; rendering tests skip with the reason when it is disable."""

from __future__ import annotations

import os

from metabench.gl import choose_backend

choose_backend()  # before anything imports mujoco; pytest-xdist workers inherit the choice
os.environ.setdefault("OMP_NUM_THREADS", "1")

import gymnasium as gym  # noqa: E402

import metabench  # noqa: E402, F401  (registers the ids)


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
