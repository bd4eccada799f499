"""The audit log's durability contract: an acknowledged decision is never lost.

A decision counts as acknowledged once its :class:`Receipt` resolved without error; these
tests kill the writing process, fill the disk, lock the database and overflow the queue,
and check each time that every acknowledged decision is in the table, that failures
reach the receipts, and that the log recovers on its own.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

import neuralfolio.serve.audit as audit_module
from neuralfolio.serve.audit import (
    AuditLog,
    AuditUnavailable,
    AuditWriteError,
    Decision,
    Receipt,
)

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def decision(i: int, portfolio: str = "p0") -> Decision:
    return Decision(time=T0 + timedelta(seconds=i), portfolio=portfolio,
                    input_hash=f"{i:064x}", model="dense:1", assets=["A", "B"],
                    weights=[0.4, 0.6], fallback=False, reason=None, latency_us=5.0)


def wait_until(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def table_ids(path) -> set[str]:
    con = sqlite3.connect(path)
    try:
        return {r[0] for r in con.execute("SELECT decision_id FROM decisions")}
    finally:
        con.close()


def record_until_admitted(log: AuditLog, d: Decision, timeout: float = 10.0) -> Receipt:
    """``log.record(d)``, retried while the log refuses (its retry_after is running)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return log.record(d)
        except AuditUnavailable:
            assert time.monotonic() < deadline, "the log never admitted decisions again"
            time.sleep(0.02)


class Gate:
    """Holds the writer inside ``_insert`` until :meth:`release`."""

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


# ---------------------------------------------------------------------------- SIGKILL
# The child loads audit.py on its own (not through neuralfolio.serve, which imports the
# whole service and takes seconds): it is the same code.
CHILD = textwrap.dedent("""
    import importlib.util, itertools, sys, threading
    from datetime import UTC, datetime

    path, url, synchronous = sys.argv[1:4]
    spec = importlib.util.spec_from_file_location("audit_under_test", path)
    audit = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = audit
    spec.loader.exec_module(audit)

    log = audit.AuditLog(url, synchronous=synchronous, busy_timeout=5.0)
    out = threading.Lock()

    def work(k):
        for i in itertools.count():
            d = audit.Decision(datetime.now(UTC), f"p{k}", f"{i:064x}", "dense:1",
                               ["A", "B"], [0.5, 0.5], False, None, 1.0)
            log.record(d).result(timeout=60)     # acknowledged only once committed
            with out:
                sys.stdout.write(d.decision_id + "\\n")
                sys.stdout.flush()

    for k in range(4):
        threading.Thread(target=work, args=(k,), daemon=True).start()
    threading.Event().wait()
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_never_loses_an_acknowledged_decision(tmp_path):
    rng = random.Random(20240301)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    db = tmp_path / "audit.db"
    url = f"sqlite:///{db}"
    acknowledged: list[str] = []
    for round_ in range(5):
        target = rng.randint(1, 400)
        synchronous = "full" if round_ % 2 else "normal"
        proc = subprocess.Popen(
            [sys.executable, str(script), audit_module.__file__, url, synchronous],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            seen = 0
            while seen < target:
                line = proc.stdout.readline()
                if not line:
                    proc.wait(10)
                    pytest.fail(f"child died early (rc {proc.returncode}): "
                                f"{proc.stderr.read()[-2000:]}")
                acknowledged.append(line.strip())
                seen += 1
            os.kill(proc.pid, signal.SIGKILL)          # in the middle of its commits
            # Lines printed before it died were acknowledged too.
            rest = proc.stdout.read()
            acknowledged.extend(x for x in rest.split("\n")[:-1])
            assert proc.wait(10) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            proc.stdout.close()
            proc.stderr.close()
    assert len(acknowledged) >= 5 and all(len(x) == 32 for x in acknowledged)
    assert len(set(acknowledged)) == len(acknowledged)
    stored = table_ids(db)
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged decisions lost"
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
    with AuditLog(url) as log:                       # and the log opens and writes again
        assert log.count() == len(stored)
        assert log.record(decision(1)).result(timeout=10) is None


# ---------------------------------------------------------------------------- full disk
def test_full_disk_fails_receipts_then_recovers(tmp_path):
    db = tmp_path / "audit.db"
    log = AuditLog(f"sqlite:///{db}", retry_after=0.5, busy_timeout=0.2)
    pages = {"max": 2_000_000_000}

    # SQLite's page limit, set on every connection the log takes from its pool: with
    # the limit at the file's size, a commit that needs a new page fails with
    # SQLITE_FULL ("database or disk is full"), as when the disk is full.
    @sa.event.listens_for(log.engine, "checkout")
    def _limit(dbapi_conn, _record, _proxy):
        dbapi_conn.execute(f"PRAGMA max_page_count={pages['max']}")

    ok: list[str] = []
    failed: list[str] = []
    try:
        for i in range(20):
            r = log.record(decision(i))
            r.result(timeout=10)
            ok.append(r.decision_id)
        pages["max"] = 1          # the disk fills: SQLite keeps the file's current size
        error = None
        for i in range(20, 5000):
            r = log.record(decision(i))
            try:
                r.result(timeout=10)
                ok.append(r.decision_id)       # still room in the file's last pages
            except AuditWriteError as exc:
                failed.append(r.decision_id)
                error = exc
                break
        assert error is not None, "the page limit never filled the database"
        assert "database or disk is full" in str(error) and "free disk space" in str(error)
        assert str(db) in str(error)
        assert not log.healthy
        h = log.health()
        assert not h["ok"] and "disk is full" in h["reason"] and h["failed"] == 1
        with pytest.raises(AuditUnavailable, match=r"retry_after=0\.5"):
            log.record(decision(9000))           # refused at once, nothing queued
        # After retry_after a probe is admitted; the disk is still full: it fails too.
        probe = record_until_admitted(log, decision(9001))
        with pytest.raises(AuditWriteError, match="full"):
            probe.result(timeout=10)
        failed.append(probe.decision_id)
        assert not log.healthy
        # Space returns: after retry_after decisions commit again.
        pages["max"] = 2_000_000_000
        again = record_until_admitted(log, decision(9002))
        assert again.result(timeout=10) is None
        ok.append(again.decision_id)
        assert log.healthy and log.health()["reason"] is None
        for i in range(9003, 9010):
            r = log.record(decision(i))
            r.result(timeout=10)
            ok.append(r.decision_id)
        h = log.health()
        assert h["ok"] and h["failed"] == 2 and h["committed"] == len(ok)
        assert "full" in h["last_failure"]
    finally:
        log.close()
    stored = table_ids(db)
    assert set(ok) <= stored                      # nothing acknowledged is missing
    assert not set(failed) & stored               # and a failed receipt was not written


# ---------------------------------------------------------------------------- a lock
def test_locked_database_fails_receipts_then_recovers(tmp_path):
    db = tmp_path / "audit.db"
    log = AuditLog(f"sqlite:///{db}", busy_timeout=0.2, retry_after=0.3)
    ok: list[str] = []
    failed: list[str] = []
    other = sqlite3.connect(db, isolation_level=None)
    try:
        for i in range(10):
            r = log.record(decision(i))
            r.result(timeout=10)
            ok.append(r.decision_id)
        other.execute("BEGIN EXCLUSIVE")           # another process holds the write lock
        receipts: list[Receipt] = []
        refused = []

        def work(k):
            for j in range(20):
                try:
                    receipts.append(log.record(decision(1000 * k + j, f"p{k}")))
                except AuditUnavailable as exc:
                    refused.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(1, 4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for r in receipts:
            try:
                r.result(timeout=10)
                ok.append(r.decision_id)
            except AuditWriteError as exc:
                failed.append(r.decision_id)
                assert "database is locked" in str(exc)
                assert "another process holds a lock" in str(exc)
        assert failed, "no commit failed while the database was locked"
        assert not log.healthy and "locked" in log.health()["reason"]
        with pytest.raises(AuditUnavailable, match="locked"):
            log.record(decision(5000))
        assert len(receipts) + len(refused) == 60
        assert log.health()["failed"] == len(failed)
        other.execute("ROLLBACK")                  # the lock is released
        r = record_until_admitted(log, decision(6000))
        assert r.result(timeout=10) is None
        ok.append(r.decision_id)
        assert log.healthy
        more = [log.record(decision(7000 + i)) for i in range(20)]
        for r in more:
            r.result(timeout=10)
            ok.append(r.decision_id)
    finally:
        other.close()
        log.close()
    stored = table_ids(db)
    assert set(ok) <= stored
    assert not set(failed) & stored


def test_close_resolves_every_receipt_while_locked(tmp_path):
    db = tmp_path / "audit.db"
    log = AuditLog(f"sqlite:///{db}", busy_timeout=0.1, retry_after=0.2)
    log.record(decision(0)).result(timeout=10)
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        receipts = [log.record(decision(i)) for i in range(1, 30)]
        log.close()
        assert log.closed and not log._thread.is_alive()
        assert all(r.done() for r in receipts)
        for r in receipts:
            with pytest.raises(AuditWriteError, match="locked"):
                r.result(0)
    finally:
        other.close()
    assert table_ids(db) == {log.query()[0]["decision_id"]}


# ---------------------------------------------------------------------------- the queue
def test_queue_is_bounded():
    log = AuditLog("sqlite://", max_queue=5)
    try:
        gate = Gate(log)
        plug = gate.plug()                         # taken by the writer: not waiting
        receipts = [log.record(decision(i)) for i in range(5)]
        assert log.health()["queued"] == 5
        with pytest.raises(AuditUnavailable, match="max_queue=5"):
            log.record(decision(5))
        assert log.health()["refused"] == 1
        assert log.healthy                         # a full queue is not a failure
        gate.release()
        assert all(r.result(timeout=10) is None for r in [plug, *receipts])
        assert log.record(decision(6)).result(timeout=10) is None
        assert log.count() == 7
    finally:
        log.close()


def test_queue_fills_while_the_database_is_locked(tmp_path):
    db = tmp_path / "audit.db"
    log = AuditLog(f"sqlite:///{db}", busy_timeout=5.0, max_queue=3)
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        first = log.record(decision(0))
        wait_until(lambda: log.health()["in_flight"] == 1)   # waiting for the lock
        waiting = [log.record(decision(i)) for i in range(1, 4)]
        with pytest.raises(AuditUnavailable, match="3 decisions already wait"):
            log.record(decision(4))
        other.execute("ROLLBACK")
        assert all(r.result(timeout=10) is None for r in [first, *waiting])
    finally:
        other.close()
        log.close()
    assert len(table_ids(db)) == 4


# ---------------------------------------------------------------------------- cancel
def test_a_cancelled_receipt_is_never_written():
    log = AuditLog("sqlite://")
    try:
        gate = Gate(log)
        plug = gate.plug()
        a, b, c = (log.record(decision(i)) for i in range(3))
        assert not plug.cancel()                 # the writer has it: too late to cancel
        assert b.cancel() and b.cancelled()
        gate.release()
        log.flush()
        assert a.result(0) is None and c.result(0) is None and plug.result(0) is None
        assert not a.cancel()                    # committed: cannot be cancelled
        assert log.query(decision_id=b.decision_id) == []
        assert log.count() == 3
        h = log.health()
        assert h["cancelled"] == 1 and h["committed"] == 3 and h["failed"] == 0
    finally:
        log.close()


# ---------------------------------------------------------------------------- migration
OLD_SCHEMA = """
CREATE TABLE decisions (
    id INTEGER NOT NULL PRIMARY KEY, time DATETIME NOT NULL, portfolio VARCHAR(200),
    input_hash VARCHAR(64) NOT NULL, model VARCHAR(200) NOT NULL, assets TEXT NOT NULL,
    weights TEXT NOT NULL, fallback BOOLEAN NOT NULL, reason TEXT,
    latency_us FLOAT NOT NULL);
CREATE INDEX ix_decisions_time ON decisions (time);
INSERT INTO decisions (time, portfolio, input_hash, model, assets, weights, fallback,
                       reason, latency_us)
VALUES ('2024-01-02 03:04:05.000000', 'old', 'abc', 'dense:0', '["A", "B"]',
        '[0.5, 0.5]', 0, NULL, 7.0);
"""


def test_old_table_gains_decision_id(tmp_path):
    db = tmp_path / "audit.db"
    con = sqlite3.connect(db)
    con.executescript(OLD_SCHEMA)
    con.close()
    with AuditLog(f"sqlite:///{db}") as log:
        d = decision(1)
        assert log.record(d).result(timeout=10) is None
        old, new = sorted(log.query(), key=lambda r: r["id"])
        assert old["decision_id"] is None and old["portfolio"] == "old"
        assert old["weights"] == [0.5, 0.5] and old["time"].year == 2024
        assert new["decision_id"] == d.decision_id
        assert log.query(decision_id=d.decision_id) == [new]
        dup = log.record(d)                      # the new column is unique
        with pytest.raises(AuditWriteError, match="decision_id"):
            dup.result(timeout=10)
    con = sqlite3.connect(db)
    try:
        indexes = {r[1]: r[2] for r in con.execute("PRAGMA index_list(decisions)")}
    finally:
        con.close()
    assert indexes.get("ix_decisions_decision_id") == 1            # unique
    with AuditLog(f"sqlite:///{db}") as again:                     # already migrated
        assert again.count() == 2


# ---------------------------------------------------------------------------- batching
def test_group_commit_takes_everything_waiting():
    log = AuditLog("sqlite://")
    try:
        gate = Gate(log)
        gate.plug()
        receipts: list[Receipt] = []

        def work(k):
            receipts.extend(log.record(decision(100 * k + j, f"p{k}")) for j in range(25))

        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        gate.release()
        assert all(r.result(timeout=10) is None for r in receipts)
        assert gate.calls == [1, 200]            # one transaction for the 200 waiting
        assert log.health()["commits"] == 2 and log.count() == 201
    finally:
        log.close()


def test_group_commit_batches_concurrent_writers(tmp_path):
    """Free running, on a file database: 8 threads record 200 decisions; the writer
    commits whatever waits each time, so far fewer than 200 transactions."""
    log = AuditLog(f"sqlite:///{tmp_path / 'audit.db'}", synchronous="full")
    try:
        inserts: list[int] = []
        real = log._insert

        def counting(rows):
            inserts.append(len(rows))
            real(rows)

        log._insert = counting
        start = threading.Barrier(8)
        receipts: list[Receipt] = []

        def work(k):
            start.wait()
            mine = [log.record(decision(100 * k + j, f"p{k}")) for j in range(25)]
            for r in mine:
                r.result(timeout=10)
            receipts.extend(mine)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(receipts) == 200 and log.count() == 200
        assert sum(inserts) == 200 and log.health()["commits"] == len(inserts)
        print(f"group commit: {len(inserts)} commits for 200 decisions "
              f"({200 / len(inserts):.1f} per commit; batches {inserts})")
        assert len(inserts) <= 50
    finally:
        log.close()
