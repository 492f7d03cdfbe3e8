"""Tail summaries, paired intervals and accuracy intervals against hand-computed values."""

import math

import numpy as np
import pytest

from flake_lib import stats


def test_tail_summary_counts_a_failed_query_as_infinitely_late():
    # ten answered queries 1..10 ms and one that nothing answered: 11 values, sorted 1..10, inf
    summary = stats.tail_summary([3, 1, 2, None, 5, 4, 6, 8, 7, 10, 9])
    # "lower" percentiles of 11 values: index floor(10 q): median → 5 (value 6), p99 → 9 (10), p99.9 → 9 (10)
    assert summary["median_ms"] == 6 and summary["p99_ms"] == 10 and summary["p999_ms"] == 10
    assert summary["max_ms"] == math.inf and summary["gmm_ms"] == math.inf
    assert summary["gpm_ms"] == 4 and summary["n"] == 11 and summary["n_failed"] == 1
    assert stats.tail_summary([float("nan"), 1.0])["n_failed"] == 1  # NaN is a failed query too
    assert stats.tail_summary([])["n"] == 0


def test_paired_difference_known_case():
    d = stats.paired_difference([3.0, 5.0, 7.0], [1.0, 2.0, 3.0])
    assert d["differences"] == [2.0, 3.0, 4.0] and d["mean"] == 3.0 and d["n"] == 3
    assert 2.0 <= d["low"] < 3.0 < d["high"] <= 4.0  # bootstrap means lie within the differences' range
    same = stats.paired_difference([5.0, 6.0, 7.0], [3.0, 4.0, 5.0])
    assert same["low"] == same["high"] == 2.0
    with_inf = stats.paired_difference([math.inf, 3.0], [1.0, 1.0])
    assert with_inf["high"] == math.inf and with_inf["low"] == 2.0
    assert math.isnan(stats.paired_difference([1.0], [0.0])["low"])
    with pytest.raises(ValueError, match="same length"):
        stats.paired_difference([1.0, 2.0], [1.0])


def test_ratio_of_means():
    r = stats.ratio_of_means([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])
    assert r["ratio"] == 2.0 and r["low"] == pytest.approx(2.0) and r["high"] == pytest.approx(2.0)
    assert math.isnan(stats.ratio_of_means([1.0], [0.0])["ratio"])


def test_interval_says():
    assert stats.interval_says(-3.0, -1.0) == "a < b"
    assert stats.interval_says(1.0, 3.0) == "a > b"
    assert stats.interval_says(-1.0, 1.0) == "not distinguishable"
    assert stats.interval_says(0.0, 1.0) == "not distinguishable"
    assert stats.interval_says(float("nan"), 1.0) == "undefined"


def test_proportion_intervals():
    iv = stats.proportion_interval(0.5, 10_000)  # half-width 1.96 · √(0.25 / 10⁴) = 0.0098
    assert iv["low"] == pytest.approx(0.5 - 0.0098, abs=1e-6) and iv["high"] == pytest.approx(0.5 + 0.0098, abs=1e-6)
    d = stats.proportion_difference(0.6, 10_000, 0.5, 10_000)  # √(0.24/10⁴ + 0.25/10⁴) = 0.007
    assert d["mean"] == pytest.approx(0.1) and d["high"] - d["mean"] == pytest.approx(1.959964 * 0.007, rel=1e-6)
    assert math.isnan(stats.proportion_interval(0.5, 0)["low"])


def test_t_interval_and_sign_test_by_hand():
    from scipy import stats as scipy_stats

    d = [1.0, 2.0, 3.0]
    t = stats.t_interval(d)
    half = scipy_stats.t.ppf(0.975, 2) * 1.0 / np.sqrt(3)  # s = 1
    assert t["mean"] == 2.0 and t["low"] == pytest.approx(2 - half) and t["high"] == pytest.approx(2 + half)
    assert stats.sign_test(d) == {"above": 3, "below": 0, "n": 3, "p": pytest.approx(0.25)}
    assert stats.sign_test([1, 2, 3, 4, 5, -1])["p"] == pytest.approx(0.21875)
    assert np.isnan(stats.t_interval([1.0])["low"])
    r = stats.log_ratio_interval([2.0, 4.0, 8.0], [1.0, 2.0, 4.0])
    assert r["ratio"] == pytest.approx(2.0) and r["low"] == pytest.approx(2.0) and r["high"] == pytest.approx(2.0)
