"""Contain the global seeding that Stable-Baselines3 does.

SB3 draws from Python's, NumPy's and torch's *global* generators (network initialisation, SAC's and
PPO's sampling), and ``seed=`` makes it seed all three. An agent that wants a run reproducible under its
seed without leaving the process's generators changed runs SB3 inside :func:`seeded_globals`.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


@contextlib.contextmanager
def seeded_globals(seed: int) -> Iterator[None]:
    """Seed Python's, NumPy's and torch's (CPU) global generators with ``seed`` inside the block and
    restore their previous states when it exits, however it exits."""
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
