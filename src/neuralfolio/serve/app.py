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

The hot routes (``POST /v1/portfolios``, ``.../ticks``, ``/v1/weights`` and the WebSocket
stream) run on the event loop: the engine's work is short and CPU-bound, so a hop to a
worker thread costs more than it saves. Their bodies are parsed with ``orjson`` and
validated by the pydantic models, and their answers are written with ``orjson``; FastAPI's
dependency solving is skipped (:class:`_DirectRoute`) while the OpenAPI document stays
FastAPI's own. Errors are answered as before: ``{"detail": message, **extra}`` with the
:class:`~neuralfolio.serve.engine.InputError`'s status, and FastAPI's 422 list for a body
that is not JSON or does not match its model.

``/metrics`` carries, besides the engine's metrics, the decision time by stage,
``neuralfolio_decision_stage_seconds{stage=...}``: ``parse`` (body to validated input) and
``serialize`` (answer to bytes), measured here, and the stages the engine reports on its
answer (``WeightsAnswer.stages``, e.g. features, forward, checks, audit).
"""

from __future__ import annotations

import email.message
import hmac
import inspect
import json
import time
import typing
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Header, HTTPException, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from prometheus_client import Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
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
    stages: dict[str, float] | None = Field(
        None, description="Server-side seconds per stage of the decision (e.g. features, "
                          "forward, checks, audit), when the engine reports them.")


_OUT_FIELDS = frozenset(WeightsOut.model_fields)
STAGE_BUCKETS = (1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3,
                 1e-2, 2e-2, 5e-2, 0.1)
"""Buckets (seconds) of ``neuralfolio_decision_stage_seconds``."""


# ------------------------------------------------------------------------------ fast JSON
def _default(value: Any) -> Any:
    """What orjson cannot write by itself: numpy scalars and arrays."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(content: Any) -> bytes:
    """``content`` as compact UTF-8 JSON (orjson; numpy values as numbers or lists)."""
    return orjson.dumps(content, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)


class FastJSONResponse(JSONResponse):
    """A :class:`~fastapi.responses.JSONResponse` written with orjson."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


def weights_payload(answer: Any) -> dict[str, Any]:
    """The JSON object of a :class:`~neuralfolio.serve.engine.WeightsAnswer`: its
    ``to_dict()`` less any key :class:`WeightsOut` does not declare."""
    return {k: v for k, v in answer.to_dict().items() if k in _OUT_FIELDS}


def _is_json(content_type: str | None) -> bool:
    """Whether a request's content type is JSON (FastAPI's rule: application/json or
    application/*+json; no content type is not JSON)."""
    if not content_type:
        return False
    if content_type == "application/json" or content_type.startswith("application/json;"):
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json"))


def loads(data: bytes | str) -> Any:
    """Parse JSON with orjson; what orjson refuses is parsed again by :mod:`json`, which
    also takes ``NaN`` and ``Infinity`` (the engine refuses them with a clear message) and
    raises its usual :class:`json.JSONDecodeError` otherwise."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def parse_body(model: type[BaseModel], body: bytes, content_type: str | None) -> BaseModel:
    """A request body validated by ``model``, or FastAPI's own 422 error.

    Parameters
    ----------
    model : pydantic model class
    body : bytes
        The request's body.
    content_type : str or None
        Its ``content-type`` header: a body that is not declared JSON is validated as
        bytes (and refused), as FastAPI does.

    Raises
    ------
    RequestValidationError
        Empty body (``missing``), malformed JSON (``json_invalid`` at the error's
        position) or a mismatch with the model (pydantic's errors under ``"body"``).
    HTTPException
        400 when the body cannot be decoded at all (e.g. not UTF-8).
    """
    if not body:
        raise RequestValidationError([{"type": "missing", "loc": ("body",),
                                       "msg": "Field required", "input": None}])
    data: Any = body
    if _is_json(content_type):
        try:
            data = loads(body)
        except json.JSONDecodeError as exc:
            raise RequestValidationError([{"type": "json_invalid", "loc": ("body", exc.pos),
                                           "msg": "JSON decode error", "input": {},
                                           "ctx": {"error": exc.msg}}], body=exc.doc) from exc
        except ValueError as exc:  # e.g. not UTF-8
            raise HTTPException(400, "There was an error parsing the body") from exc
    try:  # from_attributes as FastAPI validates bodies: the same errors (model_attributes_type)
        return model.model_validate(data, from_attributes=True)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)],
            body=data) from None


class _DirectRoute(APIRoute):
    """A route whose endpoint is called with the path parameters and the body, parsed by
    :func:`parse_body`; FastAPI's dependency solving and response validation are skipped.

    The endpoint is an ``async def`` whose parameters are the path's (strings) and at most
    one body (annotated with a pydantic model), and it returns a :class:`Response`. The
    OpenAPI document is FastAPI's, built from the same signature and the route's
    ``response_model``/``responses``. ``create_app`` sets :attr:`observe_parse`, which is
    handed the seconds each parse took.
    """

    observe_parse: Callable[[float], None] = staticmethod(lambda seconds: None)

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        endpoint = self.endpoint
        hints = typing.get_type_hints(endpoint)
        body_name, body_model = None, None
        for name in inspect.signature(endpoint).parameters:
            kind = hints.get(name)
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                body_name, body_model = name, kind
        route = self

        async def handler(request: Request) -> Response:
            kwargs = dict(request.path_params)
            if body_model is not None:
                body = await request.body()
                t0 = time.perf_counter()
                kwargs[body_name] = parse_body(body_model, body,
                                               request.headers.get("content-type"))
                route.observe_parse(time.perf_counter() - t0)
            return await endpoint(**kwargs)

        return handler


class _CountRequests:
    """Pure ASGI middleware: counts every HTTP answer by route template and status in
    ``neuralfolio_requests_total`` (an exception that escapes the app counts as 500)."""

    def __init__(self, app: ASGIApp, counter: Any) -> None:
        self.app, self.counter = app, counter
        self._children: dict[tuple[str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            child = self._children.get((path, status))
            if child is None:
                child = self._children[(path, status)] = self.counter.labels(
                    route=path, status=str(status))
            child.inc()


def get_engine(request: Request) -> Engine:
    """The application's engine (a FastAPI dependency)."""
    return request.app.state.engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def stage_histogram(engine: Engine) -> Histogram:
    """The engine's ``neuralfolio_decision_stage_seconds`` histogram (label ``stage``):
    ``engine.metrics.stages`` when the engine has one, else one made here, registered on
    ``engine.metrics.registry`` and kept as ``engine.metrics.stages`` (so that a second
    app on the same engine finds it)."""
    metrics = engine.metrics
    if not hasattr(metrics, "stages"):
        metrics.stages = Histogram(
            "neuralfolio_decision_stage_seconds",
            "Server-side time of a decision by stage: parse (body to validated input) and "
            "serialize (answer to bytes) in the HTTP layer, and the engine's own stages",
            ["stage"], buckets=STAGE_BUCKETS, registry=metrics.registry)
    return metrics.stages


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
    app.state.engine = engine = engine or Engine(config)
    stages = stage_histogram(engine)
    stage_children: dict[str, Any] = {}

    def observe(stage: str, seconds: float) -> None:
        child = stage_children.get(stage)
        if child is None:
            child = stage_children[stage] = stages.labels(stage=stage)
        child.observe(seconds)

    def answer_bytes(answer: Any) -> bytes:
        """The answer's JSON; observes ``serialize`` and the engine's own stages."""
        t0 = time.perf_counter()
        data = dumps(weights_payload(answer))
        observe("serialize", time.perf_counter() - t0)
        for stage, seconds in (getattr(answer, "stages", None) or {}).items():
            observe(stage, seconds)
        return data

    def weights_response(answer: Any) -> Response:
        return Response(answer_bytes(answer), media_type="application/json")

    route_class = type("_AppRoute", (_DirectRoute,), {
        "observe_parse": staticmethod(lambda seconds: observe("parse", seconds))})

    def direct_post(path: str, **kwargs: Any) -> Callable[[Callable], Callable]:
        """``@app.post`` for a :class:`_DirectRoute` (added to the app's router itself, in
        the order of declaration)."""
        def add(endpoint: Callable) -> Callable:
            app.router.add_api_route(path, endpoint, methods=["POST"],
                                     route_class_override=route_class, **kwargs)
            return endpoint
        return add

    async def admin(authorization: str | None = Header(None)) -> None:
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
        return FastJSONResponse({"detail": exc.message, **exc.extra}, status_code=exc.status)

    @app.exception_handler(ModelError)
    async def _model_error(request: Request, exc: ModelError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    app.add_middleware(_CountRequests, counter=engine.metrics.requests)

    # ------------------------------------------------------------ portfolios
    # The direct routes return their Response; the return annotations document the
    # answers in the OpenAPI document (response_model).
    @direct_post("/v1/portfolios", status_code=201, tags=["portfolios"])
    async def create_portfolio(body: PortfolioIn) -> dict[str, Any]:
        """Hold a portfolio's rolling price window so that ticks carry new prices only."""
        return FastJSONResponse(engine.create_portfolio(body.assets, body.prices,
                                                        body.timestamps, body.id),
                                status_code=201)

    @app.get("/v1/portfolios/{pid}", tags=["portfolios"])
    async def get_portfolio(pid: str, engine: EngineDep) -> dict[str, Any]:
        """A portfolio's assets, history length, last tick and last weights."""
        return engine.describe(pid)

    @app.delete("/v1/portfolios/{pid}", status_code=204, tags=["portfolios"])
    async def delete_portfolio(pid: str, engine: EngineDep) -> None:
        """Forget a portfolio and its state."""
        engine.delete_portfolio(pid)

    @direct_post("/v1/portfolios/{pid}/ticks", tags=["portfolios"], responses=_JUMP_409)
    async def tick(pid: str, body: TickIn) -> WeightsOut:
        """Latest prices in, updated weights out (the portfolio's state is kept here).

        A price jump is refused (409, the state unchanged) or, in the service's flag mode,
        answered with the last good weights and flagged; ``confirm_jump`` takes it."""
        return weights_response(engine.tick(pid, body.prices, body.timestamp,
                                            body.confirm_jump))

    @app.websocket("/v1/portfolios/{pid}/stream")
    async def stream(websocket: WebSocket, pid: str) -> None:
        """Ticks in as JSON messages (the body of POST .../ticks), weights out, in order; a
        refused tick answers ``{"error": message, "status": code}`` (and ``"jumps"`` for a
        refused price jump) and the stream goes on."""
        await websocket.accept()
        try:
            while True:
                text = await websocket.receive_text()
                try:
                    t0 = time.perf_counter()
                    body = TickIn.model_validate(loads(text))
                    observe("parse", time.perf_counter() - t0)
                    data = answer_bytes(engine.tick(pid, body.prices, body.timestamp,
                                                    body.confirm_jump))
                except InputError as exc:
                    data = dumps({"error": exc.message, "status": exc.status, **exc.extra})
                except (ValueError, TypeError) as exc:
                    data = dumps({"error": f"not a tick: {exc}", "status": 422})
                await websocket.send_text(data.decode())
        except WebSocketDisconnect:
            return

    # ------------------------------------------------------------- stateless
    @direct_post("/v1/weights", tags=["weights"], responses=_JUMP_409)
    async def weights(body: WindowIn) -> WeightsOut:
        """Weights for the last row of a full price window; nothing is kept.

        Every move in the rows the decision uses passes the jump guard (the service does
        not remember earlier confirmations): a jump is refused (409, ``jumps[].row`` names
        the rows) or flagged, unless ``confirm_jump`` takes it."""
        return weights_response(engine.weights(body.assets, body.prices, body.confirm_jump))

    # ---------------------------------------------------------------- models
    @app.get("/v1/models", tags=["models"])
    def models(engine: EngineDep) -> dict[str, Any]:
        """Registered model versions, the active one, and the price rows a decision needs."""
        active = engine.active
        return {
            "active": None if active is None else {
                "model": active.label, "assets": active.assets,
                "asset_agnostic": active.asset_agnostic,
                "kind": "rule" if active.runtime is None else "network",
                "history_needed": active.history_needed, "objective": active.objective},
            "models": [{"model": r.label, "name": r.name, "version": r.version,
                        "created": r.meta.get("created"), "active": active is not None
                        and r.label == active.label,
                        "metrics": r.meta.get("metrics", {})}
                       for r in engine.registry.list()],
        }

    @app.post("/v1/models/{name}/activate", tags=["models"], dependencies=[Depends(admin)])
    async def activate(name: str, engine: EngineDep,
                       body: ActivateIn | None = None) -> dict[str, Any]:
        """Make a version active (admin token). In-flight requests finish on the version
        they started with; the next ones use the new one."""
        # In a worker thread: activation fsyncs the registry (tens of ms on a disk busy
        # with the audit log's writes), which on the event loop would stall every request
        # meanwhile; the swap itself is one assignment, so requests never see half of it.
        record = await run_in_threadpool(engine.activate, name,
                                         None if body is None else body.version)
        return {"active": record.label}

    # ------------------------------------------------------------ operations
    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz(engine: EngineDep) -> JSONResponse:
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
