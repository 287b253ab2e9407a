"""``bulk.load_current``: a source's stock as a frame, the same whichever way it is read."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from daemon.db import bulk
from daemon.db import stock as store
from daemon.db.bulk import sqlite as bulk_sqlite
from daemon.db.catalog import get_source
from tests.ingest.conftest import IngestEnv

T1 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
T2 = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)
FULL = 'scope = "full"\nmax_zeroed_percent = 100'
ODD = ["007", 'comma,"quoted"', "ünïcode-ß", " spaced ", "x" * 200]


def loaded(env: IngestEnv) -> pl.DataFrame:
    with env.sessions() as s:
        return bulk.load_current(s, env.source().id).sort("product_id")


def from_inventory(env: IngestEnv) -> dict[str, tuple[int, datetime | None]]:
    with env.sessions() as s:
        return {r.sku: (r.quantity, r.as_of) for r in store.inventory(s, merchant="acme", source="wh1")}


def as_dict(frame: pl.DataFrame) -> dict[str, tuple[int, datetime | None]]:
    return {r["sku"]: (r["quantity"], r["as_of"]) for r in frame.iter_rows(named=True)}


def setup_stock(env: IngestEnv) -> None:
    body = "sku,quantity\n" + "".join(f'"{s.replace(chr(34), chr(34) * 2)}",{i}\n' for i, s in enumerate(ODD))
    env.upload("f1.csv", body, received_at=T1)
    env.set("007", 40, at=T2)  # a row later than the source's full-feed time
    env.set("manual-only", 3, at=T1)


def test_it_reads_what_every_other_reader_sees(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(feed=FULL)
    setup_stock(env)
    frame = loaded(env)
    assert frame.columns == ["sku", "quantity", "as_of", "product_id"]
    assert as_dict(frame) == from_inventory(env)
    assert as_dict(frame)["007"] == (40, T2) and as_dict(frame)["ünïcode-ß"] == (2, T1)


def test_the_aggregated_read_equals_the_row_by_row_read(make_env, database) -> None:  # type: ignore[no-untyped-def]
    env = make_env(feed=FULL)
    setup_stock(env)
    with env.sessions() as s:
        source_id = env.source().id
        joins = "JOIN products p ON p.id = s.product_id JOIN sources src ON src.id = s.source_id"
        as_of = "CASE WHEN s.as_of > src.full_feed_as_of THEN s.as_of END"
        rows = bulk.load_rows(s, source_id, as_of, joins)
        if database.engine.dialect.name != "sqlite":
            return  # the aggregate is SQLite's; PostgreSQL reads rows (checked above)
        aggregated = bulk_sqlite.load_aggregated(s, source_id, as_of, joins)
    assert aggregated is not None  # these SKUs need no fallback
    assert aggregated.sort("product_id").equals(rows.sort("product_id"))
    assert aggregated.get_column("as_of").null_count() == len(ODD)  # covered by the source's time


def test_a_sku_holding_the_separator_falls_back_to_the_row_read(make_env, database) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    env.set("A", 1)
    odd = "a\x1fb"
    with env.sessions() as s, s.begin():
        store.set_one(s, get_source(s, "acme", "wh1"), odd, 5, actor="test", now=datetime.now(UTC))
    with env.sessions() as s:
        if database.engine.dialect.name == "sqlite":
            assert bulk_sqlite.load_aggregated(s, env.source().id, "s.as_of",
                                         "JOIN products p ON p.id = s.product_id") is None
    frame = loaded(env)
    assert dict(zip(frame.get_column("sku"), frame.get_column("quantity"), strict=True)) == {"A": 1, odd: 5}


def test_an_empty_source_is_an_empty_frame_of_the_same_shape(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    frame = loaded(env)
    assert frame.height == 0 and frame.schema == pl.Schema(
        {"sku": pl.Utf8, "quantity": pl.Int64, "as_of": pl.Datetime("us", "UTC"), "product_id": pl.Int64})


def test_a_source_too_big_for_one_aggregate_string_is_read_row_by_row(make_env, database) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    env = make_env()
    env.upload("f.csv", "sku,quantity\n" + "".join(f"SKU-{i:04d},{i}\n" for i in range(40)))
    if database.engine.dialect.name != "sqlite":
        return  # the aggregate is SQLite's
    with env.sessions() as s:
        dbapi = s.connection().connection.dbapi_connection
        # The SKUs joined are 40 x 9 bytes: over this limit, as a huge source is over the default.
        before = dbapi.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 200)
        try:
            assert bulk_sqlite.load_aggregated(s, env.source().id, "s.as_of",
                                         "JOIN products p ON p.id = s.product_id") is None
            frame = bulk.load_current(s, env.source().id)
        finally:
            dbapi.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, before)
    assert frame.height == 40 and dict(zip(frame["sku"], frame["quantity"], strict=True))["SKU-0039"] == 39
