"""The hand-written backpropagation trains exactly like PyTorch's autograd and SGD (float64)."""

import numpy as np
import pytest

from neuralfolio.scratch import Network, moons_data

torch = pytest.importorskip("torch")
F = torch.nn.functional

STEPS = 100


@pytest.fixture(scope="module")
def moons():
    X, y, _, _ = moons_data(n_train=200, n_test=10, noise=0.3, seed=0)
    return X, y


def _torch_twin(net: Network):
    """A torch.nn.Sequential with the same layers and a copy of the NumPy weights."""
    modules = []
    acts = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid}
    for layer in net.layers:
        linear = torch.nn.Linear(layer.n_in, layer.n_out, dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(layer.W.T.copy()))
            linear.bias.copy_(torch.from_numpy(layer.b[0].copy()))
        modules += [linear, acts[layer.activation.name]()]
    return torch.nn.Sequential(*modules)


def _train_torch(model, X, y, alpha, l2):
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    opt = torch.optim.SGD(model.parameters(), lr=alpha)
    weights = [m.weight for m in model if isinstance(m, torch.nn.Linear)]
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = F.binary_cross_entropy(model(Xt), yt)  # mean over the samples
        if l2:
            loss = loss + l2 / (2 * len(X)) * sum((W**2).sum() for W in weights)
        losses.append(loss.item())
        loss.backward()
        opt.step()
    params = []
    for m in model:
        if isinstance(m, torch.nn.Linear):
            params += [m.weight.detach().numpy().T, m.bias.detach().numpy()[None, :]]
    return losses, params


@pytest.mark.parametrize(("sizes", "acts", "alpha", "l2"), [
    ((2, 3, 1), ("tanh", "sigmoid"), 1.0, 0.0),
    ((2, 3, 1), ("tanh", "sigmoid"), 1.0, 2.0),
    ((2, 8, 8, 1), ("relu", "relu", "sigmoid"), 0.2, 0.0),
    ((2, 8, 8, 1), ("relu", "relu", "sigmoid"), 0.2, 1.0),
], ids=["2-3-1", "2-3-1-l2", "2-8-8-1-relu", "2-8-8-1-relu-l2"])
def test_training_matches_torch_sgd(moons, sizes, acts, alpha, l2):
    X, y = moons
    net = Network(sizes, acts, "bce", l2=l2, seed=1)
    twin = _torch_twin(net)
    torch_losses, torch_params = _train_torch(twin, X, y, alpha, l2)
    history = net.fit(X, y, epochs=STEPS, alpha=alpha)
    np.testing.assert_allclose(history.loss, torch_losses, rtol=1e-10, atol=0)
    assert history.loss[-1] < 0.8 * history.loss[0]  # it really trained
    for mine, theirs in zip(net.params, torch_params, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-8)
