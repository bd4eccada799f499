"""AuditLog (background writer, queries, failures) and input_hash."""

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

from neuralfolio.errors import ConfigError, DataError
from neuralfolio.serve.audit import BATCH_SIZE, AuditLog, Decision, input_hash

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
    log = AuditLog("sqlite://", flush_every=0.02)
    yield log
    log.close()


def wait_until(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


# ---------------------------------------------------------------------------- writing
def test_concurrent_records_all_committed(log):
    def work(k):
        for j in range(250):
            log.record(decision(k * 250 + j, portfolio=f"p{k}"))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.flush()
    assert log.count() == 1000
    rows = log.query(limit=None)
    assert len(rows) == 1000 and len({r["id"] for r in rows}) == 1000
    assert sorted(r["input_hash"] for r in rows) == [f"{i:064x}" for i in range(1000)]
    assert {r["portfolio"] for r in rows} == {"p0", "p1", "p2", "p3"}
    assert log.failed == []


def test_record_does_not_wait_for_the_database(log):
    hold = threading.Lock()
    real = log._insert

    def slow(rows):
        with hold:
            real(rows)

    log._insert = slow
    with hold:                    # the database is "stuck" while we record
        t = time.perf_counter()
        for i in range(200):
            log.record(decision(i))
        assert time.perf_counter() - t < 0.5
        assert log.count() == 0
    log.flush()
    assert log.count() == 200


def test_writer_commits_on_its_own_and_on_batch_size():
    log = AuditLog("sqlite://", flush_every=0.05)
    try:
        for i in range(3):
            log.record(decision(i))
        wait_until(lambda: log.count() == 3)
    finally:
        log.close()
    slow = AuditLog("sqlite://", flush_every=60.0)   # only a full batch wakes the writer
    try:
        for i in range(BATCH_SIZE):
            slow.record(decision(i))
        wait_until(lambda: slow.count() == BATCH_SIZE)
    finally:
        slow.close()


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


def test_file_database_persists_and_uses_wal(tmp_path):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    with AuditLog(url, flush_every=0.01) as log:
        for i in range(30):
            log.record(decision(i))
        log.flush()
        assert log.count() == 30
        with log.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
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
    log = AuditLog("sqlite://", flush_every=60.0)
    for i in range(10):
        log.record(decision(i))
    log.close()                      # no flush: close must write the queue
    assert log.count() == 10
    log.close()
    assert log.closed and not log._thread.is_alive()
    log.flush()                      # nothing pending: returns at once
    with pytest.raises(ConfigError, match="closed"):
        log.record(decision(11))
    assert len(log.query()) == 10    # reading still works


def test_naive_time_rejected(log):
    with pytest.raises(DataError, match="timezone"):
        log.record(decision(0, when=datetime(2024, 1, 1)))


# ---------------------------------------------------------------------------- failures
def test_failed_commit_is_retried_once(log, caplog):
    real, calls = log._insert, []

    def flaky(rows):
        calls.append(len(rows))
        if len(calls) == 1:
            raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))
        real(rows)

    log._insert = flaky
    for i in range(5):
        log.record(decision(i))
    with caplog.at_level(logging.WARNING, logger="neuralfolio.serve.audit"):
        log.flush()
    assert log.count() == 5 and log.failed == []
    assert calls == [5, 5]
    assert "retrying once" in caplog.text


def test_batch_kept_when_the_database_fails(tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    log = AuditLog(url, flush_every=0.01)
    log.record(decision(0))
    log.flush()
    # Break the database under the writer: its table disappears.
    other = sa.create_engine(url)
    with other.begin() as conn:
        conn.exec_driver_sql("DROP TABLE decisions")
    other.dispose()
    lost = [decision(i) for i in range(1, 8)]
    with caplog.at_level(logging.WARNING, logger="neuralfolio.serve.audit"):
        for d in lost:
            log.record(d)
        log.flush()
    assert log.failed == lost
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "kept in AuditLog.failed" in errors[0].getMessage()
    assert "retrying once" in caplog.text
    log.close()


def test_malformed_decision_kept_without_sinking_the_batch(log):
    good = decision(1)
    bad = decision(2)
    bad.weights = ["not a number"]
    log.record(good)
    log.record(bad)
    log.flush()
    assert log.failed == [bad]
    assert [r["input_hash"] for r in log.query()] == [good.input_hash]


@pytest.mark.parametrize("url, match", [
    ("not a url", "invalid audit database URL 'not a url'"),
    ("nosuchdb://host/db", "unknown database or driver"),
    ("sqlite:////nonexistent-dir/deeper/audit.db", "cannot open the audit database"),
])
def test_bad_url(url, match):
    with pytest.raises(ConfigError, match=match) as info:
        AuditLog(url)
    assert "sqlite:///audit.db" in str(info.value)     # the expected form


def test_bad_flush_every():
    with pytest.raises(ConfigError, match="flush_every"):
        AuditLog("sqlite://", flush_every=0)


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
