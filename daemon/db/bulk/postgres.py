"""PostgreSQL's side of the bulk apply: COPY, ids reserved from the sequence.

A first load COPYs its products, stock and ledger straight into their
tables (``create_unstaged``), with no stage to write, update and read back:
the products take their ids from the sequence as they are copied, and the
stock and ledger rows take them from there. Other writers of the merchant's products may run at
the same time (the lock is per source, ``db.stock.lock_source``): where one
of them created one of the same SKUs first, the COPY fails on the unique key
inside a savepoint, and the rows go through the stage instead, whose insert
keeps the first creator's product (``insert_new_products``). A big first
load into a nearly empty store builds the indexes once at the end instead
(``pgrebuild``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import polars as pl
from sqlalchemy import text
from sqlalchemy.orm import Session

from daemon.db.bulk import pgbinary, pgrebuild
from daemon.db.engine import driver_connection as dbapi

STAGE = "feed_stage"
_SLICE = 100_000  # rows per fetchmany
NEW = 4  # the staged flag of a product created by this plan (``bulk.NEW``)
_UNIQUE_VIOLATION = "23505"
# The stage's columns as its CREATE below declares them.
_STAGE_KINDS: dict[str, pgbinary.Kind] = {"product_id": "int8", "sku": "text", "before": "int4",
                                           "after": "int4", "flag": "int2", "as_of": "timestamptz"}


class PostgresBulk:
    placeholder = "%s"
    # Microseconds since the epoch, as SQLite stores them, so both read alike.
    own_as_of = "(extract(epoch from s.as_of) * 1000000)::bigint"
    before_sql = "COALESCE(s.before, 0)"
    as_of_sql = "s.as_of"

    def load(self, session: Session, source_id: int, as_of: str, joins: str) -> pl.DataFrame | None:
        return None  # the row-by-row read

    def reserve_ids(self, session: Session, writes: pl.DataFrame, new: pl.Expr) -> tuple[pl.DataFrame, int]:
        return writes, 0  # the sequence gives them as the products are written

    def create_unstaged(self, session: Session, new: pl.DataFrame, top: int, *, merchant_id: int,
                        source_id: int, now: datetime, reference: str, actor: str) -> pl.DataFrame | None:
        """COPY the new products, their stock and their ledger rows straight into the tables.

        Most of a first load. Returns the products' (sku, product_id); None,
        with nothing written, where another writer created one of the SKUs
        first (see the module docstring).
        """
        if new.height == 0:
            return None
        at = pl.lit(now.astimezone(UTC)).dt.cast_time_unit("us").alias("at")
        write = partial(copy_new, session, new, merchant_id=merchant_id, source_id=source_id, at=at,
                        reference=reference, actor=actor)
        rebuilt = pgrebuild.first_load(session, new.height, int(new.get_column("changed").sum()),
                                       lambda ids: write(ids=ids))
        if rebuilt is not None:
            return rebuilt
        try:
            with session.begin_nested():
                return write(ids=None)
        except Exception as exc:  # psycopg's UniqueViolation, not imported where SQLite runs
            if getattr(exc, "sqlstate", None) != _UNIQUE_VIOLATION:
                raise
            return None

    def load_keys(self, session: Session, keys: pl.Series) -> None:
        conn = session.connection()
        conn.exec_driver_sql("CREATE TEMPORARY TABLE IF NOT EXISTS feed_keys (product_id BIGINT)")
        conn.exec_driver_sql("TRUNCATE feed_keys")
        with dbapi(session).cursor() as cur, cur.copy("COPY feed_keys FROM STDIN") as copy:
            copy.write("".join(f"{k}\n" for k in keys.to_list()))
        conn.exec_driver_sql("ANALYZE feed_keys")

    def bind_time(self, value: datetime) -> object:
        return value.astimezone(UTC)

    def stage_columns(self) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
        return pl.col("before"), pl.col("as_of"), pl.col("sku")

    def stage(self, session: Session, frame: pl.DataFrame) -> None:
        conn = session.connection()
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGE} (product_id BIGINT, sku TEXT NOT NULL, "
            f"before INTEGER, after INTEGER NOT NULL, flag SMALLINT NOT NULL, as_of TIMESTAMPTZ)")
        conn.exec_driver_sql(f"TRUNCATE {STAGE}")
        # New products (only where ``create_unstaged`` gave way to another
        # writer) are staged with ids taken now: their insert keeps them.
        new = pl.col("flag") & NEW != 0
        missing = frame.select((new & pl.col("product_id").is_null()).sum()).item()
        if missing:
            ids = _reserve(session, missing)
            position = (pl.col("product_id").is_null() & new).cast(pl.Int64).cum_sum() - 1
            frame = frame.with_columns(pl.when(new & pl.col("product_id").is_null())
                                       .then(ids.gather(frame.select(position.clip(0)).to_series()))
                                       .otherwise(pl.col("product_id")).alias("product_id"))
        copy_binary(session, f"{STAGE} ({', '.join(frame.columns)})", frame,
                    [_STAGE_KINDS[c] for c in frame.columns])

    def insert_new_products(self, session: Session, params: dict[str, Any],
                            written: pl.DataFrame) -> pl.DataFrame:
        # The staged new rows carry their reserved ids. Another source of
        # the merchant may have created some of the same SKUs first (the
        # lock is per source): those keep the first one's product, and
        # their staged rows (and ``written``) take its id.
        session.execute(text(
            f"INSERT INTO products (id, merchant_id, sku, created_at) "
            f"SELECT product_id, :m, sku, :now FROM {STAGE} WHERE flag & :new <> 0 "
            f"ON CONFLICT (merchant_id, sku) DO NOTHING"), params)
        session.execute(text(
            f"UPDATE {STAGE} s SET product_id = p.id FROM products p WHERE s.flag & :new <> 0 "
            f"AND p.merchant_id = :m AND p.sku = s.sku AND p.id <> s.product_id"), params)
        return _with_created_ids(session, written)


def copy_new(session: Session, new: pl.DataFrame, *, ids: pgrebuild.Ids | None, merchant_id: int,
             source_id: int, at: pl.Expr, reference: str, actor: str) -> pl.DataFrame:
    """COPY new products, their stock and the ledger rows of those that changed; returns (sku, product_id).

    With ``ids`` (``pgrebuild``) every row's id is given from its ranges;
    without, the sequences give them as the rows are written. The products'
    COPY fails on the unique key where another writer created one of the
    SKUs first.
    """
    def id_kind(kind: pgbinary.Kind) -> list[pgbinary.Kind]:
        return [] if ids is None else [kind]

    given = [] if ids is None else [(pl.int_range(0, new.height, dtype=pl.Int64) * ids.product_step
                                     + ids.products).alias("id")]
    copy_binary(session, "products (" + ("id, " if ids else "") + "merchant_id, sku, created_at)",
                new.select(*given, pl.lit(merchant_id).alias("m"), "sku", at),
                [*id_kind("int4"), "int4", "text", "timestamptz"])
    if ids is None:
        new = new.with_columns(_copied_ids(session, new.get_column("sku"), merchant_id).alias("product_id"))
    else:
        new = new.with_columns(given[0].alias("product_id"))
    copy_binary(session, "stock (source_id, product_id, quantity, as_of, updated_at)", new.select(
        pl.lit(source_id).alias("src"), "product_id", "after", "as_of", at),
        ("int4", "int4", "int4", "timestamptz", "timestamptz"))
    changed = new.filter(pl.col("changed"))
    ledger_ids = [] if ids is None else [(pl.int_range(0, changed.height, dtype=pl.Int64) * ids.ledger_step
                                          + ids.ledger).alias("id")]
    # For a new product, before is "nothing" (0 in the ledger).
    copy_binary(session, "ledger (" + ("id, " if ids else "")
                + "source_id, product_id, before, after, reason, reference, actor, at)",
                changed.select(
                    *ledger_ids, pl.lit(source_id).alias("src"), "product_id", pl.col("before").fill_null(0), "after",
                    pl.when(pl.col("zeroed")).then(pl.lit("feed_zeroed")).otherwise(pl.lit("feed")).alias("r"),
                    pl.lit(reference).alias("ref"), pl.lit(actor).alias("actor"), at),
                [*id_kind("int8"), "int4", "int4", "int4", "int4", "text", "text", "text", "timestamptz"])
    return new.select("sku", "product_id")


def _copied_ids(session: Session, skus: pl.Series, merchant_id: int) -> pl.Series:
    """The ids the sequence gave the products just COPYed, in their order.

    nextval rises with each row, so they are contiguous, from the first
    SKU's id to the session's currval, unless another session took ids in
    between: then they are read back.
    """
    with dbapi(session).cursor() as cur:
        cur.execute("SELECT currval(pg_get_serial_sequence('products', 'id')), "
                    "(SELECT id FROM products WHERE merchant_id = %s AND sku = %s)", (merchant_id, skus.item(0)))
        last, first = cur.fetchone()
        if last - first + 1 == skus.len():
            return pl.int_range(first, last + 1, dtype=pl.Int64, eager=True)
        cur.execute("SELECT sku, id FROM products WHERE merchant_id = %s AND id BETWEEN %s AND %s",
                    (merchant_id, first, last))
        ids = pl.DataFrame(cur.fetchall(), orient="row", schema={"sku": pl.Utf8(), "id": pl.Int64()})
    return skus.to_frame("sku").join(ids, on="sku", how="left", maintain_order="left").get_column("id")


def _reserve(session: Session, n: int) -> pl.Series:
    """``n`` new products' ids, taken from the sequence (possibly with gaps)."""
    with dbapi(session).cursor() as cur:
        # The lock an INSERT of products takes anyway, taken before the ids:
        # ``pgrebuild`` relies on every nextval of this sequence happening
        # under it.
        cur.execute("LOCK TABLE products IN ROW EXCLUSIVE MODE")
        # The sequence's name first: pg_get_serial_sequence inside the query would run per row.
        cur.execute("SELECT pg_get_serial_sequence('products', 'id')")
        (sequence,) = cur.fetchone()
        cur.execute("SELECT nextval(%s::regclass) FROM generate_series(1, %s)", (sequence, n))
        return pl.Series([v for (v,) in cur.fetchall()], dtype=pl.Int64)


def copy_binary(session: Session, target: str, frame: pl.DataFrame, kinds: Sequence[pgbinary.Kind]) -> None:
    """COPY a frame's rows into ``target`` ("table (columns)") in the binary format (``pgbinary``).

    Through psycopg's queued writer: a thread of its own sends each chunk
    while the next is encoded here, so the encoding hides behind the
    server's work instead of adding to it (about 1 s of a million rows).
    """
    from psycopg.copy import QueuedLibpqWriter  # only where PostgreSQL runs

    cur = dbapi(session).cursor()
    with cur, cur.copy(f"COPY {target} FROM STDIN WITH (FORMAT binary)", writer=QueuedLibpqWriter(cur)) as copy:
        for chunk in pgbinary.chunks(frame, kinds):
            copy.write(chunk)


def _with_created_ids(session: Session, written: pl.DataFrame) -> pl.DataFrame:
    """``written`` with the ids the staged new rows ended with."""
    schema = {"sku": pl.Utf8(), "_id": pl.Int64()}
    with dbapi(session).cursor() as cur:
        cur.execute(f"SELECT sku, product_id FROM {STAGE} WHERE flag & %s <> 0", (NEW,))
        parts = [pl.DataFrame(rows, orient="row", schema=schema)
                 for rows in iter(lambda: cur.fetchmany(_SLICE), [])]
    created = pl.concat(parts) if parts else pl.DataFrame(schema=schema)
    return (written.join(created, on="sku", how="left", maintain_order="left")
            .with_columns(pl.coalesce("_id", "product_id").alias("product_id")).drop("_id"))
