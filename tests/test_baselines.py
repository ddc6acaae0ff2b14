"""The baseline agents: budgets kept, save/load round trips, oracle flag, learnability (slow)."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import metabench
from metabench.agents import explicit_context, no_context, random_agent
from metabench.protocol import Budget, MetaAgent, build_config
from metabench.wrappers import ExplicitContext

ENV = "metabench/PointNav-v0"
AGENTS = Path(__file__).resolve().parents[1] / "agents"


class Curve:
    def __init__(self) -> None:
        self.points: list[tuple[int, dict[str, float]]] = []

    def log(self, env_steps: int, **scalars: float) -> None:
        self.points.append((env_steps, scalars))


class Counting(gym.Wrapper):
    """Counts every step of every env a factory makes (the harness's StepCounter, in small)."""

    def __init__(self, env: gym.Env, counter: list[int]):
        super().__init__(env)
        self.counter = counter

    def step(self, action):
        self.counter[0] += 1
        return super().step(action)


def factory(env_id: str, counter: list[int], oracle: bool = False):
    def make() -> gym.Env:
        env: gym.Env = Counting(gym.make(env_id), counter)
        return ExplicitContext(env) if oracle else env

    return make


def observations(env_id: str, oracle: bool, n: int = 20) -> list[np.ndarray]:
    env = ExplicitContext(gym.make(env_id)) if oracle else gym.make(env_id)
    task = metabench.tasks(env_id, "test")[0] if env_id.startswith("metabench/") else None
    obs, _ = env.reset(seed=3, options={"task": task} if task else None)
    out = [obs]
    env.action_space.seed(3)
    for _ in range(n - 1):
        obs, _, term, trunc, _ = env.step(env.action_space.sample())
        out.append(obs)
        if term or trunc:
            obs, _ = env.reset()
    return out


def train(module, env_id: str, steps: int, **overrides) -> tuple[MetaAgent, int, Curve]:
    config = build_config(module, "smoke", overrides={k: str(v) for k, v in overrides.items()})
    agent = module.make_agent(config)
    counter, curve = [0], Curve()
    tasks = metabench.tasks(env_id, "train") if env_id.startswith("metabench/") else []
    agent.meta_train(factory(env_id, counter, agent.oracle), tasks, Budget(steps), seed=0, log=curve)
    return agent, counter[0], curve


def test_random_agent_is_seeded_and_acts_the_same_after_load(tmp_path: Path):
    a, used, _ = train(random_agent, ENV, 100)
    b, _, _ = train(random_agent, ENV, 100)
    assert used == 0 and not a.oracle
    a.save(tmp_path / "random")
    loaded = random_agent.RandomAgent.load(tmp_path / "random")
    obs = observations(ENV, False)
    first = [a.act(o, explore=True) for o in obs]
    assert all(
        np.array_equal(x, y) for x, y in zip(first, [b.act(o, explore=True) for o in obs], strict=True)
    )
    assert all(
        np.array_equal(x, y) for x, y in zip(first, [loaded.act(o, explore=True) for o in obs], strict=True)
    )
    assert len({x.tobytes() for x in first}) == len(first)  # really random
    assert all(a.action_space.contains(x) for x in first)


@pytest.mark.parametrize("module", [no_context, explicit_context], ids=["no_context", "explicit_context"])
def test_sac_baselines_keep_the_budget_and_round_trip(module, tmp_path: Path):
    # 303 steps with train_freq 4: SAC may only take 300 (it collects 4 at a time).
    agent, used, curve = train(module, ENV, 303, train_freq=4, learning_starts=50, log_every=100)
    assert agent.algo == "sac" and 0 < used <= 303 and used == 300
    assert [s for s, _ in curve.points] == [100, 200, 300]
    assert agent.oracle is (module is explicit_context)
    agent.save(tmp_path / "agent")
    loaded = type(agent).load(tmp_path / "agent")
    assert type(loaded) is type(agent) and loaded.oracle is agent.oracle
    obs = observations(ENV, agent.oracle)
    for explore in (True, False):
        a = [agent.act(o, explore=explore) for o in obs]
        b = [loaded.act(o, explore=explore) for o in obs]
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert all(agent.model.action_space.contains(np.asarray(x, dtype=np.float32)) for x in a)
    # the fast act path is model.predict's deterministic action
    assert np.allclose(a[5], agent.model.predict(obs[5], deterministic=True)[0])


def test_ppo_for_discrete_actions_keeps_the_budget_and_round_trips(tmp_path: Path):
    agent, used, _ = train(no_context, "CartPole-v1", 300, n_steps=128, batch_size=64, n_epochs=1)
    assert agent.algo == "ppo" and used == 256  # two rollouts of 128; a third would overrun
    agent.save(tmp_path / "ppo")
    loaded = no_context.NoContextAgent.load(tmp_path / "ppo")
    obs = observations("CartPole-v1", False)
    assert [int(agent.act(o, explore=True)) for o in obs] == [int(loaded.act(o, explore=True)) for o in obs]


def test_ppo_on_box_actions_clips_as_sb3_predict_does():
    """SB3's ``predict`` clips PPO's (unbounded Gaussian) Box actions to the bounds; ``act`` must too."""
    import torch

    agent, _, _ = train(no_context, ENV, 128, algo="ppo", n_steps=64, batch_size=64, n_epochs=1)
    with torch.no_grad():  # push the mean far outside the bounds, as an untrained policy may
        agent.model.policy.action_net.bias.fill_(5.0)
    space = agent.model.action_space
    for obs in observations(ENV, False):
        action = agent.act(obs, explore=False)
        assert space.contains(np.asarray(action, dtype=space.dtype))
        assert np.array_equal(action, agent.model.predict(obs, deterministic=True)[0])
        assert np.array_equal(action, space.high)


def test_bad_algo_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match="auto, sac, ppo"):
        no_context.choose_algo(no_context.Config(algo="dqn"), gym.spaces.Discrete(2))


def test_baselines_run_through_the_harness(tmp_path: Path):
    from metabench.harness import Unit, run_unit

    result = run_unit(
        Unit(
            agent_spec=str(AGENTS / "explicit_context.py"),
            env_id=ENV,
            tier="smoke",
            seed=0,
            out_dir=str(tmp_path),
            config_overrides={"total_timesteps": "200"},
        ),
        return_record=True,
    )
    assert result.status == "ok", result.message
    record = result.record
    assert record["run"]["oracle"] is True and record["run"]["agent"] == "explicit_context"
    assert record["provenance"]["env_steps_used"] == 200
    assert set(record["episodes"]["split"]) == {"test", "test-ood", "train-sample"}


@pytest.mark.slow
def test_oracle_beats_no_context_beats_random_on_point_nav_at_ci(tmp_path: Path):
    """At the ci tier (2 seeds each): final-return IQM CIs of oracle > no-context > random, apart."""
    from metabench import leaderboard
    from metabench.harness import Unit, run_unit

    for name in ("random_agent", "no_context", "explicit_context"):
        for seed in (0, 1):
            result = run_unit(
                Unit(
                    agent_spec=str(AGENTS / f"{name}.py"),
                    env_id=ENV,
                    tier="ci",
                    seed=seed,
                    out_dir=str(tmp_path),
                )
            )
            assert result.status == "ok", result.message
    families = leaderboard.group_runs(leaderboard.read_records(tmp_path))
    agents = {key[0]: a for key, a in families[0].agents.items()}
    est = {name: leaderboard.aggregate(a.runs, "test", "final", None) for name, a in agents.items()}
    assert est["explicit_context"].lo > est["no_context"].hi, est
    assert est["no_context"].lo > est["random_agent"].hi, est


def test_the_two_baselines_share_their_tier_settings():
    """explicit_context differs from no_context only in seeing the task: its hyperparameter file holds
    the same values (agents/hyperparams/{no_context,explicit_context}.toml)."""
    from metabench.protocol import load_hyperparams

    assert load_hyperparams(explicit_context) == load_hyperparams(no_context) != {}
