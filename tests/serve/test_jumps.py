"""The jump guard: a fat-finger price is refused (or flagged), never silently absorbed."""


import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from neuralfolio.serve import Engine, InputError, ServiceConfig, create_app

ASSETS = ["A0", "A1", "A2", "A3"]


def _history(market, end=299, rows=60):
    return {"assets": ASSETS, "prices": np.asarray(market.iloc[end + 1 - rows: end + 1]).tolist(),
            "timestamps": [d.isoformat() for d in market.index[end + 1 - rows: end + 1]]}


def _tick(market, i, **scale):
    prices = dict(zip(ASSETS, market.iloc[i].tolist(), strict=True))
    for asset, factor in scale.items():
        prices[asset] *= factor
    return {"timestamp": market.index[i].isoformat(), "prices": prices}


def _metric(client, action):
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'neuralfolio_price_jumps_total{{action="{action}"}}'):
            return float(line.split()[-1])
    return 0.0


@pytest.fixture
def client(registry_copy):
    with TestClient(create_app(ServiceConfig(registry=registry_copy,
                                             audit_url="sqlite://"))) as c:
        yield c


def test_a_fat_finger_tick_is_refused_and_leaves_no_trace(client, market):
    for pid in ("bad", "clean"):
        assert client.post("/v1/portfolios", json={"id": pid, **_history(market)}
                           ).status_code == 201
    before = client.get("/v1/portfolios/bad").json()
    r = client.post("/v1/portfolios/bad/ticks", json=_tick(market, 300, A1=50.0))
    assert r.status_code == 409, r.text
    body = r.json()
    assert "price jump refused" in body["detail"] and "A1" in body["detail"]
    assert "x50" in body["detail"] and '"confirm_jump": true' in body["detail"]
    [jump] = body["jumps"]
    assert jump["asset"] == "A1" and jump["ratio"] == pytest.approx(50 * market.iloc[300, 1]
                                                                     / market.iloc[299, 1])
    assert jump["log_return"] > jump["limit"] and jump["limit"] <= 1.0
    assert jump["sds"] > 10 and jump["confirmed"] is False and jump["row"] is None
    assert client.get("/v1/portfolios/bad").json() == before
    assert _metric(client, "rejected") == 1.0
    # The next correct ticks are answered as if the bad one had never been sent.
    for i in (300, 301):
        bad = client.post("/v1/portfolios/bad/ticks", json=_tick(market, i)).json()
        clean = client.post("/v1/portfolios/clean/ticks", json=_tick(market, i)).json()
        assert bad["weights"] == clean["weights"] and bad["model"] == clean["model"] == "minvar:1"
        assert bad["flags"] == [] and bad["fallback"] is False
    # The stream refuses it the same way, and goes on.
    with client.websocket_connect("/v1/portfolios/bad/stream") as ws:
        ws.send_json(_tick(market, 302, A3=0.02))
        err = ws.receive_json()
        assert err["status"] == 409 and err["jumps"][0]["asset"] == "A3"
        ws.send_json(_tick(market, 302))
        assert ws.receive_json()["flags"] == []


def test_flag_mode_answers_the_last_good_weights_flagged_and_audited(registry_copy, market):
    config = ServiceConfig(registry=registry_copy, audit_url="sqlite://", jump_mode="flag")
    engine = Engine(config)
    with TestClient(create_app(config, engine)) as client:
        client.post("/v1/portfolios", json={"id": "p", **_history(market)})
        good = [client.post("/v1/portfolios/p/ticks", json=_tick(market, i)).json()
                for i in (300, 301)]
        assert not any(a["fallback"] for a in good)
        r = client.post("/v1/portfolios/p/ticks", json=_tick(market, 302, A1=50.0))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["fallback"] is True and body["model"] == "minvar:1 (last good weights)"
        assert body["weights"] == good[-1]["weights"]
        [flag] = body["flags"]
        assert flag.startswith("jump:A1 x5") and flag.endswith(" sd)")
        assert body["jumps"][0]["asset"] == "A1" and not body["jumps"][0]["confirmed"]
        assert body["reason"].startswith("price jump (A1 x5")
        state = client.get("/v1/portfolios/p").json()
        assert state["ticks"] == 3 and state["history_rows"] == 63  # accepted, appended
        engine.audit.flush()
        last = engine.audit.query(portfolio="p", limit=1)[0]
        assert last["fallback"] is True and last["reason"] == body["reason"]
        assert last["weights"] == list(good[-1]["weights"].values())
        assert _metric(client, "flagged") == 1.0
        assert 'neuralfolio_fallbacks_total{reason="price jump"} 1.0' in \
            client.get("/metrics").text
        # A stateless window has no last good weights: the optimizer answers, flagged.
        rows = np.asarray(market.iloc[270:301]).copy()
        rows[-1, 2] *= 50
        r = client.post("/v1/weights", json={"assets": ASSETS, "prices": rows.tolist()})
        assert r.status_code == 200 and r.json()["model"] == "optimizer(min_variance)"
        assert r.json()["fallback"] and r.json()["jumps"][0]["row"] == 30


def test_a_confirmed_jump_is_absorbed(client, market):
    client.post("/v1/portfolios", json={"id": "p", **_history(market)})
    r = client.post("/v1/portfolios/p/ticks",
                    json={**_tick(market, 300, A1=0.3), "confirm_jump": ["ZZ"]})
    assert r.status_code == 422 and "unknown assets ['ZZ']" in r.json()["detail"]
    r = client.post("/v1/portfolios/p/ticks",
                    json={**_tick(market, 300, A1=0.3), "confirm_jump": ["A2"]})
    assert r.status_code == 409  # confirming another asset does not take A1's jump
    r = client.post("/v1/portfolios/p/ticks",
                    json={**_tick(market, 300, A1=0.3), "confirm_jump": ["A1"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["flags"][0].startswith("jump:A1 x0.") and body["flags"][0].endswith("confirmed")
    assert body["jumps"][0]["confirmed"] is True
    assert client.get("/v1/portfolios/p").json()["history_rows"] == 61
    assert _metric(client, "confirmed") == 1.0
    # The new level is the price now: normal moves from it pass unflagged.
    for i in (301, 302):
        nxt = client.post("/v1/portfolios/p/ticks", json=_tick(market, i, A1=0.3))
        assert nxt.status_code == 200 and nxt.json()["flags"] == []


def test_stateless_windows_are_checked_row_by_row(client, market):
    rows = np.asarray(market.iloc[270:301]).copy()
    rows[15, 0] *= 50  # a fat finger in the middle: up, then back down
    r = client.post("/v1/weights", json={"assets": ASSETS, "prices": rows.tolist()})
    assert r.status_code == 409 and "in rows 15, 16" in r.json()["detail"]
    assert [(j["asset"], j["row"]) for j in r.json()["jumps"]] == [("A0", 15), ("A0", 16)]
    r = client.post("/v1/weights", json={"assets": ASSETS, "prices": rows.tolist(),
                                         "confirm_jump": True})
    assert r.status_code == 200 and len(r.json()["flags"]) == 2
    # Rows older than the decision's window are not the guard's business.
    old = np.asarray(market.iloc[200:261]).copy()
    old[:30] *= 0.2  # x5 from row 29 to 30; the decision uses rows 30-60
    r = client.post("/v1/weights", json={"assets": ASSETS, "prices": old.tolist()})
    assert r.status_code == 200 and r.json()["flags"] == []


def test_a_five_sd_day_of_a_volatile_or_a_quiet_asset_is_not_a_jump(client, market):
    r = np.diff(np.log(np.asarray(market.iloc[239:300])), axis=0)
    r[:, 3] *= 3.0  # A3 three times as volatile: about 8% a day
    prices = 100.0 * np.exp(np.cumsum(r, axis=0))
    client.post("/v1/portfolios", json={"id": "p", "assets": ASSETS,
                                        "prices": prices.tolist()})
    sd = r[-30:].std(axis=0)
    move = np.exp(5 * sd * np.array([-1, 0, 0, 1]))  # A0 -5 sd (quiet), A3 +5 sd
    assert move[3] > 1.4  # a +40% day: a fixed cap on moves would have refused it
    tick = {"prices": (prices[-1] * move).tolist(), "timestamp": 1.0}
    answer = client.post("/v1/portfolios/p/ticks", json=tick)
    assert answer.status_code == 200, answer.text
    assert answer.json()["flags"] == [] and answer.json()["jumps"] == []


def test_any_multiplier_beyond_the_bound_is_refused_and_small_moves_never(registry_copy,
                                                                         market):
    engine = Engine(ServiceConfig(registry=registry_copy, audit_url="sqlite://"))
    history = np.asarray(market.iloc[269:300])
    count = iter(range(10**6))

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(log_move=st.one_of(st.floats(0.0, 0.195), st.floats(1.001, 8.0)),
           sign=st.sampled_from([-1.0, 1.0]), asset=st.integers(0, 3))
    def check(log_move, sign, asset):
        pid = f"p{next(count)}"
        engine.create_portfolio(ASSETS, history.tolist(), portfolio_id=pid)
        before = engine.describe(pid)
        row = np.asarray(market.iloc[300]).copy()
        row[asset] = history[-1, asset] * np.exp(sign * log_move)
        if log_move > 1.0:
            with pytest.raises(InputError) as info:
                engine.tick(pid, row.tolist(), 1.0)
            assert info.value.status == 409
            assert [j["asset"] for j in info.value.extra["jumps"]] == [ASSETS[asset]]
            assert engine.describe(pid) == before
        else:
            assert engine.tick(pid, row.tolist(), 1.0).jumps == []
        engine.delete_portfolio(pid)

    try:
        check()
    finally:
        engine.close()


def test_serve_passes_the_jump_options(registry_copy, monkeypatch, cli_error):
    from neuralfolio.cli import app

    seen = {}

    def run(app_, **kwargs):
        seen["config"] = app_.state.engine.config
        app_.state.engine.close()

    monkeypatch.setattr(uvicorn, "run", run)
    result = CliRunner().invoke(app, ["serve", "--registry", str(registry_copy),
                                      "--jump-sd", "4", "--jump-mode", "flag",
                                      "--jump-min-vol", "0.03", "--jump-max-log-return", "0"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    c = seen["config"]
    assert (c.jump_sd, c.jump_mode, c.jump_min_vol, c.jump_max_log_return) == (4, "flag",
                                                                               0.03, 0)
    err = cli_error("serve", "--registry", registry_copy, "--jump-mode", "maybe")
    assert err.startswith("error:") and "jump-mode must be one of" in err


def test_openapi_documents_the_guard(client):
    schema = client.get("/openapi.json").json()
    for path in ("/v1/portfolios/{pid}/ticks", "/v1/weights"):
        refused = schema["paths"][path]["post"]["responses"]["409"]
        assert "jump" in refused["description"]
        assert refused["content"]["application/json"]["schema"]["$ref"].endswith("JumpRefusal")
    parts = schema["components"]["schemas"]
    assert "confirm_jump" in parts["TickIn"]["properties"]
    assert "confirm_jump" in parts["WindowIn"]["properties"]
    assert {"flags", "jumps"} <= set(parts["WeightsOut"]["properties"])


def test_replay_confirms_the_jumps_of_recorded_history(registry_copy, market, tmp_path,
                                                      live_server):
    from neuralfolio.cli import app

    prices = market.copy()
    prices.iloc[305:, 1] *= 3.0  # a real +200% day in the history streamed
    path = tmp_path / "prices.csv"
    prices.to_csv(path)
    with live_server(ServiceConfig(registry=registry_copy, audit_url="sqlite://")) as url:
        result = CliRunner().invoke(app, ["replay", str(path), "--url", url, "--speed", "0",
                                          "--start", str(prices.index[300].date()),
                                          "--limit", "10"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "jumps confirmed 1" in " ".join(result.output.split())


def _reference_jumps(prices, sd, min_vol, max_lr, last_only):
    """The jump rule written out plainly: every row's test against the robust limits."""
    r = np.diff(np.log(prices), axis=0)
    vol = np.maximum(1.4826 * np.median(np.abs(r - np.median(r, axis=0)), axis=0), min_vol)
    limit = sd * vol if sd else np.full(prices.shape[1], np.inf)
    if max_lr:
        limit = np.minimum(limit, max_lr)
    rows = range(len(r) - 1, len(r)) if last_only else range(len(r))
    return [(t + 1, j) for t in rows for j in range(prices.shape[1]) if abs(r[t, j]) > limit[j]]


@pytest.mark.parametrize("seed", range(40))
def test_find_jumps_fast_path_finds_what_the_full_rule_finds(seed):
    from neuralfolio.serve.engine import find_jumps

    rng = np.random.default_rng(seed)
    n, t = int(rng.integers(1, 6)), int(rng.integers(2, 40))
    scale = float(rng.choice([0.001, 0.01, 0.05, 0.2]))
    r = rng.normal(0, scale, (t, n))
    r[rng.random((t, n)) < 0.05] *= 30  # some outliers
    prices = 100 * np.exp(np.cumsum(r, axis=0))
    sd = float(rng.choice([0.0, 3.0, 15.0]))
    min_vol = float(rng.choice([0.0, 0.005, 0.02]))
    max_lr = float(rng.choice([0.0, 0.2, 1.0]))
    assets = [f"A{i}" for i in range(n)]
    for last_only in (False, True):
        got = find_jumps(prices, assets, sd=sd, min_vol=min_vol, max_log_return=max_lr,
                         last_only=last_only)
        assert [(j["row"], assets.index(j["asset"])) for j in got] == _reference_jumps(
            prices, sd, min_vol, max_lr, last_only)
