"""No look-ahead: a price shock planted on date d changes nothing decided before d."""

import numpy as np
import pandas as pd
import pytest

from neuralfolio.backtest import walk_forward
from neuralfolio.config import RunConfig
from neuralfolio.features import FeatureSpec, make_features
from neuralfolio.nn import TrainConfig
from neuralfolio.optimize import min_variance_labels
from neuralfolio.pipeline import build_policies

WINDOW = 40
FAST = TrainConfig(hidden=(16,), max_epochs=6, patience=3, batch_size=64)


@pytest.fixture(scope="module")
def shocked(small_prices):
    d = small_prices.index[470]
    prices = small_prices.copy()
    prices.loc[d:, "A1"] *= 3.0  # a jump on d that persists
    prices.loc[d, "A2"] *= 0.2  # a one-day crash on d
    return d, prices


def _policies():
    outcome = TrainConfig(hidden=(16,), max_epochs=4, patience=3, batch_size=64, head="simplex",
                          loss="variance", horizon=5)
    return build_policies(RunConfig(window=WINDOW, outcome_window=WINDOW, augment=50, train=FAST,
                                    outcome_train=outcome))


def test_labels_before_the_shock_are_unchanged(small_prices, shocked):
    d, prices = shocked
    before = min_variance_labels(small_prices, window=WINDOW).weights
    after = min_variance_labels(prices, window=WINDOW).weights
    pd.testing.assert_frame_equal(before.loc[: d - pd.Timedelta(days=1)],
                                  after.loc[: d - pd.Timedelta(days=1)])
    assert not np.allclose(before.loc[d], after.loc[d])


@pytest.mark.parametrize("kind", ["risk", "prices"])
def test_features_before_the_shock_are_unchanged(small_prices, shocked, kind):
    d, prices = shocked
    spec = FeatureSpec(kind, WINDOW)
    before, after = make_features(small_prices, spec), make_features(prices, spec)
    early = before.index < d
    pd.testing.assert_frame_equal(before[early], after[early])
    assert not np.allclose(before.loc[d], after.loc[d])


def test_backtest_weights_before_the_shock_are_unchanged(small_prices, shocked):
    d, prices = shocked
    kwargs = {"test_start": small_prices.index[400], "retrain_every": 30}
    base = walk_forward(small_prices, _policies(),
                        min_variance_labels(small_prices, window=WINDOW).weights, **kwargs)
    hit = walk_forward(prices, _policies(), min_variance_labels(prices, window=WINDOW).weights,
                       **kwargs)
    # The shock falls between two re-training dates, so re-training after it must not leak.
    assert any(t > d for t in base.retrain_dates)
    for name in base.weights:
        w0, w1 = base.weights[name], hit.weights[name]
        pd.testing.assert_frame_equal(w0.loc[w0.index < d], w1.loc[w1.index < d],
                                      obj=name)
    changed = [n for n in ("network", "optimizer_daily")
               if not np.allclose(base.weights[n].loc[d], hit.weights[n].loc[d])]
    assert changed == ["network", "optimizer_daily"]
