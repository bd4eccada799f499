import numpy as np
import pytest
from sklearn.covariance import ledoit_wolf as sk_ledoit_wolf

from neuralfolio.risk import (
    annualized_return,
    annualized_volatility,
    ledoit_wolf,
    max_drawdown,
    rolling_ledoit_wolf,
    sharpe_ratio,
)


@pytest.mark.parametrize(("n_obs", "n_assets"), [(126, 20), (30, 50), (500, 3), (10, 1)])
def test_ledoit_wolf_matches_scikit_learn(n_obs, n_assets):
    rng = np.random.default_rng(n_obs + n_assets)
    x = rng.standard_normal((n_obs, n_assets)) @ rng.standard_normal((n_assets, n_assets)) * 0.01
    cov, shrink = ledoit_wolf(x)
    expected, expected_shrink = sk_ledoit_wolf(x)
    np.testing.assert_allclose(cov, expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    assert shrink == pytest.approx(expected_shrink, abs=1e-12)


def test_ledoit_wolf_batches_agree_with_single_windows():
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((7, 40, 5)) * 0.02
    covs, shrinks = ledoit_wolf(batch)
    for k in range(7):
        single, s = ledoit_wolf(batch[k])
        np.testing.assert_allclose(covs[k], single, atol=1e-15)
        assert shrinks[k] == pytest.approx(s)


def test_rolling_ledoit_wolf_uses_trailing_windows_only():
    rng = np.random.default_rng(1)
    r = rng.standard_normal((100, 4)) * 0.01
    covs = rolling_ledoit_wolf(r, 30, chunk=7)
    assert covs.shape == (71, 4, 4)
    for k in (0, 13, 70):
        np.testing.assert_allclose(covs[k], sk_ledoit_wolf(r[k : k + 30])[0], atol=1e-16)


def test_portfolio_measures_on_a_hand_worked_path():
    r = np.array([0.10, -0.50, 0.20])
    assert max_drawdown(r) == pytest.approx(0.5)  # wealth 1.1 -> 0.55 -> 0.66
    assert annualized_return(np.full(252, 0.001)) == pytest.approx(1.001**252 - 1)
    flat = np.full(50, 0.01)
    assert annualized_volatility(flat) == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(2)
    x = rng.normal(0.001, 0.01, 1000)
    assert sharpe_ratio(x) == pytest.approx(x.mean() / x.std(ddof=1) * np.sqrt(252), rel=1e-6)
    assert annualized_volatility(x) == pytest.approx(x.std(ddof=1) * np.sqrt(252), rel=1e-6)


def test_sample_covariance_matches_numpy_and_batches():
    from neuralfolio.risk import sample_covariance

    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 30, 4))
    for k in range(3):
        np.testing.assert_allclose(sample_covariance(x)[k], np.cov(x[k].T), atol=1e-14)


def test_ewma_incremental_update_equals_the_recursion():
    from neuralfolio.risk import EWMACovariance, rolling_covariances, sample_covariance

    rng = np.random.default_rng(6)
    r = rng.standard_normal((80, 3)) * 0.01
    est = EWMACovariance(decay=0.9, warmup=20).fit(r[:50])
    expected = sample_covariance(r[:20])
    for row in r[20:50]:
        expected = 0.9 * expected + 0.1 * np.outer(row, row)
    np.testing.assert_allclose(est.covariance_, expected, atol=1e-16)
    assert est.n_updates_ == 30
    est.update(r[50])
    expected = 0.9 * expected + 0.1 * np.outer(r[50], r[50])
    np.testing.assert_allclose(est.covariance_, expected, atol=1e-16)
    rolled = rolling_covariances(r, 20, "ewma", decay=0.9)
    assert rolled.shape == (61, 3, 3)
    np.testing.assert_allclose(rolled[31], expected, atol=1e-16)
    # No look-ahead: changing a later return leaves earlier estimates alone.
    r2 = r.copy()
    r2[60] *= 10
    np.testing.assert_array_equal(rolling_covariances(r2, 20, "ewma", decay=0.9)[:41],
                                  rolled[:41])


def test_covariance_estimator_errors():
    from neuralfolio.errors import ConfigError, InsufficientHistoryError
    from neuralfolio.risk import EWMACovariance, rolling_covariances

    r = np.zeros((10, 2))
    with pytest.raises(ConfigError, match="Unknown covariance estimator 'robust'"):
        rolling_covariances(r, 5, "robust")
    with pytest.raises(InsufficientHistoryError, match="window of 20"):
        rolling_covariances(r, 20)
    with pytest.raises(ConfigError, match="decay must be in"):
        EWMACovariance(decay=1.0)
