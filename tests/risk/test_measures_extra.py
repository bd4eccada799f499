import math

import numpy as np
import pytest

from neuralfolio.errors import ConfigError, DataError
from neuralfolio.risk import (
    TRADING_DAYS,
    annualized_volatility,
    drawdowns,
    max_drawdown,
    risk_contributions,
    sortino_ratio,
)


def test_drawdowns_on_a_hand_worked_path():
    # wealth 1.1, 0.55, 0.66: peak 1.1 throughout
    np.testing.assert_allclose(drawdowns([0.10, -0.50, 0.20]), [0.0, -0.5, -0.4], atol=1e-15)
    # a loss on day one is a drawdown from the starting wealth; a new peak resets to zero
    np.testing.assert_allclose(drawdowns([-0.20, 0.50, -0.10]), [-0.2, 0.0, -0.1], atol=1e-15)


def test_drawdowns_agree_with_max_drawdown():
    r = np.random.default_rng(0).normal(0.0002, 0.02, 500)
    dd = drawdowns(r)
    assert dd.shape == r.shape
    assert (dd <= 0).all()
    assert -dd.min() == pytest.approx(max_drawdown(r))


def test_sortino_matches_its_definition():
    r = [0.02, -0.01, 0.03, -0.02, 0.005]
    n = len(r)
    mean = sum(r) / n
    downside = math.sqrt(sum(min(x, 0.0) ** 2 for x in r) / (n - 1))
    assert sortino_ratio(r) == pytest.approx(mean / downside * math.sqrt(252), rel=1e-12)

    rf, target = 0.0252, 0.504  # 0.0001 and 0.002 a day
    downside = math.sqrt(sum(min(x - 0.002, 0.0) ** 2 for x in r) / (n - 1))
    assert sortino_ratio(r, risk_free=rf, target=target) == pytest.approx(
        (mean - 0.0001) / downside * math.sqrt(252), rel=1e-12)


def test_sortino_without_downside_is_nan_and_bad_input_is_refused():
    assert math.isnan(sortino_ratio([0.01, 0.02, 0.0]))
    with pytest.raises(DataError, match="at least two daily returns"):
        sortino_ratio([0.01])
    with pytest.raises(DataError, match=r"1 NaN or infinite value\(s\), the first at position 1"):
        sortino_ratio([0.01, np.nan, 0.02])
    with pytest.raises(DataError, match="returns is empty"):
        drawdowns([])
    with pytest.raises(DataError, match=r"shape \(n_obs,\).*returns @ weights"):
        drawdowns(np.zeros((3, 2)))


def test_risk_contributions_sum_to_the_portfolio_volatility():
    rng = np.random.default_rng(1)
    returns = rng.normal(0, 0.01, size=(400, 4)) @ rng.normal(size=(4, 4))
    w = np.array([0.4, 0.3, 0.2, 0.1])
    cov = np.cov(returns, rowvar=False) * TRADING_DAYS
    rc = risk_contributions(w, cov)
    assert rc.shape == (4,)
    assert rc.sum() == pytest.approx(math.sqrt(w @ cov @ w), rel=1e-12)
    assert rc.sum() == pytest.approx(annualized_volatility(returns @ w), rel=1e-10)
    shares = risk_contributions(w, cov, relative=True)
    assert shares.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(shares, rc / rc.sum())


def test_equal_weights_on_uncorrelated_equal_variance_assets_share_risk_equally():
    cov = np.eye(5) * 0.04
    w = np.full(5, 0.2)
    np.testing.assert_allclose(risk_contributions(w, cov, relative=True), np.full(5, 0.2))
    np.testing.assert_allclose(risk_contributions(w, cov), np.full(5, 0.2 * 0.2 / math.sqrt(5)))


def test_a_hedge_has_a_negative_contribution():
    cov = np.array([[0.04, 0.018], [0.018, 0.01]])
    shares = risk_contributions([1.2, -0.2], cov, relative=True)
    assert shares[1] < 0 < shares[0]
    assert shares.sum() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("weights", "cov", "error", "message"),
    [
        ([0.5, 0.5], np.eye(3), ConfigError, r"shape \(2, 2\) to match 2 weight"),
        ([[0.5, 0.5]], np.eye(2), ConfigError, r"non-empty 1-D"),
        ([np.nan, 1.0], np.eye(2), ConfigError, r"weights hold NaN"),
        ([0.5, 0.5], np.full((2, 2), np.nan), DataError, r"covariance holds NaN"),
        ([0.0, 0.0], np.eye(2), DataError, r"w'Σw is 0, not positive"),
    ],
)
def test_risk_contributions_refuse_bad_input(weights, cov, error, message):
    with pytest.raises(error, match=message):
        risk_contributions(weights, cov)
