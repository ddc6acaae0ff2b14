"""The resumable campaign: plan checks, what counts as done, running and resuming, committing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from metabench.campaign import Runner, load_plan, main, select, unit_record, unit_state
from metabench.harness import UsageError, git_state

ROOT = Path(__file__).resolve().parent.parent
AGENT = str(ROOT / "agents" / "random_agent.py")


def write_plan(tmp_path: Path, seeds: str = "0-1", **extra: str) -> Path:
    lines = ['tier = "smoke"', 'records = "records"', "unit_timeout_minutes = 10"]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    lines += ["[[group]]", 'name = "cheap"', 'envs = ["metabench/PointNav-v0"]', f'agents = ["{AGENT}"]']
    lines += [f'seeds = "{seeds}"']
    path = tmp_path / "campaign.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_plan_lists_units_seed_major(tmp_path):
    plan = load_plan(write_plan(tmp_path, seeds="0-2"))
    assert [u.seed for u in plan.units] == [0, 1, 2]
    assert all(unit_state(plan, u) == "missing" for u in plan.units)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('tier = "ci"\n', "has no"),
        ('[[group]]\nname = "g"\nenvs = ["metabench/Nope-v0"]\nagents = []\nseeds = "0"\n', "Nope"),
        (f'[[group]]\nname = "g"\nenvs = []\nagents = ["{AGENT}x"]\nseeds = "0"\n', "not a file"),
        ('[[group]]\nname = "g"\nenvs = []\n', "lacks agents, seeds"),
        ("tier = [", "cannot read"),
    ],
)
def test_bad_plans_are_one_line_errors(tmp_path, body, expected):
    path = tmp_path / "p.toml"
    path.write_text(body)
    with pytest.raises(UsageError, match=expected):
        load_plan(path)


def test_only_and_seeds_select_units_of_each_kind_named() -> None:
    """Agents, env ids and groups combine as "one of each kind given"; unknown names are refused."""
    plan = load_plan(ROOT / "leaderboards" / "ci" / "campaign.toml")
    picked = select(plan, ["maml", "rl2", "headline"], [0])
    assert {u.group for u in picked} == {"headline"} and {u.seed for u in picked} == {0}
    assert {u.agent.split("/")[-1] for u in picked} == {"maml.py", "rl2.py"}
    assert len(picked) == 2 * len({u.env_id for u in plan.units if u.group == "headline"})
    assert select(plan, ["metabench/PointNav-v0"], [1, 2]) == [
        u for u in plan.units if u.env_id == "metabench/PointNav-v0" and u.seed in (1, 2)
    ]
    assert select(plan) == list(plan.units)
    # a unit two groups name (no_context on PointNav: "cheap" and "context") is one unit, run once
    same = [u for u in plan.units if u.describe() == "no_context on metabench/PointNav-v0 seed 0"]
    assert len(same) == 1 and same[0].groups == {"cheap", "context"}
    for group in ("cheap", "context"):
        assert select(plan, ["no_context", group, "metabench/PointNav-v0"], [0]) == same
    with pytest.raises(UsageError, match="names no agent, env id or group"):
        select(plan, ["mamll"])
    with pytest.raises(UsageError, match="--seeds 99 is not a seed"):
        select(plan, seeds=[99])


def test_run_resume_and_stale(tmp_path, capsys):
    path = write_plan(tmp_path)
    assert main(str(path), jobs=2) == 0
    plan = load_plan(path)
    # Records made from a checkout with uncommitted changes fail the provenance check: not done.
    _, dirty = git_state()
    expected = "stale" if dirty else "done"
    assert [unit_state(plan, u) for u in plan.units] == [expected, expected]
    if dirty:
        for u in plan.units:  # as if made from a clean checkout, to test the other rules
            record = json.loads(unit_record(plan, u).read_text())
            record["provenance"]["git_dirty"] = False
            unit_record(plan, u).write_text(json.dumps(record))
        assert [unit_state(plan, u) for u in plan.units] == ["done", "done"]
    capsys.readouterr()
    # Resuming runs nothing: every unit has an ok record made by this code.
    assert main(str(path), dry_run=True) == 0
    assert "0 to run" in capsys.readouterr().out
    # A record made with another config (or code, tier, budget) is stale and is run again.
    record_file = unit_record(plan, plan.units[0])
    record = json.loads(record_file.read_text())
    record["run"]["config"] = {"something": "else"}
    record_file.write_text(json.dumps(record))
    assert unit_state(plan, plan.units[0]) == "stale"
    assert main(str(path), dry_run=True) == 0
    out = capsys.readouterr().out
    assert "1 to run" in out and "stale" in out


def test_commit_mode_commits_record_and_tables(tmp_path):
    repo = tmp_path / "board"
    repo.mkdir()
    git = ["git", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "config", "user.email", "t@example.org"], check=True)
    subprocess.run([*git, "config", "user.name", "t"], check=True)
    path = write_plan(repo, seeds="0")
    cmd = [sys.executable, "-m", "metabench.cli", "campaign", str(path), "--jobs", "1", "--commit"]
    subprocess.run(cmd, check=True, capture_output=True, cwd=tmp_path)
    files = subprocess.run([*git, "ls-files"], capture_output=True, text=True, check=True).stdout.split()
    assert "records/metabench__PointNav-v0/random_agent/seed0.json" in files
    assert "README.md" in files  # the re-rendered tables went in with the record
    log = subprocess.run([*git, "log", "--format=%s"], capture_output=True, text=True, check=True).stdout
    assert "random_agent on metabench/PointNav-v0 seed 0" in log


def test_units_run_with_one_thread_unless_the_user_chose(monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    assert Runner.unit_env()["OMP_NUM_THREADS"] == "1"
    assert Runner.unit_env()["MKL_NUM_THREADS"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert Runner.unit_env()["OMP_NUM_THREADS"] == "4"
