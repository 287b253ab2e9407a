"""One daemon at a time leads a piece of work; a daemon that dies gives it up."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from daemon.db.leader import Leadership, lock_key
from daemon.ingest.retention import janitor
from tests.conftest import Database


def test_one_daemon_leads_and_another_takes_over_when_it_goes(database: Database) -> None:
    # Advisory locks are the server's, not a schema's: names of this test's own.
    work = f"exports-{uuid.uuid4().hex}"
    first, second = Leadership(database.engine, work), Leadership(database.engine, work)
    other_work = Leadership(database.engine, f"reports-{uuid.uuid4().hex}")
    try:
        assert first.is_leader()
        if database.kind == "sqlite":
            assert second.is_leader()  # one daemon per SQLite file: it always leads
            return
        assert not second.is_leader()
        assert other_work.is_leader()  # another name is another lock
        first.release()
        assert second.is_leader() and not first.is_leader()
        # The leader's session dies (a crash, the network): the lock goes with it,
        # once its backend has exited (the timeout makes the call wait for that).
        with database.engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid, 10000) FROM pg_locks "
                              "WHERE locktype = 'advisory' AND objid = :low"),
                         {"low": lock_key(work) & 0xFFFFFFFF})
            conn.commit()
        assert first.is_leader()
        assert not second.is_leader()
    finally:
        for lead in (first, second, other_work):
            lead.release()


def test_the_janitor_sweeps_only_while_it_leads(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    old = archive / (datetime.now(UTC) - timedelta(days=40)).strftime("%Y-%m-%d")
    old.mkdir(parents=True)
    follower = janitor(archive, list, retention_days=30, leads=lambda: False)
    follower.run_once()
    assert old.exists()
    janitor(archive, list, retention_days=30, leads=lambda: True).run_once()
    assert not old.exists()
