import numpy as np
import pandas as pd
import pytest

from neuralfolio.backtest import (
    BacktestResult,
    Execution,
    policy_metrics,
    simulate,
    walk_forward,
)
from neuralfolio.config import RunConfig
from neuralfolio.data import simple_returns
from neuralfolio.errors import ConfigError, DataError, InsufficientHistoryError
from neuralfolio.nn import TrainConfig
from neuralfolio.optimize import min_variance_labels
from neuralfolio.pipeline import build_policies
from neuralfolio.policies import BuyAndHold, EqualWeight, InverseVolatility, MinVariancePolicy

WINDOW = 40
FAST = TrainConfig(hidden=(16,), max_epochs=8, patience=3, batch_size=64)


def _policies():
    outcome = TrainConfig(hidden=(16,), max_epochs=4, patience=3, batch_size=64, head="simplex",
                          loss="variance", horizon=5)
    return build_policies(RunConfig(window=WINDOW, outcome_window=WINDOW, augment=100, train=FAST,
                                    outcome_train=outcome))


@pytest.fixture(scope="module")
def run(small_prices):
    labels = min_variance_labels(small_prices, window=WINDOW).weights
    test_start = small_prices.index[400]
    return walk_forward(small_prices, _policies(), labels, test_start=test_start,
                        retrain_every=50)


def test_schedule_and_shapes(run, small_prices):
    test = small_prices.index[400:-1]
    assert run.next_returns.index.equals(test)
    assert run.retrain_dates == list(test[::50])
    for name, w in run.weights.items():
        assert w.index.equals(test), name
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)
        assert len(run.fit_seconds[name]) == len(run.retrain_dates)
        assert len(run.update_seconds[name]) > 0


def test_returns_are_realized_the_day_after_the_decision(run, small_prices):
    r = simple_returns(small_prices)
    d = run.next_returns.index[10]
    nxt = small_prices.index[small_prices.index.get_loc(d) + 1]
    pd.testing.assert_series_equal(run.next_returns.loc[d], r.loc[nxt], check_names=False)
    w = run.weights["equal_weight"].loc[d].to_numpy()
    assert run.portfolio_returns().loc[d, "equal_weight"] == pytest.approx(w @ r.loc[nxt])


def test_daily_optimizer_is_the_reference_and_at_retrain_holds(run):
    np.testing.assert_allclose(run.weights["optimizer_daily"], run.reference, atol=1e-7)
    held = run.weights["optimizer_at_retrain"]
    block = held.loc[run.retrain_dates[1] :].iloc[:50]
    assert (block.to_numpy() == block.to_numpy()[0]).all()
    np.testing.assert_allclose(held.loc[run.retrain_dates[1]],
                               run.reference.loc[run.retrain_dates[1]], atol=1e-7)


def test_single_updates_agree_with_batch_weights(run):
    for name, gap in run.path_gap.items():
        assert gap < 1e-5, name


def test_summary_figures(run):
    s = run.summary()
    assert list(s.index) == list(run.weights)
    assert s.loc["optimizer_daily", "l1_to_optimizer"] == pytest.approx(0.0, abs=1e-6)
    assert s.loc["equal_weight", "turnover"] > 0  # drift away from 1/N is traded back
    assert s.loc["optimizer_at_retrain", "fit_seconds"] > 0
    assert (s["volatility"] > 0).all()
    assert s.notna().all().all()


def test_metrics_on_a_hand_worked_case():
    idx = pd.bdate_range("2020-01-01", periods=3)
    w = pd.DataFrame([[0.5, 0.5], [1.0, 0.0], [0.5, 0.5]], index=idx, columns=["a", "b"])
    r = pd.DataFrame([[0.10, -0.10], [0.0, 0.0], [0.02, 0.0]], index=idx, columns=["a", "b"])
    ref = pd.DataFrame([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]], index=idx, columns=["a", "b"])
    sim = simulate(w, r)
    m = policy_metrics(sim, w, ref)
    # Day 1 drifts 50/50 to 55/45; trading to 100/0 turns over 0.45 + 0.45 = 0.9.
    # Day 2 holds 100/0 flat; trading to 50/50 turns over 1.0.
    np.testing.assert_allclose(sim.traded, [1.0, 0.9, 1.0])
    assert m["turnover"] == pytest.approx((0.9 + 1.0) / 2)
    assert m["l1_to_optimizer"] == pytest.approx((0 + 1.0 + 0) / 3)
    assert m["cost"] == 0.0


def test_run_is_saved(run, tmp_path):
    import json

    run.save(tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["policies"]) == set(run.weights)
    assert set(summary["policies"]["network"]) >= {
        "annual_return", "volatility", "sharpe", "max_drawdown", "turnover",
        "l1_to_optimizer", "update_us",
    }
    w = pd.read_parquet(tmp_path / "weights" / "network.parquet")
    np.testing.assert_allclose(w.to_numpy(), run.weights["network"].to_numpy())
    assert (tmp_path / "returns.csv").exists()


def test_bad_schedules_are_refused(small_prices):
    labels = min_variance_labels(small_prices, window=WINDOW).weights
    pol = {"equal_weight": EqualWeight()}
    with pytest.raises(ConfigError, match="retrain_every"):
        walk_forward(small_prices, pol, labels, test_start="2001-01-01", retrain_every=0)
    with pytest.raises(DataError, match="test period"):
        walk_forward(small_prices, pol, labels, test_start="2030-01-01")
    with pytest.raises(InsufficientHistoryError, match="lookback"):
        walk_forward(small_prices, {"o": MinVariancePolicy(WINDOW)}, labels,
                     test_start=small_prices.index[10])
    with pytest.raises(DataError, match="Labels are missing"):
        walk_forward(small_prices, pol, labels.iloc[:-100], test_start=small_prices.index[400])


def test_statistics_and_paired_intervals_of_a_run(run):
    stats = run.statistics("optimizer_daily")
    assert set(stats.index) == set(run.policies)
    assert stats.loc["optimizer_daily", "tracking_error"] == 0.0
    paired = run.paired("optimizer_daily", n_boot=200)
    assert ("equal_weight", "volatility") in paired.index
    assert (paired["low"] <= paired["high"]).all()
    with pytest.raises(ConfigError, match="not a policy of this run"):
        run.paired("optimizer")


class _Recorder(EqualWeight):
    """1/N that records the span of prices and labels each fit saw."""

    lookback = 5
    needs_labels = True

    def __init__(self):
        self.seen = []

    def __deepcopy__(self, memo):
        # walk_forward fits copies of the policies; these share one record.
        return self

    def fit(self, prices, labels=None):
        self.seen.append((prices.index[0], prices.index[-1], labels.index[-1], len(prices)))
        return self


def test_calendar_schedule_rolling_window_and_purge(small_prices):
    labels = min_variance_labels(small_prices, window=WINDOW).weights
    rec = _Recorder()
    run = walk_forward(small_prices, {"rec": rec}, labels, test_start=small_prices.index[400],
                       retrain_every="monthly", train_window=100, purge=7)
    test = run.next_returns.index
    months = test.to_period("M")
    assert run.retrain_dates == [test[0], *test[1:][months[1:] != months[:-1]]]
    idx = small_prices.index
    for (first, last, last_label, n), tau in zip(rec.seen, run.retrain_dates, strict=True):
        assert idx.get_loc(tau) - idx.get_loc(last) == 7      # the purge gap
        assert last_label <= last                             # no label past the data
        assert n == 100 and idx.get_loc(last) - idx.get_loc(first) == 99


def test_bad_train_window_purge_and_calendar(small_prices):
    labels = min_variance_labels(small_prices, window=WINDOW).weights
    pol = {"o": MinVariancePolicy(WINDOW)}
    start = small_prices.index[400]
    with pytest.raises(ConfigError, match=r"train_window .* must exceed"):
        walk_forward(small_prices, pol, labels, test_start=start, train_window=WINDOW)
    with pytest.raises(ConfigError, match="purge must be >= 0"):
        walk_forward(small_prices, pol, labels, test_start=start, purge=-1)
    with pytest.raises(ConfigError, match="fortnightly"):
        walk_forward(small_prices, pol, labels, test_start=start, retrain_every="fortnightly")


def test_execution_reaches_every_policy_and_buy_and_hold_keeps_its_own_rule(small_prices):
    labels = min_variance_labels(small_prices, window=WINDOW).weights
    pols = {"eq": EqualWeight(), "bh": BuyAndHold(), "iv": InverseVolatility(WINDOW)}
    run = walk_forward(small_prices, pols, labels, test_start=small_prices.index[400],
                       execution=Execution(rebalance="monthly", cost_bps=10))
    assert run.execution["eq"].rebalance == "monthly" and run.execution["eq"].cost_bps == 10
    assert run.execution["bh"].rebalance == "never"
    bh = run.simulation("bh")
    assert bh.rebalanced.sum() == 1 and bh.costs.iloc[1:].eq(0).all()
    # Buy-and-hold's wealth is the average growth of the assets since the first date, less
    # the entry cost (10 bps of 1.0, paid from cash, which earns nothing here).
    growth = (1 + run.next_returns).cumprod().mean(axis=1)
    np.testing.assert_allclose(bh.wealth, growth - 10e-4, rtol=1e-12)
    s = run.summary()
    assert s.loc["eq", "cost"] > 0 and s.loc["bh", "turnover"] == 0.0


def test_parallel_folds_give_the_serial_result(small_prices):
    labels = min_variance_labels(small_prices, window=WINDOW).weights

    def pols():
        return {"opt": MinVariancePolicy(WINDOW, "at_fit"), "iv": InverseVolatility(WINDOW),
                **{k: v for k, v in _policies().items() if k == "network"}}

    kw = {"test_start": small_prices.index[400], "retrain_every": 50}
    serial = walk_forward(small_prices, pols(), labels, **kw)
    for backend in ("loky", "threading"):
        par = walk_forward(small_prices, pols(), labels, n_jobs=2, backend=backend, **kw)
        for name in serial.policies:
            pd.testing.assert_frame_equal(par.weights[name], serial.weights[name],
                                          check_exact=True)
            assert len(par.fit_seconds[name]) == len(serial.retrain_dates)


def test_saved_run_loads_back(run, tmp_path):
    run.execution = {name: Execution(cost_bps=3) for name in run.policies}
    run._simulations.clear()
    run.save(tmp_path)
    back = BacktestResult.load(tmp_path)
    assert back.policies == run.policies
    assert back.retrain_dates == run.retrain_dates
    pd.testing.assert_frame_equal(back.summary(), run.summary())
    pd.testing.assert_frame_equal(back.next_returns, run.next_returns, check_freq=False)
    with pytest.raises(DataError, match="not a saved backtest run"):
        BacktestResult.load(tmp_path / "weights")
    (tmp_path / "weights" / "network.parquet").unlink()
    with pytest.raises(DataError, match="incomplete"):
        BacktestResult.load(tmp_path)
