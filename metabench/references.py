"""Reference scores that normalise each family's returns: random and oracle, per tier.

A family's normalised score is ``(return - random) / (oracle - random)``: 0 is the random agent
(``agents/random_agent.py``), 1 the explicit-context oracle (``agents/explicit_context.py``, which sees
the task), both meta-trained with the tier's budget. The score of a task is computed from its final
return (the mean return of the evaluation episodes) and the same two numbers serve every split, so the
``test-ood`` and ``train-sample`` scores show generalisation gaps on the test split's scale.

Every number below was MEASURED with the harness, not chosen: the mean over seeds 0-4 and over the
tasks of the ``test`` split of the final return, as printed by ``python -m metabench.references
RECORDS_DIR`` after::

    metabench evaluate agents/random_agent.py     --env ID --tier TIER --seeds 0-4 --out DIR
    metabench evaluate agents/explicit_context.py --env ID --tier TIER --seeds 0-4 --out DIR

Change them only by measuring again (and say when, as below). A family and tier without an entry has
no normalised score: its table shows returns only and the overall table leaves it out.

Transfer suites (:mod:`metabench.suites`) are normalised per test env: 0 is the random agent and 1 the
from-scratch reference learner (``agents/from_scratch.py``, SB3's TD3) given the same ``adapt_steps``
on that env, so a learned objective above 1 trained a fresh agent better than TD3's hand-designed one.
:data:`SUITE_REFERENCES` holds them (the mean over seeds 0-4 of the final return, printed by the same
command), keyed by the test env's index in the suite's test split.

Families whose optimum is computable from the true task use exact values instead, the same at every
tier: Bandit-v0 (random = mean arm, oracle = best arm) and TabularMDP-v0 (random policy evaluated
exactly, oracle = finite-horizon value iteration), from the env classes' ``TEST_SPLIT_REFERENCES``. A
learned oracle is a poor yardstick there: at the ci budget the explicit-context PPO scored 9.75 on
TabularMDP, below the random agent's 9.94 (measured 2026-11-21, leaderboards/ci/records), while the
exact optimum is 21.80.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import numpy as np

#: The agents (file stems) whose returns define 0 and 1.
RANDOM_AGENT = "random_agent"
ORACLE_AGENT = "explicit_context"
#: On transfer suites, the reference learner that defines 1.
FROM_SCRATCH_AGENT = "from_scratch"


@dataclasses.dataclass(frozen=True)
class Reference:
    """Mean final return on the test split of the random agent and of the oracle, at one tier."""

    random: float
    oracle: float
    measured: str = ""

    def __post_init__(self) -> None:
        if not self.oracle > self.random:
            raise ValueError(f"a reference needs oracle > random, got {self}")

    def normalise(self, value: float | np.ndarray) -> float | np.ndarray:
        return (value - self.random) / (self.oracle - self.random)


REFERENCES: Mapping[str, Mapping[str, Reference]] = MappingProxyType(
    {
        "metabench/PointNav-v0": MappingProxyType(
            {
                # 2026-11-21, seeds 0-4, budget 2 000 env steps, the first 5 test tasks (the smoke tier
                # meta-tests 5 tasks per split): the oracle barely learns at this tier, so smoke scores
                # are noisy; the tier is for tests and `make demo`, not for ranking.
                "smoke": Reference(
                    random=-20.8633,
                    oracle=-19.0562,
                    measured="2026-11-21: metabench evaluate agents/{random_agent,explicit_context}.py "
                    "--env metabench/PointNav-v0 --tier smoke --seeds 0-4",
                ),
                # 2026-11-21, seeds 0-4, budget 100 000 env steps: the records in leaderboards/ci/records.
                "ci": Reference(
                    random=-20.5440,
                    oracle=-4.5211,
                    measured="2026-11-21: metabench evaluate agents/{random_agent,explicit_context}.py "
                    "--env metabench/PointNav-v0 --tier ci --seeds 0-4 --out leaderboards/ci/records",
                ),
            }
        ),
        "metabench/PointNavNonStationary-v0": MappingProxyType(
            {
                # 2026-11-30, seeds 0-4, budget 2 000 env steps, the first 5 test tasks, 3 evaluation
                # episodes each: as on PointNav, the oracle barely learns at this tier. No ci entry yet:
                # the oracle's ci runs (200 000 steps, 5 seeds) are still to be made.
                "smoke": Reference(
                    random=-109.0969,
                    oracle=-87.9629,
                    measured="2026-11-30: metabench evaluate agents/{random_agent,explicit_context}.py "
                    "--env metabench/PointNavNonStationary-v0 --tier smoke --seeds 0-4",
                ),
            }
        ),
    }
)


@dataclasses.dataclass(frozen=True)
class SuiteReference:
    """A transfer suite's references at one tier: one :class:`Reference` per test env (its index in the
    suite's test split), ``oracle`` being the from-scratch learner."""

    per_task: Mapping[int, Reference]

    def for_task(self, index: int) -> Reference | None:
        return self.per_task.get(int(index))


SUITE_REFERENCES: Mapping[str, Mapping[str, SuiteReference]] = MappingProxyType(
    {
        "suite/PendulumReacher-v0": MappingProxyType(
            {
                # 2026-12-07, seeds 0-4, 10 000 adaptation steps on InvertedPendulum-v5 (test env 0),
                # 5 evaluation episodes each: the records in leaderboards/ci/records.
                "ci": SuiteReference(
                    per_task=MappingProxyType(
                        {
                            0: Reference(
                                random=4.64,
                                oracle=72.24,
                                measured="2026-12-07: metabench evaluate "
                                "agents/{random_agent,from_scratch}.py --suite suite/PendulumReacher-v0 "
                                "--tier ci --seeds 0-4 --out leaderboards/ci/records",
                            )
                        }
                    )
                ),
            }
        ),
    }
)


def _exact(entry_point: str, what: str) -> Mapping[str, Reference]:
    """The same exact reference at every tier, from an env class's ``TEST_SPLIT_REFERENCES``."""
    from gymnasium.envs.registration import load_env_creator

    values = load_env_creator(entry_point).TEST_SPLIT_REFERENCES
    ref = Reference(random=values["random"], oracle=values["oracle"], measured=f"exact: {what}")
    return MappingProxyType(dict.fromkeys(("smoke", "ci", "standard"), ref))


EXACT: Mapping[str, str] = MappingProxyType(
    {
        "metabench/Bandit-v0": "metabench.envs.bandit:BanditEnv",
        "metabench/TabularMDP-v0": "metabench.envs.tabular_mdp:TabularMDPEnv",
    }
)


def get_reference(env_id: str, tier: str) -> Reference | SuiteReference | None:
    """The reference of ``env_id`` (or transfer suite) at ``tier``, or ``None`` where none was measured."""
    if env_id.startswith("suite/"):
        return SUITE_REFERENCES.get(env_id, {}).get(tier)
    if env_id in EXACT:
        return _exact(EXACT[env_id], "the env class's TEST_SPLIT_REFERENCES").get(tier)
    return REFERENCES.get(env_id, {}).get(tier)


def measure(records_dir: str | Path) -> dict[tuple[str, str], dict[str, float]]:
    """From a records directory, the mean test-split final return of the random and oracle agents per
    (env id, tier): the numbers to write into :data:`REFERENCES`."""
    from metabench.records import load_records

    sums: dict[tuple[str, str], dict[str, list[float]]] = {}
    for _, record in load_records(records_dir):
        run = record["run"]
        if record["status"] != "ok" or run["agent"] not in (RANDOM_AGENT, ORACLE_AGENT):
            continue
        if run["env_id"].startswith("suite/"):
            continue  # measure_suites
        eps = record["episodes"]
        finals: dict[int, list[float]] = {}
        for split, task, phase, ret in zip(
            eps["split"], eps["task_index"], eps["phase"], eps["return"], strict=True
        ):
            if split == "test" and phase == "eval":
                finals.setdefault(task, []).append(ret)
        per_task = [float(np.mean(v)) for v in finals.values()]
        sums.setdefault((run["env_id"], run["tier"]), {}).setdefault(run["agent"], []).extend(per_task)
    return {key: {agent: float(np.mean(v)) for agent, v in d.items()} for key, d in sorted(sums.items())}


def measure_suites(records_dir: str | Path) -> dict[tuple[str, str, int], dict[str, float]]:
    """From a records directory, per (suite, tier, test env index) the mean final return of the random
    and from-scratch agents: the numbers to write into :data:`SUITE_REFERENCES`."""
    from metabench.records import load_records

    sums: dict[tuple[str, str, int], dict[str, list[float]]] = {}
    for _, record in load_records(records_dir):
        run = record["run"]
        if record["status"] != "ok" or not run["env_id"].startswith("suite/"):
            continue
        if run["agent"] not in (RANDOM_AGENT, FROM_SCRATCH_AGENT):
            continue
        eps = record["episodes"]
        finals: dict[int, list[float]] = {}
        for task, phase, ret in zip(eps["task_index"], eps["phase"], eps["return"], strict=True):
            if phase == "eval":
                finals.setdefault(task, []).append(ret)
        for task, values in finals.items():
            key = (run["env_id"], run["tier"], task)
            sums.setdefault(key, {}).setdefault(run["agent"], []).append(float(np.mean(values)))
    return {key: {agent: float(np.mean(v)) for agent, v in d.items()} for key, d in sorted(sums.items())}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m metabench.references RECORDS_DIR", file=sys.stderr)
        return 2
    for (env_id, tier), values in measure(args[0]).items():
        print(f"{env_id} {tier}: " + ", ".join(f"{a}={v:.4f}" for a, v in sorted(values.items())))
    for (suite, tier, task), values in measure_suites(args[0]).items():
        print(
            f"{suite} {tier} test env {task}: " + ", ".join(f"{a}={v:.4f}" for a, v in sorted(values.items()))
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
