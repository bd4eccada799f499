"""The service's limits and its answers to malformed input: a body over the limit is 413
(declared or streamed), a WebSocket message that is binary, too large or not a tick is
answered and the stream goes on, JSON nested too deeply (or holding what JSON cannot carry)
is 422, the admin token is ``Bearer <token>`` exactly, and an invalid model name is 422.
Never a 500."""

import asyncio
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from neuralfolio.errors import ConfigError, DataError, ModelError, SolverError
from neuralfolio.guard import NoFallbackError
from neuralfolio.serve import InputError, ServiceConfig, create_app
from neuralfolio.serve.app import _LimitBody, error_answer, jsonable, loads
from neuralfolio.serve.audit import AuditUnavailable, AuditWriteError

WINDOW = 30  # the registry fixture's models (conftest.py)
ASSETS = ["A0", "A1", "A2", "A3"]
TOKEN = "s3cret"
LIMIT = 1000
TOO_LARGE = f"larger than the service's limit of {LIMIT} bytes (--max-body-bytes)"


@pytest.fixture
def client(registry_copy):
    config = ServiceConfig(registry=registry_copy, token=TOKEN, max_body_bytes=LIMIT)
    with TestClient(create_app(config)) as client:
        yield client


@pytest.fixture
def portfolio(client, market):
    rows = np.asarray(market.iloc[300 - 60:300])
    # created on the engine: its body would pass the small limit of these tests
    client.app.state.engine.create_portfolio(ASSETS, rows.tolist(), None, "p1")
    return "p1"


def _tick(market, i):
    return {"timestamp": market.index[i].isoformat(),
            "prices": dict(zip(ASSETS, market.iloc[i].tolist(), strict=True))}


def _json(text: str | bytes) -> dict:
    return {"content": text, "headers": {"content-type": "application/json"}}


def _padded(size: int) -> bytes:
    """A JSON body of exactly ``size`` bytes (a window whose assets are padded)."""
    head, tail = b'{"assets": ["', b'"], "prices": [[1.0]]}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


# ----------------------------------------------------------------------------- 413
@pytest.mark.parametrize("url", ["/v1/weights", "/v1/portfolios", "/v1/portfolios/p1/ticks",
                                 "/v1/models/minvar/activate"])
def test_a_body_just_over_the_limit_is_413(client, portfolio, url):
    at_limit = client.post(url, headers={"Authorization": f"Bearer {TOKEN}",
                                         "content-type": "application/json"},
                           content=_padded(LIMIT))
    assert at_limit.status_code not in (413, 500)  # taken, then refused for what it says
    r = client.post(url, headers={"Authorization": f"Bearer {TOKEN}",
                                  "content-type": "application/json"},
                    content=_padded(LIMIT + 1))
    assert r.status_code == 413, r.text
    assert r.json() == {"detail": f"request body is {TOO_LARGE}; send fewer rows or assets"}
    assert r.headers["content-type"] == "application/json"


def test_a_chunked_body_over_the_limit_is_413(client):
    body = _padded(LIMIT + 1)
    r = client.post("/v1/weights", content=iter([body[:600], body[600:]]),
                    headers={"content-type": "application/json"})  # no content-length
    assert r.status_code == 413 and TOO_LARGE in r.json()["detail"]
    text = client.get("/metrics").text
    assert 'neuralfolio_requests_total{route="/v1/weights",status="413"} 1.0' in text


def test_a_body_sent_to_a_route_without_one_is_limited_too(client):
    r = client.request("GET", "/v1/models", content=b"x" * (LIMIT + 1))
    assert r.status_code == 413


def test_the_limit_never_holds_more_than_its_bytes():
    """Chunks are handed on until the one that passes the limit: that one is refused, and
    what the app received adds up to at most the limit."""
    handed: list[int] = []
    chunks = [b"x" * 300] * 5
    sent: list[dict] = []

    async def app(scope, receive, send):
        from starlette.requests import Request
        from starlette.responses import Response

        original = receive

        async def spy():
            message = await original()
            handed.append(len(message.get("body", b"")))
            return message

        await Request(scope, spy).body()  # raises: the middleware answers
        await Response(b"read it all")(scope, receive, send)

    async def receive():
        body = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    asyncio.run(_LimitBody(app, limit=1000)(scope, receive, send))
    assert sent[0]["status"] == 413 and TOO_LARGE in json.loads(sent[1]["body"])["detail"]
    assert sum(handed) <= 1000 and handed == [300, 300, 300]


def test_a_chunked_body_over_the_limit_is_413_on_a_live_server(registry_copy, live_server):
    import httpx

    body = _padded(LIMIT + 1)
    config = ServiceConfig(registry=registry_copy, max_body_bytes=LIMIT)
    with live_server(config) as url, httpx.Client(base_url=url) as http:
        r = http.post("/v1/weights", content=iter([body[:500], body[500:]]),
                      headers={"content-type": "application/json"})
        assert r.status_code == 413 and TOO_LARGE in r.json()["detail"]
        r = http.post("/v1/weights", content=body, headers={"content-type":
                                                           "application/json"})
        assert r.status_code == 413  # declared: refused before it is read
        assert http.get("/healthz").status_code == 200  # and the server goes on


# ------------------------------------------------------------------------ WebSocket
def test_the_stream_answers_binary_oversize_and_malformed_messages_and_goes_on(
        client, portfolio, market):
    with client.websocket_connect(f"/v1/portfolios/{portfolio}/stream") as ws:
        ws.send_bytes(json.dumps(_tick(market, 300)).encode())
        binary = ws.receive_json()
        assert binary["status"] == 422 and "text frames" in binary["error"]
        ws.send_text(json.dumps({**_tick(market, 300), "pad": "x" * LIMIT}))
        big = ws.receive_json()
        assert big["status"] == 413 and f"limit of {LIMIT} bytes" in big["error"]
        ws.send_bytes(b"\x00" * (LIMIT + 1))
        assert ws.receive_json()["status"] == 413
        ws.send_text("[" * 400 + "]" * 400)  # under the limit, but no tick
        deep = ws.receive_json()
        assert deep["status"] == 422 and deep["error"].startswith("not a tick")
        assert isinstance(deep["errors"], list)
        ws.send_text('{"prices": ' + "[" * 490 + "]" * 490 + "}")  # deep inside a field
        assert ws.receive_json()["status"] == 422
        ws.send_text('{"prices": {"\\ud800": 1.0}}')  # JSON no answer could carry
        lone = ws.receive_json()
        assert lone["status"] == 422 and "surrogate" in lone["error"]
        ws.send_text("{")
        assert ws.receive_json()["status"] == 422
        ws.send_text(json.dumps(_tick(market, 300)))  # and the stream still decides
        answer = ws.receive_json()
        assert "weights" in answer and answer["timestamp"].startswith(
            str(market.index[300].date()))
    assert client.get(f"/v1/portfolios/{portfolio}").json()["ticks"] == 1


def test_the_stream_answers_a_tick_nested_beyond_orjsons_limit(registry_copy, market):
    config = ServiceConfig(registry=registry_copy, max_body_bytes=100_000)
    with TestClient(create_app(config)) as client:
        client.app.state.engine.create_portfolio(
            ASSETS, np.asarray(market.iloc[240:300]).tolist(), None, "p")
        with client.websocket_connect("/v1/portfolios/p/stream") as ws:
            ws.send_text("[" * 5000 + "]" * 5000)  # orjson: too deep; json: RecursionError
            deep = ws.receive_json()
            assert deep["status"] == 422 and "depth" in deep["error"]
            ws.send_text(json.dumps(_tick(market, 300)))
            assert "weights" in ws.receive_json()


def test_the_stream_of_an_unknown_portfolio_answers_404_per_message(client, market):
    with client.websocket_connect("/v1/portfolios/nobody/stream") as ws:
        ws.send_text(json.dumps(_tick(market, 300)))
        r = ws.receive_json()
        assert r["status"] == 404 and "no portfolio" in r["error"]


# ------------------------------------------------------------------- malformed bodies
@pytest.mark.parametrize("body", [
    b"[" * 1100 + b"]" * 1100,                              # beyond orjson's 1,024 levels
    b"[" * 5000 + b"]" * 5000,                              # json's fallback: RecursionError
    b'{"assets": ["A0"], "prices": ' + b"[" * 1000 + b"]" * 1000 + b"}",  # deep in a field
    b'{"assets": ["\\ud800", "A1"], "prices": [[1, 2]]}',   # a lone surrogate
    b'{"assets": ["A0", "A1"], "prices": NaN}',             # NaN where a list belongs
    b'{"assets": "A0", "prices": [[' + b"1" * 5000 + b"]]}",  # an integer of 5,000 digits
])
def test_bodies_json_cannot_carry_are_422_never_500(registry_copy, body):
    config = ServiceConfig(registry=registry_copy)  # the default limit: 8 MiB
    with TestClient(create_app(config), raise_server_exceptions=False) as client:
        for url in ("/v1/weights", "/v1/portfolios", "/v1/portfolios/x/ticks"):
            r = client.post(url, **_json(body))
            assert r.status_code == 422, (url, r.text[:300])
            assert isinstance(r.json()["detail"], list)
            assert len(r.content) < 10_000  # an excerpt of the input, not all of it


def test_the_answer_to_a_deep_body_points_at_orjsons_limit(registry_copy):
    with TestClient(create_app(ServiceConfig(registry=registry_copy))) as client:
        r = client.post("/v1/weights", **_json(b"[" * 1100 + b"]" * 1100))
    [error] = r.json()["detail"]
    assert error["type"] == "json_invalid" and error["loc"] == ["body", 1025]
    assert "depth" in error["ctx"]["error"]


def test_nan_inputs_are_echoed_as_text(client):
    r = client.post("/v1/weights", **_json(b'{"assets": ["A0", "A1"], "prices": NaN}'))
    assert r.status_code == 422 and r.json()["detail"][0]["input"] == "NaN"


def test_a_lone_surrogate_is_refused_where_it_is(client):
    r = client.post("/v1/weights", **_json(b'{"assets": ["A0", "\\udc00"], "prices": [[1]]}'))
    [error] = r.json()["detail"]
    assert error["loc"] == ["body", 19] and "surrogate" in error["ctx"]["error"]


def test_a_body_that_is_not_utf8_is_400(client):
    r = client.post("/v1/weights", **_json(b'{"assets": ["\xff"]}'))
    assert r.status_code == 400 and "UTF-8" in r.json()["detail"]


def test_loads_takes_what_only_json_takes_and_refuses_the_rest():
    assert loads(b'{"a": NaN}')["a"] != loads(b'{"a": NaN}')["a"]  # NaN, for the engine
    assert loads(b'{"a": 1e400}')["a"] == float("inf")
    assert loads('{"a": "\\ud83d\\ude00"}')["a"] == "\U0001f600"  # a proper pair
    for bad in (b'{"a": "\\ud800"}', b"[" * 2000, b"1" * 5000, b"{"):
        with pytest.raises(json.JSONDecodeError):
            loads(bad)


def test_jsonable_bounds_what_an_error_echoes():
    deep: list = []
    for _ in range(50):
        deep = [deep]
    out = json.dumps(jsonable({"a": deep, "b": list(range(500)), "c": "x" * 5000,
                               "d": float("-inf"), "e": 10 ** 40, "f": "\ud800",
                               "g": b"\xff"}))
    assert len(out) < 2000 and "Infinity" in out and "bits" in out


# ------------------------------------------------------------------------- admin token
@pytest.mark.parametrize("header, status", [
    (TOKEN, 401),                       # the token alone is no Bearer credential
    (f"Basic {TOKEN}", 401),
    (f"Bearer {TOKEN}x", 401),
    ("Bearer", 401),
    ("", 401),
    (f"Bearer{TOKEN}", 401),
    (f"Bearer {TOKEN}", 200),
    (f"bearer {TOKEN}", 200),           # the scheme in any case
    (f"BEARER {TOKEN}", 200),
])
def test_the_admin_token_is_bearer_exactly(client, header, status):
    r = client.post("/v1/models/minvar/activate", json={"version": 2},
                    headers={"Authorization": header} if header else {})
    assert r.status_code == status, r.text
    if status == 401:
        assert r.headers["www-authenticate"] == "Bearer"
        assert "Bearer <token>" in r.json()["detail"]


def test_the_token_is_checked_before_the_body_is_read(client):
    r = client.post("/v1/models/minvar/activate", **_json(b"{not json"))
    assert r.status_code == 401
    r = client.post("/v1/models/minvar/activate", content=b"{not json",
                    headers={"content-type": "application/json",
                             "Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 422


def test_the_openapi_document_declares_the_bearer_scheme(client):
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    op = schema["paths"]["/v1/models/{name}/activate"]["post"]
    assert op["security"] == [{"HTTPBearer": []}]
    assert {"401", "403", "404", "409", "413", "422"} <= set(op["responses"])


# ------------------------------------------------------------------- models and errors
@pytest.mark.parametrize("name", ["bad name", "%2E%2E", "a$b", "x" * 300 + "!"])
def test_activating_an_invalid_model_name_is_422(client, name):
    r = client.post(f"/v1/models/{name}/activate", json={},
                    headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 422, r.text
    assert "invalid model name" in r.json()["detail"]


def test_activation_without_a_body_takes_the_latest_version(client):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = client.post("/v1/models/minvar/activate", headers=auth)
    assert r.status_code == 200 and r.json() == {"active": "minvar:2"}
    r = client.post("/v1/models/minvar/activate", content=b"null",
                    headers={**auth, "content-type": "application/json"})
    assert r.status_code == 200
    r = client.post("/v1/models/minvar/activate", headers=auth, json={"version": "x"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "version"]
    r = client.post("/v1/models/minvar/activate", headers=auth, json={"version": 9})
    assert r.status_code == 404


@pytest.mark.parametrize("exc, status", [
    (InputError(429, "too many"), 429),
    (ModelError("no such model"), 404),
    (ConfigError("invalid name"), 422),
    (DataError("bad data"), 422),
    (NoFallbackError("nothing to answer with"), 503),
    (SolverError("did not converge"), 503),
    (AuditUnavailable("the audit queue is full"), 503),
    (AuditWriteError("disk full"), 503),
])
def test_every_error_with_a_message_has_a_status(exc, status):
    assert error_answer(exc)[0] == status
    assert error_answer(exc)[1]["detail"]
    assert error_answer(RuntimeError("a bug")) is None


def test_an_engine_error_of_any_known_kind_is_answered_with_its_status(client, monkeypatch,
                                                                      market):
    engine = client.app.state.engine

    async def fails(*args, **kwargs):
        raise SolverError("the optimizer did not converge")

    monkeypatch.setattr(engine, "aweights", fails)
    rows = np.asarray(market.iloc[270:301]).tolist()
    r = client.post("/v1/weights", json={"assets": ASSETS, "prices": rows[:2]})
    assert r.status_code == 503 and r.json() == {"detail": "the optimizer did not converge"}


def test_readiness_is_the_engines_health(client, monkeypatch):
    engine = client.app.state.engine
    monkeypatch.setattr(engine, "health", lambda: {
        "ready": False, "reasons": ["audit log unavailable: disk full"], "model": "minvar:1",
        "audit": {"ok": False}})
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json() == {"status": "not ready", "reasons": ["audit log unavailable: disk full"],
                        "model": "minvar:1", "audit": {"ok": False}}

    def broken():
        raise RuntimeError("health check broke")

    monkeypatch.setattr(engine, "health", broken)
    r = client.get("/readyz")
    assert r.status_code == 503 and "health check broke" in r.json()["reasons"][0]
