import numpy as np
import pandas as pd
import pytest
from skfolio.model_selection import WalkForward, cross_val_predict
from skfolio.portfolio import MultiPeriodPortfolio, Portfolio
from sklearn.base import clone

from neuralfolio.data import synthetic_prices
from neuralfolio.errors import ConfigError, DataError
from neuralfolio.nn import NeuralAllocator, TrainConfig
from neuralfolio.nn._skfolio import NeuralOptimization

FAST = TrainConfig(hidden=(8,), max_epochs=3, batch_size=64)


def make_model(**kwargs):
    params = {"window": 30, "train": FAST, "augment": 0, **kwargs}
    return NeuralOptimization(**params)


@pytest.fixture(scope="module")
def returns():
    return synthetic_prices(4, 400, seed=1).pct_change().dropna()


@pytest.fixture(scope="module")
def fitted(returns):
    return make_model().fit(returns)


def test_fit_sets_long_only_weights(fitted, returns):
    w = fitted.weights_
    assert isinstance(w, np.ndarray)
    assert w.shape == (returns.shape[1],)
    assert np.isfinite(w).all()
    assert (w >= 0).all()
    assert w.sum() == pytest.approx(1.0, abs=1e-9)
    assert fitted.n_features_in_ == 4
    np.testing.assert_array_equal(fitted.feature_names_in_, ["A0", "A1", "A2", "A3"])
    assert isinstance(fitted.allocator_, NeuralAllocator)
    assert fitted.allocator_.assets_ == ["A0", "A1", "A2", "A3"]
    # Labels are the rolling solutions of the training returns only, from the window-th.
    assert fitted.labels_.index[0] == returns.index[29]
    assert fitted.labels_.index[-1] == returns.index[-1]
    # weights_ is the allocator's own prediction at the last training date.
    prices = 100 * (1 + returns).cumprod()
    np.testing.assert_allclose(fitted.allocator_.predict(prices).iloc[-1], w, atol=1e-6)


def test_predict_holds_the_weights(fitted, returns):
    ptf = fitted.predict(returns.iloc[-50:])
    assert isinstance(ptf, Portfolio)
    np.testing.assert_array_equal(ptf.weights, fitted.weights_)
    np.testing.assert_allclose(ptf.returns, returns.iloc[-50:].to_numpy() @ fitted.weights_)


def test_array_input_gives_same_weights(fitted, returns):
    est = make_model().fit(returns.to_numpy())
    np.testing.assert_array_equal(est.weights_, fitted.weights_)
    assert est.allocator_.assets_ == ["x0", "x1", "x2", "x3"]
    assert not hasattr(est, "feature_names_in_")
    assert isinstance(est.predict(returns.to_numpy()), Portfolio)


def test_cross_val_predict_walk_forward(returns):
    cv = WalkForward(train_size=200, test_size=50)
    pred = cross_val_predict(make_model(), returns, cv=cv)
    splits = list(cv.split(returns))
    assert isinstance(pred, MultiPeriodPortfolio)
    assert len(pred.portfolios) == len(splits) == 3
    test_dates = returns.index[np.concatenate([test for _, test in splits])]
    pd.testing.assert_index_equal(pred.returns_df.index, test_dates, check_names=False)
    for ptf, (train, test) in zip(pred.portfolios, splits, strict=True):
        pd.testing.assert_index_equal(ptf.returns_df.index, returns.index[test],
                                      check_names=False)
        ref = make_model().fit(returns.iloc[train])
        np.testing.assert_array_equal(ptf.weights, ref.weights_)


def test_fold_weights_ignore_later_returns(returns):
    """Returns after a fold's training end cannot move the weights held in its test fold."""
    cv = WalkForward(train_size=200, test_size=50)
    rng = np.random.default_rng(0)
    perturbed = returns.copy()
    perturbed.iloc[200:] = rng.normal(0.0, 0.03, size=perturbed.iloc[200:].shape)
    a = cross_val_predict(make_model(), returns, cv=cv)
    b = cross_val_predict(make_model(), perturbed, cv=cv)
    np.testing.assert_array_equal(a.portfolios[0].weights, b.portfolios[0].weights)
    # ...while a fold that trains on the perturbed returns does change.
    assert not np.allclose(a.portfolios[1].weights, b.portfolios[1].weights)
    # The same directly: a fit on the first 200 returns equals one on the first 200 of a
    # panel whose later returns differ.
    np.testing.assert_array_equal(
        make_model().fit(returns.iloc[:200]).weights_,
        make_model().fit(perturbed.iloc[:200]).weights_,
    )


def test_clone_and_params_round_trip():
    est = make_model(objective="risk_parity", features="prices",
                     portfolio_params={"name": "nn"})
    params = est.get_params()
    assert params["objective"] == "risk_parity"
    assert params["window"] == 30
    assert params["train"] is FAST
    assert params["portfolio_params"] == {"name": "nn"}
    twin = clone(est)
    assert twin is not est
    assert twin.get_params().keys() == params.keys()
    for key, value in params.items():
        assert twin.get_params()[key] == value, key
    assert twin.set_params(window=40, train={"hidden": [4]}) is twin
    assert twin.window == 40
    assert twin.train == {"hidden": [4]}  # stored unchanged, validated in fit
    assert est.window == 30
    assert not hasattr(twin, "weights_")
    assert NeuralOptimization().get_params()["train"] is None


def test_dict_train_and_portfolio_params(returns):
    est = make_model(train={"hidden": (8,), "max_epochs": 3, "batch_size": 64},
                     portfolio_params={"name": "nn"})
    est.fit(returns.iloc[:200])
    assert est.allocator_.train == FAST
    assert est.predict(returns.iloc[200:]).name == "nn"


def test_warm_start_fine_tunes_the_same_allocator(returns):
    est = make_model(warm_start=True).fit(returns.iloc[:200])
    first = est.allocator_
    est.fit(returns.iloc[:250])
    assert est.allocator_ is first
    assert est.allocator_.training_period_[1] == str(returns.index[249].date())
    cold = make_model().fit(returns.iloc[:200])
    cold_allocator = cold.allocator_
    cold.fit(returns.iloc[:250])
    assert cold.allocator_ is not cold_allocator


def with_value(X, row, col, value):
    X = X.copy()
    X.iloc[row, col] = value
    return X


@pytest.mark.parametrize(
    ("edit", "error", "match"),
    [
        (lambda X: with_value(X, 10, 0, np.nan), DataError,
         r"1 NaN or infinite returns \(first: asset 'A0' at 2000-01-18.*dropna"),
        (lambda X: with_value(X, 5, 1, np.inf), DataError, r"NaN or infinite"),
        (lambda X: with_value(X, 7, 2, -1.0), DataError, r"returns <= -1.*'A2'.*linear returns"),
        (lambda X: X.iloc[:87], DataError, r"87 observations.*at least 88.*smaller window"),
        (lambda X: X.to_numpy()[:, 0], DataError, r"2-D"),
    ],
    ids=["nan", "inf", "minus-one", "too-short", "1d"],
)
def test_bad_returns(returns, edit, error, match):
    with pytest.raises(error, match=match):
        make_model().fit(edit(returns))


@pytest.mark.parametrize("features", ["risk", "prices"])
def test_minimum_length_is_enough(returns, features):
    """The length the error asks for is what the allocator's own split needs."""
    est = make_model(features=features).fit(returns.iloc[:88])
    assert est.weights_.sum() == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"objective": "max_fun"}, r"Unknown objective 'max_fun'; choose one of .*min_variance"),
        ({"window": 1}, r"window must be an integer >= 2"),
        ({"features": "volume"}, r"Unknown features 'volume'"),
        ({"train": {"hidden": (8,), "epochs": 3}}, r"Unknown train setting.*epochs"),
        ({"train": "fast"}, r"train must be a TrainConfig"),
        ({"augment": -1}, r"augment must be an integer >= 0"),
        ({"features": "prices", "augment": 2}, r"risk inputs only"),
    ],
)
def test_bad_params(returns, params, match):
    est = make_model(**params)  # no validation in __init__ (scikit-learn convention)
    with pytest.raises(ConfigError, match=match):
        est.fit(returns)


def test_outcome_loss_needs_no_labels():
    from neuralfolio.data import synthetic_prices
    from neuralfolio.nn import NeuralOptimization

    x = synthetic_prices(4, 400, seed=1).pct_change().dropna()
    est = NeuralOptimization(window=30, train={"hidden": [8], "max_epochs": 2, "loss": "variance",
                                               "horizon": 5}).fit(x)
    assert est.labels_ is None
    np.testing.assert_allclose(est.weights_.sum(), 1.0, atol=1e-6)
