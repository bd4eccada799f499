import json

import numpy as np
import pytest
import torch

from neuralfolio.errors import ConfigError, DataError, ModelError
from neuralfolio.features import FeatureSpec
from neuralfolio.nn import DenseAllocator, NeuralAllocator, TrainConfig
from neuralfolio.nn._network import numpy_forward
from neuralfolio.optimize import min_variance_labels

FAST = TrainConfig(hidden=(16,), max_epochs=15, patience=5, batch_size=64, seed=0)


@pytest.fixture(scope="module")
def labels(small_prices):
    return min_variance_labels(small_prices, window=40).weights


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_dense_network_outputs_weights(activation):
    torch.manual_seed(0)
    net = DenseAllocator(6, 3, (8, 8), activation, dropout=0.1).eval()
    x = torch.randn(5, 6)
    w = net(x)
    assert w.shape == (5, 3)
    torch.testing.assert_close(w.sum(dim=1), torch.ones(5))
    assert (w > 0).all()
    # NumPy evaluation of the same layers gives the same weights.
    np.testing.assert_allclose(numpy_forward(net.to_numpy(), x.double().numpy()),
                               w.detach().double().numpy(), atol=1e-6)


@pytest.mark.parametrize("kind", ["risk", "prices"])
def test_fit_predict_and_single_update_agree(small_prices, labels, kind):
    model = NeuralAllocator(FeatureSpec(kind, 40), FAST).fit(small_prices, labels)
    w = model.predict(small_prices)
    assert np.isfinite(w.to_numpy()).all()
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)
    assert model.history_.best_epoch >= 0
    assert len(model.history_.val_loss) == len(model.history_.train_loss) <= FAST.max_epochs
    last = model.predict_latest(small_prices.to_numpy())
    np.testing.assert_allclose(last, w.iloc[-1].to_numpy(), atol=1e-5)


def test_training_learns_something(small_prices, labels):
    """Trained imitation beats the untrained network on the labels it was given."""
    cfg = TrainConfig(hidden=(32,), max_epochs=60, patience=60, seed=1)
    model = NeuralAllocator(FeatureSpec("risk", 40), cfg).fit(small_prices, labels)
    h = model.history_
    assert h.train_loss[-1] < 0.5 * h.train_loss[0]
    assert min(h.val_loss) < h.val_loss[0]


def test_same_seed_same_model(small_prices, labels):
    a = NeuralAllocator(FeatureSpec("risk", 40), FAST).fit(small_prices, labels)
    b = NeuralAllocator(FeatureSpec("risk", 40), FAST).fit(small_prices, labels)
    np.testing.assert_array_equal(a.predict(small_prices), b.predict(small_prices))


def test_augmented_training_uses_scenarios(small_prices, labels):
    model = NeuralAllocator(FeatureSpec("risk", 40), FAST, augment=200)
    model.fit(small_prices, labels)
    assert np.isfinite(model.predict(small_prices).to_numpy()).all()
    with pytest.raises(ConfigError, match="risk inputs only"):
        NeuralAllocator("prices", FAST, augment=10)


def test_save_load_round_trip(small_prices, labels, tmp_path):
    model = NeuralAllocator(FeatureSpec("risk", 40), FAST).fit(small_prices, labels)
    model.save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["assets"] == list(small_prices.columns)
    assert manifest["features"] == {"kind": "risk", "window": 40, "unconstrained": True}
    assert manifest["architecture"]["hidden"] == [16]
    assert "torch" in manifest["versions"]
    loaded = NeuralAllocator.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(small_prices), model.predict(small_prices))
    assert not list((tmp_path / "m").glob("*.pkl"))


def test_warm_start_continues_from_previous_network(small_prices, labels):
    model = NeuralAllocator(FeatureSpec("risk", 40), FAST).fit(small_prices.iloc[:400], labels)
    scale = model.scaler_.scale_.copy()
    before = model.predict(small_prices).to_numpy()
    model.fit(small_prices, labels, warm_start=True)
    np.testing.assert_array_equal(model.scaler_.scale_, scale)
    assert np.abs(model.predict(small_prices).to_numpy() - before).max() > 0


def test_wrong_assets_are_refused(small_prices, labels, tmp_path):
    model = NeuralAllocator(FeatureSpec("prices"), FAST).fit(small_prices, labels)
    with pytest.raises(ModelError, match=r"missing \['A3'\]"):
        model.predict(small_prices.iloc[:, :3])
    # the same assets in another order are matched by name (tests/nn/test_asset_names.py)
    renamed = small_prices.rename(columns={"A0": "X"})
    with pytest.raises(ModelError, match=r"unexpected \['X'\]"):
        model.predict(renamed)


def test_bad_inputs(small_prices, labels, tmp_path):
    with pytest.raises(ModelError, match="not fitted"):
        NeuralAllocator().predict(small_prices)
    with pytest.raises(ModelError, match="not a saved model"):
        NeuralAllocator.load(tmp_path)
    with pytest.raises(DataError, match="Give a longer training period"):
        NeuralAllocator(FeatureSpec("risk", 40), FAST).fit(small_prices.iloc[:80], labels)
    with pytest.raises(DataError, match="do not match price columns"):
        NeuralAllocator(FeatureSpec("risk", 40), FAST).fit(
            small_prices, labels.rename(columns={"A0": "Z"}))
    with pytest.raises(ConfigError, match="Unknown loss"):
        TrainConfig(loss="hinge")
    with pytest.raises(ConfigError, match="Unknown activation"):
        DenseAllocator(3, 3, (4,), "gelu")
    model = NeuralAllocator(FeatureSpec("risk", 40), FAST).fit(small_prices, labels)
    with pytest.raises(DataError, match="need 41"):
        model.predict_latest(small_prices.to_numpy()[:10])
    model.save(tmp_path / "m")
    (tmp_path / "m" / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="Could not read"):
        NeuralAllocator.load(tmp_path / "m")


def test_loss_names_match_implementations():
    from neuralfolio.nn import LOSS_NAMES, LOSSES

    assert tuple(LOSSES) == LOSS_NAMES
