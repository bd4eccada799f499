"""predict warns about (or refuses) inputs the network never saw in training."""

import warnings

import numpy as np
import pytest

from neuralfolio.data import synthetic_prices
from neuralfolio.errors import DataError, DataWarning
from neuralfolio.features import FeatureSpec, InputRange, feature_names
from neuralfolio.nn import NeuralAllocator, TrainConfig
from neuralfolio.optimize import min_variance_labels

FAST = TrainConfig(hidden=(8,), max_epochs=2, seed=0)


@pytest.fixture(scope="module")
def prices():
    return synthetic_prices(4, 400, seed=5)


@pytest.fixture(scope="module")
def course_model(prices):
    labels = min_variance_labels(prices, window=40).weights
    return NeuralAllocator(FeatureSpec("prices"), FAST).fit(prices, labels)


def test_in_range_inputs_pass_quietly(course_model, prices):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        course_model.predict(prices.iloc[-50:])


def test_far_prices_are_warned_about_with_the_z_score(course_model, prices):
    far = prices.iloc[-5:].copy()
    far["A2"] *= 30
    with pytest.warns(DataWarning, match=r"the price of A2 at \d+\.\d sd"):
        w = course_model.predict(far)
    assert len(w) == 5  # a warning, the weights still come
    z = course_model.input_zscores(far)
    assert (z["input"] == "price of A2").all() and (z["max_z"] > 8).all()


def test_strict_refuses(course_model, prices):
    far = prices.iloc[-5:] * 30
    with pytest.raises(DataError, match=r"beyond 8 training standard deviations"):
        course_model.predict(far, guard="raise")
    assert len(course_model.predict(far, guard=None)) == 5


def test_the_range_survives_save_and_load(course_model, prices, tmp_path):
    course_model.save(tmp_path / "m")
    loaded = NeuralAllocator.load(tmp_path / "m")
    far = prices.iloc[-3:] * 30
    np.testing.assert_allclose(loaded.input_zscores(far)["max_z"],
                               course_model.input_zscores(far)["max_z"])


def test_asset_agnostic_models_are_guarded_on_another_universe(prices):
    labels = min_variance_labels(prices, window=40).weights
    model = NeuralAllocator(FeatureSpec("risk", 40),
                            TrainConfig(model="attention", head="simplex", max_epochs=1)
                            ).fit(prices, labels)
    other = synthetic_prices(6, 100, seed=9)
    assert np.isfinite(model.input_zscores(other)["max_z"]).all()
    r = other.pct_change().fillna(0.0)
    r["A0"] *= 20  # one asset twenty times as volatile as any in training
    wild = 100 * (1 + r).cumprod()
    z = model.input_zscores(wild)
    assert (z["input"].iloc[-5:] == "log-volatility of A0").all()
    with pytest.warns(DataWarning, match=r"beyond 4 .*log-volatility of A0"):
        model.predict(wild, max_z=4)


def test_pooled_range_and_names():
    spec = FeatureSpec("risk", 10)
    x = np.random.default_rng(0).standard_normal((50, spec.n_features(3)))
    r = InputRange.fit(x, spec)
    z = r.zscores(np.zeros((1, spec.n_features(5))))  # five assets against three in training
    assert z.shape == (1, spec.n_features(5)) and np.isfinite(z).all()
    assert feature_names(spec, ["a", "b", "c"])[:4] == [
        "log-volatility of a", "log-volatility of b", "log-volatility of c", "correlation a/b"]
    assert np.isinf(r.zscores(np.full((1, spec.n_features(3)), np.nan))).all()
