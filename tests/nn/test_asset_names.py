"""Outputs are keyed by asset name: any column order gives the same weights per asset."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from neuralfolio.cli import app
from neuralfolio.data import synthetic_prices
from neuralfolio.features import FeatureSpec
from neuralfolio.nn import NeuralAllocator, TrainConfig
from neuralfolio.optimize import min_variance_labels

ASSETS = ["A0", "A1", "A2", "A3", "A4"]

# every family, every head (with the inputs each family takes)
CASES = [
    ("dense", "risk", "softmax", {}),
    ("dense", "prices", "simplex", {}),
    ("dense", "risk", "capped", {"max_weight": 0.4}),
    ("dense", "risk", "long_short", {"gross_leverage": 1.5}),
    ("lstm", "returns", "softmax", {}),
    ("gru", "returns", "simplex", {}),
    ("tcn", "returns", "capped", {"max_weight": 0.4}),
    ("attention", "risk", "simplex", {}),
    ("attention", "risk", "long_short", {"gross_leverage": 1.5}),
]


@pytest.fixture(scope="module")
def prices():
    return synthetic_prices(len(ASSETS), 320, seed=4)


@pytest.fixture(scope="module")
def labels(prices):
    return min_variance_labels(prices, window=30)


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}-{c[2]}")
def model(request, prices, labels):
    family, kind, head, options = request.param
    cfg = TrainConfig(model=family, head=head, head_options=options, hidden=(8,),
                      max_epochs=2, batch_size=64, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # uncapped labels for the capped head: not the point
        return NeuralAllocator(FeatureSpec(kind, 30), cfg).fit(prices, labels.weights)


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(ASSETS))
def test_reordered_columns_give_the_same_weights_per_asset(model, prices, order):
    tail = prices.iloc[-40:]
    expected = model.predict(tail, guard=None)
    got = model.predict(tail[order], guard=None)
    assert list(got.columns) == order
    np.testing.assert_allclose(got.to_numpy(), expected[order].to_numpy(), rtol=0, atol=1e-12)


def test_fine_tuning_on_reordered_columns_keeps_assets_by_name(prices, labels):
    cfg = TrainConfig(model="dense", hidden=(8,), max_epochs=2, seed=0)
    model = NeuralAllocator(FeatureSpec("prices"), cfg).fit(prices, labels.weights)
    order = ASSETS[::-1]
    model.fit(prices[order], labels.weights[order], warm_start=True)
    assert model.assets_ == ASSETS
    np.testing.assert_allclose(model.predict(prices[order], guard=None)[ASSETS].to_numpy(),
                               model.predict(prices, guard=None).to_numpy(), atol=1e-12)


def test_cli_predict_table_and_json_agree_on_reversed_columns(tmp_path):
    # The reported case: an attention model, a file with its columns reversed.
    from neuralfolio.data import load_prices

    gfc = load_prices("gfc")
    model = NeuralAllocator(FeatureSpec("risk", 60),
                            TrainConfig(model="attention", head="simplex", max_epochs=2))
    model.fit(gfc.loc[:"2007-12-31"], min_variance_labels(gfc, window=60).weights)
    model.save(tmp_path / "m")
    rev = tmp_path / "rev.csv"
    gfc.iloc[:, ::-1].to_csv(rev)
    runner = CliRunner()
    as_json = json.loads(runner.invoke(app, ["predict", str(tmp_path / "m"), "--file", str(rev),
                                             "--json"], catch_exceptions=False).stdout)
    weights = next(iter(as_json.values()))
    table = runner.invoke(app, ["predict", str(tmp_path / "m"), "--file", str(rev)],
                          catch_exceptions=False, env={"COLUMNS": "200"}).stdout
    header = next(line for line in table.splitlines() if "date" in line)
    row = next(line for line in table.splitlines() if "2010-12-31" in line)
    cells = [c.strip() for c in row.strip("│┃| ").split("│")]
    names = [c.strip() for c in header.strip("│┃| ").replace("┃", "│").split("│")]
    shown = dict(zip(names[1:], cells[1:], strict=True))
    assert set(shown) == set(gfc.columns)
    for asset, value in weights.items():
        assert shown[asset] == f"{value:.1%}", (asset, shown, weights)
    # and the file order is the model's order reversed, yet the weights are the model's
    direct = model.predict(gfc, guard=None).iloc[-1]
    for asset, value in weights.items():
        assert value == pytest.approx(direct[asset], abs=1e-12)


def test_duplicate_columns_are_refused(prices, labels):
    from neuralfolio.errors import DataError

    model = NeuralAllocator(FeatureSpec("prices"),
                            TrainConfig(hidden=(4,), max_epochs=1)).fit(prices, labels.weights)
    dup = pd.concat([prices, prices[["A0"]]], axis=1)
    with pytest.raises(DataError, match=r"more than once"):
        model.predict(dup)
