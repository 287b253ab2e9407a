"""Migrations and models, the same bodies on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from daemon.db import migrate
from daemon.db.engine import make_engine
from daemon.db.engine import session_factory
from daemon.db.models import Base, LedgerEntry, Merchant, Product, Source, Stock, Upload, UploadError
from tests.conftest import Database

NOW = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


def test_migrations_reach_head_and_match_the_models(database: Database) -> None:
    assert migrate.current_revision(database.engine) == migrate.head_revision(database.engine)
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


def test_stock_cannot_go_negative_in_the_database(database: Database) -> None:
    sessions = session_factory(database.engine)
    with sessions() as s, s.begin():
        m = Merchant(name="acme", timezone="UTC", created_at=NOW)
        s.add(m)
        s.flush()
        src = Source(merchant_id=m.id, name="wh", kind="warehouse", priority=1, created_at=NOW)
        p = Product(merchant_id=m.id, sku="A", created_at=NOW)
        s.add_all([src, p])
    with pytest.raises(IntegrityError), sessions() as s, s.begin():
        s.add(Stock(source_id=src.id, product_id=p.id, quantity=-1, updated_at=NOW))


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}", busy_timeout_ms=4321)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 4321
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()
