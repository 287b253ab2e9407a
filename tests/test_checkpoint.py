"""The daemon checkpoints SQLite's log on its own thread (``daemon.db.checkpoint``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import text

from daemon.db.checkpoint import SAFETY_PAGES, Checkpointer
from daemon.db.engine import make_engine


def autocheckpoint(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()


def write_pages(engine, rows: int = 20_000) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
        conn.execute(text("INSERT INTO t (v) VALUES (:v)"), [{"v": "x" * 200}] * rows)


def wait_for(condition, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.02)


@pytest.fixture
def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield engine
    engine.dispose()


def test_writers_leave_the_checkpoint_to_it_and_it_checkpoints_what_they_commit(engine) -> None:  # type: ignore[no-untyped-def]
    assert autocheckpoint(engine) == 1000  # SQLite's default, before
    checkpointer = Checkpointer(engine, interval=0.05)
    seen: list[tuple[int, int, int]] = []
    real = checkpointer.checkpoint
    checkpointer.checkpoint = lambda: seen.append(real()) or seen[-1]  # type: ignore[method-assign]
    checkpointer.start()
    try:
        # Commits checkpoint only past the safety bound: this one is left to the thread.
        assert autocheckpoint(engine) == SAFETY_PAGES
        write_pages(engine)
        wait_for(lambda: any(in_log > 1000 and done == in_log for _, in_log, done in seen))
        checkpointer.check()
    finally:
        checkpointer.stop()
    assert autocheckpoint(engine) == 1000  # one-shot use of the engine gets the default back


def test_a_dead_thread_is_reported_so_the_daemon_stops(engine) -> None:  # type: ignore[no-untyped-def]
    checkpointer = Checkpointer(engine, interval=0.01)

    def broken() -> tuple[int, int, int]:
        raise RuntimeError("injected")

    checkpointer.checkpoint = broken  # type: ignore[method-assign]
    checkpointer.start()
    try:
        wait_for(lambda: checkpointer._thread is not None and not checkpointer._thread.is_alive())
        with pytest.raises(RuntimeError, match="checkpointer thread died"):
            checkpointer.check()
    finally:
        checkpointer._stop.set()
        checkpointer.checkpoint = lambda: (0, 0, 0)  # type: ignore[method-assign]
        checkpointer.stop()


def test_a_busy_database_is_tried_again_not_fatal(engine) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    calls = []
    checkpointer = Checkpointer(engine, interval=0.01)
    real = checkpointer.checkpoint

    def flaky() -> tuple[int, int, int]:
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        return real()

    checkpointer.checkpoint = flaky  # type: ignore[method-assign]
    checkpointer.start()
    try:
        wait_for(lambda: len(calls) >= 5)
        checkpointer.check()
    finally:
        checkpointer.stop()


def test_it_is_for_sqlite_files_only() -> None:
    with pytest.raises(ValueError):
        Checkpointer(make_engine("sqlite://"))


def test_a_daemon_killed_before_its_checkpoint_loses_no_committed_row(tmp_path: Path) -> None:
    # The commit leaves its pages in the log only (the checkpoint is the
    # thread's, an hour away here); SIGKILL then; a fresh open has every row.
    import signal
    import subprocess
    import sys

    db = tmp_path / "db.sqlite"
    child = f"""
import os, signal
from sqlalchemy import text
from daemon.db.checkpoint import Checkpointer
from daemon.db.engine import make_engine
engine = make_engine("sqlite:///{db}")
Checkpointer(engine, interval=3600).start()
with engine.begin() as conn:
    conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute(text("INSERT INTO t (v) VALUES (:v)"), [{{"v": "x" * 200}}] * 20000)
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", child], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    wal = db.with_name(db.name + "-wal")
    assert wal.exists() and wal.stat().st_size > 4 * 1024 * 1024  # the rows were in the log only
    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 20000
    finally:
        engine.dispose()
