"""The headline families: their ci budgets and meta-test subsets, and the leaderboard that leads with them."""

from __future__ import annotations

import json
from pathlib import Path

from metabench.harness import meta_test_groups, tier_budget
from metabench.leaderboard import HEADLINE_FAMILIES, render_dir
from metabench.tasks import tasks

RECORDS = Path(__file__).resolve().parent.parent / "leaderboards" / "ci" / "records"


def test_headline_families_share_one_ci_budget():
    assert {tier_budget(env_id, "ci") for env_id in HEADLINE_FAMILIES} == {200_000}


def test_ml1_meta_tests_a_fixed_subset_at_ci_and_everything_at_standard():
    ci = dict(meta_test_groups("metabench/ML1-reach-v0", "ci"))
    standard = dict(meta_test_groups("metabench/ML1-reach-v0", "standard"))
    assert ci["test"] == tasks("metabench/ML1-reach-v0", "test")[:10]
    assert len(standard["test"]) == 50 and len(ci["train-sample"]) == 10
    # Families that do not cap a tier meta-test every task there.
    assert len(dict(meta_test_groups("metabench/HalfCheetahVel-v0", "ci"))["test"]) == 30


def _copy_record(src: Path, dst_root: Path, env_id: str) -> None:
    record = json.loads(src.read_text())
    record["run"]["env_id"] = env_id
    out = dst_root / env_id.replace("/", "__") / record["run"]["agent"] / src.name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record))


def test_leaderboard_leads_with_the_headline_table(tmp_path):
    # A committed PointNav record relabelled as a HalfCheetahVel one: enough to lay out the tables.
    src = next(RECORDS.glob("metabench__PointNav-v0/random_agent/seed0.json"))
    _copy_record(src, tmp_path, "metabench/HalfCheetahVel-v0")
    _copy_record(src, tmp_path, "metabench/PointNav-v0")
    readme = render_dir(tmp_path)["README.md"].decode()
    headline = readme.index("## Headline families")
    assert headline < readme.index("## Overall")
    assert "HalfCheetahVel-v0 `ci`: final return (IQM)" in readme
    # The headline family's own section comes before the cheap family's.
    assert readme.index("## [metabench/HalfCheetahVel-v0]") < readme.index("## [metabench/PointNav-v0]")
    assert "What the ci tier can and cannot show" in readme
