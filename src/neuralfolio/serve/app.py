"""The HTTP and WebSocket layer of the weights service (FastAPI).

``create_app(ServiceConfig(...))`` builds the application; ``neuralfolio serve`` runs it with
uvicorn. Every decision goes through :class:`~neuralfolio.serve.engine.Engine`; this module
maps requests to it and its errors to HTTP answers: ``{"detail": message, **extra}``
(:class:`ErrorOut`) with the :class:`~neuralfolio.serve.engine.InputError`'s status (a
refused price jump adds ``"jumps"``), 404 for a :class:`~neuralfolio.errors.ModelError`, 422
for a :class:`~neuralfolio.errors.ConfigError` or :class:`~neuralfolio.errors.DataError`
(e.g. an invalid model name), 503 for a :class:`~neuralfolio.guard.NoFallbackError`, a
:class:`~neuralfolio.errors.SolverError` or an audit log that cannot record. Every status
a route can answer is in the OpenAPI document, with its body's schema;
``tests/serve/test_schema_fuzz.py`` checks that with schemathesis.

The jump guard (:func:`~neuralfolio.serve.engine.find_jumps`, set by ``ServiceConfig.jump_*``
and ``neuralfolio serve --jump-sd/--jump-mode``): a tick, or a stateless window, whose price
move is beyond ``jump_sd`` times the asset's recent volatility (or beyond the absolute bound)
is refused with 409 and a :class:`JumpRefusal` body, and nothing changes; in ``"flag"`` mode
it is accepted and answered with the last good weights (or the optimizer's), ``fallback``
true and the jump in ``flags`` / ``jumps``. ``"confirm_jump": true`` (or a list of assets)
in the request takes a real jump.

The hot routes (``POST /v1/portfolios``, ``.../ticks``, ``/v1/weights`` and the WebSocket
stream) run on the event loop: the engine's work is short and CPU-bound, so a hop to a
worker thread costs more than it saves; a decision is answered once the engine's
``atick``/``aweights`` has it recorded in the audit log. Their bodies are parsed with
``orjson`` and validated by the pydantic models, and their answers are written with
``orjson``; FastAPI's dependency solving is skipped (:class:`_DirectRoute`) while the
OpenAPI document stays FastAPI's own.

Limits and malformed input, never a 500:

* a request body larger than ``ServiceConfig.max_body_bytes`` is refused with 413 before
  it is read (``content-length``) or as soon as the bytes received pass the limit (a
  chunked body): :class:`_LimitBody`, which never holds more than the limit;
* a body that is not JSON, is nested too deeply (orjson's limit: 1,024 levels), holds a
  lone UTF-16 surrogate or does not match its model is a 422 with FastAPI's list of errors
  (``detail``: a list, :class:`ValidationErrorOut`); a body that is not UTF-8 at all is a
  400. Error answers never echo more than a bounded excerpt of the input, and write
  ``NaN``/``Infinity`` inputs as strings;
* the WebSocket stream answers every message: weights, or ``{"error": message, "status":
  code}`` (see :func:`create_app`'s ``stream``) and goes on.

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
import logging
import math
import re
import time
import types
import typing
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import orjson
from fastapi import Depends, FastAPI, HTTPException, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from neuralfolio.errors import (
    ConfigError,
    DataError,
    ModelError,
    NeuralfolioError,
    SolverError,
)
from neuralfolio.guard import NoFallbackError
from neuralfolio.serve.audit import AuditUnavailable, AuditWriteError
from neuralfolio.serve.engine import Engine, InputError, ServiceConfig

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

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
    """A 409, nothing was changed: a refused price jump (with ``jumps``), or a conflict
    with the state (``detail`` only: a tick not after the last one, a model for other
    assets, too few rows held)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "detail": "price jump refused: JPM 152.4 -> 7620 (x50, ...). Nothing was changed. If "
                  'the move is real, send it again with "confirm_jump": true (or ["JPM"]) ...',
        "jumps": [{"asset": "JPM", "previous": 152.4, "price": 7620.0, "ratio": 50.0,
                   "log_return": 3.912, "vol": 0.02, "sds": 195.6, "limit": 0.2,
                   "confirmed": False}]}]})
    detail: str = Field(description="The asset(s), the move, the limit and how to confirm; "
                                    "or the conflict.")
    jumps: list[JumpOut] = Field(None, description="The refused jumps (absent for a "
                                                   "conflict that is no jump).")


class ErrorOut(BaseModel):
    """A refused request: ``detail`` says what is wrong and what to do; some errors add
    fields (e.g. ``jumps``)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "detail": "no portfolio 'desk-9'; create it with POST /v1/portfolios."}]})
    detail: str


class ValidationErrorItem(BaseModel):
    """One problem of a request body (FastAPI's and pydantic's format)."""

    model_config = ConfigDict(extra="allow")
    loc: list[str | int] = Field(description='Where: "body", then keys and indexes.')
    msg: str
    type: str = Field(description='e.g. "json_invalid", "missing", "float_type".')
    input: Any = Field(None, description="The value at fault (an excerpt of a large one).")
    ctx: dict[str, Any] | None = None


class ValidationErrorOut(BaseModel):
    """422: the body is not JSON or does not match its model (``detail`` is the list of
    problems, FastAPI's format), or the service refused a value of a well-formed request
    (``detail`` is a message naming the value and the fix)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"detail": [{"type": "json_invalid", "loc": ["body", 16], "msg": "JSON decode error",
                     "input": {}, "ctx": {"error": "unexpected end of data"}}]},
        {"detail": "tick has 2 prices for 3 assets ['AAPL', 'JPM', 'XOM']."}]})
    detail: str | list[ValidationErrorItem]


class WeightsOut(BaseModel):
    """Weights and how they were made."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "weights": {"AAPL": 0.31, "JPM": 0.22, "XOM": 0.47}, "model": "minvar:3",
        "fallback": False, "reason": None, "latency_us": 412.0, "portfolio": "desk-1",
        "timestamp": "2024-03-05T21:00:00+00:00", "decision_id": "9f1c2e7a4b0d4c1e",
        "recorded": True}]})
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
    decision_id: str | None = Field(
        None, description="The decision's id in the audit log: quote it to find the "
                          "decision there (its inputs' fingerprint, model and weights).")
    recorded: bool = Field(
        True, description="False only when the service is configured to answer decisions "
                          "it could not record (audit_on_failure='answer'); audit_error "
                          "says why. Otherwise an unrecorded decision is refused with 503.")
    audit_error: str | None = Field(
        None, description="Why the decision is not in the audit log (recorded false).")


class PortfolioOut(BaseModel):
    """A held portfolio."""

    id: str
    assets: list[str]
    history_rows: int = Field(description="Price rows held (at most 1,024).")
    ticks: int = Field(description="Ticks taken since its creation.")
    last_timestamp: str | None = None
    last_weights: dict[str, float] | None = None
    created: str | None = None


class ActiveModelOut(BaseModel):
    model: str
    assets: list[str] = Field(description="Its assets in order (empty: asset-agnostic).")
    asset_agnostic: bool
    kind: str = Field(description='"network" or "rule".')
    history_needed: int = Field(description="Price rows one decision needs.")
    objective: str


class ModelVersionOut(BaseModel):
    model: str
    name: str
    version: int
    created: str | None = None
    active: bool
    metrics: dict[str, Any] = {}


class ModelsOut(BaseModel):
    """The registry's versions and the active one."""

    active: ActiveModelOut | None
    models: list[ModelVersionOut]


class ActivatedOut(BaseModel):
    active: str = Field(description="The version now active, e.g. minvar:3.")


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    """Ready: a model is active and the audit log records decisions."""

    model_config = ConfigDict(extra="allow")
    status: Literal["ready"]
    model: str | None = None
    audit: dict[str, Any] | None = None


class NotReadyOut(BaseModel):
    """Not ready (503): ``reasons`` say why (no active model, audit log unavailable...)."""

    model_config = ConfigDict(extra="allow")
    status: Literal["not ready"]
    reasons: list[str]
    model: str | None = None
    audit: dict[str, Any] | None = None


_OUT_FIELDS = frozenset(WeightsOut.model_fields)
STAGE_BUCKETS = (1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3,
                 1e-2, 2e-2, 5e-2, 0.1)
"""Buckets (seconds) of ``neuralfolio_decision_stage_seconds``."""


# ------------------------------------------------------------- documented answers
def _answer(model: Any, description: str) -> dict[str, Any]:
    return {"model": model, "description": description}


_E400 = _answer(ErrorOut, "The body cannot be decoded at all (it is not UTF-8 text).")
_E401 = _answer(ErrorOut, "Missing or wrong admin token: send 'Authorization: Bearer "
                          "<token>'.")
_E403 = _answer(ErrorOut, "Admin routes are disabled: the service runs without a token "
                          "(neuralfolio serve --token ...).")
_E413 = _answer(ErrorOut, "The request body is larger than the service's limit "
                          "(--max-body-bytes).")
_E422 = _answer(ValidationErrorOut, "The body is not JSON or does not match its model "
                                    "(`detail`: a list of problems), or a value is refused "
                                    "(`detail`: a message).")
_E503 = _answer(ErrorOut, "No model is active, the decision could not be recorded in the "
                          "audit log (or its queue is full), or neither the model nor its "
                          "fallback could decide; `detail` says which.")
_JUMP_409 = _answer(JumpRefusal, (
    "Refused: a price jump beyond the guard's limit (JumpRefusal, with `jumps`; resend with "
    "`confirm_jump` if it is real), or a conflict with the state (tick not after the last "
    "one, model for other assets, too few rows held; `detail` only). Nothing was changed."))


def _responses(*, validated: bool = True,
               **answers: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route: ``e404=...`` -> ``{404: ...}``; every route may answer
    413 (a body over the limit, whatever the route), and one with parameters or a body
    (``validated``) 422."""
    out: dict[int | str, dict[str, Any]] = {413: _E413}
    if validated:
        out[422] = _E422
    out.update({int(k[1:]): v for k, v in answers.items()})
    return dict(sorted(out.items()))


# ------------------------------------------------------------------------------ fast JSON
def _default(value: Any) -> Any:
    """What orjson cannot write by itself: numpy scalars and arrays."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(content: Any) -> bytes:
    """``content`` as compact UTF-8 JSON (orjson; numpy values as numbers or lists)."""
    return orjson.dumps(content, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)


_EXCERPT_DEPTH, _EXCERPT_ITEMS, _EXCERPT_TEXT = 8, 50, 500
"""Bounds of what an error answer echoes of an input: nesting, items and characters."""


def _text(value: str) -> str:
    """``value`` as valid UTF-8 text (a lone surrogate becomes U+FFFD), cut short."""
    if len(value) > _EXCERPT_TEXT:
        value = value[:_EXCERPT_TEXT] + "..."
    if not value.isascii():
        value = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return value


def jsonable(value: Any, depth: int = 0) -> Any:
    """An excerpt of ``value`` that any JSON encoder writes: text made valid UTF-8 and cut
    at 500 characters, containers at 50 items and 8 levels, non-finite floats as
    ``"NaN"``/``"Infinity"``, integers beyond 64 bits and other objects as text."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if -(2 ** 63) <= value < 2 ** 64:
            return int(value)
        return f"<an integer of {value.bit_length()} bits>"
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, bytes | bytearray):
        return _text(bytes(value[:_EXCERPT_TEXT * 4]).decode("utf-8", "replace"))
    if depth >= _EXCERPT_DEPTH:
        return "..."
    if isinstance(value, dict):
        items = list(value.items())
        out = {_text(str(k)): jsonable(v, depth + 1) for k, v in items[:_EXCERPT_ITEMS]}
        if len(items) > _EXCERPT_ITEMS:
            out["..."] = f"{len(items) - _EXCERPT_ITEMS} more"
        return out
    if isinstance(value, list | tuple):
        out = [jsonable(v, depth + 1) for v in value[:_EXCERPT_ITEMS]]
        if len(value) > _EXCERPT_ITEMS:
            out.append(f"... {len(value) - _EXCERPT_ITEMS} more")
        return out
    if hasattr(value, "tolist"):
        return jsonable(value.tolist(), depth)
    try:
        return _text(str(value))
    except Exception:  # a __str__ that fails: name the type only
        return f"<{type(value).__name__}>"


def dumps_safe(content: Any) -> bytes:
    """:func:`dumps`, or, where ``content`` holds what no JSON can carry (a lone surrogate,
    a huge integer, nesting beyond orjson's limit), :func:`dumps` of :func:`jsonable`."""
    try:
        return dumps(content)
    except (TypeError, ValueError):  # orjson.JSONEncodeError is a TypeError
        return dumps(jsonable(content))


class FastJSONResponse(JSONResponse):
    """A :class:`~fastapi.responses.JSONResponse` written with orjson (see
    :func:`dumps_safe`)."""

    def render(self, content: Any) -> bytes:
        return dumps_safe(content)


def weights_payload(answer: Any) -> dict[str, Any]:
    """The JSON object of a :class:`~neuralfolio.serve.engine.WeightsAnswer`: its
    ``to_dict()`` less any key :class:`WeightsOut` does not declare."""
    return {k: v for k, v in answer.to_dict().items() if k in _OUT_FIELDS}


def error_answer(exc: BaseException) -> tuple[int, dict[str, Any]] | None:
    """The status and JSON body of an error with a message for the client, or None for an
    unexpected one (a bug: 500).

    :class:`~neuralfolio.serve.engine.InputError`: its status, ``{"detail": message,
    **extra}``; :class:`~neuralfolio.errors.ModelError`: 404 (no such model or version);
    :class:`~neuralfolio.errors.ConfigError` and :class:`~neuralfolio.errors.DataError`:
    422 (an invalid name or value); :class:`~neuralfolio.guard.NoFallbackError`,
    :class:`~neuralfolio.errors.SolverError` and the audit log's
    :class:`~neuralfolio.serve.audit.AuditUnavailable` /
    :class:`~neuralfolio.serve.audit.AuditWriteError`: 503 (no weights could be given or
    recorded); any other :class:`~neuralfolio.errors.NeuralfolioError`: 422.
    """
    if isinstance(exc, InputError):
        return exc.status, {"detail": exc.message, **exc.extra}
    if isinstance(exc, ModelError):
        status = 404
    elif isinstance(exc, NoFallbackError | SolverError | AuditUnavailable | AuditWriteError):
        status = 503
    elif isinstance(exc, ConfigError | DataError | NeuralfolioError):
        status = 422
    else:
        return None
    return status, {"detail": str(exc)}


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


def _lone_surrogate(data: Any) -> str | None:
    """The first string (key or value) of parsed JSON ``data`` that holds a lone UTF-16
    surrogate (no UTF-8 text can carry it), or None."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


_LONE_ESCAPE = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
                          r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}")
"""A ``\\uXXXX`` escape of a lone surrogate in JSON text (to point at it)."""


def loads(data: bytes | str) -> Any:
    """Parse JSON with orjson; what orjson refuses is parsed again by :mod:`json`, which
    also takes ``NaN`` and ``Infinity`` (the engine refuses them with a clear message).

    Raises
    ------
    json.JSONDecodeError
        Malformed JSON, nesting deeper than 1,024 levels (orjson's limit; :mod:`json` would
        raise RecursionError), an integer too long to convert, or a string holding a lone
        UTF-16 surrogate (``"\\ud800"``), which no answer or audit record could carry.
    UnicodeDecodeError
        Bytes that are no text in any of JSON's encodings (UTF-8, -16, -32).
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as first:
        try:
            value = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise
        except (RecursionError, ValueError, TypeError, MemoryError):
            raise first from None  # orjson's reason: too deep, number out of range...
        bad = _lone_surrogate(value)
        if bad is not None:
            text = data if isinstance(data, str) else data.decode("utf-8", "replace")
            found = _LONE_ESCAPE.search(text)
            raise json.JSONDecodeError(
                f"string {bad[:_EXCERPT_TEXT]!a} holds a lone UTF-16 surrogate (an "
                "escape such as \\ud800 without its pair); send valid Unicode text", text,
                found.start() if found else 0) from None
        return value


def parse_body(model: type[BaseModel], body: bytes | str, content_type: str | None, *,
               optional: bool = False) -> BaseModel | None:
    """A request body validated by ``model``, or FastAPI's own 422 error.

    Parameters
    ----------
    model : pydantic model class
    body : bytes or str
        The request's body (a WebSocket message's text).
    content_type : str or None
        Its ``content-type`` header: a body that is not declared JSON is validated as
        bytes (and refused), as FastAPI does.
    optional : bool
        An empty body, or JSON ``null``, is None (instead of a ``missing`` error).

    Raises
    ------
    RequestValidationError
        Empty body (``missing``), malformed or too deeply nested JSON (``json_invalid`` at
        the error's position) or a mismatch with the model (pydantic's errors under
        ``"body"``).
    HTTPException
        400 when the body cannot be decoded at all (not text in UTF-8, -16 or -32).
    """
    if not body:
        if optional:
            return None
        raise RequestValidationError([{"type": "missing", "loc": ("body",),
                                       "msg": "Field required", "input": None}])
    data: Any = body
    if _is_json(content_type):
        try:
            data = loads(body)
        except json.JSONDecodeError as exc:
            raise RequestValidationError([{"type": "json_invalid", "loc": ("body", exc.pos),
                                           "msg": "JSON decode error", "input": {},
                                           "ctx": {"error": exc.msg}}]) from None
        except UnicodeDecodeError as exc:  # not UTF-8 (nor UTF-16 or -32)
            raise HTTPException(400, "There was an error parsing the body: it is not UTF-8 "
                                     "text") from exc
        except RecursionError:  # nesting under orjson's limit but over Python's
            raise RequestValidationError([{"type": "json_invalid", "loc": ("body",),
                                           "msg": "JSON decode error", "input": {},
                                           "ctx": {"error": "nested too deeply"}}]) from None
    if data is None and optional:
        return None
    try:  # from_attributes as FastAPI validates bodies: the same errors (model_attributes_type)
        return model.model_validate(data, from_attributes=True)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)],
            body=data) from None
    except RecursionError:
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body",),
                                       "msg": "JSON decode error", "input": {},
                                       "ctx": {"error": "nested too deeply"}}]) from None


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """FastAPI's list of errors of ``exc``, as excerpts any JSON encoder writes
    (:func:`jsonable`)."""
    out = []
    for error in exc.errors():
        item = {k: jsonable(v) for k, v in error.items() if k not in ("input", "url")}
        if "input" in error:
            item["input"] = jsonable(error["input"])
        out.append(item)
    return out


def _body_model(kind: Any) -> tuple[type[BaseModel] | None, bool]:
    """The pydantic model of a parameter annotation ``Model`` or ``Model | None``, and
    whether it is optional; ``(None, False)`` for anything else."""
    optional = False
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        kind, optional = (rest[0], True) if len(rest) == 1 else (None, False)
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return kind, optional
    return None, False


class _DirectRoute(APIRoute):
    """A route whose endpoint is called with the path parameters and the body, parsed by
    :func:`parse_body`; FastAPI's dependency solving and response validation are skipped.

    The endpoint is an ``async def`` whose parameters are the path's (strings) and at most
    one body (annotated with a pydantic model, or ``Model | None = None`` for an optional
    one: an empty body or ``null`` is None), and it returns a :class:`Response`. The
    OpenAPI document is FastAPI's, built from the same signature and the route's
    ``response_model``/``responses``/``dependencies`` (which are documented, not run).
    ``create_app`` sets :attr:`observe_parse`, which is handed the seconds each parse
    took, and may set :attr:`guard`, awaited with the request before its body is read
    (e.g. the admin token check: a refused request's body is never parsed).
    """

    observe_parse: Callable[[float], None] = staticmethod(lambda seconds: None)
    guard: Callable[[Request], Awaitable[None]] | None = None

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        endpoint = self.endpoint
        hints = typing.get_type_hints(endpoint)
        body_name, body_model, optional = None, None, False
        for name in inspect.signature(endpoint).parameters:
            model, is_optional = _body_model(hints.get(name))
            if model is not None:
                body_name, body_model, optional = name, model, is_optional
        route = self

        async def handler(request: Request) -> Response:
            if route.guard is not None:
                await route.guard(request)
            kwargs = dict(request.path_params)
            if body_model is not None:
                body = await request.body()
                t0 = time.perf_counter()
                kwargs[body_name] = parse_body(body_model, body,
                                               request.headers.get("content-type"),
                                               optional=optional)
                route.observe_parse(time.perf_counter() - t0)
            return await endpoint(**kwargs)

        return handler


class _BodyTooLarge(HTTPException):
    """A request body over the service's limit (413), raised while it is received."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, body_limit_message(limit))


def body_limit_message(limit: int) -> str:
    return (f"request body is larger than the service's limit of {limit} bytes "
            "(--max-body-bytes); send fewer rows or assets")


class _LimitBody:
    """Pure ASGI middleware: HTTP request bodies of at most ``limit`` bytes.

    A ``content-length`` over the limit is answered 413 at once (the body is not read); a
    body without one (chunked) is counted as it arrives, and the message that passes the
    limit raises :class:`_BodyTooLarge` (an ``HTTPException``: the app answers 413) instead
    of being handed on, so no more than ``limit`` bytes are ever held. Should the error
    escape the app before an answer started, it is answered here.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def _refuse(self, send: Send) -> None:
        body = dumps({"detail": body_limit_message(self.limit)})
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    break  # the server refuses it; else the bytes are counted
                if declared > limit:
                    await self._refuse(send)
                    return
                break
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _BodyTooLarge:
            if started:
                raise
            await self._refuse(send)


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
_bearer = HTTPBearer(auto_error=False, description="The service's admin token "
                                                   "(neuralfolio serve --token).")


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
                    "audit trail. Every refusal is JSON with a `detail` saying what is wrong "
                    "and what to do.",
        lifespan=lifespan,
    )
    app.state.engine = engine = engine or Engine(config)
    stages = stage_histogram(engine)
    stage_children: dict[str, Any] = {}
    limit = config.max_body_bytes

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

    def direct_post(path: str, *, guard: Callable[[Request], Awaitable[None]] | None = None,
                    **kwargs: Any) -> Callable[[Callable], Callable]:
        """``@app.post`` for a :class:`_DirectRoute` (added to the app's router itself, in
        the order of declaration); with a ``guard``, a route of its own that does not count
        its parse among the decision's stages."""
        cls = route_class if guard is None else type(
            "_GuardedRoute", (_DirectRoute,), {"guard": staticmethod(guard)})

        def add(endpoint: Callable) -> Callable:
            app.router.add_api_route(path, endpoint, methods=["POST"],
                                     route_class_override=cls, **kwargs)
            return endpoint
        return add

    def check_admin(credentials: HTTPAuthorizationCredentials | None) -> None:
        """The admin token: ``Authorization: Bearer <token>`` exactly (the scheme in any
        case); anything else is 401, and every admin route is 403 without a token."""
        token = config.token
        if not token:
            raise HTTPException(403, "admin routes are disabled: start the service with a "
                                     "token (neuralfolio serve --token ...).")
        given = "" if credentials is None else credentials.credentials
        if not hmac.compare_digest(given.encode("utf-8", "surrogatepass"),
                                   token.encode("utf-8", "surrogatepass")):
            raise HTTPException(401, "missing or wrong admin token; send "
                                     "'Authorization: Bearer <token>'.",
                                headers={"WWW-Authenticate": "Bearer"})

    async def admin(credentials: Annotated[HTTPAuthorizationCredentials | None,
                                           Depends(_bearer)]) -> None:
        """:func:`check_admin` as a dependency (documents the security scheme)."""
        check_admin(credentials)

    async def admin_guard(request: Request) -> None:
        check_admin(await _bearer(request))

    async def _known_error(request: Request, exc: Exception) -> Response:
        answer = error_answer(exc)
        if answer is None:  # not registered for other types
            raise exc
        status, body = answer
        return FastJSONResponse(body, status_code=status)

    for kind in (InputError, NeuralfolioError):
        app.add_exception_handler(kind, _known_error)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return FastJSONResponse({"detail": validation_errors(exc)}, status_code=422)

    # The outermost middleware is added last: every answer is counted, a refused body too.
    app.add_middleware(_LimitBody, limit=limit)
    app.add_middleware(_CountRequests, counter=engine.metrics.requests)

    # ------------------------------------------------------------ portfolios
    # The direct routes return their Response; the return annotations document the
    # answers in the OpenAPI document (response_model).
    @direct_post("/v1/portfolios", status_code=201, tags=["portfolios"], responses=_responses(
        e400=_E400, e409=_answer(ErrorOut, "A portfolio with this id exists."),
        e429=_answer(ErrorOut, "The service holds as many portfolios (or prices) as it may "
                               "(--max-portfolios, --max-held-values)."),
        e503=_answer(ErrorOut, "No model is active.")))
    async def create_portfolio(body: PortfolioIn) -> PortfolioOut:
        """Hold a portfolio's rolling price window so that ticks carry new prices only."""
        return FastJSONResponse(engine.create_portfolio(body.assets, body.prices,
                                                        body.timestamps, body.id),
                                status_code=201)

    _E404_PORTFOLIO = _answer(ErrorOut, "No such portfolio (never created, deleted or "
                                        "expired).")

    @app.get("/v1/portfolios/{pid}", tags=["portfolios"], response_model=None,
             responses=_responses(e200=_answer(PortfolioOut, "The portfolio."),
                                  e404=_E404_PORTFOLIO))
    async def get_portfolio(pid: str, engine: EngineDep) -> Response:
        """A portfolio's assets, history length, last tick and last weights."""
        return FastJSONResponse(engine.describe(pid))

    @app.delete("/v1/portfolios/{pid}", status_code=204, tags=["portfolios"],
                responses=_responses(e404=_E404_PORTFOLIO))
    async def delete_portfolio(pid: str, engine: EngineDep) -> None:
        """Forget a portfolio and its state."""
        engine.delete_portfolio(pid)

    _DECISION = {"e400": _E400, "e409": _JUMP_409, "e503": _E503}

    @direct_post("/v1/portfolios/{pid}/ticks", tags=["portfolios"],
                 responses=_responses(**_DECISION, e404=_E404_PORTFOLIO))
    async def tick(pid: str, body: TickIn) -> WeightsOut:
        """Latest prices in, updated weights out (the portfolio's state is kept here).

        A price jump is refused (409, the state unchanged) or, in the service's flag mode,
        answered with the last good weights and flagged; ``confirm_jump`` takes it. The
        answer comes once the decision is in the audit log (``decision_id``)."""
        return weights_response(await engine.atick(pid, body.prices, body.timestamp,
                                                   body.confirm_jump))

    def stream_error(status: int, message: str, **extra: Any) -> bytes:
        return dumps_safe({"error": message, "status": status, **extra})

    async def stream_reply(pid: str, text: str | None, data: bytes | None) -> bytes:
        """The answer to one WebSocket message (never raises but for a bug)."""
        if text is None:
            size = len(data or b"")
        else:
            size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        if size > limit:
            return stream_error(413, f"message is larger than the service's limit of {limit} "
                                     "bytes (--max-body-bytes); send fewer assets")
        if text is None:
            return stream_error(422, "send ticks as text frames (JSON); this was a binary "
                                     "frame")
        try:
            t0 = time.perf_counter()
            body = parse_body(TickIn, text, "application/json")
            observe("parse", time.perf_counter() - t0)
            answer = await engine.atick(pid, body.prices, body.timestamp, body.confirm_jump)
            return answer_bytes(answer)
        except RequestValidationError as exc:
            errors = validation_errors(exc)
            summary = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'][1:]) or 'message'}: {e['msg']}"
                + (f" ({e['ctx']['error']})" if isinstance(e.get("ctx"), dict)
                   and "error" in e["ctx"] else "") for e in errors[:5])
            return stream_error(422, f"not a tick: {summary}", errors=errors)
        except HTTPException as exc:  # a message that is no text at all
            return stream_error(exc.status_code, str(exc.detail))
        except Exception as exc:
            known = error_answer(exc)
            if known is None:
                logger.exception("tick of portfolio %r on the stream failed", pid)
                return stream_error(500, f"internal error ({type(exc).__name__}); the tick "
                                         "may not have been taken: GET the portfolio to "
                                         "check, and see the service's log")
            status, fields = known
            return stream_error(status, fields.pop("detail"), **fields)

    @app.websocket("/v1/portfolios/{pid}/stream")
    async def stream(websocket: WebSocket, pid: str) -> None:
        """Ticks in as JSON text messages (the body of POST .../ticks), weights out, in
        order. Every message is answered and the stream goes on: a refused tick answers
        ``{"error": message, "status": code}`` (and ``"jumps"`` for a refused price jump,
        ``"errors"``, FastAPI's list, for a message that is no tick), a binary frame 422,
        a message over ``--max-body-bytes`` 413."""
        await websocket.accept()
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message["type"] != "websocket.receive":
                continue
            reply = await stream_reply(pid, message.get("text"), message.get("bytes"))
            try:
                await websocket.send_text(reply.decode())
            except WebSocketDisconnect:
                return

    # ------------------------------------------------------------- stateless
    @direct_post("/v1/weights", tags=["weights"], responses=_responses(**_DECISION))
    async def weights(body: WindowIn) -> WeightsOut:
        """Weights for the last row of a full price window; nothing is kept.

        Every move in the rows the decision uses passes the jump guard (the service does
        not remember earlier confirmations): a jump is refused (409, ``jumps[].row`` names
        the rows) or flagged, unless ``confirm_jump`` takes it."""
        return weights_response(await engine.aweights(body.assets, body.prices,
                                                      body.confirm_jump))

    # ---------------------------------------------------------------- models
    @app.get("/v1/models", tags=["models"], response_model=None, responses=_responses(
        validated=False, e200=_answer(ModelsOut, "The registry's versions and the active one."),
        e404=_answer(ErrorOut, "A registered version is damaged (its manifest cannot be "
                               "read); `detail` names it.")))
    def models(engine: EngineDep) -> Response:
        """Registered model versions, the active one, and the price rows a decision needs."""
        active = engine.active
        return FastJSONResponse({
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
        })

    @direct_post("/v1/models/{name}/activate", tags=["models"], guard=admin_guard,
                 dependencies=[Depends(admin)], responses=_responses(
                     e400=_E400, e401=_E401, e403=_E403,
                     e404=_answer(ErrorOut, "No such model name or version."),
                     e409=_answer(ErrorOut, "The version cannot be activated now (the "
                                            "message says why); the active one is "
                                            "unchanged."),
                     e422=_E422 | {"description": "An invalid model name, a version that "
                                                  "does not run, or a body that does not "
                                                  "match (`detail`: a message or a list)."}))
    async def activate(name: str, body: ActivateIn | None = None) -> ActivatedOut:
        """Make a version active (admin token, checked before the body is read). In-flight
        requests finish on the version they started with; the next ones use the new one."""
        # In a worker thread: activation fsyncs the registry (tens of ms on a disk busy
        # with the audit log's writes), which on the event loop would stall every request
        # meanwhile; the swap itself is one assignment, so requests never see half of it.
        record = await run_in_threadpool(engine.activate, name,
                                         None if body is None else body.version)
        return FastJSONResponse({"active": record.label})

    # ------------------------------------------------------------ operations
    @app.get("/healthz", tags=["operations"], responses=_responses(validated=False))
    async def healthz() -> HealthOut:
        """The process is up."""
        return HealthOut(status="ok")

    @app.get("/readyz", tags=["operations"], response_model=None, responses=_responses(
        validated=False,
        e200=_answer(ReadyOut, "Ready: a model is active and the audit log records."),
        e503=_answer(NotReadyOut, "Not ready; `reasons` say why.")))
    async def readyz(engine: EngineDep) -> Response:
        """Ready when a model is active and decisions can be recorded
        (:meth:`~neuralfolio.serve.engine.Engine.health`); 503 with the reasons otherwise."""
        try:
            health = dict(engine.health())
        except Exception as exc:  # a readiness probe answers, whatever broke
            logger.exception("health check failed")
            health = {"ready": False, "reasons": [f"the health check failed "
                                                  f"({type(exc).__name__}: {exc})"]}
        ready = bool(health.pop("ready", False))
        if ready:
            health.pop("reasons", None)
            return FastJSONResponse({"status": "ready", **health})
        health.setdefault("reasons", ["not ready"])
        return FastJSONResponse({"status": "not ready", **health}, status_code=503)

    # The route's media type is text/plain: its JSON answer (413) is spelled out.
    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse, responses={
        200: {"description": "Prometheus text format (version 0.0.4)."},
        413: {"description": _E413["description"], "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/ErrorOut"}}}}})
    def metrics(engine: EngineDep) -> PlainTextResponse:
        """Prometheus text: requests, decision latency, fallbacks, active model, gap, price
        jumps (rejected, flagged, confirmed), audit log."""
        return PlainTextResponse(generate_latest(engine.metrics.registry).decode(),
                                 media_type="text/plain; version=0.0.4")

    return app
