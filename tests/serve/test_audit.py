"""AuditLog (group-committing writer, receipts, queries, failures) and input_hash."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from neuralfolio.errors import ConfigError, DataError, NeuralfolioError
from neuralfolio.serve.audit import (
    MAX_BATCH,
    AuditLog,
    AuditUnavailable,
    AuditWriteError,
    Decision,
    Receipt,
    input_hash,
)

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def decision(i: int, *, portfolio: str | None = "p0", model: str = "dense:1",
             fallback: bool = False, when: datetime | None = None) -> Decision:
    return Decision(
        time=when or T0 + timedelta(seconds=i), portfolio=portfolio,
        input_hash=f"{i:064x}", model=model, assets=["A", "B", "C"],
        weights=[0.2, 0.3 + i * 1e-6, 0.5 - i * 1e-6], fallback=fallback,
        reason="output check failed" if fallback else None, latency_us=10.0 + i)


@pytest.fixture
def log():
    log = AuditLog("sqlite://")
    yield log
    log.close()


def wait_until(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


class Gate:
    """Holds the writer inside ``_insert`` until :meth:`release`, so that tests decide
    which decisions wait together (the next batch takes all of them)."""

    def __init__(self, log: AuditLog) -> None:
        self.log, self.real = log, log._insert
        self.opened = threading.Event()
        self.calls: list[int] = []
        log._insert = self

    def __call__(self, rows):
        self.calls.append(len(rows))
        assert self.opened.wait(20), "gate never released"
        self.real(rows)

    def plug(self) -> Receipt:
        """Record one decision and wait until the writer is stuck committing it."""
        receipt = self.log.record(decision(999_999))
        wait_until(lambda: self.calls)
        return receipt

    def release(self) -> None:
        self.opened.set()


# ---------------------------------------------------------------------------- writing
def test_concurrent_records_all_committed(log):
    receipts: list[Receipt] = []

    def work(k):
        mine = [log.record(decision(k * 250 + j, portfolio=f"p{k}")) for j in range(250)]
        receipts.extend(mine)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(receipts) == 1000
    assert all(r.result(timeout=10) is None for r in receipts)
    assert log.count() == 1000
    rows = log.query(limit=None)
    assert len(rows) == 1000 and len({r["id"] for r in rows}) == 1000
    assert {r["decision_id"] for r in rows} == {r.decision_id for r in receipts}
    assert sorted(r["input_hash"] for r in rows) == [f"{i:064x}" for i in range(1000)]
    assert {r["portfolio"] for r in rows} == {"p0", "p1", "p2", "p3"}
    h = log.health()
    assert h["ok"] and h["committed"] == 1000 and h["failed"] == 0 and h["queued"] == 0
    assert 1 <= h["commits"] <= 1000


def test_receipt_resolves_without_flush(log):
    r = log.record(decision(1))
    assert isinstance(r, Receipt) and r.decision.input_hash == f"{1:064x}"
    assert r.result(timeout=10) is None         # the writer commits on its own, no delay
    assert r.done() and not r.cancelled() and not r.cancel()
    assert log.query(decision_id=r.decision_id)[0]["input_hash"] == f"{1:064x}"


def test_record_does_not_wait_for_the_database(log):
    gate = Gate(log)
    plug = gate.plug()            # the database is "stuck" while we record
    receipts = [log.record(decision(i)) for i in range(200)]
    assert not plug.done() and not any(r.done() for r in receipts)
    assert log.count() == 0 and log.health()["queued"] == 200
    gate.release()
    assert all(r.result(timeout=10) is None for r in [plug, *receipts])
    assert log.count() == 201
    assert gate.calls == [1, 200]   # everything that waited went into one transaction


def test_a_batch_holds_at_most_max_batch(log):
    gate = Gate(log)
    gate.plug()
    receipts = [log.record(decision(i)) for i in range(MAX_BATCH + 5)]
    gate.release()
    log.flush()
    assert all(r.result(0) is None for r in receipts)
    assert gate.calls == [1, MAX_BATCH, 5]


def test_decision_ids(log):
    a, b = decision(1), decision(2)
    assert len(a.decision_id) == 32 and int(a.decision_id, 16) >= 0
    assert a.decision_id != b.decision_id
    named = Decision(T0, "p0", "h", "m", ["A"], [1.0], False, None, 1.0, "my-own-id")
    for d in (a, b, named):
        log.record(d).result(timeout=10)
    assert log.query(decision_id="my-own-id")[0]["input_hash"] == "h"
    assert log.query(decision_id=a.decision_id)[0]["input_hash"] == a.input_hash
    assert log.query(decision_id="nobody") == []


def test_round_trip_of_a_decision(log):
    d = Decision(time=datetime(2024, 5, 6, 9, 30, 1, 123456, tzinfo=timezone(timedelta(hours=2))),
                 portfolio=None, input_hash=input_hash(["X", "Y"], [[1.0, 2.0]]),
                 model="optimizer", assets=["Y", "X"],
                 weights=[np.float64(0.1), 0.9 + 1e-15], fallback=True,
                 reason="stale model", latency_us=123.25)
    log.record(d)
    log.flush()
    (row,) = log.query()
    assert row["time"] == d.time and row["time"].tzinfo == UTC
    assert row["time"].hour == 7                      # stored in UTC
    assert row["portfolio"] is None and row["input_hash"] == d.input_hash
    assert row["model"] == "optimizer"
    assert row["assets"] == ["Y", "X"] and row["weights"] == [0.1, 0.9 + 1e-15]
    assert row["fallback"] is True and row["reason"] == "stale model"
    assert row["latency_us"] == 123.25 and isinstance(row["id"], int)
    assert row["decision_id"] == d.decision_id


def test_query_filters_and_order(log):
    decisions = [decision(i, portfolio=[None, "p1", "p2"][i % 3],
                          model="dense:1" if i % 2 else "optimizer", fallback=i % 4 == 0)
                 for i in range(40)]
    for d in reversed(decisions):       # insertion order must not matter
        log.record(d)
    log.flush()

    def hashes(rows):
        return [r["input_hash"] for r in rows]

    def expect(pred):
        return [d.input_hash for d in sorted(decisions, key=lambda d: d.time, reverse=True)
                if pred(d)]

    assert hashes(log.query(limit=None)) == expect(lambda d: True)        # newest first
    assert hashes(log.query(limit=5)) == expect(lambda d: True)[:5]
    assert hashes(log.query(portfolio="p1", limit=None)) == expect(lambda d: d.portfolio == "p1")
    assert hashes(log.query(model="optimizer", limit=None)) == expect(
        lambda d: d.model == "optimizer")
    assert hashes(log.query(fallback=True, limit=None)) == expect(lambda d: d.fallback)
    assert hashes(log.query(fallback=False, limit=None)) == expect(lambda d: not d.fallback)
    since, until = T0 + timedelta(seconds=10), T0 + timedelta(seconds=20)
    assert hashes(log.query(since=since, until=until, limit=None)) == expect(
        lambda d: since <= d.time < until)
    # Other time zones and naive (UTC) bounds mean the same instants.
    assert hashes(log.query(since=since.astimezone(timezone(timedelta(hours=-5))),
                            until=until.replace(tzinfo=None), limit=None)) == expect(
        lambda d: since <= d.time < until)
    assert hashes(log.query(portfolio="p2", model="dense:1", fallback=False, since=since,
                            limit=2)) == expect(
        lambda d: d.portfolio == "p2" and d.model == "dense:1" and not d.fallback
        and d.time >= since)[:2]
    assert log.query(portfolio="nobody") == []
    assert len(log.query()) == 40 and len(log.query(limit=100)) == 40
    with pytest.raises(ConfigError, match="limit"):
        log.query(limit=0)


@pytest.mark.parametrize("synchronous, level", [("normal", 1), ("full", 2)])
def test_file_database_persists_and_uses_wal(tmp_path, synchronous, level):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    with AuditLog(url, synchronous=synchronous, busy_timeout=0.25) as log:
        for i in range(30):
            log.record(decision(i))
        log.flush()
        assert log.count() == 30
        with log.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == level
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 250
    assert log.closed
    again = AuditLog(url)
    try:
        assert again.count() == 30
        again.record(decision(99))
    finally:
        again.close()
    with AuditLog(url) as third:
        assert third.count() == 31


def test_close_is_idempotent_and_drains():
    log = AuditLog("sqlite://", flush_every=60.0)   # still accepted; delays nothing
    gate = Gate(log)
    receipts = [gate.plug()] + [log.record(decision(i)) for i in range(10)]
    closer = threading.Thread(target=log.close)
    closer.start()
    wait_until(lambda: log.health()["closed"])
    with pytest.raises(ConfigError, match="closed"):
        log.record(decision(11))     # refused as soon as close() began
    gate.release()
    closer.join()                    # no flush: close must write the queue
    assert all(r.done() and r.result(0) is None for r in receipts)
    assert log.count() == 11
    log.close()
    assert log.closed and not log._thread.is_alive()
    assert not log.healthy and not log.health()["ok"]
    log.flush()                      # nothing pending: returns at once
    with pytest.raises(ConfigError, match="closed"):
        log.record(decision(12))
    assert len(log.query()) == 11    # reading still works


def test_flush_times_out_while_the_writer_is_stuck(log):
    gate = Gate(log)
    gate.plug()
    log.record(decision(1))
    with pytest.raises(TimeoutError, match="2 decisions still unresolved"):
        log.flush(timeout=0.05)
    gate.release()
    log.flush()


def test_naive_time_rejected(log):
    with pytest.raises(DataError, match="timezone"):
        log.record(decision(0, when=datetime(2024, 1, 1)))


# ---------------------------------------------------------------------------- failures
def test_a_quick_failure_is_retried_once(log, caplog):
    real, calls = log._insert, []

    def flaky(rows):
        calls.append(len(rows))
        if len(calls) == 2:      # the batch after the plug fails once, at once
            raise sa.exc.OperationalError("INSERT", {}, Exception("server closed the "
                                                                  "connection"))
        real(rows)

    log._insert = flaky
    gate = Gate(log)
    gate.plug()
    receipts = [log.record(decision(i)) for i in range(5)]
    with caplog.at_level(logging.WARNING, logger="neuralfolio.serve.audit"):
        gate.release()
        assert all(r.result(timeout=10) is None for r in receipts)
    assert log.count() == 6 and log.healthy
    assert calls == [1, 5, 5]
    assert "retrying once" in caplog.text
    assert log.health()["failed"] == 0


def test_receipts_fail_when_the_database_fails(tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    log = AuditLog(url, retry_after=60.0)
    log.record(decision(0)).result(timeout=10)
    gate = Gate(log)
    plug = gate.plug()
    # Break the database under the writer: its table disappears.
    other = sa.create_engine(url)
    with other.begin() as conn:
        conn.exec_driver_sql("DROP TABLE decisions")
    other.dispose()
    behind = [log.record(decision(i)) for i in range(1, 8)]
    with caplog.at_level(logging.WARNING, logger="neuralfolio.serve.audit"):
        gate.release()
        log.flush()
    for r in [plug, *behind]:
        with pytest.raises(AuditWriteError, match="no such table") as info:
            r.result(0)
        assert r.decision_id in str(info.value) and "sqlite:///" in str(info.value)
        assert isinstance(info.value, NeuralfolioError)
    with pytest.raises(AuditWriteError, match="not attempted"):
        behind[0].result(0)
    assert gate.calls == [1, 1]                 # failed at once: retried once, then given up
    h = log.health()
    assert not log.healthy and not h["ok"] and "no such table" in h["reason"]
    assert h["failed"] == 8 and h["committed"] == 1 and h["since_failure_seconds"] >= 0
    with pytest.raises(AuditUnavailable, match="retry_after=60") as info:
        log.record(decision(9))
    assert "no such table" in info.value.reason
    assert log.health()["refused"] == 1
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "restart the service" in errors[0].getMessage()
    assert "retrying once" in caplog.text
    log.close()                                 # closing an unhealthy log still works
    assert log.closed


def test_malformed_decision_fails_alone(log):
    gate = Gate(log)
    gate.plug()
    good, bad, long = decision(1), decision(2), decision(3)
    bad.weights = ["not a number"]
    long.model = "m" * 201
    receipts = [log.record(d) for d in (good, bad, long)]
    gate.release()
    log.flush()
    assert receipts[0].result(0) is None
    with pytest.raises(AuditWriteError, match=r"cannot be stored.*could not convert"):
        receipts[1].result(0)
    with pytest.raises(AuditWriteError, match="model has 201 characters"):
        receipts[2].result(0)
    assert log.healthy and log.health()["failed"] == 2
    assert {r["input_hash"] for r in log.query()} == {good.input_hash, f"{999_999:064x}"}


def test_repeated_decision_id_fails_alone(log):
    first = decision(1)
    assert log.record(first).result(timeout=10) is None
    gate = Gate(log)
    gate.plug()
    again, other = log.record(first), log.record(decision(2))
    twin = decision(3)
    twin.decision_id = other.decision_id        # repeated inside one batch too
    twin_receipt = log.record(twin)
    gate.release()
    log.flush()
    with pytest.raises(AuditWriteError, match="each decision_id once"):
        again.result(0)
    assert other.result(0) is None
    with pytest.raises(AuditWriteError, match="cannot be stored"):
        twin_receipt.result(0)
    assert log.healthy and log.count() == 3
    assert log.record(decision(4)).result(timeout=10) is None


@pytest.mark.parametrize("url, match", [
    ("not a url", "invalid audit database URL 'not a url'"),
    ("nosuchdb://host/db", "unknown database or driver"),
    ("sqlite:////nonexistent-dir/deeper/audit.db", "cannot open the audit database"),
])
def test_bad_url(url, match):
    with pytest.raises(ConfigError, match=match) as info:
        AuditLog(url)
    assert "sqlite:///audit.db" in str(info.value)     # the expected form


@pytest.mark.parametrize("kwargs, match", [
    ({"flush_every": 0}, r"flush_every must be .* > 0"),
    ({"flush_every": -1.0}, "flush_every"),
    ({"max_queue": 0}, "max_queue must be a positive integer"),
    ({"max_queue": 2.5}, "max_queue"),
    ({"max_queue": True}, "max_queue"),
    ({"synchronous": "off"}, "synchronous must be one of 'normal', 'full', got 'off'"),
    ({"synchronous": "FULL"}, "synchronous must be one of"),
    ({"busy_timeout": -1}, "busy_timeout must be a finite number of seconds >= 0"),
    ({"busy_timeout": float("nan")}, "busy_timeout"),
    ({"retry_after": -0.5}, "retry_after must be a finite number of seconds >= 0"),
    ({"retry_after": "1"}, "retry_after"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        AuditLog("sqlite://", **kwargs)


def test_health_keys(log):
    h = log.health()
    assert {"ok", "reason", "queued", "committed", "failed", "last_commit_seconds",
            "since_failure_seconds"} <= set(h)
    assert h["ok"] is True and h["reason"] is None and h["queued"] == 0
    assert h["committed"] == 0 and h["failed"] == 0
    assert h["last_commit_seconds"] is None and h["since_failure_seconds"] is None
    log.record(decision(1)).result(timeout=10)
    h = log.health()
    assert h["committed"] == 1 and h["commits"] == 1 and h["last_commit_seconds"] >= 0
    assert log.healthy


def test_password_not_shown(tmp_path):
    with pytest.raises(ConfigError) as info:
        AuditLog("nosuchdb://user:s3cret@host/db")
    assert "s3cret" not in str(info.value)


# ---------------------------------------------------------------------------- hashing
prices_2d = arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(2, 4)),
                   elements=st.floats(-1e6, 1e6, allow_nan=False))


@settings(max_examples=60, deadline=None)
@given(prices_2d, st.data())
def test_input_hash_stable_and_sensitive(prices, data):
    n = prices.shape[1]
    assets = [f"a{i}" for i in range(n)]
    stamps = list(pd.date_range("2024-01-01", periods=len(prices), freq="D", tz="UTC"))
    h = input_hash(assets, prices, stamps)
    assert len(h) == 64 and int(h, 16) >= 0
    assert input_hash(list(assets), prices.copy(), list(stamps)) == h
    assert input_hash(assets, prices.tolist(), stamps) == h
    # One price changed.
    i = data.draw(st.integers(0, prices.size - 1))
    changed = prices.copy().ravel()
    changed[i] += 1.0
    assert input_hash(assets, changed.reshape(prices.shape), stamps) != h
    # Asset order changed (same prices).
    j = data.draw(st.integers(1, n - 1))
    swapped = assets.copy()
    swapped[0], swapped[j] = swapped[j], swapped[0]
    assert input_hash(swapped, prices, stamps) != h
    # One timestamp changed, or none given.
    k = data.draw(st.integers(0, len(stamps) - 1))
    moved = stamps.copy()
    moved[k] = moved[k] + pd.Timedelta(seconds=1)
    assert input_hash(assets, prices, moved) != h
    assert input_hash(assets, prices) != h


def test_input_hash_shape_and_canonical_forms():
    p = np.arange(6.0).reshape(2, 3)
    assets = ["A", "B", "C"]
    assert input_hash(assets, p) != input_hash(assets, p.reshape(3, 2))
    assert input_hash(assets, p) != input_hash(assets, p.ravel())
    assert input_hash(assets, [0.0, 1.0, np.nan]) == input_hash(assets, [-0.0, 1.0, -np.nan])
    assert input_hash(["A"], [1.0]) != input_hash(["A"], [1.0 + 1e-12])
    # One instant, several spellings.
    t = datetime(2024, 1, 2, 15, 30, 0, 250000, tzinfo=UTC)
    forms = [
        [t],
        [t.astimezone(timezone(timedelta(hours=-4)))],
        [t.isoformat()],
        ["2024-01-02T15:30:00.25Z"],
        [pd.Timestamp(t)],
        np.array(["2024-01-02T15:30:00.250"], dtype="datetime64[ms]"),
        [t.replace(tzinfo=None)],                       # naive = UTC
    ]
    hashes = {input_hash(["A"], [1.0], f) for f in forms}
    assert len(hashes) == 1
    assert input_hash(["A"], [1.0], [date(2024, 1, 2)]) == input_hash(
        ["A"], [1.0], ["2024-01-02"])
    # Numbers, as numbers or text, and arbitrary labels never fail.
    assert input_hash(["A"], [1.0], [1700000000.5]) == input_hash(["A"], [1.0], ["1700000000.5"])
    assert input_hash(["A"], [1.0], [3]) == input_hash(["A"], [1.0], [3.0])
    assert input_hash(["A"], [1.0], ["tick-7"]) != input_hash(["A"], [1.0], ["tick-8"])
    assert input_hash(["A"], [1.0], []) != input_hash(["A"], [1.0])
