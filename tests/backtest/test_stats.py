import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralfolio.backtest import (
    STATISTICS,
    deflated_sharpe_ratio,
    paired_bootstrap,
    return_statistics,
)
from neuralfolio.errors import ConfigError, DataError


def _returns(seed=0, n=2000, scale=0.01):
    return np.random.default_rng(seed).normal(0.0004, scale, n)


def test_statistics_by_hand():
    r = np.array([0.01, -0.02, 0.03, -0.01, 0.005])
    b = np.array([0.0, -0.01, 0.01, 0.0, 0.0])
    s = return_statistics(r, b)
    assert set(s) == set(STATISTICS)
    assert s["worst_day"] == -0.02
    wealth = np.cumprod(1 + r)
    peak = np.maximum.accumulate(np.concatenate([[1.0], wealth]))[1:]
    assert s["max_drawdown"] == pytest.approx((1 - wealth / peak).max())
    assert s["calmar"] == pytest.approx(s["annual_return"] / s["max_drawdown"])
    active = r - b
    te = active.std(ddof=1) * math.sqrt(252)
    assert s["tracking_error"] == pytest.approx(te)
    assert s["information_ratio"] == pytest.approx(active.mean() * 252 / te)
    assert 0.0 <= s["psr"] <= 1.0
    assert math.isnan(return_statistics(r)["tracking_error"])


def test_paired_bootstrap_of_identical_series_is_exactly_zero():
    r = _returns()
    iv = paired_bootstrap(r, r, "volatility")
    assert iv.estimate == iv.low == iv.high == 0.0
    assert not iv.excludes_zero


def test_paired_bootstrap_finds_a_real_difference_and_not_a_fake_one():
    r = _returns()
    double = paired_bootstrap(2 * r, r, "volatility", seed=1)
    assert double.estimate == pytest.approx(r.std(ddof=1) * math.sqrt(252))
    assert double.excludes_zero and double.low > 0
    # same Sharpe ratio by construction (scaling does not change it): the interval is [0, 0]
    same = paired_bootstrap(2 * r, r, "sharpe", seed=1)
    assert same.estimate == pytest.approx(0.0, abs=1e-12)
    assert abs(same.low) < 1e-9 and abs(same.high) < 1e-9
    # two independent draws of the same process: zero inside the interval
    other = paired_bootstrap(_returns(1), _returns(2), "volatility", seed=1)
    assert other.low < 0 < other.high


@settings(max_examples=20, deadline=None)
@given(block=st.integers(1, 60), seed=st.integers(0, 1000))
def test_interval_brackets_the_estimate_and_is_reproducible(block, seed):
    a, b = _returns(3, 500), _returns(4, 500, 0.012)
    iv = paired_bootstrap(a, b, "mean", block=block, n_boot=300, seed=seed)
    assert iv.low <= iv.high
    assert iv == paired_bootstrap(a, b, "mean", block=block, n_boot=300, seed=seed)


def test_wider_confidence_gives_a_wider_interval():
    a, b = _returns(5), _returns(6)
    narrow = paired_bootstrap(a, b, confidence=0.5)
    wide = paired_bootstrap(a, b, confidence=0.99)
    assert wide.low < narrow.low and wide.high > narrow.high


def test_deflated_sharpe_falls_with_more_and_wider_trials():
    r = _returns(7) + 0.0005
    few = deflated_sharpe_ratio(r, [0.02, 0.03])
    many = deflated_sharpe_ratio(r, np.linspace(-0.05, 0.08, 50))
    assert 0.0 <= many < few <= 1.0


def test_bad_inputs_are_explained():
    r = _returns()
    with pytest.raises(DataError, match="missing or infinite"):
        return_statistics(np.array([0.01, np.nan, 0.02]))
    with pytest.raises(DataError, match="same dates"):
        return_statistics(r, r[:-1])
    with pytest.raises(DataError, match="at least 2"):
        return_statistics([0.01])
    with pytest.raises(ConfigError, match="Unknown statistic"):
        paired_bootstrap(r, r, "kurtosis")
    with pytest.raises(ConfigError, match="block must be"):
        paired_bootstrap(r, r, block=0)
    with pytest.raises(DataError, match="pair them"):
        paired_bootstrap(r, r[:-5])
    with pytest.raises(DataError, match="at least two"):
        deflated_sharpe_ratio(r, [0.1])
