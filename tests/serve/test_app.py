"""The service driven in-process: every endpoint, every refused input, guardrails, swaps."""

import json
import math
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient

from neuralfolio.serve import Engine, ModelRegistry, ServiceConfig, create_app

WINDOW = 30  # the registry fixture's models (conftest.py)
ASSETS = ["A0", "A1", "A2", "A3"]
TOKEN = "s3cret"


@pytest.fixture
def service(registry_copy):
    config = ServiceConfig(registry=registry_copy, token=TOKEN)
    with TestClient(create_app(config)) as client:
        yield client


@pytest.fixture
def portfolio(service, market):
    r = service.post("/v1/portfolios", json={
        "id": "p1", "assets": ASSETS, "prices": window(market, 299, 60),
        "timestamps": [d.isoformat() for d in market.index[240:300]]})
    assert r.status_code == 201, r.text
    return "p1"


def window(market, end: int, rows: int = WINDOW + 1) -> list[list[float]]:
    """Price rows ending at row ``end`` (inclusive)."""
    return np.asarray(market.iloc[end + 1 - rows : end + 1]).tolist()


def _tick(market, i):
    return {"timestamp": market.index[i].isoformat(),
            "prices": dict(zip(ASSETS, market.iloc[i].tolist(), strict=True))}


def _valid(weights):
    w = np.array(list(weights.values()))
    return np.isfinite(w).all() and w.min() >= -1e-9 and abs(w.sum() - 1) < 1e-6


def test_tick_answers_weights_and_keeps_state(service, portfolio, market):
    r = service.post(f"/v1/portfolios/{portfolio}/ticks", json=_tick(market, 300))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "minvar:1" and body["fallback"] is False
    assert list(body["weights"]) == ASSETS and _valid(body["weights"])
    assert body["latency_us"] > 0 and body["portfolio"] == "p1"
    state = service.get(f"/v1/portfolios/{portfolio}").json()
    assert state["ticks"] == 1 and state["history_rows"] == 61
    assert state["last_timestamp"].startswith(str(market.index[300].date()))
    assert state["last_weights"] == body["weights"]


def test_the_stateless_answer_equals_the_stateful_one(service, portfolio, market):
    ticked = service.post(f"/v1/portfolios/{portfolio}/ticks", json=_tick(market, 300)).json()
    direct = service.post("/v1/weights", json={"assets": ASSETS,
                                               "prices": window(market, 300, 60)}).json()
    np.testing.assert_allclose(list(direct["weights"].values()),
                               list(ticked["weights"].values()), atol=1e-12)
    assert direct["portfolio"] is None


def test_list_order_ticks_and_numbered_timestamps(service, market):
    r = service.post("/v1/portfolios", json={"assets": ASSETS, "prices": window(market, 299)})
    pid = r.json()["id"]
    # A history sent without times: the first tick sets the clock (here numbered ticks).
    a = service.post(f"/v1/portfolios/{pid}/ticks",
                     json={"prices": market.iloc[300].tolist(), "timestamp": 7})
    b = service.post(f"/v1/portfolios/{pid}/ticks",
                     json={"prices": market.iloc[301].tolist(), "timestamp": 8.5})
    assert a.status_code == b.status_code == 200
    assert (a.json()["timestamp"], b.json()["timestamp"]) == ("7", "8.5")
    c = service.post(f"/v1/portfolios/{pid}/ticks", json=_tick(market, 302))
    assert c.status_code == 422 and "timestamp kind differs" in c.json()["detail"]
    # Without a timestamp, a tick is stamped with the server's clock.
    d = service.post("/v1/portfolios", json={"assets": ASSETS, "prices": window(market, 299)})
    e = service.post(f"/v1/portfolios/{d.json()['id']}/ticks",
                     json={"prices": market.iloc[300].tolist()})
    assert e.json()["timestamp"].startswith("20")


def _post(client, url, body):
    # JSON with NaN / Infinity tokens, as a careless client would send them.
    return client.post(url, content=json.dumps(body), headers={"content-type":
                                                               "application/json"})


BAD_TICKS = [
    ({"prices": {"A0": 1.0, "A1": 1.0, "A2": 1.0}}, 422, "missing ['A3']"),
    ({"prices": {**dict.fromkeys(ASSETS, 1.0), "ZZ": 1.0}}, 422, "unknown ['ZZ']"),
    ({"prices": {**dict.fromkeys(ASSETS, 1.0), "A2": math.nan}}, 422, "not a finite number"),
    ({"prices": {**dict.fromkeys(ASSETS, 1.0), "A1": 0.0}}, 422, "prices must be positive"),
    ({"prices": {**dict.fromkeys(ASSETS, 1.0), "A1": -5.0}}, 422, "prices must be positive"),
    ({"prices": [1.0, 2.0]}, 422, "2 prices for 4 assets"),
    ({"prices": dict.fromkeys(ASSETS, 1.0), "timestamp": "2000-01-03T00:00:00"}, 409,
     "not after the last one"),
    ({"prices": dict.fromkeys(ASSETS, 1.0), "timestamp": "yesterday"}, 422, "not an ISO 8601"),
    ({"prices": dict.fromkeys(ASSETS, 1.0), "timestamp": 5}, 422, "timestamp kind differs"),
    ({"prices": "lots"}, 422, ""),
]


@pytest.mark.parametrize("body, status, message", BAD_TICKS)
def test_bad_ticks_are_refused_and_leave_the_state_untouched(service, portfolio, market, body,
                                                             status, message):
    before = service.get(f"/v1/portfolios/{portfolio}").json()
    r = _post(service, f"/v1/portfolios/{portfolio}/ticks", body)
    assert r.status_code == status, r.text
    assert message in str(r.json()["detail"])
    assert service.get(f"/v1/portfolios/{portfolio}").json() == before
    ok = service.post(f"/v1/portfolios/{portfolio}/ticks", json=_tick(market, 300))
    assert ok.status_code == 200


def test_stale_ticks_are_refused_when_the_service_has_an_age_limit(registry_copy, market):
    config = ServiceConfig(registry=registry_copy, max_age_seconds=60)
    with TestClient(create_app(config)) as client:
        client.post("/v1/portfolios", json={"id": "p", "assets": ASSETS,
                                            "prices": window(market, 299)})
        r = client.post("/v1/portfolios/p/ticks", json=_tick(market, 300))
        assert r.status_code == 422 and "stale data" in r.json()["detail"]
        fresh = client.post("/v1/portfolios/p/ticks", json={"prices": market.iloc[300].tolist()})
        assert fresh.status_code == 200


def _create(service, **changes):
    body = {"id": "new", "assets": ASSETS, "prices": np.full((WINDOW + 1, 4), 10.0).tolist()}
    body.update(changes)
    return _post(service, "/v1/portfolios", body)


@pytest.mark.parametrize("changes, status, message", [
    ({"assets": ASSETS[:3]}, 422, "missing ['A3']"),
    ({"assets": [*ASSETS, "B"]}, 422, "unknown ['B']"),
    ({"assets": ["A0", "A0", "A1", "A2"]}, 422, "repeated"),
    ({"prices": np.full((5, 4), 10.0).tolist()}, 422, "need at least 31"),
    ({"prices": np.full((WINDOW + 1, 3), 10.0).tolist()}, 422, "shape (dates, 4)"),
    ({"prices": [[10.0, 10.0, math.inf, 10.0]] * (WINDOW + 1)}, 422, "not a finite number"),
    ({"timestamps": [1, 2]}, 422, "2 entries for 31"),
    ({"timestamps": [*range(30), 0]}, 422, "must increase"),
    ({"id": "bad id!"}, 422, "letters, digits"),
])
def test_bad_portfolios_are_refused(service, changes, status, message):
    r = _create(service, **changes)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]
    assert service.get("/v1/portfolios/new").status_code == 404


def test_portfolio_lifecycle(service):
    assert _create(service).status_code == 201
    assert _create(service).status_code == 409
    assert service.delete("/v1/portfolios/new").status_code == 204
    assert service.delete("/v1/portfolios/new").status_code == 404
    r = service.post("/v1/portfolios/new/ticks", json={"prices": [1, 1, 1, 1]})
    assert r.status_code == 404 and "create it with POST /v1/portfolios" in r.json()["detail"]


@pytest.mark.parametrize("order", [ASSETS[::-1], ["A2", "A0", "A3", "A1"]])
def test_assets_in_any_order_get_the_same_weights_by_name(service, market, order):
    cols = [ASSETS.index(a) for a in order]
    rows = np.asarray(market.iloc[300 - 60 : 300])
    ref = service.post("/v1/portfolios", json={"id": "ref", "assets": ASSETS,
                                               "prices": rows.tolist()})
    other = service.post("/v1/portfolios", json={"id": "other", "assets": order,
                                                 "prices": rows[:, cols].tolist()})
    assert ref.status_code == other.status_code == 201, other.text
    for i in range(300, 303):
        a = service.post("/v1/portfolios/ref/ticks", json=_tick(market, i)).json()
        b = service.post("/v1/portfolios/other/ticks",
                         json={"prices": market.iloc[i].iloc[cols].tolist()}).json()
        assert list(b["weights"]) == order
        for asset in ASSETS:
            assert b["weights"][asset] == pytest.approx(a["weights"][asset], abs=1e-12)
    stateless = service.post("/v1/weights", json={
        "assets": order, "prices": np.asarray(market.iloc[272:303])[:, cols].tolist()}).json()
    for asset in ASSETS:
        assert stateless["weights"][asset] == pytest.approx(a["weights"][asset], abs=1e-12)


def test_stateless_bad_windows(service, market):
    r = service.post("/v1/weights", json={"assets": ASSETS, "prices": window(market, 300, 10)})
    assert r.status_code == 422 and "need at least 31" in r.json()["detail"]
    r = service.post("/v1/weights", json={"assets": ASSETS})
    assert r.status_code == 422


def test_websocket_stream(service, portfolio, market):
    with service.websocket_connect(f"/v1/portfolios/{portfolio}/stream") as ws:
        ws.send_json(_tick(market, 300))
        first = ws.receive_json()
        assert _valid(first["weights"]) and first["model"] == "minvar:1"
        ws.send_json(_tick(market, 300))  # the same time again: refused, the stream goes on
        err = ws.receive_json()
        assert err["status"] == 409 and "not after the last one" in err["error"]
        ws.send_text("not json")
        assert ws.receive_json()["status"] == 422
        ws.send_json(_tick(market, 301))
        assert ws.receive_json()["timestamp"].startswith(str(market.index[301].date()))
    assert service.get(f"/v1/portfolios/{portfolio}").json()["ticks"] == 2


def test_models_and_protected_activation(service, portfolio, market):
    listing = service.get("/v1/models").json()
    assert listing["active"]["model"] == "minvar:1"
    assert listing["active"]["history_needed"] == WINDOW + 1
    assert [m["model"] for m in listing["models"]] == ["minvar:1", "minvar:2"]
    url = "/v1/models/minvar/activate"
    assert service.post(url, json={"version": 2}).status_code == 401
    assert service.post(url, json={"version": 2},
                        headers={"Authorization": "Bearer wrong"}).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = service.post(url, json={"version": 9}, headers=auth)
    assert r.status_code == 404 and "minvar" in r.json()["detail"]
    assert service.post(url, json={"version": 2}, headers=auth).json() == {"active": "minvar:2"}
    answer = service.post(f"/v1/portfolios/{portfolio}/ticks", json=_tick(market, 300)).json()
    assert answer["model"] == "minvar:2"
    assert service.get("/v1/models").json()["active"]["model"] == "minvar:2"


def test_admin_routes_are_off_without_a_token(registry_copy):
    with TestClient(create_app(ServiceConfig(registry=registry_copy))) as client:
        r = client.post("/v1/models/minvar/activate", json={"version": 2})
        assert r.status_code == 403 and "--token" in r.json()["detail"]


def test_health_readiness_metrics_and_openapi(service, portfolio, market, tmp_path):
    assert service.get("/healthz").json() == {"status": "ok"}
    ready = service.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert ready.json()["model"] == "minvar:1" and "audit" in ready.json()
    service.post(f"/v1/portfolios/{portfolio}/ticks", json=_tick(market, 300))
    text = service.get("/metrics").text
    assert 'neuralfolio_requests_total{route="/v1/portfolios/{pid}/ticks",status="200"} 1.0' \
        in text
    assert 'neuralfolio_active_model{model="minvar:1"} 1.0' in text
    assert "neuralfolio_decision_latency_seconds_bucket" in text
    assert "neuralfolio_amortization_gap_l1" in text
    schema = service.get("/openapi.json").json()
    assert "/v1/portfolios/{pid}/ticks" in schema["paths"]
    assert schema["components"]["schemas"]["TickIn"]["examples"]
    with TestClient(create_app(ServiceConfig(registry=tmp_path / "empty"))) as empty:
        r = empty.get("/readyz")
        assert r.status_code == 503 and r.json()["status"] == "not ready"
        assert any("no active model" in reason.lower() for reason in r.json()["reasons"])
        r = empty.post("/v1/weights", json={"assets": ASSETS, "prices": [[1.0] * 4]})
        assert r.status_code == 503 and "No model is active" in r.json()["detail"]


def test_inputs_far_from_training_fall_back_to_the_optimizer(registry_copy, market):
    with TestClient(create_app(ServiceConfig(registry=registry_copy, ood_z=5.0))) as client:
        client.post("/v1/portfolios", json={"id": "p", "assets": ASSETS,
                                            "prices": window(market, 299, 60)})
        normal = [client.post("/v1/portfolios/p/ticks", json=_tick(market, i)).json()
                  for i in range(300, 340)]
        assert not any(a["fallback"] for a in normal)
        tick = _tick(market, 340)
        tick["prices"]["A2"] *= 30  # a 2900% move: volatility far beyond anything trained on
        tick["confirm_jump"] = True  # past the jump guard (test_jumps.py): a real move
        r = client.post("/v1/portfolios/p/ticks", json=tick).json()
        assert r["fallback"] is True and r["model"] == "optimizer(min_variance)"
        assert "outside the training distribution" in r["reason"]
        assert _valid(r["weights"])
        text = client.get("/metrics").text
        assert 'neuralfolio_fallbacks_total{reason="input outside the training distribution"}' \
            in text


def test_bad_network_output_falls_back(service, portfolio, market, monkeypatch):
    engine = service.app.state.engine
    monkeypatch.setattr(engine.active.runtime, "predict_features",
                        lambda x: np.full(4, np.nan))
    r = service.post(f"/v1/portfolios/{portfolio}/ticks", json=_tick(market, 300)).json()
    assert r["fallback"] is True and "non-finite" in r["reason"] and _valid(r["weights"])
    monkeypatch.setattr(engine.active.runtime, "predict_features",
                        lambda x: np.array([0.7, 0.7, -0.2, -0.2]))
    r = service.post(f"/v1/portfolios/{portfolio}/ticks", json=_tick(market, 301)).json()
    assert r["fallback"] is True and "min weight" in r["reason"]
    # The state records the tick, and the last good weights are not the fallback's.
    assert service.get(f"/v1/portfolios/{portfolio}").json()["ticks"] == 2


def test_gap_monitor_measures_and_its_alert_triggers_fallback(registry_copy, market):
    config = ServiceConfig(registry=registry_copy, gap_every=1, gap_window=10,
                           gap_l1_alert=0.0)
    engine = Engine(config)
    with TestClient(create_app(config, engine)) as client:
        client.post("/v1/portfolios", json={"id": "p", "assets": ASSETS,
                                            "prices": window(market, 299, 60)})
        for i in range(300, 312):
            client.post("/v1/portfolios/p/ticks", json=_tick(market, i))
        engine.monitor.wait()
        assert engine.monitor.done >= 10 and engine.monitor.alert
        text = client.get("/metrics").text
        assert "neuralfolio_amortization_gap_alert 1.0" in text
        gap = float(text.split("\nneuralfolio_amortization_gap_l1 ")[1].split()[0])
        assert 0 < gap < 0.5  # a trained network: close to the optimizer, not equal
        r = client.post("/v1/portfolios/p/ticks", json=_tick(market, 312)).json()
        assert r["fallback"] and "amortization gap" in r["reason"]


def test_every_decision_is_audited(registry_copy, market):
    config = ServiceConfig(registry=registry_copy)
    engine = Engine(config)
    with TestClient(create_app(config, engine)) as client:
        client.post("/v1/portfolios", json={"id": "p", "assets": ASSETS,
                                            "prices": window(market, 299)})
        answers = [client.post("/v1/portfolios/p/ticks", json=_tick(market, i)).json()
                   for i in range(300, 305)]
        client.post("/v1/weights", json={"assets": ASSETS, "prices": window(market, 310)})
        engine.audit.flush()
        rows = engine.audit.query(limit=None)
        assert len(rows) == 6
        mine = engine.audit.query(portfolio="p", limit=None)
        assert [r["weights"] for r in mine[::-1]] == [list(a["weights"].values())
                                                       for a in answers]
        assert all(r["model"] == "minvar:1" and not r["fallback"] for r in mine)
        assert len({r["input_hash"] for r in rows}) == 6


def test_hot_swaps_never_fail_a_request_nor_mix_versions(registry_copy, market):
    config = ServiceConfig(registry=registry_copy, token=TOKEN)
    engine = Engine(config)
    runtimes = {r.label: ModelRegistry(registry_copy).load(r)
                for r in ModelRegistry(registry_copy).list()}
    answers, errors = [], []
    stop = threading.Event()
    with TestClient(create_app(config, engine)) as client:
        def swap():
            auth = {"Authorization": f"Bearer {TOKEN}"}
            for k in range(40):
                r = client.post("/v1/models/minvar/activate", json={"version": 1 + k % 2},
                                headers=auth)
                if r.status_code != 200:
                    errors.append(r.text)
            stop.set()

        def ask(offset):
            i = 0
            while not stop.is_set():
                end = 300 + (offset * 37 + i) % 110
                r = client.post("/v1/weights", json={"assets": ASSETS,
                                                     "prices": window(market, end)})
                if r.status_code != 200:
                    errors.append(r.text)
                else:
                    answers.append((end, r.json()))
                i += 1

        threads = [threading.Thread(target=ask, args=(k,)) for k in range(3)]
        threads.append(threading.Thread(target=swap))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    seen = {a["model"] for _, a in answers}
    assert seen <= set(runtimes) and len(answers) > 20
    for end, a in answers:  # each answer is exactly its version's output: no mixing
        history = np.asarray(window(market, end))
        np.testing.assert_allclose(list(a["weights"].values()),
                                   runtimes[a["model"]].predict_latest(history), atol=1e-12)


# ------------------------------------------------------------------ the lean hot path
def _stage_counts(text: str) -> dict[str, float]:
    """``stage -> observations`` of the stage histogram in a /metrics text."""
    counts = {}
    for line in text.splitlines():
        if line.startswith("neuralfolio_decision_stage_seconds_count{"):
            stage = line.split('stage="')[1].split('"')[0]
            counts[stage] = float(line.rsplit(" ", 1)[1])
    return counts


def test_the_stage_histogram_measures_parse_and_serialize(service, portfolio, market):
    assert _stage_counts(service.get("/metrics").text) == {"parse": 1}  # the portfolio's body
    body = service.post(f"/v1/portfolios/{portfolio}/ticks", json=_tick(market, 300)).json()
    # the engine's own stages come with the answer: where the decision's time went
    assert {"jumps", "update", "features", "forward", "checks", "audit"} <= set(body["stages"])
    assert all(v >= 0 for v in body["stages"].values())
    service.post("/v1/weights", json={"assets": ASSETS, "prices": window(market, 301)})
    text = service.get("/metrics").text
    assert "# TYPE neuralfolio_decision_stage_seconds histogram" in text
    counts = _stage_counts(text)
    assert counts["parse"] == 3 and counts["serialize"] == 2
    assert counts["forward"] == 2 and counts["audit"] == 2
    assert 'neuralfolio_decision_stage_seconds_bucket{le="1e-05",stage="parse"}' in text


def test_the_engines_stages_are_observed_and_unknown_keys_not_sent(service, portfolio, market,
                                                                  monkeypatch):
    engine = service.app.state.engine
    atick = engine.atick

    async def tick_with_stages(*args, **kwargs):
        answer = await atick(*args, **kwargs)
        answer.stages = {"features": 2e-5, "forward": 1e-5}  # part of to_dict() now
        answer.debug = "internal"  # no field of WeightsOut: dropped
        return answer

    monkeypatch.setattr(engine, "atick", tick_with_stages)
    r = service.post(f"/v1/portfolios/{portfolio}/ticks", json=_tick(market, 300))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["stages"] == {"features": 2e-5, "forward": 1e-5} and "debug" not in body
    counts = _stage_counts(service.get("/metrics").text)
    assert counts["features"] == counts["forward"] == counts["serialize"] == 1


def test_a_second_app_on_the_same_engine_shares_the_stage_histogram(registry_copy):
    engine = Engine(ServiceConfig(registry=registry_copy))
    try:
        create_app(engine.config, engine)
        create_app(engine.config, engine)  # no duplicate registration
        assert engine.metrics.stages is not None
    finally:
        engine.close()


def _raw(service, url, content, content_type="application/json"):
    headers = {"content-type": content_type} if content_type else {}
    return service.post(url, content=content, headers=headers)


@pytest.mark.parametrize("url", ["/v1/portfolios/p1/ticks", "/v1/weights", "/v1/portfolios"])
def test_bodies_that_are_not_json_or_not_the_model_are_422(service, portfolio, url):
    r = _raw(service, url, b'{"prices": [1, 2')
    assert r.status_code == 422
    [error] = r.json()["detail"]
    assert error["type"] == "json_invalid" and error["loc"] == ["body", 16]  # its end
    assert error["msg"] == "JSON decode error" and error["ctx"]["error"]

    r = _raw(service, url, b"")
    assert r.status_code == 422 and r.json()["detail"] == [
        {"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}]

    r = _raw(service, url, b"[1, 2]")
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "model_attributes_type"

    r = _raw(service, url, b'{"prices": [1, 1, 1, 1]}', content_type=None)  # not declared JSON
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"]


def test_wrong_types_are_422_with_their_location(service, portfolio, market):
    r = _raw(service, f"/v1/portfolios/{portfolio}/ticks", b'{"prices": "lots"}')
    assert r.status_code == 422
    locs = [e["loc"] for e in r.json()["detail"]]
    assert locs == [["body", "prices", "dict[str,float]"], ["body", "prices", "list[float]"]]
    r = _raw(service, "/v1/weights", b'{"assets": "A0", "prices": [["x"]]}')
    assert r.status_code == 422
    assert {tuple(e["loc"]) for e in r.json()["detail"]} == {
        ("body", "assets"), ("body", "prices", 0, 0)}
    r = _raw(service, "/v1/portfolios", b'{"assets": 5, "prices": [[1]]}')
    assert r.status_code == 422 and r.json()["detail"][0]["msg"] == "Input should be a valid list"
    r = service.post(f"/v1/portfolios/{portfolio}/ticks",
                     content=json.dumps(_tick(market, 300)).encode(),
                     headers={"content-type": "application/json; charset=utf-8"})
    assert r.status_code == 200  # a JSON content type with parameters is JSON
    r = _raw(service, f"/v1/portfolios/{portfolio}/ticks", b'{"prices": [1, 1, \xff 1]}')
    assert r.status_code in (400, 422)  # not UTF-8: refused, never a 500
    text = service.get("/metrics").text
    assert 'neuralfolio_requests_total{route="/v1/weights",status="422"} 1.0' in text


def test_openapi_still_documents_the_hot_routes_bodies_and_answers(service):
    schema = service.get("/openapi.json").json()

    def ref(node):
        return node["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]

    for path, body in [("/v1/portfolios/{pid}/ticks", "TickIn"), ("/v1/weights", "WindowIn"),
                       ("/v1/portfolios", "PortfolioIn")]:
        op = schema["paths"][path]["post"]
        assert op["requestBody"]["required"] is True and ref(op["requestBody"]) == body
        # detail: FastAPI's list of errors, or the engine's message
        assert ref(op["responses"]["422"]) == "ValidationErrorOut"
        assert {"400", "413", "503"} <= set(op["responses"])
    for path in ("/v1/portfolios/{pid}/ticks", "/v1/weights"):
        responses = schema["paths"][path]["post"]["responses"]
        assert ref(responses["200"]) == "WeightsOut" and ref(responses["409"]) == "JumpRefusal"
    assert "201" in schema["paths"]["/v1/portfolios"]["post"]["responses"]
    components = schema["components"]["schemas"]
    assert {"TickIn", "WindowIn", "PortfolioIn", "WeightsOut", "JumpOut"} <= set(components)
    assert components["TickIn"]["examples"] and components["WindowIn"]["properties"]["prices"]
    stages = components["WeightsOut"]["properties"]["stages"]
    assert "seconds" in stages["description"]
    assert "stages" not in components["WeightsOut"].get("required", [])
    out = components["WeightsOut"]["properties"]
    assert {"decision_id", "recorded", "audit_error"} <= set(out)
    assert out["recorded"]["default"] is True
    detail = components["ValidationErrorOut"]["properties"]["detail"]["anyOf"]
    assert [d["type"] for d in detail] == ["string", "array"]
    assert "HTTPValidationError" not in components  # every 422 is documented as sent
    # a 409 that is no jump (a tick not after the last one) has no jumps
    assert components["JumpRefusal"]["required"] == ["detail"]


def test_the_hot_routes_run_on_the_event_loop(service):
    import inspect

    hot = {("/v1/portfolios/{pid}/ticks", "POST"), ("/v1/weights", "POST"),
           ("/v1/portfolios", "POST"), ("/v1/portfolios/{pid}/stream", None)}
    found = set()
    for route in service.app.routes:
        for method in getattr(route, "methods", None) or [None]:
            if (route.path, method) in hot:
                assert inspect.iscoroutinefunction(route.endpoint), route.path
                found.add((route.path, method))
    assert found == hot


def test_the_websocket_answers_a_burst_of_ticks_in_order(service, portfolio, market):
    with service.websocket_connect(f"/v1/portfolios/{portfolio}/stream") as ws:
        for i in range(300, 310):  # all sent before the first answer is read
            ws.send_json(_tick(market, i))
        ws.send_text('{"prices": [1, NaN, 1, 1]}')  # NaN tokens parse; the engine refuses
        answers = [ws.receive_json() for _ in range(11)]
    stamps = [a["timestamp"][:10] for a in answers[:10]]
    assert stamps == [str(d.date()) for d in market.index[300:310]]
    assert all(_valid(a["weights"]) for a in answers[:10])
    assert answers[10]["status"] == 422 and "not a finite number" in answers[10]["error"]
    assert service.get(f"/v1/portfolios/{portfolio}").json()["ticks"] == 10
    counts = _stage_counts(service.get("/metrics").text)
    assert counts["parse"] >= 11 and counts["serialize"] == 10


def test_a_live_server_answers_ticks_and_counts_stages(registry_copy, market, live_server):
    import httpx

    with live_server(ServiceConfig(registry=registry_copy)) as url, \
            httpx.Client(base_url=url) as client:
        r = client.post("/v1/portfolios", json={"id": "p", "assets": ASSETS,
                                                "prices": window(market, 299, 60)})
        assert r.status_code == 201 and r.headers["content-type"] == "application/json"
        for i in range(300, 305):
            r = client.post("/v1/portfolios/p/ticks", json=_tick(market, i))
            assert r.status_code == 200 and _valid(r.json()["weights"])
        r = client.post("/v1/portfolios/p/ticks", json=_tick(market, 300))
        assert r.status_code == 409 and "not after the last one" in r.json()["detail"]
        text = client.get("/metrics").text
    counts = _stage_counts(text)
    assert counts["parse"] == 7 and counts["serialize"] == 5
    assert 'neuralfolio_requests_total{route="/v1/portfolios/{pid}/ticks",status="409"} 1.0' \
        in text


@pytest.mark.parametrize("extra, access_log", [([], False), (["--access-log"], True)])
def test_serve_runs_uvicorn_on_uvloop_and_httptools(registry_copy, monkeypatch, extra,
                                                    access_log):
    import uvicorn
    from typer.testing import CliRunner

    from neuralfolio.cli import app as cli

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    result = CliRunner().invoke(cli, ["serve", "--registry", str(registry_copy), *extra])
    assert result.exit_code == 0, result.output
    assert seen["loop"] == "uvloop" and seen["http"] == "httptools"
    assert seen["access_log"] is access_log and seen["timeout_keep_alive"] >= 5


def test_serve_falls_back_to_uvicorns_defaults_without_uvloop():
    from neuralfolio._cli_serve import _fast

    assert _fast("uvloop") == "uvloop" and _fast("no_such_module_here") == "auto"


def test_constant_prices_get_a_reason_not_a_server_error(service, market):
    """A window of constant prices (a halted market, a stale feed) cannot be decided: 422
    saying why; one halted asset among moving ones is answered, at weight 0."""
    flat = [[100.0, 50.0, 20.0, 10.0]] * (WINDOW + 1)
    r = service.post("/v1/weights", json={"assets": ASSETS, "prices": flat})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "no weights can be given" in detail and "stale prices" in detail
    rows = np.array(window(market, 330))
    rows[:, 2] = 20.0
    r = service.post("/v1/weights", json={"assets": ASSETS, "prices": rows.tolist()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert abs(sum(body["weights"].values()) - 1) < 1e-6
    assert body["weights"][ASSETS[2]] == 0 and f"stale:{ASSETS[2]}" in body["flags"]


def test_answers_carry_the_audit_id_and_whether_they_were_recorded(service, portfolio, market,
                                                                   monkeypatch):
    r = service.post(f"/v1/portfolios/{portfolio}/ticks", json=_tick(market, 300)).json()
    assert r["recorded"] is True and r["audit_error"] is None
    assert isinstance(r["decision_id"], str) and len(r["decision_id"]) == 32
    engine = service.app.state.engine
    aweights = engine.aweights

    async def unrecorded(*args, **kwargs):  # as with audit_on_failure="answer"
        answer = await aweights(*args, **kwargs)
        answer.recorded, answer.audit_error = False, "the audit database is locked"
        return answer

    monkeypatch.setattr(engine, "aweights", unrecorded)
    r = service.post("/v1/weights", json={"assets": ASSETS, "prices": window(market, 301)})
    assert r.status_code == 200
    assert r.json()["recorded"] is False
    assert r.json()["audit_error"] == "the audit database is locked"
