"""Isolated evaluation (``metabench evaluate --isolate``): every env of a run lives in another process.

In-process, the harness guards against accidents (:mod:`metabench.harness`; ``docs/trust.md``), but
an agent that shares a Python process with its envs can always reach them: ``gc.get_objects()`` finds
the meta-test env and its task, a frame's locals hold the task, and the meta-test order is public. With
``--isolate`` each run starts one *env process* (``multiprocessing``, the ``"spawn"`` context: a fresh
interpreter that holds nothing of the agent's) and the agent's process keeps only proxies:

* **Meta-training.** ``make_env()`` returns an :class:`IsolatedEnv`, a ``gym.Env`` whose ``reset``,
  ``step``, ``close``, ``observation_space``, ``action_space`` and ``spec`` are what a Gymnasium user
  sees; its ``unwrapped`` is itself. The env process counts every step and enforces the budget and the
  train-only rule (:func:`metabench.harness.own_env`); the record's ``env_steps_used`` is its count.
  The proxy's class carries the family's public protocol attributes (``env_id``, ``n_adapt``,
  ``n_eval``, ``success_rule``, ``budgets``, ``public_info_keys``), which agents read from
  ``type(env.unwrapped)``.
* **Meta-testing.** The env process builds the meta-test task list and draws a secret order of the
  trials (``secrets``), sets each task itself and keeps the per-episode results. The agent's process
  asks for "trial k, episode e" and gets observations, rewards and public ``info`` keys only; the
  results, in the canonical order, come back after the last episode. So no task object, no env and
  no fixed order is there for the agent to find.

The wire carries raw bytes: a one-byte operation, a handle, then numpy bytes (actions, observations)
or a small JSON header. Nothing is pickled in either direction, so the env process never runs code
the agent's process sends it.

What isolation does not do: it is not a sandbox. Agent code runs with the user's rights in the
process that starts the env process, so code written against metabench itself (rewriting the
harness's functions, reading another process's memory, building its own envs from the public splits)
is out of its reach; review such code, whose sha256 every record keeps. ``docs/trust.md`` says more.
"""

from __future__ import annotations

import json
import math
import secrets
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from metabench.harness import (
    ActionCheck,
    InvalidAction,
    RunError,
    StepCounter,
    check_train_task,
    episode_seed,
    meta_test_groups,
    own_env,
    train_members,
    visible_info,
)
from metabench.protocol import Budget, BudgetExceeded, Transition
from metabench.tasks import Task, TaskError, env_class

# Operations (first byte of a request) and reply statuses (first byte of a reply).
_BEGIN, _MAKE, _RESET, _STEP, _SET_TASK, _CLOSE, _END = b"B", b"M", b"R", b"S", b"K", b"C", b"E"
_TEST, _TEST_RESET, _REVEAL, _ABORT, _QUIT = b"T", b"P", b"X", b"A", b"Q"
_OK, _ERR, _STEPPED = b"o"[0], b"e"[0], b"s"[0]
_HEAD = struct.Struct("<cI")  # operation, handle
_LEN = struct.Struct("<I")  # a message's length; a reply's JSON header length after its status byte
_STEP_HEAD = struct.Struct("<cdBq")  # status, reward, flags, meta-training steps (-1: none)
_TERMINATED, _TRUNCATED, _NEW_KEYS, _JSON_INFO = 1, 2, 4, 8  # step reply flags
#: How an ``info`` value of each kind comes back from a float64 (bool, int or float).
_KINDS: Mapping[str, Callable[[float], Any]] = {"b": bool, "i": int, "f": float}
#: The class attributes of a family that proxies carry (public protocol values, no task).
_PUBLIC_ATTRS = ("env_id", "n_adapt", "n_eval", "success_rule", "budgets", "public_info_keys")
#: Exceptions raised in the env process that keep their type in the agent's process.
_ERRORS: Mapping[str, type[Exception]] = {
    e.__name__: e
    for e in (
        BudgetExceeded,
        RunError,
        InvalidAction,
        TaskError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        gym.error.ResetNeeded,
    )
}


# ------------------------------------------------------------------------------------------- spaces
def space_to_json(space: gym.Space) -> dict[str, Any]:
    """A JSON form of the spaces metabench's families use (``Box``, ``Discrete``, ``MultiDiscrete``,
    ``MultiBinary``)."""
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "low": space.low.tolist(),
            "high": space.high.tolist(),
            "shape": list(space.shape),
            "dtype": np.dtype(space.dtype).str,
        }
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(), "dtype": np.dtype(space.dtype).str}
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    raise RunError(
        f"--isolate handles Box, Discrete, MultiDiscrete and MultiBinary spaces, not {space}; "
        "run this env without --isolate"
    )


def space_from_json(data: Mapping[str, Any]) -> gym.Space:
    kind = data["type"]
    if kind == "Box":
        dtype = np.dtype(data["dtype"])
        shape = tuple(data["shape"])
        low = np.asarray(data["low"], dtype=dtype).reshape(shape)
        high = np.asarray(data["high"], dtype=dtype).reshape(shape)
        return spaces.Box(low, high, shape, dtype)
    if kind == "Discrete":
        return spaces.Discrete(data["n"], start=data["start"])
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(data["nvec"], dtype=np.dtype(data["dtype"]))
    if kind == "MultiBinary":
        return spaces.MultiBinary(data["n"])
    raise RunError(f"unknown space type {kind!r} from the env process")


class _Codec:
    """Values of one space to bytes and back: a fixed dtype and shape, or one int64 for ``Discrete``."""

    def __init__(self, space: gym.Space):
        self.discrete = isinstance(space, spaces.Discrete)
        self.dtype = np.dtype(np.int64 if self.discrete else space.dtype)
        self.shape = () if self.discrete else tuple(space.shape)
        self.size = int(np.prod(self.shape, dtype=np.int64))

    def encode(self, value: Any) -> bytes:
        a = np.asarray(value, dtype=self.dtype)
        if a.size != self.size:
            raise ValueError(f"expected a value of shape {self.shape}, got shape {a.shape}")
        return a.tobytes()

    def decode(self, buf: bytes, offset: int) -> Any:
        if len(buf) - offset != self.size * self.dtype.itemsize:
            raise ValueError(f"expected {self.size} values of {self.dtype} ({self.shape}), got other bytes")
        a = np.frombuffer(buf, self.dtype, self.size, offset)
        if self.discrete:
            return a[0]
        return a.reshape(self.shape).copy()  # writable, as an env's own array is


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot send a {type(value).__name__} from the env process")


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, default=_json_default, separators=(",", ":")).encode()


def _kind(value: Any) -> str | None:
    """``"b"``, ``"i"`` or ``"f"`` for an ``info`` value that travels as a float64, else None."""
    if isinstance(value, (bool, np.bool_)):
        return "b"
    if isinstance(value, (int, np.integer)) and abs(int(value)) < 2**53:
        return "i"
    if isinstance(value, (float, np.floating)):
        return "f"
    return None


class _Channel:
    """Length-prefixed messages over a socket, read with one ``recv_into`` when they are small."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray(1 << 16)

    def send(self, data: bytes) -> None:
        self.sock.sendall(_LEN.pack(len(data)) + data)

    def recv(self) -> bytes:
        view = memoryview(self.buf)
        got = 0
        while got < 4:
            n = self.sock.recv_into(view[got:])
            if n == 0:
                raise EOFError("the other process closed the channel")
            got += n
        total = 4 + _LEN.unpack_from(self.buf)[0]
        if total > len(self.buf):  # a large message (an image observation): grow once
            view.release()  # a bytearray with a live view cannot be resized
            self.buf.extend(bytes(total - len(self.buf)))
            view = memoryview(self.buf)
        while got < total:
            n = self.sock.recv_into(view[got:total])
            if n == 0:
                raise EOFError("the other process closed the channel")
            got += n
        return bytes(view[4:total])

    def close(self) -> None:
        self.sock.close()


# --------------------------------------------------------------------------------- the env process
class _Slot:
    """One env in the env process, with the codecs of its spaces."""

    def __init__(self, env: gym.Env, test: bool = False):
        self.env, self.test = env, test
        self.obs = _Codec(env.observation_space)
        self.act = _Codec(env.action_space)
        self.keys: tuple[tuple[str, str | None], ...] = ()  # the info keys and kinds sent last
        self.last: tuple[tuple[str, ...], tuple[type, ...]] = ((), ())  # ... and their Python types
        space = env.action_space
        self.bounds = (space.low, space.high) if isinstance(space, spaces.Box) else None

    def inside(self, action: Any) -> bool:
        if self.bounds is None:
            return bool(self.env.action_space.contains(action))
        return bool((action >= self.bounds[0]).all() and (action <= self.bounds[1]).all())

    def pack_info(self, info: Mapping[str, Any]) -> tuple[int, bytes]:
        """``info`` as float64s (their keys and kinds sent only when they change), or as JSON."""
        names, types = tuple(info), tuple(map(type, info.values()))
        if (names, types) == self.last:  # the usual case: the same keys with values of the same types
            return 0, struct.pack(f"<{len(names)}d", *info.values())
        keys = tuple((k, _kind(v)) for k, v in info.items())
        if any(kind is None for _, kind in keys):
            data = _dumps(info)
            return _JSON_INFO, _LEN.pack(len(data)) + data
        values = struct.pack(f"<{len(keys)}d", *info.values())
        self.last = (names, types)
        if keys == self.keys:
            return 0, values
        self.keys = keys
        data = _dumps(keys)
        return _NEW_KEYS, _LEN.pack(len(data)) + data + values

    def spaces(self) -> dict[str, Any]:
        return {
            "observation_space": space_to_json(self.env.observation_space),
            "action_space": space_to_json(self.env.action_space),
        }


class _MetaTest:
    """The meta-test of a run, kept in the env process: tasks in a secret order, and the results."""

    def __init__(self, env_id: str, tier: str, seed: int, n_adapt: int, n_eval: int, success_rule: str):
        groups = meta_test_groups(env_id, tier)
        self.flat = [(split, task) for split, group in groups for task in group]
        # The trials' order: secret, new every run, never sent to the agent's process.
        self.order = np.random.default_rng(secrets.randbits(128)).permutation(len(self.flat))
        self.seed, self.rule, self.env_id = seed, success_rule, env_id
        self.n_adapt, self.n_episodes = n_adapt, n_adapt + n_eval
        self.rows: list[list[dict[str, Any]]] = [[] for _ in self.flat]
        self.trial, self.episode = -1, self.n_episodes  # what was reset last
        self.running = False
        self.ret, self.length, self.success = 0.0, 0, None
        self.aborted = False

    def reset(self, trial: int, episode: int) -> tuple[Task, int]:
        """The task and reset seed of (trial, episode), which must come next in the protocol."""
        if self.aborted:
            raise RunError("meta-testing was aborted")
        if self.running:
            raise RunError("meta-test reset out of order: an episode is still running")
        ok_next = trial == self.trial and episode == self.episode + 1 < self.n_episodes
        ok_new = (
            trial == self.trial + 1 < len(self.flat) and episode == 0 and self.episode == self.n_episodes - 1
        )
        first = self.trial == -1 and trial == 0 and episode == 0
        if not (ok_next or ok_new or first):
            raise RunError(f"meta-test reset out of order: trial {trial} episode {episode}")
        self.trial, self.episode, self.running = trial, episode, True
        self.ret, self.length, self.success = 0.0, 0, None
        split, task = self.flat[int(self.order[trial])]
        return task, episode_seed(self.seed, split, task.index, episode)

    def record(self, reward: float, done: bool, info: Mapping[str, Any]) -> None:
        split, task = self.flat[int(self.order[self.trial])]
        if not math.isfinite(reward):
            raise RunError(f"{self.env_id} returned a non-finite reward {reward} on task {task.index}")
        self.ret += reward
        self.length += 1
        if "success" in info:
            hit = bool(info["success"])
            self.success = hit if self.rule == "final" or self.success is None else (self.success or hit)
        if done:
            self.running = False
            self.rows[int(self.order[self.trial])].append(
                {
                    "split": split,
                    "task_index": int(task.index),
                    "episode": self.episode,
                    "phase": "adapt" if self.episode < self.n_adapt else "eval",
                    "return": self.ret,
                    "success": self.success,
                    "length": self.length,
                }
            )

    def reveal(self) -> dict[str, list[Any]]:
        """The episodes table in the canonical order: only once every trial ran (or after an abort)."""
        complete = (
            self.trial == len(self.flat) - 1 and self.episode == self.n_episodes - 1 and not self.running
        )
        if not (complete or self.aborted):
            raise RunError("meta-test results are given only after the last episode")
        columns: dict[str, list[Any]] = {
            k: [] for k in ("split", "task_index", "episode", "phase", "return", "success", "length")
        }
        for rows in self.rows:
            for row in rows:
                for k, v in row.items():
                    columns[k].append(v)
        return columns


class _Server:
    """What the env process does with each request."""

    def __init__(self, config: Mapping[str, Any]):
        import metabench  # noqa: F401  (registers the ids)

        self.env_id: str = config["env_id"]
        self.oracle = False  # told by the BEGIN request (the agent is made after this process starts)
        self.tier: str = config["tier"]
        self.seed: int = config["seed"]
        self.agent: str = config["agent"]
        self.budget = Budget(config["budget_steps"], config["wall_clock_s"])
        self.cls = env_class(self.env_id)
        self.members = train_members(self.env_id)
        self.counter: StepCounter | None = None
        self.slots: dict[int, _Slot] = {}
        self.next_handle = 1
        self.test: _MetaTest | None = None
        self.test_slot: _Slot | None = None
        self.public = self.cls.public_info_keys

    def _add(self, slot: _Slot) -> int:
        handle = self.next_handle
        self.next_handle += 1
        self.slots[handle] = slot
        return handle

    def _wrap(self, env: gym.Env) -> gym.Env:
        if self.oracle:
            from metabench.wrappers import ExplicitContext

            env = ExplicitContext(env)
        return env

    def handle(self, msg: bytes) -> bytes:
        op, handle = _HEAD.unpack_from(msg)
        if op == _STEP:
            return self.step(self.slots[handle], msg)
        payload = msg[_HEAD.size :]
        if op == _TEST_RESET:
            return self.test_reset(json.loads(payload))
        if op == _RESET:
            args = json.loads(payload)
            task = None if args["task"] is None else Task.from_dict(args["task"])
            options = None if task is None else {"task": task}
            obs, info = self.slots[handle].env.reset(seed=args["seed"], options=options)
            return self._reply({"i": info}, self.slots[handle].obs.encode(obs))
        if op == _SET_TASK:
            task = Task.from_dict(json.loads(payload))
            check_train_task(task, self.members, self.env_id, self.counter)
            self.slots[handle].env.unwrapped.set_task(task)
            return self._reply({})
        if op == _MAKE:
            if self.counter is None or self.counter.closed:
                raise RunError("meta-training envs are made only while meta_train runs")
            env = gym.make(self.env_id)
            # The base env counts, checks tasks and hides info itself: no BudgetedEnv layer needed.
            own_env(env, self.counter, self.members, self.env_id, self.oracle)
            slot = _Slot(self._wrap(env))
            return self._reply({"handle": self._add(slot), **slot.spaces()})
        if op == _CLOSE:
            slot = self.slots.pop(handle, None)
            if slot is not None:
                slot.env.close()
            return self._reply({})
        if op == _BEGIN:
            if self.counter is not None:
                raise RunError("meta-training already began")
            self.oracle = bool(json.loads(payload)["oracle"])
            self.counter = StepCounter(self.budget, self.tier)  # the wall clock starts now
            return self._reply({})
        if op == _END:
            if self.counter is None:
                raise RunError("meta-training never began")
            self.counter.close()  # raises for an overrun the agent swallowed
            return self._reply({"n": self.counter.steps})
        if op == _TEST:
            return self.begin_test()
        if op == _REVEAL:
            if self.test is None:
                raise RunError("meta-testing never began")
            return self._reply({"episodes": self.test.reveal()})
        if op == _ABORT:
            if self.test is not None:
                self.test.aborted = True
            return self._reply({})
        raise RunError(f"unknown request {op!r} to the env process")

    def step(self, slot: _Slot, msg: bytes) -> bytes:
        action = slot.act.decode(msg, _HEAD.size)
        if slot.test:
            assert self.test is not None
            if not self.test.running:
                raise RunError("meta-test step outside an episode: reset the trial's next episode first")
            # The agent's process checked and clipped it already; this only refuses an action sent
            # around that check (NaN fails both comparisons).
            if not slot.inside(action):
                raise InvalidAction(f"agent {self.agent!r} sent an action outside {slot.env.action_space}")
            obs, reward, terminated, truncated, info = slot.env.step(action)
            reward = float(reward)
            self.test.record(reward, bool(terminated or truncated), info)
            info = visible_info(info, self.oracle, self.public)
            n = -1
        else:
            obs, reward, terminated, truncated, info = slot.env.step(action)  # info: already public
            n = self.counter.steps if self.counter is not None else -1
        flags, packed = slot.pack_info(info)
        flags |= (_TERMINATED if terminated else 0) | (_TRUNCATED if truncated else 0)
        head = _STEP_HEAD.pack(b"s", float(reward), flags, n)
        return b"".join((head, packed, slot.obs.encode(obs)))

    def begin_test(self) -> bytes:
        if self.test is not None:
            raise RunError("meta-testing already began")
        if self.counter is None or not self.counter.closed:
            raise RunError("meta-testing begins after meta-training ended")
        cls = self.cls
        self.test = _MetaTest(
            self.env_id, self.tier, self.seed, int(cls.n_adapt), int(cls.n_eval), str(cls.success_rule)
        )
        slot = _Slot(self._wrap(gym.make(self.env_id)), test=True)
        self.test_slot = slot
        handle = self._add(slot)
        return self._reply({"handle": handle, "trials": len(self.test.flat), **slot.spaces()})

    def test_reset(self, args: Mapping[str, Any]) -> bytes:
        assert self.test is not None and self.test_slot is not None, "meta-testing never began"
        task, seed = self.test.reset(int(args["trial"]), int(args["episode"]))
        obs, info = self.test_slot.env.reset(seed=seed, options={"task": task})
        return self._reply(
            {"i": visible_info(info, self.oracle, self.public)}, self.test_slot.obs.encode(obs)
        )

    def error(self, exc: BaseException) -> bytes:
        n = self.counter.steps if self.counter is not None else None
        return self._reply({"type": type(exc).__name__, "message": str(exc), "n": n}, status=b"e")

    @staticmethod
    def _reply(head: Mapping[str, Any], body: bytes = b"", status: bytes = b"o") -> bytes:
        data = _dumps(head)
        return b"".join((status, _LEN.pack(len(data)), data, body))

    def close(self) -> None:
        for slot in self.slots.values():
            try:
                slot.env.close()
            except Exception:  # closing at exit must not hide anything
                pass
        self.slots.clear()


def serve(channel: _Channel) -> None:
    """The env process's loop: the run's config first, then answer requests until told to quit or
    the channel closes."""
    try:
        server = _Server(json.loads(channel.recv()))
    except Exception as exc:
        channel.send(_Server._reply({"type": type(exc).__name__, "message": str(exc)}, status=b"e"))
        return
    channel.send(_Server._reply({}))
    try:
        while True:
            try:
                msg = channel.recv()
            except (EOFError, OSError):
                break
            if msg[:1] == _QUIT:
                break
            try:
                reply = server.handle(msg)
            except Exception as exc:
                reply = server.error(exc)
            channel.send(reply)
    finally:
        server.close()


def main(fd: int) -> None:
    """Entry point of the env process: serve on the inherited socket ``fd``."""
    channel = _Channel(socket.socket(fileno=fd))
    try:
        serve(channel)
    finally:
        channel.close()


# ----------------------------------------------------------------------------- the agent's process
class EnvServer:
    """The agent's side of one run's env process: starts it, sends requests, raises its errors.

    The env process is a new interpreter (``subprocess``, not ``fork``: it inherits nothing of the
    agent's memory, and not ``multiprocessing``'s spawn, which pickles and re-imports ``__main__``)
    that talks over a socket pair. ``steps`` is its meta-training count as of its last answer.
    """

    def __init__(self, env_id: str, *, budget: Budget, tier: str, seed: int, agent: str):
        config = {
            "env_id": env_id,
            "budget_steps": int(budget.env_steps),
            "wall_clock_s": budget.wall_clock_s,
            "tier": tier,
            "seed": int(seed),
            "agent": agent,
        }
        self.env_id = env_id
        self.steps = 0
        ours, theirs = socket.socketpair()
        code = "import sys; from metabench.isolation import main; main(int(sys.argv[1]))"
        fd = theirs.fileno()
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code, str(fd)], pass_fds=(fd,), stdin=subprocess.DEVNULL
        )
        theirs.close()
        self._channel = _Channel(ours)
        self._channel.send(_dumps(config))
        self._lock = threading.Lock()
        self._ready = False
        self._closed = False
        self._keys: dict[int, list[tuple[str, Callable[[float], Any]]]] = {}

    def _recv(self) -> bytes:
        try:
            return self._channel.recv()
        except (EOFError, OSError) as exc:
            try:
                code = self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
            raise RunError(f"the env process of {self.env_id} died (exit code {code})") from exc

    def _parse(self, buf: bytes) -> tuple[dict[str, Any], int]:
        (n,) = _LEN.unpack_from(buf, 1)
        head = json.loads(buf[5 : 5 + n])
        if buf[0] == _ERR:
            if head.get("n") is not None:
                self.steps = int(head["n"])
            kind = _ERRORS.get(head["type"])
            if kind is None:
                raise RunError(f"{head['type']}: {head['message']}")
            raise kind(head["message"])
        return head, 5 + n

    def _exchange(self, msg: bytes) -> bytes:
        if self._closed:
            raise RunError("the env process of this run has been closed")
        with self._lock:
            if not self._ready:
                self._parse(self._recv())
                self._ready = True
            self._channel.send(msg)
            return self._recv()

    def request(self, op: bytes, handle: int = 0, payload: bytes = b"") -> tuple[dict[str, Any], bytes, int]:
        """Send one request; its JSON header, the whole reply and where its body starts."""
        buf = self._exchange(_HEAD.pack(op, handle) + payload)
        head, offset = self._parse(buf)
        return head, buf, offset

    def step(
        self, handle: int, action: bytes, codec: _Codec
    ) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """One step of env ``handle``: (obs, reward, terminated, truncated, public info)."""
        buf = self._exchange(_HEAD.pack(_STEP, handle) + action)
        if buf[0] != _STEPPED:
            self._parse(buf)  # raises the env process's error
        _, reward, flags, n = _STEP_HEAD.unpack_from(buf)
        if n >= 0:
            self.steps = n
        offset = _STEP_HEAD.size
        if flags & _JSON_INFO:
            (size,) = _LEN.unpack_from(buf, offset)
            info = json.loads(buf[offset + 4 : offset + 4 + size])
            offset += 4 + size
        else:
            if flags & _NEW_KEYS:
                (size,) = _LEN.unpack_from(buf, offset)
                keys = json.loads(buf[offset + 4 : offset + 4 + size])
                self._keys[handle] = [(k, _KINDS[kind]) for k, kind in keys]
                offset += 4 + size
            keys = self._keys.get(handle, [])
            values = struct.unpack_from(f"<{len(keys)}d", buf, offset)
            info = {k: kind(v) for (k, kind), v in zip(keys, values, strict=True)}
            offset += 8 * len(keys)
        return (
            codec.decode(buf, offset),
            reward,
            bool(flags & _TERMINATED),
            bool(flags & _TRUNCATED),
            info,
        )

    def begin_training(self, oracle: bool) -> None:
        """Start meta-training (and its wall clock) in the env process; oracles get ExplicitContext."""
        self.request(_BEGIN, 0, _dumps({"oracle": bool(oracle)}))

    def end_training(self) -> int:
        """End meta-training in the env process: its step count, or its BudgetExceeded."""
        head, _, _ = self.request(_END)
        self.steps = int(head["n"])
        return self.steps

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            with self._lock:
                self._channel.send(_HEAD.pack(_QUIT, 0))
        except OSError:
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=5)
        self._channel.close()

    def __reduce__(self) -> Any:
        raise RunError("an isolated run's env process cannot be pickled; step its envs in this process")


class IsolatedEnv(gym.Env):
    """A meta-training env that lives in the env process: what a Gymnasium user sees, and no more."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, server: EnvServer, head: Mapping[str, Any], on_step: Callable[[int], None]):
        self._server, self._handle, self._on_step = server, int(head["handle"]), on_step
        self.observation_space = space_from_json(head["observation_space"])
        self.action_space = space_from_json(head["action_space"])
        self._obs, self._act = _Codec(self.observation_space), _Codec(self.action_space)
        self.spec = gym.spec(server.env_id)
        self._closed = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        task = options.pop("task", None)
        if options:
            raise RunError(f"an isolated env takes only options={{'task': ...}}, not {sorted(options)}")
        if task is not None and not isinstance(task, Task):
            raise TaskError(f"{self._server.env_id} expects a metabench.Task, got {type(task).__name__}")
        args = {"seed": seed, "task": None if task is None else task.to_dict()}
        head, buf, offset = self._server.request(_RESET, self._handle, _dumps(args))
        return self._obs.decode(buf, offset), head["i"]

    def step(self, action: Any):
        try:
            data = self._act.encode(action)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"action {action!r:.80} does not fit {self.action_space}: {exc}") from exc
        out = self._server.step(self._handle, data, self._obs)
        self._on_step(self._server.steps)
        return out

    def set_task(self, task: Task) -> None:
        """Fix the task (a train task) for the following episodes, as ``MetaEnv.set_task``."""
        if not isinstance(task, Task):
            raise TaskError(f"{self._server.env_id} expects a metabench.Task, got {type(task).__name__}")
        self._server.request(_SET_TASK, self._handle, _dumps(task.to_dict()))

    def render(self) -> None:
        return None

    def close(self) -> None:
        if not self._closed and not self._server._closed:
            self._server.request(_CLOSE, self._handle)
        self._closed = True

    def __reduce__(self) -> Any:
        raise RunError(
            "an isolated env cannot be pickled: step it in the agent's own process "
            "(e.g. stable_baselines3 DummyVecEnv, not SubprocVecEnv)"
        )


class IsolatedEnvFactory:
    """The ``make_env`` of an isolated run: a new env in the env process per call.

    ``counter`` (the harness's, in this process) mirrors the env process's count, for progress bars
    and for the record of a run that fails half-way; the count that matters is the env process's.
    """

    def __init__(self, server: EnvServer, counter: StepCounter):
        self.server, self.counter = server, counter
        cls = env_class(server.env_id)
        attrs = {name: getattr(cls, name) for name in _PUBLIC_ATTRS}
        attrs["__doc__"] = f"{server.env_id} in an env process (metabench --isolate)."
        self.env_class = type(f"Isolated{cls.__name__}", (IsolatedEnv,), attrs)

    def _on_step(self, steps: int) -> None:
        self.counter.steps = steps
        if self.counter.on_step is not None:
            self.counter.on_step()

    def __call__(self) -> gym.Env:
        head, _, _ = self.server.request(_MAKE)
        return self.env_class(self.server, head, self._on_step)

    def __reduce__(self) -> Any:
        raise RunError(
            "make_env cannot be pickled: meta-training envs must be stepped in the agent's own process "
            "(e.g. stable_baselines3 DummyVecEnv, not SubprocVecEnv) so that the budget is counted"
        )


def meta_test(
    agent: Any,
    server: EnvServer,
    name: str,
    n_adapt: int,
    n_eval: int,
    *,
    on_trial: Callable[[], None],
    store: Callable[[dict[str, list[Any]]], None],
) -> None:
    """Meta-test ``agent`` against the env process: per trial, in the env process's secret order,
    ``begin_trial``, ``n_adapt`` exploring and ``n_eval`` evaluation episodes.

    ``store`` gets the episodes table (canonical order) after the last episode, or the episodes that
    finished when something fails (then the exception propagates).
    """
    head, _, _ = server.request(_TEST)
    handle, trials = int(head["handle"]), int(head["trials"])
    obs_codec = _Codec(space_from_json(head["observation_space"]))
    act_space = space_from_json(head["action_space"])
    act_codec = _Codec(act_space)
    check = ActionCheck(act_space, name)
    try:
        for trial in range(trials):
            agent.begin_trial()
            for episode in range(n_adapt + n_eval):
                explore = episode < n_adapt
                args = _dumps({"trial": trial, "episode": episode})
                _, buf, offset = server.request(_TEST_RESET, 0, args)
                obs = obs_codec.decode(buf, offset)
                done = False
                while not done:
                    action = check(agent.act(obs, explore=explore))
                    next_obs, reward, terminated, truncated, info = server.step(
                        handle, act_codec.encode(action), obs_codec
                    )
                    done = terminated or truncated
                    agent.observe(Transition(obs, action, reward, next_obs, terminated, truncated, info))
                    obs = next_obs
                agent.end_episode()
            on_trial()
    except BaseException:
        try:
            server.request(_ABORT)
            store(server.request(_REVEAL)[0]["episodes"])
        except Exception:  # the env process is gone: nothing more to record
            pass
        raise
    store(server.request(_REVEAL)[0]["episodes"])


__all__ = [
    "EnvServer",
    "IsolatedEnv",
    "IsolatedEnvFactory",
    "meta_test",
    "serve",
    "space_from_json",
    "space_to_json",
]
