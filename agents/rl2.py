"""RL²: a recurrent policy whose memory spans the episodes of a trial (Duan et al., 2016).

"RL²: Fast Reinforcement Learning via Slow Reinforcement Learning" (arXiv:1611.02779); the
hyperparameters are those of Meta-World's RL² runs (Yu et al., 2019, garage's ``RL2PPO``:
``examples/tf/rl2_ppo_metaworld_ml10.py``).

The policy reads ``(obs, previous action, previous reward, done flag)`` at every step and keeps its
recurrent state across the episodes of a trial; only :meth:`RL2Agent.begin_trial` resets it. So the
agent adapts by memory alone: no gradient step at meta-test.

Training uses sb3-contrib's ``RecurrentPPO``, which resets the LSTM at every Gym episode start. The
family is therefore wrapped in :class:`TrialEnv`, under which one Gym episode is a whole trial of
``n = n_adapt + n_eval`` episodes (the family's protocol, as the harness will run it) on one train task:
the inner resets happen inside the wrapper and the done flag is part of the observation. Each trial
draws its train task from the tasks ``meta_train`` is given, with the wrapper's seeded generator.

Encoding (the same in training and at meta-test): a ``Box`` observation is flattened, a ``Discrete``
one is one-hot; the previous action is the policy's action in ``[-1, 1]`` (``Box`` actions are
rescaled to the env's bounds, the usual normalisation for a Gaussian policy) or one-hot for
``Discrete``; then the previous reward and the done flag (1 when the previous step ended an episode).
At a trial's first step the previous action, reward and flag are zeros.

Published settings (Meta-World / garage) and where ours differ:

* GRU with 256 units there; ``RecurrentPPO`` has an LSTM, so we use an LSTM of 256 units (one layer,
  separate actor and critic LSTMs; garage's critic was a (128, 128) Gaussian MLP baseline).
* PPO: discount 0.99, GAE λ 0.95, clip 0.2, learning rate 5e-4, 10 epochs, entropy 5e-6,
  10 trials per update (meta-batch 10): all as published. garage's advantages were not centred and
  its rewards normalised; we use SB3's defaults (advantage normalisation) and ``VecNormalize`` on
  rewards only (the reward the policy *reads* stays raw).
* Minibatches: SB3 cuts the rollout into sequences at trial starts; ``batch_size`` (env steps) is
  one trial by default.
* The ``ci`` tier trades the published settings for speed of learning on budgets of 10⁴–10⁵ steps:
  an LSTM of 64 units, 8 trials per update, learning rate 3e-3, discount 0.9 and GAE λ 0.5 (shorter
  credit assignment, lower-variance advantages); with the published values RL² had not learnt to
  adapt on PointNav. At the ci budgets it adapts on PointNav and Bandit, not on TabularMDP. What was
  measured: ``docs/agents/rl2.md``.
  The ``smoke`` tier (16 units, 2 trials, 2 epochs) only checks that things run.

Reproducibility: ``RecurrentPPO(seed=...)`` calls SB3's ``set_random_seed``, which seeds Python's,
NumPy's and torch's *global* generators: process-global, acceptable inside a harness run. Acting at
meta-test samples with the agent's own ``torch.Generator`` (seeded from the run's seed, saved with the
agent), so a loaded agent draws the same actions as the one saved.

``save(path)`` writes a directory: ``agent.json`` (config, spaces, trial length, generator state) and
SB3's ``model.zip``. ``load`` reads only the policy weights from the zip (``torch.load`` with
``weights_only=True``, through SB3's ``load_from_zip_file(load_data=False)``) and rebuilds the policy
from the JSON, so loading unpickles nothing.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor, VecNormalize

from metabench.agents.common.spaces import space_from_dict, space_to_dict
from metabench.protocol import Budget, Logger, Transition
from metabench.tasks import Task


@dataclasses.dataclass
class Config:
    """RL² hyperparameters; defaults are Meta-World's RL² runs (see the module docstring)."""

    lstm_hidden_size: int = 256
    n_lstm_layers: int = 1
    net_arch: tuple[int, ...] = ()
    """MLP layers between the LSTM and the action/value heads (garage's GRU policy had none)."""
    learning_rate: float = 5e-4
    n_envs: int = 10
    """Trials collected in parallel (garage's meta-batch size)."""
    n_steps: int = 0
    """Env steps per env per update; 0 means one trial."""
    batch_size: int = 0
    """Minibatch size in env steps; 0 means one trial."""
    n_epochs: int = 10
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 5e-6
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    normalize_reward: bool = True
    episodes_per_trial: int = 0
    """Episodes per training trial; 0 means the family's ``n_adapt + n_eval``."""
    total_timesteps: int | None = None
    """Env steps to train for; ``None`` means the whole budget. Never more than the budget."""
    disable_updates: bool = False
    """Train with learning rate 0 (the updates' compute is spent, nothing changes): for tests."""
    log_every: int = 2_000
    torch_threads: int = 1
    device: str = "cpu"


# Tier settings: agents/hyperparams/rl2.toml (metabench.protocol.build_config).


# ------------------------------------------------------------------------------ input encoding
class Encoder:
    """Builds the policy input ``(obs, prev action, prev reward, done)`` and maps actions.

    The policy acts in ``[-1, 1]^d`` for ``Box`` action spaces (rescaled to the env's bounds) and in
    the env's own ``Discrete`` space otherwise.
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space):
        for name, space in (("observation", observation_space), ("action", action_space)):
            if not isinstance(space, (spaces.Box, spaces.Discrete)):
                raise TypeError(f"RL² supports Box and Discrete {name} spaces, got {space}")
        if isinstance(action_space, spaces.Box) and not (
            np.isfinite(action_space.low).all() and np.isfinite(action_space.high).all()
        ):
            raise TypeError(f"RL² needs a bounded Box action space, got {action_space}")
        self.observation_space, self.action_space = observation_space, action_space
        if isinstance(observation_space, spaces.Discrete):
            self.obs_dim = int(observation_space.n)
        else:
            self.obs_dim = int(np.prod(observation_space.shape))
        if isinstance(action_space, spaces.Discrete):
            self.act_dim = int(action_space.n)
            self.policy_action_space: spaces.Space = spaces.Discrete(action_space.n)
        else:
            self.act_dim = int(np.prod(action_space.shape))
            self.policy_action_space = spaces.Box(-1.0, 1.0, action_space.shape, np.float32)
        size = self.obs_dim + self.act_dim + 2
        self.input_space = spaces.Box(-np.inf, np.inf, (size,), np.float32)

    def encode(self, obs: Any, prev_action: np.ndarray, prev_reward: float, done: bool) -> np.ndarray:
        """``prev_action`` is already encoded (see :meth:`encode_action`)."""
        if isinstance(self.observation_space, spaces.Discrete):
            o = np.zeros(self.obs_dim, np.float32)
            o[int(obs) - self.observation_space.start] = 1.0
        else:
            o = np.asarray(obs, np.float32).ravel()
        return np.concatenate([o, prev_action, [prev_reward, float(done)]]).astype(np.float32)

    def encode_action(self, policy_action: Any) -> np.ndarray:
        if isinstance(self.action_space, spaces.Discrete):
            a = np.zeros(self.act_dim, np.float32)
            a[int(policy_action)] = 1.0
            return a
        return np.clip(np.asarray(policy_action, np.float32).ravel(), -1.0, 1.0)

    def zero_action(self) -> np.ndarray:
        return np.zeros(self.act_dim, np.float32)

    def to_env_action(self, policy_action: Any) -> Any:
        if isinstance(self.action_space, spaces.Discrete):
            return int(policy_action) + int(self.action_space.start)
        low, high = self.action_space.low, self.action_space.high
        a = np.clip(np.asarray(policy_action, np.float64).reshape(self.action_space.shape), -1.0, 1.0)
        return (low + 0.5 * (a + 1.0) * (high - low)).astype(self.action_space.dtype)


# ----------------------------------------------------------------------------------- the wrapper
class TrialEnv(gym.Env):
    """One Gym episode = one trial: ``episodes_per_trial`` episodes of ``env`` on one train task.

    Each trial draws a task from ``tasks`` with the wrapper's generator (seeded by ``reset(seed=)``)
    and passes it as ``reset(options={"task": t})`` to every inner episode. The observation is
    :class:`Encoder`'s; the reward is the inner env's; the trial ends (``terminated``) after its last
    inner episode. ``info`` is the inner step's, plus ``inner_episode`` (its index in the trial).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, env: gym.Env, tasks: Sequence[Task], episodes_per_trial: int):
        if episodes_per_trial < 1:
            raise ValueError(f"episodes_per_trial must be >= 1, got {episodes_per_trial}")
        if len(tasks) == 0:
            raise ValueError("TrialEnv needs at least one train task")
        self.env, self.tasks, self.episodes_per_trial = env, list(tasks), episodes_per_trial
        self.encoder = Encoder(env.observation_space, env.action_space)
        self.observation_space = self.encoder.input_space
        self.action_space = self.encoder.policy_action_space
        self._rng = np.random.default_rng()
        self._task: Task | None = None
        self._episode = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._task = self.tasks[int(self._rng.integers(len(self.tasks)))]
        self._episode = 0
        obs, info = self.env.reset(seed=seed, options={"task": self._task})
        return self.encoder.encode(obs, self.encoder.zero_action(), 0.0, False), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(self.encoder.to_env_action(action))
        prev = self.encoder.encode_action(action)
        info = {**info, "inner_episode": self._episode}
        if not (terminated or truncated):
            return self.encoder.encode(obs, prev, float(reward), False), reward, False, False, info
        self._episode += 1
        if self._episode >= self.episodes_per_trial:
            return self.encoder.encode(obs, prev, float(reward), True), reward, True, False, info
        obs, _ = self.env.reset(options={"task": self._task})
        return self.encoder.encode(obs, prev, float(reward), True), reward, False, False, info

    def close(self) -> None:
        self.env.close()


class TrialLstmPolicy(RecurrentActorCriticPolicy):
    """SB3's LSTM actor-critic with one change: a sequence whose only episode start is its first step
    runs through the LSTM in one call (states zeroed where it starts an episode) instead of SB3's
    step-by-step loop. The result is the same; training on trials of hundreds of steps gets ~10x
    faster. SB3's rollout buffer cuts sequences at episode starts, so this is the usual case.
    """

    @staticmethod
    def _process_sequence(
        features: torch.Tensor,
        lstm_states: tuple[torch.Tensor, torch.Tensor],
        episode_starts: torch.Tensor,
        lstm: torch.nn.LSTM,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        n_seq = lstm_states[0].shape[1]
        starts = episode_starts.reshape((n_seq, -1)).swapaxes(0, 1)  # (length, n_seq)
        if torch.any(starts[1:] != 0.0):
            return RecurrentActorCriticPolicy._process_sequence(features, lstm_states, episode_starts, lstm)
        keep = (1.0 - starts[0]).view(1, n_seq, 1)
        sequence = features.reshape((n_seq, -1, lstm.input_size)).swapaxes(0, 1)
        output, states = lstm(sequence, (keep * lstm_states[0], keep * lstm_states[1]))
        return torch.flatten(output.transpose(0, 1), start_dim=0, end_dim=1), states


def _trial_env(make_env: Callable[[], gym.Env], tasks: Sequence[Task], episodes: int) -> TrialEnv:
    return TrialEnv(make_env(), tasks, episodes)


class _CurveCallback(BaseCallback):
    """Reports the mean return per episode of recent training trials to the harness's logger."""

    def __init__(self, log: Logger, every: int, episodes_per_trial: int):
        super().__init__()
        self.metabench_log, self.every, self.episodes = log, max(1, every), episodes_per_trial
        self._next = self.every

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next and len(self.model.ep_info_buffer) > 0:
            self._next += self.every
            trial = float(np.mean([ep["r"] for ep in self.model.ep_info_buffer]))
            self.metabench_log.log(
                self.num_timesteps, trial_return=trial, episode_return=trial / self.episodes
            )
        return True


def _policy_kwargs(config: Config) -> dict[str, Any]:
    return {
        "lstm_hidden_size": config.lstm_hidden_size,
        "n_lstm_layers": config.n_lstm_layers,
        "net_arch": list(config.net_arch),
    }


def trial_length(env: gym.Env, episodes: int) -> int:
    """Env steps of one trial when every episode runs to the env's time limit."""
    spec = env.spec
    limit = spec.max_episode_steps if spec is not None else None
    if not limit:
        raise ValueError(f"RL² needs a time-limited env (spec.max_episode_steps), got spec {spec}")
    return int(limit) * episodes


# ------------------------------------------------------------------------------------- the agent
class RL2Agent:
    """RL² on sb3-contrib's RecurrentPPO; adapts through its LSTM state (see the module docstring)."""

    oracle: ClassVar[bool] = False

    def __init__(self, config: Config):
        self.config = config
        self.policy: TrialLstmPolicy | None = None
        self.model: RecurrentPPO | None = None
        self.encoder: Encoder | None = None
        self.episodes_per_trial = 0
        self.generator = torch.Generator()
        self._state: tuple[torch.Tensor, torch.Tensor] | None = None
        self._prev_action = np.zeros(0, np.float32)
        self._prev_reward = 0.0
        self._prev_done = False
        self._last_action: np.ndarray | None = None

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
        cfg = self.config
        torch.set_num_threads(cfg.torch_threads)
        total = budget.env_steps
        if cfg.total_timesteps is not None:
            total = min(total, cfg.total_timesteps)
        self.model, steps = self.build_model(make_env, tasks, total, seed)
        self.policy = self.model.policy
        if steps > 0:
            callback = _CurveCallback(log, cfg.log_every, self.episodes_per_trial)
            self.model.learn(total_timesteps=steps, callback=callback)
        self.model.get_env().close()
        self.generator.manual_seed(seed)
        self.begin_trial()

    def build_model(
        self, make_env: Callable[[], gym.Env], tasks: Sequence[Task], total: int, seed: int
    ) -> tuple[RecurrentPPO, int]:
        """The RecurrentPPO learner on :class:`TrialEnv` copies of ``make_env()``, and the env steps it
        will take (whole rollouts, at most ``total``)."""
        cfg = self.config
        probe = make_env()
        try:
            base = type(probe.unwrapped)
            family_trial = int(getattr(base, "n_adapt", 10)) + int(getattr(base, "n_eval", 3))
            episodes = cfg.episodes_per_trial or family_trial
            length = trial_length(probe, episodes)
            self.encoder = Encoder(probe.observation_space, probe.action_space)
        finally:
            probe.close()
        self.episodes_per_trial = episodes
        n_envs = max(1, min(cfg.n_envs, total // 2))
        n_steps = cfg.n_steps or length
        n_steps = max(2, min(n_steps, total // n_envs))
        rollout = n_steps * n_envs
        steps = total - total % rollout  # RecurrentPPO collects whole rollouts: never past the budget
        batch = min(cfg.batch_size or length, rollout)

        factory = functools.partial(_trial_env, make_env, tasks, episodes)
        venv = VecMonitor(DummyVecEnv([factory] * n_envs))
        if cfg.normalize_reward:
            venv = VecNormalize(venv, norm_obs=False, norm_reward=True, gamma=cfg.gamma)
        model = RecurrentPPO(
            TrialLstmPolicy,
            venv,
            learning_rate=0.0 if cfg.disable_updates else cfg.learning_rate,
            n_steps=n_steps,
            batch_size=batch,
            n_epochs=cfg.n_epochs,
            gamma=cfg.gamma,
            gae_lambda=cfg.gae_lambda,
            clip_range=cfg.clip_range,
            ent_coef=cfg.ent_coef,
            vf_coef=cfg.vf_coef,
            max_grad_norm=cfg.max_grad_norm,
            policy_kwargs=_policy_kwargs(cfg),
            seed=seed,
            device=cfg.device,
            verbose=0,
        )
        return model, steps

    # -------------------------------------------------------------------------------- meta-testing
    def begin_trial(self) -> None:
        """Forget the trial: zero LSTM state, previous action, reward and done flag."""
        self._state = None
        self._prev_action = self.encoder.zero_action() if self.encoder is not None else self._prev_action
        self._prev_reward, self._prev_done = 0.0, False
        self._last_action = None

    def act(self, obs: Any, *, explore: bool) -> Any:
        if self.policy is None or self.encoder is None:
            raise RuntimeError("RL2Agent.act called before meta_train or load")
        x = self.encoder.encode(obs, self._prev_action, self._prev_reward, self._prev_done)
        if self._state is None:
            shape = (self.policy.lstm_actor.num_layers, 1, self.policy.lstm_actor.hidden_size)
            self._state = (torch.zeros(shape), torch.zeros(shape))
        with torch.no_grad():
            obs_t = torch.as_tensor(x, device=self.policy.device).unsqueeze(0)
            starts = torch.zeros(1, device=self.policy.device)
            dist, self._state = self.policy.get_distribution(obs_t, self._state, starts)
            torch_dist = dist.distribution
            if isinstance(self.encoder.action_space, spaces.Discrete):
                probs = torch_dist.probs
                a = torch.multinomial(probs, 1, generator=self.generator)[0, 0] if explore else probs.argmax()
                action = np.asarray(int(a))
            else:
                mean = torch_dist.mean
                if explore:
                    mean = mean + torch_dist.stddev * torch.randn(
                        mean.shape, generator=self.generator, dtype=mean.dtype
                    )
                action = mean[0].cpu().numpy()
        self._last_action = self.encoder.encode_action(action)
        return self.encoder.to_env_action(action)

    def observe(self, transition: Transition) -> None:
        if self._last_action is None:
            raise RuntimeError("RL2Agent.observe called without a preceding act")
        self._prev_action = self._last_action
        self._prev_reward = float(transition.reward)
        self._prev_done = bool(transition.terminated or transition.truncated)

    def end_episode(self) -> None:
        """The LSTM state carries over; the next input's done flag says an episode ended."""
        self._prev_done = True

    # -------------------------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> None:
        """Write the directory ``path``: ``agent.json`` and SB3's ``model.zip``."""
        if self.policy is None or self.encoder is None:
            raise RuntimeError("RL2Agent.save called before meta_train")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "config": dataclasses.asdict(self.config),
            "observation_space": space_to_dict(self.encoder.observation_space),
            "action_space": space_to_dict(self.encoder.action_space),
            "episodes_per_trial": self.episodes_per_trial,
            "generator_state": base64.b64encode(self.generator.get_state().numpy().tobytes()).decode(),
        }
        (path / "agent.json").write_text(json.dumps(meta, indent=1))
        if self.model is not None:
            self.model.save(path / "model.zip")
        else:  # a loaded agent: write the policy weights in the same zip layout
            from stable_baselines3.common.save_util import save_to_zip_file

            save_to_zip_file(path / "model.zip", data={}, params={"policy": self.policy.state_dict()})

    @classmethod
    def load(cls, path: str | Path) -> RL2Agent:
        path = Path(path)
        meta = json.loads((path / "agent.json").read_text())
        config = dict(meta["config"])
        config["net_arch"] = tuple(config["net_arch"])
        agent = cls(Config(**config))
        agent.encoder = Encoder(
            space_from_dict(meta["observation_space"]), space_from_dict(meta["action_space"])
        )
        agent.episodes_per_trial = int(meta["episodes_per_trial"])
        _, params, _ = load_from_zip_file(path / "model.zip", load_data=False, device=agent.config.device)
        policy = TrialLstmPolicy(
            agent.encoder.input_space,
            agent.encoder.policy_action_space,
            lambda _: 0.0,
            **_policy_kwargs(agent.config),
        ).to(agent.config.device)
        policy.load_state_dict(params["policy"])
        policy.set_training_mode(False)
        agent.policy = policy
        state = np.frombuffer(base64.b64decode(meta["generator_state"]), dtype=np.uint8).copy()
        agent.generator.set_state(torch.from_numpy(state))
        agent.begin_trial()
        return agent


def make_agent(config: Config) -> RL2Agent:
    return RL2Agent(config)
