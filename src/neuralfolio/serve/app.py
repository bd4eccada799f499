"""The HTTP and WebSocket layer of the weights service (FastAPI).

``create_app(ServiceConfig(...))`` builds the application; ``neuralfolio serve`` runs it with
uvicorn. Every decision goes through :class:`~neuralfolio.serve.engine.Engine`; this module
maps requests to it and its :class:`~neuralfolio.serve.engine.InputError` to HTTP answers
(``{"detail": message}`` with the error's status; a refused price jump adds ``"jumps"``).

The jump guard (:func:`~neuralfolio.serve.engine.find_jumps`, set by ``ServiceConfig.jump_*``
and ``neuralfolio serve --jump-sd/--jump-mode``): a tick, or a stateless window, whose price
move is beyond ``jump_sd`` times the asset's recent volatility (or beyond the absolute bound)
is refused with 409 and a :class:`JumpRefusal` body, and nothing changes; in ``"flag"`` mode
it is accepted and answered with the last good weights (or the optimizer's), ``fallback``
true and the jump in ``flags`` / ``jumps``. ``"confirm_jump": true`` (or a list of assets)
in the request takes a real jump.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.websockets import WebSocketDisconnect

from neuralfolio.errors import ModelError
from neuralfolio.serve.engine import Engine, InputError, ServiceConfig

__all__ = ["create_app"]

_ASSETS = ["AAPL", "JPM", "XOM"]
_CONFIRM = Field(False, description="True, or the assets whose price jump is real: the jump "
                                    "guard lets their moves through (flagged as confirmed).")


class PortfolioIn(BaseModel):
    """A portfolio to hold: its assets and recent prices, oldest row first."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "desk-1", "assets": _ASSETS,
        "prices": [[187.2, 151.0, 104.3], [188.1, 150.2, 105.0], ["..."]],
        "timestamps": ["2024-03-01T21:00:00Z", "2024-03-04T21:00:00Z", "..."]}]})
    id: str | None = Field(None, description="Portfolio id; generated when missing.")
    assets: list[str] = Field(description="The active model's assets, in its order.")
    prices: list[list[float]] = Field(
        description="Price rows, oldest first, at least the model's and the optimizer's "
                    "window (see GET /v1/models).")
    timestamps: list[str | float] | None = Field(
        None, description="One ISO 8601 time or number per row, increasing.")


class TickIn(BaseModel):
    """The latest prices of a portfolio's assets."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "timestamp": "2024-03-05T21:00:00Z",
        "prices": {"AAPL": 189.3, "JPM": 152.4, "XOM": 104.9}}]})
    prices: dict[str, float] | list[float] = Field(
        description="Asset -> price, or a list in the portfolio's asset order.")
    timestamp: str | float | None = Field(
        None, description="ISO 8601 time or number, after the previous tick's.")
    confirm_jump: bool | list[str] = _CONFIRM


class WindowIn(BaseModel):
    """A full price window for one stateless decision."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "assets": _ASSETS, "prices": [[187.2, 151.0, 104.3], ["..."]]}]})
    assets: list[str]
    prices: list[list[float]] = Field(description="Price rows, oldest first.")
    confirm_jump: bool | list[str] = _CONFIRM


class ActivateIn(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"version": 3}]})
    version: int | None = Field(None, description="Version to activate; the latest if null.")


class JumpOut(BaseModel):
    """A price move beyond the jump guard's limit."""

    asset: str
    row: int | None = Field(None, description="Row of the request's prices (stateless "
                                              "windows); null for a tick.")
    previous: float = Field(description="The price before.")
    price: float
    ratio: float = Field(description="price / previous.")
    log_return: float
    vol: float = Field(description="The asset's robust daily volatility (log returns, at "
                                   "least the service's floor).")
    sds: float = Field(description="|log_return| / vol.")
    limit: float = Field(description="The |log return| above which a move is a jump.")
    confirmed: bool = Field(description="Confirmed by the request's confirm_jump.")


class JumpRefusal(BaseModel):
    """A refused price jump (409): nothing was changed."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "detail": "price jump refused: JPM 152.4 -> 7620 (x50, ...). Nothing was changed. If "
                  'the move is real, send it again with "confirm_jump": true (or ["JPM"]) ...',
        "jumps": [{"asset": "JPM", "previous": 152.4, "price": 7620.0, "ratio": 50.0,
                   "log_return": 3.912, "vol": 0.02, "sds": 195.6, "limit": 0.2,
                   "confirmed": False}]}]})
    detail: str = Field(description="The asset(s), the move, the limit and how to confirm.")
    jumps: list[JumpOut]


_JUMP_409 = {409: {"model": JumpRefusal, "description": (
    "Refused: a price jump beyond the guard's limit (body with `jumps`; resend with "
    "`confirm_jump` if it is real), or a conflict with the state (tick not after the last "
    "one, model for other assets, too few rows; body `detail` only).")}}


class WeightsOut(BaseModel):
    """Weights and how they were made."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "weights": {"AAPL": 0.31, "JPM": 0.22, "XOM": 0.47}, "model": "minvar:3",
        "fallback": False, "reason": None, "latency_us": 412.0, "portfolio": "desk-1",
        "timestamp": "2024-03-05T21:00:00+00:00"}]})
    weights: dict[str, float]
    model: str = Field(description="Model version that answered, or the fallback optimizer.")
    fallback: bool = Field(description="True when the network's answer was not used.")
    reason: str | None = Field(None, description="Why the fallback answered.")
    latency_us: float = Field(description="Server-side decision time, microseconds.")
    portfolio: str | None = None
    timestamp: str | None = None
    flags: list[str] = Field([], description='Notes on the inputs, e.g. "jump:JPM x50 (196 '
                                             'sd)" (flagged) or "... confirmed".')
    jumps: list[JumpOut] = Field([], description="The price jumps behind the flags.")


def get_engine(request: Request) -> Engine:
    """The application's engine (a FastAPI dependency)."""
    return request.app.state.engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def create_app(config: ServiceConfig, engine: Engine | None = None) -> FastAPI:
    """The service application.

    Parameters
    ----------
    config : ServiceConfig
    engine : Engine, optional
        An engine to use instead of building one from ``config`` (tests).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        app.state.engine.close()

    app = FastAPI(
        title="neuralfolio weights service",
        version="1",
        description="Portfolio weights from a trained network on every price tick, with "
                    "guarded output, an exact-optimizer fallback, hot model swaps and an "
                    "audit trail.",
        lifespan=lifespan,
    )
    app.state.engine = engine or Engine(config)

    def admin(authorization: str | None = Header(None)) -> None:
        token = config.token
        if not token:
            raise HTTPException(403, "admin routes are disabled: start the service with a "
                                     "token (neuralfolio serve --token ...).")
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong admin token; send "
                                     "'Authorization: Bearer <token>'.",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": exc.message, **exc.extra}, status_code=exc.status)

    @app.exception_handler(ModelError)
    async def _model_error(request: Request, exc: ModelError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.middleware("http")
    async def _count(request: Request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        app.state.engine.metrics.requests.labels(route=path,
                                                 status=str(response.status_code)).inc()
        return response

    # ------------------------------------------------------------ portfolios
    @app.post("/v1/portfolios", status_code=201, tags=["portfolios"])
    def create_portfolio(body: PortfolioIn, engine: EngineDep
                         ) -> dict[str, Any]:
        """Hold a portfolio's rolling price window so that ticks carry new prices only."""
        return engine.create_portfolio(body.assets, body.prices, body.timestamps, body.id)

    @app.get("/v1/portfolios/{pid}", tags=["portfolios"])
    def get_portfolio(pid: str, engine: EngineDep) -> dict[str, Any]:
        """A portfolio's assets, history length, last tick and last weights."""
        return engine.describe(pid)

    @app.delete("/v1/portfolios/{pid}", status_code=204, tags=["portfolios"])
    def delete_portfolio(pid: str, engine: EngineDep) -> None:
        """Forget a portfolio and its state."""
        engine.delete_portfolio(pid)

    @app.post("/v1/portfolios/{pid}/ticks", tags=["portfolios"], responses=_JUMP_409)
    def tick(pid: str, body: TickIn, engine: EngineDep) -> WeightsOut:
        """Latest prices in, updated weights out (the portfolio's state is kept here).

        A price jump is refused (409, the state unchanged) or, in the service's flag mode,
        answered with the last good weights and flagged; ``confirm_jump`` takes it."""
        return WeightsOut(**engine.tick(pid, body.prices, body.timestamp,
                                        body.confirm_jump).to_dict())

    @app.websocket("/v1/portfolios/{pid}/stream")
    async def stream(websocket: WebSocket, pid: str) -> None:
        """Ticks in as JSON messages (the body of POST .../ticks), weights out, in order; a
        refused tick answers ``{"error": message, "status": code}`` (and ``"jumps"`` for a
        refused price jump) and the stream goes on."""
        engine: Engine = app.state.engine
        await websocket.accept()
        try:
            while True:
                text = await websocket.receive_text()
                try:
                    body = TickIn.model_validate(json.loads(text))
                    answer = await asyncio.to_thread(engine.tick, pid, body.prices,
                                                     body.timestamp, body.confirm_jump)
                    await websocket.send_json(answer.to_dict())
                except InputError as exc:
                    await websocket.send_json({"error": exc.message, "status": exc.status,
                                               **exc.extra})
                except (ValueError, TypeError) as exc:
                    await websocket.send_json({"error": f"not a tick: {exc}", "status": 422})
        except WebSocketDisconnect:
            return

    # ------------------------------------------------------------- stateless
    @app.post("/v1/weights", tags=["weights"], responses=_JUMP_409)
    def weights(body: WindowIn, engine: EngineDep) -> WeightsOut:
        """Weights for the last row of a full price window; nothing is kept.

        Every move in the rows the decision uses passes the jump guard (the service does
        not remember earlier confirmations): a jump is refused (409, ``jumps[].row`` names
        the rows) or flagged, unless ``confirm_jump`` takes it."""
        return WeightsOut(**engine.weights(body.assets, body.prices,
                                           body.confirm_jump).to_dict())

    # ---------------------------------------------------------------- models
    @app.get("/v1/models", tags=["models"])
    def models(engine: EngineDep) -> dict[str, Any]:
        """Registered model versions, the active one, and the price rows a decision needs."""
        active = engine.active
        return {
            "active": None if active is None else {
                "model": active.label, "assets": active.runtime.assets,
                "asset_agnostic": active.runtime.asset_agnostic,
                "history_needed": active.history_needed, "objective": active.objective},
            "models": [{"model": r.label, "name": r.name, "version": r.version,
                        "created": r.meta.get("created"), "active": active is not None
                        and r.label == active.label,
                        "metrics": r.meta.get("metrics", {})}
                       for r in engine.registry.list()],
        }

    @app.post("/v1/models/{name}/activate", tags=["models"], dependencies=[Depends(admin)])
    def activate(name: str, engine: EngineDep,
                 body: ActivateIn | None = None) -> dict[str, Any]:
        """Make a version active (admin token). In-flight requests finish on the version
        they started with; the next ones use the new one."""
        record = engine.activate(name, None if body is None else body.version)
        return {"active": record.label}

    # ------------------------------------------------------------ operations
    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    def readyz(engine: EngineDep) -> JSONResponse:
        """Ready when a model is active."""
        active = engine.active
        if active is None:
            return JSONResponse({"status": "no active model"}, status_code=503)
        return JSONResponse({"status": "ready", "model": active.label})

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    def metrics(engine: EngineDep) -> PlainTextResponse:
        """Prometheus text: requests, decision latency, fallbacks, active model, gap, price
        jumps (rejected, flagged, confirmed)."""
        return PlainTextResponse(generate_latest(engine.metrics.registry).decode(),
                                 media_type="text/plain; version=0.0.4")

    return app
