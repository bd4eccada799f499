"""Every network family with every head, trained on bundled data through NeuralAllocator."""

import numpy as np
import pandas as pd
import pytest

from neuralfolio.data import load_prices
from neuralfolio.errors import ConfigError, ModelError
from neuralfolio.features import FeatureSpec
from neuralfolio.nn import NeuralAllocator, TrainConfig
from neuralfolio.nn._allocator import _outcomes
from neuralfolio.optimize import min_variance_labels

WINDOW = 20
FAMILIES = {
    "dense": ({"hidden": (16,)}, "risk"),
    "lstm": ({"model_options": {"hidden_size": 8}}, "returns"),
    "gru": ({"model_options": {"hidden_size": 8}}, "returns"),
    "rnn": ({"model_options": {"hidden_size": 8}}, "returns"),
    "tcn": ({"model_options": {"channels": (8, 8)}}, "returns"),
    "attention": ({"model_options": {"d_model": 16, "n_heads": 2, "n_layers": 1}}, "risk"),
}
HEADS = {
    "softmax": {},
    "simplex": {},
    "capped": {"max_weight": 0.4},
    "long_short": {"gross_leverage": 1.5},
    "softmax_cash": {"cash": True},
}


@pytest.fixture(scope="module")
def gfc():
    return load_prices("gfc").iloc[:700]


@pytest.fixture(scope="module")
def gfc_labels(gfc):
    return min_variance_labels(gfc, window=WINDOW).weights


def _config(family: str, head: str, **extra) -> TrainConfig:
    options, _ = FAMILIES[family]
    return TrainConfig(model=family, head=head.removesuffix("_cash"), head_options=HEADS[head],
                       max_epochs=2, batch_size=128, **options, **extra)


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_and_head_trains_and_gives_valid_weights(gfc, gfc_labels, family, head,
                                                               tmp_path):
    kind = FAMILIES[family][1]
    model = NeuralAllocator(FeatureSpec(kind, WINDOW), _config(family, head))
    model.fit(gfc, gfc_labels)
    w = model.predict(gfc).to_numpy()
    bounds = model.network_.head.bounds(gfc.shape[1])
    assert np.isfinite(w).all()
    assert (w >= bounds.lower - 1e-6).all() and (w <= bounds.upper + 1e-6).all()
    total = w.sum(axis=1)
    assert (total >= bounds.total[0] - 1e-5).all() and (total <= bounds.total[1] + 1e-5).all()
    assert (np.abs(w).sum(axis=1) <= bounds.gross + 1e-5).all()
    if head in ("simplex", "capped"):
        assert model.network_.head.name == head
    # one real-time update = the batch prediction's last row
    np.testing.assert_allclose(model.predict_latest(gfc.to_numpy()), w[-1], atol=1e-5)
    # persistence restores the family, the head and the scaling
    again = NeuralAllocator.load(model.save(tmp_path / "m"))
    assert type(again.network_) is type(model.network_)
    assert again.manifest_["head"]["name"] == model.network_.head.name
    np.testing.assert_allclose(again.predict(gfc).to_numpy(), w, atol=1e-6)


def test_families_refuse_the_wrong_inputs(gfc, gfc_labels):
    with pytest.raises(ConfigError, match="use features kind 'returns'"):
        NeuralAllocator(FeatureSpec("risk", WINDOW), _config("lstm", "softmax")).fit(
            gfc, gfc_labels)
    with pytest.raises(ConfigError, match="use features kind 'risk'"):
        NeuralAllocator(FeatureSpec("returns", WINDOW), _config("attention", "softmax")).fit(
            gfc, gfc_labels)
    with pytest.raises(ConfigError, match="model_options"):
        NeuralAllocator(FeatureSpec("returns", WINDOW),
                        TrainConfig(model="tcn", model_options={"width": 3})).fit(gfc, gfc_labels)


def test_asset_agnostic_model_allocates_a_universe_of_another_size():
    sp = load_prices("sp500").iloc[-900:]
    train, other = sp.iloc[:, :12], sp.iloc[:, 12:]  # 12 assets, then 8 different ones
    labels = min_variance_labels(train, window=WINDOW).weights
    cfg = _config("attention", "simplex")
    model = NeuralAllocator(FeatureSpec("risk", WINDOW), cfg).fit(train, labels)
    assert model.asset_agnostic
    w = model.predict(other)
    assert list(w.columns) == list(other.columns) and w.shape[1] == 8
    assert np.isfinite(w.to_numpy()).all() and (w.to_numpy() >= -1e-9).all()
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(model.predict_latest(other.to_numpy()), w.iloc[-1], atol=1e-5)
    # permuting the assets permutes the weights: nothing depends on the asset order
    order = list(other.columns[::-1])
    np.testing.assert_allclose(model.predict(other[order]).to_numpy(), w[order].to_numpy(),
                               atol=1e-5)
    # a model tied to its assets still refuses
    dense = NeuralAllocator(FeatureSpec("risk", WINDOW), _config("dense", "simplex"))
    dense.fit(train, labels)
    with pytest.raises(ModelError, match="trained on assets"):
        dense.predict(other)


def test_outcomes_are_the_returns_after_each_decision(gfc):
    dates = gfc.index[[5, 10]]
    r = _outcomes(gfc, dates, 3)
    assert r.shape == (2, 3, 4)
    expected = gfc.pct_change().iloc[11:14].to_numpy()
    np.testing.assert_allclose(r[1], expected, atol=1e-15)
    np.testing.assert_allclose(_outcomes(gfc, dates, 1), gfc.pct_change().iloc[[6, 11]],
                               atol=1e-15)


@pytest.mark.parametrize("horizon", [1, 5])
def test_outcome_loss_trains_without_labels_and_never_reads_past_the_end(gfc, horizon):
    cfg = TrainConfig(model="dense", hidden=(16,), head="simplex", loss="variance",
                      horizon=horizon, max_epochs=3, batch_size=64)
    model = NeuralAllocator(FeatureSpec("risk", WINDOW), cfg).fit(gfc)
    assert model.history_.loss == "variance"
    # the last decision trained on is `horizon` days before the last price
    assert model.training_period_[1] == str(gfc.index[-1 - horizon].date())
    w = model.predict(gfc).to_numpy()
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)
    # changing prices after the training data changes nothing
    longer = load_prices("gfc").iloc[:760]
    shocked = longer.copy()
    shocked.iloc[700:] *= np.linspace(1.0, 3.0, 60)[:, None]
    a = NeuralAllocator(FeatureSpec("risk", WINDOW), cfg).fit(longer.iloc[:700])
    b = NeuralAllocator(FeatureSpec("risk", WINDOW), cfg).fit(shocked.iloc[:700])
    np.testing.assert_array_equal(a.predict(gfc).to_numpy(), b.predict(gfc).to_numpy())


def test_outcome_training_lowers_realized_variance(gfc):
    cfg = TrainConfig(hidden=(32,), head="simplex", loss="variance", horizon=10, max_epochs=30,
                      batch_size=64, lr=3e-3, patience=30, val_fraction=0.2)
    model = NeuralAllocator(FeatureSpec("risk", WINDOW), cfg).fit(gfc)
    h = model.history_
    assert min(h.train_loss) < h.train_loss[0]
    w = model.predict(gfc).iloc[:-1]
    nxt = gfc.pct_change().shift(-1).loc[w.index].to_numpy()
    realized = (w.to_numpy() * nxt)[: len(w) // 2].sum(axis=1)  # training half
    equal = nxt[: len(w) // 2].mean(axis=1)
    assert realized.var() < equal.var()


def test_loss_and_data_mismatches_are_explained(gfc, gfc_labels):
    with pytest.raises(ConfigError, match="imitates label weights but no labels"):
        NeuralAllocator(FeatureSpec("risk", WINDOW), TrainConfig(hidden=(4,))).fit(gfc)
    with pytest.raises(ConfigError, match="augment"):
        NeuralAllocator(FeatureSpec("risk", WINDOW), TrainConfig(loss="variance"),
                        augment=100).fit(gfc)
    with pytest.raises(ConfigError, match="not a time series"):
        NeuralAllocator(FeatureSpec("risk", WINDOW), TrainConfig(loss="mse + 0.1*turnover"),
                        augment=100).fit(gfc, gfc_labels)
    mixed = TrainConfig(hidden=(8,), loss="mse + 0.5*variance + 0.1*turnover", max_epochs=2,
                        horizon=3)
    model = NeuralAllocator(FeatureSpec("risk", WINDOW), mixed).fit(gfc, gfc_labels)
    assert model.history_.loss == "mse + 0.5*variance + 0.1*turnover"
    assert isinstance(model.predict(gfc), pd.DataFrame)


@pytest.mark.parametrize("head", ["softmax", "simplex", "long_short"])
def test_attention_numpy_forward_equals_torch(head):
    import torch

    from neuralfolio.features import covariance_features
    from neuralfolio.nn import AssetAttentionAllocator
    from neuralfolio.nn._heads import make_head

    torch.manual_seed(0)
    net = AssetAttentionAllocator(16, 2, 2, head=make_head(head)).eval()
    torch.nn.init.normal_(net.score.weight, std=0.3)  # the score layer starts at zero
    rng = np.random.default_rng(0)
    for n in (3, 7):
        a = rng.normal(size=(4, n, 40))
        x = covariance_features(a @ a.transpose(0, 2, 1) / 40)
        with torch.no_grad():
            expected = net.double()(torch.tensor(x)).numpy()
        net.float()
        np.testing.assert_allclose(net.numpy_forward(x), expected, atol=1e-10)
        np.testing.assert_allclose(net.numpy_forward(x[0]), expected[0], atol=1e-10)
    with pytest.raises(ConfigError, match="not risk features"):
        net.numpy_forward(np.zeros(11))


@pytest.mark.parametrize("gross, net", [(1.5, 1.0), (1.0, 1.0), (2.0, 0.0), (1.2, -0.5)])
def test_numpy_long_short_head_equals_torch(gross, net):
    import torch

    from neuralfolio.nn._heads import LongShortHead
    from neuralfolio.nn._network import numpy_head

    head = LongShortHead(gross, net)
    z = np.random.default_rng(1).normal(scale=0.5, size=(200, 9))
    z[0] = 0.0  # all scores equal
    expected = head(torch.tensor(z)).numpy()
    got = numpy_head(head, z)
    np.testing.assert_allclose(got, expected, atol=1e-12)
    np.testing.assert_allclose(got.sum(axis=1), net, atol=1e-12)
    assert (np.abs(got).sum(axis=1) <= gross + 1e-12).all()
