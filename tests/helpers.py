"""What the agent tests share: the harness's own ``make_env`` and a logger that keeps its rows."""

from __future__ import annotations

from metabench.harness import EnvFactory, StepCounter
from metabench.protocol import Budget


class RecordingLogger:
    """A :class:`metabench.protocol.Logger` that keeps every ``log`` call as ``(env_steps, scalars)``."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, dict[str, float]]] = []

    def log(self, env_steps: int, **scalars: float) -> None:
        self.rows.append((env_steps, scalars))


def budgeted_env_factory(env_id: str, budget: int, *, oracle: bool = False) -> EnvFactory:
    """The ``make_env`` the harness hands to ``meta_train``: envs counted on one StepCounter that
    raises past ``budget`` (``factory.counter.steps`` is what was used)."""
    return EnvFactory(env_id, oracle, StepCounter(Budget(budget), "smoke"))
