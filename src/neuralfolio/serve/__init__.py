"""Serving trained allocators: registry, decision engine, HTTP app, audit log.

* :class:`ModelRegistry` - versioned models on disk, atomic activation;
* :class:`Engine` - portfolio state, guardrails, fallback, amortization-gap monitor
  (:func:`find_jumps`: the price-jump guard);
* :func:`create_app` - the FastAPI application (``neuralfolio serve``);
* :class:`AuditLog` - every decision, appended to SQLite or any SQLAlchemy URL.
"""

from neuralfolio.serve.app import create_app
from neuralfolio.serve.audit import AuditLog, Decision, input_hash
from neuralfolio.serve.engine import (
    ActiveModel,
    Engine,
    InputError,
    ServiceConfig,
    WeightsAnswer,
    find_jumps,
)
from neuralfolio.serve.registry import ModelRecord, ModelRegistry

__all__ = [
    "ActiveModel",
    "AuditLog",
    "Decision",
    "Engine",
    "InputError",
    "ModelRecord",
    "ModelRegistry",
    "ServiceConfig",
    "WeightsAnswer",
    "create_app",
    "find_jumps",
    "input_hash",
]
