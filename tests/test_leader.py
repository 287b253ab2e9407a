"""One daemon at a time leads a piece of work; a daemon that dies gives it up."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from daemon.db.leader import Leadership, lock_key
from daemon.ingest.retention import janitor
from tests.conftest import Database


def test_one_daemon_leads_and_another_takes_over_when_it_goes(database: Database) -> None:
    # The daemon's own name: the lock is this test's schema's (see the next test).
    work = "exports"
    first, second = Leadership(database.engine, work), Leadership(database.engine, work)
    other_work = Leadership(database.engine, "email")
    try:
        assert first.is_leader()
        if database.kind == "sqlite":
            assert second.is_leader()  # one daemon per SQLite file: it always leads
            return
        assert not second.is_leader()
        assert other_work.is_leader()  # another name is another lock
        with database.engine.connect() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        first.release()
        assert second.is_leader() and not first.is_leader()
        # The leader's session dies (a crash, the network): the lock goes with it,
        # once its backend has exited (the timeout makes the call wait for that).
        with database.engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid, 10000) FROM pg_locks "
                              "WHERE locktype = 'advisory' AND objid = :low"),
                         {"low": lock_key(work, schema) & 0xFFFFFFFF})
            conn.commit()
        assert first.is_leader()
        assert not second.is_leader()
    finally:
        for lead in (first, second, other_work):
            lead.release()


@pytest.mark.postgres
def test_two_stores_in_two_schemas_of_one_database_each_have_a_leader() -> None:
    """Advisory locks are per database, not per schema: the key must name the schema.

    Two installations on one PostgreSQL database, each in its own schema
    (``search_path``), are two stores; with a key of the work's name alone,
    one's exporter never ran while the other's held the lock.
    """
    from sqlalchemy import create_engine

    from daemon.db.engine import make_engine
    from tests.conftest import PG_URL, need_pg

    need_pg()
    names = [f"lead_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        for name in names:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
    engines = [make_engine(f"{PG_URL}?options=-csearch_path%3D{name}") for name in names]
    leads = [Leadership(engine, "exports") for engine in [*engines, engines[0]]]
    try:
        assert [lead.is_leader() for lead in leads] == [True, True, False]  # one per store
    finally:
        for lead in leads:
            lead.release()
        for engine in engines:
            engine.dispose()
        with admin.begin() as conn:
            for name in names:
                conn.execute(text(f'DROP SCHEMA "{name}"'))
        admin.dispose()


def test_the_janitor_sweeps_only_while_it_leads(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    old = archive / (datetime.now(UTC) - timedelta(days=40)).strftime("%Y-%m-%d")
    old.mkdir(parents=True)
    follower = janitor(archive, list, retention_days=30, leads=lambda: False)
    follower.run_once()
    assert old.exists()
    janitor(archive, list, retention_days=30, leads=lambda: True).run_once()
    assert not old.exists()
