"""The agent protocol: what every meta-RL agent exposes to the harness.

An agent file (``agents/rl2.py``, ``~/my_agent.py``) defines a config dataclass, ``make_agent(config)``
returning a :class:`MetaAgent`, and optionally a hyperparameter file beside it,
``hyperparams/<agent file stem>.toml`` (as rl-baselines3-zoo keeps ``hyperparams/<algo>.yml``): one
table per tier of config overrides (e.g. smaller networks at ``smoke``), and inside it one table per
env id for a family that needs its own values at that tier (as the papers ship one config per
environment)::

    [ci]                          # tier-wide
    hidden_sizes = [64, 64]
    [ci."metabench/TabularMDP-v0"] # this family at this tier, over the tier-wide values
    latent_size = 50

An agent may instead (or as well) define ``TIERS`` (tier -> overrides) and ``ENV_TIERS`` (env id ->
tier -> overrides) in its module. The harness builds the config as: dataclass defaults, then
``TIERS[tier]``, then the file's ``[tier]``, then ``ENV_TIERS[env_id][tier]``, then the file's
``[tier."env_id"]``, then a user TOML file, then ``--config key=value`` pairs. The resolved config
goes into every record, and the hyperparameter file's sha256 into its provenance.

One protocol serves every way of adapting: gradient steps (MAML), memory across episodes (RL²),
posterior inference over a context (PEARL) and none (baselines).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib
import importlib.util
import math
import sys
import tomllib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from metabench.tasks import Task

TIER_NAMES: tuple[str, ...] = ("smoke", "ci", "standard")
#: Where an agent's hyperparameter file lives, relative to the agent file's folder.
HYPERPARAMS_DIR = "hyperparams"


class AgentError(RuntimeError):
    """An agent file or config that cannot be used; the message says how to fix it."""


class BudgetExceeded(RuntimeError):
    """An agent stepped its meta-training envs past the tier's budget."""


@dataclasses.dataclass(frozen=True)
class Budget:
    """What meta-training may spend: env steps (over all envs it makes) and optionally wall-clock."""

    env_steps: int
    wall_clock_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Transition:
    """One step as an agent sees it at meta-test (``info`` is stripped of task information)."""

    obs: Any
    action: Any
    reward: float
    next_obs: Any
    terminated: bool
    truncated: bool
    info: Mapping[str, Any]


@runtime_checkable
class Logger(Protocol):
    """Where an agent reports its meta-training curve (the harness records it in the result)."""

    def log(self, env_steps: int, **scalars: float) -> None: ...


@runtime_checkable
class MetaAgent(Protocol):
    """The protocol of DESIGN.md. Set ``oracle = True`` on an agent that must see the task
    (its envs are wrapped in :class:`metabench.wrappers.ExplicitContext`; tables mark it)."""

    def meta_train(
        self,
        make_env: Callable[[], gym.Env],
        tasks: Sequence[Task],
        budget: Budget,
        *,
        seed: int,
        log: Logger,
    ) -> None: ...

    def begin_trial(self) -> None: ...

    def act(self, obs: Any, *, explore: bool) -> Any: ...

    def observe(self, transition: Transition) -> None: ...

    def end_episode(self) -> None: ...

    def save(self, path: str | Path) -> None: ...

    @classmethod
    def load(cls, path: str | Path) -> MetaAgent: ...


def is_oracle(agent: Any) -> bool:
    return bool(getattr(agent, "oracle", False))


# --------------------------------------------------------------------------------- agent loading
def load_agent_module(spec: str) -> types.ModuleType:
    """Import an agent from a file path (``agents/rl2.py``, ``~/a.py``) or a module name
    (``metabench.agents.rl2``)."""
    path = Path(spec).expanduser()
    if spec.endswith(".py") or path.exists():
        if path.is_dir():
            raise AgentError(f"agent {spec!r} is a directory, not an agent file; give a .py file in it")
        if not path.is_file():
            raise AgentError(f"agent file {spec!r} does not exist")
        name = f"metabench_agent_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise AgentError(f"cannot import agent file {spec!r}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # dataclasses and pickling look the module up by name
        try:
            module_spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:  # an agent file that calls sys.exit() on import
            del sys.modules[name]
            raise AgentError(f"importing agent file {spec!r} failed: {type(exc).__name__}: {exc}") from exc
    else:
        try:
            module = importlib.import_module(spec)
        except ImportError as exc:
            raise AgentError(f"agent {spec!r} is neither a file nor an importable module: {exc}") from exc
    if not callable(getattr(module, "make_agent", None)):
        raise AgentError(
            f"agent {spec!r} has no make_agent(config) function; an agent file must define "
            "make_agent(config) -> MetaAgent (see metabench/protocol.py)"
        )
    return module


def agent_file(module: types.ModuleType) -> Path | None:
    file = getattr(module, "__file__", None)
    return Path(file) if file else None


def config_class(module: types.ModuleType) -> type | None:
    """The config dataclass ``make_agent`` takes: ``module.Config``, or its first parameter's type."""
    cls = getattr(module, "Config", None)
    if cls is None:
        hints = typing.get_type_hints(module.make_agent)
        params = [h for k, h in hints.items() if k != "return"]
        cls = params[0] if params else None
    return cls if cls is not None and dataclasses.is_dataclass(cls) else None


def parse_overrides(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise AgentError(f"--config expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def load_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AgentError(f"cannot read config file {path}: {exc}") from exc


def hyperparams_path(module: types.ModuleType) -> Path | None:
    """The agent's hyperparameter file, ``<agent's folder>/hyperparams/<agent stem>.toml``, if it exists."""
    file = agent_file(module)
    if file is None:
        return None
    path = file.parent / HYPERPARAMS_DIR / f"{file.stem}.toml"
    return path if path.is_file() else None


def load_hyperparams(module: types.ModuleType) -> dict[str, dict[str, Any]]:
    """The agent's hyperparameter file as ``{tier: {key: value, ..., env_id: {key: value}}}`` (``{}``
    without one), checked: tiers are tier names, env ids are registered, keys are config fields.
    TOML arrays become tuples for tuple fields."""
    path = hyperparams_path(module)
    if path is None:
        return {}
    table = load_toml(path)
    cls = config_class(module)
    fields = {f.name for f in dataclasses.fields(cls)} if cls is not None else set()
    hints = typing.get_type_hints(cls) if cls is not None else {}

    def check(where: str, values: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(values) - fields)
        if unknown:
            raise AgentError(
                f"{path}: [{where}] sets unknown config key(s) {unknown}; valid: {sorted(fields)}"
            )
        return {
            k: tuple(v) if isinstance(v, list) and typing.get_origin(hints.get(k)) is tuple else v
            for k, v in values.items()
        }

    out: dict[str, dict[str, Any]] = {}
    for tier, entries in table.items():
        if tier not in TIER_NAMES or not isinstance(entries, dict):
            raise AgentError(
                f"{path}: top-level {tier!r} is not a tier table; use [smoke], [ci] or [standard]"
            )
        flat = {k: v for k, v in entries.items() if not isinstance(v, dict)}
        out[tier] = check(tier, flat)
        for env_id, values in entries.items():
            if not isinstance(values, dict):
                continue
            if env_id not in gym.registry:
                close = difflib.get_close_matches(env_id, list(gym.registry), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else " (quote ids with a slash)"
                raise AgentError(f"{path}: [{tier}.{env_id!r}] is not a registered env id{hint}")
            nested = sorted(k for k, v in values.items() if isinstance(v, dict))
            if nested:
                raise AgentError(f"{path}: [{tier}.{env_id!r}] holds tables {nested}; only values go there")
            out[tier][env_id] = check(f'{tier}."{env_id}"', values)
    return out


def _coerce(value: Any, hint: Any, key: str) -> Any:
    if not isinstance(value, str):
        return value
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        if value.lower() in ("none", "null"):
            return None
        hint = args[0] if args else str
        origin = typing.get_origin(hint)
    try:
        if hint is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if hint in (int, float, str):
            out = hint(value)
            if hint is float and not math.isfinite(out):  # json cannot hold it, and no agent wants it
                raise AgentError(f"config value {key}={value!r} is not a finite number")
            return out
        if origin in (tuple, list):
            item = typing.get_args(hint)[0] if typing.get_args(hint) else str
            items = [_coerce(v, item, key) for v in value.strip("()[]").split(",") if v.strip()]
            return tuple(items) if origin is tuple else items
    except ValueError as exc:
        raise AgentError(f"config value {key}={value!r} is not a valid {hint}") from exc
    return value


def _type_problem(value: Any, hint: Any) -> str | None:
    """What ``value`` (from TOML: already typed) should have been to fit ``hint``; None if it fits.
    The rules of :func:`_coerce`: an int is not a float's place only, a bool is neither, floats are
    finite; hints it does not know (Literal, dict, classes) accept anything."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        problems = [_type_problem(value, a) for a in args if a is not type(None)]
        return None if not problems or None in problems else " or ".join(problems)
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "a number"
        return None if math.isfinite(value) else "a finite number"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return "an array"
        if not args:
            return None
        if origin is list or args[-1] is Ellipsis:
            items = [args[0]] * len(value)
        elif len(args) != len(value):
            return f"an array of {len(args)}"
        else:
            items = list(args)
        for v, h in zip(value, items, strict=True):
            problem = _type_problem(v, h)
            if problem is not None:
                return f"an array whose items are each {problem}"
        return None
    return None


def _check_typed(value: Any, hint: Any, key: str, cls: type) -> Any:
    """A TOML config value checked against its field's type (TOML arrays become tuples for tuple
    fields); :class:`AgentError` names the key, the value and the type."""
    problem = _type_problem(value, hint)
    if problem is not None:
        name = hint.__name__ if isinstance(hint, type) else str(hint)
        raise AgentError(
            f"config file value {key} = {value!r:.60} is not {problem} ({cls.__name__}.{key} is {name})"
        )
    if isinstance(value, list) and typing.get_origin(hint) is tuple:
        return tuple(value)
    return value


def build_config(
    module: types.ModuleType,
    tier: str,
    toml: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    env_id: str | None = None,
) -> Any:
    """Config defaults, then ``TIERS[tier]``, then the hyperparameter file's ``[tier]``, then (when
    ``env_id`` is given) ``ENV_TIERS[env_id][tier]`` and the file's ``[tier."env_id"]``, then
    ``toml``, then ``overrides`` (strings coerced)."""
    cls = config_class(module)
    file_tier = load_hyperparams(module).get(tier, {})
    values: dict[str, Any] = {}
    values.update(getattr(module, "TIERS", {}).get(tier, {}))
    values.update({k: v for k, v in file_tier.items() if not isinstance(v, dict)})
    if env_id is not None:
        values.update(getattr(module, "ENV_TIERS", {}).get(env_id, {}).get(tier, {}))
        values.update(file_tier.get(env_id, {}))
    values.update(toml or {})
    values.update(overrides or {})
    if cls is None:
        if values:
            raise AgentError("this agent has no config dataclass, so it takes no --config values")
        return None
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise AgentError(f"unknown config key(s) {unknown} for {cls.__name__}; valid: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    for k, v in (toml or {}).items():  # typed by TOML: checked as --config strings are when coerced
        if k not in (overrides or {}):
            values[k] = _check_typed(v, hints.get(k, Any), k, cls)
    return cls(**{k: _coerce(v, hints.get(k, str), k) for k, v in values.items()})


def config_to_dict(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    return {k: _jsonable(v) for k, v in dataclasses.asdict(config).items()}


def _jsonable(v: Any) -> Any:
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v
