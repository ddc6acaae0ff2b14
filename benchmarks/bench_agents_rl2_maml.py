"""Training throughput of RL² and MAML (issue 6) against the matching Stable-Baselines3 learners.

Run with ``make bench``. All rates are env steps per second on PointNav-v0, measured interleaved in one
process (this machine is shared: ratios, not absolute times, are the result), with the ``ci`` tier's
network sizes on both sides:

* RL² trains sb3-contrib's RecurrentPPO on whole trials (:class:`metabench.agents.rl2.TrialEnv`) with
  a policy whose LSTM runs a trial-long sequence in one call. Compared, per rollout *including the PPO
  update*: plain RecurrentPPO (``MlpLstmPolicy``) on the unwrapped env with the same LSTM, rollout and
  minibatch sizes, and RecurrentPPO with SB3's own policy on the same trials (what the fast sequence
  path saves).
* MAML's sampler (all tasks × trajectories of a meta-batch stepped together, the policy batched over
  tasks with ``vmap``) against SB3 PPO's ``collect_rollouts`` over as many envs (``DummyVecEnv``) with
  the same (100, 100) tanh MLP; and a whole meta-iteration (two sampling passes, inner steps, TRPO
  step) against PPO's ``learn`` of a rollout of the same size (10 epochs, minibatch 100).

* Meta-SGD, MAESN and TESP (issue 13) against MAML on the same batch: the same 10 train tasks and 10
  episodes per task in every sampling pass, each agent at its ``ci`` settings otherwise. Their
  meta-iterations sample a different number of passes by design (MAML and MAESN 2, Meta-SGD 4: three
  inner steps and the post-update batch, TESP 5: with the warm-up batch), so the ratio compared is the
  time per env step of a whole meta-iteration (sampling, inner steps, outer update), and the ratio of
  whole meta-iterations is reported beside it.

Targets: RL² at least as fast as plain RecurrentPPO, MAML's sampler at least as fast as PPO's rollout
collection (both ratios >= 1.0); each of Meta-SGD, MAESN and TESP within 1.5x of MAML's time per env step.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import pytest
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor, VecNormalize

import metabench
from metabench.agents import maesn, maml, meta_sgd, rl2, tesp
from metabench.protocol import build_config

from .conftest import interleaved_rates, report

ENV = "metabench/PointNav-v0"


def make_env() -> gym.Env:
    return gym.make(ENV)


def _trials() -> rl2.TrialEnv:
    return rl2.TrialEnv(make_env(), metabench.tasks(ENV, "train"), 13)  # PointNav: 10 + 3 episodes


def test_rl2_training_throughput_vs_recurrent_ppo(benchmark) -> None:
    torch.set_num_threads(1)
    config = build_config(rl2, "ci")
    tasks = metabench.tasks(ENV, "train")
    ours, _ = rl2.make_agent(config).build_model(make_env, tasks, 10**9, seed=0)
    n_envs, n_steps, batch = ours.n_envs, ours.n_steps, ours.batch_size
    rollout = n_envs * n_steps
    common = {
        "n_steps": n_steps,
        "batch_size": batch,
        "n_epochs": config.n_epochs,
        "learning_rate": config.learning_rate,
        "seed": 0,
        "device": "cpu",
    }
    lstm = {"lstm_hidden_size": config.lstm_hidden_size, "net_arch": []}
    plain = RecurrentPPO("MlpLstmPolicy", DummyVecEnv([make_env] * n_envs), policy_kwargs=lstm, **common)
    stock_env = VecNormalize(VecMonitor(DummyVecEnv([_trials] * n_envs)), norm_obs=False)
    stock = RecurrentPPO("MlpLstmPolicy", stock_env, policy_kwargs=lstm, **common)

    def one_rollout(model):
        def run() -> None:
            model.learn(rollout, reset_num_timesteps=False)

        return run

    runs = {"ours": one_rollout(ours), "plain": one_rollout(plain), "stock_policy": one_rollout(stock)}
    rates = interleaved_rates(runs, rollout, rounds=3)
    report(
        benchmark,
        rl2_steps_per_s=rates["ours"],
        recurrent_ppo_steps_per_s=rates["plain"],
        ratio_vs_recurrent_ppo=rates["ours"] / rates["plain"],
        ratio_vs_sb3_policy_on_trials=rates["ours"] / rates["stock_policy"],
    )
    benchmark.pedantic(runs["ours"], rounds=1, iterations=1)
    ratio = rates["ours"] / rates["plain"]
    assert ratio >= 1.0, f"RL² trains at {ratio:.2f}x RecurrentPPO (target >= 1.0x)"


def test_maml_sampling_and_iteration_throughput_vs_ppo(benchmark) -> None:
    torch.set_num_threads(1)
    config = dataclasses.replace(build_config(maml, "ci"))
    agent = maml.make_agent(config)
    envs = agent.setup(make_env, seed=0)
    tasks = list(metabench.tasks(ENV, "train")[: config.meta_batch_size])
    n = len(envs)
    horizon = agent._horizon
    sample_steps = n * horizon
    theta = agent.meta_params()
    net = {"net_arch": list(config.hidden_sizes), "activation_fn": torch.nn.Tanh}
    ppo = PPO(
        "MlpPolicy",
        DummyVecEnv([make_env] * n),
        n_steps=horizon,
        batch_size=100,
        n_epochs=10,
        policy_kwargs=net,
        seed=0,
        device="cpu",
    )
    _, callback = ppo._setup_learn(10**9, None)

    def maml_sample() -> None:
        agent._sample(envs, tasks, theta, per_task=False)

    def ppo_collect() -> None:
        ppo.collect_rollouts(ppo.env, callback, ppo.rollout_buffer, n_rollout_steps=ppo.n_steps)

    sampling = interleaved_rates({"maml": maml_sample, "ppo": ppo_collect}, sample_steps, rounds=5)

    def maml_iteration() -> None:
        agent.meta_iteration(envs, tasks)

    def ppo_learn() -> None:
        ppo.learn(sample_steps, reset_num_timesteps=False)

    # a meta-iteration steps every env twice (before and after the inner step)
    iteration = interleaved_rates({"maml": maml_iteration, "ppo": ppo_learn}, sample_steps, rounds=3)
    iteration["maml"] *= 2
    report(
        benchmark,
        maml_sampling_steps_per_s=sampling["maml"],
        ppo_collect_steps_per_s=sampling["ppo"],
        sampling_ratio_vs_ppo=sampling["maml"] / sampling["ppo"],
        maml_iteration_steps_per_s=iteration["maml"],
        ppo_learn_steps_per_s=iteration["ppo"],
        training_ratio_vs_ppo=iteration["maml"] / iteration["ppo"],
    )
    benchmark.pedantic(maml_sample, rounds=1, iterations=1)
    ratio = sampling["maml"] / sampling["ppo"]
    assert ratio >= 1.0, f"MAML samples at {ratio:.2f}x PPO's collect_rollouts (target >= 1.0x)"


#: Sampling passes per meta-iteration, as the agents' meta_train budgets them.
PASSES = {
    "maml": lambda c: 2,
    "maesn": lambda c: 2,
    "meta_sgd": lambda c: c.inner_steps + 1,
    "tesp": lambda c: c.inner_steps + 2,
}


@pytest.mark.parametrize("name", ["meta_sgd", "maesn", "tesp"])
def test_gradient_agents_meta_iteration_time_vs_maml(benchmark, name: str) -> None:
    torch.set_num_threads(1)
    tasks, k = list(metabench.tasks(ENV, "train")[:10]), 10
    modules = {"maml": maml, "meta_sgd": meta_sgd, "maesn": maesn, "tesp": tesp}
    agents, envs, steps = {}, {}, {}
    for key in ("maml", name):
        module = modules[key]
        config = dataclasses.replace(
            build_config(module, "ci"), meta_batch_size=len(tasks), trajectories_per_task=k
        )
        agent = agents[key] = module.make_agent(config)
        envs[key] = agent.setup(make_env, 0, len(tasks)) if key == "maesn" else agent.setup(make_env, seed=0)
        steps[key] = PASSES[key](config) * len(tasks) * k * agent._horizon

    def iteration(key: str):
        def run() -> None:
            agents[key].meta_iteration(envs[key], tasks)

        return run

    per_iteration = interleaved_rates({key: iteration(key) for key in agents}, 1, rounds=3)
    per_step = {key: per_iteration[key] * steps[key] for key in agents}
    step_ratio = per_step["maml"] / per_step[name]  # > 1: slower than MAML per env step
    report(
        benchmark,
        **{f"{key}_iteration_s": 1 / per_iteration[key] for key in agents},
        **{f"{key}_steps_per_iteration": steps[key] for key in agents},
        iteration_time_ratio_vs_maml=per_iteration["maml"] / per_iteration[name],
        time_per_step_ratio_vs_maml=step_ratio,
    )
    benchmark.pedantic(iteration(name), rounds=1, iterations=1)
    assert step_ratio <= 1.5, f"{name} takes {step_ratio:.2f}x MAML's time per env step (target <= 1.5x)"
