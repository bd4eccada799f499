"""One decision path: the HTTP service and the walk-forward backtest answer the same weights.

The same prices are replayed through the service (a portfolio, one tick per date, model
versions swapped at dates) and through :func:`walk_forward` (the service's guarded policies,
switched at re-training dates on the same dates): the weights agree to 1e-12, for a network,
the optimizer and 1/N, across swaps.
"""

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from neuralfolio.backtest import walk_forward
from neuralfolio.serve import Engine, ModelRegistry, ServiceConfig, create_app
from neuralfolio.serve.engine import ActiveModel

WINDOW = 30  # the registry fixture's models (conftest.py)

START, EVERY, END = 300, 30, 390  # test dates 300..389, versions swapped at 330 and 360


class _Versions:
    """The policy of the version active in each walk-forward block (one per fit)."""

    needs_labels = False
    carries_state = True  # fitted in order, in one process: fit k selects version k

    def __init__(self, policies):
        self.policies, self.fits = policies, 0
        self.lookback = max(p.lookback for p in policies)

    def fit(self, prices, labels=None):
        self.current = self.policies[self.fits]
        self.fits += 1
        return self

    def weights(self, history):
        return self.current.weights(history)

    def stepper(self, history):
        return self.current.stepper(history)


@pytest.fixture
def rules(registry_copy):
    reg = ModelRegistry(registry_copy)
    reg.register_rule({"rule": "equal_weight"}, "ew")
    reg.register_rule({"rule": "optimizer", "objective": "min_variance", "window": WINDOW},
                      "opt")
    return registry_copy


@pytest.mark.parametrize("versions", [
    [("minvar", 1), ("minvar", 2), ("minvar", 1)],  # a network, swapped twice
    [("opt", 1), ("minvar", 2), ("opt", 1)],        # the optimizer, and back from a network
    [("ew", 1), ("opt", 1), ("ew", 1)],             # 1/N
], ids=["network", "optimizer", "equal_weight"])
def test_service_and_walk_forward_decide_the_same_weights(rules, market, versions):
    config = ServiceConfig(registry=rules, gap_every=0)
    reg = ModelRegistry(rules)
    served = []
    with TestClient(create_app(config, Engine(config))) as client:
        engine = client.app.state.engine
        engine.activate(*versions[0])
        needed = max(ActiveModel.load(reg, reg.get(*v), config).history_needed
                     for v in versions)
        head = market.iloc[START - needed:START]
        r = client.post("/v1/portfolios", json={
            "id": "p", "assets": list(market.columns), "prices": head.to_numpy().tolist(),
            "timestamps": [t.isoformat() for t in head.index]})
        assert r.status_code == 201, r.text
        for i in range(START, END):
            if i > START and (i - START) % EVERY == 0:
                engine.activate(*versions[(i - START) // EVERY])
            r = client.post("/v1/portfolios/p/ticks", json={
                "timestamp": market.index[i].isoformat(),
                "prices": market.iloc[i].to_dict()})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["fallback"] is False, body["reason"]
            assert body["model"] == "{}:{}".format(*versions[(i - START) // EVERY])
            served.append([body["weights"][a] for a in market.columns])
        # The policies the service ran, as loaded by its engine.
        policies = [ActiveModel.load(reg, reg.get(*v), config).policy for v in versions]
    served = pd.DataFrame(served, index=market.index[START:END], columns=market.columns)

    labels = pd.DataFrame(1.0 / market.shape[1], index=market.index, columns=market.columns)
    result = walk_forward(market, {"served": _Versions(policies)}, labels,
                          test_start=market.index[START], test_end=market.index[END - 1],
                          retrain_every=EVERY)
    backtest = result.weights["served"]
    assert list(backtest.index) == list(served.index)
    np.testing.assert_allclose(served.to_numpy(), backtest.to_numpy(), rtol=0, atol=1e-12)
    # the versions really differ: a swap changes the weights
    blocks = [served.iloc[k * EVERY:(k + 1) * EVERY] for k in range(3)]
    assert not np.allclose(blocks[0].iloc[-1], blocks[1].iloc[0], atol=1e-6) \
        or versions[0] == versions[1]


def test_rule_versions_serve_their_policy(rules, market):
    config = ServiceConfig(registry=rules, gap_every=0)
    with TestClient(create_app(config, Engine(config))) as client:
        client.app.state.engine.activate("ew")
        listing = client.get("/v1/models").json()
        assert listing["active"] == {"model": "ew:1", "assets": [], "asset_agnostic": True,
                                     "kind": "rule", "history_needed": 1,
                                     "objective": "min_variance"}
        r = client.post("/v1/weights", json={"assets": ["X", "Y", "Z"],
                                             "prices": [[1.0, 2.0, 3.0]]})
        assert r.status_code == 200, r.text
        assert r.json()["weights"] == pytest.approx({"X": 1 / 3, "Y": 1 / 3, "Z": 1 / 3})
