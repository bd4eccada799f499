"""The service's commands: ``serve``, ``retrain``, ``register-rule``, ``audit`` and
``replay``."""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from neuralfolio.errors import ConfigError, DataError

console = Console(width=None if sys.stdout.isatty() else 120)

RegistryOpt = Annotated[Path, typer.Option(help="Model registry directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead.")]


# Flags of the ServiceConfig fields, so that its messages name what a user typed.
_FLAGS = {
    "max_age_seconds": "--max-age", "jump_sd": "--jump-sd", "jump_min_vol": "--jump-min-vol",
    "jump_max_log_return": "--jump-max-log-return", "jump_mode": "--jump-mode",
    "audit_on_failure": "--audit-on-failure", "audit_timeout": "--audit-timeout",
    "audit_queue": "--audit-queue", "audit_synchronous": "--audit-synchronous",
    "max_body_bytes": "--max-body-bytes", "max_assets": "--max-assets",
    "max_portfolios": "--max-portfolios", "max_held_values": "--max-held-values",
    "portfolio_ttl_seconds": "--portfolio-ttl", "max_id_length": "--max-id-length",
    "max_clock_skew_seconds": "--max-clock-skew", "min_price": "--min-price",
    "max_price": "--max-price",
}
_NO_SKEW_LIMIT = -1.0


def serve(
    ctx: typer.Context,
    registry: RegistryOpt = Path("models/registry"),
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port, 1 to 65535.")] = 8000,
    token: Annotated[str | None, typer.Option(
        envvar="NEURALFOLIO_TOKEN",
        help="Bearer token of the admin routes; without one, model activation over HTTP is "
             "disabled. Prefer $NEURALFOLIO_TOKEN or --token-file: a token on the command "
             "line is visible to every user of the machine (ps).")] = None,
    token_file: Annotated[Path | None, typer.Option(
        help="Read the admin token from this file (surrounding whitespace is stripped); "
             "instead of --token or $NEURALFOLIO_TOKEN.")] = None,
    audit_url: Annotated[str | None, typer.Option(
        help="SQLAlchemy URL of the audit log (default sqlite in the registry).")] = None,
    max_age: Annotated[float | None, typer.Option(
        help="Refuse ticks stamped more than this many seconds ago.")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker threads' pool size hint; the "
                                              "service keeps state in one process.")] = 1,
    jump_sd: Annotated[float, typer.Option(
        help="Jump guard: a log return beyond this many times the asset's robust daily "
             "volatility is a jump (0: no volatility test).")] = 15.0,
    jump_min_vol: Annotated[float, typer.Option(
        help="Floor of that daily volatility, so a quiet asset's normal move passes.")] = 0.02,
    jump_max_log_return: Annotated[float, typer.Option(
        help="A log return beyond this is a jump whatever the volatility (0: no bound).")
    ] = 1.0,
    jump_mode: Annotated[str, typer.Option(
        help="reject: refuse a jump with 409, nothing changes; flag: accept it, answer the "
             "last good weights, flagged; off. A client takes a real jump with "
             '"confirm_jump": true.')] = "reject",
    audit_on_failure: Annotated[str, typer.Option(
        help="When a decision cannot be recorded in the audit log (database full, locked "
             "or gone): refuse: answer 503 with the reason, a portfolio's tick is not "
             'taken; answer: answer 200 with "recorded": false and the reason.')
    ] = "refuse",
    audit_timeout: Annotated[float, typer.Option(
        help="Seconds a decision waits for its audit commit before it counts as not "
             "recorded.")] = 5.0,
    audit_queue: Annotated[int, typer.Option(
        help="Most decisions waiting for the audit writer; more are refused with 503 "
             "(back-pressure) instead of piling up in memory.")] = 10_000,
    audit_synchronous: Annotated[str, typer.Option(
        help="SQLite synchronous mode of a file audit log: normal survives a killed "
             "process, full also a power cut (one fsync per group commit).")] = "normal",
    max_body_bytes: Annotated[int, typer.Option(
        help="Largest request body and WebSocket message taken, in bytes; larger ones get "
             "413.")] = 8 * 1024 * 1024,
    max_assets: Annotated[int, typer.Option(
        help="Most assets in a portfolio or a stateless request (422 beyond).")] = 500,
    max_portfolios: Annotated[int, typer.Option(
        help="Most portfolios held at once; creating one more gets 429 (after idle ones "
             "expired).")] = 1_000,
    max_held_values: Annotated[int, typer.Option(
        help="Most prices held over all portfolios (rows x assets; 16 bytes each); a "
             "portfolio that would pass it gets 429.")] = 20_000_000,
    portfolio_ttl: Annotated[float, typer.Option(
        help="Seconds a portfolio without a tick (or creation) is kept before it is "
             "forgotten (0: never).")] = 7 * 86_400.0,
    max_id_length: Annotated[int, typer.Option(
        help="Longest portfolio id (ASCII letters, digits, - and _).")] = 64,
    max_clock_skew: Annotated[float, typer.Option(
        help="Refuse (422) ticks stamped more than this many seconds after the server's "
             "clock (0: none may be ahead; -1: no limit).")] = 300.0,
    min_price: Annotated[float, typer.Option(
        help="Prices below this are refused (422).")] = 1e-12,
    max_price: Annotated[float, typer.Option(
        help="Prices above this are refused (422).")] = 1e12,
    access_log: Annotated[bool, typer.Option(
        "--access-log", help="Log every request (uvicorn's access log; off by default, it "
                             "costs throughput).")] = False,
    keep_alive: Annotated[int, typer.Option(
        help="Seconds an idle keep-alive connection stays open.")] = 30,
) -> None:
    """Run the weights service (FastAPI + uvicorn) on the registry's active model.

    uvicorn runs on uvloop's event loop and the httptools HTTP parser when they are
    installed (both are dependencies; uvicorn's defaults otherwise). Give the admin token
    in $NEURALFOLIO_TOKEN or with --token-file rather than --token, which other users of
    the machine can read in the process list.

    Example: neuralfolio serve --registry models/registry --port 8000 --token-file token.txt
    """
    import uvicorn

    if workers != 1:
        raise ConfigError("the service keeps each portfolio's state in memory: run one "
                          "process (--workers 1) and scale with more services per desk.")
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a TCP port: give one from 1 to 65535, "
                          "e.g. --port 8000.")
    if max_clock_skew < 0 and max_clock_skew != _NO_SKEW_LIMIT:
        raise ConfigError(f"--max-clock-skew {max_clock_skew:g}: give seconds >= 0, or -1 for "
                          "no limit.")
    if portfolio_ttl < 0:
        raise ConfigError(f"--portfolio-ttl {portfolio_ttl:g}: give seconds > 0, or 0 to never "
                          "forget an idle portfolio.")
    token = _token(ctx, token, token_file)
    config = _service_config(
        registry=registry, audit_url=audit_url, token=token, max_age_seconds=max_age,
        jump_sd=jump_sd, jump_min_vol=jump_min_vol, jump_max_log_return=jump_max_log_return,
        jump_mode=jump_mode, audit_on_failure=audit_on_failure, audit_timeout=audit_timeout,
        audit_queue=audit_queue, audit_synchronous=audit_synchronous,
        max_body_bytes=max_body_bytes, max_assets=max_assets, max_portfolios=max_portfolios,
        max_held_values=max_held_values,
        portfolio_ttl_seconds=None if portfolio_ttl == 0 else portfolio_ttl,
        max_id_length=max_id_length,
        max_clock_skew_seconds=None if max_clock_skew == _NO_SKEW_LIMIT else max_clock_skew,
        min_price=min_price, max_price=max_price)
    _check_listen(host, port)

    from neuralfolio.serve import create_app

    app = create_app(config)
    # Everything loaded so far (PyTorch, pandas, the model) lives as long as the process:
    # out of the collector's sight, a full collection takes microseconds instead of the
    # ~0.1 s pause (on ~270k objects) that a request would otherwise wait behind.
    gc.collect()
    gc.freeze()
    try:
        uvicorn.run(app, host=host, port=port, loop=_fast("uvloop"), http=_fast("httptools"),
                    log_level="info" if access_log else "warning", access_log=access_log,
                    timeout_keep_alive=keep_alive, ws_max_size=max_body_bytes)
    except SystemExit as exc:
        if exc.code == _UVICORN_STARTUP_FAILURE:  # uvicorn logged the reason just above
            raise ConfigError(f"the service did not start on {host}:{port}; uvicorn's "
                              "message above says why.") from None
        raise


_UVICORN_STARTUP_FAILURE = 3  # uvicorn.config.STARTUP_FAILURE


def _token(ctx: typer.Context, token: str | None, token_file: Path | None) -> str | None:
    """The admin token, from --token, $NEURALFOLIO_TOKEN or --token-file (one of them)."""
    if token_file is None:
        return token
    if token is not None:
        source = ctx.get_parameter_source("token")
        given = ("$NEURALFOLIO_TOKEN" if getattr(source, "name", None) == "ENVIRONMENT"
                 else "--token")
        keep = ("unset $NEURALFOLIO_TOKEN or drop --token-file" if given.startswith("$")
                else "give only one of them")
        raise ConfigError(f"both {given} and --token-file {token_file} give the admin token; "
                          f"{keep}.")
    try:
        text = token_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--token-file {token_file}: no such file. Write the admin token "
                          "in it, or give it in $NEURALFOLIO_TOKEN.") from None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"--token-file {token_file}: cannot read it ({why}). Give the path "
                          "of a text file that holds the admin token.") from None
    token = text.strip()
    if not token:
        raise ConfigError(f"--token-file {token_file} is empty; write the admin token in it.")
    return token


def _service_config(**fields):
    """``ServiceConfig(**fields)``, its errors naming the command-line flags."""
    import re

    from neuralfolio.serve import ServiceConfig

    try:
        return ServiceConfig(**fields)
    except ConfigError as exc:
        message = str(exc)
        for field, flag in _FLAGS.items():
            message = re.sub(rf"\b{field}\b", flag, message)
        raise ConfigError(message) from None


def _check_listen(host: str, port: int) -> None:
    """Raise a one-line ConfigError when the service could not listen on ``host:port``
    (port taken, no such interface), before the model is loaded."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host!r}: no such interface ({exc.strerror}); give an "
                          "address such as 127.0.0.1 or 0.0.0.0.") from None
    for family, kind, proto, _, address in dict.fromkeys(infos):
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            if family == socket.AF_INET6 and hasattr(socket, "IPV6_V6ONLY"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                where = f"{host}:{port}"
                if exc.errno == errno.EADDRINUSE:
                    raise ConfigError(
                        f"port {port} is already in use on {host} (another neuralfolio serve?): "
                        "stop that process or choose another --port.") from None
                if exc.errno == errno.EACCES:
                    raise ConfigError(
                        f"not allowed to listen on {where} (ports below 1024 need "
                        "administrator rights): choose another --port, e.g. 8000.") from None
                raise ConfigError(f"cannot listen on {where}: {exc.strerror}. Check --host "
                                  "and --port.") from None


def _fast(module: str) -> str:
    """``module`` (uvloop, httptools) for uvicorn when it can be imported, else ``"auto"``."""
    import importlib.util

    return module if importlib.util.find_spec(module) is not None else "auto"


def retrain(
    source: Annotated[str, typer.Argument(help="Data set name or CSV/Parquet path.")] = "sp500",
    registry: RegistryOpt = Path("models/registry"),
    name: Annotated[str, typer.Option(help="Model name in the registry.")] = "minvar",
    end: Annotated[str | None, typer.Option(help="Last date of data used.")] = None,
    window: Annotated[int, typer.Option(help="Returns per covariance window.")] = 126,
    holdout: Annotated[int, typer.Option(help="Recent dates held out to compare the "
                                              "candidate with the active model.")] = 126,
    epochs: Annotated[int | None, typer.Option(help="Most training epochs.")] = None,
    augment: Annotated[int, typer.Option(help="Synthetic scenarios.")] = 20_000,
    tolerance: Annotated[float, typer.Option(
        help="Activate when candidate L1 <= (1 + tolerance) x the active one's.")] = 0.0,
    no_activate: Annotated[bool, typer.Option("--no-activate",
                                              help="Register only.")] = False,
    service: Annotated[str | None, typer.Option(
        help="URL of a running service to switch to the candidate (with --token).")] = None,
    token: Annotated[str | None, typer.Option(envvar="NEURALFOLIO_TOKEN",
                                              help="Admin token of --service.")] = None,
    every: Annotated[float | None, typer.Option(
        help="Re-train every this many hours until stopped (Ctrl-C).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Re-train on the latest data; activate the candidate if it is not worse on a holdout.

    The candidate and the active model are scored on the most recent dates, which the
    candidate did not train on.

    Example: neuralfolio retrain sp500 --registry models/registry --service
    http://127.0.0.1:8000 --token s3cret
    """
    from neuralfolio.config import DEFAULT_IMITATION
    from neuralfolio.data import load_prices
    from neuralfolio.nn import TrainConfig
    from neuralfolio.serve import ModelRegistry
    from neuralfolio.serve.models import retrain as do_retrain

    train = TrainConfig(**{**DEFAULT_IMITATION, **({"max_epochs": epochs} if epochs else {})})
    reg = ModelRegistry(registry)
    while True:
        prices = load_prices(source, end=end)
        report = do_retrain(reg, prices, name=name, train=train, window=window,
                            holdout=holdout, augment=augment, tolerance=tolerance,
                            activate=not no_activate, progress=not json_out)
        if report.activated and service:
            _activate_remote(service, token, report.candidate)
        if json_out:
            sys.stdout.write(json.dumps(report.to_dict(), default=str) + "\n")
        else:
            act = ("none" if report.active_l1 is None
                   else f"{report.active} L1 {report.active_l1:.4f}")
            console.print(
                f"candidate {report.candidate}: holdout L1 {report.candidate_l1:.4f} "
                f"({report.holdout[0]}..{report.holdout[1]}); active before: {act}; "
                + ("[green]activated[/]" if report.activated else "[yellow]not activated[/]")
                + (f" on {service}" if report.activated and service else "")
                + f"; {report.seconds:.0f}s.")
        if every is None:
            return
        time.sleep(every * 3600)


def register_rule(
    rule: Annotated[str, typer.Argument(
        help="equal_weight, inverse_volatility or optimizer.")],
    registry: RegistryOpt = Path("models/registry"),
    name: Annotated[str | None, typer.Option(
        help="Name in the registry (default: the rule's, or opt-<objective>).")] = None,
    objective: Annotated[str, typer.Option(help="The optimizer's objective.")] =
        "min_variance",
    window: Annotated[int, typer.Option(help="Returns per window (inverse_volatility, "
                                             "optimizer).")] = 126,
    activate: Annotated[bool, typer.Option("--activate",
                                           help="Make it the active version.")] = False,
    service: Annotated[str | None, typer.Option(
        help="URL of a running service to switch to it (with --activate and --token).")]
        = None,
    token: Annotated[str | None, typer.Option(envvar="NEURALFOLIO_TOKEN",
                                              help="Admin token of --service.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Register a rule (1/N, inverse volatility or the exact optimizer) as a model version,
    so that a service answers with it: a baseline, or a stand-in while no network is good.

    Example: neuralfolio register-rule optimizer --objective min_cvar --window 250
    --registry models/registry --activate
    """
    from neuralfolio.serve import ModelRegistry
    from neuralfolio.serve.registry import RULES

    if rule not in RULES:
        raise ConfigError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}.")
    spec: dict = {"rule": rule}
    if "window" in RULES[rule]:
        spec["window"] = window
    if "objective" in RULES[rule]:
        spec["objective"] = objective
    name = name or (f"opt-{objective}".replace("_", "-") if rule == "optimizer"
                    else rule.replace("_", "-"))
    reg = ModelRegistry(registry)
    record = reg.register_rule(spec, name)
    if activate:
        reg.activate(record.name, record.version)
        if service:
            _activate_remote(service, token, record.label)
    if json_out:
        sys.stdout.write(json.dumps({"model": record.label, "rule": spec,
                                     "activated": activate}) + "\n")
    else:
        console.print(f"registered {record.label} ({json.dumps(spec)})"
                      + (" [green]activated[/]" if activate else "")
                      + (f" on {service}" if activate and service else ""))


def _activate_remote(service: str, token: str | None, label: str) -> None:
    import httpx

    name, version = label.rsplit(":", 1)
    try:
        r = httpx.post(f"{service.rstrip('/')}/v1/models/{name}/activate",
                       json={"version": int(version)},
                       headers={"Authorization": f"Bearer {token or ''}"}, timeout=30)
    except httpx.HTTPError as exc:
        raise ConfigError(f"could not reach the service at {service}: {exc}; the candidate "
                          "is active in the registry and loads at the next start.") from None
    if r.status_code != 200:
        raise ConfigError(f"the service at {service} refused the activation "
                          f"({r.status_code}): {r.json().get('detail', r.text)}")


def audit(
    registry: RegistryOpt = Path("models/registry"),
    url: Annotated[str | None, typer.Option(
        help="SQLAlchemy URL of the audit log (default: the registry's sqlite file).")] = None,
    portfolio: Annotated[str | None, typer.Option(help="Only this portfolio.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model label.")] = None,
    fallback: Annotated[bool | None, typer.Option(
        "--fallback/--no-fallback", help="Only fallbacks / only network answers.")] = None,
    since: Annotated[str | None, typer.Option(help="ISO time, inclusive.")] = None,
    limit: Annotated[int, typer.Option(help="Newest decisions shown.")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """Query the decisions the service recorded (newest first).

    Example: neuralfolio audit --registry models/registry --fallback --limit 10
    """
    from datetime import datetime

    from neuralfolio.serve import AuditLog

    if url is None:
        path = Path(registry) / "audit.db"
        if not path.exists():
            raise DataError(f"no audit log at {path}; pass --url, or run the service on this "
                            "registry first.")
        url = f"sqlite:///{path.resolve()}"
    try:
        start = datetime.fromisoformat(since) if since else None
    except ValueError:
        raise ConfigError(f"--since {since!r} is not an ISO time, e.g. 2024-03-01T15:30:00."
                          ) from None
    log = AuditLog(url)
    try:
        rows = log.query(portfolio=portfolio, model=model, fallback=fallback, since=start,
                         limit=limit)
    finally:
        log.close()
    if json_out:
        sys.stdout.write(json.dumps(rows, default=str, indent=2) + "\n")
        return
    table = Table(title=f"Audit log: {len(rows)} newest decisions")
    for col in ("time", "portfolio", "model", "fallback", "latency µs", "weights", "input"):
        table.add_column(col, overflow="fold")
    for r in rows:
        w = ", ".join(f"{a} {x:.3f}" for a, x in zip(r["assets"], r["weights"], strict=True)
                      if abs(x) >= 0.005)
        table.add_row(str(r["time"])[:26], str(r["portfolio"] or "-"), r["model"],
                      "yes: " + str(r["reason"]) if r["fallback"] else "no",
                      f"{r['latency_us']:,.0f}", w, r["input_hash"][:12])
    console.print(table)


def replay(
    source: Annotated[str, typer.Argument(help="Data set name or CSV/Parquet path.")],
    url: Annotated[str, typer.Option(help="The running service.")] = "http://127.0.0.1:8000",
    start: Annotated[str | None, typer.Option(help="First date streamed as a tick.")] = None,
    speed: Annotated[float, typer.Option(help="Ticks per second (0: as fast as possible).")
                     ] = 5.0,
    limit: Annotated[int | None, typer.Option(help="Stop after this many ticks.")] = None,
    portfolio: Annotated[str, typer.Option(help="Portfolio id used on the service.")
                         ] = "replay",
    show: Annotated[int, typer.Option(help="Largest weights shown.")] = 8,
) -> None:
    """Stream historical prices into a running service as ticks and show the live weights.

    Example: neuralfolio replay sp500 --start 2020-02-03 --speed 10 --limit 200
    """
    import httpx
    import numpy as np
    from rich.live import Live

    from neuralfolio.data import load_prices

    prices = load_prices(source)
    client = httpx.Client(base_url=url, timeout=30)
    try:
        info = client.get("/v1/models").json()
    except httpx.HTTPError as exc:
        raise ConfigError(f"no service at {url} ({exc}); start one with `neuralfolio serve`."
                          ) from None
    active = info.get("active")
    if not active:
        raise ConfigError(f"the service at {url} has no active model; run `neuralfolio "
                          "retrain` first.")
    if not active["asset_agnostic"]:
        prices = prices[active["assets"]]
    later = prices.index[prices.index >= start] if start is not None else prices.index
    if start is not None and not len(later):
        raise DataError(f"--start {start} is after the data's last date "
                        f"{prices.index[-1].date()}.")
    first = (active["history_needed"] if start is None
             else int(prices.index.searchsorted(later[0])))
    if first < active["history_needed"]:
        raise DataError(f"start {prices.index[first].date()} leaves {first} price rows "
                        f"before it; the service needs {active['history_needed']}.")
    client.delete(f"/v1/portfolios/{portfolio}")
    head = prices.iloc[first - active["history_needed"]: first]
    r = client.post("/v1/portfolios", json={
        "id": portfolio, "assets": list(prices.columns), "prices": head.to_numpy().tolist(),
        "timestamps": [d.isoformat() for d in head.index]})
    if r.status_code != 201:
        raise ConfigError(f"the service refused the portfolio ({r.status_code}): "
                          f"{r.json().get('detail')}")
    rows = prices.iloc[first:] if limit is None else prices.iloc[first: first + limit]
    latencies: list[float] = []
    fallbacks = jumps = 0

    def render(date, answer) -> Table:
        t = Table(title=f"replay {source} -> {url}  {date.date()}  model {answer['model']}",
                  min_width=72)
        t.add_column("asset")
        t.add_column("weight", justify="right")
        top = sorted(answer["weights"].items(), key=lambda kv: -abs(kv[1]))[:show]
        for a, w in top:
            t.add_row(a, f"{w:.3f}")
        lat = np.array(latencies)
        t.caption = (f"{len(lat)} ticks; server latency p50 {np.percentile(lat, 50):,.0f} µs, "
                     f"p99 {np.percentile(lat, 99):,.0f} µs; fallbacks {fallbacks}; "
                     f"jumps confirmed {jumps}")
        return t

    try:
        with Live(console=console, refresh_per_second=8) as live:
            for date, row in rows.iterrows():
                t0 = time.perf_counter()
                tick = {"timestamp": date.isoformat(), "prices": row.to_dict()}
                r = client.post(f"/v1/portfolios/{portfolio}/ticks", json=tick)
                if r.status_code == 409 and "jumps" in r.json():
                    # Recorded history: its jumps are real moves, taken as confirmed.
                    r = client.post(f"/v1/portfolios/{portfolio}/ticks",
                                    json={**tick, "confirm_jump": True})
                    jumps += r.status_code == 200
                if r.status_code != 200:
                    raise ConfigError(f"tick {date.date()} refused ({r.status_code}): "
                                      f"{r.json().get('detail')}")
                answer = r.json()
                latencies.append(answer["latency_us"])
                fallbacks += answer["fallback"]
                live.update(render(date, answer))
                if speed > 0:
                    time.sleep(max(0.0, 1.0 / speed - (time.perf_counter() - t0)))
    finally:
        client.close()
