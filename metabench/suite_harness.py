"""The harness for transfer suites (:mod:`metabench.suites`): meta-train on some Gymnasium envs, then
train fresh learners on others.

A unit is (agent file, suite name, tier, seed): :class:`metabench.harness.Unit` with the suite's name
where an env id stands, so records, skipping, Ray workers and tables work as for families
(:func:`metabench.harness.run` hands a suite's unit to :func:`run`). What a run does:

1. **Meta-training.** ``agent.meta_train(make_env, tasks, budget, seed=seed, log=log)`` with the suite's
   train tasks (``Task.params["env"]`` is a Gymnasium id). ``make_env(task)`` returns that task's env,
   ``gym.make(id)`` whose base env counts its steps on the same step counter as families
   (:class:`~metabench.harness.StepCounter`): every env of every task counts against the suite's
   budget at the tier, the whole population of a population-based agent included; stepping past it
   fails the run.
2. **Meta-testing**, per test env: ``agent.begin_trial(observation_space, action_space)`` (a fresh
   learner for that env's spaces), then ``adapt_steps`` env steps with ``act(obs, explore=True)``
   (whole episodes; the harness truncates the last one at the limit and says so with
   ``truncated=True``), then ``n_eval`` episodes with ``explore=False``; ``observe`` after every step,
   ``end_episode`` after every episode. Episodes are reset with
   :func:`~metabench.harness.episode_seed` (run seed, ``"test"``, test env index, episode).
3. **Recording**, as for families: one row per episode (split ``"test"``, ``task_index`` = the test
   env's index in the suite, phase ``"adapt"``/``"eval"``, return, length). The adaptation episodes
   are the learning curve; ``protocol.adapt_steps`` says how many steps they hold (``n_adapt`` is 0:
   their number depends on how long the episodes last).

Only agents that declare ``suites = True`` run here; any other is refused with one line before any
work is done (a family agent assumes one env's spaces). Suite agents are never oracles: there is no
task to reveal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym

from metabench.harness import (
    ActionCheck,
    CurveLogger,
    RunError,
    StepCounter,
    Unit,
    UsageError,
    _jsonable,
    _RunState,
    _seed_torch,
    _tqdm,
    _write_test_scalars,
    check_tier,
    episode_seed,
    resolve_agent_path,
)
from metabench.protocol import AgentError, Budget, Transition, build_config, config_to_dict, load_agent_module
from metabench.suites import Suite, env_of, get_suite, suite_split_hash, suite_tasks
from metabench.tasks import Task, TaskError


def supports_suites(agent: Any) -> bool:
    return bool(getattr(agent, "suites", False))


def refuse_message(agent_name: str, suite: str) -> str:
    return (
        f"agent {agent_name!r} cannot run on the transfer suite {suite}: it does not declare "
        "`suites = True` (a suite's envs differ in observation and action spaces); use --env with a task "
        "family, or a suite agent such as agents/metagenrl.py, agents/from_scratch.py, agents/random_agent.py"
    )


def visible_info(info: Mapping[str, Any]) -> dict[str, Any]:
    """A Gymnasium env's ``info`` holds no task to hide; only ``task_*`` keys are dropped, as for families."""
    return {k: v for k, v in info.items() if not str(k).startswith("task_")}


def count_steps(env: gym.Env, counter: StepCounter) -> gym.Env:
    """Make the base env count every step on ``counter``, however it is called (``env.step`` or
    ``env.unwrapped.step``): an instance attribute shadows the class's method."""
    base = env.unwrapped
    step = type(base).step

    def counted_step(action: Any) -> Any:
        counter.tick()
        return step(base, action)

    base.step = counted_step
    return env


class SuiteEnvFactory:
    """The ``make_env`` handed to ``meta_train`` on a suite: ``make_env(task)`` is a fresh budgeted env
    of that train task's Gymnasium id."""

    def __init__(self, suite: Suite, counter: StepCounter):
        self.suite, self.counter = suite, counter
        self.tasks = suite_tasks(suite.name, "train")

    def __call__(self, task: Task) -> gym.Env:
        if task not in self.tasks:
            what = task.to_json() if isinstance(task, Task) else repr(task)
            raise RunError(
                f"make_env(task) takes one of the train tasks of {self.suite.name} (the tasks meta_train "
                f"got); got {what:.200}"
            )
        return count_steps(gym.make(env_of(task)), self.counter)

    def __reduce__(self) -> Any:
        raise RunError(
            "make_env cannot be pickled: meta-training envs must be stepped in the agent's own process so "
            "that the budget is counted (a Ray population steps its envs in the driver)"
        )


def check_envs(suite: Suite) -> None:
    """Make every env of the suite once, so a missing extra fails before any work (one line)."""
    for env_id in dict.fromkeys(suite.train + suite.test):
        try:
            gym.make(env_id).close()
        except gym.error.DependencyNotInstalled as exc:
            raise UsageError(
                f"{suite.name} needs {env_id}, which cannot be made here: {' '.join(str(exc).split())} "
                "(install metabench's box2d extra: pip install -c constraints.txt -e '.[box2d]')"
            ) from exc


def tier_value(suite: Suite, table: Mapping[str, int], tier: str) -> int:
    if tier not in table:
        raise UsageError(f"{suite.name} defines no setting for tier {tier!r}; it has {', '.join(table)}")
    return int(table[tier])


def prepare_suite_units(
    agent_spec: str,
    suite_names: Sequence[str],
    tier: str,
    seeds: Sequence[int],
    out_dir: str | Path,
    *,
    config_toml: Mapping[str, Any] | None = None,
    config_overrides: Mapping[str, str] | None = None,
    wall_clock_s: float | None = None,
    tensorboard: str | None = None,
    progress: bool = False,
) -> list[Unit]:
    """Check the agent (file, config, ``suites = True``), the suites, the tier and that every env can be
    made; return one unit per (suite, seed). Bad input raises a one-line AgentError/TaskError/UsageError."""
    check_tier(tier)
    if not seeds:
        raise UsageError("no seeds given")
    path = resolve_agent_path(agent_spec)
    module = load_agent_module(agent_spec)
    for name in suite_names:
        suite = get_suite(name)
        for table in (suite.budgets, suite.adapt_steps, suite.n_eval):
            tier_value(suite, table, tier)
        agent = module.make_agent(build_config(module, tier, config_toml, config_overrides, name))
        if not supports_suites(agent):
            raise AgentError(refuse_message(Path(path).stem, name))
        check_envs(suite)
    return [
        Unit(
            agent_spec=agent_spec,
            env_id=name,
            tier=tier,
            seed=int(seed),
            out_dir=str(out_dir),
            agent_path=path,
            config_toml=dict(config_toml or {}),
            config_overrides=dict(config_overrides or {}),
            wall_clock_s=wall_clock_s,
            tensorboard=None if tensorboard is None else str(Path(tensorboard).expanduser().resolve()),
            progress=progress,
        )
        for name in dict.fromkeys(suite_names)
        for seed in seeds
    ]


def run(unit: Unit) -> dict[str, Any]:
    """Evaluate one suite unit and return its record (an error record if it failed)."""
    import traceback

    state = _RunState(unit)
    state.protocol.update(n_adapt=0, train_sample=0)
    error = None
    closers: list[Any] = []
    try:
        _run(unit, state, closers)
    except Exception as exc:
        error = {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}
    finally:
        for c in reversed(closers):
            try:
                c.close()
            except Exception:  # closing a bar, writer or env must not hide the run's result
                pass
    return state.record(error)


def _run(unit: Unit, state: _RunState, closers: list[Any]) -> None:
    check_tier(unit.tier)
    suite = get_suite(unit.env_id)
    module = load_agent_module(unit.agent_path)
    config = build_config(module, unit.tier, unit.config_toml, unit.config_overrides, unit.env_id)
    state.config = _jsonable(config_to_dict(config))
    state.budget = Budget(tier_value(suite, suite.budgets, unit.tier), unit.wall_clock_s)
    adapt_steps = tier_value(suite, suite.adapt_steps, unit.tier)
    n_eval = tier_value(suite, suite.n_eval, unit.tier)
    state.protocol.update(
        n_adapt=0, n_eval=n_eval, success_rule="final", train_sample=0, adapt_steps=adapt_steps
    )
    state.split_hashes = {s: suite_split_hash(suite.name, s) for s in ("train", "test")}
    state.env_kwargs = {}
    name = unit.agent

    writer = None
    if unit.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        log_dir = Path(unit.tensorboard) / unit.env_id.replace("/", "__") / name / f"seed{unit.seed}"
        writer = SummaryWriter(log_dir=str(log_dir))
        closers.append(writer)
    state.logger = CurveLogger(writer)

    _seed_torch(unit.seed)
    agent = module.make_agent(config)
    if not supports_suites(agent):
        raise AgentError(refuse_message(name, suite.name))

    # 1. meta-training
    label = f"{name} {suite.name} seed{unit.seed}"
    bar = _tqdm(unit.progress, total=state.budget.env_steps, desc=f"{label} meta-train", unit="step")
    closers.append(bar)
    counter = StepCounter(state.budget, unit.tier, on_step=bar.update)
    state.counter = counter
    agent.meta_train(
        SuiteEnvFactory(suite, counter),
        suite_tasks(suite.name, "train"),
        state.budget,
        seed=int(unit.seed),
        log=state.logger,
    )
    counter.close()
    bar.close()

    # 2. meta-testing: a fresh learner per test env
    test = suite_tasks(suite.name, "test")
    bar = _tqdm(unit.progress, total=len(test) * adapt_steps, desc=f"{label} meta-test", unit="step")
    closers.append(bar)
    for task in test:
        env = gym.make(env_of(task))
        closers.append(env)
        _trial(agent, env, task, unit.seed, adapt_steps, n_eval, state, name, bar)
        env.close()
    if writer is not None:
        _write_test_scalars(writer, state.episodes.data)


def _trial(
    agent: Any,
    env: gym.Env,
    task: Task,
    seed: int,
    adapt_steps: int,
    n_eval: int,
    state: _RunState,
    name: str,
    bar: Any,
) -> None:
    """One test env: begin_trial with its spaces, ``adapt_steps`` exploring steps, ``n_eval`` episodes."""
    agent.begin_trial(env.observation_space, env.action_space)
    check = ActionCheck(env.action_space, name)
    used, episode = 0, 0
    while used < adapt_steps:
        length = _episode(agent, env, task, seed, episode, True, adapt_steps - used, check, state)
        used += length
        episode += 1
        bar.update(length)
    for _ in range(n_eval):
        _episode(agent, env, task, seed, episode, False, None, check, state)
        episode += 1


def _episode(
    agent: Any,
    env: gym.Env,
    task: Task,
    seed: int,
    episode: int,
    explore: bool,
    limit: int | None,
    check: ActionCheck,
    state: _RunState,
) -> int:
    """Run one episode (cut at ``limit`` steps, reported as truncated) and record it; its length."""
    obs, info = env.reset(seed=episode_seed(seed, "test", task.index, episode))
    ret, length, success, done = 0.0, 0, None, False
    while not done:
        action = check(agent.act(obs, explore=explore))
        next_obs, reward, terminated, truncated, info = env.step(action)
        reward = float(reward)
        if not math.isfinite(reward):
            raise RunError(f"{env_of(task)} returned a non-finite reward {reward}")
        length += 1
        ret += reward
        truncated = bool(truncated) or (limit is not None and length >= limit and not terminated)
        done = bool(terminated) or truncated
        if "success" in info:
            success = bool(info["success"])
        agent.observe(
            Transition(obs, action, reward, next_obs, bool(terminated), truncated, visible_info(info))
        )
        obs = next_obs
    agent.end_episode()
    state.episodes.add(
        split="test",
        task_index=int(task.index),
        episode=episode,
        phase="adapt" if explore else "eval",
        length=length,
        success=success,
        **{"return": ret},
    )
    return length


__all__ = [
    "SuiteEnvFactory",
    "TaskError",
    "check_envs",
    "prepare_suite_units",
    "refuse_message",
    "run",
    "supports_suites",
]
