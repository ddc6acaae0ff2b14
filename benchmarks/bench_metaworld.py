"""Speed targets of the Meta-World families (issue 5), as same-run ratios against Meta-World itself.

Run with ``make bench``. Targets:

* steps/s of ``gym.make("metabench/ML1-...")`` / ``ML45-v0`` (with Gymnasium's wrappers) >= 0.95x the
  bare Meta-World Sawyer env of the same class and goal (no wrappers at all), same actions;
* ``gym.make("metabench/ML45-v0")`` + ``reset`` in a fresh process under 3 s, reported as a ratio
  against constructing ``metaworld.ML45(seed=...)`` in the same run (about 50 s on the 2-core dev
  machine, so the target is a ratio <= 0.06);
* ``import metabench`` under 1 s, and it imports no Meta-World.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import warnings

import gymnasium as gym
import pytest

import metabench
from metabench.envs.metaworld_names import GOAL_SEED, ml1_id

from .conftest import env_stepper, report

N = 3000
PY = [sys.executable, "-W", "ignore", "-c"]


def _raw(name: str, rand_vec):
    """The bare Meta-World env of ``name`` set to a goal with Meta-World's own ``set_task``."""
    import metaworld
    import numpy as np

    cls = metaworld.env_dict.ALL_V3_ENVIRONMENTS[name]
    env = cls()
    data = {"rand_vec": np.array(rand_vec), "env_cls": cls, "partially_observable": True}
    env.set_task(metaworld._encode_task(name, data))
    return env


def paired_step_rates(ours: gym.Env, raw, n: int, seed: int = 0) -> dict[str, float]:
    """Steps/s of ``ours`` and ``raw`` stepped in lockstep with the same actions, each step of one
    timed right beside the same step of the other (alternating which goes first), so that the load
    of this shared machine falls on both alike; rates from the median step times."""
    ours.action_space.seed(seed)
    actions = [ours.action_space.sample() for _ in range(n)]
    ours.reset(seed=seed)
    raw.reset(seed=seed)
    times: dict[str, list[float]] = {"ours": [], "metaworld": []}
    clock = time.perf_counter
    for k, a in enumerate(actions):
        pair = (("ours", ours), ("metaworld", raw)) if k % 2 else (("metaworld", raw), ("ours", ours))
        done = False
        for name, env in pair:
            t0 = clock()
            _, _, term, trunc, _ = env.step(a)
            times[name].append(clock() - t0)
            done = done or term or trunc
        if done:  # both truncate at step 500
            ours.reset()
            raw.reset()
    return {name: 1.0 / statistics.median(t) for name, t in times.items()}


@pytest.mark.parametrize(
    ("env_id", "split", "index"),
    [(ml1_id("reach"), "test", 0), (ml1_id("pick-place"), "test", 0), ("metabench/ML45-v0", "test", 60)],
    ids=["ML1-reach", "ML1-pick-place", "ML45-box-close"],
)
def test_steps_vs_raw_metaworld(benchmark, env_id: str, split: str, index: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = gym.make(env_id)
    task = metabench.tasks(env_id, split)[index]
    ours.unwrapped.set_task(task)
    raw = _raw(ours.unwrapped.family.class_name(task.params), task.params["rand_vec"])
    rates = paired_step_rates(ours, raw, N)
    ratio = rates["ours"] / rates["metaworld"]
    report(benchmark, ours_steps_per_s=rates["ours"], metaworld_steps_per_s=rates["metaworld"], ratio=ratio)
    benchmark.pedantic(env_stepper(ours, 1000), rounds=3, iterations=1)
    assert ratio >= 0.95, f"{env_id} steps at {ratio:.3f}x the bare Meta-World env (target >= 0.95x)"


def _timed(code: str) -> tuple[float, dict]:
    """Wall time of a fresh interpreter running ``code``, and the JSON it prints last."""
    t0 = time.perf_counter()
    out = subprocess.run([*PY, code], check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - t0, json.loads(out.strip().splitlines()[-1])


MAKE_RESET = """
import json, time
t0 = time.perf_counter()
import gymnasium as gym, metabench
env = gym.make("metabench/ML45-v0")
env.reset(seed=0)
print(json.dumps({"in_process_s": time.perf_counter() - t0}))
"""

ML45_BUILD = """
import json, time
t0 = time.perf_counter()
import metaworld
metaworld.ML45(seed=%d)
print(json.dumps({"in_process_s": time.perf_counter() - t0}))
"""


def test_make_and_reset_ml45_vs_metaworld_ml45(benchmark) -> None:
    ours = [_timed(MAKE_RESET)[0] for _ in range(2)]
    theirs, _ = _timed(ML45_BUILD % GOAL_SEED)  # about 50 s
    ours += [_timed(MAKE_RESET)[0] for _ in range(2)]
    ours_s = statistics.median(ours)
    ratio = ours_s / theirs
    report(benchmark, make_reset_ml45_s=ours_s, metaworld_ML45_s=theirs, ratio=ratio)
    benchmark.pedantic(lambda: _timed(MAKE_RESET), rounds=1, iterations=1)
    assert ours_s < 3.0, f"gym.make + reset of ML45-v0 took {ours_s:.2f} s in a fresh process (target < 3 s)"
    assert ratio <= 0.06, f"make + reset is {ratio:.3f}x metaworld.ML45(...) (target <= 0.06x: 3 s of 50 s)"


IMPORT = """
import json, sys, time
t0 = time.perf_counter()
import %s
print(json.dumps({"in_process_s": time.perf_counter() - t0, "metaworld": "metaworld" in sys.modules}))
"""


def test_import_metabench_vs_metaworld(benchmark) -> None:
    runs = {"metabench": [], "metaworld": []}
    for _ in range(3):
        for module in runs:
            runs[module].append(_timed(IMPORT % module)[1])
    ours = statistics.median(r["in_process_s"] for r in runs["metabench"])
    theirs = statistics.median(r["in_process_s"] for r in runs["metaworld"])
    report(benchmark, import_metabench_s=ours, import_metaworld_s=theirs, ratio=ours / theirs)
    benchmark.pedantic(lambda: _timed(IMPORT % "metabench"), rounds=3, iterations=1)
    assert not any(r["metaworld"] for r in runs["metabench"]), "import metabench imported metaworld"
    assert ours < 1.0, f"import metabench took {ours:.2f} s (target < 1 s)"
