"""An append-only audit log of every weight decision the service makes.

:class:`AuditLog` keeps one row per :class:`Decision` in a SQL table ``decisions`` (any
SQLAlchemy URL; SQLite by default). :meth:`AuditLog.record` only puts the decision on a
queue, so a request never waits for the database: a background thread commits the queue
in batches, every ``flush_every`` seconds or as soon as 500 decisions are waiting.
:meth:`AuditLog.flush` waits for everything recorded so far, :meth:`AuditLog.close` drains
the queue and stops the thread.

A batch whose commit fails is tried once more; if that fails too the error is logged
(logger ``neuralfolio.serve.audit``) and the decisions are kept in :attr:`AuditLog.failed`
rather than dropped.

:func:`input_hash` fingerprints a request's inputs (assets, prices, timestamps), so a
decision can be matched with the data it came from.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import logging
import queue
import threading
import weakref
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from neuralfolio.errors import ConfigError, DataError

__all__ = ["AuditLog", "Decision", "LazyInputHash", "input_hash"]

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
"""Decisions waiting in the queue that wake the writer before ``flush_every`` is up."""
_URL_FORM = ("dialect[+driver]://[user[:password]@host[:port]]/database, for example "
             "sqlite:///audit.db, sqlite:// (in memory) or postgresql+psycopg://host/db")


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


def _row(d: Decision) -> dict[str, Any]:
    return {
        "time": _utc_naive(d.time),
        "portfolio": d.portfolio,
        "input_hash": str(d.input_hash),
        "model": str(d.model),
        "assets": json.dumps([str(a) for a in d.assets]),
        "weights": json.dumps([float(w) for w in d.weights]),
        "fallback": bool(d.fallback),
        "reason": d.reason,
        "latency_us": float(d.latency_us),
    }


def _close_at_exit(ref: weakref.ref) -> None:
    log = ref()
    if log is not None:
        log.close()


class AuditLog:
    """Decisions appended to a SQL table by a background writer thread.

    Parameters
    ----------
    url : str
        SQLAlchemy database URL. File SQLite databases use write-ahead logging; the
        in-memory ``sqlite://`` keeps one connection shared by all threads. The table
        ``decisions`` is created when missing.
    flush_every : float
        Seconds between the writer's commits (sooner when 500 decisions are waiting).

    Attributes
    ----------
    failed : list of Decision
        Decisions whose commit failed twice (the error is logged); nothing is dropped.

    Raises
    ------
    ConfigError
        The URL is malformed, names an unknown database or driver, or the database
        cannot be opened.

    Notes
    -----
    Use it as a context manager or call :meth:`close`; an open log is also closed (its
    queue written) when the interpreter exits normally.
    """

    def __init__(self, url: str = "sqlite:///audit.db", *, flush_every: float = 0.2) -> None:
        if not flush_every > 0:
            raise ConfigError(f"flush_every must be > 0 seconds, got {flush_every!r}.")
        self.flush_every = float(flush_every)
        self.url = url
        self.engine, self._in_memory = self._make_engine(url)
        self._shown_url = self.engine.url.render_as_string(hide_password=True)
        meta = sa.MetaData()
        self.table = sa.Table(
            "decisions", meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
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
        except SQLAlchemyError as exc:
            self.engine.dispose()
            detail = getattr(exc, "orig", None) or exc
            raise ConfigError(f"cannot open the audit database {self._shown_url} "
                              f"({type(detail).__name__}: {detail}); check that its directory "
                              f"exists and is writable (expected form: {_URL_FORM}).") from exc

        self.failed: list[Decision] = []
        self._queue: queue.SimpleQueue[Decision] = queue.SimpleQueue()
        self._db_lock = threading.Lock()    # one statement at a time on the shared engine
        self._count_lock = threading.Lock()
        self._done_cond = threading.Condition()
        self._wake = threading.Event()
        self._enqueued = 0
        self._done = 0
        self._stopping = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="neuralfolio-audit-writer",
                                        daemon=True)
        self._thread.start()
        # One callable per log (unregister removes every registration of a callable).
        self._atexit = functools.partial(_close_at_exit, weakref.ref(self))
        atexit.register(self._atexit)

    @staticmethod
    def _make_engine(url: str) -> tuple[sa.Engine, bool]:
        try:
            parsed = sa.make_url(url)
        except (ArgumentError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid audit database URL {url!r}; expected "
                              f"{_URL_FORM}.") from exc
        shown = parsed.render_as_string(hide_password=True)
        in_memory = False
        kwargs: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            in_memory = parsed.database in (None, "", ":memory:")
            if in_memory:
                kwargs = {"poolclass": StaticPool,
                          "connect_args": {"check_same_thread": False}}
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
        if parsed.get_backend_name() == "sqlite" and not in_memory:

            @sa.event.listens_for(engine, "connect")
            def _wal(dbapi_conn, _record):  # pragma: no cover - run by the driver
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA busy_timeout=5000")
                cur.close()

        return engine, in_memory

    def __repr__(self) -> str:
        return f"AuditLog({self._shown_url!r})"

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------- writing
    def record(self, decision: Decision) -> None:
        """Queue a decision for the writer thread; returns at once.

        Raises
        ------
        DataError
            ``decision.time`` is naive.
        ConfigError
            The log is closed.
        """
        if decision.time.tzinfo is None:
            raise DataError(f"decision time {decision.time.isoformat()} has no timezone; "
                            "use datetime.now(timezone.utc).")
        with self._count_lock:
            if self._stopping:
                raise ConfigError(f"{self!r} is closed; record decisions before close(), "
                                  "or open a new AuditLog.")
            self._enqueued += 1
            self._queue.put(decision)
        if self._queue.qsize() >= BATCH_SIZE:
            self._wake.set()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every decision recorded so far is committed (or in :attr:`failed`).

        Raises
        ------
        TimeoutError
            Not done within ``timeout`` seconds.
        """
        with self._count_lock:
            target = self._enqueued
        self._wake.set()
        with self._done_cond:
            if not self._done_cond.wait_for(lambda: self._done >= target, timeout):
                raise TimeoutError(
                    f"{self!r}: {target - self._done} decisions still uncommitted after "
                    f"{timeout} s; the database may be locked or slow, flush again later.")

    def close(self) -> None:
        """Write everything queued and stop the writer thread; calling it again does
        nothing. Queries still work afterwards."""
        with self._count_lock:
            if self._stopping:
                already = True
            else:
                already, self._stopping = False, True
        if already:
            self._thread.join()
            return
        self._wake.set()
        self._thread.join()
        atexit.unregister(self._atexit)
        self._closed = True
        if not self._in_memory:
            self.engine.dispose()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has finished."""
        return self._closed

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_every)
            self._wake.clear()
            stopping = self._stopping
            self._drain()
            if stopping:    # record() refuses new decisions once the flag is set
                return

    def _drain(self) -> None:
        while True:
            batch: list[Decision] = []
            try:
                while len(batch) < 5 * BATCH_SIZE:
                    batch.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            if not batch:
                return
            self._write(batch)

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        with self._db_lock, self.engine.begin() as conn:
            conn.execute(self.table.insert(), rows)

    def _write(self, batch: list[Decision]) -> None:
        try:
            rows, good = [], []
            for d in batch:
                try:
                    rows.append(_row(d))
                    good.append(d)
                except Exception as exc:  # a malformed decision must not sink the batch
                    logger.error("audit: cannot store decision %r (%s); kept in "
                                 "AuditLog.failed", d, exc)
                    self.failed.append(d)
            if rows:
                for attempt in (1, 2):
                    try:
                        self._insert(rows)
                        break
                    except Exception as exc:
                        if attempt == 1:
                            logger.warning("audit: committing %d decisions to %s failed "
                                           "(%s); retrying once", len(rows), self._shown_url,
                                           exc)
                        else:
                            logger.error("audit: committing %d decisions to %s failed "
                                         "again (%s); kept in AuditLog.failed", len(rows),
                                         self._shown_url, exc)
                            self.failed.extend(good)
        finally:
            with self._done_cond:
                self._done += len(batch)
                self._done_cond.notify_all()

    # -------------------------------------------------------------------- reading
    def query(self, *, portfolio: str | None = None, model: str | None = None,
              fallback: bool | None = None, since: datetime | None = None,
              until: datetime | None = None, limit: int | None = 100) -> list[dict[str, Any]]:
        """Committed decisions, newest first.

        Parameters
        ----------
        portfolio, model : str, optional
            Keep only this portfolio / model label.
        fallback : bool, optional
            Keep only fallback (True) or model (False) decisions.
        since, until : datetime, optional
            Keep ``since <= time < until`` (naive values read as UTC).
        limit : int or None
            At most this many rows (None: all).

        Returns
        -------
        list of dict
            Keys ``id``, ``time`` (aware, UTC), ``portfolio``, ``input_hash``, ``model``,
            ``assets`` (list), ``weights`` (list), ``fallback``, ``reason``,
            ``latency_us``. Call :meth:`flush` first to include decisions just recorded.
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
