"""TabularMDP: RL²'s random finite MDPs, 10 states, 5 actions, episodes of 10 steps.

Besides the env, this module evaluates finite-horizon policies exactly on a known model:
:func:`optimal_values` (value iteration, the oracle) and :func:`policy_values` (policy evaluation,
e.g. of the uniformly random policy).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import EzPickle
from numpy.typing import ArrayLike

from metabench.env import MetaEnv
from metabench.tasks import Param, Task, TaskError, TaskFamily

N_STATES, N_ACTIONS, HORIZON = 10, 5, 10
#: A transition row may miss 1 by this much: split values are rounded to 6 decimals (at most 5e-6).
ROW_SUM_TOLERANCE = 1e-4


class RandomTabularMDPs(TaskFamily):
    """Transitions from a flat Dirichlet (alpha = 1) per (s, a), reward means N(1, 1) per (s, a)."""

    params = {
        "transitions": Param(
            0.0, 1.0, size=N_STATES * N_ACTIONS * N_STATES, doc="P(s' | s, a), flattened in (s, a, s') order"
        ),
        "reward_means": Param(
            -10.0, 10.0, size=N_STATES * N_ACTIONS, doc="mean reward of (s, a), (s, a) order"
        ),
    }
    split_sizes = {"train": 500, "test": 100}
    split_seed = 2017

    def sample(self, rng: np.random.Generator, n: int, split: str) -> list[dict[str, Any]]:
        transitions = rng.dirichlet(np.ones(N_STATES), size=(n, N_STATES, N_ACTIONS))
        reward_means = rng.normal(1.0, 1.0, size=(n, N_STATES, N_ACTIONS))
        return [
            {"transitions": tuple(p.ravel().tolist()), "reward_means": tuple(r.ravel().tolist())}
            for p, r in zip(transitions, reward_means, strict=True)
        ]

    def validate(self, params: Mapping[str, Any]) -> None:
        super().validate(params)
        rows = np.asarray(params["transitions"], dtype=np.float64).reshape(N_STATES * N_ACTIONS, N_STATES)
        bad = np.flatnonzero(np.abs(rows.sum(axis=1) - 1.0) > ROW_SUM_TOLERANCE)
        if bad.size:
            s, a = divmod(int(bad[0]), N_ACTIONS)
            raise TaskError(
                f"task parameter 'transitions': the row of (state {s}, action {a}) sums to "
                f"{rows[bad[0]].sum():.6g}; every row P(. | s, a) must sum to 1 (within "
                f"{ROW_SUM_TOLERANCE}), {bad.size} row(s) do not"
            )


class TabularMDPEnv(MetaEnv, EzPickle):
    """A random finite MDP whose transitions and reward means are the unseen task (RL², Duan et al.,
    2016).

    RL² evaluates an agent over a trial of ``n`` episodes in one MDP (``n`` from 10 to 100), its memory
    kept across episodes; here the harness's trial is ``n_adapt + n_eval = 10`` episodes (RL²'s
    smallest ``n``).

    ## Observation
    ``Box(0, 1, (10,), float32)``: the one-hot current state. RL²-style agents add the previous
    action, reward and done flag themselves. :class:`metabench.wrappers.ExplicitContext` appends the
    550 normalised task parameters (the oracle).

    ## Action
    ``Discrete(5)``.

    ## Reward
    ``r = reward_means[s, a] + eps``, ``eps ~ N(0, 1)`` drawn with ``self.np_random``; the next state
    is drawn from ``P(. | s, a)`` with ``self.np_random``.

    ## Task parameters
    ``transitions``: the 10 x 5 x 10 array ``P(s' | s, a)`` flattened in (s, a, s') order, each
    value in [0, 1] and each row ``P(. | s, a)`` summing to 1 (within 1e-4; rows are renormalised when
    the task is set). ``reward_means``: the 10 x 5 array flattened in (s, a) order, each in [-10, 10].

    ## Splits
    ``train`` 500 and ``test`` 100 MDPs: every row of ``P`` from a flat Dirichlet (alpha = 1), every
    reward mean from N(1, 1), as RL²; drawn together with split seed 2017 and cut apart. No
    ``test-ood``.

    ## Episode
    Starts in state 0 (RL²'s code: ``self._current_state = 0`` at every episode start) and
    ``terminated`` is true after 10 steps (the id is also registered with ``max_episode_steps=10``).
    No success criterion.

    ## Protocol and references
    ``n_adapt = 7``, ``n_eval = 3``: a trial of 10 episodes, 100 steps; 100 test tasks make a
    meta-test of 10,000 agent steps. Per-task expected return per episode: :meth:`optimal_return`
    (value iteration on the true model: the optimal non-stationary policy from state 0, the oracle)
    and :meth:`random_return` (exact evaluation of the uniformly random policy); averaged over the
    test split: random 9.977, oracle 21.795 (:attr:`TEST_SPLIT_REFERENCES`). An agent that knew the
    model would score the oracle in every episode of the trial. A Bayes-optimal value is intractable
    at this size; RL² compares with PSRL and other tabular algorithms, none of which is here.

    ## Budgets
    Meta-training env steps per tier: smoke 1,000; ci 50,000 (500 trials of 100 steps); standard
    5,000,000. Ours, sized for the ci leaderboard on one core, not RL²'s: its authors' runs on these
    MDPs took 250,000 env steps per PPO iteration, for up to 1,000 iterations (rllab sandbox,
    ``neural_learner`` random-MDP launcher). At the ci budget PEARL and MAML adapt and our RL² does
    not; what RL² needs here is in ``docs/agents/rl2.md``.

    ## Source
    Duan et al., "RL²: Fast Reinforcement Learning via Slow Reinforcement Learning", 2016;
    the environment of its code (``RandomTabularMDPEnv``), after Osband's TabulaRL.

    ## Version history
    * v0: initial version.
    """

    env_id = "metabench/TabularMDP-v0"
    family = RandomTabularMDPs()
    split_hashes = {
        "train": "ee052420fd8fb2b80a9afa673cf1d80956b5f50688fb030f7e1d9a6c62b2e92e",
        "test": "7d15cca2ee18cb3d433f3870782ba0882455b3a0c2bdc646eb535f9aec0d9166",
    }
    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    #: ``info`` holds only ``task_index`` and ``task_changed``: nothing is public.
    public_info_keys = frozenset()
    n_adapt, n_eval = 7, 3
    budgets = {"smoke": 1_000, "ci": 50_000, "standard": 5_000_000}
    #: Expected return per episode, averaged over the 100 test tasks, exact (a test recomputes them):
    #: the uniformly random policy and the optimal policy of the true model.
    TEST_SPLIT_REFERENCES = {"random": 9.976707, "oracle": 21.795258}
    n_states, n_actions, horizon = N_STATES, N_ACTIONS, HORIZON
    initial_state = 0

    def __init__(self, render_mode: str | None = None):
        EzPickle.__init__(self, render_mode=render_mode)
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0.0, 1.0, (N_STATES,), np.float32)
        self.action_space = spaces.Discrete(N_ACTIONS)
        self._eye = np.eye(N_STATES, dtype=np.float32)
        self._cdf = np.tile(np.linspace(0.1, 1.0, N_STATES), (N_STATES, N_ACTIONS, 1))
        self._reward_means = np.zeros((N_STATES, N_ACTIONS))
        self._state = self.initial_state
        self._t = 0

    def _apply_task(self, task: Task) -> None:
        p = _transition_array(task)
        cdf = np.cumsum(p, axis=-1)
        cdf[..., -1] = 1.0  # so that a uniform draw always lands in some state
        self._cdf = cdf
        self._reward_means = task.array("reward_means").reshape(N_STATES, N_ACTIONS)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._choose_task(options)
        self._state, self._t = self.initial_state, 0
        return self._eye[self._state].copy(), self._task_info()

    def step(self, action):
        a = _check_action(action)
        s = self._state
        reward = float(self._reward_means[s, a] + self.np_random.standard_normal())
        self._state = int(np.searchsorted(self._cdf[s, a], self.np_random.random(), side="right"))
        self._t += 1
        return self._eye[self._state].copy(), reward, self._t >= HORIZON, False, self._task_info()

    def render(self) -> np.ndarray | None:
        """The states as a row of cells, the current one filled; a bar under it counts the steps."""
        if self.render_mode != "rgb_array":
            return None
        cell = 48
        img = np.full((cell + 24, N_STATES * cell, 3), 255, dtype=np.uint8)
        for i in range(N_STATES):
            img[:cell, i * cell, :] = 0
            if i == self._state:
                img[4 : cell - 4, i * cell + 4 : (i + 1) * cell - 4] = (40, 90, 220)
        img[cell + 8 : cell + 20, : int(N_STATES * cell * self._t / HORIZON)] = (120, 120, 120)
        return img

    # ------------------------------------------------------------------------- reference values
    @classmethod
    def optimal_return(cls, task: Task) -> float:
        """Expected return of one episode under the optimal (non-stationary) policy of the true model
        from state 0: finite-horizon value iteration, the oracle score."""
        p, r = _transition_array(task), task.array("reward_means").reshape(N_STATES, N_ACTIONS)
        return float(optimal_values(p, r, HORIZON)[cls.initial_state])

    @classmethod
    def random_return(cls, task: Task) -> float:
        """Expected return of one episode of the uniformly random policy from state 0 (exact)."""
        p, r = _transition_array(task), task.array("reward_means").reshape(N_STATES, N_ACTIONS)
        uniform = np.full((N_STATES, N_ACTIONS), 1.0 / N_ACTIONS)
        return float(policy_values(p, r, uniform, HORIZON)[cls.initial_state])

    @classmethod
    def reference_returns(cls, task: Task) -> dict[str, float]:
        """Expected return per episode of the random policy and of the oracle."""
        return {"random": cls.random_return(task), "oracle": cls.optimal_return(task)}


def _transition_array(task: Task) -> np.ndarray:
    p = task.array("transitions").reshape(N_STATES, N_ACTIONS, N_STATES)
    return p / p.sum(axis=-1, keepdims=True)


def _check_action(action: Any) -> int:
    a = np.asarray(action)
    if a.size != 1 or a.dtype.kind not in "iu" or not 0 <= int(a.reshape(())) < N_ACTIONS:
        raise ValueError(f"action must be one integer in 0..{N_ACTIONS - 1}, got {action!r}")
    return int(a.reshape(()))


def optimal_values(transitions: ArrayLike, reward_means: ArrayLike, horizon: int) -> np.ndarray:
    """Optimal expected return from each state over ``horizon`` steps (finite-horizon value iteration).

    ``transitions[s, a, s']`` = P(s' | s, a), ``reward_means[s, a]``; no discount. The optimal policy
    of a finite horizon depends on the steps left: ``V_0 = 0``, ``V_{k+1}(s) = max_a R(s, a) +
    sum_s' P(s' | s, a) V_k(s')``; returns ``V_horizon``.
    """
    p, r = np.asarray(transitions, dtype=np.float64), np.asarray(reward_means, dtype=np.float64)
    v = np.zeros(p.shape[0])
    for _ in range(horizon):
        v = (r + p @ v).max(axis=1)
    return v


def policy_values(
    transitions: ArrayLike, reward_means: ArrayLike, policy: ArrayLike, horizon: int
) -> np.ndarray:
    """Expected return from each state over ``horizon`` steps of the stationary stochastic ``policy``
    (``policy[s, a]`` = probability of ``a`` in ``s``): exact finite-horizon policy evaluation."""
    p, r = np.asarray(transitions, dtype=np.float64), np.asarray(reward_means, dtype=np.float64)
    pi = np.asarray(policy, dtype=np.float64)
    v = np.zeros(p.shape[0])
    for _ in range(horizon):
        v = (pi * (r + p @ v)).sum(axis=1)
    return v
