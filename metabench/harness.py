"""The harness: the one evaluation loop every agent goes through.

A *unit* is one run: (agent file, env id, tier, seed). :func:`run` evaluates a unit and returns its
record (see :mod:`metabench.records`); :func:`run_unit` also writes it; :func:`run_units` runs many in
this process (``metabench evaluate --workers 1``; :mod:`metabench.parallel` runs them on Ray).

What a run does, in order:

1. **Meta-training.** ``agent.meta_train(make_env, tasks, budget, seed=seed, log=log)`` with the train
   split's tasks. ``make_env()`` returns ``gym.make(env_id)`` (wrapped in
   :class:`~metabench.wrappers.ExplicitContext` for oracles) whose base env :func:`own_env` makes count
   every step on the :class:`StepCounter` shared by every env the agent makes, also the steps taken
   through ``env.unwrapped``; the record's ``env_steps_used`` is that count. The budget is the family's
   (``env_class(env_id).budgets[tier]``), the same for every agent. Stepping past it, or past the
   wall-clock budget where one is set, raises :class:`~metabench.protocol.BudgetExceeded` and fails the
   run; so does swallowing that exception and carrying on. These envs take only members of the frozen
   train split, by family and parameters, not by the ``split`` label (:func:`check_train_task`; also
   through ``unwrapped.set_task``; a refused task fails the run even if caught), refuse to be pickled
   (step them in the agent's own process: ``DummyVecEnv``, not ``SubprocVecEnv``), and refuse to step
   once ``meta_train`` returned.
2. **Meta-testing.** For every split other than ``train`` (``test``, and ``test-ood`` where the family
   has one), every task; then a fixed sample of :data:`TRAIN_SAMPLE` train tasks (drawn once with
   ``np.random.default_rng(TRAIN_SAMPLE_SEED)``, the same for every agent and seed), recorded as split
   ``"train-sample"``. The ``smoke`` tier, a wiring check, meta-tests only the first
   :data:`SMOKE_TASKS_PER_SPLIT` tasks of each. Per task: ``begin_trial()``, ``n_adapt`` episodes
   with ``act(obs, explore=True)``, then ``n_eval`` with ``explore=False``; ``observe(transition)``
   after every step and ``end_episode()`` after every episode. ``n_adapt``, ``n_eval`` and
   ``success_rule`` are the env class's. Each episode is reset with a seed derived from (run seed,
   split, task index, episode) by :func:`episode_seed`, so every agent meets the same initial states.
3. **Recording.** Per episode: return, length and success (``info["success"]`` at the last step for
   ``success_rule="final"``, at any step for ``"any"``; null where the env never reports it).

Task information is hidden from agents that are not oracles (``metabench.protocol.is_oracle``): they see
only the ``info`` keys their family declares public (``MetaEnv.public_info_keys``: ``success``, reward
terms that follow from the reward and the action; never ``task_*``), in ``Transition.info`` at
meta-test and in the infos of their meta-training envs (also through ``env.unwrapped``), and their envs
are never wrapped in ``ExplicitContext``. Oracles see every info key and get ``ExplicitContext``
observations in meta-training and meta-testing alike.

Trust (``docs/trust.md``): in-process, these rules guard against accidents; an agent that searches its
process (``gc``, stack frames) or replays the public meta-test order can still reach the meta-test task.
``Unit.isolate`` (``metabench evaluate --isolate``, :mod:`metabench.isolation`) runs every env of the run
in a separate process, where the counting, the train-only rule and the info filter are enforced and the
meta-test tasks are set in a secret order; the agent's process holds proxies only.

Every action the agent returns at meta-test is checked: one that is not finite or lies outside the
action space (beyond a float32 rounding tolerance of 1e-6 relative) fails the run with an
:class:`InvalidAction` naming the agent, the action and the space.

Seeding: the agent seeds itself from ``meta_train(seed=...)``. The harness seeds nothing global, with
one documented exception: when torch is loaded in the run's process it calls ``torch.manual_seed(seed)``
before ``make_agent``, so that networks an agent builds in ``make_agent`` (before it sees the seed) are
the same in every process, in-process or on a Ray worker.

A run that raises (or whose agent calls ``sys.exit``) is turned into an error record (status ``"error"``,
the exception's type, message and traceback, and whatever was measured before); :func:`run_unit` writes
it like any other record (:func:`write_unit_record`: never over an ok record). ``KeyboardInterrupt``
leaves no record: ``metabench evaluate`` says how many were written, and a rerun resumes.

Progress (``Unit.progress``): tqdm bars on stderr where it is a terminal; elsewhere (a log, CI)
:class:`LogProgress`, whole lines, one per phase of a unit and at most one every
:data:`PROGRESS_EVERY_S` seconds while it runs.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
import hashlib
import importlib.metadata
import importlib.util
import math
import operator
import os
import platform
import re
import socket
import subprocess
import sys
import time
import traceback
import zlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

import metabench
from metabench.env import MetaEnv
from metabench.protocol import (
    HYPERPARAMS_DIR,
    TIER_NAMES,
    AgentError,
    Budget,
    BudgetExceeded,
    Transition,
    build_config,
    config_to_dict,
    is_oracle,
    load_agent_module,
)
from metabench.records import (
    EPISODE_COLUMNS,
    SCHEMA,
    RecordError,
    dumps,
    load_record,
    record_path,
    rerun_error_path,
    validate_record,
    write_record_atomic,
)
from metabench.tasks import Task, TaskError, canonical_json, env_class, split_hash, split_names, tasks

#: How many train tasks are meta-tested (split ``"train-sample"``), to show the generalisation gap.
TRAIN_SAMPLE = 10
#: Seed of the generator that draws the train sample; fixed, so every run tests the same tasks.
TRAIN_SAMPLE_SEED = 20_190_101
#: Tasks per split meta-tested at the smoke tier (see :func:`meta_test_groups`).
SMOKE_TASKS_PER_SPLIT = 5
#: Most units (seeds x env ids) one command runs: more is a typo (``--seeds 0-100000``), not a plan.
MAX_UNITS = 1_000
#: Packages whose versions go into a record's provenance (those installed).
PROVENANCE_PACKAGES = (
    "gymnasium",
    "mujoco",
    "dm-control",
    "numpy",
    "scipy",
    "torch",
    "stable-baselines3",
    "sb3-contrib",
    "metaworld",
    "ray",
)


class RunError(RuntimeError):
    """An agent broke the protocol during a run (its message says how)."""


class InvalidAction(RunError):
    """An agent returned an action that is not finite or lies outside the action space."""


class UsageError(ValueError):
    """Bad command-line input (a seed range, a tier, ...); the message names the valid choices."""


# ------------------------------------------------------------------------------------------- units
@dataclasses.dataclass(frozen=True)
class Unit:
    """One run: an agent on an env id at a tier with a seed, and where its record goes.

    ``agent_spec`` is the agent as the user gave it (recorded); ``agent_path`` is what is imported
    (an absolute file path, or a module name), so that Ray workers find it whatever their cwd.
    """

    agent_spec: str
    env_id: str
    tier: str
    seed: int
    out_dir: str
    agent_path: str = ""
    config_toml: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    config_overrides: Mapping[str, str] = dataclasses.field(default_factory=dict)
    wall_clock_s: float | None = None
    tensorboard: str | None = None
    progress: bool = False
    #: Run every env in a separate process (``metabench evaluate --isolate``; :mod:`metabench.isolation`).
    isolate: bool = False

    def __post_init__(self) -> None:
        if not self.agent_path:
            object.__setattr__(self, "agent_path", resolve_agent_path(self.agent_spec))
        object.__setattr__(self, "out_dir", str(Path(self.out_dir).expanduser().resolve()))

    @property
    def agent(self) -> str:
        return agent_name(self.agent_spec)

    @property
    def path(self) -> Path:
        return record_path(self.out_dir, self.env_id, self.agent, self.seed)

    def describe(self) -> str:
        return f"{self.agent} on {self.env_id} seed {self.seed}"


@dataclasses.dataclass
class UnitResult:
    """What became of a unit: ``status`` is ``"ok"``, ``"error"`` or ``"skipped"``."""

    unit: Unit
    path: str
    status: str
    message: str = ""
    record: dict[str, Any] | None = None


def agent_name(spec: str) -> str:
    """The agent's name in records and tables: the file stem (``agents/rl2.py`` -> ``rl2``), or the
    last part of a module name."""
    if _is_file_spec(spec):
        return Path(spec).stem
    return spec.rsplit(".", 1)[-1]


def _is_file_spec(spec: str) -> bool:
    return spec.endswith(".py") or Path(spec).expanduser().exists()


def resolve_agent_path(spec: str) -> str:
    return str(Path(spec).expanduser().resolve()) if _is_file_spec(spec) else spec


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,2,5"``; ``"3"``; ``"0-2,7"``. Sorted, without repeats."""
    seeds: set[int] = set()
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise UsageError(
                f"cannot parse seeds {text!r}: use a range like 0-4, a list like 0,2,5, or one seed like 3"
            )
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise UsageError(f"seed range {part.strip()!r} in {text!r} runs backwards; write {hi}-{lo}")
        if hi - lo + 1 <= MAX_UNITS:  # a huge range is refused before it is built
            seeds.update(range(lo, hi + 1))
        n = max(len(seeds), hi - lo + 1)
        if n > MAX_UNITS:
            raise UsageError(
                f"--seeds {text!r} gives {n} seeds, more than the {MAX_UNITS} units one command runs; "
                "run smaller ranges (finished units are skipped on a rerun)"
            )
    return sorted(seeds)


def check_unit_count(n_seeds: int, n_targets: int) -> None:
    """Refuse more than :data:`MAX_UNITS` units (seeds x env ids and suites), naming the count."""
    n = n_seeds * n_targets
    if n > MAX_UNITS:
        raise UsageError(
            f"{n_seeds} seed(s) x {n_targets} env id(s) make {n} units, more than the {MAX_UNITS} one "
            "command runs; split the run (finished units are skipped on a rerun)"
        )


def check_tier(tier: str) -> str:
    if tier not in TIER_NAMES:
        raise UsageError(f"unknown tier {tier!r}; valid tiers: {', '.join(TIER_NAMES)}")
    return tier


def tier_budget(env_id: str, tier: str) -> int:
    """The family's meta-training budget (env steps) at ``tier``."""
    budgets = env_class(env_id).budgets
    if tier not in budgets:
        raise UsageError(f"{env_id} defines no budget for tier {tier!r}; it has {', '.join(budgets)}")
    return int(budgets[tier])


def unit_budget(unit: Unit) -> Budget | None:
    """The budget ``unit`` runs with (its family's or suite's at its tier); None if unknown."""
    try:
        if unit.env_id.startswith("suite/"):
            from metabench.suites import get_suite

            steps = int(get_suite(unit.env_id).budgets[unit.tier])
        else:
            steps = tier_budget(unit.env_id, unit.tier)
    except (KeyError, TaskError, UsageError):
        return None
    return Budget(steps, unit.wall_clock_s)


def _ok_record(path: str | Path) -> dict[str, Any] | None:
    if not Path(path).is_file():
        return None
    try:
        record = load_record(path)
    except RecordError:
        return None
    return record if record["status"] == "ok" else None


def _identity(record: Mapping[str, Any]) -> tuple[str, int, float | None]:
    budget = record["provenance"]["budget"]
    return record["run"]["tier"], budget["env_steps"], budget["wall_clock_s"]


def existing_ok(path: str | Path, unit: Unit | None = None) -> bool:
    """True when ``path`` holds a valid record with status ``"ok"`` (a rerun skips its unit) and, with
    ``unit``, the record is of that unit's tier and budget: a smoke record is no ci result."""
    record = _ok_record(path)
    if record is None:
        return False
    if unit is None:
        return True
    budget = unit_budget(unit)
    want = (unit.tier, budget.env_steps, budget.wall_clock_s) if budget else None
    return want is None or _identity(record) == want


def identity_clash(unit: Unit) -> str | None:
    """If the unit's path holds an ok record of another tier or budget, a line saying so: a run
    would replace a result of another kind, so ``metabench evaluate`` refuses (``--force`` replaces
    it; another ``--out`` keeps both). None otherwise."""
    record = _ok_record(unit.path)
    budget = unit_budget(unit)
    if record is None or budget is None or existing_ok(unit.path, unit):
        return None
    tier, steps, wall = _identity(record)
    limit = f", {wall:g} s" if wall is not None else ""
    want = f", {budget.wall_clock_s:g} s" if budget.wall_clock_s is not None else ""
    return (
        f"{unit.path} holds a {tier}-tier record (budget {steps} env steps{limit}) and this run is "
        f"{unit.tier} (budget {budget.env_steps} env steps{want})"
    )


def stale_note(unit: Unit) -> str:
    """For a unit about to be skipped: a note if its ok record was made from another agent file or
    config than the one asked for now ("" if they match)."""
    record = load_record(unit.path)
    notes = []
    if record["provenance"]["agent_sha256"] != file_sha256(unit.agent_path):
        notes.append("another version of the agent file")
    if changed_imports(record["provenance"].get("agent_imports_sha256"), unit.agent_path):
        notes.append("another version of a module the agent imports")
    module = load_agent_module(unit.agent_path)
    config = _jsonable(
        config_to_dict(build_config(module, unit.tier, unit.config_toml, unit.config_overrides, unit.env_id))
    )
    if record["run"]["config"] != config:
        notes.append("another config")
    if unit.isolate and not record["run"].get("isolated", False):
        notes.append("its envs in-process, not --isolate")
    return f" (but it was made with {' and '.join(notes)})" if notes else ""


# ---------------------------------------------------------------------------------- meta-training
class StepCounter:
    """Counts the env steps of every meta-training env of a run and enforces the budget."""

    def __init__(self, budget: Budget, tier: str, on_step: Callable[[], Any] | None = None):
        self.budget, self.tier, self.on_step = budget, tier, on_step
        self.steps = 0
        self.closed = False
        self.exceeded: str | None = None
        #: The first non-train task a meta-training env refused (the run fails even if it was caught).
        self.refused: str | None = None
        self._t0 = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def _exceed(self, message: str) -> BudgetExceeded:
        self.exceeded = message
        return BudgetExceeded(message)

    def check_wall_clock(self) -> None:
        limit = self.budget.wall_clock_s
        if limit is not None and self.elapsed() > limit:
            raise self._exceed(
                f"meta-training ran {self.elapsed():.1f} s, past the {self.tier} tier's wall-clock budget "
                f"of {limit:g} s (after {self.steps} env steps)"
            )

    def tick(self) -> None:
        if self.closed:
            raise RunError(
                "a meta-training env was stepped after meta_train returned; meta-testing uses only the "
                "harness's envs"
            )
        if self.steps >= self.budget.env_steps:
            raise self._exceed(
                f"meta-training stepped past the {self.tier} tier's budget: env step {self.steps + 1} of a "
                f"budget of {self.budget.env_steps} (counted over every env make_env made)"
            )
        self.check_wall_clock()
        self.steps += 1
        if self.on_step is not None:
            self.on_step()

    def close(self) -> None:
        """End meta-training: re-raise an overrun or a refused task the agent swallowed, check the
        wall clock."""
        self.closed = True
        if self.exceeded is not None:
            raise BudgetExceeded(self.exceeded + " (the agent caught the error and went on)")
        if self.refused is not None:
            raise RunError(self.refused + " (the agent caught the error and went on)")
        self.check_wall_clock()


def visible_info(
    info: Mapping[str, Any], oracle: bool, public: Collection[str] = MetaEnv.public_info_keys
) -> dict[str, Any]:
    """What an agent may see of ``info``: everything for oracles; otherwise only the keys in ``public``
    (the family's :attr:`~metabench.env.MetaEnv.public_info_keys`), never a ``task_*`` key."""
    if oracle:
        return dict(info)
    return {k: v for k, v in info.items() if k in public and not k.startswith("task_")}


def task_key(task: Task) -> tuple[str, str]:
    """What identifies a task for the train-only rule: its family and its parameters (not its label)."""
    return task.family, canonical_json(task.to_dict()["params"])


def train_members(env_id: str) -> frozenset[tuple[str, str]]:
    """The :func:`task_key` of every task of ``env_id``'s frozen train split."""
    return frozenset(task_key(t) for t in tasks(env_id, "train"))


def check_train_task(
    task: Any, members: frozenset[tuple[str, str]], env_id: str, counter: StepCounter | None = None
) -> None:
    """Raise :class:`RunError` unless ``task`` is a member of the train split by family and parameters:
    a test task relabelled ``split="train"`` is still a test task. The first refusal is kept on
    ``counter``, so that the run fails even if the agent catches the error."""
    if isinstance(task, Task) and task_key(task) in members:
        return
    split = getattr(task, "split", type(task).__name__)
    message = (
        f"meta-training may only use train tasks; got a task of split {split!r} whose family and "
        f"parameters are not those of any task of metabench.tasks({env_id!r}, 'train')"
    )
    if counter is not None and counter.refused is None:
        counter.refused = message
    raise RunError(message)


def own_env(
    env: gym.Env,
    counter: StepCounter,
    members: frozenset[tuple[str, str]],
    env_id: str,
    oracle: bool = False,
) -> None:
    """Make the base env of ``env`` count every step on ``counter``, refuse tasks outside the train
    split and (for agents that are not oracles) return only public ``info`` keys, whichever way it is
    called: ``env.step``, ``env.unwrapped.step``, ``set_task``, ``reset(options={"task": ...})``.
    Instance attributes shadow the class's methods, so every wrapper and every direct call goes
    through them; the non-stationary families' internal task switches (``_switch`` to tasks drawn
    from the episode task's split) pass the same train-only check."""
    base = env.unwrapped
    cls = type(base)
    step, reset, set_task, apply_task = cls.step, cls.reset, cls.set_task, cls._apply_task
    switch = cls._switch
    public = cls.public_info_keys

    def counted_step(action: Any) -> Any:
        counter.tick()
        obs, reward, terminated, truncated, info = step(base, action)
        return obs, reward, terminated, truncated, visible_info(info, oracle, public)

    def public_reset(*, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        obs, info = reset(base, seed=seed, options=options)
        return obs, visible_info(info, oracle, public)

    def train_set_task(task: Any) -> None:
        check_train_task(task, members, env_id, counter)
        set_task(base, task)

    def train_switch(task: Any) -> None:
        check_train_task(task, members, env_id, counter)
        switch(base, task)

    def train_apply_task(task: Any) -> None:
        check_train_task(task, members, env_id, counter)
        apply_task(base, task)

    base.step = counted_step
    base.reset = public_reset
    base.set_task = train_set_task
    base._switch = train_switch
    base._apply_task = train_apply_task


class BudgetedEnv(gym.Wrapper):
    """A meta-training env (its base env owned by :func:`own_env`: counted, train tasks only) that
    shows agents that are not oracles only the family's public ``info`` keys."""

    def __init__(
        self,
        env: gym.Env,
        counter: StepCounter,
        oracle: bool,
        members: frozenset[tuple[str, str]] | None = None,
    ):
        super().__init__(env)
        self._counter, self._oracle = counter, oracle
        self._public = type(env.unwrapped).public_info_keys
        self._members = train_members(env.unwrapped.env_id) if members is None else members

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        task = (options or {}).get("task")
        if task is not None:
            check_train_task(task, self._members, self.env.unwrapped.env_id, self._counter)
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, visible_info(info, self._oracle, self._public)

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)  # counted by the base env
        return obs, reward, terminated, truncated, visible_info(info, self._oracle, self._public)


class EnvFactory:
    """The ``make_env`` handed to ``meta_train``: a fresh budgeted env per call."""

    def __init__(self, env_id: str, oracle: bool, counter: StepCounter):
        self.env_id, self.oracle, self.counter = env_id, oracle, counter
        self.members = train_members(env_id)

    def __call__(self) -> gym.Env:
        env = gym.make(self.env_id)
        own_env(env, self.counter, self.members, self.env_id, self.oracle)
        if self.oracle:
            from metabench.wrappers import ExplicitContext

            env = ExplicitContext(env)
        return BudgetedEnv(env, self.counter, self.oracle, self.members)

    def __reduce__(self) -> Any:
        raise RunError(
            "make_env cannot be pickled: meta-training envs must be stepped in the agent's own process "
            "(e.g. stable_baselines3 DummyVecEnv, not SubprocVecEnv) so that the budget is counted"
        )


class CurveLogger:
    """The ``log`` handed to ``meta_train``: collects the meta-training curve, columnar.

    ``log.log(env_steps, **scalars)`` (the :class:`~metabench.protocol.Logger` protocol; calling
    ``log(env_steps, **scalars)`` does the same) appends one row; a scalar missing from a row is null,
    a non-finite one becomes null. With a TensorBoard writer, every scalar also goes to ``meta_train/<name>``.
    A bad call (``env_steps`` not a whole number >= 0, a scalar that is not a number) raises a
    ``TypeError``/``ValueError`` naming it and appends nothing: the row is checked whole first, so the
    columns always have the same length.
    """

    def __init__(self, writer: Any = None):
        self.writer = writer
        self.env_steps: list[int] = []
        self.columns: dict[str, list[float | None]] = {}

    def log(self, env_steps: int, **scalars: float) -> None:
        n = len(self.env_steps)
        if "env_steps" in scalars:
            raise TypeError("log(env_steps, **scalars): 'env_steps' cannot also be a scalar name")
        steps = _whole_steps(env_steps)
        row = {}
        for name, value in scalars.items():  # the whole row is checked before anything is appended
            try:
                row[name] = float(value)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"log() takes numbers; scalar {name}={value!r:.80} is not one") from exc
        self.env_steps.append(steps)
        for name, v in row.items():
            self.columns.setdefault(name, [None] * n).append(v if math.isfinite(v) else None)
            if self.writer is not None and math.isfinite(v):
                self.writer.add_scalar(f"meta_train/{name}", v, steps)
        for column in self.columns.values():
            if len(column) == n:
                column.append(None)

    #: ``log(env_steps, ...)`` works as well as ``log.log(env_steps, ...)``.
    __call__ = log

    def to_dict(self) -> dict[str, list[Any]]:
        return {"env_steps": list(self.env_steps), **{k: list(v) for k, v in self.columns.items()}}


def _whole_steps(env_steps: Any) -> int:
    """``log()``'s ``env_steps`` as an int, or a TypeError/ValueError naming it."""
    try:
        steps = operator.index(env_steps)
    except TypeError:
        if not (isinstance(env_steps, float) and env_steps.is_integer()):
            raise TypeError(
                f"log(env_steps, ...) takes a whole number of env steps; got env_steps={env_steps!r:.80}"
            ) from None
        steps = int(env_steps)
    if steps < 0:
        raise ValueError(f"log(env_steps, ...): env_steps={steps} is negative")
    return steps


# ------------------------------------------------------------------------------------ meta-testing
def train_sample(env_id: str, n: int = TRAIN_SAMPLE) -> tuple[Task, ...]:
    """The fixed sample of train tasks that is meta-tested (all of them if the split is smaller)."""
    train = tasks(env_id, "train")
    if len(train) <= n:
        return train
    idx = np.sort(np.random.default_rng(TRAIN_SAMPLE_SEED).choice(len(train), size=n, replace=False))
    return tuple(train[int(i)] for i in idx)


def meta_test_groups(env_id: str, tier: str = "ci") -> list[tuple[str, tuple[Task, ...]]]:
    """(split label, tasks) in the order they are meta-tested.

    At the ``smoke`` tier, a wiring check rather than a score, only the first
    :data:`SMOKE_TASKS_PER_SPLIT` tasks of each split are meta-tested (ML45's test split alone is
    250 tasks of 500-step episodes). A family may cap other tiers too, in its ``meta_test_tasks``
    (tier -> tasks per split, the first ones of each split: a fixed subset, the same for every agent),
    where meta-testing every task would not fit the tier; every other tier meta-tests every task.
    """
    groups = [(s, tasks(env_id, s)) for s in split_names(env_id) if s != "train"]
    groups = [*groups, ("train-sample", train_sample(env_id))]
    limit = SMOKE_TASKS_PER_SPLIT if tier == "smoke" else env_class(env_id).meta_test_tasks.get(tier)
    if limit is not None:
        groups = [(s, t[:limit]) for s, t in groups]
    return groups


def episode_seed(run_seed: int, split: str, task_index: int, episode: int) -> int:
    """The reset seed of a meta-test episode: a pure function of (run seed, split, task, episode)."""
    key = [int(run_seed), zlib.crc32(split.encode()), int(task_index), int(episode)]
    return int(np.random.SeedSequence(key).generate_state(1, np.uint32)[0])


class ActionCheck:
    """Checks the actions an agent returns for one action space (bounds prepared once).

    ``check(action)`` returns the action to step with (for a ``Box``: a float array of the space's
    dtype, clipped to the bounds) or raises :class:`InvalidAction` if it is not finite or lies outside
    the space by more than a float32 rounding tolerance (1e-6, relative to bounds above 1).
    """

    def __init__(self, space: gym.Space, agent: str):
        self.space, self.agent = space, agent
        if isinstance(space, spaces.Box):
            self.low = space.low.astype(np.float64)
            self.high = space.high.astype(np.float64)
            tol = 1e-6 * np.maximum(1.0, np.maximum(np.abs(self.low), np.abs(self.high)))
            self.low_tol, self.high_tol = self.low - tol, self.high + tol  # inf bounds stay inf

    def __call__(self, action: Any) -> Any:
        space, agent = self.space, self.agent
        if action is None:  # numpy would read it as nan, and the message would speak of a shape
            raise InvalidAction(f"agent {agent!r} returned None instead of an action; the space is {space}")
        if not isinstance(space, spaces.Box):
            if not space.contains(action):
                raise InvalidAction(
                    f"agent {agent!r} returned the action {action!r:.120}, outside the action space {space}"
                )
            return action
        try:
            a = np.array(action, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidAction(
                f"agent {agent!r} returned {action!r:.120}, not a numeric action for {space}"
            ) from exc
        if a.shape != space.shape:
            raise InvalidAction(
                f"agent {agent!r} returned an action of shape {a.shape}; the space is {space}"
            )
        if not np.isfinite(a).all():
            raise InvalidAction(
                f"agent {agent!r} returned a non-finite action {a.tolist()}; the space is {space}"
            )
        if not ((a >= self.low_tol).all() and (a <= self.high_tol).all()):
            raise InvalidAction(
                f"agent {agent!r} returned the action {np.round(a, 6).tolist()}, "
                f"outside the action space {space}"
            )
        np.maximum(a, self.low, out=a)
        np.minimum(a, self.high, out=a)
        return a.astype(space.dtype, copy=False)


def validate_action(action: Any, space: gym.Space, agent: str) -> Any:
    """``ActionCheck(space, agent)(action)``: the action to step with, or :class:`InvalidAction`."""
    return ActionCheck(space, agent)(action)


# -------------------------------------------------------------------------------------- provenance
def _git(args: Sequence[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout metabench is imported from; (None, None) outside a git checkout.
    Dirty means tracked files differ from the commit; untracked files (results) and ``leaderboards/``
    (records and tables, outputs rather than code) do not count."""
    root = Path(metabench.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None, None
    commit = _git(["rev-parse", "HEAD"], root)
    # Records and the tables made from them are outputs, not code: a campaign that has written (and not
    # yet committed) one unit's record must not mark the next unit's record dirty.
    status = _git(["status", "--porcelain", "--untracked-files=no", "--", ".", ":!leaderboards"], root)
    return (commit.strip() if commit else None), (None if status is None else bool(status.strip()))


def package_versions() -> dict[str, str]:
    out = {}
    for name in PROVENANCE_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def file_sha256(spec: str) -> str:
    """sha256 of the agent's source file ("" if it cannot be found)."""
    path = _source_path(spec)
    return "" if path is None else hashlib.sha256(path.read_bytes()).hexdigest()


def agent_imports_sha256(spec: str) -> dict[str, str]:
    """sha256 of every module file the agent's source imports, transitively, from ``metabench.agents``
    or from the agent file's own folder: code that is the agent's without being in its file
    (``explicit_context`` runs ``no_context``'s learner; ``rl2``, ``maml`` and ``random_agent`` share
    ``agents/common``). Keyed by module name; ``{}`` when there are none or the source is not found.

    The agent's hyperparameter file is not hashed: a record keeps the config it ran with, resolved
    for its tier and env id (``run.config``), and :func:`current_config` compares that with what the
    file gives now, so tuning one family leaves the records of the others current."""
    root = _source_path(spec)
    if root is None:
        return {}
    found: dict[str, str] = {}
    todo = [root]
    seen = {root}
    while todo:
        path = todo.pop()
        for name in _imported_names(path):
            dep = _local_module(name, root.parent)
            if dep is None or dep in seen:
                continue
            seen.add(dep)
            found[name] = hashlib.sha256(dep.read_bytes()).hexdigest()
            todo.append(dep)
    return dict(sorted(found.items()))


def changed_imports(recorded: Mapping[str, str] | None, spec: str) -> list[str] | None:
    """The modules the agent imports whose files differ from a record's ``agent_imports_sha256``
    (``[]``: none), or None for a record without that field from an agent that imports modules now.
    Records made while hyperparameter files were hashed with the modules carry a
    ``hyperparams/<agent>.toml`` key: it is left out (the record's config stands for it)."""
    current = agent_imports_sha256(spec)
    if recorded is None:
        return None if current else []
    recorded = {k: v for k, v in recorded.items() if not k.startswith(f"{HYPERPARAMS_DIR}/")}
    return sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))


def current_config(spec: str, tier: str, env_id: str) -> dict[str, Any]:
    """The config the committed settings give the agent at ``tier`` on ``env_id`` (defaults, tier
    tables, the hyperparameter file), as a record's ``run.config`` holds it."""
    module = load_agent_module(spec)
    return _jsonable(config_to_dict(build_config(module, tier, None, None, env_id)))


def config_difference(recorded: Mapping[str, Any], spec: str, tier: str, env_id: str) -> list[str]:
    """The config keys in which a record's ``run.config`` differs from :func:`current_config`."""
    current = current_config(spec, tier, env_id)
    return sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))


def _source_path(spec: str) -> Path | None:
    """The file of an agent given as a path or as a module name."""
    path = Path(spec).expanduser()
    return path.resolve() if path.is_file() else _module_file(spec)


def _module_file(name: str) -> Path | None:
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if found is None or not found.origin or not Path(found.origin).is_file():
        return None
    return Path(found.origin).resolve()


def _imported_names(path: Path) -> list[str]:
    """Absolute module names a source file imports (``from a.b import c`` gives ``a.b`` and
    ``a.b.c``: c may be a submodule)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return []
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names if a.name != "*"]
    return names


def _local_module(name: str, agent_dir: Path) -> Path | None:
    """The file of module ``name`` if it is part of ``metabench.agents`` or sits in ``agent_dir``."""
    if name == "metabench.agents" or name.startswith("metabench.agents."):
        return _module_file(name)
    base = agent_dir.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate.resolve()
    return None


# ---------------------------------------------------------------------------------------- the run
class _Columns:
    """The episodes table of a record, filled as meta-testing goes."""

    def __init__(self) -> None:
        self.data: dict[str, list[Any]] = {
            k: [] for k in ("split", "task_index", "episode", "phase", "return", "success", "length")
        }

    def add(self, **row: Any) -> None:
        for k, v in row.items():
            self.data[k].append(v)


def _cpu_seconds() -> float:
    """CPU seconds used so far by this process and its finished children (an isolated run's env
    processes): unlike the wall time, what a unit costs whatever else shares the machine."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class _RunState:
    """What a run knows so far; :meth:`record` turns it into a record, complete or not."""

    def __init__(self, unit: Unit):
        self.unit = unit
        self.started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.t0 = time.monotonic()
        self.cpu0 = _cpu_seconds()
        self.oracle = False
        self.config: dict[str, Any] = {}
        self.split_hashes: dict[str, str] = {}
        self.env_kwargs: dict[str, Any] = {}
        self.budget = Budget(0, unit.wall_clock_s)
        self.protocol = {"n_adapt": 0, "n_eval": 0, "success_rule": "final", "train_sample": TRAIN_SAMPLE}
        self.counter: StepCounter | None = None
        self.logger = CurveLogger()
        self.episodes = _Columns()

    def record(self, error: dict[str, str] | None) -> dict[str, Any]:
        u = self.unit
        commit, dirty = git_state()
        return {
            "schema": SCHEMA,
            "status": "ok" if error is None else "error",
            "run": {
                "agent": u.agent,
                "agent_spec": u.agent_spec,
                "env_id": u.env_id,
                "tier": u.tier,
                "seed": int(u.seed),
                "oracle": self.oracle,
                "isolated": bool(u.isolate),
                "config": self.config,
            },
            "provenance": {
                "metabench_version": metabench.__version__,
                "git_commit": commit,
                "git_dirty": dirty,
                "packages": package_versions(),
                "python": platform.python_version(),
                "host": socket.gethostname(),
                "agent_sha256": file_sha256(u.agent_path),
                "agent_imports_sha256": agent_imports_sha256(u.agent_path),
                "split_hashes": self.split_hashes,
                "env_kwargs": self.env_kwargs,
                "budget": {"env_steps": int(self.budget.env_steps), "wall_clock_s": self.budget.wall_clock_s},
                "env_steps_used": 0 if self.counter is None else int(self.counter.steps),
                "wall_time_s": round(time.monotonic() - self.t0, 3),
                "cpu_time_s": round(_cpu_seconds() - self.cpu0, 3),
                "started": self.started,
            },
            "protocol": dict(self.protocol),
            "meta_train_curve": self.logger.to_dict(),
            "episodes": {k: list(v) for k, v in self.episodes.data.items()},
            "error": error,
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


#: Least seconds between two progress lines of one phase when stderr is not a terminal.
PROGRESS_EVERY_S = 30.0


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    return f"{minutes} min {sec:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _rate(n: float, seconds: float, unit: str) -> str:
    if seconds <= 0 or n <= 0:
        return f"- {unit}/s"
    r = n / seconds
    return f"{r:,.0f} {unit}/s" if r >= 10 else f"{r:.2g} {unit}/s"


class LogProgress:
    """Progress of one phase of a unit (meta-train, meta-test) for a log, where a tqdm bar would be
    a heap of carriage returns: whole lines on stderr, at most one every ``every`` seconds while the
    phase runs (count, rate, ETA) and one when it ends (count, time, rate). tqdm's ``update``/``close``.
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        *,
        every: float = PROGRESS_EVERY_S,
        file: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.file, self.clock = file, clock
        self.n = 0
        self.closed = False
        self.t0 = self.last = clock()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last >= self.every and not self.closed:
            self.last = now
            done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
            eta = ""
            if self.total and self.n:
                eta = f", ETA {_duration((self.total - self.n) * (now - self.t0) / self.n)}"
            self._print(f"{done} {self.unit}, {_rate(self.n, now - self.t0, self.unit)}{eta}")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        elapsed = self.clock() - self.t0
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        self._print(f"{done} {self.unit} in {_duration(elapsed)} ({_rate(self.n, elapsed, self.unit)})")

    def _print(self, text: str) -> None:
        print(f"{self.desc}: {text}", file=self.file or sys.stderr, flush=True)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _tqdm(enabled: bool, **kwargs: Any) -> Any:
    """A progress bar on stderr: tqdm's where stderr is a terminal, else :class:`LogProgress` lines."""
    if enabled and not _is_terminal(sys.stderr):
        return LogProgress(kwargs.get("total"), kwargs.get("desc", ""), kwargs.get("unit", "it"))
    from tqdm.auto import tqdm

    return tqdm(disable=not enabled, leave=False, dynamic_ncols=True, file=sys.stderr, **kwargs)


def _seed_torch(seed: int) -> None:
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(int(seed))


def run(unit: Unit) -> dict[str, Any]:
    """Evaluate one unit and return its record; a failure gives an error record, never an exception
    (except ``KeyboardInterrupt``, which leaves no record). A transfer suite's unit (its
    ``env_id`` a suite name) runs in :mod:`metabench.suite_harness`."""
    if unit.env_id.startswith("suite/"):
        from metabench.suite_harness import run as run_suite

        try:
            return run_suite(unit)
        except SystemExit as exc:
            return _RunState(unit).record(_exit_error(exc))
    state = _RunState(unit)
    error = None
    closers: list[Any] = []
    try:
        _run(unit, state, closers)
    except Exception as exc:
        error = {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}
    except SystemExit as exc:  # an agent's sys.exit() fails its run, not the whole command
        error = _exit_error(exc)
    finally:
        for c in reversed(closers):
            try:
                c.close()
            except Exception:  # closing a progress bar or writer must not hide the run's result
                pass
    return state.record(error)


def _run(unit: Unit, state: _RunState, closers: list[Any]) -> None:
    check_tier(unit.tier)
    module = load_agent_module(unit.agent_path)
    config = build_config(module, unit.tier, unit.config_toml, unit.config_overrides, unit.env_id)
    state.config = _jsonable(config_to_dict(config))
    cls = env_class(unit.env_id)
    state.budget = Budget(tier_budget(unit.env_id, unit.tier), unit.wall_clock_s)
    state.protocol.update(
        n_adapt=int(cls.n_adapt), n_eval=int(cls.n_eval), success_rule=str(cls.success_rule)
    )
    state.split_hashes = {s: split_hash(unit.env_id, s) for s in split_names(unit.env_id)}
    state.env_kwargs = _jsonable(dict(gym.spec(unit.env_id).kwargs))
    name = unit.agent

    writer = None
    if unit.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        log_dir = Path(unit.tensorboard) / unit.env_id.replace("/", "__") / name / f"seed{unit.seed}"
        writer = SummaryWriter(log_dir=str(log_dir))
        closers.append(writer)
    state.logger = CurveLogger(writer)

    server = None
    if unit.isolate:  # started before the agent is made: the env process imports while it is
        from metabench import isolation

        server = isolation.EnvServer(
            unit.env_id, budget=state.budget, tier=unit.tier, seed=int(unit.seed), agent=name
        )
        closers.append(server)

    _seed_torch(unit.seed)
    agent = module.make_agent(config)
    state.oracle = is_oracle(agent)

    # 1. meta-training
    label = f"{name} {unit.env_id} seed{unit.seed}"
    bar = _tqdm(unit.progress, total=state.budget.env_steps, desc=f"{label} meta-train", unit="step")
    closers.append(bar)
    counter = StepCounter(state.budget, unit.tier, on_step=bar.update)
    state.counter = counter
    if server is not None:
        server.begin_training(state.oracle)
        make_env: Callable[[], gym.Env] = isolation.IsolatedEnvFactory(server, counter)
    else:
        make_env = EnvFactory(unit.env_id, state.oracle, counter)
    agent.meta_train(
        make_env, tasks(unit.env_id, "train"), state.budget, seed=int(unit.seed), log=state.logger
    )
    if server is not None:  # the env process's count and verdict, not this process's mirror
        counter.closed = True
        try:
            server.end_training()
        finally:
            counter.steps = server.steps
    else:
        counter.close()
    bar.close()

    # 2. meta-testing
    n_adapt, n_eval = state.protocol["n_adapt"], state.protocol["n_eval"]
    groups = meta_test_groups(unit.env_id, unit.tier)
    state.protocol["train_sample"] = len(groups[-1][1])
    bar = _tqdm(
        unit.progress,
        total=sum(len(t) for _, t in groups) * (n_adapt + n_eval),
        desc=f"{label} meta-test",
        unit="ep",
    )
    closers.append(bar)
    if server is not None:

        def store(columns: dict[str, list[Any]]) -> None:
            state.episodes.data = columns

        isolation.meta_test(
            agent, server, name, n_adapt, n_eval, on_trial=lambda: bar.update(n_adapt + n_eval), store=store
        )
        if writer is not None:
            _write_test_scalars(writer, state.episodes.data)
        return
    env = gym.make(unit.env_id)
    if state.oracle:
        from metabench.wrappers import ExplicitContext

        env = ExplicitContext(env)
    closers.append(env)
    for split, task_list in groups:
        for task in task_list:
            _trial(agent, env, task, split, unit.seed, n_adapt, n_eval, state, name)
            bar.update(n_adapt + n_eval)
    if writer is not None:
        _write_test_scalars(writer, state.episodes.data)


def _trial(
    agent: Any,
    env: gym.Env,
    task: Task,
    split: str,
    seed: int,
    n_adapt: int,
    n_eval: int,
    state: _RunState,
    name: str,
) -> None:
    """One task: begin_trial, n_adapt exploring episodes, n_eval evaluation episodes."""
    oracle, rule, check = state.oracle, state.protocol["success_rule"], ActionCheck(env.action_space, name)
    public = type(env.unwrapped).public_info_keys
    agent.begin_trial()
    for episode in range(n_adapt + n_eval):
        explore = episode < n_adapt
        obs, info = env.reset(seed=episode_seed(seed, split, task.index, episode), options={"task": task})
        ret, length, success, done = 0.0, 0, None, False
        while not done:
            action = check(agent.act(obs, explore=explore))
            next_obs, reward, terminated, truncated, info = env.step(action)
            reward = float(reward)
            if not math.isfinite(reward):
                raise RunError(
                    f"{state.unit.env_id} returned a non-finite reward {reward} on task {task.index}"
                )
            ret, length, done = ret + reward, length + 1, bool(terminated or truncated)
            if "success" in info:
                hit = bool(info["success"])
                success = hit if rule == "final" or success is None else (success or hit)
            agent.observe(
                Transition(
                    obs,
                    action,
                    reward,
                    next_obs,
                    bool(terminated),
                    bool(truncated),
                    visible_info(info, oracle, public),
                )
            )
            obs = next_obs
        agent.end_episode()
        state.episodes.add(
            split=split,
            task_index=int(task.index),
            episode=episode,
            phase="adapt" if explore else "eval",
            length=length,
            success=success,
            **{"return": ret},
        )


def _write_test_scalars(writer: Any, episodes: Mapping[str, list[Any]]) -> None:
    """Mean meta-test return per episode index and split, as ``meta_test/<split>/return``."""
    sums: dict[tuple[str, int], list[float]] = {}
    for split, ep, r in zip(episodes["split"], episodes["episode"], episodes["return"], strict=True):
        sums.setdefault((split, ep), []).append(r)
    for (split, ep), values in sorted(sums.items()):
        writer.add_scalar(f"meta_test/{split}/return", float(np.mean(values)), ep)


# --------------------------------------------------------------------------------------- running
def one_line(text: str, limit: int = 400) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _exit_error(exc: SystemExit) -> dict[str, str]:
    return {
        "type": "SystemExit",
        "message": f"sys.exit({exc.code!r}) was called during the run (an agent raises an exception; "
        "it never exits the process)",
        "traceback": traceback.format_exc(),
    }


def error_record(unit: Unit, exc: BaseException, tb: str) -> dict[str, Any]:
    """An error record for ``unit`` that failed with ``exc`` outside :func:`run` (nothing measured)."""
    state = _RunState(unit)
    return state.record({"type": type(exc).__name__, "message": str(exc), "traceback": tb})


def _finite_json(value: Any) -> Any:
    """``value`` with every non-finite float written as a string (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_json(v) for v in value]
    return str(value) if isinstance(value, float) and not math.isfinite(value) else value


def _writable(unit: Unit, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` if it can be written; else an error record that keeps all of it that can be (the
    config, the episodes, the curve, in that order of priority) and says why it is one."""
    try:
        validate_record(record, str(unit.path))
        dumps(record)
        return record
    except (RecordError, ValueError, TypeError) as exc:
        problem = {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}
    empty_curve = {"env_steps": []}
    empty_episodes = {k: [] for k in EPISODE_COLUMNS}
    run_part = {**record["run"], "config": _finite_json(record["run"]["config"])}
    prov = {**record["provenance"], "env_kwargs": _finite_json(record["provenance"]["env_kwargs"])}
    for curve, episodes in (
        (record["meta_train_curve"], record["episodes"]),
        (empty_curve, record["episodes"]),
        (empty_curve, empty_episodes),
    ):
        candidate = {
            **record,
            "status": "error",
            "run": run_part,
            "provenance": prov,
            "meta_train_curve": curve,
            "episodes": episodes,
            "error": record["error"] or problem,  # the run's own error says more, where it has one
        }
        try:
            validate_record(candidate)
            dumps(candidate)
            return candidate
        except (RecordError, ValueError, TypeError):
            continue
    return _RunState(unit).record(problem)


def write_unit_record(unit: Unit, record: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Write a unit's record and return (where, what was written).

    A record that cannot be written as it is becomes an error record keeping what it can. An error
    record never replaces an ok one: with an ok record at ``unit.path`` (a ``--force`` rerun that
    failed) it goes beside it, to :func:`~metabench.records.rerun_error_path`; any record written to
    ``unit.path`` removes that file, being newer.
    """
    record = _writable(unit, record)
    path = unit.path
    if record["status"] != "ok" and _ok_record(path) is not None:
        path = rerun_error_path(path)
    write_record_atomic(path, record)
    if path == unit.path:
        rerun_error_path(path).unlink(missing_ok=True)
    return path, record


def run_unit(unit: Unit, *, return_record: bool = False) -> UnitResult:
    """Run a unit and write its record (an error record if it failed). Never raises for a failed run;
    a record that cannot be written (the disk filled up, the folder went away) gives a result with
    status ``"error"`` and an empty ``path``."""
    record = run(unit)
    try:
        path, record = write_unit_record(unit, record)
    except OSError as exc:
        message = one_line(f"cannot write its record to {unit.path}: {exc.strerror or exc}")
        return UnitResult(unit, "", "error", message)
    return result_of(unit, record, return_record=return_record, path=path)


def result_of(
    unit: Unit, record: dict[str, Any], *, return_record: bool = False, path: str | Path | None = None
) -> UnitResult:
    path = str(unit.path if path is None else path)
    keep = record if return_record else None
    if record["status"] == "ok":
        return UnitResult(unit, path, "ok", record=keep)
    err = record["error"]
    return UnitResult(unit, path, "error", one_line(f"{err['type']}: {err['message']}"), keep)


def run_units(
    units: Iterable[Unit], *, on_result: Callable[[UnitResult], None] | None = None
) -> list[UnitResult]:
    """Run units one after the other in this process (``--workers 1``; Ray is not imported)."""
    results = []
    for unit in units:
        result = run_unit(unit)
        if on_result is not None:
            on_result(result)
        results.append(result)
    return results


def prepare_units(
    agent_spec: str,
    env_ids: Sequence[str],
    tier: str,
    seeds: Sequence[int],
    out_dir: str | Path,
    *,
    config_toml: Mapping[str, Any] | None = None,
    config_overrides: Mapping[str, str] | None = None,
    wall_clock_s: float | None = None,
    tensorboard: str | None = None,
    progress: bool = False,
    isolate: bool = False,
) -> list[Unit]:
    """Check everything that can be checked before running (agent file and ``make_agent``, config keys,
    tier, env ids and their budgets) and return the units, one per (env id, seed). ``isolate`` runs
    their envs in a separate process (:mod:`metabench.isolation`).

    Raises :class:`~metabench.protocol.AgentError`, :class:`~metabench.tasks.TaskError` or
    :class:`UsageError` with a message naming the problem and the valid choices.
    """
    check_tier(tier)
    if not seeds:
        raise UsageError("no seeds given")
    if not env_ids:
        raise UsageError("no env id given: pass --env ID (see `metabench list`)")
    path = resolve_agent_path(agent_spec)
    module = load_agent_module(agent_spec)  # as given, so that errors name what the user typed
    for env_id in env_ids:
        env_class(env_id)
        tier_budget(env_id, tier)
        build_config(module, tier, config_toml, config_overrides, env_id)
    return [
        Unit(
            agent_spec=agent_spec,
            env_id=env_id,
            tier=tier,
            seed=int(seed),
            out_dir=str(out_dir),
            agent_path=path,
            config_toml=dict(config_toml or {}),
            config_overrides=dict(config_overrides or {}),
            wall_clock_s=wall_clock_s,
            tensorboard=None if tensorboard is None else str(Path(tensorboard).expanduser().resolve()),
            progress=progress,
            isolate=isolate,
        )
        for env_id in dict.fromkeys(env_ids)
        for seed in seeds
    ]


__all__ = [
    "MAX_UNITS",
    "TRAIN_SAMPLE",
    "TRAIN_SAMPLE_SEED",
    "ActionCheck",
    "AgentError",
    "BudgetExceeded",
    "BudgetedEnv",
    "CurveLogger",
    "EnvFactory",
    "InvalidAction",
    "LogProgress",
    "RunError",
    "StepCounter",
    "TaskError",
    "Unit",
    "UnitResult",
    "UsageError",
    "agent_name",
    "check_unit_count",
    "episode_seed",
    "existing_ok",
    "identity_clash",
    "meta_test_groups",
    "parse_seeds",
    "prepare_units",
    "run",
    "run_unit",
    "run_units",
    "stale_note",
    "train_sample",
    "unit_budget",
    "validate_action",
    "write_unit_record",
]
