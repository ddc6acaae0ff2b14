"""Transfer suites: frozen tuples of Gymnasium ids to meta-train on (``train``) and meta-test on (``test``).

A task family is one env with fixed spaces; a learned objective (MetaGenRL) is tested by training a
*fresh* agent with it on envs never seen in meta-training, with other observation and action spaces.
A :class:`Suite` names such an experiment. Its tasks are :class:`~metabench.tasks.Task` values with
``family`` = the suite's name and ``params = {"env": "<gymnasium id>"}``, frozen and hashed like a
family's splits: the sha256 of each split's canonical JSON is written below, and :func:`suite_tasks`
refuses a suite whose tasks no longer hash to it (a changed suite needs a new ``-vN`` name).

A suite also carries, per tier, the meta-training budget (env steps over every env the agent makes,
the whole population for MetaGenRL), ``adapt_steps`` (env steps a fresh learner gets on each test env)
and ``n_eval`` (evaluation episodes after them). :mod:`metabench.suite_harness` runs them;
``metabench list`` lists them.

Suites:

* ``suite/MetaGenRL-CheetahLunar-v0``: MetaGenRL's main experiment (Kirsch et al. 2019, Table 1):
  meta-train on HalfCheetah and LunarLanderContinuous, meta-test on Hopper (held out) and on the two
  training envs themselves. Standard budget: 20 agents x 700k steps; 700k steps per test env.
* ``suite/MetaGenRL-LunarHopper-v0``: the paper's other split: meta-train on LunarLanderContinuous
  and Hopper, meta-test on HalfCheetah (held out).
* ``suite/PendulumReacher-v0``: the ci suite, cheap envs: meta-train on Pendulum (1 action) and
  Reacher (2 actions), meta-test on InvertedPendulum (held out; another observation space and action
  bound). Its ci budgets fit one (agent, suite, seed) unit in 30 minutes on one core.

The MuJoCo envs are Gymnasium's ``-v5``; LunarLanderContinuous-v3 needs ``gymnasium[box2d]`` (the
``box2d`` extra of metabench, installed by ``make install``).

Version history: ``-v0``: first versions.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
from collections.abc import Mapping
from types import MappingProxyType

from metabench.tasks import SplitChangedError, Task, TaskError, canonical_json

#: Prefix of every suite name: suite names stand where env ids stand (records, tables), and the
#: prefix keeps the two apart.
PREFIX = "suite/"
SPLITS: tuple[str, ...] = ("train", "test")


@dataclasses.dataclass(frozen=True)
class Suite:
    """A transfer suite: Gymnasium ids to meta-train and meta-test on, and its tier settings.

    Attributes:
        name: ``"suite/<Name>-v<N>"``.
        train: Gymnasium ids of meta-training (``make_env(task)`` makes one of them).
        test: Gymnasium ids of meta-testing (a fresh learner on each); may repeat train ids.
        budgets: tier -> meta-training env steps (over every env the agent makes).
        adapt_steps: tier -> env steps of learning a fresh learner gets on each test env.
        n_eval: tier -> evaluation episodes after the adaptation steps.
        split_hashes: split -> sha256 of the split's canonical JSON (checked by :func:`suite_tasks`).
        doc: one line for ``metabench list``.
    """

    name: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    budgets: Mapping[str, int]
    adapt_steps: Mapping[str, int]
    n_eval: Mapping[str, int]
    split_hashes: Mapping[str, str]
    doc: str = ""

    def ids(self, split: str) -> tuple[str, ...]:
        if split not in SPLITS:
            raise TaskError(
                f"unknown split {split!r} for suite {self.name}; valid splits: {', '.join(SPLITS)}"
            )
        return self.train if split == "train" else self.test

    def build_tasks(self, split: str) -> tuple[Task, ...]:
        """The split's tasks, built (not checked against :attr:`split_hashes`)."""
        return tuple(Task(self.name, split, i, {"env": env}) for i, env in enumerate(self.ids(split)))


def _tiers(smoke: int, ci: int, standard: int) -> Mapping[str, int]:
    return MappingProxyType({"smoke": smoke, "ci": ci, "standard": standard})


_ALL: tuple[Suite, ...] = (
    Suite(
        name="suite/MetaGenRL-CheetahLunar-v0",
        train=("HalfCheetah-v5", "LunarLanderContinuous-v3"),
        test=("Hopper-v5", "HalfCheetah-v5", "LunarLanderContinuous-v3"),
        # MetaGenRL: 20 agents (10 per env) x 700k steps each; meta-test trains for 700k steps.
        budgets=_tiers(2_000, 200_000, 14_000_000),
        adapt_steps=_tiers(1_000, 50_000, 700_000),
        n_eval=_tiers(1, 5, 10),
        split_hashes=MappingProxyType(
            {
                "train": "50a39464b828f8ad4f7771478d45bb877b979df0a2acdbbce7e5eb931224eb1d",
                "test": "6824a1ed42f1927c8dd11a806bc8890506a14266d3f453ea7553ad22b78f63e5",
            }
        ),
        doc="MetaGenRL: meta-train HalfCheetah + LunarLanderContinuous, test Hopper and both",
    ),
    Suite(
        name="suite/MetaGenRL-LunarHopper-v0",
        train=("LunarLanderContinuous-v3", "Hopper-v5"),
        test=("HalfCheetah-v5",),
        budgets=_tiers(2_000, 200_000, 14_000_000),
        adapt_steps=_tiers(1_000, 50_000, 700_000),
        n_eval=_tiers(1, 5, 10),
        split_hashes=MappingProxyType(
            {
                "train": "c56aaa8720ab4adf187cbf3700b8a79260b614719305cd2daff2b66586fce5a7",
                "test": "3c12ca610611a33d32d02741a4ae5bd8bff48065a787fdcae8920271c7ba2a16",
            }
        ),
        doc="MetaGenRL: meta-train LunarLanderContinuous + Hopper, test HalfCheetah",
    ),
    Suite(
        name="suite/PendulumReacher-v0",
        train=("Pendulum-v1", "Reacher-v5"),
        test=("InvertedPendulum-v5",),
        # ci: 2 agents x 10k steps; a fresh learner gets 10k steps (1k of them random) on InvertedPendulum
        budgets=_tiers(400, 20_000, 1_000_000),
        adapt_steps=_tiers(300, 10_000, 100_000),
        n_eval=_tiers(1, 5, 10),
        split_hashes=MappingProxyType(
            {
                "train": "e73a9332f39cf2a611528b78fd858953454cb2a6fe0923b02fd6595dce66c029",
                "test": "487237a133c8e7100ebf48212eccffa8551c3ee588ccdeed69855edc368837c6",
            }
        ),
        doc="ci: meta-train Pendulum + Reacher, test InvertedPendulum (held out)",
    ),
)

SUITES: Mapping[str, Suite] = MappingProxyType({s.name: s for s in _ALL})


def is_suite(name: str) -> bool:
    """Whether ``name`` names a transfer suite (rather than an env id)."""
    return str(name).startswith(PREFIX)


def suite_names() -> list[str]:
    return sorted(SUITES)


def get_suite(name: str) -> Suite:
    """The suite called ``name``; :class:`TaskError` naming the valid ones otherwise."""
    found = SUITES.get(name)
    if found is None:
        close = difflib.get_close_matches(name, list(SUITES), n=2)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise TaskError(f"unknown suite {name!r}.{hint} Valid suites: {', '.join(suite_names())}")
    return found


def split_digest(split: tuple[Task, ...]) -> str:
    return hashlib.sha256(canonical_json([t.to_dict() for t in split]).encode()).hexdigest()


def suite_tasks(name: str, split: str) -> tuple[Task, ...]:
    """The frozen tasks of a suite's split (``"train"`` or ``"test"``), checked against its hash."""
    s = get_suite(name)
    built = s.build_tasks(split)
    digest = split_digest(built)
    if s.split_hashes.get(split) != digest:
        raise SplitChangedError(
            f"split {split!r} of {name} hashes to {digest}, but the code expects "
            f"{s.split_hashes.get(split)}. A changed suite needs a new version (-vN)."
        )
    return built


def suite_split_hash(name: str, split: str) -> str:
    return split_digest(suite_tasks(name, split))


def compute_suite_hashes(name: str) -> dict[str, str]:
    """Hashes of a suite's freshly built splits, unchecked: for writing a new suite's hashes."""
    s = get_suite(name)
    return {split: split_digest(s.build_tasks(split)) for split in SPLITS}


def env_of(task: Task) -> str:
    """The Gymnasium id of a suite task (:class:`TaskError` for a task that is not one)."""
    env = task.params.get("env")
    if not isinstance(env, str) or not is_suite(task.family):
        raise TaskError(f"{task.family} task {task.index} is not a transfer-suite task (no 'env' id)")
    return env


def is_suite_task(task: Task) -> bool:
    return is_suite(task.family) and isinstance(task.params.get("env"), str)
