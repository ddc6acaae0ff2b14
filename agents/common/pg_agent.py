"""The agent shell that the gradient-adaptation agents share (MAML, Meta-SGD, MAESN, TESP).

Each of the four is a :class:`PGAgent` with its own ``Config`` (the method's hyperparameters, on top of
:class:`RunSettings`), its own ``setup`` and ``meta_iteration`` (the inner and outer loop) and its own
meta-test adaptation. What is the same in all four, around those, is written once here:

* :class:`RunSettings`: the Config fields about how an agent runs, not what it learns;
* :meth:`PGAgent.meta_train`: meta-iterations on meta-batches of train tasks drawn from ``seed`` while
  another one fits the budget, the sampling envs closed at the end;
* the sampling plumbing: :meth:`PGAgent._probe`, :meth:`PGAgent._sampling_envs`,
  :meth:`PGAgent._sample_episodes`, :meth:`PGAgent._batch`;
* the meta-test protocol around the agent's own adaptation: :meth:`PGAgent.act` (a sampled or the mode
  action of the policy, on whatever :meth:`PGAgent._policy_outputs` conditions it), :meth:`PGAgent.observe`
  (exploration steps kept in a :class:`~.policy_gradient.TrialEpisodes`) and
  :meth:`PGAgent._adaptation_episodes` (every ``episodes_per_step`` of them, the batch of an inner step);
* persistence: ``agent.json`` (config, spaces, counters, generator state) and :func:`save_networks` /
  :func:`load_networks` (several networks in one state dict, keys prefixed by network).

On top, :class:`PolicyAdaptingAgent` is the meta-test that MAML and Meta-SGD share: both adapt the
policy's own parameters (MAESN adapts a latent distribution and TESP an encoder, each its own way).
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from metabench.agents.common import policy_gradient as pg
from metabench.agents.common.policy_gradient import Batch, MLPPolicy, Params, Spaces
from metabench.agents.common.spaces import space_from_dict, space_to_dict
from metabench.protocol import Budget, Logger, Transition
from metabench.tasks import Task


@dataclasses.dataclass
class RunSettings:
    """The Config fields about how an agent runs, not what it learns (every agent's Config extends it)."""

    meta_iterations: int | None = None
    """Cap on meta-iterations; ``None`` means as many as the budget allows."""
    n_envs: int = 0
    """Envs stepped together; 0 means one per trajectory of a meta-batch (rounded to whole tasks)."""
    disable_updates: bool = False
    """Skip the outer (meta) update: sampling, inner steps and the outer step's solve still run. For tests."""
    torch_threads: int = 1
    device: str = "cpu"


class PGConfig(Protocol):
    """What :class:`PGAgent` reads of an agent's Config: :class:`RunSettings` and these hyperparameters."""

    trajectories_per_task: int
    meta_batch_size: int
    gamma: float
    gae_lambda: float
    baseline_reg: float
    center_advantages: bool
    meta_iterations: int | None
    n_envs: int
    torch_threads: int
    device: str


class PGAgent:
    """A gradient-adaptation agent's shell (see the module docstring).

    A subclass sets ``name`` and writes ``setup``, ``meta_iteration`` and ``_batches_per_iteration`` (meta-
    training), ``_policy_outputs``, ``begin_trial`` and ``end_episode`` (meta-test), ``save`` and ``load``.
    """

    name: ClassVar[str] = "this agent"
    """The method's name, in messages."""
    oracle: ClassVar[bool] = False
    config: PGConfig

    def __init__(self, config: PGConfig) -> None:
        self.config = config
        self.spaces: Spaces | None = None
        self.policy: MLPPolicy | None = None
        self.generator = torch.Generator()
        self.episodes_per_step = 1
        self.iterations = 0
        self._horizon = self._k = 0
        # meta-test state: the trial's exploration episodes, the last step, inner steps taken
        self._trial = pg.TrialEpisodes()
        self._explore = False
        self._last: tuple[np.ndarray, ...] | None = None
        self._steps_taken = 0

    def policy_params(self) -> Params:
        """The policy's parameters, detached (for functional calls)."""
        assert self.policy is not None
        return {k: v.detach() for k, v in self.policy.named_parameters()}

    # ------------------------------------------------------------------------------ meta-training
    def meta_train(
        self,
        make_env: Callable[[], gym.Env],
        tasks: Sequence[Task],
        budget: Budget,
        *,
        seed: int,
        log: Logger,
    ) -> None:
        """As many meta-iterations as the budget allows (``meta_iterations`` caps them), never stepping
        past it, each on ``meta_batch_size`` train tasks drawn (from ``seed``) with replacement only
        when there are fewer train tasks than that."""
        cfg = self.config
        torch.set_num_threads(cfg.torch_threads)
        if len(tasks) == 0:
            raise ValueError(f"{self.name}.meta_train needs at least one train task")
        rng = np.random.default_rng(seed)
        envs = self._setup_meta_training(make_env, seed, len(tasks))
        m = cfg.meta_batch_size

        def iteration() -> dict[str, float]:
            idx = rng.choice(len(tasks), size=m, replace=len(tasks) < m)
            return self._meta_iteration_on(envs, tasks, idx)

        try:  # an upper bound per iteration: episodes may end early
            per_iteration = self._batches_per_iteration() * m * self._k * self._horizon
            pg.run_meta_training(
                iteration, per_iteration, budget.env_steps, cfg.meta_iterations, lambda: self.iterations, log
            )
        finally:
            for env in envs:
                env.close()
        self.begin_trial()

    def setup(self, make_env: Callable[[], gym.Env], seed: int) -> list[gym.Env]:
        """Build the networks (initial weights from ``seed``); return the sampling envs (seeded)."""
        raise NotImplementedError

    def meta_iteration(self, envs: list[gym.Env], tasks: Sequence[Task]) -> dict[str, float]:
        """One meta-iteration on ``tasks``; returns what to log, with the ``env_steps`` it used."""
        raise NotImplementedError

    def _batches_per_iteration(self) -> int:
        """Batches of ``K`` episodes per task that one meta-iteration samples."""
        raise NotImplementedError

    def _setup_meta_training(self, make_env: Callable[[], gym.Env], seed: int, n_tasks: int) -> list[gym.Env]:
        """:meth:`setup` before meta-training on ``n_tasks`` train tasks."""
        return self.setup(make_env, seed)

    def _meta_iteration_on(
        self, envs: list[gym.Env], tasks: Sequence[Task], idx: np.ndarray
    ) -> dict[str, float]:
        """:meth:`meta_iteration` on the train tasks ``idx``."""
        return self.meta_iteration(envs, [tasks[int(i)] for i in idx])

    def _probe(self, make_env: Callable[[], gym.Env], seed: int) -> tuple[gym.Env, Spaces, int]:
        """Seed the generator; the first env, its spaces and its family's ``n_adapt`` (sets the horizon)."""
        self.generator.manual_seed(seed)
        probe = make_env()
        self._horizon, n_adapt = pg.episode_spec(probe, self.name)
        return probe, Spaces(probe.observation_space, probe.action_space, self.name), n_adapt

    def _sampling_envs(self, make_env: Callable[[], gym.Env], probe: gym.Env, seed: int) -> list[gym.Env]:
        """Set ``K``, the episodes per task of a batch (``trajectories_per_task``, or 0:
        ``episodes_per_step``); return the envs that sample them, ``probe`` first, seeded."""
        cfg = self.config
        k = self._k = cfg.trajectories_per_task or self.episodes_per_step
        return pg.make_envs(make_env, probe, pg.n_sampling_envs(cfg.n_envs, k, cfg.meta_batch_size), seed)

    def _sample_episodes(
        self, envs: list[gym.Env], tasks: Sequence[Task], forward: pg.Forward
    ) -> tuple[np.ndarray, ...]:
        """``K`` episodes of each task acting with ``forward``: (obs, act, rew, mask), (tasks, K, T, ...)."""
        assert self.spaces is not None
        return pg.sample_episodes(
            envs, tasks, self._k, self._horizon, self.spaces, forward, self.generator, self.config.device
        )

    def _batch(self, obs: np.ndarray, act: np.ndarray, rew: np.ndarray, mask: np.ndarray) -> Batch:
        """Episodes as a :class:`~.policy_gradient.Batch`, advantages from the Config's γ, λ and baseline."""
        cfg = self.config
        return pg.make_batch(
            obs, act, rew, mask, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda, reg=cfg.baseline_reg,
            center=cfg.center_advantages, device=cfg.device,
        )  # fmt: skip

    # -------------------------------------------------------------------------------- meta-testing
    def begin_trial(self) -> None:
        """Forget the trial's episodes (a subclass also restores its meta-learned starting point)."""
        self._steps_taken = 0
        self._trial = pg.TrialEpisodes()
        self._last = None

    def _policy_outputs(self, obs: torch.Tensor, explore: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The policy's outputs on one encoded observation as the trial now stands, and its log-std
        (``None`` for ``Discrete``)."""
        raise NotImplementedError

    def _step_record(self, out: torch.Tensor, log_std: torch.Tensor | None) -> tuple[np.ndarray, ...]:
        """What an exploration step keeps besides (observation, action, reward): nothing by default."""
        return ()

    def act(self, obs: Any, *, explore: bool) -> Any:
        """A sampled action when ``explore``, else the mode (the mean, or the argmax for ``Discrete``)."""
        if self.policy is None or self.spaces is None:
            raise RuntimeError(f"{type(self).__name__}.act called before meta_train or load")
        x = self.spaces.encode_obs(obs)
        with torch.no_grad():
            out, log_std = self._policy_outputs(torch.as_tensor(x, device=self.config.device), explore)
            if explore:
                a = pg.sample_actions(self.spaces.discrete, out, log_std, self.generator)
            else:
                a = out.argmax() if self.spaces.discrete else out
            action = np.asarray(a.cpu().numpy(), np.float32)
            record = self._step_record(out, log_std)
        self._explore = explore
        self._last = (x, action, *record)
        return self.spaces.to_env_action(action)

    def observe(self, transition: Transition) -> None:
        """Keep an exploration step: (observation, action, reward, what ``_step_record`` gave)."""
        if self._last is None:
            raise RuntimeError(f"{type(self).__name__}.observe called without a preceding act")
        if self._explore:
            x, action, *record = self._last
            self._trial.add_step(x, action, float(transition.reward), *record)

    def _adaptation_episodes(self, max_steps: int) -> list[tuple[np.ndarray, ...]] | None:
        """End the current episode, kept only if it explored. Once ``episodes_per_step`` are kept and
        fewer than ``max_steps`` inner steps were taken, return them for the next one (counted)."""
        if not self._explore:
            self._trial.drop_current()
        self._trial.end()
        if self._steps_taken >= max_steps or len(self._trial.done) < self.episodes_per_step:
            return None
        self._steps_taken += 1
        return self._trial.take()

    # -------------------------------------------------------------------------------- persistence
    def _save_agent_json(self, path: str | Path, *networks: nn.Module | None, **extra: Any) -> Path:
        """Create the directory ``path`` and write ``agent.json`` there (config, spaces, counters,
        generator state and ``extra``); returns it. Raises unless the policy and ``networks`` are built."""
        if self.policy is None or self.spaces is None or any(n is None for n in networks):
            raise RuntimeError(f"{type(self).__name__}.save called before meta_train")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "config": dataclasses.asdict(self.config),
            "observation_space": space_to_dict(self.spaces.observation_space),
            "action_space": space_to_dict(self.spaces.action_space),
            "episodes_per_step": self.episodes_per_step,
            "iterations": self.iterations,
            "generator_state": base64.b64encode(self.generator.get_state().numpy().tobytes()).decode(),
            **extra,
        }
        (path / "agent.json").write_text(json.dumps(meta, indent=1))
        return path

    @classmethod
    def _load_agent_json(cls, path: str | Path, config_class: type[Any]) -> tuple[Self, dict[str, Any]]:
        """An agent as ``agent.json`` in ``path`` describes it (config, spaces, counters, generator
        state), its networks not built yet; and the file's contents."""
        meta = json.loads((Path(path) / "agent.json").read_text())
        config = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()}
        agent = cls(config_class(**config))
        agent.spaces = Spaces(
            space_from_dict(meta["observation_space"]), space_from_dict(meta["action_space"]), cls.name
        )
        agent.episodes_per_step = int(meta["episodes_per_step"])
        agent.iterations = int(meta["iterations"])
        gen = np.frombuffer(base64.b64decode(meta["generator_state"]), dtype=np.uint8).copy()
        agent.generator.set_state(torch.from_numpy(gen))
        return agent, meta


class PolicyAdaptingAgent(PGAgent):
    """A :class:`PGAgent` whose meta-test adapts the policy's own parameters (MAML, Meta-SGD).

    ``begin_trial`` restores θ; every ``episodes_per_step`` exploration episodes ``end_episode`` takes
    :meth:`_test_step` from the current adapted parameters, up to :meth:`_test_steps` times; the policy
    acts with the adapted parameters. A subclass writes those two.
    """

    def __init__(self, config: PGConfig) -> None:
        super().__init__(config)
        self._params: Params = {}  # meta-test: the trial's adapted parameters

    def meta_params(self) -> Params:
        """θ, detached."""
        return self.policy_params()

    def begin_trial(self) -> None:
        """Restore the meta-learned parameters; forget the trial's episodes."""
        super().begin_trial()
        self._params = self.meta_params() if self.policy is not None else {}

    def _policy_outputs(self, obs: torch.Tensor, explore: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        return functional_call(self.policy, self._params, (obs,)), self._params.get("log_std")

    def end_episode(self) -> None:
        """After an adaptation episode: keep it; every ``episodes_per_step`` of them, one inner step."""
        episodes = self._adaptation_episodes(self._test_steps())
        if episodes is not None:
            self._params = self._test_step(self._params, episodes)

    def _test_steps(self) -> int:
        """How many inner steps a meta-test trial takes at most."""
        raise NotImplementedError

    def _test_step(self, params: Params, episodes: list[tuple[np.ndarray, ...]]) -> Params:
        """One meta-test inner step from ``params`` on a trial's episodes (observation, action, reward)."""
        raise NotImplementedError


def save_networks(file: Path, **networks: nn.Module | None) -> None:
    """Every network's state dict in one file, keys prefixed by its name (``policy.net.0.weight``)."""
    state: dict[str, torch.Tensor] = {}
    for name, network in networks.items():
        assert network is not None
        state.update({f"{name}.{k}": v for k, v in network.state_dict().items()})
    torch.save(state, file)


def load_networks(file: Path, device: str, **networks: nn.Module | None) -> None:
    """Load what :func:`save_networks` wrote into the same networks (``torch.load(weights_only=True)``)."""
    state = torch.load(file, map_location=device, weights_only=True)
    for name, network in networks.items():
        assert network is not None
        prefix = f"{name}."
        network.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
