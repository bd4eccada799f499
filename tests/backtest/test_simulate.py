import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralfolio.backtest import Execution, rebalance_dates, simulate
from neuralfolio.errors import ConfigError, DataError

# Three days of a hand-worked case: Monday to Wednesday of one week, two assets.
DATES = pd.DatetimeIndex(["2024-03-04", "2024-03-05", "2024-03-06"])
TARGETS = pd.DataFrame([[0.5, 0.3], [0.5, 0.3], [0.6, 0.4]], DATES, ["A", "B"])
RETURNS = pd.DataFrame([[0.10, -0.10], [0.0, 0.05], [-0.05, 0.02]], DATES, ["A", "B"])
DAILY_CASH = 0.0001  # cash_rate = 1.0001 ** 252 - 1


def case(**kw):
    ex = Execution(initial_wealth=100.0, cash_rate=(1 + DAILY_CASH) ** 252 - 1, **kw)
    return simulate(TARGETS, RETURNS, ex)


def test_hand_worked_daily_with_costs_drift_and_cash():
    s = case(cost_bps=10, fixed_cost=0.001)
    g = 1 + DAILY_CASH
    # Day 1: from 100 in cash buy 50 of A and 30 of B: traded 80, cost 0.08 + 2 orders * 0.001.
    cost1 = 0.001 * 80 + 0.002
    cash1 = 100 * 0.2 - cost1
    w1 = 55 + 27 + cash1 * g                     # A +10%, B -10%, cash one day of interest
    # Day 2: trade the drifted 55 / 27 back to 50% / 30% of w1.
    a2, b2 = 0.5 * w1, 0.3 * w1
    traded2 = abs(a2 - 55) + abs(b2 - 27)
    cost2 = 0.001 * traded2 + 0.002
    cash2 = 0.2 * w1 - cost2
    w2 = a2 + b2 * 1.05 + cash2 * g
    # Day 3: fully invested 60% / 40%; the cost is borrowed (cash goes negative).
    a3, b3 = 0.6 * w2, 0.4 * w2
    traded3 = abs(a3 - a2) + abs(b3 - b2 * 1.05)
    cost3 = 0.001 * traded3 + 0.002
    w3 = a3 * 0.95 + b3 * 1.02 - cost3 * g

    np.testing.assert_allclose(s.costs, [cost1, cost2, cost3], rtol=1e-12)
    np.testing.assert_allclose(s.traded, [0.8, traded2 / w1, traded3 / w2], rtol=1e-12)
    np.testing.assert_allclose(s.wealth, [w1, w2, w3], rtol=1e-12)
    np.testing.assert_allclose(s.returns, [w1 / 100 - 1, w2 / w1 - 1, w3 / w2 - 1], rtol=1e-12)
    # Before costs: exactly the weighted returns plus interest on cash.
    np.testing.assert_allclose(
        s.gross_returns,
        [0.5 * 0.1 - 0.3 * 0.1 + 0.2 * DAILY_CASH, 0.3 * 0.05 + 0.2 * DAILY_CASH,
         -0.6 * 0.05 + 0.4 * 0.02], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(s.held.iloc[0], [50 / (100 - cost1), 30 / (100 - cost1)])
    np.testing.assert_allclose(s.held.iloc[2], [a3 / (w2 - cost3), b3 / (w2 - cost3)])
    assert s.rebalanced.all()
    assert s.turnover() == pytest.approx((traded2 / w1 + traded3 / w2) / 2)


def test_hand_worked_weekly_holds_and_drifts():
    s = case(rebalance="weekly", cost_bps=10)
    g = 1 + DAILY_CASH
    cash1 = 20 - 0.08
    w1 = 55 + 27 + cash1 * g
    w2 = 55 + 27 * 1.05 + cash1 * g * g           # no trade: positions drift, target ignored
    w3 = 55 * 0.95 + 27 * 1.05 * 1.02 + cash1 * g ** 3
    np.testing.assert_allclose(s.wealth, [w1, w2, w3], rtol=1e-12)
    np.testing.assert_allclose(s.costs, [0.08, 0, 0], atol=1e-15)
    assert list(s.rebalanced) == [True, False, False]
    np.testing.assert_allclose(s.held.iloc[1], [55 / w1, 27 / w1])
    np.testing.assert_allclose(s.held.iloc[2], [55 / w2, 27 * 1.05 / w2])


def test_threshold_trades_only_when_drift_exceeds_it():
    # After day 1 the weights are 55/w1 and 27/w1, 0.075 away from (0.5, 0.3) in sum.
    assert list(case(rebalance="threshold", threshold=0.07).rebalanced) == [True, True, True]
    assert list(case(rebalance="threshold", threshold=0.08).rebalanced) == [True, False, True]


def test_doubling_the_cost_rate_doubles_the_cost_charged():
    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2020-01-01", periods=300)
    w = pd.DataFrame(rng.dirichlet(np.ones(5), size=300), dates)
    r = pd.DataFrame(rng.normal(0, 0.01, (300, 5)), dates)
    one, two = (simulate(w, r, Execution(cost_bps=b)) for b in (10, 20))
    assert two.costs.iloc[0] == pytest.approx(2 * one.costs.iloc[0], rel=1e-15)
    # On every date the cost is the rate times the amount traded (at that path's wealth)...
    for s, bps in ((one, 10), (two, 20)):
        wealth_before = s.wealth.shift(1, fill_value=1.0)
        np.testing.assert_allclose(s.costs, bps / 1e4 * s.traded * wealth_before, rtol=1e-12)
    # ...so the cost as a fraction of wealth doubles on every date (up to the slightly
    # different drift of the dearer path's cash), and so does the drag on returns.
    frac = [s.costs / s.wealth.shift(1, fill_value=1.0) for s in (one, two)]
    np.testing.assert_allclose(frac[1], 2 * frac[0], rtol=5e-3)
    # The cost drag on returns doubles too.
    assert two.annual_cost() / one.annual_cost() == pytest.approx(2.0, rel=1e-3)


def test_costs_are_charged_once_per_rebalance_not_every_day():
    rng = np.random.default_rng(1)
    dates = pd.bdate_range("2021-01-01", "2021-12-31")
    w = pd.DataFrame(rng.dirichlet(np.ones(4), size=len(dates)), dates)
    r = pd.DataFrame(rng.normal(0, 0.01, (len(dates), 4)), dates)
    s = simulate(w, r, Execution(rebalance="monthly", cost_bps=5, fixed_cost=0.0001))
    assert s.rebalanced.sum() == 12
    assert (s.costs > 0).sum() == 12
    assert (s.costs[~s.rebalanced] == 0).all() and (s.traded[~s.rebalanced] == 0).all()


def test_no_costs_daily_is_the_weighted_return():
    rng = np.random.default_rng(2)
    dates = pd.bdate_range("2020-01-01", periods=50)
    w = pd.DataFrame(rng.normal(0.25, 0.3, (50, 4)), dates)     # long/short, some cash
    r = pd.DataFrame(rng.normal(0, 0.01, (50, 4)), dates)
    s = simulate(w, r)
    expected = (w.to_numpy() * r.to_numpy()).sum(axis=1)
    np.testing.assert_allclose(s.returns, expected, atol=1e-14)
    np.testing.assert_allclose(s.held, w, atol=1e-14)
    np.testing.assert_allclose(s.wealth, np.cumprod(1 + expected), rtol=1e-12)


def test_never_is_buy_and_hold():
    dates = pd.bdate_range("2020-01-01", periods=4)
    w = pd.DataFrame(0.5, dates, ["A", "B"])
    r = pd.DataFrame([[0.1, 0.0], [0.1, 0.0], [0.0, 0.1], [0.0, 0.0]], dates, ["A", "B"])
    s = simulate(w, r, Execution(rebalance="never"))
    np.testing.assert_allclose(s.wealth, [1.05, 0.5 * 1.21 + 0.5, 0.5 * 1.21 + 0.55, 1.155])
    np.testing.assert_allclose(s.held.iloc[1], [0.55 / 1.05, 0.5 / 1.05])


def test_rebalance_dates_calendar():
    dates = pd.DatetimeIndex(["2024-01-30", "2024-01-31", "2024-02-01", "2024-02-02",
                              "2024-02-05", "2024-04-01"])
    assert list(rebalance_dates(dates, "monthly")) == [True, False, True, False, False, True]
    assert list(rebalance_dates(dates, "weekly")) == [True, False, False, False, True, True]
    assert list(rebalance_dates(dates, "quarterly")) == [True, False, False, False, False, True]
    assert rebalance_dates(dates, "daily").all()
    assert list(rebalance_dates(dates, "never")) == [True] + [False] * 5


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["daily", "weekly", "monthly", "threshold"]),
       st.floats(0, 50))
def test_costs_never_make_money(seed, rule, bps):
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=40)
    w = pd.DataFrame(rng.dirichlet(np.ones(3), size=40), dates)
    r = pd.DataFrame(rng.normal(0, 0.02, (40, 3)), dates)
    free = simulate(w, r, Execution(rebalance=rule))
    paid = simulate(w, r, Execution(rebalance=rule, cost_bps=bps))
    assert (paid.costs >= 0).all()
    assert paid.wealth.iloc[-1] <= free.wealth.iloc[-1] + 1e-12
    np.testing.assert_allclose(paid.gross_returns - paid.returns,
                               paid.costs / paid.wealth.shift(1, fill_value=1.0), atol=1e-15)


@pytest.mark.parametrize("kw, match", [
    ({"rebalance": "hourly"}, "Unknown rebalance rule 'hourly'"),
    ({"cost_bps": -1}, "cost_bps must be a finite number >= 0"),
    ({"cash_rate": -2}, "cash_rate is an annual rate"),
    ({"initial_wealth": 0}, "initial_wealth must be > 0"),
])
def test_bad_execution_settings(kw, match):
    with pytest.raises(ConfigError, match=match):
        Execution(**kw)


def test_bad_inputs_are_named():
    with pytest.raises(DataError, match="share dates and assets"):
        simulate(TARGETS, RETURNS.iloc[:2])
    bad = TARGETS.copy()
    bad.iloc[1, 0] = np.nan
    with pytest.raises(DataError, match="2024-03-05"):
        simulate(bad, RETURNS)
    with pytest.raises(DataError, match="bankrupt"):
        simulate(pd.DataFrame([[5.0, -4.0]] * 3, DATES, ["A", "B"]),
                 pd.DataFrame([[-0.3, 0.3]] * 3, DATES, ["A", "B"]))
