import numpy as np
import pandas as pd
import pytest

from neuralfolio.data import simple_returns
from neuralfolio.errors import InsufficientHistoryError
from neuralfolio.optimize import MinVarianceQP, min_variance_labels, scenario_labels
from neuralfolio.risk import ledoit_wolf


def test_label_dates_and_values(small_prices):
    labels = min_variance_labels(small_prices, window=60)
    w = labels.weights
    assert w.index[0] == small_prices.index[60]
    assert w.index.equals(small_prices.index[60:])
    assert list(w.columns) == list(small_prices.columns)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    # Row t is the optimum for the 60 returns ending at t.
    r = simple_returns(small_prices)
    t = w.index[100]
    window = r.loc[:t].iloc[-60:].to_numpy()
    np.testing.assert_allclose(w.loc[t], MinVarianceQP(4).solve(ledoit_wolf(window)[0]),
                               atol=1e-7)
    assert labels.params["window"] == 60
    assert labels.params["covariance"] == "ledoit_wolf"


def test_cache_round_trip_keeps_parameters(small_prices, tmp_path):
    first = min_variance_labels(small_prices, window=40, cache_dir=tmp_path)
    assert not first.from_cache
    files = list(tmp_path.glob("labels-*.parquet"))
    assert len(files) == 1
    second = min_variance_labels(small_prices, window=40, cache_dir=tmp_path)
    assert second.from_cache
    assert second.params == first.params
    pd.testing.assert_frame_equal(second.weights, first.weights, check_freq=False)
    # Other parameters or other prices: another cache entry.
    min_variance_labels(small_prices, window=41, cache_dir=tmp_path)
    min_variance_labels(small_prices.iloc[:-1], window=40, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("labels-*.parquet"))) == 3


def test_too_little_history_is_refused(small_prices):
    with pytest.raises(InsufficientHistoryError, match="window of 600 returns"):
        min_variance_labels(small_prices, window=600)


def test_scenarios_come_with_their_optimal_weights(small_prices):
    r = simple_returns(small_prices).to_numpy()
    covs, w = scenario_labels(r, 50, window=60, seed=3)
    assert covs.shape == (50, 4, 4)
    assert w.shape == (50, 4)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    np.testing.assert_allclose(w[7], MinVarianceQP(4).solve(covs[7]), atol=1e-7)
    # Scenarios differ from each other and are reproducible from the seed.
    assert np.abs(covs[0] - covs[1]).max() > 0
    np.testing.assert_array_equal(scenario_labels(r, 50, window=60, seed=3)[0], covs)


def test_blends_and_factor_shocks_give_valid_covariances(small_prices):
    from neuralfolio.optimize import bootstrap_covariances, scenario_training_set

    r = simple_returns(small_prices).to_numpy()
    plain = bootstrap_covariances(r, 300, window=60, seed=1)
    mixed = bootstrap_covariances(r, 300, window=60, seed=1, blend_share=0.5,
                                  factor_share=0.5, factor_shock=0.8)
    assert np.linalg.eigvalsh(mixed).min() > 0
    vol = np.sqrt(np.diagonal(mixed, axis1=1, axis2=2))
    corr = mixed / (vol[:, :, None] * vol[:, None, :])
    off = corr[:, ~np.eye(4, dtype=bool)]
    plain_vol = np.sqrt(np.diagonal(plain, axis1=1, axis2=2))
    plain_off = (plain / (plain_vol[:, :, None] * plain_vol[:, None, :]))[:, ~np.eye(4, dtype=bool)]
    assert off.std() > plain_off.std()  # shocks widen the range of correlations seen
    x, w = scenario_training_set(r, 50, window=60, objective="risk_parity")
    assert x.shape == (50, 4 + 6 + 4) and w.shape == (50, 4)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)


def test_scenarios_refuse_objectives_that_need_returns(small_prices):
    from neuralfolio.errors import ConfigError

    r = simple_returns(small_prices).to_numpy()
    with pytest.raises(ConfigError, match="covariances only"):
        scenario_labels(r, 10, window=60, objective="max_sharpe")
