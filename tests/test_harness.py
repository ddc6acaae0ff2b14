"""The harness loop: budget enforcement, hidden task information, the meta-test protocol, records."""

from __future__ import annotations

import json
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import metabench
from metabench import harness
from metabench.harness import (
    ActionCheck,
    Budget,
    BudgetExceeded,
    EnvFactory,
    InvalidAction,
    RunError,
    StepCounter,
    Unit,
    UsageError,
    episode_seed,
    parse_seeds,
    run,
    run_unit,
    train_sample,
)
from metabench.records import load_record
from metabench.tasks import env_class

AGENTS = Path(__file__).parent / "agents"
POINT = "metabench/PointNav-v0"


def unit(tmp_path: Path, agent: str = "constant_agent", seed: int = 0, **overrides: str) -> Unit:
    return Unit(str(AGENTS / f"{agent}.py"), POINT, "smoke", seed, str(tmp_path), config_overrides=overrides)


# ------------------------------------------------------------------------------------ small parts
@pytest.mark.parametrize(
    ("text", "seeds"),
    [("0-4", [0, 1, 2, 3, 4]), ("0,2,5", [0, 2, 5]), ("3", [3]), ("0-2,7", [0, 1, 2, 7]), ("2, 1,1", [1, 2])],
)
def test_parse_seeds(text: str, seeds: list[int]) -> None:
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "0-", "a", "1-2-3", "-1", "4-1", "0..4"])
def test_parse_seeds_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="seed"):
        parse_seeds(text)


def test_action_check() -> None:
    space = gym.spaces.Box(-0.1, 0.1, (2,), np.float32)
    check = ActionCheck(space, "me")
    out = check(np.array([0.05, -0.1], dtype=np.float64))  # float64 inside the box is fine
    assert out.dtype == np.float32 and np.allclose(out, [0.05, -0.1])
    assert check([0.1 + 1e-9, 0.0])[0] == np.float32(0.1)  # rounding noise is clipped, not an error
    with pytest.raises(InvalidAction, match=r"agent 'me' returned a non-finite action \[nan, 0.0\].*Box"):
        check([np.nan, 0.0])
    with pytest.raises(InvalidAction, match=r"\[0.2, 0.0\], outside the action space Box\(-0.1, 0.1"):
        check([0.2, 0.0])
    with pytest.raises(InvalidAction, match="shape"):
        check([0.0, 0.0, 0.0])
    with pytest.raises(InvalidAction, match="not a numeric action"):
        check("left")
    discrete = ActionCheck(gym.spaces.Discrete(3), "me")
    assert discrete(2) == 2
    with pytest.raises(InvalidAction, match="Discrete"):
        discrete(3)


def test_budget_overrun_raises_with_steps_budget_and_tier() -> None:
    counter = StepCounter(Budget(25), "smoke")
    make_env = EnvFactory(POINT, False, counter)
    envs = [make_env(), make_env()]  # the budget is shared by every env the agent makes
    for env in envs:
        env.reset(seed=0)
    for i in range(25):
        envs[i % 2].step(np.zeros(2, np.float32))
    assert counter.steps == 25
    with pytest.raises(BudgetExceeded, match=r"smoke tier's budget: env step 26 of a budget of 25"):
        envs[0].step(np.zeros(2, np.float32))
    assert counter.steps == 25
    with pytest.raises(BudgetExceeded, match="caught the error and went on"):
        counter.close()


def test_wall_clock_budget() -> None:
    counter = StepCounter(Budget(100, wall_clock_s=1e-9), "ci")
    env = EnvFactory(POINT, False, counter)()
    env.reset(seed=0)
    with pytest.raises(BudgetExceeded, match="wall-clock budget"):
        env.step(np.zeros(2, np.float32))


def test_meta_training_envs_take_train_tasks_only_and_hide_task_info() -> None:
    counter = StepCounter(Budget(10), "smoke")
    env = EnvFactory(POINT, False, counter)()
    _, info = env.reset(seed=0, options={"task": metabench.tasks(POINT, "train")[3]})
    assert not any(k.startswith("task_") for k in info)
    *_, info = env.step(np.zeros(2, np.float32))
    assert "success" in info and not any(k.startswith("task_") for k in info)
    with pytest.raises(RunError, match=r"only use train tasks.*'test'"):
        env.reset(options={"task": metabench.tasks(POINT, "test")[0]})
    oracle_env = EnvFactory(POINT, True, counter)()
    obs, info = oracle_env.reset(seed=0, options={"task": metabench.tasks(POINT, "train")[3]})
    assert obs.shape == (4,) and info["task_index"] == 3
    with pytest.raises(RunError, match="caught the error and went on"):  # the refused test task
        counter.close()
    with pytest.raises(RunError, match="after meta_train returned"):
        env.step(np.zeros(2, np.float32))


def test_episode_seeds_are_fixed_and_distinct() -> None:
    grid = [
        (s, sp, t, e) for s in (0, 1) for sp in ("test", "train-sample") for t in range(5) for e in range(4)
    ]
    seeds = [episode_seed(*key) for key in grid]
    assert len(set(seeds)) == len(seeds)
    assert seeds == [episode_seed(*key) for key in grid]


def test_train_sample_is_fixed() -> None:
    sample = train_sample(POINT)
    assert len(sample) == harness.TRAIN_SAMPLE
    assert all(t.split == "train" for t in sample)
    assert len({t.index for t in sample}) == len(sample)
    rng = np.random.default_rng(harness.TRAIN_SAMPLE_SEED)
    expected = sorted(rng.choice(len(metabench.tasks(POINT, "train")), size=len(sample), replace=False))
    assert [t.index for t in sample] == [int(i) for i in expected]


# ------------------------------------------------------------------------------------- whole runs
def test_record_of_a_run(tmp_path: Path) -> None:
    rec = run(unit(tmp_path, seed=0))
    assert rec["status"] == "ok", rec["error"]
    cls = env_class(POINT)
    n_adapt, n_eval = cls.n_adapt, cls.n_eval
    k = harness.SMOKE_TASKS_PER_SPLIT  # the smoke tier meta-tests the first k tasks of each split
    groups = [("test", k), ("test-ood", k), ("train-sample", k)]
    eps = rec["episodes"]
    per_task = n_adapt + n_eval
    assert len(eps["return"]) == sum(n for _, n in groups) * per_task
    assert eps["split"] == [s for s, n in groups for _ in range(n * per_task)]
    assert eps["phase"][:per_task] == ["adapt"] * n_adapt + ["eval"] * n_eval
    assert eps["episode"][:per_task] == list(range(per_task))
    assert set(eps["length"]) == {20}
    assert set(map(type, eps["success"])) == {bool}
    train_idx = [i for s, i in zip(eps["split"], eps["task_index"], strict=True) if s == "train-sample"]
    assert train_idx[::per_task] == [t.index for t in train_sample(POINT)[:k]]
    assert rec["protocol"] == {
        "n_adapt": n_adapt,
        "n_eval": n_eval,
        "success_rule": "final",
        "train_sample": k,
    }
    prov = rec["provenance"]
    assert prov["budget"] == {"env_steps": cls.budgets["smoke"], "wall_clock_s": None}
    # the constant agent runs 3 episodes of 20 steps (its smoke TIERS entry) and logs after each
    assert prov["env_steps_used"] == 60
    assert rec["meta_train_curve"]["env_steps"] == [20, 40, 60]
    assert len(rec["meta_train_curve"]["episode_return"]) == 3
    assert prov["split_hashes"] == {s: metabench.split_hash(POINT, s) for s in metabench.split_names(POINT)}
    assert rec["run"]["config"] == {"train_episodes": 3, "strength": 1.0}
    assert rec["run"]["agent"] == "constant_agent" and rec["run"]["oracle"] is False
    assert len(prov["agent_sha256"]) == 64 and "gymnasium" in prov["packages"]
    # the run's CPU time: positive, and (one process, no worker threads here) not above its wall time
    assert 0 < prov["cpu_time_s"] <= prov["wall_time_s"] + 0.05

    # the same unit again gives the same numbers; another seed gives others (the agent is seeded)
    again = run(unit(tmp_path, seed=0))
    assert again["episodes"] == eps and again["meta_train_curve"] == rec["meta_train_curve"]
    other = run(unit(tmp_path, seed=1))
    assert other["episodes"]["return"] != eps["return"]


def test_meta_test_resets_use_the_derived_seeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from metabench.envs.point_nav import PointNavEnv

    seen: list[tuple[int | None, int | None]] = []
    original = PointNavEnv.reset

    def reset(self, *, seed=None, options=None):
        task = (options or {}).get("task")
        seen.append((seed, None if task is None else task.index))
        return original(self, seed=seed, options=options)

    monkeypatch.setattr(PointNavEnv, "reset", reset)
    rec = run(unit(tmp_path, seed=7))
    assert rec["status"] == "ok", rec["error"]
    eps = rec["episodes"]
    n = len(eps["return"])
    expected = [
        (episode_seed(7, s, t, e), t)
        for s, t, e in zip(eps["split"], eps["task_index"], eps["episode"], strict=True)
    ]
    assert seen[-n:] == expected


def _spy(tmp_path: Path, oracle: bool) -> tuple[dict, dict]:
    report = tmp_path / f"spy{oracle}.json"
    rec = run(unit(tmp_path, "spy_agent", report=str(report), oracle=str(oracle)))
    assert rec["status"] == "ok", rec["error"]
    return rec, json.loads(report.read_text())


def test_task_information_hidden_from_non_oracles(tmp_path: Path) -> None:
    rec, seen = _spy(tmp_path, oracle=False)
    assert rec["run"]["oracle"] is False
    assert seen["train_obs_dims"] == [2] and seen["test_obs_dims"] == [2]  # no ExplicitContext
    assert "success" in seen["train_info_keys"] and "success" in seen["test_info_keys"]
    assert not [k for k in seen["train_info_keys"] + seen["test_info_keys"] if k.startswith("task_")]
    assert seen["n_train_tasks"] == 80 and seen["train_task_splits"] == ["train"]
    # protocol: one trial per task, 10 exploring then 3 evaluation episodes, end_episode after each
    n_eps = len(rec["episodes"]["return"])
    assert seen["calls"]["begin_trial"] == 3 * harness.SMOKE_TASKS_PER_SPLIT  # smoke: k tasks per split
    assert seen["calls"]["end_episode"] == n_eps == 3 * harness.SMOKE_TASKS_PER_SPLIT * 13
    assert seen["calls"]["observe"] == seen["calls"]["act"] == n_eps * 20
    flags = [f for f in seen["trials"][0] if f is not None]
    assert flags == [True] * 10 + [False] * 3
    assert rec["provenance"]["env_steps_used"] == 40


def test_oracles_see_the_task(tmp_path: Path) -> None:
    rec, seen = _spy(tmp_path, oracle=True)
    assert rec["run"]["oracle"] is True
    assert seen["train_obs_dims"] == [4] and seen["test_obs_dims"] == [4]  # goal appended
    assert "task_index" in seen["train_info_keys"] and "task_index" in seen["test_info_keys"]


@pytest.mark.parametrize(
    ("mode", "error", "match"),
    [
        ("over_budget", "BudgetExceeded", "env step 2001 of a budget of 2000"),
        ("swallow_budget", "BudgetExceeded", "caught the error"),
        ("nan", "InvalidAction", "agent 'bad_agent' returned a non-finite action"),
        ("out_of_space", "InvalidAction", r"agent 'bad_agent' returned the action \[5.0, 5.0\], outside"),
        ("raise_in_act", "RuntimeError", "boom in act"),
        ("pickle_env", "RunError", "make_env cannot be pickled"),
        ("test_task", "RunError", "only use train tasks"),
        ("step_after", "RunError", "after meta_train returned"),
    ],
)
def test_failed_runs_leave_error_records(tmp_path: Path, mode: str, error: str, match: str) -> None:
    result = run_unit(unit(tmp_path, "bad_agent", mode=mode))
    assert result.status == "error"
    rec = load_record(result.path)
    assert rec["status"] == "error"
    assert rec["error"]["type"] == error
    assert re.search(match, rec["error"]["message"])
    assert "Traceback" in rec["error"]["traceback"]
    assert result.message.startswith(error)
    if mode == "over_budget":
        assert rec["provenance"]["env_steps_used"] == 2000
    if mode == "raise_in_act":
        assert 'bad_agent.py", line' in rec["error"]["traceback"]  # the agent's frame is kept


def test_unknown_env_and_tier_fail_the_run_not_the_process(tmp_path: Path) -> None:
    rec = run(Unit(str(AGENTS / "constant_agent.py"), "metabench/Nope-v0", "smoke", 0, str(tmp_path)))
    assert rec["status"] == "error" and "unknown env id" in rec["error"]["message"]
    rec = run(Unit(str(AGENTS / "constant_agent.py"), POINT, "huge", 0, str(tmp_path)))
    assert rec["status"] == "error" and "valid tiers: smoke, ci, standard" in rec["error"]["message"]


def test_prepare_units_checks_input_before_running(tmp_path: Path) -> None:
    agent = str(AGENTS / "constant_agent.py")
    units = harness.prepare_units(agent, [POINT, POINT], "smoke", [0, 1], tmp_path / "out")
    assert [(u.env_id, u.seed) for u in units] == [(POINT, 0), (POINT, 1)]
    assert units[0].path == tmp_path / "out" / "metabench__PointNav-v0" / "constant_agent" / "seed0.json"
    with pytest.raises(harness.AgentError, match="has no make_agent"):
        harness.prepare_units(str(AGENTS / "no_make_agent.py"), [POINT], "smoke", [0], tmp_path)
    with pytest.raises(harness.TaskError, match="Did you mean metabench/PointNav-v0"):
        harness.prepare_units(agent, ["metabench/PointNv-v0"], "smoke", [0], tmp_path)
    with pytest.raises(harness.AgentError, match="unknown config key"):
        harness.prepare_units(agent, [POINT], "smoke", [0], tmp_path, config_overrides={"nope": "1"})
    assert not (tmp_path / "out").exists()


def test_config_layers_apply_in_order() -> None:
    """Defaults < TIERS[tier] < ENV_TIERS[env][tier] < TOML < --config; ENV_TIERS only for its env."""
    import dataclasses
    import types

    from metabench.protocol import build_config

    @dataclasses.dataclass
    class Config:
        a: int = 0
        b: int = 0
        c: int = 0
        d: int = 0

    module = types.ModuleType("layered_agent")
    module.Config = Config
    module.make_agent = lambda config: None
    module.TIERS = {"ci": {"a": 1, "b": 1, "c": 1, "d": 1}}
    module.ENV_TIERS = {POINT: {"ci": {"b": 2, "c": 2, "d": 2}}}
    layered = build_config(module, "ci", toml={"c": 3, "d": 3}, overrides={"d": "4"}, env_id=POINT)
    assert dataclasses.astuple(layered) == (1, 2, 3, 4)
    assert dataclasses.astuple(build_config(module, "ci", env_id="metabench/Bandit-v0")) == (1, 1, 1, 1)
    assert dataclasses.astuple(build_config(module, "smoke", env_id=POINT)) == (0, 0, 0, 0)


@pytest.mark.parametrize("agent", ["random_agent", "no_context", "explicit_context", "rl2", "maml", "pearl"])
def test_reference_agents_env_tiers_name_real_envs_and_tiers(agent: str) -> None:
    from metabench.protocol import build_config, load_agent_module
    from metabench.tasks import metabench_ids

    module = load_agent_module(str(Path(__file__).parents[1] / "agents" / f"{agent}.py"))
    for env_id, tiers in getattr(module, "ENV_TIERS", {}).items():
        assert env_id in metabench_ids(), env_id
        assert set(tiers) <= set(harness.TIER_NAMES), (env_id, set(tiers))
        for tier in tiers:
            build_config(module, tier, env_id=env_id)  # every key is a config field


def test_agent_imports_are_hashed_transitively() -> None:
    """explicit_context runs no_context's learner; rl2, maml and random share agents/common: records
    carry the sha256 of those files too."""
    import hashlib

    from metabench.harness import agent_imports_sha256

    agents = Path(__file__).resolve().parents[1] / "agents"

    def sha(name: str) -> str:
        return hashlib.sha256((agents / name).read_bytes()).hexdigest()

    def modules(name: str) -> dict[str, str]:  # the hyperparameter files: tests/test_hyperparams.py
        return {k: v for k, v in agent_imports_sha256(str(agents / name)).items() if "/" not in k}

    assert modules("explicit_context.py") == {"metabench.agents.no_context": sha("no_context.py")}
    for name in ("rl2", "random_agent"):
        assert modules(f"{name}.py") == {"metabench.agents.common.spaces": sha("common/spaces.py")}
    # MAML's sampler, baseline and inner step live in agents/common/policy_gradient.py and its agent
    # shell in agents/common/pg_agent.py (shared with Meta-SGD, MAESN and TESP), which import the
    # package and spaces in turn.
    assert modules("maml.py") == {
        "metabench.agents.common": sha("common/__init__.py"),
        "metabench.agents.common.pg_agent": sha("common/pg_agent.py"),
        "metabench.agents.common.policy_gradient": sha("common/policy_gradient.py"),
        "metabench.agents.common.spaces": sha("common/spaces.py"),
    }
    # rlkit's MLP and the product of Gaussians, shared with CEMRL
    assert modules("pearl.py") == {"metabench.agents.common.nets": sha("common/nets.py")}
    assert agent_imports_sha256("no/such/agent.py") == {}
