"""Hand-written derivatives against central finite differences, in float64."""

import itertools

import numpy as np
import pytest

from neuralfolio.scratch import (
    ACTIVATIONS,
    LOSSES,
    Network,
    get_activation,
    get_loss,
    gradient_check,
    numerical_gradients,
    sigmoid,
    softmax,
)

EPS = 1e-6
TOL = 1e-6


def _fd(f, x, eps=EPS):
    """Central-difference gradient of the scalar function f at x (any shape)."""
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        up = f(x)
        x[idx] = old - eps
        down = f(x)
        x[idx] = old
        g[idx] = (up - down) / (2 * eps)
    return g


def _rel(a, b):
    return np.linalg.norm(a - b) / (np.linalg.norm(a) + np.linalg.norm(b))


# ---------------------------------------------------------------- activations
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_backward_matches_finite_differences(name):
    act = get_activation(name)
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 4))
    z[np.abs(z) < 0.05] = 0.3  # keep relu's kink away from the nudged points
    dA = rng.normal(size=z.shape)
    A = act.forward(z)
    numeric = _fd(lambda v: float(np.sum(dA * act.forward(v))), z.copy())
    assert _rel(act.backward(dA, z, A), numeric) < 1e-9


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "linear"])
def test_elementwise_derivative_matches_finite_differences(name):
    act = get_activation(name)
    z = np.linspace(-4, 4, 41).reshape(-1, 1) + 0.01  # no point exactly at 0
    numeric = (act.forward(z + EPS) - act.forward(z - EPS)) / (2 * EPS)
    np.testing.assert_allclose(act.derivative(z, act.forward(z)), numeric, atol=1e-9)


def test_sigmoid_and_softmax_are_stable_for_huge_inputs():
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        np.testing.assert_array_equal(sigmoid(np.array([-1000.0, 0.0, 1000.0])),
                                      [0.0, 0.5, 1.0])
        np.testing.assert_allclose(softmax(np.array([[1000.0, 1000.0, -1000.0]])),
                                   [[0.5, 0.5, 0.0]])


# ---------------------------------------------------------------- losses
def _targets(name, rng, shape):
    if name == "binary_crossentropy":
        return (rng.random(shape) > 0.5).astype(float)
    if name == "categorical_crossentropy":
        return np.eye(shape[1])[rng.integers(0, shape[1], shape[0])]
    return rng.normal(size=shape)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_gradient_matches_finite_differences(name):
    loss = get_loss(name)
    rng = np.random.default_rng(1)
    y = _targets(name, rng, (7, 3))
    A = rng.uniform(0.05, 0.95, size=y.shape)
    if name == "categorical_crossentropy":
        A /= A.sum(axis=1, keepdims=True)
    numeric = _fd(lambda a: loss.value(y, a), A.copy())
    assert _rel(loss.gradient(y, A), numeric) < 1e-9


@pytest.mark.parametrize(("name", "act"), [("binary_crossentropy", "sigmoid"),
                                           ("categorical_crossentropy", "softmax")])
def test_fused_dz_is_the_chain_rule(name, act):
    loss, g = get_loss(name), get_activation(act)
    rng = np.random.default_rng(2)
    z = rng.normal(size=(5, 3))
    y = _targets(name, rng, z.shape)
    numeric = _fd(lambda v: loss.value(y, g.forward(v)), z.copy())
    A = g.forward(z)
    assert _rel(loss.fused_dz(y, A), numeric) < 1e-9
    chained = g.backward(loss.gradient(y, A), z, A)
    np.testing.assert_allclose(loss.fused_dz(y, A), chained, rtol=1e-10, atol=1e-15)


def test_bce_mean_matches_the_chapter_formula():
    y = np.array([[0.0], [1.0], [1.0], [0.0]])
    A = np.array([[0.2], [0.7], [0.9], [0.4]])
    chapter = -1 / 4 * np.sum(y * np.log(A) + (1 - y) * np.log(1 - A))
    assert get_loss("bce").value(y, A) == pytest.approx(chapter, rel=1e-15)


# ---------------------------------------------------------------- whole networks
OUTPUTS = [("binary_crossentropy", "sigmoid", 1), ("binary_crossentropy", "sigmoid", 2),
           ("mse", "linear", 2), ("mse", "tanh", 1), ("categorical_crossentropy", "softmax", 3)]


def _problem(loss, k, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(9, 3))
    return X, _targets(loss, rng, (9, k))


@pytest.mark.parametrize(("hidden", "output", "l2", "fused"), [
    (h, o, l2, f) for h, o, l2, f in itertools.product(
        sorted(ACTIVATIONS), OUTPUTS, (0.0, 0.3), (True, False))
])
def test_network_gradient_check(hidden, output, l2, fused):
    loss, out_act, k = output
    X, y = _problem(loss, k)
    net = Network((3, 5, 4, k), (hidden, hidden, out_act), loss, l2=l2, seed=3, fused=fused)
    if hidden == "relu":
        net.forward(X)  # the check is only meaningful away from relu's kink
        assert min(np.min(np.abs(layer._z)) for layer in net.layers[:-1]) > 100 * EPS
    assert gradient_check(net, X, y, eps=EPS) <= TOL


def test_gradient_check_elementwise_on_the_chapter_network():
    X, y = _problem("binary_crossentropy", 1, seed=4)
    net = Network((3, 3, 1), ("tanh", "sigmoid"), l2=0.1, seed=1)
    _, analytic = net.loss_and_gradients(X, y)
    for a, n in zip(analytic, numerical_gradients(net, X, y), strict=True):
        np.testing.assert_allclose(a, n, rtol=1e-6, atol=1e-10)


def test_l2_penalises_weights_not_biases():
    X, y = _problem("binary_crossentropy", 1)
    plain = Network((3, 4, 1), ("tanh", "sigmoid"), seed=5)
    reg = Network((3, 4, 1), ("tanh", "sigmoid"), l2=0.7, seed=5)
    l0, g0 = plain.loss_and_gradients(X, y)
    l1, g1 = reg.loss_and_gradients(X, y)
    n = X.shape[0]
    squares = sum(np.sum(layer.W**2) for layer in reg.layers)
    assert l1 - l0 == pytest.approx(0.7 / (2 * n) * squares, rel=1e-12)
    for i, layer in enumerate(reg.layers):
        np.testing.assert_allclose(g1[2 * i] - g0[2 * i], 0.7 / n * layer.W, atol=1e-14)
        np.testing.assert_array_equal(g1[2 * i + 1], g0[2 * i + 1])


def test_gradient_check_restores_the_parameters():
    X, y = _problem("binary_crossentropy", 1)
    net = Network((3, 4, 1), ("tanh", "sigmoid"), seed=5)
    before = net.get_params()
    gradient_check(net, X, y)
    for a, b in zip(before, net.params, strict=True):
        np.testing.assert_array_equal(a, b)
