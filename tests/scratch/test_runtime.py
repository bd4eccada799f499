"""The NumPy runtime: the same weights as the PyTorch model, loadable without torch."""

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from neuralfolio.errors import ConfigError, DataError, ModelError
from neuralfolio.features import FeatureSpec, make_features
from neuralfolio.nn import NeuralAllocator, TrainConfig
from neuralfolio.optimize import min_variance_labels
from neuralfolio.policies import RuntimePolicy
from neuralfolio.scratch.runtime import NumpyAllocator

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
