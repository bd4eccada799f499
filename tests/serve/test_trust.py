"""The engine on a bad day: limits, market data that breaks math, per-portfolio gap
alerts and activation that runs a version before it may serve."""

import copy
import json
import logging
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from neuralfolio.serve import ModelRegistry
from neuralfolio.serve.engine import HISTORY_ROWS, Engine, InputError, ServiceConfig

ASSETS = ["A0", "A1", "A2", "A3"]


def rows(market, end, n=60):
    return market.iloc[end - n:end].to_numpy().tolist()


@pytest.fixture
def engine(registry_copy):
    e = Engine(ServiceConfig(registry=registry_copy))
    yield e
    e.close()


def assets_of(market):
    return [str(c) for c in market.columns]


def status_of(call):
    with pytest.raises(InputError) as info:
        call()
    return info.value.status, info.value.message


# ------------------------------------------------------------------------------ limits
def test_too_many_assets_is_refused_with_the_limit(registry_copy):
    reg = ModelRegistry(registry_copy)
    reg.register_rule({"rule": "equal_weight"}, "ew")
    reg.activate("ew", 1)
    e = Engine(ServiceConfig(registry=registry_copy, max_assets=50))
    try:
        prices = np.full((3, 51), 10.0) * np.linspace(1, 1.1, 3)[:, None]
        status, msg = status_of(lambda: e.weights([f"X{i}" for i in range(51)],
                                                  prices.tolist()))
        assert status == 422 and "max_assets" in msg and "50" in msg
        status, msg = status_of(lambda: e.weights(["X", "y" * 200], prices[:, :2].tolist()))
        assert status == 422 and "asset name" in msg
    finally:
        e.close()


def test_portfolio_count_and_held_values_are_bounded(registry_copy, market):
    e = Engine(ServiceConfig(registry=registry_copy, max_portfolios=5))
    try:
        names = assets_of(market)
        for i in range(5):
            e.create_portfolio(names, rows(market, 299), portfolio_id=f"p{i}")
        status, msg = status_of(lambda: e.create_portfolio(names, rows(market, 299)))
        assert status == 429 and "max_portfolios" in msg
        e.delete_portfolio("p0")
        e.create_portfolio(names, rows(market, 299), portfolio_id="again")
    finally:
        e.close()
    held = HISTORY_ROWS * len(names) * 3
    e = Engine(ServiceConfig(registry=registry_copy, max_held_values=held))
    try:
        for i in range(3):
            e.create_portfolio(names, rows(market, 299), portfolio_id=f"q{i}")
        status, msg = status_of(lambda: e.create_portfolio(names, rows(market, 299)))
        assert status == 429 and "max_held_values" in msg
        assert e._held == held
    finally:
        e.close()


def test_a_flood_of_creations_is_refused_beyond_the_limit(engine, market):
    names, prices = assets_of(market), rows(market, 299)
    made = refused = 0
    for _ in range(1_500):
        try:
            engine.create_portfolio(names, prices)
            made += 1
        except InputError as exc:
            assert exc.status == 429
            refused += 1
    assert made == engine.config.max_portfolios and refused == 500
    assert len(engine.portfolios) == made
    # memory: the rings' capacity is what the bound counts
    ring_bytes = sum(p.prices._buf.nbytes for p in engine.portfolios.values())
    assert ring_bytes == 16 * engine._held <= 16 * engine.config.max_held_values


def test_idle_portfolios_expire(registry_copy, market, monkeypatch):
    import neuralfolio.serve.engine as eng

    clock = [1000.0]
    monkeypatch.setattr(eng.time, "monotonic", lambda: clock[0])
    e = Engine(ServiceConfig(registry=registry_copy, portfolio_ttl_seconds=60,
                             max_portfolios=1))
    try:
        names = assets_of(market)
        e.create_portfolio(names, rows(market, 299), portfolio_id="old")
        clock[0] += 30
        e.tick("old", market.iloc[299].tolist())  # a tick keeps it alive
        clock[0] += 45
        e.describe("old")
        clock[0] += 30
        status, msg = status_of(lambda: e.describe("old"))
        assert status == 404 and "expired" in msg
        e.create_portfolio(names, rows(market, 299), portfolio_id="new")
        clock[0] += 61
        e.create_portfolio(names, rows(market, 299), portfolio_id="newer")  # "new" expired
        assert list(e.portfolios) == ["newer"]
    finally:
        e.close()


@pytest.mark.parametrize("pid", ["x" * 65, "a b", "caf\u00e9", "../x", "", "a/b"])
def test_portfolio_ids_are_short_ascii(engine, market, pid):
    status, msg = status_of(lambda: engine.create_portfolio(assets_of(market),
                                                            rows(market, 299), None, pid))
    assert status == 422 and "max_id_length" in msg and len(msg) < 300


# ------------------------------------------------------------------- market data
def test_prices_outside_the_range_are_refused(engine, market):
    names = assets_of(market)
    bad = rows(market, 299)
    bad[-1][2] = 5e-324
    status, msg = status_of(lambda: engine.weights(names, bad))
    assert status == 422 and "price range" in msg
    engine.create_portfolio(names, rows(market, 299), portfolio_id="p")
    tick = market.iloc[299].tolist()
    tick[0] = 1e300
    status, _ = status_of(lambda: engine.tick("p", tick))
    assert status == 422
    assert engine.tick("p", market.iloc[299].tolist()).weights  # still usable


def test_future_ticks_beyond_the_clock_skew_are_refused(engine, market):
    names = assets_of(market)
    engine.create_portfolio(names, rows(market, 299), portfolio_id="p")
    status, msg = status_of(lambda: engine.tick("p", market.iloc[299].tolist(),
                                                "9999-12-31T00:00:00Z"))
    assert status == 422 and "ahead of the service's clock" in msg
    soon = (datetime.now(UTC) + timedelta(seconds=60)).isoformat()
    engine.tick("p", market.iloc[299].tolist(), soon)  # within the skew
    later = (datetime.now(UTC) + timedelta(seconds=120)).isoformat()
    assert engine.tick("p", market.iloc[300].tolist(), later).weights
    stamps = [(datetime(2030, 1, 1, tzinfo=UTC) + timedelta(days=i)).isoformat()
              for i in range(60)]
    status, _ = status_of(lambda: engine.create_portfolio(names, rows(market, 299), stamps))
    assert status == 422


def test_a_halted_asset_gets_a_defined_answer(engine, market):
    names = assets_of(market)
    window = np.array(rows(market, 299))
    window[:, 1] = window[-1, 1]  # A1 halted: the same price on every row
    a = engine.weights(names, window.tolist())
    assert a.fallback and "stale prices" in a.reason and "stale:" + names[1] in a.flags
    w = np.array(list(a.weights.values()))
    assert w[1] == 0 and np.isclose(w.sum(), 1) and (w >= 0).all()
    # a portfolio with earlier good weights holds them while the asset stands still
    engine.create_portfolio(names, rows(market, 299), portfolio_id="p")
    good = engine.tick("p", market.iloc[299].tolist())
    assert not good.fallback
    halted = market.iloc[300].tolist()
    halted[1] = market.iloc[299, 1]
    held = engine.tick("p", halted)
    assert not [f for f in held.flags if f.startswith("stale")]  # one equal pair: moving
    everything = np.array(rows(market, 299))
    everything[:] = everything[-1]
    status, msg = status_of(lambda: engine.weights(names, everything.tolist()))
    assert status == 422 and "fewer than 2 assets move" in msg


def test_a_portfolio_holds_its_last_good_weights_while_its_prices_are_stale(
        registry_copy, market):
    e = Engine(ServiceConfig(registry=registry_copy))
    try:
        names = assets_of(market)
        e.create_portfolio(names, rows(market, 299, 31), portfolio_id="p")
        good = e.tick("p", market.iloc[299].tolist())
        assert not good.fallback
        frozen = market.iloc[299].tolist()
        for _ in range(31):  # the feed repeats the last row until it spans the window
            last = e.tick("p", frozen)
            if not last.fallback:
                good = last
        assert last.fallback and "stale prices" in last.reason
        assert last.weights == good.weights and last.model.endswith("(last good weights)")
        assert e.describe("p")["ticks"] == 32  # every tick was taken
    finally:
        e.close()


# ------------------------------------------------------------------ gap monitor
def test_the_gap_alert_is_per_portfolio_and_clears(registry_copy, market):
    config = ServiceConfig(registry=registry_copy, gap_every=1, gap_window=10,
                           gap_l1_alert=0.0)
    e = Engine(config)
    try:
        names = assets_of(market)
        e.create_portfolio(names, rows(market, 299), portfolio_id="noisy")
        e.create_portfolio(names, rows(market, 299), portfolio_id="quiet")
        for i in range(299, 312):
            e.tick("noisy", market.iloc[i].tolist())
        for i in range(12):  # stateless calls feed the metric, never an alert
            e.weights(names, rows(market, 300 + i))
        e.monitor.wait()
        assert e.monitor.alerting(e.active.label, "noisy")
        assert not e.monitor.alerting(e.active.label, None)
        fell = e.tick("noisy", market.iloc[312].tolist())
        assert fell.fallback and "amortization gap" in fell.reason
        assert not e.tick("quiet", market.iloc[299].tolist()).fallback
        assert not e.weights(names, rows(market, 313)).fallback
        # the network is still sampled while it falls back: raise the threshold, the
        # next samples clear the alert
        e.config.gap_l1_alert = 10.0
        for i in range(313, 316):
            e.tick("noisy", market.iloc[i].tolist())
        e.monitor.wait()
        e.tick("noisy", market.iloc[316].tolist())
        e.monitor.wait()
        assert not e.monitor.alerting(e.active.label, "noisy")
        assert not e.tick("noisy", market.iloc[317].tolist()).fallback
    finally:
        e.close()


# ------------------------------------------------------------------- activation
def _broken_versions(reg):
    """Versions of ``minvar`` that load but cannot run, each with what breaks it."""
    good = reg.get("minvar", 1)
    runtime = reg.load(good)
    out = {}
    shapes = copy.deepcopy(runtime)
    key = sorted(shapes.params)[0]
    shapes.params = {**shapes.params, key: np.zeros((3, 2))}
    out["wrong-shaped weights"] = reg.register(shapes, "broken", dict(good.meta))
    scaler = copy.deepcopy(runtime)
    scaler.params = {**scaler.params, "scaler.mean": scaler.params["scaler.mean"][:-1]}
    out["scaler of the wrong length"] = reg.register(scaler, "broken", dict(good.meta))
    act = copy.deepcopy(runtime)
    act.arch = {**act.arch, "activations": ["no_such_activation", *act.arch["activations"][1:]]}
    out["unknown activation"] = reg.register(act, "broken", dict(good.meta))
    meta = dict(good.meta)
    meta["feature_mean"] = meta["feature_mean"][:-1]
    meta["feature_std"] = meta["feature_std"][:-1]
    out["short scaler"] = reg.register(runtime, "broken", meta)
    meta = dict(good.meta, objective="no_such_objective")
    out["unknown objective"] = reg.register(runtime, "broken", meta)
    return out


def _clean_meta(meta):
    return {k: v for k, v in meta.items() if k not in ("created", "kind", "assets",
                                                       "lookback")}


def test_activation_refuses_a_version_that_cannot_run(registry_copy, monkeypatch):
    reg = ModelRegistry(registry_copy)
    monkeypatch.setattr(reg, "register",
                        lambda rt, name, meta: ModelRegistry.register(reg, rt, name,
                                                                      _clean_meta(meta)))
    broken = _broken_versions(reg)
    e = Engine(ServiceConfig(registry=registry_copy))
    assert len(broken) == 5
    try:
        for what, record in broken.items():
            status, msg = status_of(lambda r=record: e.activate(r.name, r.version))
            assert (status == 422 and "cannot run" in msg) or "does not load" in msg, what
            assert e.active.label == "minvar:1", what
        assert json.loads((registry_copy / "active.json").read_text())["name"] == "minvar"
    finally:
        e.close()


def test_start_up_replaces_a_broken_active_version_loudly(registry_copy, caplog):
    reg = ModelRegistry(registry_copy)
    good = reg.get("minvar", 2)
    runtime = reg.load(good)
    shapes = copy.deepcopy(runtime)
    key = sorted(shapes.params)[0]
    shapes.params = {**shapes.params, key: np.zeros((3, 2))}
    bad = reg.register(shapes, "broken", _clean_meta(good.meta))
    reg.activate(bad.name, bad.version)  # the registry itself does not run models
    with caplog.at_level(logging.ERROR, logger="neuralfolio.serve.engine"):
        e = Engine(ServiceConfig(registry=registry_copy))
    try:
        assert e.active is not None and e.active.label.startswith("minvar:")
        h = e.health()
        assert h["ready"] and h["warnings"] and "broken:1" in h["warnings"][0]
        assert any("broken:1" in r.getMessage() for r in caplog.records)
    finally:
        e.close()


def test_a_5000_asset_request_is_refused_within_a_memory_bound(registry_copy):
    """The asset-agnostic optimizer rule would take any universe: 5,000 assets are refused
    by max_assets before any estimate is made (and the body, about 3 MB, is within
    max_body_bytes): Python's peak allocation stays far below the ~4 GB such a decision
    took."""
    import tracemalloc

    reg = ModelRegistry(registry_copy)
    reg.register_rule({"rule": "optimizer", "objective": "min_variance", "window": 30},
                      "big")
    reg.activate("big", 1)
    e = Engine(ServiceConfig(registry=registry_copy))
    try:
        rng = np.random.default_rng(0)
        prices = (100 * np.exp(np.cumsum(rng.normal(0, 0.01, (31, 5000)), axis=0))).tolist()
        names = [f"S{i}" for i in range(5000)]
        tracemalloc.start()
        try:
            status, msg = status_of(lambda: e.weights(names, prices))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert status == 422 and "max_assets" in msg
        assert peak < 50e6
    finally:
        e.close()
