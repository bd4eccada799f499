"""The NumPy runtime: the same weights as the PyTorch model, loadable without torch."""

import copy
import json
import pickle
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from neuralfolio.errors import ConfigError, DataError, ModelError
from neuralfolio.features import FeatureSpec, covariance_features, make_features
from neuralfolio.nn import AssetAttentionAllocator, DenseAllocator, NeuralAllocator, TrainConfig
from neuralfolio.nn._heads import make_head
from neuralfolio.nn._network import head_spec
from neuralfolio.optimize import min_variance_labels
from neuralfolio.policies import RuntimePolicy
from neuralfolio.scratch.runtime import (
    AttentionForward,
    DenseForward,
    HeadForward,
    NumpyAllocator,
    attention_forward,
    dense_forward,
    head_weights,
)

CASES = {
    "dense_softmax_risk": (FeatureSpec("risk", 30), TrainConfig(hidden=(16, 8), max_epochs=3)),
    "dense_simplex_prices": (FeatureSpec("prices", 1),
                             TrainConfig(hidden=(8,), head="simplex", max_epochs=3)),
    "dense_tanh_temperature": (FeatureSpec("risk", 30), TrainConfig(
        hidden=(8,), activation="tanh", head_options={"temperature": 0.5}, max_epochs=3)),
    "attention_long_short": (FeatureSpec("risk", 30), TrainConfig(
        model="attention", model_options={"d_model": 8}, head="long_short",
        head_options={"gross_leverage": 1.5}, max_epochs=2)),
    "attention_simplex": (FeatureSpec("risk", 30), TrainConfig(
        model="attention", model_options={"d_model": 8}, head="simplex", max_epochs=2)),
}


@pytest.fixture(scope="module")
def labels(small_prices):
    return min_variance_labels(small_prices, window=30).weights


@pytest.fixture(scope="module", params=list(CASES))
def fitted(request, small_prices, labels):
    spec, cfg = CASES[request.param]
    model = NeuralAllocator(spec, cfg).fit(small_prices.iloc[:300], labels)
    return model, model.to_numpy_runtime()


def _torch64(model, raw):
    # The PyTorch module itself, in float64, on the same scaled inputs.
    net = copy.deepcopy(model.network_).double().eval()
    with torch.no_grad():
        return net(torch.tensor(model._scale(raw), dtype=torch.float64)).numpy()


def test_runtime_matches_the_torch_module(fitted, small_prices):
    model, rt = fitted
    raw = make_features(small_prices.iloc[300:420], model.features).to_numpy()
    np.testing.assert_allclose(rt.predict_features(raw), _torch64(model, raw), atol=1e-6)
    values = small_prices.to_numpy()
    for end in (350, 420, 599):
        history = values[end + 1 - rt.lookback : end + 1]
        np.testing.assert_allclose(rt.predict_latest(history), model.predict_latest(history),
                                   atol=1e-6)


def test_saved_runtime_loads_and_runs_without_torch(fitted, small_prices, tmp_path):
    model, rt = fitted
    rt.save(tmp_path / "rt")
    history = small_prices.to_numpy()[-rt.lookback:]
    np.save(tmp_path / "h.npy", history)
    code = (
        "import json, sys; import numpy as np\n"
        "from neuralfolio.scratch.runtime import NumpyAllocator\n"
        f"m = NumpyAllocator.load({str(tmp_path / 'rt')!r})\n"
        f"w = m.predict_latest(np.load({str(tmp_path / 'h.npy')!r}))\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'w': w.tolist()}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    got = json.loads(out.stdout)
    assert got["torch"] is False
    np.testing.assert_allclose(got["w"], model.predict_latest(history), atol=1e-6)
    back = NumpyAllocator.load(tmp_path / "rt")
    np.testing.assert_allclose(back.predict_latest(history), rt.predict_latest(history),
                               atol=1e-14)


def test_runtime_policy_batch_equals_single_updates(fitted, small_prices):
    _, rt = fitted
    policy = RuntimePolicy(rt)
    dates = small_prices.index[400:410]
    batch = policy.weights_batch(small_prices.loc[: dates[-1]], dates)
    values = small_prices.to_numpy()
    for i, d in enumerate(dates):
        row = small_prices.index.get_loc(d)
        np.testing.assert_allclose(policy.weights(values[row + 1 - rt.lookback : row + 1]),
                                   batch.iloc[i], atol=1e-12)


def test_what_cannot_be_exported_or_loaded_is_explained(small_prices, labels, tmp_path):
    cash = NeuralAllocator(FeatureSpec("risk", 30), TrainConfig(
        hidden=(4,), head_options={"cash": True}, max_epochs=1)).fit(
        small_prices.iloc[:300], labels)
    with pytest.raises(ConfigError, match="has no NumPy runtime"):
        cash.to_numpy_runtime()
    with pytest.raises(ModelError, match="not fitted"):
        NeuralAllocator(FeatureSpec("risk", 30)).to_numpy_runtime()
    with pytest.raises(ModelError, match="is not a NumPy runtime"):
        NumpyAllocator.load(tmp_path)
    rt = NeuralAllocator(FeatureSpec("risk", 30), TrainConfig(hidden=(4,), max_epochs=1)).fit(
        small_prices.iloc[:300], labels).to_numpy_runtime()
    with pytest.raises(ModelError, match="history must have shape"):
        rt.predict_latest(np.ones((40, 3)))
    with pytest.raises(DataError, match="these inputs need 31"):
        rt.predict_latest(np.ones((10, 4)))
    with pytest.raises(ConfigError, match="RuntimePolicy takes a NumpyAllocator"):
        RuntimePolicy(object())


# ------------------------------------------------------------------ compiled plans
HEADS = {"softmax": {"temperature": 0.7}, "simplex": {}, "long_short": {"gross_leverage": 1.5}}


def _randomize(net: torch.nn.Module, seed: int, scale: float = 0.3) -> torch.nn.Module:
    """Random parameters everywhere (layer-norm gains around 1), in float64, no training."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            gain = ".norm" in f".{name}" and name.endswith("weight")
            p.copy_((1.0 if gain else 0.0) + scale * torch.randn_like(p))
    return net.double().eval()


def _risk_inputs(n: int, rows: int, unconstrained: bool, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(rows, n, n + 8))
    return covariance_features(a @ a.transpose(0, 2, 1) / (n + 8), unconstrained)


def _torch(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.tensor(x, dtype=torch.float64)).numpy()


def _attention(head: str, n_layers: int, n_heads: int, unconstrained: bool, prior: bool,
               seed: int = 0, scale: float = 0.3):
    net = _randomize(AssetAttentionAllocator(
        4 * n_heads, n_heads, n_layers, unconstrained=unconstrained, prior=prior,
        head=make_head(head, **HEADS[head])), seed, scale)
    args = (net._numpy_params(), net.config(), head_spec(net.head))
    return net, args


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("unconstrained, prior", [(True, True), (True, False), (False, False)])
@pytest.mark.parametrize("n_layers, n_heads", [(1, 1), (1, 4), (3, 2), (3, 4)])
def test_attention_plan_equals_torch_and_the_reference(head, unconstrained, prior, n_layers,
                                                       n_heads):
    net, args = _attention(head, n_layers, n_heads, unconstrained, prior,
                           seed=n_layers * 10 + n_heads)
    plan = AttentionForward(*args)
    for n in (2, 7, 20):  # asset-agnostic: one model, any number of assets
        x = _risk_inputs(n, 3, unconstrained, seed=n)
        batch = plan(x)
        single = np.stack([plan(row) for row in x])
        assert batch.shape == single.shape == (3, n)
        expected = _torch(net, x)
        np.testing.assert_allclose(batch, expected, rtol=0, atol=1e-6)
        np.testing.assert_allclose(single, expected, rtol=0, atol=1e-6)
        reference = attention_forward(*args, x)
        np.testing.assert_allclose(batch, reference, rtol=0, atol=1e-12)
        np.testing.assert_allclose(single, reference, rtol=0, atol=1e-12)


def test_attention_plan_takes_its_exact_paths_when_the_bounds_do_not_hold():
    # Large weights: scores that could overflow exp (the row maximum is subtracted) and a
    # feed-forward input too wide for the exp form of GELU (tanh instead).
    net, args = _attention("simplex", 2, 2, True, True, seed=3, scale=3.0)
    plan = AttentionForward(*args)
    assert all(plan._exact_softmax)
    assert {layer[-1] for layer in plan._layers} == {"tanh"}
    x = _risk_inputs(7, 4, True, seed=1)
    np.testing.assert_allclose(plan(x), attention_forward(*args, x), rtol=0, atol=1e-12)
    np.testing.assert_allclose(plan(x), _torch(net, x), rtol=0, atol=1e-6)
    # Small weights, but correlations above 1 (not risk features): the subtracting path.
    net, args = _attention("softmax", 2, 2, True, True, seed=4)
    plan = AttentionForward(*args)
    assert not any(plan._exact_softmax)
    x[:, 7:28] *= 40.0
    np.testing.assert_allclose(plan(x[0]), attention_forward(*args, x[0]), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(plan(x), _torch(net, x), rtol=0, atol=1e-6)


def test_attention_plan_explains_bad_inputs_and_handles_empty_batches():
    _, args = _attention("simplex", 1, 2, True, True)
    plan = AttentionForward(*args)
    with pytest.raises(ConfigError, match="not risk features"):
        plan(np.zeros(11))
    with pytest.raises(ConfigError, match="shape"):
        plan(np.zeros((1, 1, 9)))
    assert plan(np.zeros((0, 9))).shape == (0, 3)
    with pytest.raises(ConfigError, match="has no NumPy version"):
        AttentionForward(*args[:2], {"name": "capped", "max_weight": 0.5})


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("head", ["softmax", "simplex"])
@pytest.mark.parametrize("prior", [True, False])
@pytest.mark.parametrize("hidden", [(), (16,), (32, 16)])
def test_dense_plan_equals_torch_and_the_reference(activation, head, prior, hidden):
    options = {"temperature": 0.5} if head == "softmax" else {}
    net = _randomize(DenseAllocator(17, 5, hidden, activation, head=make_head(head, **options),
                                    prior=prior), seed=len(hidden), scale=0.5)
    layers, priors = net.to_numpy(), net.numpy_prior()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 17))
    mean, scale = rng.normal(size=17), rng.uniform(0.5, 2.0, size=17)
    scaled = (x - mean) / scale
    expected, reference = _torch(net, scaled), dense_forward(layers, scaled, **priors)
    for plan, inputs in ((DenseForward(layers, **priors), scaled),
                         (DenseForward(layers, **priors, scaler=(mean, scale)), x)):
        batch, single = plan(inputs), np.stack([plan(row) for row in inputs])
        for got in (batch, single):
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
            np.testing.assert_allclose(got, reference, rtol=0, atol=1e-12)
    with pytest.raises(ConfigError, match="takes inputs of shape"):
        DenseForward(layers, **priors)(np.zeros(16))


@pytest.mark.parametrize("spec", [{"name": "softmax", "temperature": 0.3},
                                  {"name": "simplex"},
                                  {"name": "long_short", "gross_leverage": 1.5, "net": 1.0},
                                  {"name": "long_short", "gross_leverage": 1.0, "net": 1.0},
                                  {"name": "long_short", "gross_leverage": 2.0, "net": 0.0},
                                  {"name": "long_short", "gross_leverage": 1.2, "net": -0.5}])
@settings(max_examples=40, deadline=None)
@given(z=arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 9)),
                elements=st.floats(-3, 3, width=16)))
def test_head_plan_equals_the_reference_and_torch(spec, z):
    # width-16 floats: many exact ties, the hard case for sorting thresholds
    head = HeadForward(spec)
    batch, single = head(z), np.stack([head(row) for row in z])
    config = {k: v for k, v in spec.items() if k != "name"}
    with torch.no_grad():
        expected = make_head(spec["name"], **config)(torch.tensor(z)).numpy()
    np.testing.assert_allclose(batch, expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(single, batch, rtol=0, atol=1e-15)
    # With gross_leverage == |net| the leverage is flat in alpha from 0 to the first kink:
    # the plan and the module take its end (the largest alpha), the readable reference a
    # point that depends on rounding. Elsewhere the answer is unique.
    if spec.get("gross_leverage") != abs(spec.get("net", 1.0)):
        np.testing.assert_allclose(batch, head_weights(spec, z), rtol=0, atol=1e-12)


def test_head_plan_keeps_nan_scores_nan():
    z = np.array([0.3, np.nan, -1.0])
    for name in ("softmax", "simplex"):
        assert np.isnan(HeadForward({"name": name})(z)).all()


def test_plans_are_thread_safe_and_survive_copies():
    net, args = _attention("simplex", 2, 4, True, True)
    plan = AttentionForward(*args)
    rows = {n: _risk_inputs(n, 8, True, seed=n) for n in (5, 20)}
    expected = {n: plan(x) for n, x in rows.items()}
    errors = []

    def work(n: int) -> None:
        for _ in range(40):
            for i, row in enumerate(rows[n]):
                if not np.array_equal(plan(row), expected[n][i]):
                    errors.append(n)

    threads = [threading.Thread(target=work, args=(n,)) for n in (5, 20, 5, 20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for other in (pickle.loads(pickle.dumps(plan)), copy.deepcopy(plan)):
        np.testing.assert_array_equal(other(rows[20]), expected[20])
    # The module caches its plan, and copies of the module carry it along.
    np.testing.assert_allclose(net.numpy_forward(rows[5]), expected[5], rtol=0, atol=1e-12)
    assert isinstance(net._np, AttentionForward)
    np.testing.assert_allclose(copy.deepcopy(net).numpy_forward(rows[5][0]), expected[5][0],
                               rtol=0, atol=1e-12)
    net.train()
    assert net._np is None
