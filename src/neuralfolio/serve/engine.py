"""The service's decision engine: portfolio state, guardrails, fallback, gap monitor, audit.

Everything the HTTP layer (:mod:`neuralfolio.serve.app`) does goes through :class:`Engine`:

* the **active model** is one immutable :class:`ActiveModel` (runtime, label, checks); a
  request reads the reference once, so it is answered by one version even while
  :meth:`Engine.activate` swaps in another (the swap is one assignment);
* **inputs** are validated before anything changes (:class:`InputError` carries the HTTP
  status and a message that names the problem and the fix); a portfolio's state changes only
  after its tick passed every check;
* **price jumps** (:func:`find_jumps`): a move beyond a multiple of the asset's recent
  volatility, or beyond an absolute bound, is refused (409, nothing changes) or, in
  ``"flag"`` mode, accepted and answered with the last good weights (or the optimizer's),
  flagged; a client confirms a real jump with ``confirm_jump``;
* **outputs** are checked (finite, within the head's bounds, summing as promised); on a
  violation, on inputs far outside the training distribution, or while the amortization-gap
  alert is raised, the answer is the exact optimizer (or the last good weights), flagged;
* the **amortization-gap monitor** re-solves the optimizer for a sample of decisions on a
  background thread and keeps the rolling L1 and objective excess of the network's weights;
* every decision is appended to the **audit log**.

The engine decides nothing itself: each portfolio holds a
:class:`~neuralfolio.guard.GuardedStepper` of the active version's policy (a
:class:`~neuralfolio.policies.RuntimePolicy` or a rule, guarded, with
:class:`~neuralfolio.policies.OptimizerPolicy` as the fallback), stepped one tick at a time:
the same code that decides in :func:`~neuralfolio.backtest.walk_forward`. A portfolio's
stepper is started from its held prices at its first tick, after a model swap and after a
failed decision.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import itertools
import json
import logging
import math
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from neuralfolio.errors import ConfigError, ModelError
from neuralfolio.features import OOD_Z
from neuralfolio.guard import (
    GuardDecision,
    GuardedPolicy,
    GuardedStepper,
    InputRange,
    NoFallbackError,
    OutputPromise,
)
from neuralfolio.policies import OptimizerPolicy
from neuralfolio.risk import ledoit_wolf
from neuralfolio.scratch.runtime import NumpyAllocator
from neuralfolio.serve.audit import AuditLog, AuditUnavailable, Decision, LazyInputHash
from neuralfolio.serve.registry import ModelRecord, ModelRegistry

__all__ = ["ActiveModel", "Engine", "InputError", "ServiceConfig", "WeightsAnswer",
           "find_jumps"]

HISTORY_ROWS = 1024
"""Price rows kept per portfolio (enough for any model's and the optimizer's window)."""
ASSET_NAME_MAX = 128
"""Longest asset name taken."""
STALE_RTOL = 1e-10
"""An asset whose prices over a decision's rows span less than this fraction of their
level is stale (unchanged: a halted stock, a stale feed)."""
_ID = re.compile(r"[A-Za-z0-9_-]+")
logger = logging.getLogger(__name__)


def _show(text: str, limit: int = 64) -> str:
    """``repr(text)``, cut to ``limit`` characters (an error never echoes a huge input)."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


AUDIT_FAILURE_MODES = ("refuse", "answer")
"""What the service does with a decision it cannot record (see :class:`ServiceConfig`)."""
JUMP_MODES = ("reject", "flag", "off")
"""What the jump guard does with an unconfirmed jump (see :class:`ServiceConfig`)."""
_MAD_TO_SD = 1.4826
"""Median absolute deviation -> standard deviation, for normal returns."""


class InputError(Exception):
    """A request the service refuses; ``status`` is the HTTP status to answer with, ``extra``
    more fields of the answer's body (e.g. ``{"jumps": [...]}``)."""

    def __init__(self, status: int, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra or {}


@dataclass
class ServiceConfig:
    """Settings of a running service.

    Parameters
    ----------
    registry : path
        Model registry directory (:class:`~neuralfolio.serve.registry.ModelRegistry`).
    audit_url : str, optional
        SQLAlchemy URL of the audit log; default ``sqlite:///<registry>/audit.db``.
    token : str, optional
        Bearer token of the admin routes (model activation); without one they are refused.
    max_age_seconds : float, optional
        Ticks stamped longer ago than this (server clock) are refused as stale; None
        accepts any time (replays of history).
    ood_z : float
        Fallback when a model input is more than this many training standard deviations
        from its training mean.
    weight_tol : float
        Tolerance of the output checks (sum and bounds).
    gap_every : int
        Every ``gap_every``-th decision is re-solved by the gap monitor (0: never).
    gap_window : int
        Re-solved decisions in the monitor's rolling means.
    gap_l1_alert : float
        Rolling mean L1 above which the alert is raised and answers fall back to the
        optimizer until the model changes.
    jump_sd : float or None
        Jump guard: a log return larger than ``jump_sd`` times the asset's recent daily
        volatility is a jump. The volatility is robust (1.4826 x the median absolute
        deviation of the asset's log returns over the rows a decision uses, so a jump does
        not hide itself or the next one) and at least ``jump_min_vol``. None or 0: no
        volatility test.
    jump_min_vol : float
        Floor of that volatility (daily, in log return), so a quiet asset does not trip on
        a normal move: with the defaults, a move under 30% is never a jump (on sp500's 20
        stocks, 1990-2022, 9 real moves in all would need a confirmation).
    jump_max_log_return : float or None
        Backstop: a log return beyond this is a jump whatever the volatility (1.0: about
        x2.7 or -63%). None or 0: no bound.
    jump_mode : {"reject", "flag", "off"}
        ``"reject"``: an unconfirmed jump is refused with 409 and nothing changes;
        ``"flag"``: it is accepted, and answered with the last good weights (or the
        optimizer's), flagged, with the reason in the audit log; ``"off"``: no guard.
    audit_on_failure : {"refuse", "answer"}
        When a decision cannot be recorded (the audit database is full, locked or gone):
        ``"refuse"`` answers 503 with the reason, and a portfolio's tick is not taken;
        ``"answer"`` answers 200 with ``"recorded": false`` and the reason.
    audit_timeout : float
        Seconds a decision waits for its audit commit before it counts as not recorded.
    audit_queue : int
        Decisions waiting for the audit writer at most; more are refused with 503
        (back-pressure) instead of piling up in memory.
    audit_synchronous : {"normal", "full"}
        SQLite's ``synchronous`` mode of a file audit database: ``"normal"`` survives a
        killed process (a committed decision is in the OS's hands), ``"full"`` also a
        power cut (one fsync per group commit).
    max_body_bytes : int
        Largest request body (and WebSocket message) taken; larger ones get 413.
    max_assets : int
        Most assets in a portfolio or a stateless request (422 beyond).
    max_portfolios : int
        Most portfolios held at once; creating one more gets 429 (after idle ones expired).
    max_held_values : int
        Most prices held over all portfolios (rows x assets, rows up to 1,024 each); a
        portfolio that would pass it gets 429. Held prices take 16 bytes each.
    portfolio_ttl_seconds : float or None
        A portfolio without a tick (or creation) for this long is forgotten; None: never.
    max_id_length : int
        Longest portfolio id (ids hold ASCII letters, digits, ``-`` and ``_``).
    max_clock_skew_seconds : float or None
        Ticks stamped later than the server's clock plus this are refused (422); a clock
        that runs ahead must not stop a portfolio's later ticks. None: no limit.
    min_price, max_price : float
        Prices outside ``[min_price, max_price]`` are refused (422): beyond them returns
        and risk estimates leave floating point's safe range.
    """

    registry: str | Path
    audit_url: str | None = None
    token: str | None = None
    max_age_seconds: float | None = None
    ood_z: float = OOD_Z
    weight_tol: float = 1e-6
    gap_every: int = 10
    gap_window: int = 50
    gap_l1_alert: float = 0.5
    jump_sd: float | None = 15.0
    jump_min_vol: float = 0.02
    jump_max_log_return: float | None = 1.0
    jump_mode: str = "reject"
    audit_on_failure: str = "refuse"
    audit_timeout: float = 5.0
    audit_queue: int = 10_000
    audit_synchronous: str = "normal"
    max_body_bytes: int = 8 * 1024 * 1024
    max_assets: int = 500
    max_portfolios: int = 1_000
    max_held_values: int = 20_000_000
    portfolio_ttl_seconds: float | None = 7 * 86_400.0
    max_id_length: int = 64
    max_clock_skew_seconds: float | None = 300.0
    min_price: float = 1e-12
    max_price: float = 1e12

    def __post_init__(self) -> None:
        if self.jump_mode not in JUMP_MODES:
            raise ConfigError(f"jump_mode must be one of {list(JUMP_MODES)}, got "
                              f"{self.jump_mode!r}.")
        for name, allowed in (("audit_on_failure", AUDIT_FAILURE_MODES),
                              ("audit_synchronous", ("normal", "full"))):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {list(allowed)}, got "
                                  f"{getattr(self, name)!r}.")
        for name in ("jump_sd", "jump_min_vol", "jump_max_log_return",
                     "max_clock_skew_seconds"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ConfigError(f"{name} must be >= 0, got {value!r}.")
        for name in ("audit_timeout", "audit_queue", "max_body_bytes", "max_assets",
                     "max_portfolios", "max_held_values", "max_id_length", "min_price",
                     "max_price", "portfolio_ttl_seconds"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be > 0, got {value!r}.")
        if self.max_assets < 2:
            raise ConfigError(f"max_assets must be >= 2, got {self.max_assets!r}.")
        if not self.min_price < self.max_price:
            raise ConfigError(f"min_price ({self.min_price!r}) must be below max_price "
                              f"({self.max_price!r}).")


@dataclass(frozen=True)
class ActiveModel:
    """One loaded model version: its guarded policy and what the service needs of it.

    Attributes
    ----------
    record : ModelRecord
    runtime : NumpyAllocator or None
        The network (None for a rule version).
    policy : GuardedPolicy
        What decides: the network (or rule) with its checks and fallback.
    objective, window
        The optimizer the network imitates (its fallback and the gap monitor's reference).
    """

    record: ModelRecord
    runtime: NumpyAllocator | None
    policy: GuardedPolicy
    objective: str
    window: int

    @property
    def label(self) -> str:
        return self.record.label

    @property
    def assets(self) -> list[str]:
        """The assets the model allocates, in its order (empty for asset-agnostic ones)."""
        return [] if self.runtime is None else list(self.runtime.assets)

    @property
    def asset_agnostic(self) -> bool:
        return self.runtime is None or bool(self.runtime.asset_agnostic)

    @property
    def history_needed(self) -> int:
        """Price rows one decision needs: the model's lookback and its fallback's."""
        return self.policy.lookback

    @property
    def fallback_label(self) -> str:
        return f"optimizer({self.objective})"

    @classmethod
    def load(cls, registry: ModelRegistry, record: ModelRecord,
             config: ServiceConfig | None = None,
             alert: Any = None) -> ActiveModel:
        """Load ``record`` and guard it with the service's checks (``config``) and gap
        ``alert`` (a callable answering a reason or None)."""
        config = config or ServiceConfig(registry=registry.root)
        meta = record.meta
        objective, window = str(meta.get("objective", "min_variance")), int(
            meta.get("window", 126))
        inner = registry.load_policy(record)
        if record.is_rule:
            policy = GuardedPolicy(inner, promise=OutputPromise(tol=config.weight_tol))
            return cls(record, None, policy, objective, window)
        runtime = inner.runtime
        mean, std = meta.get("feature_mean"), meta.get("feature_std")
        inputs = None if mean is None else InputRange(np.asarray(mean, dtype=np.float64),
                                                      np.asarray(std, dtype=np.float64),
                                                      config.ood_z)
        policy = GuardedPolicy(inner, fallback=OptimizerPolicy(objective, window),
                               inputs=inputs,
                               promise=OutputPromise.from_head(runtime.head, config.weight_tol),
                               alert=alert)
        return cls(record, runtime, policy, objective, window)

    def smoke_test(self) -> None:
        """Run one decision of the version, and of its fallback, on a fixed sample window
        before it may serve: a synthetic random walk (seeded, so every check sees the same
        prices) of ``history_needed + 1`` rows of its assets (5 for an asset-agnostic one).

        The policy's weights must be finite, one per asset and keep the head's promise;
        the stored input range must have one entry per input of a fixed-asset network;
        the fallback optimizer must solve.

        Raises
        ------
        ModelError
            The version cannot run; the message says why.
        """
        n = len(self.assets) or 5
        rng = np.random.default_rng(20240301)
        rows = self.history_needed + 1
        prices = 100.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.012, (rows, n)), axis=0))
        guard = self.policy
        try:
            stepper = guard.policy.stepper(prices) if hasattr(guard.policy, "stepper") \
                else None
            if stepper is None:
                w = np.asarray(guard.policy.weights(prices), dtype=np.float64)
            else:
                if guard.inputs is not None and hasattr(stepper, "features"):
                    raw = np.asarray(stepper.features(), dtype=np.float64)
                    if not self.asset_agnostic and raw.shape != guard.inputs.mean.shape:
                        raise ValueError(f"its stored input range (feature_mean/feature_std) "
                                         f"has {guard.inputs.mean.size} entries for "
                                         f"{raw.size} inputs")
                w = np.asarray(stepper.weights(), dtype=np.float64)
            if w.shape != (n,):
                raise ValueError(f"it gave weights of shape {list(w.shape)} for {n} assets")
            broken = guard.promise.check(w) if guard.promise is not None else None
            if broken:
                raise ValueError(broken)
            if guard.fallback is not None:
                fb = np.asarray(guard.fallback.weights(prices), dtype=np.float64)
                if fb.shape != (n,) or not np.isfinite(fb).all():
                    raise ValueError(f"its fallback optimizer({self.objective}) gave no "
                                     "finite weights")
        except Exception as exc:
            raise ModelError(f"{self.label} cannot run: a sample decision failed "
                             f"({type(exc).__name__}: {exc}); fix the version and register "
                             "it again") from exc


@dataclass
class WeightsAnswer:
    """What a decision returns to the client."""

    weights: dict[str, float]
    model: str
    fallback: bool
    reason: str | None
    latency_us: float
    portfolio: str | None = None
    timestamp: str | None = None
    flags: list[str] = field(default_factory=list)
    jumps: list[dict[str, Any]] = field(default_factory=list)
    stages: dict[str, float] | None = None
    decision_id: str | None = None
    recorded: bool = True
    audit_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def find_jumps(prices: np.ndarray, assets: list[str], *, sd: float | None = 15.0,
               min_vol: float = 0.02, max_log_return: float | None = 1.0,
               last_only: bool = False) -> list[dict[str, Any]]:
    """Price moves too large to take without confirmation (the service's jump guard).

    A log return ``r`` of asset ``a`` is a jump when ``|r| > limit_a`` with
    ``limit_a = min(sd * vol_a, max_log_return)`` and ``vol_a = max(1.4826 * MAD_a,
    min_vol)``, ``MAD_a`` the median absolute deviation of ``a``'s log returns in
    ``prices`` (robust: a few jumps barely move it, so every row can be checked at once).

    Parameters
    ----------
    prices : ndarray, shape (n_dates, n_assets)
        Positive prices, oldest first.
    assets : list of str
    sd : float or None
        Multiple of the volatility; None or 0: no volatility test.
    min_vol : float
        Floor of the daily volatility.
    max_log_return : float or None
        Absolute bound of ``|r|``; None or 0: none.
    last_only : bool
        Check the last row's move only (a tick) instead of every row's.

    Returns
    -------
    list of dict
        One per jump: ``asset``, ``row`` (of ``prices``), ``previous``, ``price``, ``ratio``
        (price / previous), ``log_return``, ``vol``, ``sds`` (``|r| / vol``) and ``limit``.
    """
    if len(prices) < 2:
        return []
    r = (np.log(prices[-1] / prices[-2])[None] if last_only
         else np.diff(np.log(prices), axis=0))
    # No limit is below min(sd * min_vol, max_log_return): smaller moves are never jumps,
    # and the robust volatilities (medians over the window) are needed only for larger ones.
    floor = min(sd * min_vol if sd else math.inf, max_log_return or math.inf)
    if float(np.max(np.abs(r))) <= floor:  # NaN-free: prices are checked positive
        return []
    if last_only:
        r = np.diff(np.log(prices), axis=0)
    vol = np.maximum(_MAD_TO_SD * np.median(np.abs(r - np.median(r, axis=0)), axis=0),
                     min_vol)
    limit = sd * vol if sd else np.full(len(assets), np.inf)
    if max_log_return:
        limit = np.minimum(limit, max_log_return)
    first = len(r) - 1 if last_only else 0
    found = []
    for i, j in np.argwhere(np.abs(r[first:]) > limit):
        t = first + i
        found.append({"asset": assets[j], "row": int(t + 1), "previous": float(prices[t, j]),
                      "price": float(prices[t + 1, j]),
                      "ratio": float(prices[t + 1, j] / prices[t, j]),
                      "log_return": float(r[t, j]), "vol": float(vol[j]),
                      "sds": float(abs(r[t, j]) / vol[j]) if vol[j] > 0 else math.inf,
                      "limit": float(limit[j])})
    return found


def _jump_text(j: dict[str, Any]) -> str:
    return f"{j['asset']} x{j['ratio']:.3g} ({j['sds']:.0f} sd)"


class _PriceRing:
    """The last ``capacity`` price rows, each written twice so that any trailing run of
    rows is one contiguous view (no copy per tick)."""

    def __init__(self, rows: np.ndarray, capacity: int) -> None:
        self.capacity = capacity
        self._buf = np.empty((2 * capacity, rows.shape[1]))
        self._pos = 0  # next slot in [0, capacity)
        self.count = 0
        for row in rows[-capacity:]:
            self.append(row)

    def __len__(self) -> int:
        return self.count

    def append(self, row: np.ndarray) -> None:
        c, i = self.capacity, self._pos
        self._buf[i] = row
        self._buf[i + c] = row
        self._pos = (i + 1) % c
        self.count = min(self.count + 1, c)

    def tail(self, k: int) -> np.ndarray:
        """The last ``min(k, len)`` rows, oldest first (a read-only view)."""
        k = min(k, self.count)
        end = self._pos + self.capacity if self.count == self.capacity else self.count
        view = self._buf[end - k: end]
        view.flags.writeable = False
        return view


@dataclass
class _Portfolio:
    id: str
    assets: list[str]
    prices: _PriceRing
    times: collections.deque
    created: str
    last_weights: np.ndarray | None = None
    last_good: np.ndarray | None = None  # in the portfolio's asset order
    ticks: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stepper: GuardedStepper | None = None
    model: str | None = None  # the label the stepper decides for
    perm: np.ndarray | None = None  # model order -> the portfolio's columns
    touched: float = 0.0  # time.monotonic() of its creation or last tick
    seq: int = 0  # ticks taken (a pending tick commits only on the state it was made on)
    alock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one tick at a time (async)


@dataclass
class _Pending:
    """A decision made and handed to the audit log, not yet given out."""

    answer: WeightsAnswer
    receipt: concurrent.futures.Future | None
    error: str | None  # why it could not even be queued for the audit
    commit: Callable[[], None] | None  # the portfolio's state change, once recorded


class _AuditCollector:
    """Prometheus gauges read from :meth:`AuditLog.health` at each scrape."""

    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit

    def describe(self) -> list:
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        h = self.audit.health()
        yield GaugeMetricFamily("neuralfolio_audit_ok",
                                "1 while the audit log commits (0: decisions are refused or "
                                "answered unrecorded)", value=1 if h.get("ok") else 0)
        yield GaugeMetricFamily("neuralfolio_audit_queued",
                                "Decisions waiting for the audit commit",
                                value=h.get("queued", 0))
        yield CounterMetricFamily("neuralfolio_audit_committed",
                                  "Decisions committed to the audit log",
                                  value=h.get("committed", 0))
        yield CounterMetricFamily("neuralfolio_audit_failed",
                                  "Decisions whose audit commit failed",
                                  value=h.get("failed", 0))
        last = h.get("last_commit_seconds")
        if last is not None:
            yield GaugeMetricFamily("neuralfolio_audit_last_commit_seconds",
                                    "Duration of the last audit commit", value=last)


class _Metrics:
    def __init__(self, audit: AuditLog | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        if audit is not None:
            r.register(_AuditCollector(audit))
        self.unrecorded = Counter("neuralfolio_unrecorded_decisions",
                                  "Decisions the audit log could not record (refused with "
                                  "503, or answered with recorded=false)", registry=r)
        self.requests = Counter("neuralfolio_requests", "Requests answered", ["route", "status"],
                                registry=r)
        self.latency = Histogram(
            "neuralfolio_decision_latency_seconds", "Server-side time of one decision",
            buckets=(5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.5),
            registry=r)
        self.fallbacks = Counter("neuralfolio_fallbacks", "Answers from the fallback",
                                 ["reason"], registry=r)
        self.active = Gauge("neuralfolio_active_model", "1 for the active model version",
                            ["model"], registry=r)
        self.activations = Counter("neuralfolio_model_activations",
                                   "Model versions activated", registry=r)
        self.gap_l1 = Gauge("neuralfolio_amortization_gap_l1",
                            "Rolling mean L1 between the network's and the optimizer's weights",
                            registry=r)
        self.gap_excess = Gauge(
            "neuralfolio_amortization_gap_objective_excess",
            "Rolling mean relative excess of the network's objective over the optimum",
            registry=r)
        self.gap_alert = Gauge("neuralfolio_amortization_gap_alert",
                               "Portfolios whose rolling gap is above its threshold (they "
                               "are answered by the optimizer until it comes back down)",
                               registry=r)
        self.portfolios = Gauge("neuralfolio_portfolios", "Portfolios held", registry=r)
        self.jumps = Counter("neuralfolio_price_jumps",
                             "Requests (ticks, windows) with a price jump, by what was done: "
                             "rejected, flagged or confirmed", ["action"], registry=r)


class _GapStats:
    """The rolling amortization gap of one portfolio (or of the stateless calls)."""

    __slots__ = ("alert", "excess", "l1")

    def __init__(self, window: int) -> None:
        self.l1: collections.deque = collections.deque(maxlen=window)
        self.excess: collections.deque = collections.deque(maxlen=window)
        self.alert = False


class _GapMonitor:
    """Re-solves the optimizer for sampled decisions, off the request path.

    Each portfolio has its own rolling gap and alert (key: its id); stateless calls share
    the key None, whose alert switches nobody to the fallback. Samples are taken from the
    network's own weights even while its portfolio falls back, so the alert clears when
    the gap comes back below its threshold.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.queue: queue.Queue = queue.Queue(maxsize=1000)
        self.window = engine.config.gap_window
        self.stats: dict[str | None, _GapStats] = {}
        self.recent: collections.deque = collections.deque(maxlen=self.window)
        self.recent_excess: collections.deque = collections.deque(maxlen=self.window)
        self.model: str | None = None
        self.done = 0
        self._stop = threading.Event()
        self._reference: tuple[str, OptimizerPolicy] | None = None  # used by its thread only
        self.thread = threading.Thread(target=self._run, name="gap-monitor", daemon=True)
        self.thread.start()

    @property
    def alert(self) -> bool:
        """Whether any portfolio's alert is raised."""
        return any(st.alert for st in list(self.stats.values()))

    def alerting(self, label: str, key: str | None) -> bool:
        st = self.stats.get(key)
        return key is not None and st is not None and st.alert and self.model == label

    def submit(self, model: ActiveModel, key: str | None, history: np.ndarray,
               weights: np.ndarray) -> None:
        # When the monitor is behind, the sample is skipped: a request never waits for it.
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait((model, key, history, weights))

    def reset(self, label: str) -> None:
        self.stats = {}
        self.recent.clear()
        self.recent_excess.clear()
        self.model = label
        self._publish()

    def forget(self, key: str) -> None:
        self.stats.pop(key, None)
        self._publish()

    def _publish(self) -> None:
        m = self.engine.metrics
        m.gap_alert.set(sum(st.alert for st in list(self.stats.values())))

    def wait(self, timeout: float = 10.0) -> None:
        """Block until every submitted sample is processed (tests, shutdown)."""
        end = time.monotonic() + timeout
        while self.queue.unfinished_tasks and time.monotonic() < end:
            time.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()
        self.queue.put(None)
        self.thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self.queue.get()
            try:
                if item is None:
                    return
                model, key, history, w = item
                if model.label != self.model:
                    continue  # a sample of a model that is no longer active
                if self._reference is None or self._reference[0] != model.label:
                    self._reference = (model.label,
                                       OptimizerPolicy(model.objective, model.window))
                w_star = self._reference[1].weights(history)
                tail = history[-(model.window + 1):]
                cov = ledoit_wolf(tail[1:] / tail[:-1] - 1.0)[0]
                opt = float(w_star @ cov @ w_star)
                l1 = float(np.abs(w - w_star).sum())
                excess = float(w @ cov @ w) / opt - 1.0 if opt > 0 else 0.0
                st = self.stats.get(key)
                if st is None:
                    st = self.stats[key] = _GapStats(self.window)
                st.l1.append(l1)
                st.excess.append(excess)
                self.recent.append(l1)
                self.recent_excess.append(excess)
                m = self.engine.metrics
                m.gap_l1.set(float(np.mean(self.recent)))
                m.gap_excess.set(float(np.mean(self.recent_excess)))
                full = len(st.l1) >= min(10, self.window)
                st.alert = key is not None and full and \
                    float(np.mean(st.l1)) > self.engine.config.gap_l1_alert
                self._publish()
                self.done += 1
            except Exception:  # the monitor must outlive a bad sample
                logger.exception("gap monitor sample failed")
            finally:
                self.queue.task_done()


class Engine:
    """Decisions for stateful portfolios and stateless requests (see the module docstring).

    Parameters
    ----------
    config : ServiceConfig
    """

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.registry = ModelRegistry(config.registry)
        url = config.audit_url or f"sqlite:///{Path(config.registry).resolve() / 'audit.db'}"
        self.audit = AuditLog(url, max_queue=config.audit_queue,
                              synchronous=config.audit_synchronous)
        self.metrics = _Metrics(self.audit)
        self.portfolios: dict[str, _Portfolio] = {}
        self._held = 0  # prices held over all portfolios (their rings' capacity)
        self._lock = threading.Lock()
        self._active: ActiveModel | None = None
        self._count = 0
        self._activate_lock = threading.Lock()
        self.warnings: list[str] = []
        self.monitor = _GapMonitor(self)
        self._start()

    # ------------------------------------------------------------------ models
    @property
    def active(self) -> ActiveModel | None:
        return self._active

    def _load(self, record: ModelRecord) -> ActiveModel:
        """``record`` loaded, guarded and smoke-tested (:meth:`ActiveModel.smoke_test`).

        Raises
        ------
        ModelError
            It does not load or cannot run.
        """
        try:
            model = ActiveModel.load(self.registry, record, self.config)
        except ModelError:
            raise
        except Exception as exc:  # e.g. a manifest naming an unknown objective
            raise ModelError(f"{record.label} does not load ({type(exc).__name__}: {exc}); "
                             "fix the version and register it again") from exc
        model.smoke_test()
        return model

    def _start(self) -> None:
        """Serve the active version; a broken one gives way to the newest version that
        runs (logged as an error and listed in :meth:`health`'s ``warnings``)."""
        problem = None
        try:
            record = self.registry.active()
        except ModelError as exc:
            record, problem = None, str(exc)
        if record is not None:
            try:
                self._install(self._load(record))
                return
            except ModelError as exc:
                problem = str(exc)
        if problem is None:
            return  # nothing activated yet
        bad = None if record is None else record.label
        candidates = sorted((r for r in self.registry.list() if r.label != bad),
                            key=lambda r: (str(r.meta.get("created", "")), r.version),
                            reverse=True)
        for other in candidates:
            try:
                model = self._load(other)
            except ModelError as exc:
                logger.error("start-up: %s", exc)
                continue
            self._install(model)
            text = (f"the active version could not be served ({problem}); serving "
                    f"{other.label}, the newest version that runs. Activate a fixed version "
                    "to clear this.")
            break
        else:
            text = (f"the active version could not be served ({problem}), and no other "
                    "version runs; register and activate a working one.")
        logger.error("start-up: %s", text)
        self.warnings.append(text)

    def _gap_alert(self, label: str, key: str) -> Callable[[], str | None]:
        monitor = self.monitor

        def alert() -> str | None:
            if monitor.alerting(label, key):
                return "amortization gap above its threshold"
            return None
        return alert

    def _install(self, model: ActiveModel) -> None:
        previous = self._active
        self.monitor.reset(model.label)
        self._active = model  # one assignment: a request sees the old or the new, never both
        if previous is not None:
            self.metrics.active.labels(model=previous.label).set(0)
        self.metrics.active.labels(model=model.label).set(1)
        self.metrics.activations.inc()

    def activate(self, name: str, version: int | None = None) -> ModelRecord:
        """Make a registered version active: loaded and run on a sample window first
        (:meth:`ActiveModel.smoke_test`), then swapped in.

        Raises
        ------
        ModelError
            No such version.
        InputError
            422: the version does not load or cannot run; nothing changed.
        """
        record = self.registry.get(name, version)
        try:
            model = self._load(record)  # fails before anything changes
        except ModelError as exc:
            raise InputError(422, f"{exc}. Nothing was changed: the active version is still "
                                  f"{self._active.label if self._active else 'none'}.") \
                from None
        with self._activate_lock:  # the registry's pointer and the served model agree
            self.registry.activate(record.name, record.version)
            self._install(model)
            self.warnings = []
        return record

    def _require_model(self) -> ActiveModel:
        model = self._active
        if model is None:
            raise InputError(503, "No model is active; register one with `neuralfolio "
                                  "retrain` and activate it.")
        return model

    # --------------------------------------------------------------- portfolios
    def create_portfolio(self, assets: list[str], prices: list[list[float]],
                         timestamps: list[Any] | None = None,
                         portfolio_id: str | None = None) -> dict[str, Any]:
        """Register a portfolio with its recent price history; returns its description.

        Raises
        ------
        InputError
            422 for invalid inputs (ids: ASCII letters, digits, ``-``, ``_``, at most
            ``max_id_length``); 409 for a taken id; 429 when ``max_portfolios`` or
            ``max_held_values`` would be passed.
        """
        c = self.config
        if portfolio_id is not None:
            self._check_id(portfolio_id)
        model = self._require_model()
        assets = self._check_assets(model, assets)
        rows = self._check_rows(prices, len(assets), model.history_needed, "prices")
        times = self._check_times(timestamps, len(rows))
        if times and isinstance(times[-1], datetime):
            self._check_skew(times[-1], "the last timestamp")
        pid = portfolio_id or uuid.uuid4().hex[:12]
        cost = HISTORY_ROWS * len(assets)
        with self._lock:
            self._expire_idle()
            if pid in self.portfolios:
                raise InputError(409, f"portfolio {pid!r} exists; delete it first or choose "
                                      "another id.")
            if len(self.portfolios) >= c.max_portfolios:
                raise InputError(429, f"the service holds {len(self.portfolios)} portfolios, "
                                      f"its limit (max_portfolios, --max-portfolios); delete "
                                      "unused ones (DELETE /v1/portfolios/{id})"
                                      + self._ttl_hint())
            if self._held + cost > c.max_held_values:
                raise InputError(429, f"holding {len(assets)} assets x {HISTORY_ROWS} rows "
                                      f"more would pass the service's limit of "
                                      f"{c.max_held_values} held prices (max_held_values, "
                                      f"--max-held-values; {self._held} held); delete unused "
                                      "portfolios" + self._ttl_hint())
            p = _Portfolio(pid, assets, _PriceRing(rows, HISTORY_ROWS),
                           collections.deque(times[-HISTORY_ROWS:], maxlen=HISTORY_ROWS),
                           datetime.now(UTC).isoformat(), touched=time.monotonic())
            self.portfolios[pid] = p
            self._held += cost
            self.metrics.portfolios.set(len(self.portfolios))
        return self.describe(pid)

    def _ttl_hint(self) -> str:
        ttl = self.config.portfolio_ttl_seconds
        return "." if ttl is None else f", or wait: portfolios idle for {ttl:g} s expire."

    def _check_id(self, pid: Any) -> None:
        limit = self.config.max_id_length
        if not isinstance(pid, str) or not _ID.fullmatch(pid) or len(pid) > limit:
            raise InputError(422, f"portfolio id {_show(str(pid))} must be 1 to {limit} "
                                  "ASCII letters, digits, - or _ (max_id_length).")

    def _expire_idle(self) -> None:
        """Forget portfolios idle longer than ``portfolio_ttl_seconds`` (holds _lock)."""
        ttl = self.config.portfolio_ttl_seconds
        if ttl is None:
            return
        now = time.monotonic()
        for pid in [k for k, p in self.portfolios.items() if now - p.touched > ttl]:
            self._drop(pid)

    def _drop(self, pid: str) -> _Portfolio | None:
        p = self.portfolios.pop(pid, None)
        if p is not None:
            self._held -= HISTORY_ROWS * len(p.assets)
            self.monitor.forget(pid)
            self.metrics.portfolios.set(len(self.portfolios))
        return p

    def describe(self, pid: str) -> dict[str, Any]:
        p = self._portfolio(pid)
        return {"id": p.id, "assets": p.assets, "history_rows": len(p.prices),
                "ticks": p.ticks,
                "last_timestamp": _iso(p.times[-1]) if p.times else None,
                "last_weights": None if p.last_weights is None else
                dict(zip(p.assets, p.last_weights.tolist(), strict=True)),
                "created": p.created}

    def delete_portfolio(self, pid: str) -> None:
        with self._lock:
            if self._drop(pid) is None:
                raise InputError(404, f"no portfolio {_show(pid)}; create it with POST "
                                      "/v1/portfolios.")

    def _portfolio(self, pid: str) -> _Portfolio:
        p = self.portfolios.get(pid)
        if p is None:
            raise InputError(404, f"no portfolio {_show(pid)}; create it with POST "
                                  "/v1/portfolios.")
        ttl = self.config.portfolio_ttl_seconds
        if ttl is not None and time.monotonic() - p.touched > ttl:
            with self._lock:
                if self.portfolios.get(pid) is p:
                    self._drop(pid)
            raise InputError(404, f"portfolio {_show(pid)} expired after {ttl:g} s without "
                                  "a tick (portfolio_ttl_seconds); create it again.")
        return p

    def tick(self, pid: str, prices: dict[str, float] | list[float],
             timestamp: Any = None, confirm_jump: bool | list[str] = False) -> WeightsAnswer:
        """New prices for a portfolio: validated, decided, recorded, then taken.

        Parameters
        ----------
        pid : str
        prices : dict or list
            Asset -> price, or prices in the portfolio's asset order.
        timestamp : str or float, optional
            After the last tick's; default the server's clock.
        confirm_jump : bool or list of str
            True, or the assets whose jump is real: their moves pass the jump guard
            (:func:`find_jumps`), flagged as confirmed.

        Raises
        ------
        InputError
            409 with ``extra["jumps"]`` for an unconfirmed jump in ``"reject"`` mode (the
            portfolio is unchanged); 503 when the decision could not be recorded (in
            ``audit_on_failure="refuse"``: the portfolio is unchanged); others for
            invalid ticks.
        """
        p = self._portfolio(pid)
        with p.lock:
            pending = self._prepare_tick(p, prices, timestamp, confirm_jump)
            self._settle(pending, self._wait_receipt(pending))
            return pending.answer

    async def atick(self, pid: str, prices: dict[str, float] | list[float],
                    timestamp: Any = None,
                    confirm_jump: bool | list[str] = False) -> WeightsAnswer:
        """:meth:`tick` for the event loop: the audit commit is awaited, not blocked on.
        A portfolio's ticks are taken one at a time, each once its decision is recorded."""
        p = self._portfolio(pid)
        async with p.alock:
            with p.lock:
                pending = self._prepare_tick(p, prices, timestamp, confirm_jump)
            error = await self._await_receipt(pending)
            with p.lock:
                self._settle(pending, error)
            return pending.answer

    def _prepare_tick(self, p: _Portfolio, prices: dict[str, float] | list[float],
                      timestamp: Any, confirm_jump: bool | list[str]) -> _Pending:
        """The decision for a tick, recorded (not yet committed) and its state change
        (``commit``), applied by :meth:`_settle` once the record is durable."""
        confirmed = self._check_confirm(confirm_jump, p.assets)
        row = self._check_tick(p, prices)
        stamp = _parse_time(timestamp) if timestamp is not None else datetime.now(UTC)
        last = p.times[-1] if p.times else None
        if last is not None:
            if isinstance(stamp, datetime) != isinstance(last, datetime):
                raise InputError(422, "timestamp kind differs from the portfolio's (ISO "
                                      "times vs numbers); send the same kind each tick.")
            if stamp <= last:
                raise InputError(409, f"tick at {_iso(stamp)} is not after the last one "
                                      f"({_iso(last)}); ticks must arrive in time order.")
        if isinstance(stamp, datetime):
            self._check_skew(stamp, "tick")
        self._check_age(stamp)
        model = self._require_model()  # read once: the whole decision uses this version
        t0 = time.perf_counter()
        needed = model.history_needed
        held = p.prices.tail(needed - 1)
        if len(held) + 1 < needed:
            raise InputError(409, f"{len(held)} price rows are held; the active model "
                                  f"{model.label} needs {needed}.")
        given = np.concatenate([held, row[None]])
        jumps = self._guard_jumps(given, p.assets, confirmed, last_only=True)
        t1 = time.perf_counter()
        stages = {"jumps": t1 - t0}
        stepper = p.stepper if p.model == model.label else None
        perm = p.perm if stepper is not None else self._perm(model, p.assets)
        p.stepper = None  # until this decision is taken: a failure starts afresh
        if stepper is None:
            stepper = model.policy.stepper(given if perm is None else given[:, perm])
            stepper.alert = self._gap_alert(model.label, p.id)
            if p.last_good is not None:
                stepper.last_good = p.last_good if perm is None else p.last_good[perm]
        else:
            stepper.push(row if perm is None else row[perm], check=False)
        stages["update"] = time.perf_counter() - t1
        stamps = [_iso(last), _iso(stamp)]
        answer, receipt, error = self._answer(model, stepper, perm, p.assets, p.id, stamps,
                                              given, jumps, stages, t0, p.ticks + 1)
        answer.timestamp = _iso(stamp)
        seq = p.seq

        def commit() -> None:
            if p.seq != seq:  # pragma: no cover - ticks of a portfolio are serialized
                raise InputError(409, f"portfolio {p.id!r} changed while this tick was "
                                      "recorded; send it again.")
            p.stepper, p.model, p.perm = stepper, model.label, perm
            p.prices.append(row)
            p.times.append(stamp)
            p.ticks += 1
            p.seq += 1
            p.touched = time.monotonic()
            w = np.array([answer.weights[a] for a in p.assets])
            p.last_weights = w
            if not answer.fallback:
                p.last_good = w

        return _Pending(answer, receipt, error, commit)

    # ----------------------------------------------------------------- stateless
    def weights(self, assets: list[str], prices: list[list[float]],
                confirm_jump: bool | list[str] = False) -> WeightsAnswer:
        """Weights for the last row of a full price window (no state kept).

        Every move in the rows the decision uses (the last ``history_needed``) passes the
        jump guard, as the service does not know which of them were confirmed before;
        ``confirm_jump`` (True or assets) confirms them. A jump refused in ``"reject"``
        mode is an :class:`InputError` 409 whose ``extra["jumps"]`` name the rows.
        """
        pending = self._prepare_weights(assets, prices, confirm_jump)
        self._settle(pending, self._wait_receipt(pending))
        return pending.answer

    async def aweights(self, assets: list[str], prices: list[list[float]],
                       confirm_jump: bool | list[str] = False) -> WeightsAnswer:
        """:meth:`weights` for the event loop (the audit commit is awaited)."""
        pending = self._prepare_weights(assets, prices, confirm_jump)
        self._settle(pending, await self._await_receipt(pending))
        return pending.answer

    def _prepare_weights(self, assets: list[str], prices: list[list[float]],
                         confirm_jump: bool | list[str]) -> _Pending:
        model = self._require_model()
        assets = self._check_assets(model, assets)
        confirmed = self._check_confirm(confirm_jump, assets)
        rows = self._check_rows(prices, len(assets), model.history_needed, "prices")
        t0 = time.perf_counter()
        given = rows[-model.history_needed:]
        jumps = self._guard_jumps(given, assets, confirmed, last_only=False,
                                  offset=len(rows) - len(given))
        t1 = time.perf_counter()
        perm = self._perm(model, assets)
        stepper = model.policy.stepper(given if perm is None else given[:, perm])
        stepper.alert = None  # a stateless call never changes what others get
        stages = {"jumps": t1 - t0, "update": time.perf_counter() - t1}
        self._count += 1
        answer, receipt, error = self._answer(model, stepper, perm, assets, None, None, given,
                                              jumps, stages, t0, self._count)
        return _Pending(answer, receipt, error, None)

    # ------------------------------------------------------------------- audit
    def _wait_receipt(self, pending: _Pending) -> str | None:
        """Block until the decision's record is committed; the error when it was not."""
        receipt = pending.receipt
        if receipt is None:
            return pending.error
        try:
            receipt.result(timeout=self.config.audit_timeout)
            return None
        except concurrent.futures.TimeoutError:
            if receipt.cancel():
                return self._timeout_text()
            return self._outcome(receipt)
        except Exception as exc:
            return str(exc)

    async def _await_receipt(self, pending: _Pending) -> str | None:
        """:meth:`_wait_receipt` without blocking the event loop."""
        receipt = pending.receipt
        if receipt is None:
            return pending.error
        if not receipt.done():
            waiter = asyncio.wrap_future(receipt)
            try:
                await asyncio.wait_for(asyncio.shield(waiter), self.config.audit_timeout)
            except TimeoutError:
                if receipt.cancel():
                    return self._timeout_text()
                with contextlib.suppress(Exception):
                    await waiter  # being written: its outcome comes soon (busy timeout)
            except Exception:
                pass
        return self._outcome(receipt)

    @staticmethod
    def _outcome(receipt: concurrent.futures.Future) -> str | None:
        try:
            receipt.result()
            return None
        except Exception as exc:
            return str(exc)

    def _timeout_text(self) -> str:
        return (f"the audit log did not commit it within {self.config.audit_timeout:g} s "
                "(audit_timeout); the database may be locked or slow")

    def _settle(self, pending: _Pending, error: str | None) -> None:
        """Take the decision (its state change) once recorded; when it was not: refuse
        with 503 and change nothing, or (``audit_on_failure="answer"``) take it and say so
        on the answer."""
        if error is not None:
            self.metrics.unrecorded.inc()
            if self.config.audit_on_failure == "refuse":
                raise InputError(503, f"the decision was not recorded in the audit log "
                                      f"({error}), so it is not given and nothing was "
                                      "changed; send the request again once GET /readyz "
                                      "is ready.")
            pending.answer.recorded = False
            pending.answer.audit_error = error
        if pending.commit is not None:
            pending.commit()

    def health(self) -> dict[str, Any]:
        """Readiness: ``ready`` (bool), ``reasons`` (why not ready), ``model`` (the active
        label or None), ``audit`` (the audit log's :meth:`~AuditLog.health`) and
        ``warnings`` (e.g. a broken active version replaced at start-up)."""
        active = self._active
        reasons = [] if active is not None else ["no active model"]
        audit = self.audit.health()
        if not audit.get("ok", True) and self.config.audit_on_failure == "refuse":
            reasons.append(f"the audit log cannot write ({audit.get('reason')}); decisions "
                           "are refused until it can")
        return {"ready": not reasons, "reasons": reasons,
                "model": None if active is None else active.label, "audit": audit,
                "warnings": list(self.warnings)}

    # --------------------------------------------------------------- jump guard
    @staticmethod
    def _check_confirm(confirm: bool | list[str] | None, assets: list[str]) -> set[str]:
        if confirm is None or isinstance(confirm, bool):
            return set(assets) if confirm else set()
        unknown = [a for a in confirm if a not in assets]
        if unknown:
            raise InputError(422, f"confirm_jump names unknown assets {unknown}; use true or "
                                  f"a list of {assets}.")
        return set(confirm)

    def _guard_jumps(self, history: np.ndarray, assets: list[str], confirmed: set[str], *,
                     last_only: bool, offset: int = 0) -> list[dict[str, Any]]:
        """The jumps of the rows a decision uses (``history``, whose first row is row
        ``offset`` of the client's), each marked ``confirmed``; raises 409 on an
        unconfirmed one in ``"reject"`` mode."""
        c = self.config
        if c.jump_mode == "off":
            return []
        jumps = find_jumps(history, assets, sd=c.jump_sd, min_vol=c.jump_min_vol,
                           max_log_return=c.jump_max_log_return, last_only=last_only)
        for j in jumps:  # a tick's row is no index the client knows
            j["row"] = None if last_only else j["row"] + offset
            j["confirmed"] = j["asset"] in confirmed
        if any(j["confirmed"] for j in jumps):
            self.metrics.jumps.labels(action="confirmed").inc()
        bad = [j for j in jumps if not j["confirmed"]]
        if bad and c.jump_mode == "reject":
            self.metrics.jumps.labels(action="rejected").inc()
            where = "" if last_only else " in rows " + ", ".join(str(j["row"]) for j in bad)
            moves = "; ".join(
                f"{j['asset']} {j['previous']:.6g} -> {j['price']:.6g} (x{j['ratio']:.3g}, "
                f"log return {j['log_return']:+.3f}, {j['sds']:.0f} x its volatility "
                f"{j['vol']:.4f}; limit {j['limit']:.3f})" for j in bad)
            names = sorted({j["asset"] for j in bad})
            raise InputError(409, f"price jump refused{where}: {moves}. Nothing was changed. "
                                  "If the move is real, send it again with "
                                  f'"confirm_jump": true (or {json.dumps(names)}); the '
                                  "limits are the service's --jump-sd, --jump-min-vol and "
                                  "--jump-max-log-return.", {"jumps": jumps})
        if bad:
            self.metrics.jumps.labels(action="flagged").inc()
        return jumps

    # ----------------------------------------------------------------- decisions
    @staticmethod
    def _perm(model: ActiveModel, assets: list[str]) -> np.ndarray | None:
        """Columns of prices given in ``assets`` order, in the model's asset order (None:
        as given)."""
        if model.asset_agnostic:
            return None
        trained = model.assets
        if sorted(assets) != sorted(trained):
            raise InputError(409, f"the active model {model.label} allocates "
                                  f"{trained}, not this portfolio's {assets}; "
                                  "activate a model for these assets or create a new "
                                  "portfolio.")
        if trained == list(assets):
            return None
        return np.array([assets.index(a) for a in trained])

    def _answer(self, model: ActiveModel, stepper: GuardedStepper, perm: np.ndarray | None,
                assets: list[str], pid: str | None, stamps: list[str] | None,
                given: np.ndarray, jumps: list[dict[str, Any]], stages: dict[str, float],
                t0: float, count: int
                ) -> tuple[WeightsAnswer, concurrent.futures.Future | None, str | None]:
        """The guarded decision of ``stepper`` (already at the latest row), handed to the
        audit log: the answer, its audit receipt, and why it could not be queued."""
        flagged = [j for j in jumps if not j["confirmed"]]  # "flag" mode (reject raised)
        reasons = []
        if flagged:
            reasons.append("price jump (" + ", ".join(
                f"{j['asset']} x{j['ratio']:.3g} = {j['sds']:.0f} sd" for j in flagged)
                + "; confirm with confirm_jump)")
        stale_names: list[str] = []
        if len(given) >= 3:  # a price can stand still for a day; over a window it is stale
            top, low = given.max(axis=0), given.min(axis=0)
            stale = (top - low) <= STALE_RTOL * top
            stale_names = [a for a, s in zip(assets, stale, strict=True) if s]
        if stale_names:
            reasons.append(f"stale prices ({', '.join(stale_names)} unchanged over "
                           f"{len(given)} rows)")
        suspect = "; ".join(reasons) or None
        w = None
        if stale_names and stepper.last_good is None:
            d, w = self._stale_decision(model, given, stale, suspect)
        else:
            try:
                d = stepper.decide(suspect)
            except NoFallbackError as exc:
                raise InputError(422, f"no weights can be given for these prices: {exc}. "
                                      "Check them (a stale feed, a wrong scale, a unit "
                                      "change) or send more rows.") from None
        stages.update(d.stages)
        label = (model.label if d.source == "policy" else model.fallback_label
                 if d.source == "fallback" else f"{model.label} (last good weights)")
        if d.fallback:
            self.metrics.fallbacks.labels(reason=d.reason.split(" (")[0]).inc()
        sample = d.weights if d.source == "policy" else d.policy_weights
        every = self.config.gap_every
        if model.runtime is not None and sample is not None and every and count % every == 0:
            window = given[-(model.window + 1):]
            self.monitor.submit(model, pid, window if perm is None else window[:, perm],
                                np.array(sample))
        if w is None:
            if perm is None:
                w = np.array(d.weights, dtype=np.float64)
            else:
                w = np.empty(len(perm))
                w[perm] = d.weights
        t1 = time.perf_counter()
        latency = t1 - t0
        self.metrics.latency.observe(latency)
        # The fingerprint is computed by the audit writer, off the request path.
        decision = Decision(
            time=datetime.now(UTC), portfolio=pid,
            input_hash=LazyInputHash(list(assets), given.copy(), stamps),
            model=label, assets=list(assets), weights=w.tolist(),
            fallback=d.fallback, reason=d.reason, latency_us=latency * 1e6)
        receipt, error = None, None
        try:
            receipt = self.audit.record(decision)
        except AuditUnavailable as exc:
            error = str(exc)
        stages["audit"] = time.perf_counter() - t1
        flags = [f"jump:{_jump_text(j)}" + (" confirmed" if j["confirmed"] else "")
                 for j in jumps] + [f"stale:{a}" for a in stale_names]
        answer = WeightsAnswer(dict(zip(assets, w.tolist(), strict=True)), label,
                               d.fallback, d.reason, latency * 1e6, pid, flags=flags,
                               jumps=list(jumps), stages=stages,
                               decision_id=decision.decision_id)
        return answer, receipt, error

    def _stale_decision(self, model: ActiveModel, given: np.ndarray, stale: np.ndarray,
                        reason: str) -> tuple[GuardDecision, np.ndarray]:
        """No earlier weights to hold while an asset's price stands still: the exact
        optimizer over the assets that move, the unchanged ones at weight 0 (a halted
        asset is not riskless). Weights in the order of ``given``'s columns."""
        moving = np.flatnonzero(~stale)
        if len(moving) < 2:
            raise InputError(422, f"no weights can be given: {reason}, and fewer than 2 "
                                  "assets move. Send prices that move (check the feed), or "
                                  "create the portfolio with a longer history.")
        t0 = time.perf_counter()
        try:
            sub = OptimizerPolicy(model.objective, model.window).weights(given[:, moving])
            sub = np.asarray(sub, dtype=np.float64)
            if sub.shape != (len(moving),) or not np.isfinite(sub).all():
                raise ValueError("no finite weights")
        except Exception as exc:
            raise InputError(422, f"no weights can be given: {reason}, and the optimizer "
                                  f"over the other assets failed ({type(exc).__name__}: "
                                  f"{exc}). Check the prices.") from None
        w = np.zeros(given.shape[1])
        w[moving] = sub
        d = GuardDecision(w, "fallback", reason + "; optimizer over the assets that move",
                          {"fallback": time.perf_counter() - t0})
        return d, w

    # ------------------------------------------------------------------- checks
    def _check_assets(self, model: ActiveModel, assets: list[str]) -> list[str]:
        limit = self.config.max_assets
        if len(assets) > limit:
            raise InputError(422, f"{len(assets)} assets is more than the service's limit of "
                                  f"{limit} per portfolio or request (max_assets, "
                                  "--max-assets); split the universe.")
        assets = [str(a) for a in assets]
        long = [a for a in assets if not 0 < len(a) <= ASSET_NAME_MAX]
        if long:
            raise InputError(422, f"asset name {_show(long[0])} must have 1 to "
                                  f"{ASSET_NAME_MAX} characters.")
        if len(set(assets)) != len(assets):
            dup = sorted({a for a in assets if assets.count(a) > 1})
            raise InputError(422, f"assets are repeated: {dup}; list each asset once.")
        if model.asset_agnostic:
            if len(assets) < 2:
                raise InputError(422, "at least 2 assets are needed.")
            return assets
        expected = model.assets
        missing = [a for a in expected if a not in assets]
        extra = [a for a in assets if a not in expected]
        if missing or extra:
            raise InputError(422, f"the model {model.label} allocates {expected}; missing "
                                  f"{missing}, unknown {extra}. Send exactly its assets (in "
                                  "any order: weights come back by name).")
        return assets

    def _check_rows(self, prices: Any, n: int, needed: int, what: str) -> np.ndarray:
        try:
            rows = np.asarray(prices, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(422, f"{what} must be a list of rows of numbers, one per date, "
                                  f"{n} per row.") from None
        if rows.ndim != 2 or rows.shape[1] != n:
            raise InputError(422, f"{what} must have shape (dates, {n}), one column per "
                                  f"asset; got {list(rows.shape)}.")
        if len(rows) < needed:
            raise InputError(422, f"{what} has {len(rows)} rows; the model and its fallback "
                                  f"need at least {needed} (oldest first).")
        bad = ~np.isfinite(rows)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise InputError(422, f"{what} row {r}, column {c} is not a finite number; fill "
                                  "or drop it before sending.")
        if (rows <= 0).any():
            r, c = np.argwhere(rows <= 0)[0]
            raise InputError(422, f"{what} row {r}, column {c} is {rows[r, c]:g}; prices must "
                                  "be positive.")
        low, high = self.config.min_price, self.config.max_price
        out = (rows < low) | (rows > high)
        if out.any():
            r, c = np.argwhere(out)[0]
            raise InputError(422, f"{what} row {r}, column {c} is {rows[r, c]:g}, outside the "
                                  f"service's price range [{low:g}, {high:g}] (min_price, "
                                  "max_price); rescale the prices (e.g. per 1,000 units) or "
                                  "fix the feed.")
        return rows

    @staticmethod
    def _check_times(timestamps: list[Any] | None, n: int) -> list[Any]:
        if timestamps is None:
            return [None] * n  # unstamped history: the first tick sets the clock
        if len(timestamps) != n:
            raise InputError(422, f"timestamps has {len(timestamps)} entries for {n} price "
                                  "rows; send one per row.")
        times = [_parse_time(t) for t in timestamps]
        if len({type(t) for t in times}) > 1:
            raise InputError(422, "timestamps mix ISO times and numbers; use one kind.")
        for a, b in itertools.pairwise(times):
            if b <= a:
                raise InputError(422, f"timestamps must increase; {_iso(b)} follows "
                                      f"{_iso(a)}.")
        return times

    def _check_tick(self, p: _Portfolio, prices: dict[str, float] | list[float]) -> np.ndarray:
        if isinstance(prices, dict):
            missing = [a for a in p.assets if a not in prices]
            extra = [a for a in prices if a not in p.assets]
            if missing or extra:
                raise InputError(422, f"tick prices: missing {missing}, unknown {extra}; "
                                      f"send one price for each of {p.assets}.")
            values = [prices[a] for a in p.assets]
        else:
            values = list(prices)
            if len(values) != len(p.assets):
                raise InputError(422, f"tick has {len(values)} prices for {len(p.assets)} "
                                      f"assets {p.assets}.")
        row = self._check_rows([values], len(p.assets), 1, "tick prices")
        return row[0]

    def _check_skew(self, stamp: datetime, what: str) -> None:
        """Refuse a time later than the server's clock plus ``max_clock_skew_seconds``: a
        portfolio whose last tick is in the future would refuse every later tick."""
        skew = self.config.max_clock_skew_seconds
        if skew is None:
            return
        ahead = (stamp - datetime.now(UTC)).total_seconds()
        if ahead > skew:
            raise InputError(422, f"{what} at {_iso(stamp)} is {ahead:.0f} s ahead of the "
                                  f"service's clock, more than its limit of {skew:g} s "
                                  "(max_clock_skew_seconds); fix the sender's clock or its "
                                  "time zone (send UTC, e.g. 2024-03-01T21:00:00Z).")

    def _check_age(self, stamp: Any) -> None:
        limit = self.config.max_age_seconds
        if limit is None or not isinstance(stamp, datetime):
            return
        age = (datetime.now(UTC) - stamp).total_seconds()
        if age > limit:
            raise InputError(422, f"tick at {_iso(stamp)} is {age:.0f} s old, older than the "
                                  f"service's limit of {limit:g} s (stale data).")

    def close(self) -> None:
        """Stop the monitor and flush the audit log."""
        self.monitor.stop()
        self.audit.close()


def _parse_time(value: Any) -> Any:
    if isinstance(value, bool):
        raise InputError(422, f"timestamp {value!r} is not a time.")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InputError(422, "timestamp must be finite.")
        return float(value)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        t = datetime.fromisoformat(str(value))
    except ValueError:
        raise InputError(422, f"timestamp {value!r} is not an ISO 8601 time (e.g. "
                              "2024-03-01T15:30:00Z) or a number.") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _iso(t: Any) -> str | None:
    if t is None:
        return None
    return t.isoformat() if isinstance(t, datetime) else f"{t:g}"
