"""The trust model (docs/trust.md): held-out cheating agents (tests/agents/cheat_*.py) try each hole
the audit of issue 11 found, through the env handle they are given.

In-process the harness must count every step (also through ``env.unwrapped``), refuse test tasks by
their parameters (also relabelled, also through ``unwrapped.set_task``) and show agents that are not
oracles only the family's public ``info`` keys. Under ``metabench evaluate --isolate`` a cheat that
searches the process for the acting task, or replays the public meta-test order, finds nothing and
scores as the random agent does.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import metabench
from metabench.harness import (
    BudgetExceeded,
    EnvFactory,
    RunError,
    StepCounter,
    Unit,
    run,
    run_unit,
    stale_note,
    visible_info,
)
from metabench.isolation import _Channel
from metabench.leaderboard import group_runs, run_of
from metabench.protocol import Budget
from metabench.records import load_record, record_path, summary_table, summary_text
from metabench.tasks import env_class

from .conftest import quick_test_ids

AGENTS = Path(__file__).parent / "agents"
POINT = "metabench/PointNav-v0"
SPARSE = "metabench/PointNavSparse-v0"
SMOKE_BUDGET = 2_000  # PointNav's smoke budget
#: Meta-World's reward-shaping keys, computed from the goal the observation hides.
METAWORLD_GOAL_KEYS = {"obj_to_target", "near_object", "grasp_success", "grasp_reward", "in_place_reward"}


def run_agent(tmp_path: Path, agent: str, env_id: str = POINT, **config: object) -> dict:
    overrides = {k: str(v) for k, v in config.items()}
    return run(
        Unit(str(AGENTS / f"{agent}.py"), env_id, "smoke", 0, str(tmp_path), config_overrides=overrides)
    )


def evaluate_isolated(tmp_path: Path, agent: str, env_id: str = POINT, **config: object) -> dict:
    """``metabench evaluate AGENT --isolate`` run as a user runs it, in a process of its own: an
    in-process call would hand the cheats this test process's own leftovers (the envs and tasks of
    earlier tests on the same pytest worker), which a user's process does not have."""
    argv = ["evaluate", str(AGENTS / f"{agent}.py"), "--env", env_id, "--tier", "smoke", "--seeds", "0"]
    argv += ["--out", str(tmp_path), "--quiet", "--force", "--isolate"]
    for k, v in config.items():
        argv += ["--config", f"{k}={v}"]
    done = subprocess.run([sys.executable, "-m", "metabench.cli", *argv], capture_output=True, text=True)
    path = record_path(tmp_path, env_id, agent, 0)
    assert path.is_file(), f"no record: exit {done.returncode}, {done.stderr[-2000:]}"
    return load_record(path)


def eval_success(record: dict) -> float:
    eps = record["episodes"]
    hits = [s for s, p in zip(eps["success"], eps["phase"], strict=True) if p == "eval"]
    return float(np.mean(hits))


# --------------------------------------------------------------------------- counting at the env
def test_steps_through_unwrapped_are_counted() -> None:
    counter = StepCounter(Budget(30), "smoke")
    env = EnvFactory(POINT, False, counter)()
    env.reset(seed=0)
    for _ in range(20):
        env.unwrapped.step(np.zeros(2, np.float32))
    for _ in range(10):
        env.step(np.zeros(2, np.float32))
    assert counter.steps == 30
    with pytest.raises(BudgetExceeded, match="step 31 of a budget of 30"):
        env.unwrapped.step(np.zeros(2, np.float32))


@pytest.mark.parametrize("swallow", [False, True])
def test_stepping_past_the_budget_through_unwrapped_fails_the_run(tmp_path: Path, swallow: bool) -> None:
    rec = run_agent(tmp_path, "cheat_budget", swallow=swallow)
    assert rec["status"] == "error" and rec["error"]["type"] == "BudgetExceeded"
    assert rec["provenance"]["env_steps_used"] == SMOKE_BUDGET  # the honest count, not 1
    if swallow:
        assert "caught the error and went on" in rec["error"]["message"]


# ------------------------------------------------------------------------ train-only by identity
@pytest.mark.parametrize(
    ("mode", "swallow"), [("relabel", False), ("set_task", False), ("relabel", True), ("set_task", True)]
)
def test_a_test_task_fails_meta_training_however_it_is_passed(
    tmp_path: Path, mode: str, swallow: bool
) -> None:
    rec = run_agent(tmp_path, "cheat_task", mode=mode, swallow=swallow)
    assert rec["status"] == "error" and rec["error"]["type"] == "RunError"
    assert "meta-training may only use train tasks" in rec["error"]["message"]


def test_train_tasks_pass_and_non_stationary_switches_still_work() -> None:
    env_id = "metabench/PointNavNonStationary-v0"
    if env_id not in gym.registry:
        pytest.skip(f"{env_id} is not registered")
    counter = StepCounter(Budget(1_000), "smoke")
    env = EnvFactory(env_id, True, counter)()  # an oracle: it sees task_index and task_changed
    train, test = metabench.tasks(env_id, "train"), metabench.tasks(env_id, "test")
    env.unwrapped.set_task(train[3])  # a train task: fine, also relabelled as custom
    env.unwrapped.set_task(dataclasses.replace(train[4], split="custom", index=-1))
    env.reset(seed=0)
    changed, indices = 0, set()
    for _ in range(300):
        *_, terminated, truncated, info = env.step(env.action_space.sample())
        changed += bool(info["task_changed"])
        indices.add(info["task_index"])
        if terminated or truncated:
            env.reset()
    assert changed > 0 and indices <= {-1, *range(len(train))}  # internal switches to train tasks
    with pytest.raises(RunError, match="only use train tasks"):
        env.unwrapped.set_task(test[0])
    with pytest.raises(RunError, match="only use train tasks"):
        env.unwrapped._switch(dataclasses.replace(test[0], split="train"))


# ---------------------------------------------------------------------- public info by declaration
def _walk(env_id: str) -> tuple[set[str], set[str], set[str]]:
    """(raw info keys of the steps, keys a non-oracle sees through a meta-training env and its
    unwrapped base, keys the harness passes at meta-test) over a reset and a few random steps."""
    raw_env = gym.make(env_id)
    counter = StepCounter(Budget(100), "smoke")
    env = EnvFactory(env_id, False, counter)()
    public = env_class(env_id).public_info_keys
    raw, seen, test = set(), set(), set()
    for e in (raw_env, env):
        e.action_space.seed(0)
        _, info = e.reset(seed=0)
        if e is env:
            seen.update(info)
        for _ in range(3):
            info = e.step(e.action_space.sample())[4]
            if e is raw_env:
                raw.update(info)
                test.update(visible_info(info, False, public))
            else:
                seen.update(info)
    seen.update(env.unwrapped.step(env.action_space.sample())[4])
    raw_env.close()
    env.close()
    return raw, seen, test


@pytest.mark.parametrize("env_id", quick_test_ids())
def test_non_oracles_see_only_declared_info_keys(env_id: str) -> None:
    public = env_class(env_id).public_info_keys
    assert isinstance(public, frozenset) and not any(k.startswith("task_") for k in public)
    raw, seen, test = _walk(env_id)
    assert seen <= public and test <= public, f"{env_id} shows undeclared keys {(seen | test) - public}"
    assert test == raw & public  # exactly the declared keys the env gives
    if env_id == SPARSE:
        assert {"distance", "dense_reward"} <= raw and not {"distance", "dense_reward"} & (seen | test)
    if env_id.startswith("metabench/ML"):
        assert METAWORLD_GOAL_KEYS <= raw and not METAWORLD_GOAL_KEYS & (seen | test)
        assert "success" in test


def test_every_registered_id_declares_its_public_info() -> None:
    """Ids the walk above builds only a few of (50 Meta-World ML1 ids share one class) still declare
    keys, and every Meta-World id keeps the goal-derived ones hidden."""
    ids = sorted(i for i in gym.registry if i.startswith("metabench/"))
    for env_id in ids:
        public = env_class(env_id).public_info_keys
        assert isinstance(public, frozenset) and not any(k.startswith("task_") for k in public), env_id
        if env_id.startswith("metabench/ML"):
            assert not METAWORLD_GOAL_KEYS & public, env_id


def test_sparse_rewards_distance_never_reaches_the_agent(tmp_path: Path) -> None:
    report = tmp_path / "keys.json"
    rec = run_agent(tmp_path, "cheat_info", SPARSE, report=report)
    assert rec["status"] == "ok", rec["error"]
    keys = json.loads(report.read_text())
    assert keys["train"] == keys["unwrapped"] == keys["test"] == ["success"]


# ----------------------------------------------------------------------------------- --isolate
@pytest.fixture(scope="module")
def random_record(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("random")
    rec = run(
        Unit(str(Path(__file__).parent.parent / "agents" / "random_agent.py"), POINT, "smoke", 0, str(out))
    )
    assert rec["status"] == "ok", rec["error"]
    return rec


def assert_scores_as_random(rec: dict, random_record: dict) -> None:
    assert rec["status"] == "ok", rec["error"]
    assert rec["run"]["isolated"] is True and rec["provenance"]["env_steps_used"] == 0
    # Up to two lucky trials of the replay cheat (see test_replay_cheat_is_found_out_isolated) move
    # the mean return by about 10%; finding every task moves it by 80% (measured: -4.1 against -20.4).
    assert eval_success(rec) <= eval_success(random_record) + 2 / 15
    ours, theirs = np.mean(rec["episodes"]["return"]), np.mean(random_record["episodes"]["return"])
    assert abs(ours - theirs) <= 0.15 * abs(theirs), (ours, theirs)


def test_gc_cheat_finds_the_task_in_process_and_nothing_isolated(tmp_path: Path, random_record: dict) -> None:
    report = tmp_path / "gc.json"
    inproc = run_agent(tmp_path / "in", "cheat_gc", report=report)
    assert inproc["status"] == "ok" and eval_success(inproc) == 1.0  # the hole in-process
    assert json.loads(report.read_text())["found"] == 15
    isolated = evaluate_isolated(tmp_path / "iso", "cheat_gc", report=report)
    assert json.loads(report.read_text()) == {"found": 0, "trials": 15}
    assert_scores_as_random(isolated, random_record)
    assert "[isolated]" in summary_text(isolated) and "(isolated)" in summary_table([("x", isolated)])


def test_replay_cheat_is_found_out_isolated(tmp_path: Path, random_record: dict) -> None:
    """In-process the public order gives every trial's goal. Isolated, the order is a fresh secret
    permutation: the replay holds only while it happens to start with fixed points, two or more of
    them with probability 1/210."""
    report = tmp_path / "replay.json"
    inproc = run_agent(tmp_path / "in", "cheat_replay", report=report)
    assert inproc["status"] == "ok" and eval_success(inproc) == 1.0
    assert json.loads(report.read_text())["held"] == 15
    isolated = evaluate_isolated(tmp_path / "iso", "cheat_replay", report=report)
    assert json.loads(report.read_text())["held"] <= 2
    assert_scores_as_random(isolated, random_record)


def test_isolated_runs_count_steps_refuse_test_tasks_and_hide_info(tmp_path: Path) -> None:
    rec = evaluate_isolated(tmp_path / "budget", "cheat_budget", swallow=True)
    assert rec["status"] == "error" and rec["error"]["type"] == "BudgetExceeded"
    assert rec["provenance"]["env_steps_used"] == SMOKE_BUDGET and rec["run"]["isolated"] is True
    rec = evaluate_isolated(tmp_path / "task", "cheat_task", mode="set_task", swallow=True)
    assert rec["status"] == "error" and "only use train tasks" in rec["error"]["message"]
    report = tmp_path / "keys.json"
    rec = evaluate_isolated(tmp_path / "info", "cheat_info", SPARSE, report=report)
    assert rec["status"] == "ok", rec["error"]
    assert json.loads(report.read_text()) == {
        "train": ["success"],
        "unwrapped": ["success"],
        "test": ["success"],
    }


def test_leaderboard_marks_isolated_rows(tmp_path: Path, random_record: dict) -> None:
    iso = dict(random_record, run={**random_record["run"], "isolated": True})
    rows = {a.label for f in group_runs([run_of("a.json", random_record)]) for a in f.agents.values()}
    assert rows == {"random_agent"}  # records without the flag: as before
    rows = {a.label for f in group_runs([run_of("b.json", iso)]) for a in f.agents.values()}
    assert rows == {"random_agent (isolated)"}


def test_an_honest_deterministic_agent_scores_the_same_isolated(tmp_path: Path) -> None:
    """The secret order changes nothing for an agent that does not cheat: the episodes table, put back
    in the usual order, and the step count are the in-process run's."""
    inproc = run_agent(tmp_path / "in", "constant_agent")
    isolated = evaluate_isolated(tmp_path / "iso", "constant_agent")
    assert inproc["status"] == isolated["status"] == "ok", isolated["error"]
    assert isolated["episodes"] == inproc["episodes"]
    assert isolated["meta_train_curve"] == inproc["meta_train_curve"]
    assert isolated["provenance"]["env_steps_used"] == inproc["provenance"]["env_steps_used"] > 0
    assert (inproc["run"]["isolated"], isolated["run"]["isolated"]) == (False, True)


def test_a_rerun_with_isolate_says_the_record_it_skips_was_not_isolated(tmp_path: Path) -> None:
    unit = Unit(str(AGENTS / "constant_agent.py"), POINT, "smoke", 0, str(tmp_path))
    assert run_unit(unit).status == "ok"
    assert stale_note(unit) == ""
    assert "not --isolate" in stale_note(dataclasses.replace(unit, isolate=True))


def test_the_isolation_channel_carries_messages_larger_than_its_buffer() -> None:
    """A message over the 64 KiB receive buffer (an image, a long ``info``) grows it; the buffer's own
    view must not block the resize (PEARL's isolated run on Bandit died on this with a BufferError)."""
    a, b = socket.socketpair()
    sender, receiver = _Channel(a), _Channel(b)
    try:
        for size in (10, 200_000, 70_000, 5):
            payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
            t = threading.Thread(target=sender.send, args=(payload,))
            t.start()
            assert receiver.recv() == payload
            t.join()
    finally:
        sender.close()
        receiver.close()
