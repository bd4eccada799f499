"""Training by gradient descent, parameters, and the errors raised for bad inputs."""

import numpy as np
import pytest

from neuralfolio.errors import ConfigError, DataError
from neuralfolio.scratch import (
    Dense,
    History,
    LogisticRegressor,
    Network,
    get_activation,
    get_loss,
    moons_data,
)


@pytest.fixture(scope="module")
def moons():
    X, y, _, _ = moons_data(n_train=120, n_test=10, noise=0.2, seed=3)
    return X, y


def _net(seed=0, **kw):
    return Network((2, 6, 1), ("tanh", "sigmoid"), seed=seed, **kw)


# ---------------------------------------------------------------- training
def test_minibatch_training_decreases_the_loss(moons):
    X, y = moons
    history = _net().fit(X, y, epochs=60, alpha=0.5, batch_size=16, seed=1)
    assert isinstance(history, History) and history.epochs == 60
    assert history.loss[-1] < 0.6 * history.loss[0]
    assert history.accuracy[-1] > 0.8


def test_minibatch_training_is_reproducible_with_a_seed(moons):
    X, y = moons
    a, b, c = _net(), _net(), _net()
    ha = a.fit(X, y, epochs=5, alpha=0.5, batch_size=16, seed=7)
    hb = b.fit(X, y, epochs=5, alpha=0.5, batch_size=16, seed=7)
    hc = c.fit(X, y, epochs=5, alpha=0.5, batch_size=16, seed=8)
    assert ha.loss == hb.loss
    for p, q in zip(a.params, b.params, strict=True):
        np.testing.assert_array_equal(p, q)
    assert ha.loss != hc.loss


def test_full_batch_equals_one_batch_of_size_n(moons):
    X, y = moons
    nets = [_net(), _net(), _net()]
    hists = [net.fit(X, y, epochs=10, alpha=0.5, batch_size=bs, seed=s)
             for net, bs, s in zip(nets, (None, len(X), 10 * len(X)), (0, 1, 2), strict=True)]
    assert hists[0].loss == hists[1].loss == hists[2].loss
    for p, q, r in zip(*(net.params for net in nets), strict=True):
        np.testing.assert_array_equal(p, q)
        np.testing.assert_array_equal(p, r)


def test_minibatch_epoch_is_a_sequence_of_steps_on_shuffled_batches(moons):
    X, y = moons
    net, manual = _net(), _net()
    history = net.fit(X, y, epochs=1, alpha=0.3, batch_size=50, seed=4)
    order = np.random.default_rng(4).permutation(len(X))
    losses = []
    for start in range(0, len(X), 50):
        rows = order[start:start + 50]
        loss, grads = manual.loss_and_gradients(X[rows], y[rows])
        losses.append(loss * len(rows))
        manual.set_params([p - 0.3 * g for p, g in zip(manual.params, grads, strict=True)])
    assert history.loss[0] == pytest.approx(sum(losses) / len(X), rel=1e-14)
    for p, q in zip(net.params, manual.params, strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-14, atol=1e-15)


def test_history_continues(moons):
    X, y = moons
    net = _net()
    assert net.history is None
    h = net.fit(X, y, epochs=3, alpha=0.5)
    net.fit(X, y, epochs=2, alpha=0.5, history=h)
    assert h.epochs == 5 and len(h.as_dict()["accuracy"]) == 5
    assert net.history is h


def test_softmax_network_learns_integer_labels(moons):
    X, y = moons
    net = Network((2, 8, 2), ("tanh", "softmax"), loss="cce", seed=0)
    history = net.fit(X, y[:, 0].astype(int), epochs=200, alpha=1.0)
    assert history.loss[-1] < history.loss[0]
    assert net.accuracy(X, y[:, 0]) > 0.85
    assert set(np.unique(net.predict(X))) <= {0, 1}


def test_mse_regression_fits_a_line():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 2))
    y = X @ np.array([[1.5], [-2.0]]) + 0.5
    net = Network((2, 1), ("linear",), loss="mse", seed=0)
    history = net.fit(X, y, epochs=300, alpha=0.1)
    assert history.accuracy == []
    np.testing.assert_allclose(net.layers[0].W, [[1.5], [-2.0]], atol=1e-6)
    np.testing.assert_allclose(net.layers[0].b, [[0.5]], atol=1e-6)


def test_params_round_trip_and_set_params_writes_in_place():
    net = _net()
    live = net.params
    saved = net.get_params()
    net.set_params([np.zeros_like(p) for p in saved])
    assert all(np.all(p == 0) for p in live)  # the same arrays were overwritten
    net.set_params(saved)
    for p, q in zip(net.params, saved, strict=True):
        np.testing.assert_array_equal(p, q)
        assert p.dtype == np.float64
    assert net.n_params == 6 * 2 + 6 + 6 + 1


def test_dense_layer_forward_and_backward_shapes():
    layer = Dense(3, 2, "tanh", rng=np.random.default_rng(0))
    X = np.ones((5, 3))
    A = layer.forward(X)
    dX = layer.backward(np.ones_like(A))
    assert A.shape == (5, 2) and dX.shape == (5, 3)
    assert layer.dW.shape == layer.W.shape and layer.db.shape == layer.b.shape
    assert repr(layer) == "Dense(3, 2, activation='tanh')"


def test_logistic_regressor_is_one_sigmoid_layer():
    model = LogisticRegressor(3, seed=0)
    assert model.sizes == [3, 1] and model.layers[0].activation.name == "sigmoid"
    assert model.loss_fn.name == "binary_crossentropy"
    assert model.W.shape == (3, 1) and model.b.shape == (1, 1)


# ---------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(("X", "match"), [
    (np.ones((4, 3)), "3 features but the network's input size is 2"),
    (np.ones(2), "must be 2-D"),
    (np.array([[0.0, 1.0], [np.nan, 0.0]]), r"non-finite .* rows \[1\]; drop or impute"),
    (np.array([[0.0, np.inf]]), "non-finite"),
    (np.ones((0, 2)), "no rows"),
    ([["a", "b"]], "numeric array"),
])
def test_bad_X_raises_data_error(X, match):
    with pytest.raises(DataError, match=match):
        _net().forward(X)


def test_y_of_the_wrong_shape_raises():
    X = np.zeros((4, 2))
    with pytest.raises(DataError, match=r"y must have shape \(4, 1\)"):
        _net().fit(X, np.zeros(3), epochs=1)
    with pytest.raises(DataError, match=r"y must have shape \(4, 1\)"):
        _net().loss(X, np.zeros((4, 2)))


def test_bce_labels_must_be_zero_or_one():
    X = np.zeros((3, 2))
    with pytest.raises(DataError, match=r"labels 0 or 1, got \[2\.0\]; map the two classes"):
        _net().fit(X, np.array([0, 1, 2]), epochs=1)
    with pytest.raises(DataError, match="0 or 1"):
        _net().loss(X, np.array([0.0, 0.5, 1.0]))
    with pytest.raises(DataError, match="non-finite"):
        _net().loss(X, np.array([0.0, np.nan, 1.0]))


def test_cce_targets_must_be_one_hot():
    net = Network((2, 3), ("softmax",), loss="cce")
    with pytest.raises(DataError, match="one-hot"):
        net.loss(np.zeros((2, 2)), np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    with pytest.raises(DataError, match=r"integers 0\.\.2"):
        net.loss(np.zeros((2, 2)), np.array([0, 3]))


def test_unknown_names_raise_config_error():
    with pytest.raises(ConfigError, match=r"unknown activation 'swish'; choose one of .*tanh"):
        Network((2, 3, 1), ("swish", "sigmoid"))
    with pytest.raises(ConfigError, match="unknown activation"):
        get_activation("gelu")
    with pytest.raises(ConfigError, match="unknown loss 'hinge'; choose one of"):
        get_loss("hinge")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"sizes": (2,), "activations": ()}, "at least an input and an output"),
    ({"sizes": (2, 0, 1), "activations": ("tanh", "sigmoid")}, "positive integer"),
    ({"sizes": (2, 3, 1), "activations": ("tanh",)}, "need 2 activations, got 1"),
    ({"sizes": (2, 3, 1), "activations": ("tanh", "linear")}, "needs a sigmoid output"),
    ({"sizes": (2, 3), "activations": ("sigmoid",), "loss": "cce"}, "needs a softmax output"),
    ({"sizes": (2, 1), "activations": ("sigmoid",), "l2": -1.0}, "l2 must be"),
    ({"sizes": (2, 3, 1), "activations": ("tanh", "sigmoid"), "init_scale": (1.0,)},
     "one per layer"),
])
def test_bad_network_settings_raise_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Network(**kwargs)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"alpha": 0.0}, "alpha"), ({"alpha": float("nan")}, "alpha"),
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
])
def test_bad_training_settings_raise_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        _net().fit(np.zeros((4, 2)), np.zeros(4), **kwargs)


def test_set_params_checks_count_and_shapes():
    net = _net()
    with pytest.raises(ConfigError, match="needs 4 arrays"):
        net.set_params(net.get_params()[:2])
    bad = net.get_params()
    bad[2] = np.zeros((3, 1))
    with pytest.raises(ConfigError, match=r"parameter 2 \(W2\) must have shape \(6, 1\)"):
        net.set_params(bad)
