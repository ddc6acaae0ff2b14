"""metabench.leaderboard: tables from records, byte-identical regeneration, --check, verify."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from metabench import leaderboard
from metabench.records import RecordError, record_path, write_record_atomic
from metabench.references import Reference

ENV = "metabench/PointNav-v0"
REF = Reference(random=-20.0, oracle=-5.0, measured="test")
REPO = Path(__file__).resolve().parents[1]


def make_record(
    agent: str,
    seed: int,
    level: float,
    *,
    oracle: bool = False,
    env_id: str = ENV,
    tier: str = "ci",
    success_rule: str = "final",
    n_tasks: int = 4,
    gain: float = 0.0,
    status: str = "ok",
) -> dict:
    """A valid record whose final returns are ``level`` plus a little seeded noise."""
    rng = np.random.default_rng([seed, int(abs(level) * 100), int(oracle)])
    cols: dict[str, list] = {
        c: [] for c in ("split", "task_index", "episode", "phase", "return", "success", "length")
    }
    n_adapt, n_eval = 2, 1
    for split in ("test", "test-ood", "train-sample"):
        for task in range(n_tasks):
            for ep in range(n_adapt + n_eval):
                ret = level - (gain if ep == 0 else 0.0) + float(rng.normal(0, 0.3))
                cols["split"].append(split)
                cols["task_index"].append(task)
                cols["episode"].append(ep)
                cols["phase"].append("adapt" if ep < n_adapt else "eval")
                cols["return"].append(ret)
                cols["success"].append(bool(ret > -10.0))
                cols["length"].append(20)
    if status != "ok":
        cols = {c: [] for c in cols}
    return {
        "schema": "metabench.record/1",
        "status": status,
        "run": {
            "agent": agent,
            "agent_spec": f"agents/{agent}.py",
            "env_id": env_id,
            "tier": tier,
            "seed": seed,
            "oracle": oracle,
            "config": {},
        },
        "provenance": {
            "metabench_version": "0.1.0",
            "git_commit": None,
            "git_dirty": None,
            "packages": {},
            "python": "3.11",
            "host": "test",
            "agent_sha256": "0" * 64,
            "split_hashes": {},
            "env_kwargs": {},
            "budget": {"env_steps": 1000, "wall_clock_s": None},
            "env_steps_used": 1000,
            "wall_time_s": 1.5,
            "started": "2025-01-01T00:00:00",
        },
        "protocol": {
            "n_adapt": n_adapt,
            "n_eval": n_eval,
            "success_rule": success_rule,
            "train_sample": n_tasks,
        },
        "meta_train_curve": {"env_steps": [500, 1000], "episode_return": [level - 1, level]},
        "episodes": cols,
        "error": None
        if status == "ok"
        else {"type": "BudgetExceeded", "message": "stepped past the budget", "traceback": "..."},
    }


def write(root: Path, record: dict) -> Path:
    run = record["run"]
    return write_record_atomic(record_path(root, run["env_id"], run["agent"], run["seed"]), record)


@pytest.fixture
def records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(leaderboard, "get_reference", lambda env_id, tier: REF if env_id == ENV else None)
    root = tmp_path / "records"
    for seed in range(3):
        write(root, make_record("random_agent", seed, -20.0))
        write(root, make_record("no_context", seed, -12.5))
        write(root, make_record("explicit_context", seed, -5.0, oracle=True))
        write(root, make_record("learner", seed, -10.0, gain=4.0))
    return root


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    import csv

    with open(path, newline="") as f:
        return {row["agent"]: row for row in csv.DictReader(f)}


def test_tables_report_normalised_scores_and_mark_oracles(records: Path, tmp_path: Path):
    out = tmp_path / "out"
    assert leaderboard.main(str(records), str(out), check=False) == 0
    stem = "metabench__PointNav-v0__ci"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["README.md", "overall.csv", f"{stem}.md", f"{stem}.csv", f"{stem}.png"]
    )
    rows = read_csv(out / f"{stem}.csv")
    assert float(rows["random_agent"]["primary"]) == pytest.approx(0.0, abs=0.05)
    assert float(rows["explicit_context"]["primary"]) == pytest.approx(1.0, abs=0.05)
    assert float(rows["no_context"]["primary"]) == pytest.approx(0.5, abs=0.05)
    assert rows["explicit_context"]["oracle"] == "True"
    assert float(rows["learner"]["gain"]) == pytest.approx(4.0, abs=0.3)
    assert float(rows["no_context"]["gain"]) == pytest.approx(0.0, abs=0.3)
    assert rows["no_context"]["seeds"] == "3" and rows["no_context"]["errors"] == "0"
    for agent in rows.values():  # CIs bracket the estimates
        assert float(agent["primary_ci_lo"]) <= float(agent["primary"]) <= float(agent["primary_ci_hi"])
    md = (out / f"{stem}.md").read_text()
    assert "explicit_context (oracle)" in md
    assert "no_context (oracle)" not in md
    # rows ordered by primary value, best first
    order = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ")][1:5]
    assert order == ["explicit_context (oracle)", "learner", "no_context", "random_agent"]
    assert "P(row > column)" in md and f"{stem}.png" in md
    overall = read_csv(out / "overall.csv")
    assert float(overall["no_context"]["mean_score"]) == pytest.approx(float(rows["no_context"]["primary"]))
    assert (out / f"{stem}.png").read_bytes().startswith(b"\x89PNG")


def test_rows_show_the_budget_used_and_flag_rows_under_90_percent(records: Path, tmp_path: Path):
    """A row whose runs used under 90% of the env-step budget is not at equal budget: flagged."""
    for seed in range(3):
        record = make_record("short_learner", seed, -10.0)
        record["provenance"]["env_steps_used"] = 200  # of 1000
        write(records, record)
        reference = make_record("random_agent", seed, -20.0)
        reference["provenance"]["env_steps_used"] = 0  # meta-trains on nothing by design: not flagged
        write(records, reference)
    out = tmp_path / "out"
    assert leaderboard.main(str(records), str(out), check=False) == 0
    stem = "metabench__PointNav-v0__ci"
    lines: dict[str, str] = {}  # each agent's row in the first table (the family table)
    for line in (out / f"{stem}.md").read_text().splitlines():
        if line.startswith("| "):
            lines.setdefault(line.split("|")[1].strip(), line)
    assert f"200 / 1000 (20%) {leaderboard.BUDGET_FLAG}" in lines["short_learner"]
    assert "1000 / 1000 (100%)" in lines["learner"] and leaderboard.BUDGET_FLAG not in lines["learner"]
    assert "0 / 1000 (none by design)" in lines["random_agent"]
    assert leaderboard.BUDGET_FLAG not in lines["random_agent"]
    rows = read_csv(out / f"{stem}.csv")
    assert float(rows["short_learner"]["budget_used"]) == pytest.approx(0.2)
    assert f"{leaderboard.BUDGET_FLAG} marks rows under 90%" in (out / "README.md").read_text()


def test_regeneration_is_byte_identical_and_check_passes(records: Path, tmp_path: Path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    leaderboard.main(str(records), str(a))
    leaderboard.main(str(records), str(b))
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert leaderboard.main(str(records), str(a), check=True) == 0


def test_check_names_changed_missing_and_stale_files(records: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    leaderboard.main(str(records), str(out))
    capsys.readouterr()
    csv = out / "metabench__PointNav-v0__ci.csv"
    csv.write_text(csv.read_text().replace("random_agent", "random"))
    (out / "overall.csv").unlink()
    (out / "old_family.md").write_text("stale")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert leaderboard.main(str(records), str(out), check=True) == 1
    err = capsys.readouterr().err
    assert "metabench__PointNav-v0__ci.csv: differs" in err
    assert "overall.csv: missing" in err
    assert "old_family.md: stale" in err
    assert "README.md" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # --check writes nothing


def test_a_changed_record_changes_the_tables(records: Path, tmp_path: Path):
    out = tmp_path / "out"
    leaderboard.main(str(records), str(out))
    write(records, make_record("no_context", 0, -8.0))
    assert leaderboard.main(str(records), str(out), check=True) == 1


def test_error_records_are_counted_but_not_used(records: Path, tmp_path: Path):
    clean, dirty = tmp_path / "clean", tmp_path / "dirty"
    leaderboard.main(str(records), str(clean))
    write(records, make_record("no_context", 7, -12.5, status="error"))
    leaderboard.main(str(records), str(dirty))
    a = read_csv(clean / "metabench__PointNav-v0__ci.csv")["no_context"]
    b = read_csv(dirty / "metabench__PointNav-v0__ci.csv")["no_context"]
    assert b["errors"] == "1" and b["seeds"] == "3"
    assert {k: v for k, v in a.items() if k != "errors"} == {k: v for k, v in b.items() if k != "errors"}
    md = (dirty / "metabench__PointNav-v0__ci.md").read_text()
    assert "no_context/seed7.json" in md and "BudgetExceeded: stepped past the budget" in md


def test_success_rule_any_makes_success_rate_the_primary_column(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(leaderboard, "get_reference", lambda env_id, tier: None)
    root = tmp_path / "records"
    for seed in range(2):
        write(root, make_record("good", seed, -5.0, env_id="metabench/Other-v0", success_rule="any"))
        write(root, make_record("bad", seed, -15.0, env_id="metabench/Other-v0", success_rule="any"))
    out = tmp_path / "out"
    leaderboard.main(str(root), str(out))
    rows = read_csv(out / "metabench__Other-v0__ci.csv")
    assert rows["good"]["primary_metric"] == "success"
    assert float(rows["good"]["primary"]) == 1.0 and float(rows["bad"]["primary"]) == 0.0
    md = (out / "metabench__Other-v0__ci.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| agent"))
    assert [c.strip() for c in header.split("|")][1:3] == ["agent", "success rate, 95% CI"]


def test_family_without_references_falls_back_to_returns(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(leaderboard, "get_reference", lambda env_id, tier: None)
    root = tmp_path / "records"
    write(root, make_record("a", 0, -5.0))
    out = tmp_path / "out"
    leaderboard.main(str(root), str(out))
    row = read_csv(out / "metabench__PointNav-v0__ci.csv")["a"]
    assert row["primary_metric"] == "final" and row["score"] == ""
    assert float(row["primary"]) == pytest.approx(-5.0, abs=0.3)
    assert row["primary_ci_lo"] == ""  # one seed: nothing to resample
    assert "no family has reference scores" in (out / "README.md").read_text()


def test_malformed_or_foreign_json_is_rejected_naming_file_and_field(records: Path, tmp_path: Path, capsys):
    bad = make_record("no_context", 9, -12.5)
    del bad["provenance"]["wall_time_s"]
    path = records / "metabench__PointNav-v0" / "no_context" / "seed9.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(RecordError, match=r"seed9\.json.*provenance\.wall_time_s"):
        leaderboard.main(str(records), str(tmp_path / "out"))
    path.write_text(json.dumps({"some": "other tool's file"}))
    assert leaderboard._cli(["render", str(records), "-o", str(tmp_path / "out")]) == 2
    assert "seed9.json" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecordError, match="no records"):
        leaderboard.main(str(tmp_path / "empty"), str(tmp_path / "x"))


def test_verify_accepts_a_similar_run_and_rejects_a_broken_one(records: Path, tmp_path: Path, capsys):
    new = tmp_path / "new"
    good = write(new, make_record("no_context", 11, -12.5))
    assert leaderboard.verify(records, [good]) == 0
    assert "ok   " in capsys.readouterr().out
    broken = write(tmp_path / "broken", make_record("no_context", 0, -19.0))
    assert leaderboard.verify(records, [broken]) == 1
    failed = write(tmp_path / "failed", make_record("no_context", 0, -12.5, status="error"))
    assert leaderboard.verify(records, [failed]) == 1
    unknown = write(tmp_path / "unknown", make_record("nobody", 0, -12.5))
    assert leaderboard.verify(records, [unknown]) == 1
    out = capsys.readouterr().out
    assert "the run failed" in out and "fewer than two committed" in out


def test_committed_leaderboard_regenerates_byte_identically():
    """The committed tables in leaderboards/ci are exactly what their committed records give."""
    records = REPO / "leaderboards" / "ci" / "records"
    if not records.is_dir():
        pytest.skip("no committed leaderboard records (run `make leaderboard`)")
    problems = leaderboard.compare(REPO / "leaderboards" / "ci", leaderboard.render_dir(records))
    assert problems == []


def test_empty_interval_is_shown_as_a_point():
    e = leaderboard.stats.Estimate(0.5, math.nan, math.nan)
    assert leaderboard.fmt_ci(e) == "0.50"
    assert leaderboard.fmt_ci(leaderboard.stats.Estimate(math.nan, math.nan, math.nan)) == "—"
    assert leaderboard.fmt_ci(leaderboard.stats.Estimate(-0.001, -0.02, 0.0)) == "0.00 [-0.02, 0.00]"


def test_provenance_flags_records_of_changed_agent_code(tmp_path: Path, monkeypatch, capsys):
    """A record passes when its agent file and the modules it imports are unchanged and the checkout
    was clean; editing the file or a helper it imports, or a dirty checkout, makes it stale."""
    from metabench.harness import agent_imports_sha256, file_sha256

    work = tmp_path / "work"
    (work / "agents").mkdir(parents=True)
    agent, helper = work / "agents" / "mine.py", work / "agents" / "mine_helpers.py"
    helper.write_text("SIZE = 64\n")
    agent.write_text("from mine_helpers import SIZE\n\n\ndef make_agent(config):\n    return None\n")
    monkeypatch.chdir(work)  # agent_spec is relative, as `metabench evaluate agents/mine.py` writes it
    monkeypatch.syspath_prepend(str(work / "agents"))  # its helper imports, as when the agent ran
    record = make_record("mine", 0, -10.0)
    record["provenance"].update(
        agent_sha256=file_sha256("agents/mine.py"),
        agent_imports_sha256=agent_imports_sha256("agents/mine.py"),
        git_dirty=False,
    )
    assert list(record["provenance"]["agent_imports_sha256"]) == ["mine_helpers"]
    path = write(tmp_path / "records", record)
    assert leaderboard.check_provenance(tmp_path / "records") == 0
    assert "1 of 1 record(s)" in capsys.readouterr().out

    helper.write_text("SIZE = 128\n")
    assert leaderboard.check_provenance(tmp_path / "records") == 1
    assert "imported module(s) changed since: mine_helpers" in capsys.readouterr().out
    helper.write_text("SIZE = 64\n")
    agent.write_text(agent.read_text() + "# edited\n")
    assert leaderboard.check_provenance(tmp_path / "records") == 1
    out, err = capsys.readouterr()
    assert "agents/mine.py changed since" in out and "regenerate" in err
    agent.write_text(agent.read_text().replace("# edited\n", ""))
    record["provenance"]["git_dirty"] = True
    write_record_atomic(path, record)
    assert leaderboard.check_provenance(tmp_path / "records") == 1
    assert "uncommitted changes" in capsys.readouterr().out
    # a record without the imports field passes only for an agent that imports nothing of its own
    del record["provenance"]["agent_imports_sha256"]
    record["provenance"]["git_dirty"] = False
    write_record_atomic(path, record)
    assert leaderboard.check_provenance(tmp_path / "records") == 1
    assert "predates recording the agent's imports" in capsys.readouterr().out
    # a record made with other settings than the committed ones (a --config override) is stale too
    record["provenance"]["agent_imports_sha256"] = agent_imports_sha256("agents/mine.py")
    record["run"]["config"] = {"hidden": 128}
    write_record_atomic(path, record)
    assert leaderboard.check_provenance(tmp_path / "records") == 1
    assert "its config differs from the committed settings in hidden" in capsys.readouterr().out


# ------------------------------------------------------------------------------- published figures
CHEETAH = "metabench/HalfCheetahVel-v0"  # a headline family


def figure_toml(**fields: object) -> str:
    """One ``[[figure]]`` of leaderboards/published.toml (test data, not a real published figure)."""
    entry = {
        "agent": "pearl",
        "env_id": CHEETAH,
        "value": -61.5,
        "metric": "average return after adaptation, test tasks",
        "budget": 2_000_000,
        "source": "A Test Paper, Table 9",
        "url": "https://example.org/test-paper",
        "note": "200-step episodes as ours; other target draws",
    } | fields
    lines = ["[[figure]]"] + [f"{k} = {json.dumps(v)}" for k, v in entry.items() if v is not None]
    return "\n".join(lines) + "\n"


@pytest.fixture
def cheetah_records(records: Path) -> Path:
    """The PointNav records plus pearl and random_agent on a headline family (no references there)."""
    for seed in range(2):
        write(records, make_record("pearl", seed, -90.0, env_id=CHEETAH))
        write(records, make_record("random_agent", seed, -300.0, env_id=CHEETAH))
    return records


def test_published_figures_are_shown_beside_the_agents_with_budget_and_source(
    cheetah_records: Path, tmp_path: Path
):
    published = tmp_path / "published.toml"
    published.write_text(
        figure_toml()
        + figure_toml(
            agent="rl2", value=-75.0, budget="not stated in the text", source="Another Paper, Fig. 2"
        )
    )
    files = leaderboard.render_dir(cheetah_records, published)
    readme = files["README.md"].decode()
    headline = readme.split("## Headline families")[1].split("What the ci tier")[0]
    rows = {line.split("|")[1].strip(): line for line in headline.splitlines() if line.startswith("| ")}
    # beside pearl's own number, the paper's with its budget; rl2 has no record, only the paper's
    assert "; published: -61.5 after 2,000,000 env steps" in rows["pearl"]
    assert "—; published: -75; budget not stated in the text" in rows["rl2"]
    assert "published" not in rows["random_agent"]
    assert (
        "On-policy methods (MAML, RL², Meta-SGD, MAESN, TESP) at these budgets are far from their "
        "published numbers, which took 10^7–10^8 steps" in readme
    )
    section = readme.split("## Published figures")[1].split("## Overall")[0]
    assert "[A Test Paper, Table 9](https://example.org/test-paper)" in section
    assert "2,000,000 env steps" in section and "200-step episodes as ours" in section
    assert (
        "No published figure on StrikerDynamics-v0, HalfCheetahVelNonStationary-v1, ML1-reach-v0" in section
    )
    family = files["metabench__HalfCheetahVel-v0__ci.md"].decode()
    below = family.split("## Published figures")[1]
    assert "| pearl " in below and "-61.5" in below and "2,000,000 env steps" in below
    assert "[Another Paper, Fig. 2](https://example.org/test-paper)" in below
    assert "## Published figures" not in files["metabench__PointNav-v0__ci.md"].decode()
    # a value read off a plot says so
    published.write_text(figure_toml(read_off="Fig. 3"))
    readme = leaderboard.render_dir(cheetah_records, published)["README.md"].decode()
    assert "≈ -61.5 (read off Fig. 3) after 2,000,000 env steps" in readme


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"agent": "nobody"},
            r"figure 2 \(agent 'nobody', env_id 'metabench/HalfCheetahVel-v0'\): unknown agent",
        ),
        (
            {"env_id": "metabench/Nowhere-v0"},
            r"figure 2 \(agent 'pearl', .*unknown env id 'metabench/Nowhere-v0'",
        ),
        ({"budget": None}, r"figure 2 \(agent 'pearl'.*missing key\(s\) budget"),
        ({"value": "high"}, r"figure 2 \(agent 'pearl'.*value has the wrong type"),
        ({"typo": 1}, r"figure 2 \(agent 'pearl'.*unknown key\(s\) typo"),
        ({"budget": -5}, r"figure 2 \(agent 'pearl'.*budget must be a positive"),
        ({}, r"figure 2 \(agent 'pearl'.*a second entry"),
    ],
)
def test_a_bad_published_entry_fails_naming_it(cheetah_records: Path, tmp_path: Path, fields, message):
    published = tmp_path / "published.toml"
    published.write_text(figure_toml() + figure_toml(**fields))
    with pytest.raises(leaderboard.PublishedError, match=message):
        leaderboard.render_dir(cheetah_records, published)


def test_a_bad_published_entry_stops_the_cli_with_one_line(
    cheetah_records: Path, tmp_path: Path, monkeypatch, capsys
):
    published = tmp_path / "published.toml"
    published.write_text(figure_toml(agent="nobody"))
    monkeypatch.setattr(leaderboard, "PUBLISHED_FILE", published)
    out = tmp_path / "out"
    assert leaderboard._cli(["render", str(cheetah_records), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "figure 1 (agent 'nobody'" in err and "unknown agent" in err
    assert not (out / "README.md").exists()  # nothing rendered


def test_committed_published_figures_name_real_agents_and_families():
    figures = leaderboard.load_published(leaderboard.PUBLISHED_FILE)
    assert figures, "leaderboards/published.toml has no [[figure]]"
    for figure in figures:
        assert figure.url.startswith("https://") and figure.source and figure.note and figure.metric
        assert isinstance(figure.budget, int) or figure.budget.startswith("not stated")
