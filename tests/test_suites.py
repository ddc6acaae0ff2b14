"""Transfer suites: frozen, hashed, listed; the suite harness's budget, protocol, records and refusals."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from metabench import suites
from metabench.cli import main as cli_main
from metabench.harness import BudgetExceeded, RunError, StepCounter, Unit, run
from metabench.protocol import Budget
from metabench.records import load_record
from metabench.suite_harness import SuiteEnvFactory, prepare_suite_units
from metabench.tasks import SplitChangedError, Task, TaskError

AGENTS = Path(__file__).resolve().parent.parent / "agents"
CI_SUITE = "suite/PendulumReacher-v0"

#: The suites' frozen hashes, written here a second time: a change to a suite fails this test.
FROZEN = {
    "suite/MetaGenRL-CheetahLunar-v0": ("50a39464b828f8ad", "6824a1ed42f1927c"),
    "suite/MetaGenRL-LunarHopper-v0": ("c56aaa8720ab4adf", "3c12ca610611a33d"),
    "suite/PendulumReacher-v0": ("e73a9332f39cf2a6", "487237a133c8e710"),
}


def test_suites_are_frozen() -> None:
    assert set(suites.SUITES) == set(FROZEN)
    for name, (train, test) in FROZEN.items():
        assert suites.suite_split_hash(name, "train").startswith(train)
        assert suites.suite_split_hash(name, "test").startswith(test)
        assert suites.compute_suite_hashes(name) == dict(suites.get_suite(name).split_hashes)


def test_metagenrl_pairs() -> None:
    cl = suites.get_suite("suite/MetaGenRL-CheetahLunar-v0")
    assert cl.train == ("HalfCheetah-v5", "LunarLanderContinuous-v3")
    assert set(cl.test) == {"Hopper-v5", *cl.train}
    assert cl.budgets["standard"] == 20 * 700_000 and cl.adapt_steps["standard"] == 700_000
    lh = suites.get_suite("suite/MetaGenRL-LunarHopper-v0")
    assert lh.train == ("LunarLanderContinuous-v3", "Hopper-v5") and lh.test == ("HalfCheetah-v5",)
    ci = suites.get_suite(CI_SUITE)
    assert not set(ci.test) & set(ci.train)  # a held-out test env


def test_a_changed_suite_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    changed = dataclasses.replace(suites.SUITES[CI_SUITE], test=("Swimmer-v5",))
    monkeypatch.setattr(suites, "SUITES", {**suites.SUITES, CI_SUITE: changed})
    with pytest.raises(SplitChangedError, match="new version"):
        suites.suite_tasks(CI_SUITE, "test")


def test_suite_tasks_are_json_tasks() -> None:
    (task,) = suites.suite_tasks(CI_SUITE, "test")
    assert task.params == {"env": "InvertedPendulum-v5"} and task.family == CI_SUITE
    assert Task.from_json(task.to_json()) == task
    assert suites.env_of(task) == "InvertedPendulum-v5"
    with pytest.raises(TaskError, match="Valid suites"):
        suites.get_suite("suite/PendulumReacher-v9")


def test_list_shows_suites(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["list", "--filter", "PendulumReacher"]) == 0
    out = capsys.readouterr().out
    assert CI_SUITE in out and suites.suite_split_hash(CI_SUITE, "test") in out


def test_make_env_takes_train_tasks_and_counts_steps() -> None:
    make_env = SuiteEnvFactory(suites.get_suite(CI_SUITE), StepCounter(Budget(5), "smoke"))
    pendulum, reacher = suites.suite_tasks(CI_SUITE, "train")
    env = make_env(reacher)
    assert env.action_space.shape == (2,)
    env.reset(seed=0)
    for _ in range(5):
        env.step(env.action_space.sample())
    other = make_env(pendulum)
    other.reset(seed=0)
    with pytest.raises(BudgetExceeded):  # one budget over every env, counted by the base env
        other.unwrapped.step(np.zeros(1, np.float32))
    with pytest.raises(RunError, match="train tasks"):
        make_env(suites.suite_tasks(CI_SUITE, "test")[0])


def test_a_family_agent_is_refused_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = [
        "evaluate",
        str(AGENTS / "maml.py"),
        "--suite",
        CI_SUITE,
        "--tier",
        "smoke",
        "--out",
        str(tmp_path),
    ]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "suites = True" in err
    assert not any(tmp_path.iterdir())


def test_random_agent_on_a_suite(tmp_path: Path) -> None:
    (unit,) = prepare_suite_units(str(AGENTS / "random_agent.py"), [CI_SUITE], "smoke", [0], tmp_path)
    record = run(unit)
    assert record["status"] == "ok", record["error"]
    eps = record["episodes"]
    adapt = [n for n, p in zip(eps["length"], eps["phase"], strict=True) if p == "adapt"]
    assert sum(adapt) == record["protocol"]["adapt_steps"] == 300  # the last episode cut at the limit
    assert eps["phase"].count("eval") == 1 and set(eps["split"]) == {"test"}
    assert record["run"]["env_id"] == CI_SUITE and record["provenance"]["env_steps_used"] == 0
    # the same seed gives the same episodes
    again = run(Unit(unit.agent_spec, CI_SUITE, "smoke", 0, str(tmp_path)))
    assert again["episodes"] == eps


def test_from_scratch_learns_nothing_in_meta_training(tmp_path: Path) -> None:
    argv = ["evaluate", str(AGENTS / "from_scratch.py"), "--suite", CI_SUITE, "--tier", "smoke"]
    assert cli_main([*argv, "--out", str(tmp_path), "--quiet", "--config", "learning_starts=50"]) == 0
    record = load_record(tmp_path / "suite__PendulumReacher-v0" / "from_scratch" / "seed0.json")
    assert record["status"] == "ok" and record["provenance"]["env_steps_used"] == 0
    assert record["run"]["config"]["learning_starts"] == 50


def test_leaderboard_tables_a_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from metabench import leaderboard, references
    from metabench.records import write_record_atomic

    agent = str(AGENTS / "random_agent.py")
    for seed in (0, 1):
        (unit,) = prepare_suite_units(agent, [CI_SUITE], "smoke", [seed], tmp_path / "records")
        write_record_atomic(unit.path, run(unit))
    files = leaderboard.render_dir(tmp_path / "records")
    stem = "suite__PendulumReacher-v0__smoke"
    page = files[f"{stem}.md"].decode()
    assert "InvertedPendulum-v5" in page and "300 adaptation steps" in page
    assert files[f"{stem}.png"].startswith(b"\x89PNG")
    assert "(no family has reference scores" in files["README.md"].decode()  # suites stay out of overall
    # with references, a suite's score is normalised per test env
    finals = [r.tasks["test"][0].final for r in leaderboard.read_records(tmp_path / "records")]
    ref = references.SuiteReference({0: references.Reference(random=0.0, oracle=100.0)})
    monkeypatch.setattr(references, "SUITE_REFERENCES", {CI_SUITE: {"smoke": ref}})
    (fam,) = leaderboard.group_runs(leaderboard.read_records(tmp_path / "records"))
    assert fam.primary == "score"
    (row,) = leaderboard.family_rows(fam)
    assert row.score.value == pytest.approx(np.mean(finals) / 100.0)
    assert "from_scratch 100.0000" in leaderboard.render_dir(tmp_path / "records")[f"{stem}.md"].decode()


def test_suite_references_are_the_means_of_the_committed_records() -> None:
    """SUITE_REFERENCES are measured, not chosen: they equal what the committed records give."""
    from metabench.references import get_reference, measure_suites

    records = Path(__file__).resolve().parent.parent / "leaderboards" / "ci" / "records"
    measured = measure_suites(records)
    assert measured, "no suite records committed"
    for (suite, tier, task), values in measured.items():
        ref = get_reference(suite, tier)
        assert ref is not None, f"{suite} {tier} has records but no reference"
        found = ref.for_task(task)
        assert found is not None
        assert found.random == pytest.approx(values["random_agent"], abs=0.005)
        assert found.oracle == pytest.approx(values["from_scratch"], abs=0.005)
