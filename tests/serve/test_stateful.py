"""Random tick sequences, good and bad, against the live app: state and output invariants."""

import json
import math

import numpy as np
import pandas as pd
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from neuralfolio.serve import ServiceConfig, create_app

ASSETS = ["A0", "A1", "A2", "A3"]
BAD_KINDS = ["missing", "extra", "nan", "inf", "zero", "negative", "same_time", "earlier",
             "short_list", "bad_time"]


class TickMachine(RuleBasedStateMachine):
    registry = None   # set by the test
    market = None

    def __init__(self) -> None:
        super().__init__()
        app = create_app(ServiceConfig(registry=self.registry, audit_url="sqlite://"))
        self.client = TestClient(app)
        self.client.__enter__()
        history = self.market.iloc[240:300]
        r = self.client.post("/v1/portfolios", json={
            "id": "p", "assets": ASSETS, "prices": history.to_numpy().tolist(),
            "timestamps": [d.isoformat() for d in history.index]})
        assert r.status_code == 201, r.text
        self.last_row = history.iloc[-1].to_numpy()
        self.last_time = history.index[-1].tz_localize("UTC")
        self.ticks = 0
        self.rows = 60

    def teardown(self) -> None:
        self.client.__exit__(None, None, None)

    def _state(self):
        return self.client.get("/v1/portfolios/p").json()

    @rule(moves=st.lists(st.floats(-0.08, 0.08), min_size=4, max_size=4),
          days=st.integers(1, 4), as_list=st.booleans())
    def good_tick(self, moves, days, as_list):
        row = self.last_row * (1.0 + np.array(moves))
        when = self.last_time + pd.Timedelta(days=days)
        prices = row.tolist() if as_list else dict(zip(ASSETS, row.tolist(), strict=True))
        r = self.client.post("/v1/portfolios/p/ticks",
                             json={"timestamp": when.isoformat(), "prices": prices})
        assert r.status_code == 200, r.text
        body = r.json()
        w = np.array([body["weights"][a] for a in ASSETS])
        assert np.isfinite(w).all() and w.min() >= -1e-9 and abs(w.sum() - 1.0) < 1e-6
        assert body["model"] in ("minvar:1", "optimizer(min_variance)")
        assert body["fallback"] == (body["model"] != "minvar:1")
        assert (body["reason"] is None) != body["fallback"]
        self.last_row, self.last_time = row, when
        self.ticks += 1
        self.rows = min(self.rows + 1, 1024)

    @rule(kind=st.sampled_from(BAD_KINDS), which=st.integers(0, 3))
    def bad_tick(self, kind, which):
        before = self._state()
        prices = dict(zip(ASSETS, (self.last_row * 1.001).tolist(), strict=True))
        when = self.last_time + pd.Timedelta(days=1)
        stamp = when.isoformat()
        if kind == "missing":
            prices.pop(ASSETS[which])
        elif kind == "extra":
            prices["ZZZ"] = 1.0
        elif kind in ("nan", "inf", "zero", "negative"):
            prices[ASSETS[which]] = {"nan": math.nan, "inf": math.inf, "zero": 0.0,
                                     "negative": -1.0}[kind]
        elif kind == "same_time":
            stamp = self.last_time.isoformat()
        elif kind == "earlier":
            stamp = (self.last_time - pd.Timedelta(days=which + 1)).isoformat()
        elif kind == "short_list":
            prices = list(prices.values())[:which]
        else:
            stamp = "not-a-time"
        r = self.client.post("/v1/portfolios/p/ticks",
                             content=json.dumps({"timestamp": stamp, "prices": prices}),
                             headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, (kind, r.status_code, r.text)
        assert isinstance(r.json()["detail"], str | list)
        assert self._state() == before  # a refused tick changes nothing

    @invariant()
    def state_matches_the_accepted_ticks(self):
        s = self._state()
        assert s["ticks"] == self.ticks
        assert s["history_rows"] == self.rows
        assert pd.Timestamp(s["last_timestamp"]) == self.last_time


def test_random_tick_sequences_keep_state_and_outputs_valid(model_dir, market):
    TickMachine.registry, TickMachine.market = model_dir, market
    run_state_machine_as_test(TickMachine, settings=settings(
        max_examples=25, stateful_step_count=15, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))
