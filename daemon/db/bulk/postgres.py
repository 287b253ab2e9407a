"""PostgreSQL's side of the bulk apply: COPY into the stage, ids from the sequence.

New products get their ids from the sequence and come back through
``RETURNING``; other writers of the merchant's products may run at the same
time (the lock is per source, ``db.stock.lock_source``).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import polars as pl
from sqlalchemy import text
from sqlalchemy.orm import Session

from daemon.db.engine import driver_connection as dbapi

STAGE = "feed_stage"
_SLICE = 100_000  # rows per fetchmany
NEW = 4  # the staged flag of a product created by this plan (``bulk.NEW``)


class PostgresBulk:
    placeholder = "%s"
    # Microseconds since the epoch, as SQLite stores them, so both read alike.
    own_as_of = "(extract(epoch from s.as_of) * 1000000)::bigint"
    before_sql = "COALESCE(s.before, 0)"
    as_of_sql = "s.as_of"

    def load(self, session: Session, source_id: int, as_of: str, joins: str) -> pl.DataFrame | None:
        return None  # the row-by-row read

    def reserve_ids(self, session: Session, writes: pl.DataFrame, new: pl.Expr) -> tuple[pl.DataFrame, int]:
        return writes, 0  # the sequence gives them when the products are inserted

    def create_unstaged(self, session: Session, new: pl.DataFrame, top: int, **kw: Any) -> bool:
        return False

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
        return (pl.col("before"),
                pl.col("as_of").dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00"),
                pl.col("sku"))

    def stage(self, session: Session, frame: pl.DataFrame) -> None:
        conn = session.connection()
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGE} (product_id BIGINT, sku TEXT NOT NULL, "
            f"before INTEGER, after INTEGER NOT NULL, flag SMALLINT NOT NULL, as_of TIMESTAMPTZ)")
        conn.exec_driver_sql(f"TRUNCATE {STAGE}")
        buf = io.BytesIO()
        frame.write_csv(buf, include_header=False, null_value="")
        with dbapi(session).cursor() as cur, cur.copy(
            f"COPY {STAGE} ({', '.join(frame.columns)}) FROM STDIN WITH (FORMAT csv)"
        ) as copy:
            copy.write(buf.getvalue())

    def insert_new_products(self, session: Session, params: dict[str, Any],
                            written: pl.DataFrame) -> pl.DataFrame:
        # The new ids come back through RETURNING and a hash join with the
        # stage, not by probing the products index once per row.
        session.execute(text(
            f"WITH created AS (INSERT INTO products (merchant_id, sku, created_at) "
            f"SELECT :m, sku, :now FROM {STAGE} WHERE product_id IS NULL "
            f"ON CONFLICT (merchant_id, sku) DO NOTHING RETURNING id, sku) "
            f"UPDATE {STAGE} s SET product_id = created.id FROM created "
            f"WHERE s.sku = created.sku"), params)
        # Another source of the merchant may create the same SKU at the same
        # time (the lock is per source): whoever is second (DO NOTHING above)
        # keeps the first one's product.
        session.execute(text(
            f"UPDATE {STAGE} s SET product_id = p.id FROM products p "
            f"WHERE s.product_id IS NULL AND p.merchant_id = :m AND p.sku = s.sku"), params)
        return _with_created_ids(session, written)


def _with_created_ids(session: Session, written: pl.DataFrame) -> pl.DataFrame:
    """``written`` with the ids the products created in this transaction got."""
    schema = {"sku": pl.Utf8(), "_id": pl.Int64()}
    with dbapi(session).cursor() as cur:
        cur.execute(f"SELECT sku, product_id FROM {STAGE} WHERE flag & %s <> 0", (NEW,))
        # In slices: a first load creates a million.
        parts = [pl.DataFrame(rows, orient="row", schema=schema)
                 for rows in iter(lambda: cur.fetchmany(_SLICE), [])]
    created = pl.concat(parts) if parts else pl.DataFrame(schema=schema)
    return (written.join(created, on="sku", how="left", maintain_order="left")
            .with_columns(pl.coalesce("product_id", "_id").alias("product_id")).drop("_id"))
