"""Result records: the schema check names the file and the field; writes are atomic."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

from metabench import records
from metabench.records import RecordError, load_record, load_records, record_path, write_record_atomic


def make_record(status: str = "ok") -> dict:
    """A small valid record: two tasks of one split, two episodes each."""
    return {
        "schema": "metabench.record/1",
        "status": status,
        "run": {
            "agent": "a",
            "agent_spec": "agents/a.py",
            "env_id": "metabench/PointNav-v0",
            "tier": "smoke",
            "seed": 3,
            "oracle": False,
            "config": {"lr": 0.1},
        },
        "provenance": {
            "metabench_version": "0.1.0",
            "git_commit": None,
            "git_dirty": None,
            "packages": {"numpy": "2.0"},
            "python": "3.11.7",
            "host": "h",
            "agent_sha256": "ab" * 32,
            "split_hashes": {"test": "cd" * 32},
            "env_kwargs": {},
            "budget": {"env_steps": 100, "wall_clock_s": None},
            "env_steps_used": 40,
            "wall_time_s": 1.5,
            "started": "2026-01-01T00:00:00+00:00",
        },
        "protocol": {"n_adapt": 1, "n_eval": 1, "success_rule": "final", "train_sample": 0},
        "meta_train_curve": {"env_steps": [20, 40], "loss": [1.0, None]},
        "episodes": {
            "split": ["test"] * 4,
            "task_index": [0, 0, 1, 1],
            "episode": [0, 1, 0, 1],
            "phase": ["adapt", "eval", "adapt", "eval"],
            "return": [-4.0, -2.0, -6.0, -1.0],
            "success": [False, True, None, False],
            "length": [20, 20, 20, 20],
        },
        "error": None if status == "ok" else {"type": "E", "message": "m", "traceback": "tb"},
    }


def test_roundtrip_and_path(tmp_path: Path) -> None:
    path = record_path(tmp_path, "metabench/PointNav-v0", "a", 3)
    assert path == tmp_path / "metabench__PointNav-v0" / "a" / "seed3.json"
    rec = make_record()
    write_record_atomic(path, rec)
    assert load_record(path) == rec
    assert load_record(path.parent / path.name) == rec
    assert [p.name for p in path.parent.iterdir()] == ["seed3.json"]  # no temporary file left
    err = make_record("error")
    write_record_atomic(path, err)
    assert load_record(path)["error"]["traceback"] == "tb"


def _set(rec: dict, dotted: str, value) -> dict:
    rec = copy.deepcopy(rec)
    *parents, last = dotted.split(".")
    node = rec
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return rec


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("schema", "something/2", "'schema'"),
        ("status", "fine", "'status'"),
        ("run.seed", "3", "'run.seed'"),
        ("run.oracle", KeyError, "'run.oracle'"),
        ("provenance.budget.env_steps", -1, "'provenance.budget.env_steps'"),
        ("provenance.packages", {"numpy": 2}, "'provenance.packages.numpy'"),
        ("protocol.success_rule", "best", "'protocol.success_rule'"),
        ("meta_train_curve.loss", [1.0], "'meta_train_curve.loss'"),
        ("episodes.return", [-4.0, "x", -6.0, -1.0], "'episodes.return[1]'"),
        ("episodes.phase", ["adapt", "eval", "train", "eval"], "'episodes.phase[2]'"),
        ("episodes.length", [20, 20, 20], "'episodes.length'"),
        ("episodes.extra", [1, 2, 3, 4], "'episodes.extra'"),
        ("error", {"type": "E", "message": "m", "traceback": "tb"}, "'error'"),
    ],
)
def test_load_rejects_bad_field_naming_file_and_field(tmp_path: Path, field: str, value, named: str) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_set(make_record(), field, value)))
    with pytest.raises(RecordError) as info:
        load_record(path)
    assert str(path) in str(info.value)
    assert named in str(info.value)


def test_error_record_needs_error_object(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_set(make_record("error"), "error", None)))
    with pytest.raises(RecordError, match="'error'"):
        load_record(path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"name": "some other tool", "values": [1, 2]}', "'schema'"),
        ("[1, 2, 3]", "not a metabench record"),
        ('{"schema": "metabench.record/1", "status": "ok"', "not valid JSON"),
        ("", "not valid JSON"),
    ],
)
def test_foreign_or_malformed_files(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(text)
    with pytest.raises(RecordError, match=match) as info:
        load_record(path)
    assert str(info.value).startswith(str(path))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="cannot read"):
        load_record(tmp_path / "none.json")


def test_invalid_record_is_not_written_and_old_file_stays(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_record_atomic(path, make_record())
    before = path.read_bytes()
    with pytest.raises(RecordError):
        write_record_atomic(path, _set(make_record(), "episodes.return", [float("nan")] * 4))
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["r.json"]


def test_failed_replace_leaves_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.json"
    write_record_atomic(path, make_record())
    before = path.read_bytes()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(records.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_record_atomic(path, make_record("error"))
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["r.json"]


def test_load_records_rejects_a_foreign_file_in_the_directory(tmp_path: Path) -> None:
    good = record_path(tmp_path, "metabench/PointNav-v0", "a", 0)
    write_record_atomic(good, make_record())
    assert [r["run"]["seed"] for _, r in load_records(tmp_path)] == [3]
    foreign = tmp_path / "metabench__PointNav-v0" / "notes.json"
    foreign.write_text('{"hello": "world"}')
    with pytest.raises(RecordError) as info:
        load_records(tmp_path)
    assert str(foreign) in str(info.value)
    with pytest.raises(RecordError, match="does not exist"):
        load_records(tmp_path / "nope")


def test_summary_text_shows_means_per_episode_index() -> None:
    text = records.summary_text(make_record(), "r.json")
    # mean over the two tasks: episode 0 -> -5.0, episode 1 -> -1.5; eval success: 1 of 2 tasks
    rows = [
        [c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("|")
    ]
    assert ["0", "adapt", "-5.000"] in rows
    assert ["1", "eval", "-1.500"] in rows
    assert ["test", "2", "-1.500", "0.500"] in rows
    assert "40 of 100 env steps" in text
    table = records.summary_table([("r.json", make_record())])
    assert "-1.500" in table and "r.json" in table
