"""Tasks, task families and frozen train/test splits.

A :class:`Task` is a frozen, JSON-serialisable value: which env id it belongs to, which split, its
index inside that split, and its parameters. A :class:`TaskFamily` describes a parameter space and a
pure seeded sampler; from it, :func:`tasks` builds the frozen splits of an env id and checks them
against the sha256 hashes written in the env class (``split_hashes``). Changing a sampler, a size or a
seed changes a hash, and :func:`tasks` then refuses to hand the split out: a changed split needs a new
``-vN`` id, as in Gymnasium.

No pickle anywhere: tasks go to and from JSON.
"""

from __future__ import annotations

import abc
import dataclasses
import difflib
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

#: A task parameter: a float or a tuple of floats; a string only for a transfer suite's ``"env"``
#: parameter (a Gymnasium id, :mod:`metabench.suites`).
ParamValue = float | tuple[float, ...] | str

#: Split names in their canonical order. ``test-ood`` exists only where a family extrapolates.
SPLIT_NAMES: tuple[str, ...] = ("train", "test", "test-ood")

#: Split name given to tasks a user builds by hand (see :meth:`TaskFamily.make_task`).
CUSTOM_SPLIT = "custom"


class TaskError(ValueError):
    """A task, split or env id that does not fit; the message names the valid choices."""


class SplitChangedError(RuntimeError):
    """A split no longer hashes to the value written in the code."""


@dataclasses.dataclass(frozen=True)
class Task:
    """One task of a family: an immutable value that travels as JSON.

    Attributes:
        family: the env id the task belongs to, e.g. ``"metabench/HalfCheetahVel-v0"``.
        split: ``"train"``, ``"test"``, ``"test-ood"`` or ``"custom"``.
        index: position inside its split (``-1`` for custom tasks).
        params: parameter name to a float or a tuple of floats (a transfer suite's tasks carry a
            string instead: ``{"env": "<gymnasium id>"}``).
    """

    family: str
    split: str
    index: int
    params: Mapping[str, ParamValue]

    def __post_init__(self) -> None:
        # Normalise to plain floats / tuples so equality, hashing and JSON agree.
        clean: dict[str, ParamValue] = {}
        for name, value in dict(self.params).items():
            if isinstance(value, str):
                clean[str(name)] = value
            elif isinstance(value, (list, tuple, np.ndarray)):
                clean[str(name)] = tuple(float(v) for v in np.asarray(value, dtype=float).ravel())
            else:
                clean[str(name)] = float(value)
        object.__setattr__(self, "params", clean)
        object.__setattr__(self, "index", int(self.index))

    def __hash__(self) -> int:
        return hash(self.to_json())

    def to_dict(self) -> dict[str, Any]:
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in self.params.items()}
        return {"family": self.family, "split": self.split, "index": self.index, "params": params}

    def to_json(self) -> str:
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Task:
        if not isinstance(data, Mapping):
            raise TaskError(f"a task is a JSON object with family, split, index, params; got {data!r:.80}")
        missing = {"family", "split", "index", "params"} - set(data)
        if missing:
            raise TaskError(f"task JSON lacks field(s) {sorted(missing)}; got {sorted(data)}")
        try:
            return cls(str(data["family"]), str(data["split"]), int(data["index"]), dict(data["params"]))
        except (TypeError, ValueError) as exc:
            raise TaskError(f"task JSON has a bad field ({exc}): {dict(data)!r:.120}") from exc

    @classmethod
    def from_json(cls, text: str | bytes) -> Task:
        """The task written by :meth:`to_json`; :class:`TaskError` if ``text`` is not one."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
            raise TaskError(f"not a task's JSON ({exc}): {str(text)[:80]!r}") from exc
        return cls.from_dict(data)

    def array(self, name: str) -> np.ndarray:
        """A parameter as a float64 array (scalars become shape ``()``)."""
        return np.asarray(self.params[name], dtype=np.float64)


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the form that split hashes are taken over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


@dataclasses.dataclass(frozen=True)
class Param:
    """One task parameter: its valid range, its size (``None`` for a scalar) and what it means.

    ``low``/``high`` bound every valid value (tasks outside are rejected); ExplicitContext maps
    ``[low, high]`` linearly to ``[-1, 1]``.
    """

    low: float
    high: float
    size: int | None = None
    doc: str = ""

    def normalise(self, value: ParamValue) -> np.ndarray:
        v = np.atleast_1d(np.asarray(value, dtype=np.float64))
        return 2.0 * (v - self.low) / (self.high - self.low) - 1.0


class TaskFamily(abc.ABC):
    """A parameter space with a pure, seeded sampler and the sizes of its splits.

    Subclasses set :attr:`params` and :attr:`split_sizes` and implement :meth:`sample`. The default
    :meth:`build_splits` draws train and test together from the in-distribution region and cuts them
    apart (then :func:`check_disjoint` verifies no task is in both), and draws ``test-ood`` from the
    extrapolation region. Families whose splits are a fixed grid override :meth:`build_splits`.
    """

    params: ClassVar[Mapping[str, Param]]
    split_sizes: ClassVar[Mapping[str, int]]
    #: Seed of the split generator; part of the frozen split, like the sizes.
    split_seed: ClassVar[int] = 0
    #: Only families whose task set is tiny by nature (HalfCheetahDir) may declare train == test.
    shared_train_test: ClassVar[bool] = False
    #: Decimal places parameters are rounded to, so hashes do not hang on the last bit of a float.
    decimals: ClassVar[int] = 6

    @abc.abstractmethod
    def sample(self, rng: np.random.Generator, n: int, split: str) -> list[dict[str, ParamValue]]:
        """Draw ``n`` parameter dicts for ``split``'s region, using ``rng`` only."""

    def build_splits(self, env_id: str) -> dict[str, tuple[Task, ...]]:
        rng = np.random.default_rng(self.split_seed)
        n_train, n_test = self.split_sizes["train"], self.split_sizes["test"]
        both = self.sample(rng, n_train + n_test, "train")
        raw = {"train": both[:n_train], "test": both[n_train:]}
        if "test-ood" in self.split_sizes:
            raw["test-ood"] = self.sample(rng, self.split_sizes["test-ood"], "test-ood")
        return {name: self._freeze(env_id, name, plist) for name, plist in raw.items()}

    def _freeze(self, env_id: str, split: str, plist: Sequence[Mapping[str, Any]]) -> tuple[Task, ...]:
        return tuple(
            Task(env_id, split, i, {k: _round(v, self.decimals) for k, v in p.items()})
            for i, p in enumerate(plist)
        )

    def validate(self, params: Mapping[str, Any]) -> None:
        """Raise :class:`TaskError` naming the problem if ``params`` is not a valid point."""
        missing = sorted(set(self.params) - set(params))
        if missing:
            raise TaskError(f"task lacks parameter(s) {missing}; this family needs {sorted(self.params)}")
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            raise TaskError(f"unknown task parameter(s) {unknown}; this family has {sorted(self.params)}")
        for name, spec in self.params.items():
            value = np.asarray(params[name], dtype=np.float64)
            want = () if spec.size is None else (spec.size,)
            if value.shape != want:
                raise TaskError(f"task parameter {name!r} has shape {value.shape}, expected {want}")
            if not np.all(np.isfinite(value)):
                raise TaskError(f"task parameter {name!r} is not finite ({params[name]!r})")
            if np.any(value < spec.low) or np.any(value > spec.high):
                raise TaskError(
                    f"task parameter {name!r} = {params[name]!r} is outside its valid range "
                    f"[{spec.low}, {spec.high}]"
                )

    def make_task(self, env_id: str, params: Mapping[str, Any]) -> Task:
        """A hand-made task (split ``"custom"``) after validating its parameters."""
        self.validate(params)
        return Task(env_id, CUSTOM_SPLIT, -1, params)

    def context(self, task: Task) -> np.ndarray:
        """The task's parameters, normalised to [-1, 1], in the order of :attr:`params`."""
        return np.concatenate([spec.normalise(task.params[n]) for n, spec in self.params.items()])

    @property
    def context_size(self) -> int:
        return sum(1 if spec.size is None else spec.size for spec in self.params.values())


def _round(value: Any, decimals: int) -> ParamValue:
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(round(float(v), decimals) for v in np.asarray(value, dtype=float).ravel())
    return round(float(value), decimals)


def split_digest(split: Sequence[Task]) -> str:
    """sha256 of the canonical JSON of a split."""
    payload = canonical_json([t.to_dict() for t in split])
    return hashlib.sha256(payload.encode()).hexdigest()


def check_disjoint(splits: Mapping[str, Sequence[Task]], *, allow_shared_train_test: bool = False) -> None:
    """Raise if any two splits share a parameter point (or a split repeats one)."""
    seen: dict[str, str] = {}
    for name, split in splits.items():
        for task in split:
            key = canonical_json(task.to_dict()["params"])
            other = seen.get(key)
            if other is not None and not (allow_shared_train_test and {other, name} == {"train", "test"}):
                raise TaskError(f"splits {other!r} and {name!r} share the task params {key}")
            seen.setdefault(key, name)


# --------------------------------------------------------------------------------------------------
# Public lookup by env id.


def metabench_ids() -> list[str]:
    import gymnasium as gym

    return sorted(i for i in gym.registry if i.startswith("metabench/"))


def env_class(env_id: str) -> type:
    """The env class registered under ``env_id`` (imports its module, not metabench's others)."""
    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    spec = gym.registry.get(env_id)
    if spec is None or not env_id.startswith("metabench/"):
        valid = metabench_ids()
        close = difflib.get_close_matches(env_id, valid, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise TaskError(f"unknown env id {env_id!r}.{hint} Valid ids: {', '.join(valid)}")
    creator = load_env_creator(spec.entry_point) if isinstance(spec.entry_point, str) else spec.entry_point
    return creator


def family(env_id: str) -> TaskFamily:
    return env_class(env_id).family


@functools.cache
def _splits(env_id: str) -> Mapping[str, tuple[Task, ...]]:
    # A pure cache of a pure function: the frozen splits never change inside a process.
    cls = env_class(env_id)
    fam: TaskFamily = cls.family
    splits = fam.build_splits(env_id)
    check_disjoint(splits, allow_shared_train_test=fam.shared_train_test)
    expected: Mapping[str, str] = getattr(cls, "split_hashes", {})
    for name, split in splits.items():
        digest = split_digest(split)
        if expected.get(name) != digest:
            raise SplitChangedError(
                f"split {name!r} of {env_id} hashes to {digest}, but the code expects "
                f"{expected.get(name)}. A changed split needs a new env version (-vN): see CONTRIBUTING.md."
            )
    return splits


def split_names(env_id: str) -> tuple[str, ...]:
    return tuple(_splits(env_id))


def tasks(env_id: str, split: str = "train") -> tuple[Task, ...]:
    """The frozen tasks of ``split`` for ``env_id`` (``"train"``, ``"test"`` or ``"test-ood"``)."""
    splits = _splits(env_id)
    if split not in splits:
        raise TaskError(f"unknown split {split!r} for {env_id}; valid splits: {', '.join(splits)}")
    return splits[split]


def split_hash(env_id: str, split: str) -> str:
    """sha256 of the canonical JSON of a frozen split (equal to the value written in the code)."""
    return split_digest(tasks(env_id, split))


def compute_split_hashes(env_id: str) -> dict[str, str]:
    """Hashes of freshly built splits, without checking them: for writing a new family's hashes."""
    cls = env_class(env_id)
    return {name: split_digest(s) for name, s in cls.family.build_splits(env_id).items()}
