"""PEARL (agents/pearl.py): posterior maths, the meta-test protocol, budget, save/load, learnability."""

from __future__ import annotations

import dataclasses
import os
import time

import gymnasium as gym
import numpy as np
import pytest
import torch

import metabench
from metabench.agents import pearl
from metabench.harness import EnvFactory, StepCounter
from metabench.protocol import Budget, Transition, build_config
from metabench.tasks import env_class, metabench_ids

from .helpers import RecordingLogger, budgeted_env_factory

ENV_ID = "metabench/PointNav-v0"
DISCRETE_ENV_ID = "metabench/Bandit-v0"


def harness_env_factory(budget: int, env_id: str = ENV_ID) -> tuple[EnvFactory, StepCounter]:
    """The harness's own ``make_env``: budgeted, train tasks only, task info hidden."""
    factory = budgeted_env_factory(env_id, budget)
    return factory, factory.counter


def smoke_config(**overrides) -> pearl.Config:
    config = build_config(pearl, "smoke")
    return dataclasses.replace(config, **overrides)


def train_smoke(
    seed: int = 0, budget: int = 2_000, env_id: str = ENV_ID, **overrides
) -> tuple[pearl.PEARLAgent, StepCounter, RecordingLogger]:
    agent = pearl.make_agent(smoke_config(**overrides))
    (factory, counter), log = harness_env_factory(budget, env_id), RecordingLogger()
    agent.meta_train(factory, metabench.tasks(env_id, "train"), Budget(budget), seed=seed, log=log)
    counter.close()  # raises if the agent stepped past the budget and swallowed the error
    return agent, counter, log


@pytest.fixture(scope="module")
def smoke_agent() -> pearl.PEARLAgent:
    return train_smoke()[0]


@pytest.fixture(scope="module")
def discrete_agent() -> pearl.PEARLAgent:
    return train_smoke(env_id=DISCRETE_ENV_ID, budget=1_000)[0]


def run_trial(
    agent, task, n_adapt: int = 2, n_eval: int = 1, seed: int = 0, env_id: str = ENV_ID
) -> tuple[list[float], list[np.ndarray]]:
    """The harness's trial loop: returns per-episode returns and every action taken."""
    env = gym.make(env_id)
    returns, actions = [], []
    agent.begin_trial()
    for episode in range(n_adapt + n_eval):
        obs, _ = env.reset(seed=seed + episode, options={"task": task})
        done, ret = False, 0.0
        while not done:
            action = agent.act(obs, explore=episode < n_adapt)
            actions.append(np.array(action))
            next_obs, reward, terminated, truncated, _ = env.step(action)
            agent.observe(Transition(obs, action, float(reward), next_obs, terminated, truncated, {}))
            ret += float(reward)
            obs, done = next_obs, terminated or truncated
        agent.end_episode()
        returns.append(ret)
    return returns, actions


# ---------------------------------------------------------------------------------- the maths
def test_product_of_gaussians_matches_closed_form() -> None:
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(3, 7, 4))
    var = rng.uniform(0.1, 2.0, size=(3, 7, 4))
    got_mu, got_var = pearl.product_of_gaussians(torch.tensor(mu), torch.tensor(var))
    # two factors: the textbook formula
    m1, m2, v1, v2 = mu[:, 0], mu[:, 1], var[:, 0], var[:, 1]
    two_mu, two_var = pearl.product_of_gaussians(torch.tensor(mu[:, :2]), torch.tensor(var[:, :2]))
    np.testing.assert_allclose(two_var.numpy(), v1 * v2 / (v1 + v2), rtol=1e-12)
    np.testing.assert_allclose(two_mu.numpy(), (m1 * v2 + m2 * v1) / (v1 + v2), rtol=1e-12)
    # N factors: precision-weighted, and checked against the normalised product of densities on a grid
    np.testing.assert_allclose(got_var.numpy(), 1.0 / (1.0 / var).sum(1), rtol=1e-12)
    x = np.linspace(-6, 6, 200_001)
    logp = sum(-0.5 * (x - mu[0, n, 0]) ** 2 / var[0, n, 0] for n in range(7))
    p = np.exp(logp - logp.max())
    p /= p.sum()
    grid_mean = (x * p).sum()
    grid_var = ((x - grid_mean) ** 2 * p).sum()
    assert grid_mean == pytest.approx(float(got_mu[0, 0]), abs=1e-6)
    assert grid_var == pytest.approx(float(got_var[0, 0]), rel=1e-4)


def test_encoder_is_permutation_invariant_and_kl_matches_torch() -> None:
    gen = torch.Generator().manual_seed(0)
    enc = pearl.ContextEncoder(5, (16, 16), 3, ib=True, generator=gen)
    ctx = torch.randn(2, 9, 5, generator=gen)
    mu, var = enc(ctx)
    mu_p, var_p = enc(ctx[:, torch.randperm(9, generator=gen)])
    torch.testing.assert_close(mu, mu_p)
    torch.testing.assert_close(var, var_p)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, var.sqrt()), torch.distributions.Normal(0.0, 1.0)
    ).sum()
    torch.testing.assert_close(pearl.gaussian_kl_to_standard(mu, var), ref)


# ------------------------------------------------------------------------------ meta-training
def test_smoke_meta_train_stays_within_budget_and_logs() -> None:
    for budget in (2_000, 700):  # the second is smaller than the initial collection over 80 tasks
        agent, counter, log = train_smoke(budget=budget)
        assert 0 < counter.steps <= budget
        assert agent.stats["env_steps"] == counter.steps
        assert log.rows and all(0 < steps <= budget for steps, _ in log.rows)


def test_meta_train_is_reproducible_under_its_seed() -> None:
    task = metabench.tasks(ENV_ID, "test")[0]
    a = run_trial(train_smoke(seed=3, budget=600)[0], task)[1]
    b = run_trial(train_smoke(seed=3, budget=600)[0], task)[1]
    c = run_trial(train_smoke(seed=4, budget=600)[0], task)[1]
    np.testing.assert_array_equal(np.array(a), np.array(b))
    assert not np.array_equal(np.array(a), np.array(c))


def test_without_an_iteration_cap_the_budget_is_spent() -> None:
    """``num_iterations=None`` (the ci tier) iterates until the budget cannot take another episode."""
    budget = 2_500
    _, counter, _ = train_smoke(budget=budget, num_iterations=None)
    assert budget - 20 < counter.steps <= budget  # PointNav's episodes are 20 steps
    assert build_config(pearl, "ci", env_id=ENV_ID).num_iterations is None
    with pytest.raises(ValueError, match="until the budget ends"):
        pearl.make_agent(smoke_config(num_iterations=None, num_tasks_sample=0))


def test_more_exploration_episodes_than_the_familys_n_adapt_are_refused() -> None:
    """PointNavNonStationary meta-tests with n_adapt = 1: PEARL's num_exp_traj_eval=2 would act on
    the prior in every evaluation episode, so meta_train refuses it before stepping any env."""
    env_id = "metabench/PointNavNonStationary-v0"
    agent = pearl.make_agent(smoke_config(num_exp_traj_eval=2))
    factory, counter = harness_env_factory(1_000, env_id)
    with pytest.raises(
        ValueError, match=r"num_exp_traj_eval=2 exceeds .*PointNavNonStationary-v0's n_adapt=1"
    ):
        agent.meta_train(
            factory, metabench.tasks(env_id, "train"), Budget(1_000), seed=0, log=RecordingLogger()
        )
    assert counter.steps == 0


def test_hyperparams_leave_every_family_its_exploration_episodes() -> None:
    """Every tier's config for every registered family (agents/hyperparams/pearl.toml) explores for at
    most the family's n_adapt episodes before inferring the posterior."""
    for env_id in metabench_ids():
        n_adapt = env_class(env_id).n_adapt
        for tier in ("smoke", "ci", "standard"):
            config = build_config(pearl, tier, env_id=env_id)
            assert config.num_exp_traj_eval <= n_adapt, (env_id, tier, config.num_exp_traj_eval, n_adapt)
    assert build_config(pearl, "standard", env_id="metabench/PointNav-v0").reward_scale == 100.0
    assert build_config(pearl, "standard", env_id="metabench/HopperRandParams-v0").use_next_obs_in_context


def _filled_trainer(env_id: str) -> pearl._Trainer:
    """A trainer at the ci tier's sizes whose buffers hold one initial collection per train task."""
    config = build_config(pearl, "ci", env_id=env_id)
    agent, env = pearl.make_agent(config), gym.make(env_id)
    gen = torch.Generator().manual_seed(0)
    agent._build(env.observation_space, env.action_space, gen)
    tasks = list(metabench.tasks(env_id, "train"))
    trainer = pearl._Trainer(
        agent,
        env,
        tasks,
        Budget(10**6),
        np.random.default_rng(0),
        gen,
        env.spec.max_episode_steps,
        0,
        RecordingLogger(),
    )
    for i in range(len(tasks)):
        trainer.collect(i, env.spec.max_episode_steps, None, add_to_enc=True)
    return trainer


@pytest.mark.parametrize("env_id", [ENV_ID, DISCRETE_ENV_ID])
def test_the_encoder_learns_only_from_the_critic_and_kl(env_id: str) -> None:
    """PEARL trains the encoder with the Bellman error and the KL term; the policy and V see z
    detached. Every gradient that reaches an encoder parameter during a gradient step arrives in the
    critic's backward pass (before the critic's optimiser steps), none in the actor's/V's."""
    trainer = _filled_trainer(env_id)
    optimiser_steps: list[str] = []
    arrivals: list[tuple[int, float]] = []
    for name in ("critic_opt", "actor_opt"):
        opt = getattr(trainer, name)
        opt.step = (lambda step, n: lambda *a, **k: (optimiser_steps.append(n), step(*a, **k))[1])(
            opt.step, name
        )
    for p in trainer.agent.encoder.parameters():
        p.register_hook(lambda g: arrivals.append((len(optimiser_steps), float(g.abs().sum()))))
    ready = np.flatnonzero(trainer.rl_buffer.size > 0)
    for n in range(3):
        optimiser_steps.clear()
        arrivals.clear()
        trainer.update(trainer.rng.choice(ready, size=trainer.c.meta_batch))
        assert optimiser_steps == ["critic_opt", "actor_opt"]
        n_params = len(list(trainer.agent.encoder.parameters()))
        assert len(arrivals) == n_params, f"update {n}: {len(arrivals)} gradients for {n_params} parameters"
        assert all(phase == 0 for phase, _ in arrivals), "the actor's or V's loss reached the encoder"
        assert sum(size for _, size in arrivals) > 0


def test_multi_discrete_action_space_is_refused() -> None:
    class MultiDiscreteEnv(gym.Env):
        observation_space = gym.spaces.Box(-1, 1, (2,))
        action_space = gym.spaces.MultiDiscrete([3, 3])

    agent = pearl.make_agent(smoke_config())
    with pytest.raises(TypeError, match="Box or Discrete action space"):
        agent.meta_train(
            MultiDiscreteEnv, metabench.tasks(ENV_ID, "train"), Budget(100), seed=0, log=RecordingLogger()
        )


def test_discrete_actions_are_the_envs_and_round_trip(tmp_path, discrete_agent) -> None:
    """Discrete families (Bandit): categorical policy, Q(s, z) per action, one-hot actions in the
    context; actions are the env's integers, and a loaded agent acts identically."""
    assert discrete_agent.discrete and discrete_agent.act_dim == 5
    assert isinstance(discrete_agent.policy, pearl.CategoricalPolicy)
    space = gym.make(DISCRETE_ENV_ID).action_space
    task = metabench.tasks(DISCRETE_ENV_ID, "test")[0]
    _, actions = run_trial(discrete_agent, task, n_adapt=20, n_eval=5, env_id=DISCRETE_ENV_ID)
    assert all(space.contains(int(a)) for a in actions)
    row = discrete_agent.context[0]
    assert row.shape == (1 + 5 + 1,) and row[1:6].sum() == 1.0  # (obs, one-hot action, reward)

    discrete_agent.save(tmp_path / "pearl")
    loaded = pearl.PEARLAgent.load(tmp_path / "pearl")
    ret_a, act_a = run_trial(discrete_agent, task, n_adapt=20, n_eval=5, env_id=DISCRETE_ENV_ID)
    ret_b, act_b = run_trial(loaded, task, n_adapt=20, n_eval=5, env_id=DISCRETE_ENV_ID)
    np.testing.assert_array_equal(np.array(act_a), np.array(act_b))
    assert ret_a == ret_b


def test_bad_config_values_are_named() -> None:
    with pytest.raises(ValueError, match="eval_z"):
        pearl.make_agent(smoke_config(eval_z="median"))
    with pytest.raises(ValueError, match="meta_batch"):
        pearl.make_agent(smoke_config(meta_batch=0))


# ----------------------------------------------------------------------------------- meta-test
def test_end_episode_updates_the_posterior(smoke_agent) -> None:
    tasks = metabench.tasks(ENV_ID, "test")
    posteriors = []
    for task in tasks[:2]:
        smoke_agent.begin_trial()
        torch.testing.assert_close(smoke_agent.z_mu, torch.zeros(1, 5))
        torch.testing.assert_close(smoke_agent.z_var, torch.ones(1, 5))
        env = gym.make(ENV_ID)
        obs, _ = env.reset(options={"task": task})
        for _ in range(20):
            action = smoke_agent.act(obs, explore=True)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            smoke_agent.observe(Transition(obs, action, float(reward), next_obs, terminated, truncated, {}))
            obs = next_obs
        torch.testing.assert_close(smoke_agent.z_var, torch.ones(1, 5))  # no inference inside an episode
        z_before = smoke_agent.z.clone()
        smoke_agent.end_episode()
        assert not torch.allclose(smoke_agent.z_var, torch.ones(1, 5))
        assert (smoke_agent.z_var < 1).all()  # 20 factors: a narrower posterior than the prior
        assert not torch.equal(smoke_agent.z, z_before)  # z re-drawn
        posteriors.append(smoke_agent.z_mu.clone())
    assert not torch.allclose(posteriors[0], posteriors[1])  # different goals, different contexts


def test_posterior_waits_for_the_exploration_episodes(smoke_agent) -> None:
    smoke_agent.config.num_exp_traj_eval = 2
    try:
        task = metabench.tasks(ENV_ID, "test")[0]
        smoke_agent.begin_trial()
        for episode in range(2):
            smoke_agent.observe(
                Transition(np.zeros(2), np.full(2, 0.1), -1.0, np.full(2, 0.1), False, False, {})
            )
            smoke_agent.end_episode()
            prior = torch.allclose(smoke_agent.z_var, torch.ones(1, 5))
            assert prior == (episode == 0)
        assert task is not None
    finally:
        smoke_agent.config.num_exp_traj_eval = 1


def test_begin_trial_clears_the_context(smoke_agent) -> None:
    task = metabench.tasks(ENV_ID, "test")[1]
    run_trial(smoke_agent, task)
    assert len(smoke_agent.context) == 60
    assert not torch.allclose(smoke_agent.z_var, torch.ones(1, 5))
    smoke_agent.begin_trial()
    assert smoke_agent.context == [] and smoke_agent.episodes == 0
    torch.testing.assert_close(smoke_agent.z_mu, torch.zeros(1, 5))
    torch.testing.assert_close(smoke_agent.z_var, torch.ones(1, 5))


def test_actions_lie_in_the_action_space(smoke_agent) -> None:
    space = gym.make(ENV_ID).action_space
    _, actions = run_trial(smoke_agent, metabench.tasks(ENV_ID, "test")[2])
    for a in actions:
        assert a.shape == space.shape and a.dtype == np.float32
        assert space.contains(a)


def test_save_load_round_trip_acts_identically(tmp_path, smoke_agent) -> None:
    smoke_agent.save(tmp_path / "pearl")
    loaded = pearl.PEARLAgent.load(tmp_path / "pearl")
    assert loaded.config == smoke_agent.config
    task = metabench.tasks(ENV_ID, "test")[3]
    ret_a, act_a = run_trial(smoke_agent, task)
    ret_b, act_b = run_trial(loaded, task)
    np.testing.assert_array_equal(np.array(act_a), np.array(act_b))
    assert ret_a == ret_b
    # and the loaded networks are the trained ones, not fresh ones
    for name, net in smoke_agent._nets().items():
        for (k, v), (k2, v2) in zip(
            net.state_dict().items(), loaded._nets()[name].state_dict().items(), strict=True
        ):
            assert k == k2
            torch.testing.assert_close(v, v2)


# ---------------------------------------------------------------------------------- learnability
def evaluate(agent, tasks, n_adapt: int = 10, n_eval: int = 3) -> np.ndarray:
    """Per-episode returns (tasks x episodes), as the harness runs them."""
    return np.array([run_trial(agent, t, n_adapt, n_eval)[0] for t in tasks])


def best_goal_blind_return(goals: np.ndarray) -> float:
    """The best mean return over ``goals`` of a policy that ignores the goal: head for one fixed point
    p (the env clips each coordinate of a move to 0.1) and stay; grid search over p."""
    xs, ys = np.meshgrid(np.linspace(-0.6, 0.6, 25), np.linspace(0.0, 1.2, 25))
    targets = np.stack([xs.ravel(), ys.ravel()], -1)  # (P, 2)
    pos = np.zeros_like(targets)
    total = np.zeros((len(targets), len(goals)))
    for _ in range(20):
        pos = pos + np.clip(targets - pos, -0.1, 0.1)
        total -= np.linalg.norm(pos[:, None] - goals[None], axis=-1)
    return float(total.mean(1).max())


@pytest.mark.slow
def test_pearl_learns_to_adapt_on_pointnav() -> None:
    """At the ci tier on PointNav's ci budget, PEARL's final evaluation episode beats the best policy
    that ignores the goal by a clear margin, and its last adaptation episode beats its first.

    ``PEARL_NO_UPDATES=1`` runs it with ``updates=False`` (no gradient steps): it must then fail.
    """
    updates = os.environ.get("PEARL_NO_UPDATES", "0") != "1"
    config = dataclasses.replace(build_config(pearl, "ci", env_id=ENV_ID), updates=updates)
    budget = env_class(ENV_ID).budgets["ci"]
    agent = pearl.make_agent(config)
    t0 = time.process_time()
    factory, counter = harness_env_factory(budget)
    agent.meta_train(factory, metabench.tasks(ENV_ID, "train"), Budget(budget), seed=0, log=RecordingLogger())
    counter.close()
    test_tasks = metabench.tasks(ENV_ID, "test")
    returns = evaluate(agent, test_tasks)
    cpu = time.process_time() - t0
    blind = best_goal_blind_return(np.array([t.params["goal"] for t in test_tasks]))
    first, last_adapt, final = returns[:, 0].mean(), returns[:, 9].mean(), returns[:, -1].mean()
    print(
        f"PEARL ci (updates={updates}): episode 0 {first:.2f}, episode 9 {last_adapt:.2f}, "
        f"final {final:.2f}; best goal-blind {blind:.2f}; {cpu:.0f} s CPU"
    )
    assert final > blind + 2.0, "PEARL does not beat the best goal-blind policy: it did not learn to adapt"
    assert last_adapt > first + 1.0, "PEARL's return does not improve over the adaptation episodes"


@pytest.mark.slow
def test_discrete_pearl_learns_to_adapt_on_bandit() -> None:
    """The discrete-action PEARL at the ci tier on Bandit's ci budget: over the last 10 of the 100
    pulls (the evaluation episodes) it beats the best arm a policy that ignores the task can pick,
    and its late adaptation pulls beat its first ones.

    ``PEARL_NO_UPDATES=1`` runs it with ``updates=False`` (no gradient steps): it must then fail.
    """
    env_id = DISCRETE_ENV_ID
    updates = os.environ.get("PEARL_NO_UPDATES", "0") != "1"
    config = dataclasses.replace(build_config(pearl, "ci", env_id=env_id), updates=updates)
    cls = env_class(env_id)
    budget = cls.budgets["ci"]
    agent = pearl.make_agent(config)
    factory, counter = harness_env_factory(budget, env_id)
    agent.meta_train(factory, metabench.tasks(env_id, "train"), Budget(budget), seed=0, log=RecordingLogger())
    counter.close()
    test_tasks = metabench.tasks(env_id, "test")
    returns = np.array([run_trial(agent, t, cls.n_adapt, cls.n_eval, env_id=env_id)[0] for t in test_tasks])
    # a policy blind to the task pulls one fixed arm: the best one on average over the test tasks
    blind = float(np.mean([t.params["means"] for t in test_tasks], axis=0).max())
    first, late, final = returns[:, :10].mean(), returns[:, 80:90].mean(), returns[:, 90:].mean()
    print(
        f"PEARL discrete ci (updates={updates}): pulls 0-9 {first:.3f}, pulls 80-89 {late:.3f}, "
        f"final {final:.3f}; best task-blind arm {blind:.3f}"
    )
    assert final > blind + 0.1, "PEARL does not beat the best task-blind arm: it did not learn to adapt"
    assert late > first + 0.05, "PEARL's pulls do not improve over the adaptation episodes"
