"""Helpers for same-run comparisons: this machine is shared and noisy, so we compare rates measured
interleaved in one process and report ratios (``benchmark.extra_info``), not absolute times."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

import gymnasium as gym
import numpy as np

import metabench  # noqa: F401


def env_stepper(env: gym.Env, n: int, seed: int = 0) -> Callable[[], None]:
    """A closure stepping ``env`` ``n`` times with pre-drawn actions, resetting when an episode ends."""
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(n)]
    env.reset(seed=seed)

    def run() -> None:
        for a in actions:
            _, _, term, trunc, _ = env.step(a)
            if term or trunc:
                env.reset()

    return run


def interleaved_rates(runs: dict[str, Callable[[], None]], work: int, rounds: int = 7) -> dict[str, float]:
    """Median operations/s of each callable, timed in alternation over ``rounds`` rounds."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: work / statistics.median(v) for k, v in times.items()}


def report(benchmark, **values: float) -> None:
    for k, v in values.items():
        benchmark.extra_info[k] = round(float(v), 4)
    print("\n  " + ", ".join(f"{k} = {v:.3g}" for k, v in values.items()))


__all__ = ["env_stepper", "interleaved_rates", "np", "report"]
