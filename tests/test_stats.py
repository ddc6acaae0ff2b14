"""metabench.stats: IQM, stratified bootstrap, probability of improvement, single-run band."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metabench import stats
from metabench.references import REFERENCES, Reference, get_reference


def test_iqm_is_the_mean_of_the_middle_half():
    assert stats.iqm(np.arange(1.0, 9.0)) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert stats.iqm(np.array([0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 100.0])) == pytest.approx(1.0)


def test_bootstrap_is_deterministic_and_brackets_the_point_estimate():
    rng = np.random.default_rng(0)
    strata = {t: rng.normal(t, 1.0, size=5) for t in range(20)}
    a = stats.stratified_bootstrap(strata)
    b = stats.stratified_bootstrap(strata)
    assert a == b
    assert a.lo < a.value < a.hi
    assert a.value == pytest.approx(stats.iqm(np.concatenate(list(strata.values()))))
    assert stats.stratified_bootstrap(strata, seed=1) != a  # the seed matters


def test_bootstrap_resamples_within_strata_only():
    # A stratum of one value and a constant stratum: any resampling *within* strata keeps the pooled
    # mean at (0 + 10 + 10) / 3; resampling across strata would not.
    e = stats.stratified_bootstrap([np.array([0.0]), np.array([10.0, 10.0])], stats.pooled_mean)
    assert e.value == pytest.approx(20 / 3)
    assert e.lo == pytest.approx(20 / 3) and e.hi == pytest.approx(20 / 3)


def test_bootstrap_with_one_run_per_stratum_has_no_interval():
    e = stats.stratified_bootstrap([np.array([1.0]), np.array([2.0])])
    assert e.value == pytest.approx(1.5)
    assert not e.has_interval and math.isnan(e.lo)


def test_interval_narrows_with_more_runs():
    rng = np.random.default_rng(1)
    few = stats.stratified_bootstrap([rng.normal(0, 1, 3) for _ in range(10)])
    many = stats.stratified_bootstrap([rng.normal(0, 1, 30) for _ in range(10)])
    assert (many.hi - many.lo) < (few.hi - few.lo)


def test_bootstrap_rejects_empty_strata():
    with pytest.raises(ValueError, match="empty stratum"):
        stats.stratified_bootstrap([np.array([1.0]), np.array([])])


def test_mean_of_groups_is_the_mean_of_per_group_statistics():
    a = [np.array([1.0, 2.0, 3.0, 4.0]), np.array([5.0, 6.0])]
    b = [np.array([0.0, 1.0])]
    statistic = stats.mean_of_groups(["a", "a", "b"], {"a": stats.pooled_iqm, "b": stats.pooled_mean})
    value = statistic([s[None, :] for s in [*a, *b]])[0]
    assert value == pytest.approx((stats.iqm(np.arange(1.0, 7.0)) + 0.5) / 2)


def test_probability_of_improvement():
    assert stats.probability_of_improvement({0: [2.0, 3.0]}, {0: [0.0, 1.0]}) == 1.0
    assert stats.probability_of_improvement({0: [1.0, 2.0]}, {0: [1.0, 2.0]}) == 0.5
    # task 0: pairs (1 vs 1.5) lose, (2 vs 1.5) win -> 0.5; task 1: tie -> 0.5; task 2 not shared.
    x = {0: [1.0, 2.0], 1: [3.0], 2: [9.0]}
    y = {0: [1.5], 1: [3.0]}
    assert stats.probability_of_improvement(x, y) == pytest.approx(0.5)
    assert stats.probability_of_improvement({0: [1.0]}, {1: [0.0]}) != stats.probability_of_improvement(
        {0: [1.0]}, {0: [0.0]}
    )
    assert math.isnan(stats.probability_of_improvement({0: [1.0]}, {1: [0.0]}))


def test_single_run_band_holds_runs_like_the_committed_ones():
    rng = np.random.default_rng(2)
    runs = [rng.normal(1.0, 0.1, 20) for _ in range(5)]
    band = stats.single_run_band(runs)
    assert band.lo < 1.0 < band.hi
    fresh = [float(stats.iqm(rng.normal(1.0, 0.1, 20))) for _ in range(50)]
    assert sum(band.lo <= f <= band.hi for f in fresh) >= 45
    assert not band.lo <= float(stats.iqm(rng.normal(0.0, 0.1, 20))) <= band.hi
    with pytest.raises(ValueError, match="at least two"):
        stats.single_run_band(runs[:1])


def test_references_normalise_random_to_0_and_oracle_to_1():
    ref = Reference(random=-20.0, oracle=-5.0)
    assert ref.normalise(-20.0) == 0.0 and ref.normalise(-5.0) == 1.0
    with pytest.raises(ValueError, match="oracle > random"):
        Reference(random=1.0, oracle=1.0)
    assert get_reference("metabench/NoSuch-v0", "ci") is None
    for env_id, tiers in REFERENCES.items():
        for tier, r in tiers.items():
            assert get_reference(env_id, tier) is r and r.measured
