"""New products, their stock and their ledger, as a first load writes them (``bulk_sqlite.create_unstaged``).

Each test states what must be stored, row by row, so it holds for both
ways a plan is written: unstaged through JSON arrays (SQLite, new products
with one as-of) and staged (everything else, and PostgreSQL).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from daemon.db.bulk import sqlite as bulk_sqlite
from daemon.db.models import LedgerEntry, Product, Stock
from tests.ingest.conftest import IngestEnv

T1 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
T2 = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)
# Quotes, backslashes, a line separator (raw in JSON, special in JavaScript),
# a JSON-looking SKU, non-ASCII, leading zeros: the SKUs travel inside a JSON
# text. (A control character never gets this far: the parser refuses it.)
SKUS = ['plain', 'quo"te', 'back\\slash', 'line\u2028sep', '["json"]', 'ünï', '007', 'zero']


def feed(rows: list[tuple[str, int]], extra: str = "") -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["sku", "quantity", *([extra] if extra else [])])
    writer.writerows(rows)
    return out.getvalue()


def stored(env: IngestEnv) -> tuple[dict[str, tuple[int, datetime | None, datetime]], list[tuple]]:
    with env.sessions() as s:
        stock = {sku: (q, a, u) for sku, q, a, u in s.execute(
            select(Product.sku, Stock.quantity, Stock.as_of, Stock.updated_at)
            .join(Stock, Stock.product_id == Product.id)
            .where(Stock.source_id == env.source().id)).all()}
        ledger = [tuple(r) for r in s.execute(
            select(Product.sku, LedgerEntry.before, LedgerEntry.after, LedgerEntry.reason,
                   LedgerEntry.reference, LedgerEntry.actor, LedgerEntry.at, LedgerEntry.source_id)
            .join(Product, Product.id == LedgerEntry.product_id).order_by(LedgerEntry.id)).all()]
        ids = s.scalars(select(Product.id).order_by(Product.id)).all()
    assert ids == list(range(ids[0], ids[0] + len(ids))) if ids else True  # no gaps, no reuse
    return stock, ledger


@pytest.fixture
def unstaged(monkeypatch):  # type: ignore[no-untyped-def]
    """Counts the plans written unstaged."""
    calls: list[bool] = []
    real = bulk_sqlite.create_unstaged

    def spy(*args, **kw):  # type: ignore[no-untyped-def]
        calls.append(real(*args, **kw))
        return calls[-1]

    monkeypatch.setattr(bulk_sqlite, "create_unstaged", spy)
    return calls


@pytest.mark.parametrize("json_ok", [True, False], ids=["json", "sqlite-without-json"])
def test_a_first_load_stores_every_sku_and_a_ledger_entry_for_each_nonzero(make_env, database, unstaged,
                                                                          monkeypatch, json_ok) -> None:  # type: ignore[no-untyped-def]
    if not json_ok:  # a build of SQLite without json_each: the stage writes the same rows
        monkeypatch.setattr(bulk_sqlite, "has_json", lambda session: False)
    env = make_env()
    rows = [(sku, 0 if sku == "zero" else i + 1) for i, sku in enumerate(SKUS)]
    out = env.upload("first.csv", feed(rows), received_at=T1)
    assert (out.status, out.counts["applied"], out.counts["unchanged"]) == ("applied", 7, 1)
    stock, ledger = stored(env)
    assert {sku: q for sku, (q, _, _) in stock.items()} == dict(rows)
    assert {a for _, a, _ in stock.values()} == {T1}
    ref = f"upload:{out.upload_id}"
    assert [(sku, b, a, r, rf, ac) for sku, b, a, r, rf, ac, _, _ in ledger] == [
        (sku, 0, q, "feed", ref, "upload:cli") for sku, q in rows if q]
    assert {at for *_, at, _ in ledger} == {stock["plain"][2]}  # the apply's time, on every row
    assert {src for *_, src in ledger} == {env.source().id}
    assert unstaged == ([json_ok] if database.engine.dialect.name == "sqlite" else [])


def test_new_and_known_skus_in_one_feed_are_both_written(make_env, unstaged) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    env.upload("first.csv", feed([("plain", 1), ("007", 2)]), received_at=T1)
    out = env.upload("second.csv", feed([("plain", 5), ("007", 2), ("quo\"te", 3), ("zero", 0)]),
                     received_at=T2)
    assert (out.status, out.counts["applied"], out.counts["unchanged"]) == ("applied", 2, 2)
    stock, ledger = stored(env)
    assert {sku: (q, a) for sku, (q, a, _) in stock.items()} == {
        "plain": (5, T2), "007": (2, T2), "quo\"te": (3, T2), "zero": (0, T2)}
    # Within one upload the entries' order means nothing (they share their time).
    assert [(sku, b, a) for sku, b, a, *_ in ledger[:2]] == [("plain", 0, 1), ("007", 0, 2)]
    assert sorted((sku, b, a) for sku, b, a, *_ in ledger[2:]) == [("plain", 1, 5), ("quo\"te", 0, 3)]


def test_rows_with_their_own_as_of_are_staged_and_keep_their_times(make_env, unstaged) -> None:  # type: ignore[no-untyped-def]
    env = make_env(feed='as_of_from = "column"')
    body = "sku,quantity,updated_at\nA,1,2026-11-30T08:00:00Z\nB,2,2026-11-30T20:00:00Z\n"
    out = env.upload("timed.csv", body)
    assert out.status == "applied", out
    stock, _ = stored(env)
    assert {sku: (q, a) for sku, (q, a, _) in stock.items()} == {"A": (1, T1), "B": (2, T2)}
    assert True not in unstaged


def test_a_second_merchant_source_reuses_the_products_the_first_created(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    env.upload("first.csv", feed([("plain", 1), ("ünï", 2)]), received_at=T1)
    out = env.upload("other.csv", feed([("plain", 4), ("new", 6)]), source="wh2", received_at=T1)
    assert out.status == "applied"
    with env.sessions() as s:
        assert sorted(s.scalars(select(Product.sku)).all()) == ["new", "plain", "ünï"]


@pytest.mark.parametrize("database", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_a_sku_another_source_creates_during_a_first_load_keeps_one_product(make_env, database,
                                                                            monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The lock is per source: wh2 may create a SKU between wh1's catalogue read and its COPY.

    wh1's COPY of products then fails on the unique key; nothing of it may
    remain, and its rows go through the stage, taking wh2's product.
    """
    from sqlalchemy import text

    from daemon.db.bulk.postgres import PostgresBulk
    from daemon.db.models import Merchant

    env = make_env()
    real = PostgresBulk.reserve_ids

    def race(self, session, writes, new):  # type: ignore[no-untyped-def]
        # Another transaction (another source's apply) creates "plain" and commits, now.
        with database.engine.connect() as other, other.begin():
            merchant = other.execute(select(Merchant.id).where(Merchant.name == "acme")).scalar_one()
            other.execute(text("INSERT INTO products (merchant_id, sku, created_at) VALUES (:m, 'plain', now())"),
                          {"m": merchant})
        return real(self, session, writes, new)

    monkeypatch.setattr(PostgresBulk, "reserve_ids", race)
    unstaged: list[bool] = []
    real_create = PostgresBulk.create_unstaged

    def spy(self, *args, **kw):  # type: ignore[no-untyped-def]
        created = real_create(self, *args, **kw)
        unstaged.append(created is not None)
        return created

    monkeypatch.setattr(PostgresBulk, "create_unstaged", spy)
    rows = [("plain", 1), ("ünï", 2), ("007", 3)]
    out = env.upload("first.csv", feed(rows), received_at=T1)
    monkeypatch.setattr(PostgresBulk, "reserve_ids", real)
    assert (out.status, out.counts["applied"]) == ("applied", 3)
    assert env.quantities() == dict(rows)
    with env.sessions() as s:
        products = s.execute(select(Product.sku, Product.id)).all()
        assert sorted(sku for sku, _ in products) == ["007", "plain", "ünï"]  # "plain" once
        stock = dict(s.execute(select(Stock.product_id, Stock.quantity)
                               .where(Stock.source_id == env.source().id)).all())
        assert {sku: stock[pid] for sku, pid in products} == dict(rows)
        ledger = s.execute(select(Product.sku, LedgerEntry.after)
                           .join(Product, Product.id == LedgerEntry.product_id)).all()
        assert sorted(ledger) == sorted(rows)
    assert unstaged == [False]  # the COPY gave way, and the stage wrote them
    # The daemon's copy of the stock took wh2's id for "plain": a change to it lands there.
    again = env.upload("again.csv", feed([("plain", 5), ("ünï", 2), ("007", 3)]), received_at=T2)
    assert (again.status, again.counts["applied"], again.counts["unchanged"]) == ("applied", 1, 2)
    assert env.quantities() == {"plain": 5, "ünï": 2, "007": 3}


@pytest.mark.parametrize("database", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_ids_the_sequence_hands_out_with_gaps_are_each_used_once(make_env, database) -> None:  # type: ignore[no-untyped-def]
    """Another session's nextval between ours leaves gaps; then each id is fetched, not assumed."""
    from sqlalchemy import text

    env = make_env()
    with database.engine.begin() as conn:
        conn.execute(text("ALTER SEQUENCE products_id_seq INCREMENT BY 3"))  # a gap after every id
    rows = [(f"S-{i}", i) for i in range(1, 40)]
    out = env.upload("first.csv", feed(rows), received_at=T1)
    assert (out.status, out.counts["applied"]) == ("applied", 39)
    assert env.quantities() == dict(rows)
    with env.sessions() as s:
        ids = s.scalars(select(Product.id)).all()
        assert len(set(ids)) == 39 and all((i - ids[0]) % 3 == 0 for i in ids)
        assert s.scalar(select(func.count()).select_from(LedgerEntry)) == 39


@pytest.mark.parametrize("values", [SKUS, [s for s in SKUS if "\t" not in s], [], ['"', "\\", '\\"', ""]])
def test_the_json_array_of_skus_reads_back_exactly(values) -> None:  # type: ignore[no-untyped-def]
    import json

    import polars as pl

    assert json.loads(bulk_sqlite.json_text_array(pl.Series(values, dtype=pl.Utf8))) == values


@pytest.mark.parametrize("values", [[0, 5, -3, 2**40], [], [7]])
def test_the_json_array_of_quantities_reads_back_exactly(values) -> None:  # type: ignore[no-untyped-def]
    import json

    import polars as pl

    assert json.loads(bulk_sqlite.json_int_array(pl.Series(values, dtype=pl.Int64))) == values

