import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from neuralfolio.data import simple_returns, synthetic_prices
from neuralfolio.errors import ConfigError, InsufficientHistoryError
from neuralfolio.features import (
    FeatureSpec,
    FeatureStepper,
    Standardizer,
    covariance_features,
    latest_features,
    make_features,
)
from neuralfolio.risk import ledoit_wolf, woodbury_is_cheaper


def test_risk_features_describe_the_optimizers_covariance(small_prices):
    spec = FeatureSpec("risk", 50)
    x = make_features(small_prices, spec)
    assert x.shape == (len(small_prices) - 50, spec.n_features(4)) == (550, 14)
    assert x.index[0] == small_prices.index[50]
    t = x.index[200]
    window = simple_returns(small_prices).loc[:t].iloc[-50:].to_numpy()
    cov = ledoit_wolf(window)[0]
    vol = np.sqrt(np.diag(cov))
    expected_logvol = np.log(vol) - np.log(vol).mean()
    corr = cov / np.outer(vol, vol)
    np.testing.assert_allclose(x.loc[t].to_numpy()[:4], expected_logvol, atol=1e-12)
    np.testing.assert_allclose(x.loc[t].to_numpy()[4:10], corr[np.triu_indices(4, 1)],
                               atol=1e-12)
    u = np.linalg.solve(cov, np.ones(4))
    np.testing.assert_allclose(x.loc[t].to_numpy()[10:], u / u.sum(), atol=1e-10)
    plain = make_features(small_prices, FeatureSpec("risk", 50, unconstrained=False))
    assert plain.shape == (550, 10)
    np.testing.assert_allclose(plain.to_numpy(), x.to_numpy()[:, :10])


def test_return_windows_are_the_trailing_returns_time_major(small_prices):
    spec = FeatureSpec("returns", 5)
    x = make_features(small_prices, spec)
    assert x.shape == (len(small_prices) - 5, spec.n_features(4)) == (595, 20)
    t = x.index[100]
    expected = simple_returns(small_prices).loc[:t].iloc[-5:].to_numpy()
    np.testing.assert_allclose(x.loc[t].to_numpy().reshape(5, 4), expected, atol=1e-15)
    np.testing.assert_allclose(
        latest_features(small_prices.loc[:t].to_numpy(), spec), x.loc[t].to_numpy(), atol=1e-15)


def test_risk_features_do_not_depend_on_the_variance_level():
    rng = np.random.default_rng(0)
    cov = ledoit_wolf(rng.standard_normal((80, 5)) * 0.01)[0]
    np.testing.assert_allclose(covariance_features(cov), covariance_features(9.0 * cov))


def test_price_features_are_todays_prices(small_prices):
    x = make_features(small_prices, FeatureSpec("prices"))
    pd.testing.assert_frame_equal(x, small_prices)


@pytest.mark.parametrize("kind", ["risk", "prices", "returns"])
def test_single_update_path_equals_batch(small_prices, kind):
    spec = FeatureSpec(kind, 40)
    batch = make_features(small_prices, spec)
    values = small_prices.to_numpy()
    for row in (spec.lookback - 1, 300, len(values) - 1):
        single = latest_features(values[: row + 1], spec)
        np.testing.assert_allclose(single, batch.loc[small_prices.index[row]].to_numpy(),
                                   atol=1e-12)


def test_standardizer_uses_training_rows_and_survives_constant_inputs():
    x = np.array([[1.0, 5.0], [3.0, 5.0]])
    s = Standardizer().fit(x)
    np.testing.assert_allclose(s.transform(x), [[-1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(s.transform([[5.0, 5.0]]), [[3.0, 0.0]])


def test_bad_specs_and_short_history(small_prices):
    with pytest.raises(ConfigError, match="Unknown feature kind 'volume'"):
        FeatureSpec("volume")
    with pytest.raises(InsufficientHistoryError, match="window=700"):
        make_features(small_prices, FeatureSpec("risk", 700))


# ------------------------------------------------------------- stepped risk inputs
def _groups_rel(a, b, n):
    """Worst relative difference over the log-volatilities, the correlations and the
    unconstrained weights, each relative to its largest magnitude."""
    edges = [0, n, len(b) - n, len(b)] if len(b) > n + n * (n - 1) // 2 else [0, n, len(b)]
    return max(float(np.abs(a[lo:hi] - b[lo:hi]).max() / max(np.abs(b[lo:hi]).max(), 1e-300))
               for lo, hi in itertools.pairwise(edges) if hi > lo)


def test_long_stepped_run_at_200_assets_equals_the_batch_inputs():
    # window 60 < 200 assets: a singular sample covariance, the Woodbury solve, and 700
    # pushes through two exact rebuilds of the rolling sums and of the Gram matrix
    n, window = 200, 60
    prices = synthetic_prices(n, window + 1 + 700, seed=11).to_numpy()
    spec = FeatureSpec("risk", window)
    assert woodbury_is_cheaper(n, window)
    stepper = FeatureStepper(spec).start(prices[: window + 1])
    worst = 0.0
    for k in range(window + 1, len(prices)):
        stepper.push(prices[k])
        if k % 37 == 0 or k == len(prices) - 1:
            x = stepper.features()
            assert x.shape == (spec.n_features(n),)
            worst = max(worst, _groups_rel(x, latest_features(prices[: k + 1], spec), n))
    assert worst < 1e-10
    cov_b = ledoit_wolf(np.diff(prices[-window - 1:], axis=0) / prices[-window - 1:-1])[0]
    np.testing.assert_allclose(stepper.covariance(), cov_b, rtol=1e-10, atol=0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 1000), n_assets=st.integers(2, 90), window=st.integers(3, 70),
       extra=st.integers(1, 40), unconstrained=st.booleans())
def test_the_solve_choice_does_not_change_the_inputs(seed, n_assets, window, extra,
                                                     unconstrained):
    prices = synthetic_prices(n_assets, window + 1 + extra, seed=seed).to_numpy()
    spec = FeatureSpec("risk", window, unconstrained=unconstrained)
    batch = latest_features(prices, spec)
    cov = ledoit_wolf(np.diff(prices[-window - 1:], axis=0) / prices[-window - 1:-1])[0]
    assume(np.linalg.cond(cov) < 1e5)  # else no two solvers agree to 1e-10
    for solve in ("auto", "woodbury", "direct"):
        stepper = FeatureStepper(spec, solve=solve).start(prices[: window + 1])
        for row in prices[window + 1:]:
            stepper.push(row)
        assert _groups_rel(stepper.features(), batch, n_assets) < 1e-10, solve


def test_bad_solve_is_refused():
    with pytest.raises(ConfigError, match="solve must be"):
        FeatureStepper(FeatureSpec(), solve="lu")
