"""Writing a feed plan set-wise: stage the rows, then a few INSERT ... SELECT.

A million-row feed cannot afford a Python round trip per row and table. The
plan's rows are staged into a temporary table and the products, stock and
ledger are written by a few statements that run inside the database.
Everything happens in the caller's transaction, so the quantities, the
ledger and the upload's outcome commit together or not at all. What differs
between the databases is in ``sqlite`` and ``postgres``; this module is the
order of the steps.

What keeps it fast (each measured with ``python -m bench ingest``):

- A full feed that covers its source (``inventory.feed.covers_source``)
  writes only the rows whose quantity changed; the unchanged rows' new as-of
  is the source's ``full_feed_as_of`` (migration 0007).
- The staged row carries the product id, so the ledger and stock statements
  are plain scans of the stage, not joins on ``products (merchant_id, sku)``.
  Known ids come from ``load_current``; on SQLite new products get theirs
  before they are written, on PostgreSQL from the sequence as they are.
- Rows are staged ordered by product id, so stock and ledger index inserts
  append instead of splitting pages all over the tree.
- On SQLite, new products (all of a first load) skip the stage: their SKUs
  and quantities go in as JSON arrays read by json_each.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import polars as pl
from sqlalchemy import text
from sqlalchemy.orm import Session

from daemon.db import stock_version
from daemon.db.bulk.postgres import PostgresBulk
from daemon.db.bulk.sqlite import NO_AS_OF, STAGE, SqliteBulk
from daemon.db.engine import driver_connection as dbapi
from daemon.db.models import Source

_SLICE = 100_000  # rows per fetchmany
# Bits of the staged ``flag``: the quantity changed (a ledger row), it was
# zeroed by a full feed (the ledger reason), the product is new.
CHANGED, ZEROED, NEW = 1, 2, 4

CURRENT_SCHEMA = pl.Schema({"sku": pl.Utf8(), "quantity": pl.Int64(), "as_of": pl.Datetime("us", "UTC"),
                             "product_id": pl.Int64()})
WRITTEN_SCHEMA = pl.Schema({"sku": pl.Utf8(), "product_id": pl.Int64(), "after": pl.Int64(), "as_of": pl.Datetime("us", "UTC")})
_CURRENT_WIRE = pl.Schema({"sku": pl.Utf8(), "quantity": pl.Int64(), "as_of": pl.Int64(), "product_id": pl.Int64()})

_SQLITE, _POSTGRES = SqliteBulk(), PostgresBulk()


def _dialect(session: Session) -> SqliteBulk | PostgresBulk:
    return _SQLITE if session.get_bind().dialect.name == "sqlite" else _POSTGRES


def load_current(session: Session, source_id: int) -> pl.DataFrame:
    """This source's stock as a frame: sku, quantity, as_of (UTC), product_id.

    The as-of is the effective one (see ``Source.full_feed_as_of``): the later
    of the row's own and the source's last full feed's. Read through the
    driver, never the ORM (whose result processing, for a million rows,
    costs more than the rest of the read); on SQLite as one aggregate row
    (``sqlite.load_aggregated``). Rows that the source's time covers
    (after a full feed, nearly all) come back as NULL and take that time in
    polars: a million formatted times as Python strs cost more than the join.
    """
    dialect = _dialect(session)
    source = session.get(Source, source_id)
    full_feed = source.full_feed_as_of if source is not None else None
    own = dialect.own_as_of
    as_of = own if full_feed is None else f"CASE WHEN s.as_of > src.full_feed_as_of THEN {own} END"
    joins = "JOIN products p ON p.id = s.product_id" + (
        "" if full_feed is None else " JOIN sources src ON src.id = s.source_id")
    frame = dialect.load(session, source_id, as_of, joins)
    if frame is None:
        frame = load_rows(session, source_id, as_of, joins)
    as_of_col = pl.col("as_of").cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if full_feed is not None:
        as_of_col = as_of_col.fill_null(pl.lit(full_feed.astimezone(UTC)).dt.cast_time_unit("us"))
    return frame.with_columns(as_of_col)


def load_rows(session: Session, source_id: int, as_of: str, joins: str) -> pl.DataFrame:
    """``load_current``'s rows read row by row, in slices."""
    cur = dbapi(session).cursor()
    try:
        cur.execute(f"SELECT p.sku, s.quantity, {as_of}, s.product_id FROM stock s {joins} "
                    f"WHERE s.source_id = {_dialect(session).placeholder}", (source_id,))
        # In slices, so a million rows never exist as Python tuples at once.
        parts = [pl.DataFrame(rows, orient="row", schema=_CURRENT_WIRE)
                 for rows in iter(lambda: cur.fetchmany(_SLICE), [])]
    finally:
        cur.close()
    return pl.concat(parts) if parts else pl.DataFrame(schema=_CURRENT_WIRE)


def _resolve_ids(session: Session, merchant_id: int, writes: pl.DataFrame,
                 known: pl.DataFrame | None) -> pl.DataFrame:
    """``writes`` with ``product_id`` (null where the product does not exist yet)."""
    if known is not None and "product_id" in known.columns and known.height:
        # Semi first: its hash table is over the (usually few) writes, not
        # over the million stored SKUs (about 100 MB for the left join alone).
        ids = known.select("sku", "product_id").join(writes.select("sku"), on="sku", how="semi")
        writes = writes.join(ids, on="sku", how="left", maintain_order="left")
        in_stock = known.height
    else:
        writes = writes.with_columns(pl.lit(None, pl.Int64).alias("product_id"))
        in_stock = known.height if known is not None and "product_id" in known.columns else 0
    missing = writes.get_column("product_id").null_count()
    if missing == 0:
        return writes
    cur = dbapi(session).cursor()
    ph = _dialect(session).placeholder
    try:
        cur.execute(f"SELECT count(*) FROM products WHERE merchant_id = {ph}", (merchant_id,))
        (catalog_size,) = cur.fetchone()
        if catalog_size == in_stock:
            # Every product of the merchant is in this source's stock: the
            # SKUs without an id are new (the common case, and always so for
            # an empty store), no need to look them up.
            return writes
        cur.execute(f"SELECT sku, id FROM products WHERE merchant_id = {ph}", (merchant_id,))
        catalog = pl.DataFrame(cur.fetchall(), orient="row",
                               schema={"sku": pl.Utf8(), "catalog_id": pl.Int64()})
    finally:
        cur.close()
    return (writes.join(catalog, on="sku", how="left")
            .with_columns(pl.coalesce("product_id", "catalog_id").alias("product_id"))
            .drop("catalog_id"))


def _move_as_of(session: Session, source_id: int, writes: pl.DataFrame, current: pl.DataFrame,
                default_as_of: datetime) -> pl.DataFrame:
    """Move the as-of of unchanged quantities with one UPDATE; returns the other writes.

    Re-sending a feed moves the as-of of every unchanged row to the file's
    time (the stale guard needs it per row) but changes few quantities.
    Staging and upserting every row for that costs most of a first load.
    Instead the rows whose only write is "as-of := the file's as-of" become
    one UPDATE of the source's stock, keyed by whichever is smaller: their
    product ids, or the ids of the source's other stock rows (usually just
    the changed ones). The source's stock is ``current`` here, read under
    the source lock in this transaction, so both key sets are exact.
    """
    default = default_as_of.astimezone(UTC)
    only_as_of = (~pl.col("changed") & pl.col("before").is_not_null() & pl.col("product_id").is_not_null()
                  & (pl.col("as_of") == pl.lit(default).dt.cast_time_unit("us")))
    moving = writes.filter(only_as_of).get_column("product_id")
    if moving.len() == 0:
        return writes
    others = current.get_column("product_id").filter(~current.get_column("product_id").is_in(moving.implode()))
    keys, match = (others, "NOT IN") if others.len() < moving.len() else (moving, "IN")
    dialect = _dialect(session)
    dialect.load_keys(session, keys)
    session.execute(text(
        f"UPDATE stock SET as_of = :d WHERE source_id = :src "
        f"AND product_id {match} (SELECT product_id FROM feed_keys)"),
        {"d": dialect.bind_time(default), "src": source_id})
    session.connection().exec_driver_sql("DELETE FROM feed_keys")
    return writes.filter(~only_as_of)


def _with_ids(written: pl.DataFrame, created: pl.DataFrame) -> pl.DataFrame:
    """``written`` with the ids of the products ``created`` (sku, product_id) where it had none."""
    if (created.height == written.height and written.get_column("product_id").null_count() == written.height
            and created.get_column("sku").equals(written.get_column("sku"))):
        # A first load: every row was created, in this order (a join by SKU
        # of a million rows costs half a second).
        return written.with_columns(created.get_column("product_id").cast(written.schema["product_id"]))
    return (written.join(created.select("sku", pl.col("product_id").alias("_id")), on="sku", how="left",
                         maintain_order="left")
            .with_columns(pl.coalesce("product_id", "_id").alias("product_id")).drop("_id"))


def write_plan(
    session: Session, source: Source, writes: pl.DataFrame, *,
    reference: str, actor: str, now: datetime, current: pl.DataFrame | None = None,
    default_as_of: datetime | None = None, covers_as_of: datetime | None = None,
) -> pl.DataFrame:
    """Write the products, stock and ledger rows of a plan's ``writes``.

    ``current`` is what ``load_current`` returned in this transaction; its
    product ids spare a lookup per row. ``default_as_of`` is the file's as-of
    time (rows without their own); see ``_move_as_of``. ``covers_as_of``
    (``FeedPlan.covers_as_of``) is set when the plan states every SKU of the
    source as of that time: the source's ``full_feed_as_of`` moves to it, and
    the plan holds no rows whose only write would be that as-of.

    Returns the stock rows written (``WRITTEN_SCHEMA``), for a copy of the
    source's stock kept outside the database (``ingest.stock_store``).
    """
    moved = covers_as_of is not None and (source.full_feed_as_of is None
                                          or source.full_feed_as_of < covers_as_of)
    if moved:
        # Never backwards: a late full feed's rows were stale, not its time.
        source.full_feed_as_of = covers_as_of
    if moved or writes.height:
        stock_version.bump(session, source.id)
    if writes.height == 0:
        return pl.DataFrame(schema=WRITTEN_SCHEMA)
    dialect = _dialect(session)
    merchant_id, source_id = source.merchant_id, source.id
    writes = _resolve_ids(session, merchant_id, writes, current)
    new = pl.col("product_id").is_null()
    n_new = writes.get_column("product_id").null_count()
    top = 0
    if n_new:
        writes, top = dialect.reserve_ids(session, writes.with_columns(new.alias("_new")), new)
    else:
        writes = writes.with_columns(pl.lit(False).alias("_new"))
    written = writes.select(list(WRITTEN_SCHEMA)).cast(WRITTEN_SCHEMA)
    # Where the database gives new products their ids, ``written`` gets them
    # once they exist (below). New rows never leave early: they are neither
    # as-of-only rows nor created unstaged there.
    if (current is not None and default_as_of is not None and "product_id" in current.columns
            and covers_as_of is None):
        # Before any stock row is inserted: _move_as_of relies on the
        # source's stock being exactly ``current``. (New products are never
        # as-of-only rows: they have no before.)
        writes = _move_as_of(session, source_id, writes, current, default_as_of)
        if writes.height == 0:
            return written
    created = None
    if n_new:
        created = dialect.create_unstaged(session, writes.filter(pl.col("_new")), top, merchant_id=merchant_id,
                                          source_id=source_id, now=now, reference=reference, actor=actor)
    if created is not None:
        if written.get_column("product_id").has_nulls():  # the database gave the ids (PostgreSQL)
            written = _with_ids(written, created)
        writes, n_new = writes.filter(~pl.col("_new")), 0
        if writes.height == 0:
            return written
    before, as_of, sku = dialect.stage_columns()
    frame = writes.select(
        "product_id", sku.alias("sku"), before.alias("before"), "after",
        (pl.col("changed").cast(pl.Int64) * CHANGED + pl.col("zeroed").cast(pl.Int64) * ZEROED
         + pl.col("_new").cast(pl.Int64) * NEW).alias("flag"),
        as_of.alias("as_of"),
    )
    dialect.stage(session, frame)
    params: dict[str, Any] = {"m": merchant_id, "src": source_id, "now": dialect.bind_time(now),
                              "ref": reference, "actor": actor, "new": NEW, "changed": CHANGED,
                              "zeroed": ZEROED, "none": NO_AS_OF}
    if n_new:
        written = dialect.insert_new_products(session, params, written)
    session.execute(text(
        f"INSERT INTO ledger (source_id, product_id, before, after, reason, reference, actor, at) "
        f"SELECT :src, s.product_id, {dialect.before_sql}, s.after, "
        f"CASE WHEN s.flag & :zeroed <> 0 THEN 'feed_zeroed' ELSE 'feed' END, :ref, :actor, :now "
        f"FROM {STAGE} s WHERE s.flag & :changed <> 0"
    ), params)
    if n_new:
        # A product created in this transaction has no stock row anywhere
        # yet: a plain insert spares PostgreSQL's per-row speculative
        # insertion (the upsert below) for the whole of a first load.
        session.execute(text(
            f"INSERT INTO stock (source_id, product_id, quantity, as_of, updated_at) "
            f"SELECT :src, s.product_id, s.after, {dialect.as_of_sql}, :now FROM {STAGE} s "
            f"WHERE s.flag & :new <> 0"
        ), params)
    if n_new < writes.height:
        session.execute(text(
            f"INSERT INTO stock (source_id, product_id, quantity, as_of, updated_at) "
            f"SELECT :src, s.product_id, s.after, {dialect.as_of_sql}, :now FROM {STAGE} s "
            f"WHERE s.flag & :new = 0 "
            f"ON CONFLICT (source_id, product_id) DO UPDATE SET quantity = excluded.quantity, "
            f"as_of = excluded.as_of, updated_at = CASE WHEN stock.quantity <> excluded.quantity "
            f"THEN excluded.updated_at ELSE stock.updated_at END"
        ), params)
    session.connection().exec_driver_sql(f"DELETE FROM {STAGE}")
    return written
