"""Meta-World ML1, ML10 and ML45 (envs/metaworld.py): the same classes, goals and physics as Meta-World.

The generic env contract (check_env, determinism, pickling, rendering, bad tasks, split hashes) runs in
tests/test_envs.py on the ids of ``QUICK_TEST_IDS``. Here: our class lists and frozen goals are Meta-World's
own, an env steps exactly like the Sawyer env it wraps, the scripted experts succeed through it, and bad
input gets a clear error. Constructing ``metaworld.ML10``/``ML45`` (14 s / 50 s) and the full expert sweep
(about 8 minutes) are marked slow.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest

import metabench
from metabench.envs import metaworld_names as names
from metabench.envs.metaworld import (
    ML1_CLASSES,
    ML1Env,
    ML10Env,
    ML45Env,
    goal_hidden_observation_space,
    ml1_env_class,
)
from metabench.tasks import CUSTOM_SPLIT, Task, TaskError, env_class, split_digest

metaworld = pytest.importorskip("metaworld")
mw_policies = pytest.importorskip("metaworld.policies")

ML_IDS = ("metabench/ML10-v0", "metabench/ML45-v0")
ALL_IDS = (*names.ML1_IDS, *ML_IDS)


def make(env_id: str, **kwargs) -> gym.Env:
    with warnings.catch_warnings():  # Meta-World's zero-width goal bounds trip the passive checker
        warnings.simplefilter("ignore")
        return gym.make(env_id, **kwargs)


def raw_env(name: str, rand_vec, **kwargs):
    """A bare Meta-World Sawyer env set to a goal by Meta-World's own ``set_task`` (pickled Task)."""
    cls = metaworld.env_dict.ALL_V3_ENVIRONMENTS[name]
    env = cls(**kwargs)
    data = {"rand_vec": np.array(rand_vec), "env_cls": cls, "partially_observable": True}
    env.set_task(metaworld._encode_task(name, data))
    return env


def assert_same_rollout(ours: gym.Env, task: Task, raw, n: int = 40) -> None:
    """Reset both, then step both with the same actions: identical observations, rewards, successes."""
    obs, _ = ours.reset(seed=0, options={"task": task})
    raw_obs, _ = raw.reset(seed=0)
    np.testing.assert_array_equal(obs, raw_obs)
    actions = np.random.default_rng(0).uniform(-1, 1, (n, 4)).astype(np.float32)
    for a in actions:
        obs, r, term, trunc, info = ours.step(a)
        raw_obs, raw_r, raw_term, raw_trunc, raw_info = raw.step(a)
        np.testing.assert_array_equal(obs, raw_obs)
        assert r == raw_r and (term, trunc) == (raw_term, raw_trunc)
        assert info["success"] == bool(raw_info["success"])


def expert_success(env: gym.Env, tasks, max_steps: int = 500) -> float:
    """Success rate of Meta-World's scripted policy of each task's class, given the goal it needs.

    The experts read the goal from ``obs[-3:]``, where goal-observable Meta-World puts it; our
    observation hides it, so it comes from ``goal_position()`` (the oracle).
    """
    base = env.unwrapped
    wins = []
    for task in tasks:
        obs, _ = env.reset(seed=0, options={"task": task})
        policy = mw_policies.ENV_POLICY_MAP[base.family.class_name(task.params)]()
        goal, won = base.goal_position(), False
        for _ in range(max_steps):
            full = obs.copy()
            full[-3:] = goal
            with warnings.catch_warnings():  # "Constant(s) may be too high": the env clips
                warnings.simplefilter("ignore")
                action = policy.get_action(full)
            obs, _, term, trunc, info = env.step(action)
            won = info["success"]
            if won or term or trunc:  # success at any step is the episode's success
                break
        wins.append(won)
    return float(np.mean(wins))


@pytest.fixture(scope="module")
def mw_reach():
    """Meta-World's own ML1 benchmark of reach-v3 with the seed our goals were drawn from (~1 s)."""
    return metaworld.ML1("reach-v3", seed=names.GOAL_SEED)


# ------------------------------------------------------------------------------ ids and classes
def test_import_metabench_registers_ids_without_importing_metaworld() -> None:
    code = (
        "import sys, gymnasium as gym, metabench\n"
        "assert 'metaworld' not in sys.modules\n"
        "ids = [i for i in gym.registry if i.startswith('metabench/ML')]\n"
        "assert len(ids) == 52, ids\n"
        "env = gym.make('metabench/ML45-v0')\n"
        "metabench.tasks('metabench/ML45-v0', 'test')\n"
        "assert 'metaworld' not in sys.modules, 'made an env: no Sawyer env is needed yet'\n"
        "env.reset(seed=0)\n"
        "assert 'metaworld' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-W", "ignore", "-c", code], check=True)
    # Without the import, Gymnasium's module:id form imports metabench on demand.
    code = "import gymnasium as gym; gym.make('metabench:metabench/ML10-v0').reset(seed=0)"
    subprocess.run([sys.executable, "-W", "ignore", "-c", code], check=True)


def test_class_lists_are_metaworlds() -> None:
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS, ML10_V3, ML45_V3

    assert names.ML1_NAMES == tuple(ALL_V3_ENVIRONMENTS)
    for bench, env_cls, mw in (("ML10", ML10Env, ML10_V3), ("ML45", ML45Env, ML45_V3)):
        train, test = names.BENCHMARK_CLASSES[bench]
        assert (train, test) == (tuple(mw["train"]), tuple(mw["test"]))
        assert (env_cls.family.train_classes, env_cls.family.test_classes) == (train, test)
        assert not set(train) & set(test)
    assert len(names.ML10_TRAIN) == 10 and len(names.ML10_TEST) == 5
    assert len(names.ML45_TRAIN) == 45 and len(names.ML45_TEST) == 5
    assert importlib.metadata.version("metaworld") == names.METAWORLD_VERSION


def test_every_id_is_registered_with_its_own_class_and_frozen_splits() -> None:
    assert len(set(ALL_IDS)) == 52
    for env_id in ALL_IDS:
        spec = gym.spec(env_id)
        assert spec.max_episode_steps == 500
        assert spec.kwargs == {"reward_function_version": "v2"}
        cls = env_class(env_id)
        assert cls.env_id == env_id and cls.success_rule == "any" and (cls.n_adapt, cls.n_eval) == (10, 3)
        sizes = {s: len(metabench.tasks(env_id, s)) for s in metabench.split_names(env_id)}
        per = names.GOALS_PER_CLASS
        assert sizes == {
            "train": per * len(cls.family.train_classes),
            "test": per * len(cls.family.test_classes),
        }
        for split, digest in names.SPLIT_HASHES[env_id].items():
            assert split_digest(metabench.tasks(env_id, split)) == digest
    assert {c.env_id for c in ML1_CLASSES.values()} == set(names.ML1_IDS)
    assert issubclass(ml1_env_class("pick-place"), ML1Env) and ml1_env_class("pick-place-v3").task_name == (
        "pick-place-v3"
    )


def test_spaces_are_metaworlds_for_every_class_we_build() -> None:
    env = make("metabench/ML10-v0").unwrapped
    assert env.observation_space == goal_hidden_observation_space()
    for name in ("reach-v3", "drawer-open-v3"):  # a 6-d and a 3-d goal vector
        task = next(
            t
            for t in metabench.tasks(env.env_id, "train") + metabench.tasks(env.env_id, "test")
            if env.family.class_name(t.params) == name
        )
        env.reset(seed=0, options={"task": task})
        sawyer = env.metaworld_env
        assert type(sawyer) is metaworld.env_dict.ALL_V3_ENVIRONMENTS[name]
        assert sawyer.observation_space == env.observation_space
        assert sawyer.action_space == env.action_space
        box = sawyer._random_reset_space
        spec = metaworld_classes()[name]
        assert spec["rand_vec_low"] == box.low.tolist() and spec["rand_vec_high"] == box.high.tolist()
        assert spec["task_id"] == names.ML1_NAMES.index(name)


def metaworld_classes() -> dict:
    from metabench.envs.metaworld import _load

    return _load("classes")["classes"]


# ---------------------------------------------------------------------------- frozen goal sets
def test_ml1_goals_are_metaworlds_own_draws(mw_reach) -> None:
    env_id = names.ml1_id("reach-v3")
    for split, mw_tasks in (("train", mw_reach.train_tasks), ("test", mw_reach.test_tasks)):
        ours = metabench.tasks(env_id, split)
        assert len(ours) == len(mw_tasks) == 50
        raw = metaworld.env_dict.ALL_V3_ENVIRONMENTS["reach-v3"]()
        for task, mw_task in zip(ours, mw_tasks, strict=True):
            raw.set_task(mw_task)  # Meta-World unpickles its own task
            np.testing.assert_array_equal(task.array("rand_vec"), raw._last_rand_vec)
    train = {t.params["rand_vec"] for t in metabench.tasks(env_id, "train")}
    assert not train & {t.params["rand_vec"] for t in metabench.tasks(env_id, "test")}


def test_generator_reproduces_the_frozen_ml1_goals() -> None:
    from metabench.envs.metaworld import _load
    from metabench.envs.metaworld_goals import ml1_goals

    assert ml1_goals("door-open-v3") == _load("ml1_goals")["goals"]["door-open-v3"]
    assert _load("ml1_goals")["seed"] == names.GOAL_SEED


@pytest.mark.slow
@pytest.mark.parametrize("bench", ["ML10", "ML45"])
def test_benchmark_classes_and_goals_are_metaworlds(bench: str) -> None:
    """Constructs metaworld.ML10 (~14 s) / ML45 (~50 s) with our seed and compares every task."""
    mw = getattr(metaworld, bench)(seed=names.GOAL_SEED)
    env_id = f"metabench/{bench}-v0"
    fam = {"ML10": ML10Env, "ML45": ML45Env}[bench].family
    assert (tuple(mw.train_classes), tuple(mw.test_classes)) == (fam.train_classes, fam.test_classes)
    for split, mw_tasks in (("train", mw.train_tasks), ("test", mw.test_tasks)):
        ours = metabench.tasks(env_id, split)
        assert len(ours) == len(mw_tasks)
        raws: dict = {}
        for task, mw_task in zip(ours, mw_tasks, strict=True):
            name = fam.class_name(task.params)
            assert mw_task.env_name == name
            raw = raws.setdefault(name, metaworld.env_dict.ALL_V3_ENVIRONMENTS[name]())
            raw.set_task(mw_task)
            np.testing.assert_array_equal(task.array("rand_vec"), raw._last_rand_vec)


# ------------------------------------------------------------------------ same physics as Meta-World
def test_ml1_rollout_equals_metaworlds_env_with_its_own_task(mw_reach) -> None:
    env = make(names.ml1_id("reach-v3"))
    raw = metaworld.env_dict.ALL_V3_ENVIRONMENTS["reach-v3"]()
    raw.set_task(mw_reach.test_tasks[3])
    assert_same_rollout(env, metabench.tasks(env.unwrapped.env_id, "test")[3], raw)


@pytest.mark.parametrize("env_id", ML_IDS)
def test_multi_class_rollouts_equal_metaworlds(env_id: str) -> None:
    env = make(env_id)
    fam = env.unwrapped.family
    train, test = metabench.tasks(env_id, "train"), metabench.tasks(env_id, "test")
    # A train class, a held-out class, then back to the first: the class switches inside one env.
    for task in (train[0], test[77], train[3]):
        raw = raw_env(fam.class_name(task.params), task.params["rand_vec"])
        assert_same_rollout(env, task, raw, n=20)
    assert len(env.unwrapped._sawyers) == 2  # one Sawyer env per class, built once


def test_reward_function_version_reaches_the_sawyer_env_and_the_spec() -> None:
    env_id = names.ml1_id("pick-place")
    task = metabench.tasks(env_id, "test")[0]
    v1 = make(env_id, reward_function_version="v1")
    assert v1.spec.kwargs["reward_function_version"] == "v1"
    assert v1.unwrapped.reward_function_version == "v1"
    assert_same_rollout(
        v1, task, raw_env("pick-place-v3", task.params["rand_vec"], reward_function_version="v1")
    )
    assert v1.unwrapped.metaworld_env.reward_function_version == "v1"
    v2 = make(env_id)
    returns = []
    for env in (v1, v2):
        env.reset(seed=0, options={"task": task})
        returns.append(sum(env.step(np.full(4, 0.5, np.float32))[1] for _ in range(20)))
    assert returns[0] != returns[1]


def test_context_is_a_class_one_hot_and_the_normalised_goal() -> None:
    env = make("metabench/ML10-v0").unwrapped
    fam = env.family
    assert fam.context_size == 15 + 6
    task = metabench.tasks(env.env_id, "test")[60]  # door-close, a held-out class
    ctx = fam.context(task)
    assert ctx[:15].tolist() == [1.0 if i == fam.classes.index("door-close-v3") else 0.0 for i in range(15)]
    assert np.all(np.abs(ctx) <= 1) and np.all(ctx[15 + 3 :] == 0)  # door-close's goal vector has 3 values
    low, high = (np.array(metaworld_classes()["door-close-v3"][k]) for k in ("rand_vec_low", "rand_vec_high"))
    free = high > low
    np.testing.assert_allclose(
        ctx[15:18][free], 2 * (task.array("rand_vec")[free] - low[free]) / (high - low)[free] - 1
    )


# ----------------------------------------------------------------------------------- experts
def test_scripted_experts_succeed_through_our_envs_quick() -> None:
    reach = make(names.ml1_id("reach-v3"))
    assert expert_success(reach, metabench.tasks(reach.unwrapped.env_id, "test")[:5]) >= 0.8
    ml10 = make("metabench/ML10-v0")
    held_out = metabench.tasks("metabench/ML10-v0", "test")  # drawer-open first, 50 goals per class
    assert expert_success(ml10, held_out[:3]) >= 0.8


@pytest.mark.slow
@pytest.mark.parametrize("name", names.ML1_NAMES)
def test_scripted_expert_success_on_every_ml1_test_task(name: str) -> None:
    """Every class: the expert succeeds on at least 80% of the 50 test goals (measured 0.86-1.00)."""
    env = make(names.ml1_id(name))
    rate = expert_success(env, metabench.tasks(env.unwrapped.env_id, "test"))
    assert rate >= 0.8, f"{name}: expert success {rate:.2f} on ML1 test goals"


# --------------------------------------------------------------------------------- bad input
def test_unknown_ml1_name_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown Meta-World ML1 task 'pick-plac'.*Did you mean pick-place"):
        ml1_env_class("pick-plac")
    with pytest.raises(ValueError, match=r"Valid names: assembly, basketball, .*window-close"):
        names.ml1_id("pick-place-v2")
    with pytest.raises(TaskError, match=r"Did you mean metabench/ML1-pick-place-v0"):
        metabench.tasks("metabench/ML1-pick-plac-v0")


def test_task_of_another_benchmark_or_a_held_out_class_is_rejected() -> None:
    ml45 = make("metabench/ML45-v0").unwrapped
    with pytest.raises(TaskError, match=r"'metabench/ML10-v0' cannot be set on metabench/ML45-v0"):
        ml45.set_task(metabench.tasks("metabench/ML10-v0", "train")[0])
    with pytest.raises(TaskError, match="cannot be set on"):
        ml45.set_task(metabench.tasks(names.ml1_id("reach"), "train")[0])

    train_only = make("metabench/ML10-v0", task_classes="train").unwrapped
    train_only.set_task(metabench.tasks("metabench/ML10-v0", "train")[0])
    held_out = metabench.tasks("metabench/ML10-v0", "test")[0]
    with pytest.raises(
        TaskError, match=r"'drawer-open-v3' is one of ML10's test classes.*task_classes='train'"
    ):
        train_only.set_task(held_out)
    with pytest.raises(TaskError, match="test classes"):
        train_only.reset(seed=0, options={"task": held_out})
    assert train_only.task.split == "train"  # the rejected task did not replace the fixed one
    test_only = make("metabench/ML10-v0", task_classes="test").unwrapped
    test_only.set_task(held_out)
    with pytest.raises(TaskError, match="train classes"):
        test_only.set_task(metabench.tasks("metabench/ML10-v0", "train")[0])


def test_hand_made_tasks_are_validated_against_the_class() -> None:
    env = make("metabench/ML10-v0").unwrapped
    fam, env_id = env.family, env.env_id
    reach = names.ML1_NAMES.index("reach-v3")
    ok = fam.make_task(env_id, {"class_id": reach, "rand_vec": (0.0, 0.6, 0.02, 0.0, 0.85, 0.2)})
    env.reset(seed=0, options={"task": ok})
    assert ok.split == CUSTOM_SPLIT and np.allclose(env.goal_position(), (0.0, 0.85, 0.2))
    bad = {
        "not in ML10": {"class_id": names.ML1_NAMES.index("assembly-v3"), "rand_vec": (0.0,) * 6},
        "not a Meta-World task_id": {"class_id": 2.5, "rand_vec": (0.0,) * 6},
        "needs \\(6,\\)": {"class_id": reach, "rand_vec": (0.0, 0.6, 0.02)},
        "outside class 'reach-v3'": {"class_id": reach, "rand_vec": (0.0, 0.6, 0.02, 0.0, 0.95, 0.2)},
        "not numeric": {"class_id": reach, "rand_vec": "far"},
    }
    for message, params in bad.items():
        with pytest.raises(TaskError, match=message):
            fam.make_task(env_id, params)
    # Inside the box, but reach's reset redraws goals this close to the object: rejected, no hang.
    close = Task(env_id, CUSTOM_SPLIT, -1, {"class_id": reach, "rand_vec": (0.0, 0.7, 0.02, 0.0, 0.8, 0.2)})
    with pytest.raises(TaskError, match="rejected by Meta-World's 'reach-v3'"):
        env.set_task(close)
    env.reset(seed=0)  # the env still runs its previous task
    assert env.task == ok and np.allclose(env.goal_position(), (0.0, 0.85, 0.2))


def test_bad_arguments_and_call_order() -> None:
    with pytest.raises(ValueError, match=r"reward_function_version must be one of \('v1', 'v2'\)"):
        make("metabench/ML10-v0", reward_function_version="v3")
    with pytest.raises(ValueError, match="task_classes must be one of"):
        make("metabench/ML10-v0", task_classes="held-out")
    env = make(names.ml1_id("reach")).unwrapped
    test = metabench.tasks(env.env_id, "test")
    env.reset(seed=0, options={"task": test[0]})
    env.set_task(test[1])
    with pytest.raises(gym.error.ResetNeeded, match="call reset"):
        env.step(np.zeros(4, np.float32))
    env.reset()
    with pytest.raises(ValueError, match="not finite"):
        env.step(np.array([0, np.nan, 0, 0], np.float32))
    with pytest.raises(ValueError, match=r"expected \(4,\)"):
        env.step(np.zeros(3))
    with pytest.raises(TaskError, match="lacks parameter"):
        env.set_task(dataclasses.replace(test[0], params={}))
    env.close()  # closing drops the Sawyer envs; a later reset builds the current task's again
    env.reset(seed=0)
    assert env.task == test[1] and env.metaworld_env is not None
