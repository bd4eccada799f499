"""An append-only, durable audit log of every weight decision the service makes.

:class:`AuditLog` keeps one row per :class:`Decision` in a SQL table ``decisions`` (any
SQLAlchemy URL; SQLite by default), each with a unique ``decision_id``.

**Durability contract.** A risk service must never give out a decision that is not
recorded. So :meth:`AuditLog.record` returns a :class:`Receipt` (a
:class:`concurrent.futures.Future`) and **an answer waits for its receipt**: the receipt
resolves with ``None`` once the decision's transaction is committed, or with
:class:`AuditWriteError` when that commit failed (full disk, a lock held by another
process, a lost database). A caller that gives up waiting calls :meth:`Receipt.cancel`;
when that returns True the decision is certain never to be written.

* **Group commit.** One writer thread blocks until decisions are waiting, then writes
  *all* of them (up to :data:`MAX_BATCH`) in one transaction; decisions that arrive
  during a commit go into the next one. Latency is one commit, throughput comes from the
  batches; there is no fixed delay.
* **Crashes.** A decision is acknowledged only after its commit returned, so a SIGKILL
  (or any crash of the process) can only lose decisions that were never acknowledged.
  File SQLite databases use write-ahead logging; ``synchronous="normal"`` (the default)
  survives any crash of the process, ``synchronous="full"`` also a power cut or an
  operating-system crash, at the price of one ``fsync`` per commit.
* **Back-pressure.** At most ``max_queue`` decisions wait; beyond that
  :meth:`AuditLog.record` raises :class:`AuditUnavailable` instead of growing memory
  without bound.
* **Health.** After a failed commit the log is unhealthy: :meth:`AuditLog.record` refuses at
  once (:class:`AuditUnavailable`) for ``retry_after`` seconds, and the decisions queued
  behind the failed batch fail with it. Then decisions are admitted again and serve as
  the probe: a successful commit makes the log healthy, another failure refuses for
  another ``retry_after``. :meth:`AuditLog.health` reports the state and counters.

:meth:`AuditLog.flush` waits for every receipt handed out so far, :meth:`AuditLog.close`
resolves every pending receipt (committed or failed) and stops the writer.

:func:`input_hash` fingerprints a request's inputs (assets, prices, timestamps), so a
decision can be matched with the data it came from.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import contextlib
import functools
import hashlib
import json
import logging
import math
import sqlite3
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from neuralfolio.errors import ConfigError, DataError, NeuralfolioError

__all__ = ["AuditLog", "AuditUnavailable", "AuditWriteError", "Decision", "LazyInputHash",
           "Receipt", "input_hash"]

logger = logging.getLogger(__name__)

MAX_BATCH = 2_000
"""Most decisions the writer puts in one transaction."""
SYNCHRONOUS_MODES = ("normal", "full")
"""Allowed values of :class:`AuditLog`'s ``synchronous``."""
_CHEAP_RETRY_S = 0.1
"""A failed commit is retried once only when it failed within this many seconds (a stale
pooled connection, say); a lock wait or a slow failure is not retried."""
_URL_FORM = ("dialect[+driver]://[user[:password]@host[:port]]/database, for example "
             "sqlite:///audit.db, sqlite:// (in memory) or postgresql+psycopg://host/db")
_LIMITS = {"decision_id": 32, "input_hash": 64, "model": 200, "portfolio": 200}


class AuditUnavailable(NeuralfolioError):
    """The audit log accepts no decision now: its queue is full (``max_queue``) or its
    last commit failed less than ``retry_after`` seconds ago. Nothing was recorded; do
    not give the decision out as recorded.

    Attributes
    ----------
    reason : str
        Why, in words (also the message).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AuditWriteError(NeuralfolioError):
    """A decision's commit failed (or the decision cannot be stored): it is not in the
    audit log. The message names the database, the error and a fix."""


class Receipt(concurrent.futures.Future):
    """The promise that one decision will be committed, returned by
    :meth:`AuditLog.record`.

    ``receipt.result(timeout)`` returns ``None`` once the decision is committed and
    raises :class:`AuditWriteError` when its commit failed (``TimeoutError`` when not
    resolved in time). :meth:`cancel` returns True only while the writer has not taken
    the decision yet, and then it is certain never to be written.

    Attributes
    ----------
    decision : Decision
        The decision it stands for.
    """

    def __init__(self, decision: Decision) -> None:
        super().__init__()
        self.decision = decision

    @property
    def decision_id(self) -> str:
        """The decision's :attr:`Decision.decision_id`."""
        return self.decision.decision_id


@dataclass
class Decision:
    """One set of weights given out, and how it was made.

    Parameters
    ----------
    time : datetime
        When the decision was made; timezone-aware (stored as UTC).
    portfolio : str or None
        The portfolio it belongs to; None for stateless requests.
    input_hash : str or LazyInputHash
        :func:`input_hash` of the request's inputs (a :class:`LazyInputHash` is computed
        by the writer thread).
    model : str
        The model's label (:attr:`ModelRecord.label`, ``"name:version"``) or
        ``"optimizer"``.
    assets : list of str
    weights : list of float
        One weight per asset, in the order of ``assets``.
    fallback : bool
        Whether a fallback (not the active model) produced the weights.
    reason : str or None
        Why the fallback was used.
    latency_us : float
        Time to produce the weights, in microseconds.
    decision_id : str
        Unique id of the decision (at most 32 characters; a random UUID's 32 hex digits
        unless given), stored unique, so an answer can name its audit row.
    """

    time: datetime
    portfolio: str | None
    input_hash: str
    model: str
    assets: list[str]
    weights: list[float]
    fallback: bool
    reason: str | None
    latency_us: float
    decision_id: str = field(default_factory=lambda: uuid.uuid4().hex)


# ---------------------------------------------------------------------------- hashing
_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)


def _ns(t: datetime) -> int:
    """Nanoseconds since the epoch; aware times in UTC, naive ones read as UTC."""
    d = t - (_EPOCH_UTC if t.utcoffset() is not None else _EPOCH)
    return ((d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds) * 1_000 \
        + int(getattr(t, "nanosecond", 0))


def _stamp_token(t: Any) -> str:
    """A canonical text form of one timestamp: one instant gives one token whether it
    comes as a datetime, a pandas or numpy timestamp or an ISO string, and a number as a
    number or its text; anything else is kept as its text (hashing never fails)."""
    if isinstance(t, np.datetime64):
        return "t" + str(int(t.astype("datetime64[ns]").astype(np.int64)))
    if isinstance(t, datetime):
        return "t" + str(_ns(t))
    if isinstance(t, date):
        return "t" + str(_ns(datetime(t.year, t.month, t.day)))
    if isinstance(t, bool | np.bool_):
        return "s" + str(t)
    if isinstance(t, int | np.integer):
        return "n" + str(int(t))
    if isinstance(t, float | np.floating):
        x = float(t)
        return "n" + (str(int(x)) if x.is_integer() else repr(x))
    text = str(t)
    try:
        return _stamp_token(datetime.fromisoformat(text))
    except ValueError:
        pass
    try:
        return _stamp_token(float(text))
    except (ValueError, OverflowError):
        return "s" + text


class LazyInputHash:
    """An :func:`input_hash` computed when first read (``str()``), so that a service hands
    the fingerprint's work to the audit writer's thread instead of doing it per request.

    Parameters
    ----------
    assets, prices, timestamps
        As for :func:`input_hash`; ``prices`` must not change afterwards (pass a copy).
    """

    __slots__ = ("_args", "_value")

    def __init__(self, assets: list[str], prices: Any, timestamps: Any = None) -> None:
        self._args: tuple | None = (assets, prices, timestamps)
        self._value: str | None = None

    def __str__(self) -> str:
        if self._value is None:
            self._value = input_hash(*self._args)
            self._args = None
        return self._value

    def __eq__(self, other: object) -> bool:
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __repr__(self) -> str:
        return f"LazyInputHash({str(self)!r})"


def input_hash(assets: list[str], prices: Any, timestamps: Any = None) -> str:
    """SHA-256 fingerprint of a request's inputs.

    Equal inputs give equal hashes; changing any price, the order of the assets, a
    timestamp or the shape of the prices gives another.

    Parameters
    ----------
    assets : list of str
        Asset names, in the order of the price columns.
    prices : array_like
        Prices, any shape (usually (n_dates, n_assets) or (n_assets,)); hashed as float64,
        with ``-0.0`` read as ``0.0`` and every NaN alike.
    timestamps : sequence, optional
        Times of the price rows: datetimes, pandas or numpy timestamps, ISO 8601 strings
        (an instant hashes alike in each form, naive ones read as UTC) or numbers (a
        number alike as a number or as its text); anything else by its text.

    Returns
    -------
    str
        64 hexadecimal characters.
    """
    p = np.asarray(prices, dtype=np.float64)
    p = np.where(np.isnan(p), np.nan, p + 0.0)  # one NaN, and -0.0 -> 0.0
    if timestamps is None:
        stamps = None
    elif isinstance(timestamps, str | datetime | date | np.datetime64):
        stamps = [_stamp_token(timestamps)]
    else:
        stamps = [_stamp_token(t) for t in np.ravel(np.asarray(timestamps, dtype=object))]
    header = {"assets": [str(a) for a in assets], "shape": list(p.shape),
              "timestamps": stamps}
    h = hashlib.sha256(json.dumps(header, separators=(",", ":")).encode())
    h.update(b"\x00")
    h.update(np.ascontiguousarray(p, dtype="<f8").tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------- the log
def _utc_naive(t: datetime) -> datetime:
    """``t`` in UTC without tzinfo (how times are stored); naive input is read as UTC."""
    if t.tzinfo is None:
        return t
    return t.astimezone(UTC).replace(tzinfo=None)


def _bounded(name: str, value: Any, *, nullable: bool = False) -> str | None:
    """``value`` as text that fits its column (a too long value would fail the whole
    batch's commit on databases that enforce lengths)."""
    if value is None:
        if nullable:
            return None
        raise ValueError(f"{name} is missing")
    text = str(value)
    if len(text) > _LIMITS[name]:
        raise ValueError(f"{name} has {len(text)} characters, more than {_LIMITS[name]}")
    return text


def _row(d: Decision) -> dict[str, Any]:
    did = d.decision_id.hex if isinstance(d.decision_id, uuid.UUID) else d.decision_id
    if not isinstance(did, str) or not did:
        raise ValueError(f"decision_id must be a non-empty string, got {did!r}")
    return {
        "decision_id": _bounded("decision_id", did),
        "time": _utc_naive(d.time),
        "portfolio": _bounded("portfolio", d.portfolio, nullable=True),
        "input_hash": _bounded("input_hash", d.input_hash),
        "model": _bounded("model", d.model),
        "assets": json.dumps([str(a) for a in d.assets]),
        "weights": json.dumps([float(w) for w in d.weights]),
        "fallback": bool(d.fallback),
        "reason": d.reason,
        "latency_us": float(d.latency_us),
    }


def _fix_for(exc: BaseException) -> str:
    """What to do about a failed commit, from the driver's message."""
    text = str(exc).lower()
    if "full" in text or "no space" in text or "quota" in text:
        return "the disk is full: free disk space (or raise the quota) on its volume"
    if "locked" in text or "busy" in text or "lock" in text:
        return ("another process holds a lock on it: find the process (a long transaction, "
                "a backup, an open sqlite3 shell) and end its transaction, or raise "
                "busy_timeout")
    if "readonly" in text or "read-only" in text or "permission" in text:
        return "it is not writable: check the file's and its directory's permissions"
    if "no such table" in text or "no such column" in text or "does not exist" in text:
        return ("its table 'decisions' was dropped or changed by someone else: restore it, "
                "or restart the service to create it again")
    return "check that the database is reachable and writable"


def _sqlite_value(v: Any) -> Any:
    """A row value as SQLAlchemy's SQLite types store it (times as
    ``YYYY-MM-DD HH:MM:SS.ffffff``, booleans as 0/1)."""
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(v, bool):
        return int(v)
    return v


def _close_at_exit(ref: weakref.ref) -> None:
    log = ref()
    if log is not None:
        log.close()


def _seconds(name: str, value: Any, *, low: float = 0.0, strict: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value) and (value > low if strict else value >= low)
    if not ok:
        raise ConfigError(f"{name} must be a finite number of seconds "
                          f"{'>' if strict else '>='} {low:g}, got {value!r}.")
    return float(value)


class AuditLog:
    """Decisions appended to a SQL table by one group-committing writer thread.

    Every :meth:`record` returns a :class:`Receipt`; a service answers only once the
    receipt has resolved (see the module's *Durability contract*).

    Parameters
    ----------
    url : str
        SQLAlchemy database URL. File SQLite databases use write-ahead logging; the
        in-memory ``sqlite://`` keeps one connection shared by all threads. The table
        ``decisions`` is created when missing, and a table of an older version (without
        ``decision_id``) gains the column (its old rows keep NULL).
    max_queue : int
        Decisions that may wait for the writer at once; :meth:`record` raises
        :class:`AuditUnavailable` beyond that.
    synchronous : {"normal", "full"}
        SQLite's ``PRAGMA synchronous`` for a file database (WAL mode). ``"normal"``:
        a committed decision survives any crash of the process (SIGKILL included) but
        the last commits may be lost on a power cut or an operating-system crash.
        ``"full"``: they survive that too; each commit waits for an ``fsync``.
    busy_timeout : float
        Seconds a SQLite commit waits for a lock held by another connection before it
        fails (``PRAGMA busy_timeout``).
    retry_after : float
        Seconds after a failed commit during which :meth:`record` refuses decisions at
        once; the first decisions admitted afterwards probe the database.
    flush_every : float, optional
        Kept for backward compatibility: the writer no longer waits between commits; a
        value only bounds how long the idle writer sleeps before looking at its queue
        again. Must be > 0 when given.

    Raises
    ------
    ConfigError
        A parameter is invalid, the URL is malformed or names an unknown database or
        driver, or the database cannot be opened.

    Notes
    -----
    Use it as a context manager or call :meth:`close`; an open log is also closed (its
    queue written and every receipt resolved) when the interpreter exits normally. A
    SIGKILL loses only decisions whose receipts had not resolved: none that a caller
    could have acknowledged. A batch whose commit fails quickly (within 0.1 s, say a
    stale pooled connection) is retried once; a lock wait or a full disk is not, and
    every receipt in the batch, and those queued behind it, fail with
    :class:`AuditWriteError`. A decision that cannot be stored (a malformed value, a
    repeated ``decision_id``) fails its own receipt only and leaves the log healthy.
    """

    def __init__(self, url: str = "sqlite:///audit.db", *, max_queue: int = 10_000,
                 synchronous: str = "normal", busy_timeout: float = 2.0,
                 retry_after: float = 1.0, flush_every: float | None = None) -> None:
        if not isinstance(max_queue, int) or isinstance(max_queue, bool) or max_queue < 1:
            raise ConfigError(f"max_queue must be a positive integer (decisions waiting "
                              f"for the writer), got {max_queue!r}.")
        if synchronous not in SYNCHRONOUS_MODES:
            allowed = ", ".join(map(repr, SYNCHRONOUS_MODES))
            raise ConfigError(f"synchronous must be one of {allowed}, got {synchronous!r}.")
        self.max_queue = max_queue
        self.synchronous = synchronous
        self.busy_timeout = _seconds("busy_timeout", busy_timeout)
        self.retry_after = _seconds("retry_after", retry_after)
        self.flush_every = None if flush_every is None else _seconds(
            "flush_every", flush_every, strict=True)
        self.url = url
        self.engine, self._in_memory = self._make_engine(url)
        self._shown_url = self.engine.url.render_as_string(hide_password=True)
        meta = sa.MetaData()
        self.table = sa.Table(
            "decisions", meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("decision_id", sa.String(32), index=True, unique=True),
            sa.Column("time", sa.DateTime, nullable=False, index=True),
            sa.Column("portfolio", sa.String(200), index=True),
            sa.Column("input_hash", sa.String(64), nullable=False),
            sa.Column("model", sa.String(200), nullable=False, index=True),
            sa.Column("assets", sa.Text, nullable=False),
            sa.Column("weights", sa.Text, nullable=False),
            sa.Column("fallback", sa.Boolean, nullable=False),
            sa.Column("reason", sa.Text),
            sa.Column("latency_us", sa.Float, nullable=False),
        )
        try:
            meta.create_all(self.engine)
            self._migrate()
        except SQLAlchemyError as exc:
            self.engine.dispose()
            detail = getattr(exc, "orig", None) or exc
            raise ConfigError(f"cannot open the audit database {self._shown_url} "
                              f"({type(detail).__name__}: {detail}); check that its directory "
                              f"exists and is writable (expected form: {_URL_FORM}).") from exc

        # The in-memory database is one shared connection: one statement at a time.
        self._db_lock: Any = threading.Lock() if self._in_memory else contextlib.nullcontext()
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)       # something queued, or stopping
        self._resolved_cond = threading.Condition(self._lock)
        self._queue: collections.deque[Receipt] = collections.deque()
        self._enqueued = 0
        self._resolved = 0
        self._in_flight = 0
        self._committed = 0
        self._failed = 0
        self._cancelled = 0
        self._refused = 0
        self._commits = 0
        self._last_commit: float | None = None
        self._failed_at: float | None = None     # monotonic time of the last failure
        self._reason: str | None = None          # set while unhealthy
        self._last_failure: str | None = None
        self._last_failure_at: float | None = None
        self._stopping = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="neuralfolio-audit-writer",
                                        daemon=True)
        self._thread.start()
        # One callable per log (unregister removes every registration of a callable).
        self._atexit = functools.partial(_close_at_exit, weakref.ref(self))
        atexit.register(self._atexit)

    def _make_engine(self, url: str) -> tuple[sa.Engine, bool]:
        try:
            parsed = sa.make_url(url)
        except (ArgumentError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid audit database URL {url!r}; expected "
                              f"{_URL_FORM}.") from exc
        shown = parsed.render_as_string(hide_password=True)
        in_memory = False
        kwargs: dict[str, Any] = {}
        sqlite = parsed.get_backend_name() == "sqlite"
        if sqlite:
            in_memory = parsed.database in (None, "", ":memory:")
            if in_memory:
                kwargs = {"poolclass": StaticPool,
                          "connect_args": {"check_same_thread": False}}
            else:
                kwargs = {"connect_args": {"timeout": self.busy_timeout}}
        try:
            engine = sa.create_engine(parsed, **kwargs)
        except NoSuchModuleError as exc:
            raise ConfigError(f"audit database URL {shown!r} names an unknown database "
                              f"or driver; expected {_URL_FORM}.") from exc
        except ImportError as exc:
            raise ConfigError(f"the driver for audit database URL {shown!r} is not "
                              f"installed ({exc}); install it or use {_URL_FORM}.") from exc
        except (ArgumentError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid audit database URL {shown!r} ({exc}); expected "
                              f"{_URL_FORM}.") from exc
        if sqlite and not in_memory:
            pragmas = (f"PRAGMA busy_timeout={round(self.busy_timeout * 1000)}",
                       "PRAGMA journal_mode=WAL",
                       f"PRAGMA synchronous={self.synchronous.upper()}")

            @sa.event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn, _record):  # pragma: no cover - run by the driver
                cur = dbapi_conn.cursor()
                for pragma in pragmas:
                    cur.execute(pragma)
                cur.close()

        return engine, in_memory

    def _migrate(self) -> None:
        """Give a ``decisions`` table of an older version the ``decision_id`` column."""
        with self.engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("decisions")}
        if "decision_id" in columns:
            return
        column = self.table.c.decision_id
        ddl = (f"ALTER TABLE decisions ADD COLUMN decision_id "
               f"{column.type.compile(dialect=self.engine.dialect)}")
        try:
            with self.engine.begin() as conn:
                conn.exec_driver_sql(ddl)
        except SQLAlchemyError:
            with self.engine.connect() as conn:   # another process may have just done it
                columns = {c["name"] for c in sa.inspect(conn).get_columns("decisions")}
            if "decision_id" not in columns:
                raise
        with self.engine.begin() as conn:
            for index in self.table.indexes:
                if column in index.columns.values():
                    index.create(conn, checkfirst=True)
        logger.info("audit: added the column decision_id to the table decisions of %s "
                    "(older rows have none)", self._shown_url)

    def __repr__(self) -> str:
        return f"AuditLog({self._shown_url!r})"

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------- writing
    def record(self, decision: Decision) -> Receipt:
        """Queue a decision for the writer thread; returns at once with its receipt.

        Give the decision out only once ``receipt.result(timeout)`` has returned (it
        raises :class:`AuditWriteError` when the commit failed). A caller that stops
        waiting calls ``receipt.cancel()``: True means it will never be written.

        Returns
        -------
        Receipt

        Raises
        ------
        AuditUnavailable
            ``max_queue`` decisions are already waiting, or the last commit failed less
            than ``retry_after`` seconds ago; nothing was queued.
        DataError
            ``decision.time`` is naive.
        ConfigError
            The log is closed.
        """
        if decision.time.tzinfo is None:
            raise DataError(f"decision time {decision.time.isoformat()} has no timezone; "
                            "use datetime.now(timezone.utc).")
        receipt = Receipt(decision)
        with self._lock:
            if self._stopping:
                raise ConfigError(f"{self!r} is closed; record decisions before close(), "
                                  "or open a new AuditLog.")
            if self._failed_at is not None:
                since = time.monotonic() - self._failed_at
                if since < self.retry_after:
                    self._refused += 1
                    raise AuditUnavailable(
                        f"{self!r} is unavailable: its last commit failed {since:.2f} s ago "
                        f"({self._reason}); decisions are refused for retry_after="
                        f"{self.retry_after:g} s after a failure, then tried again.")
            if len(self._queue) >= self.max_queue:
                self._refused += 1
                raise AuditUnavailable(
                    f"{self!r} is unavailable: {len(self._queue)} decisions already wait for "
                    f"the writer, the limit max_queue={self.max_queue}; the database is "
                    "slow or stuck. Retry shortly, or raise max_queue.")
            self._queue.append(receipt)
            self._enqueued += 1
            self._work.notify()
        return receipt

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every receipt handed out so far has resolved (committed, failed or
        cancelled).

        Raises
        ------
        TimeoutError
            Not done within ``timeout`` seconds.
        """
        with self._lock:
            target = self._enqueued
            if not self._resolved_cond.wait_for(lambda: self._resolved >= target, timeout):
                raise TimeoutError(
                    f"{self!r}: {target - self._resolved} decisions still unresolved after "
                    f"{timeout} s; the database may be locked or slow, flush again later.")

    def close(self) -> None:
        """Write everything queued, resolve every receipt and stop the writer thread;
        calling it again does nothing. Queries still work afterwards."""
        with self._lock:
            already = self._stopping
            self._stopping = True
            self._work.notify_all()
        self._thread.join()
        if already:
            return
        with self._lock:                # only if the writer died: nothing is left pending
            left = list(self._queue)
            self._queue.clear()
        if left:
            self._fail(left, AuditWriteError(f"{self!r} closed before these decisions were "
                                             "written; record them in a new AuditLog."))
            with self._lock:
                self._resolved += len(left)
                self._resolved_cond.notify_all()
        atexit.unregister(self._atexit)
        self._closed = True
        if not self._in_memory:
            self.engine.dispose()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has finished."""
        return self._closed

    @property
    def healthy(self) -> bool:
        """False from a failed commit until a later one succeeds, and once closed."""
        return self._failed_at is None and not self._stopping

    def health(self) -> dict[str, Any]:
        """The log's state, for a service's health check and metrics.

        Returns
        -------
        dict
            ``ok`` (:attr:`healthy`), ``reason`` (the failure while unhealthy, else
            None), ``queued`` (decisions waiting), ``in_flight`` (in the commit under
            way), ``committed``, ``failed`` (receipts resolved with
            :class:`AuditWriteError`), ``cancelled``, ``refused`` (:meth:`record` calls
            that raised :class:`AuditUnavailable`), ``commits`` (transactions committed;
            ``committed / commits`` is the batch size), ``last_commit_seconds``
            (duration of the last successful commit, or None), ``last_failure`` (the
            last failure ever, or None), ``since_failure_seconds`` (since then, or None),
            ``max_queue``, ``retry_after`` and ``closed``; counters are for this
            process since the log was opened.
        """
        with self._lock:
            since = (None if self._last_failure_at is None
                     else time.monotonic() - self._last_failure_at)
            return {
                "ok": self._failed_at is None and not self._stopping,
                "reason": self._reason if self._failed_at is not None else
                ("closed" if self._stopping else None),
                "queued": len(self._queue),
                "in_flight": self._in_flight,
                "committed": self._committed,
                "failed": self._failed,
                "cancelled": self._cancelled,
                "refused": self._refused,
                "commits": self._commits,
                "last_commit_seconds": self._last_commit,
                "last_failure": self._last_failure,
                "since_failure_seconds": since,
                "max_queue": self.max_queue,
                "retry_after": self.retry_after,
                "closed": self._stopping,
            }

    # -------------------------------------------------------------------- the writer
    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._work.wait(self.flush_every)
                if not self._queue:         # stopping, and everything written
                    return
                n = min(len(self._queue), MAX_BATCH)
                batch = [self._queue.popleft() for _ in range(n)]
                self._in_flight = n
            try:
                self._write(batch)
            except BaseException as exc:  # pragma: no cover - a bug; never leave a receipt
                logger.exception("audit: the writer failed")
                self._fail([r for r in batch if not r.done()],
                           AuditWriteError(f"{self!r}: the audit writer failed ({exc!r})."))
                if not isinstance(exc, Exception):
                    raise
            finally:
                with self._lock:
                    self._in_flight = 0
                    self._resolved += len(batch)
                    self._resolved_cond.notify_all()

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        """One transaction: insert ``rows`` and commit.

        SQLite goes through the driver's ``executemany`` on a pooled connection: a
        SQLAlchemy Core transaction costs ~0.4 ms of Python per commit, which a group
        commit of a few decisions pays on every request."""
        if self.engine.dialect.name != "sqlite":
            with self._db_lock, self.engine.begin() as conn:
                conn.execute(self.table.insert(), rows)
            return
        cols = [c.name for c in self.table.columns if c.name != "id"]
        sql = (f"INSERT INTO decisions ({', '.join(cols)}) VALUES "
               f"({', '.join('?' * len(cols))})")
        values = [tuple(_sqlite_value(r[c]) for c in cols) for r in rows]
        with self._db_lock:
            raw = self.engine.raw_connection()
            try:
                try:
                    raw.cursor().executemany(sql, values)
                    raw.commit()
                except BaseException:
                    with contextlib.suppress(Exception):
                        raw.rollback()
                    raise
            except sqlite3.IntegrityError as exc:
                raise IntegrityError(sql, None, exc) from exc
            finally:
                raw.close()

    def _write(self, batch: list[Receipt]) -> None:
        live: list[tuple[Receipt, dict[str, Any]]] = []
        for receipt in batch:
            if not receipt.set_running_or_notify_cancel():
                with self._lock:
                    self._cancelled += 1
                continue
            try:
                live.append((receipt, _row(receipt.decision)))
            except Exception as exc:  # a malformed decision must not sink the batch
                self._reject(receipt, exc)
        if live:
            self._commit(live)

    def _reject(self, receipt: Receipt, exc: BaseException) -> None:
        """Fail one decision that cannot be stored; the log stays healthy."""
        logger.error("audit: cannot store decision %s (%s: %s)", receipt.decision,
                     type(exc).__name__, exc)
        error = AuditWriteError(
            f"{self!r}: decision {getattr(receipt.decision, 'decision_id', '?')!s} cannot "
            f"be stored ({type(exc).__name__}: {exc}); fix the decision's values "
            "(each decision_id once, texts within their column's length).")
        error.__cause__ = exc
        with self._lock:
            self._failed += 1
        receipt.set_exception(error)

    def _commit(self, live: list[tuple[Receipt, dict[str, Any]]]) -> None:
        rows = [row for _, row in live]
        for attempt in (1, 2):
            t0 = time.monotonic()
            try:
                self._insert(rows)
            except IntegrityError:
                self._commit_one_by_one(live)
                return
            except Exception as exc:
                took = time.monotonic() - t0
                if attempt == 1 and took < _CHEAP_RETRY_S:
                    logger.warning("audit: committing %d decisions to %s failed (%s); "
                                   "retrying once", len(rows), self._shown_url, exc)
                    continue
                self._commit_failed([r for r, _ in live], exc)
                return
            self._commit_succeeded([r for r, _ in live], time.monotonic() - t0)
            return

    def _commit_one_by_one(self, live: list[tuple[Receipt, dict[str, Any]]]) -> None:
        """A batch broke a constraint (a repeated decision_id): find the culprits."""
        for k, (receipt, row) in enumerate(live):
            t0 = time.monotonic()
            try:
                self._insert([row])
            except IntegrityError as exc:
                self._reject(receipt, getattr(exc, "orig", None) or exc)
            except Exception as exc:
                self._commit_failed([r for r, _ in live[k:]], exc)
                return
            else:
                self._commit_succeeded([receipt], time.monotonic() - t0)

    def _commit_succeeded(self, receipts: list[Receipt], took: float) -> None:
        with self._lock:
            recovered = self._failed_at is not None
            self._failed_at, self._reason = None, None
            self._committed += len(receipts)
            self._commits += 1
            self._last_commit = took
        if recovered:
            logger.warning("audit: commits to %s succeed again", self._shown_url)
        for receipt in receipts:
            receipt.set_result(None)

    def _commit_failed(self, receipts: list[Receipt], exc: BaseException) -> None:
        detail = getattr(exc, "orig", None) or exc
        what = f"{type(detail).__name__}: {detail}"
        fix = _fix_for(detail)
        reason = f"committing to {self._shown_url} failed ({what}); {fix}"
        now = time.monotonic()
        with self._lock:
            self._failed_at = self._last_failure_at = now
            self._reason = self._last_failure = reason
            # Those queued behind a failed batch fail with it (fast): their callers
            # learn now rather than after another lock wait.
            behind = list(self._queue)
            self._queue.clear()
        logger.error("audit: committing %d decisions to %s failed (%s); %s. Decisions are "
                     "refused for %g s, then tried again", len(receipts) + len(behind),
                     self._shown_url, what, fix, self.retry_after)
        self._fail(receipts, exc, reason)
        if behind:
            taken = [r for r in behind if r.set_running_or_notify_cancel()]
            with self._lock:
                self._cancelled += len(behind) - len(taken)
            self._fail(taken, exc, f"not attempted: the commit just before failed; {reason}")
            with self._lock:
                self._resolved += len(behind)
                self._resolved_cond.notify_all()

    def _fail(self, receipts: list[Receipt], exc: BaseException,
              message: str | None = None) -> None:
        with self._lock:
            self._failed += len(receipts)
        for receipt in receipts:
            error = AuditWriteError(f"decision {receipt.decision_id} is not recorded: "
                                    f"{message or exc}")
            error.__cause__ = exc
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                receipt.set_exception(error)
    # -------------------------------------------------------------------- reading
    def query(self, *, portfolio: str | None = None, model: str | None = None,
              fallback: bool | None = None, since: datetime | None = None,
              until: datetime | None = None, decision_id: str | None = None,
              limit: int | None = 100) -> list[dict[str, Any]]:
        """Committed decisions, newest first.

        Parameters
        ----------
        portfolio, model : str, optional
            Keep only this portfolio / model label.
        fallback : bool, optional
            Keep only fallback (True) or model (False) decisions.
        since, until : datetime, optional
            Keep ``since <= time < until`` (naive values read as UTC).
        decision_id : str, optional
            Keep only the decision with this id (at most one row).
        limit : int or None
            At most this many rows (None: all).

        Returns
        -------
        list of dict
            Keys ``id``, ``decision_id`` (None for rows written before the column
            existed), ``time`` (aware, UTC), ``portfolio``, ``input_hash``, ``model``,
            ``assets`` (list), ``weights`` (list), ``fallback``, ``reason``,
            ``latency_us``. Only committed decisions: wait for a receipt (or call
            :meth:`flush`) to include a decision just recorded.
        """
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ConfigError(f"limit must be a positive integer or None, got {limit!r}.")
        t = self.table
        stmt = sa.select(t)
        if portfolio is not None:
            stmt = stmt.where(t.c.portfolio == portfolio)
        if model is not None:
            stmt = stmt.where(t.c.model == model)
        if fallback is not None:
            stmt = stmt.where(t.c.fallback == bool(fallback))
        if since is not None:
            stmt = stmt.where(t.c.time >= _utc_naive(since))
        if until is not None:
            stmt = stmt.where(t.c.time < _utc_naive(until))
        if decision_id is not None:
            stmt = stmt.where(t.c.decision_id == str(decision_id))
        stmt = stmt.order_by(t.c.time.desc(), t.c.id.desc())
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._db_lock, self.engine.connect() as conn:
            rows = conn.execute(stmt).mappings().all()
        out = []
        for r in rows:
            d = dict(r)
            d["time"] = d["time"].replace(tzinfo=UTC)
            d["assets"] = json.loads(d["assets"])
            d["weights"] = json.loads(d["weights"])
            d["fallback"] = bool(d["fallback"])
            out.append(d)
        return out

    def count(self) -> int:
        """Number of committed decisions."""
        with self._db_lock, self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(self.table))
                       .scalar_one())
