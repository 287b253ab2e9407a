"""Migrations and models, the same bodies on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from daemon.db import migrate
from daemon.db.engine import make_engine, session_factory
from daemon.db.models import Base, LedgerEntry, Merchant, Product, Source, Stock, Upload, UploadError
from tests.conftest import Database

NOW = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


def test_migrations_reach_head_and_match_the_models(database: Database) -> None:
    assert migrate.current_revision(database.engine) == migrate.head_revision(database.engine)
    # What every command checks without loading Alembic is Alembic's own head.
    assert migrate.HEAD == migrate.head_revision(database.engine)
    assert not migrate.pending(database.engine)
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_migrations_downgrade_to_empty_and_upgrade_again(database: Database) -> None:
    migrate.downgrade(database.engine, "base")
    assert migrate.current_revision(database.engine) is None
    migrate.upgrade(database.engine)
    assert not migrate.pending(database.engine)


def test_models_round_trip_with_aware_utc_times_and_text_skus(database: Database) -> None:
    sessions = session_factory(database.engine)
    berlin = timezone(timedelta(hours=1))
    with sessions() as s, s.begin():
        m = Merchant(name="acme", timezone="Europe/Berlin", created_at=NOW)
        s.add(m)
        s.flush()
        src = Source(merchant_id=m.id, name="wh", kind="warehouse", priority=1, created_at=NOW)
        p = Product(merchant_id=m.id, sku="0017", created_at=NOW)
        s.add_all([src, p])
        s.flush()
        s.add(Stock(source_id=src.id, product_id=p.id, quantity=5,
                    as_of=datetime(2026, 11, 29, 11, 0, tzinfo=berlin), updated_at=NOW))
        s.add(LedgerEntry(source_id=src.id, product_id=p.id, before=0, after=5, reason="manual",
                          reference=None, actor="cli", at=NOW))
        up = Upload(source_id=src.id, original_name="f.csv", size=3, sha256="0" * 64,
                    protocol="cli", received_at=NOW)
        s.add(up)
        s.flush()
        s.add(UploadError(upload_id=up.id, row=2, column="quantity", value="x", message="bad"))
    with sessions() as s:
        stock = s.scalars(select(Stock)).one()
        assert stock.as_of == datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
        assert stock.as_of.tzinfo is not None
        assert s.scalars(select(Product.sku)).one() == "0017"
        assert s.scalars(select(UploadError.message)).one() == "bad"


def test_a_naive_datetime_is_refused(database: Database) -> None:
    sessions = session_factory(database.engine)
    with pytest.raises(Exception, match="naive"), sessions() as s, s.begin():
        s.add(Merchant(name="x", timezone="UTC", created_at=datetime(2026, 1, 1)))


def a_source(s) -> Source:  # type: ignore[no-untyped-def]
    """A merchant with one warehouse source, flushed so both have ids."""
    m = Merchant(name="acme", timezone="UTC", created_at=NOW)
    s.add(m)
    s.flush()
    src = Source(merchant_id=m.id, name="wh", kind="warehouse", priority=1, created_at=NOW)
    s.add(src)
    s.flush()
    return src


def test_stock_cannot_go_negative_in_the_database(database: Database) -> None:
    sessions = session_factory(database.engine)
    with sessions() as s, s.begin():
        src = a_source(s)
        p = Product(merchant_id=src.merchant_id, sku="A", created_at=NOW)
        s.add(p)
    with pytest.raises(IntegrityError), sessions() as s, s.begin():
        s.add(Stock(source_id=src.id, product_id=p.id, quantity=-1, updated_at=NOW))


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}", busy_timeout_ms=4321)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 4321
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


def test_migration_0007_keeps_every_stored_time_and_the_full_feed_as_of(database: Database) -> None:
    """Times written before 0007 (SQLite: text) read back the same after it, and after a downgrade."""
    migrate.downgrade(database.engine, "0006")
    micro = datetime(2026, 11, 29, 10, 0, 0, 123456, tzinfo=UTC)
    stamp = "2026-11-29 10:00:00.123456" if database.kind == "sqlite" else micro
    with database.engine.begin() as conn:
        conn.execute(text("INSERT INTO merchants (id, name, timezone, created_at) VALUES (1, 'm', 'UTC', :t)"),
                     {"t": stamp})
        conn.execute(text("INSERT INTO sources (id, merchant_id, name, kind, priority, created_at) "
                          "VALUES (1, 1, 'wh', 'warehouse', 1, :t)"), {"t": stamp})
        conn.execute(text("INSERT INTO products (id, merchant_id, sku, created_at) VALUES (1, 1, '0017', :t)"),
                     {"t": stamp})
        conn.execute(text("INSERT INTO stock (source_id, product_id, quantity, as_of, updated_at) "
                          "VALUES (1, 1, 5, :t, :t)"), {"t": stamp})
        conn.execute(text("INSERT INTO ledger (source_id, product_id, before, after, reason, actor, at) "
                          "VALUES (1, 1, 0, 5, 'manual', 'cli', :t)"), {"t": stamp})
    migrate.upgrade(database.engine)
    sessions = session_factory(database.engine)
    with sessions() as s, s.begin():
        stock = s.scalars(select(Stock)).one()
        assert (stock.as_of, stock.updated_at) == (micro, micro)
        assert s.scalars(select(LedgerEntry.at)).one() == micro
        assert s.scalars(select(Product.created_at)).one() == micro
        source = s.scalars(select(Source)).one()
        assert source.full_feed_as_of is None
        # A later full feed's time for the source is folded back into its rows on downgrade.
        source.full_feed_as_of = micro + timedelta(hours=1)
    migrate.downgrade(database.engine, "0006")
    with database.engine.connect() as conn:
        as_of, at = conn.execute(text("SELECT s.as_of, l.at FROM stock s, ledger l")).one()
    if database.kind == "sqlite":
        assert (as_of, at) == ("2026-11-29 11:00:00.123456", stamp)
    else:
        assert (as_of, at) == (micro + timedelta(hours=1), micro)
    migrate.upgrade(database.engine)


@pytest.mark.parametrize("limit", [4, 10, 999])
def test_staging_splits_rows_by_the_sqlite_builds_limit_on_bound_values(limit: int) -> None:
    """Multi-row staging fills statements up to the limit and keeps every row, in order."""
    import sqlite3

    import polars as pl

    from daemon.db.bulk.sqlite import insert_rows

    conn = sqlite3.connect(":memory:")
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)
    conn.execute("CREATE TABLE t (a INTEGER, b TEXT, c INTEGER)")
    frame = pl.DataFrame({"a": list(range(2345)), "b": [f"s{i}" for i in range(2345)],
                          "c": [i * 2 for i in range(2345)]})
    insert_rows(conn.cursor(), "t", frame)
    assert conn.execute("SELECT a, b, c FROM t ORDER BY rowid").fetchall() == frame.rows()


def test_migration_0009_keeps_every_row_that_points_at_a_source(database: Database) -> None:
    """0009 rebuilds ``sources`` on SQLite; with foreign keys on, that DROP would cascade."""
    from daemon.db import uploads

    sessions = session_factory(database.engine)
    with sessions() as s, s.begin():
        src = a_source(s)
        uploads.record_received(s, source_id=src.id, original_name="f.csv", size=1, sha256="0" * 64,
                                protocol="cli", user=None, remote_addr=None, received_at=NOW, elapsed_s=None)
    migrate.downgrade(database.engine, "0008")
    migrate.upgrade(database.engine)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Upload)) == 1
        assert s.scalars(select(Source.stock_version)).all() == [0]


def test_a_migration_that_leaves_an_orphan_on_sqlite_says_so(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate.upgrade(engine, "0008")
    raw = engine.raw_connection()
    try:
        raw.execute("PRAGMA foreign_keys=OFF")
        raw.execute("INSERT INTO uploads (source_id, kind, original_name, size, sha256, protocol, status, "
                    "rows, applied, unchanged, errors, zeroed, stale, received_at) "
                    "VALUES (999, 'feed', 'f.csv', 1, '', 'cli', 'received', 0, 0, 0, 0, 0, 0, '2026-11-29')")
        raw.commit()
    finally:
        raw.close()
    with pytest.raises(RuntimeError, match="without their parent"):
        migrate.upgrade(engine)
    engine.dispose()
