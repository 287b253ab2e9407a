"""A big first load on PostgreSQL builds the indexes once at the end (``db.bulk.pgrebuild``).

Every test here shrinks ``MIN_ROWS`` so that a few dozen rows take that way;
what they check is what the rebuild must never change: the rows stored, the
catalogue (every index and key as the migrations made it, foreign keys
checked again), the sequences after it, and, where it gives way or dies,
nothing half done.
"""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text

from daemon.db.bulk import pgrebuild
from daemon.db.bulk import postgres as bulk_pg
from daemon.db.models import LedgerEntry, Listing, MarketRecord, Product
from tests.conftest import Database
from tests.ingest.test_bulk_create import T1, T2, feed, stored

pytestmark = [pytest.mark.postgres,
              pytest.mark.parametrize("database", [pytest.param("postgresql")], indirect=True)]

SET_CREATE = """
[[merchants]]
name = "acme"
[[merchants.sources]]
name = "wh1"
[merchants.sources.feed]
unknown_sku = "create"
"""
ROWS = [(f"SKU-{i:03d}", 0 if i % 7 == 0 else i) for i in range(40)]


def catalogue(engine: Engine) -> set[tuple]:
    """Every index and constraint of the schema: name, table, definition, checked."""
    with engine.connect() as conn:
        indexes = conn.execute(text(
            "SELECT 'index', tablename, indexname, indexdef, true FROM pg_indexes "
            "WHERE schemaname = current_schema()")).all()
        keys = conn.execute(text(
            "SELECT 'constraint', conrelid::regclass::text, conname, pg_get_constraintdef(oid), convalidated "
            "FROM pg_constraint WHERE connamespace = current_schema()::regnamespace")).all()
    return {tuple(r) for r in [*indexes, *keys]}


@pytest.fixture
def rebuilds(monkeypatch):  # type: ignore[no-untyped-def]
    """``MIN_ROWS`` small enough for these files; records what each first load returned."""
    monkeypatch.setattr(pgrebuild, "MIN_ROWS", 10)
    calls: list[bool] = []
    real = pgrebuild.first_load

    def spy(*a, **k):  # type: ignore[no-untyped-def]
        out = real(*a, **k)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(pgrebuild, "first_load", spy)
    return calls


def test_a_big_first_load_stores_what_the_incremental_way_would_and_leaves_the_catalogue_as_it_was(
        make_env, database: Database, rebuilds) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    before = catalogue(database.engine)
    out = env.upload("first.csv", feed(ROWS), received_at=T1)
    assert (out.status, out.counts["applied"]) == ("applied", 34), out
    assert rebuilds == [True]
    assert catalogue(database.engine) == before  # every index, key and foreign key back, checked
    stock, ledger = stored(env)  # also: product ids without gaps
    assert {sku: q for sku, (q, _, _) in stock.items()} == dict(ROWS)
    assert sorted((sku, b, a, r) for sku, b, a, r, *_ in ledger) == sorted(
        (sku, 0, q, "feed") for sku, q in ROWS if q)
    with env.sessions() as s:
        ids = s.scalars(select(LedgerEntry.id).order_by(LedgerEntry.id)).all()
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    # The sequences moved past the ranges the load took: what comes next gets new ids.
    again = env.upload("again.csv", feed([*ROWS[:-1], ("SKU-039", 99), ("NEW-1", 5)]), received_at=T2)
    assert (again.status, again.counts["applied"]) == ("applied", 2), again
    assert rebuilds == [True, False]  # one new product: below MIN_ROWS
    env.set("NEW-2", 3)  # the ORM's insert, the sequences' own nextval
    with env.sessions() as s:
        assert s.scalar(select(func.count(func.distinct(Product.id)))) == 42
        later = s.scalars(select(LedgerEntry.id).where(LedgerEntry.id > ids[-1])).all()
    assert len(later) == 3 and min(later) > ids[-1]
    assert env.quantities()["SKU-039"] == 99


def test_a_store_that_is_not_nearly_empty_keeps_its_indexes_up_row_by_row(
        make_env, rebuilds) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    env.upload("first.csv", feed([(f"OLD-{i}", 1) for i in range(30)]), received_at=T1)  # 30 >= 40 / 2
    rebuilds.clear()
    out = env.upload("more.csv", feed(ROWS), source="wh2", received_at=T2)
    assert out.status == "applied"
    assert rebuilds == [False]
    assert env.quantities("wh2") == dict(ROWS)


def test_a_reader_holding_the_tables_makes_the_load_take_the_incremental_way_without_waiting_for_it(
        make_env, database: Database, rebuilds) -> None:  # type: ignore[no-untyped-def]
    """An export reading products (ACCESS SHARE) for longer than LOCK_WAIT: no rebuild, no stall."""
    env = make_env()
    before = catalogue(database.engine)
    done: list[object] = []
    with database.engine.connect() as reader, reader.begin():
        reader.execute(text("SELECT count(*) FROM products")).scalar()
        loader = threading.Thread(target=lambda: done.append(env.upload("first.csv", feed(ROWS), received_at=T1)))
        loader.start()
        loader.join(20)  # queued behind the reader for good, it would never end while the reader stays
        assert not loader.is_alive()
    assert [o.status for o in done] == ["applied"]  # type: ignore[attr-defined]
    assert rebuilds == [False]
    assert env.quantities() == dict(ROWS)
    assert catalogue(database.engine) == before


def test_listings_that_are_not_small_keep_products_primary_key_but_the_rest_is_rebuilt(
        make_env, database: Database, rebuilds, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Dropping the key would mean checking every listing's foreign key again."""
    env = make_env(merchant_extra='\n[[merchants.markets]]\nname = "shop"\n')
    env.set("LISTED", 1)
    with env.sessions() as s, s.begin():
        shop = s.scalars(select(MarketRecord)).one()
        product = s.scalars(select(Product.id)).one()
        now = datetime.now(UTC)
        for m in range(20):  # 20 >= 40 / 2 listings: one per market and product, so markets of their own
            market = MarketRecord(merchant_id=shop.merchant_id, name=f"m{m}", kind=shop.kind, created_at=now)
            s.add(market)
            s.flush()
            s.add(Listing(market_id=market.id, product_id=product, updated_at=now))
    dropped: list[str] = []
    real = pgrebuild._indexes

    def spy(session, table, small):  # type: ignore[no-untyped-def]
        out = real(session, table, small)
        dropped.extend(s for d in out for s in d.drop)
        return out

    monkeypatch.setattr(pgrebuild, "_indexes", spy)
    before = catalogue(database.engine)
    out = env.upload("first.csv", feed(ROWS), received_at=T1)
    assert out.status == "applied"
    assert rebuilds == [True]
    assert not any("pk_products" in s or "fk_listings" in s for s in dropped), dropped
    assert any("uq_products_merchant_sku" in s for s in dropped) and any("pk_ledger" in s for s in dropped)
    assert catalogue(database.engine) == before
    assert env.quantities() == {"LISTED": 1, **dict(ROWS)}


def test_a_sku_another_source_creates_before_the_lock_makes_the_rebuild_give_way(
        make_env, database: Database, rebuilds, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The unique key's build fails on it; the savepoint goes, and the stage keeps wh2's product."""
    from daemon.db.models import Merchant

    env = make_env()
    before = catalogue(database.engine)
    real = bulk_pg.PostgresBulk.reserve_ids

    def race(self, session, writes, new):  # type: ignore[no-untyped-def]
        with database.engine.connect() as other, other.begin():
            merchant = other.execute(select(Merchant.id).where(Merchant.name == "acme")).scalar_one()
            other.execute(text("INSERT INTO products (merchant_id, sku, created_at) VALUES (:m, 'SKU-005', now())"),
                          {"m": merchant})
        return real(self, session, writes, new)

    monkeypatch.setattr(bulk_pg.PostgresBulk, "reserve_ids", race)
    out = env.upload("first.csv", feed(ROWS), received_at=T1)
    assert out.status == "applied", out
    assert rebuilds == [False]
    assert catalogue(database.engine) == before
    assert env.quantities() == dict(ROWS)
    with env.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Product).where(Product.sku == "SKU-005")) == 1
        assert s.scalar(select(func.count()).select_from(Product)) == 40


def test_an_error_after_the_indexes_were_dropped_leaves_them_and_nothing_else(
        make_env, database: Database, rebuilds, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    before = catalogue(database.engine)
    real = bulk_pg.copy_binary

    def fail_on_the_ledger(session, target, *a, **k):  # type: ignore[no-untyped-def]
        if target.startswith("ledger"):
            raise OSError("disk full")
        return real(session, target, *a, **k)

    monkeypatch.setattr(bulk_pg, "copy_binary", fail_on_the_ledger)
    with pytest.raises(OSError, match="disk full"):
        env.upload("first.csv", feed(ROWS), received_at=T1)
    assert catalogue(database.engine) == before
    with env.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Product)) == 0


def test_a_daemon_killed_while_its_indexes_are_dropped_leaves_them_and_applies_the_file_once_after(
        database: Database, tmp_path: Path) -> None:
    """SIGKILL between the COPYs and the builds: the transaction, DDL and all, never committed."""
    from daemon.db.catalog import sync_config
    from daemon.db.engine import session_factory
    from daemon.settings import load_settings
    from tests.helpers import write_config
    from tests.ingest.test_crash import child

    cfg = write_config(tmp_path / "conf", SET_CREATE, database_url=database.url)
    sessions = session_factory(database.engine)
    with sessions() as s, s.begin():
        sync_config(s, load_settings(cfg), datetime.now(UTC))
    before = catalogue(database.engine)
    file = tmp_path / "first.csv"
    file.write_text(feed(ROWS))
    crashed = child(cfg, "deliver", file, "mid_rebuild")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert catalogue(database.engine) == before
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Product)) == 0
    recovered = child(cfg, "recover")
    assert recovered.returncode == 0, recovered.stderr
    assert catalogue(database.engine) == before
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Product)) == 40
        assert s.scalar(select(func.count()).select_from(LedgerEntry)) == 34


def test_a_second_daemon_waiting_on_the_tables_finishes_after_the_load(
        make_env, database: Database, rebuilds, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Another daemon's small apply that arrives mid-load waits for it, then lands, on the rebuilt indexes."""
    first = make_env()
    second = make_env(node="b")
    started, go = threading.Event(), threading.Event()
    real = bulk_pg.copy_new

    def slow(session, new, *, ids, **k):  # type: ignore[no-untyped-def]
        out = real(session, new, ids=ids, **k)
        if ids is not None:
            started.set()
            go.wait(30)
        return out

    monkeypatch.setattr(bulk_pg, "copy_new", slow)
    results: list[object] = []
    loader = threading.Thread(target=lambda: results.append(first.upload("first.csv", feed(ROWS), received_at=T1)))
    loader.start()
    assert started.wait(30)
    other: list[object] = []
    waiter = threading.Thread(target=lambda: other.append(
        second.upload("small.csv", feed([("SKU-001", 500), ("OTHER", 2)]), source="wh2", received_at=T2)))
    waiter.start()
    waiter.join(1.0)
    assert waiter.is_alive()  # behind the lock, not failed
    go.set()
    loader.join(30)
    waiter.join(30)
    assert [o.status for o in results + other] == ["applied", "applied"]  # type: ignore[attr-defined]
    assert rebuilds[0] is True
    assert first.quantities() == dict(ROWS)
    assert second.quantities("wh2") == {"SKU-001": 500, "OTHER": 2}
    with first.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Product)) == 41  # SKU-001 once


def test_a_sequence_that_steps_by_three_gives_the_rebuilt_load_ids_by_three(
        make_env, database: Database, rebuilds) -> None:  # type: ignore[no-untyped-def]
    """The ranges follow the sequences' own increment, and what comes after does not collide."""
    env = make_env()
    with database.engine.begin() as conn:
        conn.execute(text("ALTER SEQUENCE products_id_seq INCREMENT BY 3"))
        conn.execute(text("ALTER SEQUENCE ledger_id_seq INCREMENT BY 3"))
    out = env.upload("first.csv", feed(ROWS), received_at=T1)
    assert out.status == "applied" and rebuilds == [True]
    env.set("LATER", 1)  # the sequences' own nextval, after the ranges
    with env.sessions() as s:
        products = s.scalars(select(Product.id).order_by(Product.id)).all()
        ledger = s.scalars(select(LedgerEntry.id).order_by(LedgerEntry.id)).all()
    assert products == list(range(products[0], products[0] + 3 * 41, 3))
    assert ledger == list(range(ledger[0], ledger[0] + 3 * 35, 3))
    assert env.quantities() == {"LATER": 1, **dict(ROWS)}


def test_two_daemons_first_loading_overlapping_skus_at_once_keep_one_product_each(
        make_env, database: Database, rebuilds, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Both big, both into a nearly empty store: one rebuilds, the other waits and then
    finds the first one's products (a SKU both bring is one product, each source its stock)."""
    first = make_env()
    second = make_env(node="b")
    before = catalogue(database.engine)
    started, go = threading.Event(), threading.Event()
    real = bulk_pg.copy_new

    def slow(session, new, *, ids, **k):  # type: ignore[no-untyped-def]
        out = real(session, new, ids=ids, **k)
        if ids is not None and not started.is_set():
            started.set()
            go.wait(30)
        return out

    monkeypatch.setattr(bulk_pg, "copy_new", slow)
    theirs = [(f"SKU-{i:03d}", i + 1000) for i in range(20, 60)]  # 20 of ROWS' SKUs, 20 new
    results: dict[str, object] = {}
    one = threading.Thread(target=lambda: results.update(a=first.upload("a.csv", feed(ROWS), received_at=T1)))
    one.start()
    assert started.wait(30)
    two = threading.Thread(target=lambda: results.update(
        b=second.upload("b.csv", feed(theirs), source="wh2", received_at=T1)))
    two.start()
    two.join(1.0)
    assert two.is_alive()  # behind the first load's lock
    go.set()
    one.join(30)
    two.join(30)
    assert {k: o.status for k, o in results.items()} == {"a": "applied", "b": "applied"}  # type: ignore[attr-defined]
    assert rebuilds.count(True) == 1
    assert catalogue(database.engine) == before
    assert first.quantities() == dict(ROWS)
    assert second.quantities("wh2") == dict(theirs)
    with first.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Product)) == 60
