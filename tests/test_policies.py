import numpy as np
import pytest

from neuralfolio.errors import ConfigError
from neuralfolio.optimize import OBJECTIVES, Constraints, rolling_labels
from neuralfolio.policies import (
    BuyAndHold,
    EqualWeight,
    InverseVolatility,
    OptimizerPolicy,
    SkfolioPolicy,
)


@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_optimizer_policy_single_updates_equal_batch_and_labels(small_prices, objective):
    policy = OptimizerPolicy(objective, window=40)
    dates = small_prices.index[100:106]
    batch = policy.weights_batch(small_prices.loc[: dates[-1]], dates)
    values = small_prices.to_numpy()
    for i, d in enumerate(dates):
        row = small_prices.index.get_loc(d)
        single = policy.weights(values[row + 1 - policy.lookback : row + 1])
        np.testing.assert_allclose(single, batch.iloc[i].to_numpy(), atol=1e-6)
    labels = rolling_labels(small_prices.iloc[:110], objective=objective, window=40).weights
    np.testing.assert_allclose(batch.to_numpy(), labels.loc[dates].to_numpy(), atol=1e-6)


def test_at_fit_holds_the_weights_of_the_fit_date(small_prices):
    policy = OptimizerPolicy("risk_parity", window=40, resolve="at_fit")
    policy.fit(small_prices.iloc[:200])
    dates = small_prices.index[200:210]
    held = policy.weights_batch(small_prices.iloc[:210], dates)
    assert (held.to_numpy() == held.to_numpy()[0]).all()
    daily = OptimizerPolicy("risk_parity", window=40).weights(small_prices.to_numpy()[:200])
    np.testing.assert_allclose(held.iloc[0], daily, atol=1e-8)


def test_constraints_and_sample_covariance_reach_the_solver(small_prices):
    policy = OptimizerPolicy("min_variance", window=40, cov="sample",
                             constraints=Constraints(lower=0.2, upper=0.3))
    w = policy.weights(small_prices.to_numpy()[:100])
    assert w.min() >= 0.2 - 1e-8 and w.max() <= 0.3 + 1e-8


def test_equal_weight():
    np.testing.assert_allclose(EqualWeight().weights(np.ones((3, 4))), 0.25)


def test_bad_policy_arguments():
    with pytest.raises(ConfigError, match="Unknown objective 'max_return'"):
        OptimizerPolicy("max_return")
    with pytest.raises(ConfigError, match="windowed covariance"):
        OptimizerPolicy(cov="ewma")
    with pytest.raises(ConfigError, match="resolve must be"):
        OptimizerPolicy(resolve="weekly")


def test_inverse_volatility_batch_equals_single_updates_and_hand_formula(small_prices):
    policy = InverseVolatility(window=40)
    dates = small_prices.index[100:105]
    batch = policy.weights_batch(small_prices.loc[: dates[-1]], dates)
    values = small_prices.to_numpy()
    for i, d in enumerate(dates):
        row = small_prices.index.get_loc(d)
        np.testing.assert_allclose(policy.weights(values[row - 40 : row + 1]), batch.iloc[i])
    r = small_prices.pct_change().iloc[61:101]
    inv = 1 / r.std()
    np.testing.assert_allclose(batch.iloc[0], inv / inv.sum())
    with pytest.raises(ConfigError, match="window of >= 2"):
        InverseVolatility(1)


def test_buy_and_hold_targets_1_over_n_and_never_rebalances():
    assert BuyAndHold.rebalance == "never"
    assert not BuyAndHold.carries_state
    np.testing.assert_allclose(BuyAndHold().weights(np.ones((2, 4))), 0.25)


def test_skfolio_policy_runs_any_estimator(small_prices):
    from skfolio.optimization import HierarchicalRiskParity
    from skfolio.optimization import InverseVolatility as SkInvVol

    hist = small_prices.to_numpy()[:101]
    ours = InverseVolatility(40).weights(hist)
    theirs = SkfolioPolicy(SkInvVol(), window=40).weights(hist)
    np.testing.assert_allclose(theirs, ours, atol=1e-10)   # same rule, two implementations
    hrp = SkfolioPolicy.named("HierarchicalRiskParity", window=40)
    assert isinstance(hrp.estimator, HierarchicalRiskParity)
    w = hrp.weights(hist)
    assert w.shape == (4,) and w.sum() == pytest.approx(1.0) and (w >= 0).all()
    held = SkfolioPolicy(SkInvVol(), window=40, resolve="at_fit").fit(small_prices.iloc[:101])
    dates = small_prices.index[101:104]
    b = held.weights_batch(small_prices.iloc[:104], dates)
    np.testing.assert_allclose(b.to_numpy(), np.tile(ours, (3, 1)), atol=1e-10)
    with pytest.raises(ConfigError, match=r"no estimator 'Nope'.*HierarchicalRiskParity"):
        SkfolioPolicy.named("Nope")
    with pytest.raises(ConfigError, match="takes a skfolio estimator"):
        SkfolioPolicy(object())
