"""Writing a feed plan set-wise: stage the rows, then a few INSERT ... SELECT.

A million-row feed cannot afford a Python round trip per row and table. The
plan's rows are staged into a temporary table (executemany on SQLite, COPY on
PostgreSQL) and the products, stock and ledger are written by three
statements that run inside the database. Everything happens in the caller's
transaction, so the quantities, the ledger and the upload's outcome commit
together or not at all.
"""

from __future__ import annotations

import io
from datetime import datetime

import polars as pl
from sqlalchemy import text
from sqlalchemy.orm import Session

from daemon.db.models import Source

_STAGE = "feed_stage"


def lock_source(session: Session, source_id: int) -> None:
    """Serialise writers of one source's stock across threads and boxes.

    On SQLite the transaction already holds the database write lock (BEGIN
    IMMEDIATE); on PostgreSQL the source row is the lock everyone takes.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT id FROM sources WHERE id = :id FOR UPDATE"), {"id": source_id})


def load_current(session: Session, source_id: int) -> pl.DataFrame:
    """This source's stock as a frame: sku, quantity, as_of (UTC)."""
    rows = session.execute(
        text("SELECT p.sku, s.quantity, s.as_of FROM stock s JOIN products p ON p.id = s.product_id "
             "WHERE s.source_id = :src"),
        {"src": source_id},
    ).all()
    frame = pl.DataFrame(rows, schema={"sku": pl.Utf8, "quantity": pl.Int64, "as_of": pl.Utf8}
                         if _is_sqlite(session) else
                         {"sku": pl.Utf8, "quantity": pl.Int64, "as_of": pl.Datetime("us", "UTC")},
                         orient="row")
    if _is_sqlite(session):
        # SQLite stores naive UTC text; parse it in one go rather than per row.
        frame = frame.with_columns(
            pl.col("as_of").str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us", strict=False)
            .dt.replace_time_zone("UTC")
        )
    return frame


def load_catalog(session: Session, merchant_id: int) -> pl.Series:
    skus = session.execute(text("SELECT sku FROM products WHERE merchant_id = :m"),
                           {"m": merchant_id}).scalars().all()
    return pl.Series("sku", skus, dtype=pl.Utf8)


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def _stage(session: Session, writes: pl.DataFrame) -> None:
    conn = session.connection()
    sqlite = _is_sqlite(session)
    ts_type = "TEXT" if sqlite else "TIMESTAMPTZ"
    conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} (sku TEXT NOT NULL, before INTEGER, "
        f"after INTEGER NOT NULL, as_of {ts_type}, changed BOOLEAN NOT NULL, zeroed BOOLEAN NOT NULL)"
    )
    conn.exec_driver_sql(f"DELETE FROM {_STAGE}")
    cols = ["sku", "before", "after", "as_of", "changed", "zeroed"]
    frame = writes.select(cols)
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    if sqlite:
        # The same text format SQLAlchemy's SQLite DateTime writes and reads.
        frame = frame.with_columns(
            pl.col("as_of").dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%d %H:%M:%S.%6f"),
        )
        cur = dbapi.cursor()
        cur.executemany(f"INSERT INTO {_STAGE} VALUES (?, ?, ?, ?, ?, ?)", frame.iter_rows())
        cur.close()
    else:
        buf = io.BytesIO()
        frame.with_columns(pl.col("as_of").dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00")).write_csv(
            buf, include_header=False, null_value=""
        )
        with dbapi.cursor() as cur, cur.copy(
            f"COPY {_STAGE} ({', '.join(cols)}) FROM STDIN WITH (FORMAT csv)"
        ) as copy:
            copy.write(buf.getvalue())
        conn.exec_driver_sql(f"ANALYZE {_STAGE}")


def write_plan(
    session: Session, source: Source, writes: pl.DataFrame, *,
    reference: str, actor: str, now: datetime,
) -> None:
    """Write the products, stock and ledger rows of a plan's ``writes``."""
    if writes.height == 0:
        return
    _stage(session, writes)
    params = {"m": source.merchant_id, "src": source.id, "now": now, "ref": reference,
              "actor": actor}
    from daemon.db.types import UTCDateTime  # bind `now` the way the ORM does

    bind_now = UTCDateTime().process_bind_param(now, session.get_bind().dialect)
    params["now"] = bind_now
    created = session.execute(text(
        f"INSERT INTO products (merchant_id, sku, created_at) "
        f"SELECT DISTINCT :m, s.sku, :now FROM {_STAGE} s WHERE NOT EXISTS "
        f"(SELECT 1 FROM products p WHERE p.merchant_id = :m AND p.sku = s.sku)"
    ), params).rowcount
    if created > 1000 and not _is_sqlite(session):
        # The planner still believes products is as small as before this
        # transaction and would join it row by row; tell it the truth.
        session.connection().exec_driver_sql("ANALYZE products")
    # The ledger first: it reads nothing from stock, and writing it before the
    # upsert keeps both statements simple joins on the staged rows.
    session.execute(text(
        f"INSERT INTO ledger (source_id, product_id, before, after, reason, reference, actor, at) "
        f"SELECT :src, p.id, COALESCE(s.before, 0), s.after, "
        f"CASE WHEN s.zeroed THEN 'feed_zeroed' ELSE 'feed' END, :ref, :actor, :now "
        f"FROM {_STAGE} s JOIN products p ON p.merchant_id = :m AND p.sku = s.sku WHERE s.changed"
    ), params)
    session.execute(text(
        f"INSERT INTO stock (source_id, product_id, quantity, as_of, updated_at) "
        f"SELECT :src, p.id, s.after, s.as_of, :now "
        f"FROM {_STAGE} s JOIN products p ON p.merchant_id = :m AND p.sku = s.sku WHERE true "
        f"ON CONFLICT (source_id, product_id) DO UPDATE SET quantity = excluded.quantity, "
        f"as_of = excluded.as_of, updated_at = CASE WHEN stock.quantity <> excluded.quantity "
        f"THEN excluded.updated_at ELSE stock.updated_at END"
    ), params)
    session.connection().exec_driver_sql(f"DELETE FROM {_STAGE}")
