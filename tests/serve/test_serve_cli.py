"""The service's commands (retrain, audit, replay, serve) through the CLI, and a live server."""

import json
import shutil
import socket
from datetime import datetime

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from neuralfolio.cli import app
from neuralfolio.data import load_prices
from neuralfolio.errors import ConfigError
from neuralfolio.serve import Engine, ModelRegistry, ServiceConfig, create_app

runner = CliRunner()
TINY = ["--epochs", "2", "--augment", "0", "--window", "60", "--holdout", "60"]


def _invoke(*args):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _retrain(registry, *extra) -> dict:
    result = _invoke("retrain", "gfc", *TINY, "--registry", registry, "--json", *extra)
    return json.loads(result.stdout)



def _active(registry) -> str | None:
    record = ModelRegistry(registry).active()
    return None if record is None else record.label


@pytest.fixture(scope="module")
def retrained(tmp_path_factory):
    """A registry after one ``neuralfolio retrain gfc``, and that run's JSON report."""
    root = tmp_path_factory.mktemp("retrained")
    with pytest.MonkeyPatch.context() as mp:  # module scope: set the test cache here
        mp.setenv("NEURALFOLIO_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        report = _retrain(root)
    return root, report


@pytest.fixture
def registry(retrained, tmp_path):
    """A private copy of the retrained registry."""
    dst = tmp_path / "registry"
    shutil.copytree(retrained[0], dst, ignore=shutil.ignore_patterns("audit.db*"))
    return dst


# ----------------------------------------------------------------------------- retrain
def test_retrain_activates_a_candidate_only_when_it_is_not_worse(retrained, registry):
    first = retrained[1]
    assert first["candidate"] == "minvar:1" and first["activated"] is True
    assert first["active"] is None and first["active_l1"] is None  # nothing was active
    assert 0 < first["candidate_l1"] < 2
    assert first["holdout"] == ["2010-10-07", "2010-12-31"]  # the last 60 gfc dates
    assert _active(registry) == "minvar:1"

    second = _retrain(registry)
    assert second["candidate"] == "minvar:2" and second["active"] == "minvar:1"
    not_worse = second["candidate_l1"] <= second["active_l1"]
    assert second["activated"] is not_worse
    assert _active(registry) == ("minvar:2" if not_worse else "minvar:1")
    reg = ModelRegistry(registry)
    for report in (first, second):  # the report's score is the one the registry keeps
        meta = reg.get("minvar", int(report["candidate"].split(":")[1])).meta
        assert meta["metrics"]["holdout_l1"] == pytest.approx(report["candidate_l1"])
        assert meta["window"] == 60

    # A negative tolerance asks for a strictly better candidate: an equal one stays idle.
    before = _active(registry)
    third = _retrain(registry, "--tolerance", "-0.5")
    assert third["candidate"] == "minvar:3" and third["active"] == before
    better = third["candidate_l1"] <= 0.5 * third["active_l1"]
    assert third["activated"] is better
    assert _active(registry) == ("minvar:3" if better else before)

    before = _active(registry)
    fourth = _retrain(registry, "--no-activate")
    assert fourth["candidate"] == "minvar:4" and fourth["activated"] is False
    assert _active(registry) == before
    assert [r.label for r in reg.list()] == [f"minvar:{v}" for v in range(1, 5)]


# ------------------------------------------------------------------------------- audit
def _history(prices, end: int, rows: int) -> dict:
    head = prices.iloc[end - rows: end]
    return {"prices": head.to_numpy().tolist(),
            "timestamps": [d.isoformat() for d in head.index]}


def _tick(prices, i: int) -> dict:
    return {"timestamp": prices.index[i].isoformat(), "prices": prices.iloc[i].to_dict()}


def test_audit_lists_recorded_decisions_newest_first(registry, monkeypatch):
    prices = load_prices("gfc")
    assets = list(prices.columns)
    config = ServiceConfig(registry=registry)
    engine = Engine(config)
    with TestClient(create_app(config, engine)) as client:
        needed = client.get("/v1/models").json()["active"]["history_needed"]
        start = prices.index.get_loc(prices.loc["2009-01-02":].index[0])
        r = client.post("/v1/portfolios", json={"id": "p", "assets": assets,
                                                **_history(prices, start, needed)})
        assert r.status_code == 201, r.text
        ticks = [client.post("/v1/portfolios/p/ticks", json=_tick(prices, start + k)).json()
                 for k in range(3)]
        with monkeypatch.context() as mp:  # a broken network: the optimizer answers
            mp.setattr(engine.active.runtime, "predict_features", lambda x: np.full(4, np.nan))
            fell = client.post("/v1/portfolios/p/ticks", json=_tick(prices, start + 3)).json()
        assert fell["fallback"] is True
        window = prices.iloc[start + 10 - needed: start + 10].to_numpy().tolist()
        stateless = client.post("/v1/weights", json={"assets": assets, "prices": window})
        assert stateless.status_code == 200
    # Leaving the client stopped the service, which flushed its audit log.

    rows = json.loads(_invoke("audit", "--registry", registry, "--json").stdout)
    assert len(rows) == 5
    times = [datetime.fromisoformat(r["time"]) for r in rows]
    assert times == sorted(times, reverse=True)
    assert rows[0]["portfolio"] is None and rows[0]["model"] == "minvar:1"
    assert [r["weights"] for r in rows[2:]] == [list(t["weights"].values())
                                                for t in ticks[::-1]]
    assert rows[1]["fallback"] is True and rows[1]["model"] == "optimizer(min_variance)"
    assert "non-finite" in rows[1]["reason"]
    assert all(r["assets"] == assets for r in rows)

    only = json.loads(_invoke("audit", "--registry", registry, "--fallback", "--json").stdout)
    assert [r["id"] for r in only] == [rows[1]["id"]]
    normal = json.loads(_invoke("audit", "--registry", registry, "--no-fallback",
                                "--json").stdout)
    assert len(normal) == 4 and not any(r["fallback"] for r in normal)
    two = json.loads(_invoke("audit", "--registry", registry, "--portfolio", "p",
                             "--limit", "2", "--json").stdout)
    assert [r["id"] for r in two] == [rows[1]["id"], rows[2]["id"]]
    table = _invoke("audit", "--registry", registry).stdout
    assert "Audit log: 5 newest decisions" in table and "non-finite" in table


def test_audit_without_a_log_is_a_one_line_error(cli_error, tmp_path):
    err = cli_error("audit", "--registry", tmp_path)
    assert err.startswith("error: no audit log at") and "audit.db" in err


# ------------------------------------------------------------------------------- serve
def test_serve_refuses_more_than_one_worker(cli_error, registry):
    err = cli_error("serve", "--registry", registry, "--workers", "2")
    assert err.startswith("error:") and "--workers 1" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_replay_streams_ticks_into_a_live_server(registry, live_server):
    with live_server(ServiceConfig(registry=registry)) as url:
        result = _invoke("replay", "gfc", "--url", url, "--speed", "0", "--limit", "20",
                         "--start", "2009-01-02")
        state = httpx.get(f"{url}/v1/portfolios/replay", timeout=10).json()
    assert state["ticks"] == 20
    dates = load_prices("gfc").loc["2009-01-02":].index
    assert state["last_timestamp"].startswith(str(dates[19].date()))
    assert "20 ticks" in result.stdout


def test_register_rule_serves_the_exact_optimizer(tmp_path):
    from neuralfolio.policies import OptimizerPolicy

    out = json.loads(_invoke("register-rule", "optimizer", "--window", 40, "--registry",
                             tmp_path, "--activate", "--json").stdout)
    assert out == {"model": "opt-min-variance:1", "activated": True,
                   "rule": {"rule": "optimizer", "window": 40, "objective": "min_variance"}}
    prices = load_prices("gfc").iloc[:41]
    config = ServiceConfig(registry=tmp_path)
    with TestClient(create_app(config, Engine(config))) as client:
        r = client.post("/v1/weights", json={"assets": list(prices.columns),
                                             "prices": prices.to_numpy().tolist()})
        assert r.status_code == 200, r.text
        body = r.json()
    assert body["model"] == "opt-min-variance:1" and body["fallback"] is False
    expected = OptimizerPolicy("min_variance", 40).weights(prices.to_numpy())
    np.testing.assert_allclose([body["weights"][a] for a in prices.columns], expected,
                               atol=1e-7)


def test_register_rule_refuses_an_unknown_rule(tmp_path):
    result = runner.invoke(app, ["register-rule", "hrp", "--registry", str(tmp_path)])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError) and "equal_weight" in str(
        result.exception)


# ------------------------------------------------- serve's options (uvicorn never starts)
@pytest.fixture
def served(monkeypatch):
    """``serve`` with create_app and uvicorn.run replaced: what they were given."""
    import gc

    seen: dict = {}

    def create_app_(config):
        seen["config"] = config
        return "app"

    def run(app, **kwargs):
        seen["run"] = kwargs

    monkeypatch.setattr("neuralfolio.serve.create_app", create_app_)
    monkeypatch.setattr("uvicorn.run", run)
    monkeypatch.setattr(gc, "freeze", lambda: None)  # not in the test process
    monkeypatch.setattr(gc, "collect", lambda: 0)
    monkeypatch.delenv("NEURALFOLIO_TOKEN", raising=False)
    return seen


def _serve(tmp_path, *args, env=None):
    return runner.invoke(app, ["serve", "--registry", str(tmp_path), "--port",
                               str(_free_port()), *map(str, args)],
                         catch_exceptions=False, env=env)


@pytest.mark.parametrize("port", [0, -1, 65536, 99999])
def test_serve_port_out_of_range_is_one_line(cli_error, served, tmp_path, port):
    err = cli_error("serve", "--registry", tmp_path, "--port", port)
    assert err == (f"error: --port {port} is not a TCP port: give one from 1 to 65535, "
                   "e.g. --port 8000.")
    assert served == {}  # refused before the app was built


def test_serve_port_in_use_is_one_line(cli_error, served, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        err = cli_error("serve", "--registry", tmp_path, "--port", port)
    assert err == (f"error: port {port} is already in use on 127.0.0.1 (another neuralfolio "
                   "serve?): stop that process or choose another --port.")
    assert served == {}


def test_serve_uvicorn_startup_failure_is_one_line(cli_error, served, tmp_path, monkeypatch):
    # The port taken between the check and uvicorn's bind: uvicorn logs why and exits 3.
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: (_ for _ in ()).throw(SystemExit(3)))
    err = cli_error("serve", "--registry", tmp_path, "--port", _free_port())
    assert err.startswith("error: the service did not start on 127.0.0.1:")


def test_serve_defaults_are_service_configs(served, tmp_path):
    _serve(tmp_path)
    config = served["config"]
    assert config == ServiceConfig(registry=tmp_path)
    assert served["run"]["ws_max_size"] == config.max_body_bytes


def test_serve_options_reach_service_config_and_uvicorn(served, tmp_path):
    _serve(tmp_path, "--audit-on-failure", "answer", "--audit-timeout", 2.5,
           "--audit-queue", 50, "--audit-synchronous", "full", "--max-body-bytes", 4096,
           "--max-assets", 30, "--max-portfolios", 7, "--max-held-values", 9000,
           "--portfolio-ttl", 60, "--max-id-length", 12, "--max-clock-skew", 0,
           "--min-price", 0.01, "--max-price", 5000, "--jump-mode", "flag")
    config = served["config"]
    assert (config.audit_on_failure, config.audit_timeout, config.audit_queue,
            config.audit_synchronous) == ("answer", 2.5, 50, "full")
    assert (config.max_body_bytes, config.max_assets, config.max_portfolios,
            config.max_held_values, config.max_id_length) == (4096, 30, 7, 9000, 12)
    assert config.portfolio_ttl_seconds == 60 and config.max_clock_skew_seconds == 0
    assert (config.min_price, config.max_price, config.jump_mode) == (0.01, 5000, "flag")
    assert served["run"]["ws_max_size"] == 4096


def test_serve_no_limit_sentinels(served, tmp_path):
    _serve(tmp_path, "--portfolio-ttl", 0, "--max-clock-skew", -1)
    assert served["config"].portfolio_ttl_seconds is None
    assert served["config"].max_clock_skew_seconds is None


@pytest.mark.parametrize("args, message", [
    (["--audit-on-failure", "ignore"],
     "--audit-on-failure must be one of ['refuse', 'answer'], got 'ignore'."),
    (["--audit-synchronous", "off"],
     "--audit-synchronous must be one of ['normal', 'full'], got 'off'."),
    (["--max-body-bytes", 0], "--max-body-bytes must be > 0, got 0."),
    (["--max-assets", 1], "--max-assets must be >= 2, got 1."),
    (["--min-price", 2, "--max-price", 1], "--min-price (2.0) must be below --max-price (1.0)."),
    (["--max-clock-skew", -2], "--max-clock-skew -2: give seconds >= 0, or -1 for no limit."),
    (["--portfolio-ttl", -5],
     "--portfolio-ttl -5: give seconds > 0, or 0 to never forget an idle portfolio."),
])
def test_serve_bad_option_values_are_one_line(cli_error, served, tmp_path, args, message):
    assert cli_error("serve", "--registry", tmp_path, *args) == f"error: {message}"
    assert served == {}


def test_serve_reads_the_token_from_a_file(served, tmp_path):
    path = tmp_path / "token.txt"
    path.write_text("  s3cret\n")
    _serve(tmp_path, "--token-file", path)
    assert served["config"].token == "s3cret"
    _serve(tmp_path, env={"NEURALFOLIO_TOKEN": "from-env"})
    assert served["config"].token == "from-env"


def test_serve_token_file_errors_are_one_line(cli_error, served, tmp_path, monkeypatch):
    missing = tmp_path / "none.txt"
    err = cli_error("serve", "--registry", tmp_path, "--token-file", missing)
    assert err == (f"error: --token-file {missing}: no such file. Write the admin token in "
                   "it, or give it in $NEURALFOLIO_TOKEN.")
    blank = tmp_path / "blank.txt"
    blank.write_text(" \n\n")
    err = cli_error("serve", "--registry", tmp_path, "--token-file", blank)
    assert err == f"error: --token-file {blank} is empty; write the admin token in it."
    good = tmp_path / "token.txt"
    good.write_text("s3cret")
    err = cli_error("serve", "--registry", tmp_path, "--token-file", good, "--token", "x")
    assert err == (f"error: both --token and --token-file {good} give the admin token; give "
                   "only one of them.")
    monkeypatch.setenv("NEURALFOLIO_TOKEN", "x")
    err = cli_error("serve", "--registry", tmp_path, "--token-file", good)
    assert err == (f"error: both $NEURALFOLIO_TOKEN and --token-file {good} give the admin "
                   "token; unset $NEURALFOLIO_TOKEN or drop --token-file.")
    assert served == {}


def test_serve_help_recommends_the_environment_for_the_token():
    text = " ".join(runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output.split())
    assert "Prefer $NEURALFOLIO_TOKEN or --token-file" in text and "(ps)" in text
    for flag in ("--token-file", "--audit-on-failure", "--audit-timeout", "--audit-queue",
                 "--audit-synchronous", "--max-body-bytes", "--max-assets", "--max-portfolios",
                 "--max-held-values", "--portfolio-ttl", "--max-id-length", "--max-clock-skew",
                 "--min-price", "--max-price"):
        assert flag in text, flag
    assert "-1: no limit" in text and "0: never" in text
