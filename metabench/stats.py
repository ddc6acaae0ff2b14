"""Aggregate statistics for leaderboards, after rliable (Agarwal et al., 2021, "Deep RL at the edge of
the statistical precipice").

Scores come as *strata*: one 1-D array per task, holding one value per run (seed) on that task.

* **IQM** (interquartile mean): the mean of the middle 50% of all values, pooled over runs and tasks
  (``scipy.stats.trim_mean(x, 0.25)``, as rliable computes it).
* **95% stratified-bootstrap CI**: each bootstrap replicate resamples the runs *within every task*
  with replacement (each task is a stratum; the task set is not resampled), recomputes the statistic
  over the pooled replicate, and the interval is the 2.5th and 97.5th percentiles of
  :data:`N_RESAMPLES` replicates (rliable's ``StratifiedBootstrap`` with its default percentile
  interval). We choose tasks as strata, as rliable does with games, because a family's test split is
  frozen: it *is* the benchmark, and what varies from one evaluation to the next is the runs. The
  generator is ``np.random.default_rng(BOOTSTRAP_SEED)``, created afresh for every interval, so an
  interval depends only on its own data and tables regenerate to the same bytes.
* **Probability of improvement** ``P(X > Y)``: for every task, the Mann-Whitney U statistic of the
  runs of X against those of Y divided by the number of pairs (ties count one half); then the mean over
  the tasks both agents were evaluated on (rliable's ``probability_of_improvement``).
* **Single-run band**: where one fresh run's score (the IQM over its tasks) should fall, for CI's
  check that a rerun reproduces the committed results: replicates pick one run (seed) at random and
  resample the tasks of that run with replacement; the band is the replicates' 2.5th-97.5th
  percentiles. Resampling tasks adds spread that a rerun on the same frozen tasks does not have, which
  makes the check conservative (it errs towards passing, and catches a run far from the others).

Why our own bootstrap rather than rliable or ``scipy.stats.bootstrap``: rliable 1.2.0 fails on import
with pandas 3 (pinned here), and pinning an older pandas for it would hold back the whole stack.
``scipy.stats.bootstrap`` does resample several samples independently (which is a stratified
bootstrap), but it refuses samples with fewer than two observations, which a task evaluated with one
seed is (``metabench evaluate --seeds 0``). The resampling itself is a few lines of NumPy below; the
statistic is SciPy's ``trim_mean``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy.stats import trim_mean

#: Seed of every bootstrap's generator (fixed: tables are a pure function of the records).
BOOTSTRAP_SEED = 20_211_206
#: Bootstrap replicates per interval (rliable's default).
N_RESAMPLES = 2_000
#: Two-sided coverage of the intervals.
CONFIDENCE = 0.95

#: A statistic over pooled strata: takes one ``(replicates, n_runs_in_stratum)`` array per stratum
#: and returns one value per replicate.
Statistic = Callable[[Sequence[np.ndarray]], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A point estimate and its interval (``nan`` bounds where there is nothing to resample)."""

    value: float
    lo: float
    hi: float

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)


def iqm(values: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Interquartile mean: ``scipy.stats.trim_mean(values, 0.25)``."""
    return trim_mean(values, 0.25, axis=axis)


def _pooled(strata: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.atleast_2d(s) for s in strata], axis=1)


def pooled_iqm(strata: Sequence[np.ndarray]) -> np.ndarray:
    """IQM of each replicate (row) of the pooled strata."""
    return np.asarray(iqm(_pooled(strata), axis=1))


def pooled_mean(strata: Sequence[np.ndarray]) -> np.ndarray:
    """Mean of each replicate (row) of the pooled strata (for rates such as success)."""
    return _pooled(strata).mean(axis=1)


def mean_of_groups(groups: Sequence[object], per_group: Mapping[object, Statistic]) -> Statistic:
    """A statistic: ``per_group[g]`` over the strata of each group ``g`` (e.g. a family's tasks),
    then the mean over the groups. ``groups[i]`` is the group of stratum ``i``."""
    labels = list(dict.fromkeys(groups))

    def statistic(strata: Sequence[np.ndarray]) -> np.ndarray:
        values = [per_group[k]([s for s, g in zip(strata, groups, strict=True) if g == k]) for k in labels]
        return np.mean(values, axis=0)

    return statistic


def _strata(strata: Sequence[np.ndarray] | Mapping[object, np.ndarray]) -> list[np.ndarray]:
    items = list(strata.values()) if isinstance(strata, Mapping) else list(strata)
    out = [np.asarray(s, dtype=np.float64).ravel() for s in items]
    if not out or any(s.size == 0 for s in out):
        raise ValueError("a stratified bootstrap needs at least one stratum and no empty stratum")
    return out


def stratified_bootstrap(
    strata: Sequence[np.ndarray] | Mapping[object, np.ndarray],
    statistic: Statistic = pooled_iqm,
    *,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> Estimate:
    """The statistic over ``strata`` and its percentile interval, runs resampled within each stratum.

    Where every stratum holds a single run there is nothing to resample and the bounds are ``nan``.
    """
    arrays = _strata(strata)
    value = float(statistic([s[None, :] for s in arrays])[0])
    if all(s.size == 1 for s in arrays):
        return Estimate(value, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    replicates = [s[rng.integers(0, s.size, size=(n_resamples, s.size))] for s in arrays]
    dist = statistic(replicates)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.percentile(dist, [100 * alpha, 100 * (1 - alpha)])
    return Estimate(value, float(lo), float(hi))


def probability_of_improvement(
    x: Mapping[object, np.ndarray],
    y: Mapping[object, np.ndarray],
) -> float:
    """``P(X > Y)``: per task (key), the share of run pairs where X beats Y (ties one half), averaged
    over the tasks both have. ``nan`` if they share no task."""
    common = sorted(set(x) & set(y), key=repr)
    if not common:
        return math.nan
    per_task = []
    for task in common:
        a = np.asarray(x[task], dtype=np.float64).ravel()
        b = np.asarray(y[task], dtype=np.float64).ravel()
        greater = (a[:, None] > b[None, :]).mean()
        ties = (a[:, None] == b[None, :]).mean()
        per_task.append(greater + 0.5 * ties)
    return float(np.mean(per_task))


def single_run_band(
    runs: Sequence[np.ndarray],
    *,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> Estimate:
    """Where one more run's IQM over its tasks should lie, from ``runs`` (one array of per-task scores
    per run): the value is the IQM of all runs pooled, the bounds the band described in the module
    docstring. Needs at least two runs."""
    arrays = [np.asarray(r, dtype=np.float64).ravel() for r in runs]
    if len(arrays) < 2 or any(a.size == 0 for a in arrays):
        raise ValueError(f"a single-run band needs at least two non-empty runs, got {len(arrays)}")
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(arrays), size=n_resamples)
    dist = np.empty(n_resamples)
    for k, a in enumerate(arrays):
        rows = np.flatnonzero(which == k)
        if rows.size:
            dist[rows] = iqm(a[rng.integers(0, a.size, size=(rows.size, a.size))], axis=1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.percentile(dist, [100 * alpha, 100 * (1 - alpha)])
    return Estimate(float(iqm(np.concatenate(arrays))), float(lo), float(hi))


__all__ = [
    "BOOTSTRAP_SEED",
    "CONFIDENCE",
    "N_RESAMPLES",
    "Estimate",
    "iqm",
    "mean_of_groups",
    "pooled_iqm",
    "pooled_mean",
    "probability_of_improvement",
    "single_run_band",
    "stratified_bootstrap",
]
