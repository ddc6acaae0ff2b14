"""Explicit-context baseline (the oracle): the no-context learner, given the task.

``oracle = True`` tells the harness to wrap this agent's envs, at meta-training and meta-test alike,
in :class:`metabench.wrappers.ExplicitContext`, which appends the acting task's parameters
(normalised to [-1, 1]) to the observation. Everything else, the SB3 learner (SAC for Box actions, PPO
for Discrete), its config, save and load, is :mod:`metabench.agents.no_context`'s, and its tier
settings are the same values, so the two baselines differ in one thing only: whether the policy sees
the task. It is the upper reference of every family's normalised score (``metabench.references``),
and the leaderboard marks it as an oracle.
"""

from __future__ import annotations

from typing import ClassVar

from metabench.agents.no_context import Config, NoContextAgent

__all__ = ["Config", "ExplicitContextAgent", "make_agent"]

# Tier settings: agents/hyperparams/explicit_context.toml, the same as no_context.toml.


class ExplicitContextAgent(NoContextAgent):
    """A :class:`NoContextAgent` that declares itself an oracle: its observations carry the task."""

    oracle: ClassVar[bool] = True


def make_agent(config: Config) -> ExplicitContextAgent:
    return ExplicitContextAgent(config)
