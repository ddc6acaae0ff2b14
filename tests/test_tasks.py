"""Tasks, families and frozen splits (metabench/tasks.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import metabench
from metabench.tasks import (
    SplitChangedError,
    Task,
    TaskError,
    _splits,
    check_disjoint,
    env_class,
    split_digest,
)

ID = "metabench/HalfCheetahVel-v0"


def test_task_is_a_frozen_json_value() -> None:
    t = Task(ID, "custom", -1, {"velocity": np.float32(1.5), "goal": [1, 2]})
    assert t.params == {"velocity": 1.5, "goal": (1.0, 2.0)}
    assert Task.from_json(t.to_json()) == t
    assert hash(Task.from_json(t.to_json())) == hash(t)
    assert json.loads(t.to_json()) == {
        "family": ID,
        "split": "custom",
        "index": -1,
        "params": {"goal": [1.0, 2.0], "velocity": 1.5},
    }
    with pytest.raises(AttributeError):
        t.index = 3  # type: ignore[misc]
    with pytest.raises(TaskError, match="lacks field"):
        Task.from_dict({"family": ID, "split": "test"})


def test_split_sizes_and_ranges_match_the_docs() -> None:
    train, test, ood = (metabench.tasks(ID, s) for s in ("train", "test", "test-ood"))
    assert (len(train), len(test), len(ood)) == (100, 30, 30)
    v = lambda split: np.array([t.params["velocity"] for t in split])  # noqa: E731
    assert v(train).min() >= 0 and v(train).max() <= 3 and v(test).max() <= 3
    assert v(ood).min() > 3 and v(ood).max() <= 4


def test_a_changed_split_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    fam = env_class(ID).family
    monkeypatch.setattr(type(fam), "split_seed", fam.split_seed + 1)
    _splits.cache_clear()
    try:
        with pytest.raises(SplitChangedError, match="new env version"):
            metabench.tasks(ID, "train")
    finally:
        monkeypatch.undo()
        _splits.cache_clear()
    assert metabench.split_hash(ID, "train") == env_class(ID).split_hashes["train"]


def test_hash_is_over_canonical_json() -> None:
    split = metabench.tasks(ID, "test")
    swapped = (split[1], split[0], *split[2:])
    assert split_digest(split) != split_digest(swapped)


def test_overlapping_splits_are_caught() -> None:
    a = Task(ID, "train", 0, {"velocity": 1.0})
    b = Task(ID, "test", 0, {"velocity": 1.0})
    with pytest.raises(TaskError, match="share the task params"):
        check_disjoint({"train": [a], "test": [b]})
    check_disjoint({"train": [a], "test": [b]}, allow_shared_train_test=True)


def test_unknown_ids_and_splits_name_the_valid_choices() -> None:
    with pytest.raises(TaskError, match="Did you mean metabench/HalfCheetahVel-v0"):
        metabench.tasks("metabench/HalfCheetahVell-v0", "train")
    with pytest.raises(TaskError, match="valid splits: train, test, test-ood"):
        metabench.tasks(ID, "val")


def test_validate_names_the_problem() -> None:
    fam = env_class(ID).family
    with pytest.raises(TaskError, match=r"outside its valid range \[0.0, 4.0\]"):
        fam.make_task(ID, {"velocity": -1.0})
    with pytest.raises(TaskError, match="not finite"):
        fam.make_task(ID, {"velocity": math.inf})
    with pytest.raises(TaskError, match="unknown task parameter"):
        fam.make_task(ID, {"velocity": 1.0, "mass": 2.0})
    custom = fam.make_task(ID, {"velocity": 3.5})
    assert custom.split == "custom" and custom.index == -1
