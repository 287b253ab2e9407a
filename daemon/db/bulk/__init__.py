"""Writing a feed plan set-wise: stage the rows, then a few INSERT ... SELECT.

A million-row feed cannot afford a Python round trip per row and table. The
plan's rows are staged into a temporary table (multi-row INSERTs on SQLite,
COPY on PostgreSQL) and the products, stock and ledger are written by three
statements that run inside the database. Everything happens in the caller's
transaction, so the quantities, the ledger and the upload's outcome commit
together or not at all.

What keeps it fast (each measured with ``python -m bench ingest``):

- A full feed that covers its source (``inventory.feed.covers_source``)
  writes only the rows whose quantity changed; the unchanged rows' new as-of
  is the source's ``full_feed_as_of`` (migration 0007).
- The staged row carries the product id, so the ledger and stock statements
  are plain scans of the stage, not joins on ``products (merchant_id, sku)``.
  Known ids come from ``load_current``; on SQLite new products get theirs
  here (max(id) + n, safe because BEGIN IMMEDIATE holds the database write
  lock for the whole transaction); on PostgreSQL the sequence gives them and
  one UPDATE copies them back into the stage.
- On SQLite every staged value is a plain int or str: pysqlite binds those
  directly, while None and bool take its adapter lookup, which costs about as
  much as the insert itself. "No before" is -1 and "no as-of" a sentinel;
  times are integer microseconds (``types.UTCMicros``), not formatted text.
- Rows are staged ordered by product id, so stock and ledger index inserts
  append instead of splitting pages all over the tree.
- On SQLite, new products (all of a first load) skip the stage: their SKUs
  and quantities go in as JSON arrays read by json_each (``_create_sqlite``).
"""

from __future__ import annotations

import io
import itertools
import json
import sqlite3
from datetime import UTC, datetime

import polars as pl
from sqlalchemy import text
from sqlalchemy.orm import Session

from daemon.db import stock_version
from daemon.db.models import Source
from daemon.db.types import to_micros

_STAGE = "feed_stage"
_SLICE = 100_000  # rows per fetchmany
# Bits of the staged ``flag``: the quantity changed (a ledger row), it was
# zeroed by a full feed (the ledger reason), the product is new.
CHANGED, ZEROED, NEW = 1, 2, 4
# "No as-of" in a staged SQLite row: pysqlite binds None through an adapter
# lookup that costs about as much as the insert (see the module docstring).
_NO_AS_OF = -(2**62)

CURRENT_SCHEMA = {"sku": pl.Utf8, "quantity": pl.Int64, "as_of": pl.Datetime("us", "UTC"),
                  "product_id": pl.Int64}


def lock_source(session: Session, source_id: int) -> None:
    """Serialise writers of one source's stock across threads and boxes.

    On SQLite the transaction already holds the database write lock (BEGIN
    IMMEDIATE); on PostgreSQL the source row is the lock everyone takes.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT id FROM sources WHERE id = :id FOR UPDATE"), {"id": source_id})


def _dbapi(session: Session):  # type: ignore[no-untyped-def]
    dbapi = session.connection().connection.dbapi_connection
    assert dbapi is not None
    return dbapi


def load_current(session: Session, source_id: int) -> pl.DataFrame:
    """This source's stock as a frame: sku, quantity, as_of (UTC), product_id.

    The as-of is the effective one (see ``Source.full_feed_as_of``): the later
    of the row's own and the source's last full feed's. Read through the
    driver, never the ORM (whose result processing, for a million rows,
    costs more than the rest of the read); on SQLite as one aggregate row
    (``_load_aggregated``). Rows that the source's time covers
    (after a full feed, nearly all) come back as NULL and take that time in
    polars: a million formatted times as Python strs cost more than the join.
    """
    sqlite = _is_sqlite(session)
    source = session.get(Source, source_id)
    full_feed = source.full_feed_as_of if source is not None else None
    # Microseconds since the epoch on both: SQLite stores them (types.UTCMicros).
    own = "s.as_of" if sqlite else "(extract(epoch from s.as_of) * 1000000)::bigint"
    as_of = own if full_feed is None else f"CASE WHEN s.as_of > src.full_feed_as_of THEN {own} END"
    joins = "JOIN products p ON p.id = s.product_id" + (
        "" if full_feed is None else " JOIN sources src ON src.id = s.source_id")
    frame = _load_aggregated(session, source_id, as_of, joins) if sqlite else None
    if frame is None:
        frame = _load_rows(session, source_id, as_of, joins)
    as_of_col = pl.col("as_of").cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if full_feed is not None:
        as_of_col = as_of_col.fill_null(pl.lit(full_feed.astimezone(UTC)).dt.cast_time_unit("us"))
    return frame.with_columns(as_of_col)


_CURRENT_WIRE = {"sku": pl.Utf8, "quantity": pl.Int64, "as_of": pl.Int64, "product_id": pl.Int64}
_UNIT_SEPARATOR = "\x1f"


def _load_rows(session: Session, source_id: int, as_of: str, joins: str) -> pl.DataFrame:
    ph = "?" if _is_sqlite(session) else "%s"
    cur = _dbapi(session).cursor()
    try:
        cur.execute(f"SELECT p.sku, s.quantity, {as_of}, s.product_id FROM stock s {joins} "
                    f"WHERE s.source_id = {ph}", (source_id,))
        # In slices, so a million rows never exist as Python tuples at once.
        parts = [pl.DataFrame(rows, orient="row", schema=_CURRENT_WIRE)
                 for rows in iter(lambda: cur.fetchmany(_SLICE), [])]
    finally:
        cur.close()
    return pl.concat(parts) if parts else pl.DataFrame(schema=_CURRENT_WIRE)


def _load_aggregated(session: Session, source_id: int, as_of: str, joins: str) -> pl.DataFrame | None:
    """SQLite: the same rows as ``_load_rows``, each column as one delimited string.

    pysqlite builds a tuple and an object per value: for a million rows that
    is most of a re-sent feed's time. One aggregate row whose columns are
    split by polars costs about half. All the aggregates of one query see
    the rows in the same order, so the columns line up. None (the caller
    reads row by row instead) if a SKU holds the separator or a value is not
    what the columns should hold; the counts and types are checked, never
    trusted.
    """
    cur = _dbapi(session).cursor()
    try:
        cur.execute(
            f"SELECT count(*), group_concat(p.sku, char(31)), group_concat(s.quantity), "
            f"group_concat(ifnull({as_of}, '')), group_concat(s.product_id) "
            f"FROM stock s {joins} WHERE s.source_id = ?", (source_id,))
        count, *texts = cur.fetchone()
    except sqlite3.DataError:  # over SQLITE_MAX_LENGTH: a string that long
        return None
    finally:
        cur.close()
    if count == 0:
        return pl.DataFrame(schema=_CURRENT_WIRE)
    columns: dict[str, pl.Series] = {}
    # One column at a time, each string dropped once split: the four at once
    # would be this read's memory peak.
    for name, separator in (("sku", _UNIT_SEPARATOR), ("quantity", ","), ("as_of", ","), ("product_id", ",")):
        part = pl.Series(name, [texts.pop(0)], dtype=pl.Utf8).str.split(separator).explode()
        if part.len() != count:  # a SKU held the separator
            return None
        if name != "sku":
            try:
                part = part.to_frame().select(
                    pl.when(pl.col(name) != "").then(pl.col(name)).str.to_integer(strict=True)).to_series()
            except pl.exceptions.ComputeError:  # not an integer
                return None
            if name != "as_of" and part.has_nulls():
                return None
        columns[name] = part
    return pl.DataFrame(columns)


def load_catalog(session: Session, merchant_id: int) -> pl.Series:
    skus = session.execute(text("SELECT sku FROM products WHERE merchant_id = :m"),
                           {"m": merchant_id}).scalars().all()
    return pl.Series("sku", skus, dtype=pl.Utf8)


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


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
    cur = _dbapi(session).cursor()
    ph = "?" if _is_sqlite(session) else "%s"
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
                               schema={"sku": pl.Utf8, "catalog_id": pl.Int64})
    finally:
        cur.close()
    return (writes.join(catalog, on="sku", how="left")
            .with_columns(pl.coalesce("product_id", "catalog_id").alias("product_id"))
            .drop("catalog_id"))


def _stage_sqlite(session: Session, frame: pl.DataFrame) -> None:
    dbapi = _dbapi(session)
    cur = dbapi.cursor()
    try:
        cur.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} (product_id INTEGER PRIMARY KEY, "
            f"sku TEXT NOT NULL, before INTEGER NOT NULL, after INTEGER NOT NULL, "
            f"flag INTEGER NOT NULL, as_of INTEGER NOT NULL)")
        cur.execute(f"DELETE FROM {_STAGE}")
        _insert_sqlite(cur, _STAGE, frame)
    finally:
        cur.close()


def _insert_sqlite(cur, table: str, frame: pl.DataFrame) -> None:  # type: ignore[no-untyped-def]
    """Insert a frame's rows with multi-row VALUES statements.

    pysqlite's per-row cost (a step and a reset per executemany row) is most
    of a one-row-per-statement insert; thousands of rows per statement bind
    the same values in about 60% of the time (``python -m bench ingest``).
    Values must be plain ints and strs (see the module docstring).
    """
    width = frame.width
    # At most the build's limit on bound values (32766 by default since
    # 3.32, 999 before; some builds allow far more, but statements of that
    # size bought nothing more when measured).
    limit = min(cur.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER), 32766)
    per = max(1, limit // width)
    one = "(" + ", ".join("?" * width) + ")"
    statement = f"INSERT INTO {table} VALUES " + ", ".join([one] * per)
    # In slices: a million rows as Python lists would cost hundreds of MB.
    for part in frame.iter_slices(per * 20):
        columns = [part.get_column(c).to_list() for c in part.columns]
        flat = list(itertools.chain.from_iterable(zip(*columns)))
        chunk = per * width
        full = len(flat) // chunk
        cur.executemany(statement, (flat[i * chunk:(i + 1) * chunk] for i in range(full)))
        rest = flat[full * chunk:]
        if rest:
            cur.execute(f"INSERT INTO {table} VALUES " + ", ".join([one] * (len(rest) // width)), rest)


def _stage_pg(session: Session, frame: pl.DataFrame) -> None:
    conn = session.connection()
    conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} (product_id BIGINT, sku TEXT NOT NULL, "
        f"before INTEGER, after INTEGER NOT NULL, flag SMALLINT NOT NULL, as_of TIMESTAMPTZ)")
    conn.exec_driver_sql(f"TRUNCATE {_STAGE}")
    buf = io.BytesIO()
    frame.write_csv(buf, include_header=False, null_value="")
    with _dbapi(session).cursor() as cur, cur.copy(
        f"COPY {_STAGE} ({', '.join(frame.columns)}) FROM STDIN WITH (FORMAT csv)"
    ) as copy:
        copy.write(buf.getvalue())


def _with_created_ids(session: Session, written: pl.DataFrame) -> pl.DataFrame:
    """PostgreSQL: ``written`` with the ids the products created in this transaction got."""
    schema = {"sku": pl.Utf8, "_id": pl.Int64}
    with _dbapi(session).cursor() as cur:
        cur.execute(f"SELECT sku, product_id FROM {_STAGE} WHERE flag & %s <> 0", (NEW,))
        # In slices, as in _load_rows: a first load creates a million.
        parts = [pl.DataFrame(rows, orient="row", schema=schema)
                 for rows in iter(lambda: cur.fetchmany(_SLICE), [])]
    created = pl.concat(parts) if parts else pl.DataFrame(schema=schema)
    return (written.join(created, on="sku", how="left", maintain_order="left")
            .with_columns(pl.coalesce("product_id", "_id").alias("product_id")).drop("_id"))


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
    sqlite = _is_sqlite(session)
    if sqlite:
        cur = _dbapi(session).cursor()
        try:
            cur.execute("CREATE TEMPORARY TABLE IF NOT EXISTS feed_keys (product_id INTEGER PRIMARY KEY)")
            cur.execute("DELETE FROM feed_keys")
            _insert_sqlite(cur, "feed_keys", keys.sort().to_frame())
        finally:
            cur.close()
        bind: object = to_micros(default)
    else:
        conn = session.connection()
        conn.exec_driver_sql("CREATE TEMPORARY TABLE IF NOT EXISTS feed_keys (product_id BIGINT)")
        conn.exec_driver_sql("TRUNCATE feed_keys")
        with _dbapi(session).cursor() as cur, cur.copy("COPY feed_keys FROM STDIN") as copy:
            copy.write("".join(f"{k}\n" for k in keys.to_list()))
        conn.exec_driver_sql("ANALYZE feed_keys")
        bind = default
    session.execute(text(
        f"UPDATE stock SET as_of = :d WHERE source_id = :src "
        f"AND product_id {match} (SELECT product_id FROM feed_keys)"), {"d": bind, "src": source_id})
    session.connection().exec_driver_sql("DELETE FROM feed_keys")
    return writes.filter(~only_as_of)


def _create_sqlite(session: Session, new: pl.DataFrame, top: int, *, merchant_id: int,
                   source_id: int, now: datetime, reference: str, actor: str) -> bool:
    """SQLite: create the products of ``new`` with their stock and ledger, unstaged.

    Most of a first load. ``new``'s product ids are ``top`` + 1, + 2, ... in
    its order (write_plan assigns them). The SKUs and the quantities go in
    as one JSON array each, which SQLite's json_each reads as a table: no
    per-value binding and no stage to write and read back, about 0.5 s of
    a million rows. The ledger is then read from the stock rows just made
    (ids over ``top``: nobody else can create any while BEGIN IMMEDIATE holds
    the write lock). False, with nothing written, where that shape does not
    fit and the caller stages the rows instead: rows with their own as-of
    times, or a build of SQLite without JSON.
    """
    as_of = new.get_column("as_of")
    if new.height == 0 or as_of.n_unique() != 1 or not _has_json(session):
        return False
    # For a new product, before is "nothing": the quantity changed exactly
    # when it is not 0, and it cannot have been zeroed (it was not stored).
    if not new.select((pl.col("changed") == (pl.col("after") != 0)).all() & ~pl.col("zeroed").any()).item():
        return False
    only = as_of.item(0)
    params = {"m": merchant_id, "src": source_id, "top": top, "now": to_micros(now), "ref": reference,
              "actor": actor, "as_of": None if only is None else to_micros(only)}
    cur = _dbapi(session).cursor()
    try:
        cur.execute("INSERT INTO products (id, merchant_id, sku, created_at) "
                    "SELECT :top + key + 1, :m, value, :now FROM json_each(:skus)",
                    {**params, "skus": _json_text_array(new.get_column("sku"))})
        cur.execute("INSERT INTO stock (source_id, product_id, quantity, as_of, updated_at) "
                    "SELECT :src, :top + key + 1, value, :as_of, :now FROM json_each(:quantities)",
                    {**params, "quantities": _json_int_array(new.get_column("after"))})
        cur.execute("INSERT INTO ledger (source_id, product_id, before, after, reason, reference, actor, at) "
                    "SELECT :src, product_id, 0, quantity, 'feed', :ref, :actor, :now FROM stock "
                    "WHERE source_id = :src AND product_id > :top AND quantity <> 0", params)
    finally:
        cur.close()
    return True


def _has_json(session: Session) -> bool:
    try:
        session.connection().exec_driver_sql("SELECT json_valid('[]')")
    except Exception:  # noqa: BLE001 - OperationalError from a build without JSON
        return False
    return True


def _json_text_array(values: pl.Series) -> str:
    """A JSON array of the strings, joined by polars when none needs escaping.

    Escaping set-wise (two replace_all and a check for control characters)
    cost 0.2-0.35 s for a million SKUs; a SKU with a quote, a backslash or a
    control character is rare, and then the general encoder does it all.
    """
    if values.len() == 0:
        return "[]"
    if values.str.contains(r'["\\\x00-\x1f]').any():
        return json.dumps(values.to_list())
    return '["' + values.str.join('","').item() + '"]'


def _json_int_array(values: pl.Series) -> str:
    if values.len() == 0 or values.has_nulls():
        return json.dumps(values.to_list())
    return "[" + values.cast(pl.Utf8).str.join(",").item() + "]"


WRITTEN_SCHEMA = {"sku": pl.Utf8, "product_id": pl.Int64, "after": pl.Int64, "as_of": pl.Datetime("us", "UTC")}


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
    source's stock kept outside the database (``ingest.stock_cache``).
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
    sqlite = _is_sqlite(session)
    merchant_id, source_id = source.merchant_id, source.id
    writes = _resolve_ids(session, merchant_id, writes, current)
    new = pl.col("product_id").is_null()
    n_new = writes.get_column("product_id").null_count()
    top = 0
    if sqlite and n_new:
        # BEGIN IMMEDIATE holds the write lock: nobody else can take these ids.
        top = session.execute(text("SELECT coalesce(max(id), 0) FROM products")).scalar_one()
        writes = writes.with_columns(
            pl.when(new).then(pl.lit(top, pl.Int64) + new.cast(pl.Int64).cum_sum())
            .otherwise(pl.col("product_id")).alias("product_id"),
            new.alias("_new"))
    else:
        writes = writes.with_columns(new.alias("_new"))
    written = writes.select(list(WRITTEN_SCHEMA)).cast(WRITTEN_SCHEMA)  # type: ignore[arg-type]
    # On PostgreSQL the sequence gives new products their ids: ``written``
    # gets them once they exist (below). New rows never leave early: they
    # are neither as-of-only rows nor created unstaged there.
    if (current is not None and default_as_of is not None and "product_id" in current.columns
            and covers_as_of is None):
        # Before any stock row is inserted: _move_as_of relies on the
        # source's stock being exactly ``current``. (New products are never
        # as-of-only rows: they have no before.)
        writes = _move_as_of(session, source_id, writes, current, default_as_of)
        if writes.height == 0:
            return written
    if sqlite and n_new:
        if _create_sqlite(session, writes.filter(pl.col("_new")), top, merchant_id=merchant_id,
                          source_id=source_id, now=now, reference=reference, actor=actor):
            writes, n_new = writes.filter(~pl.col("_new")), 0
            if writes.height == 0:
                return written
    if sqlite:
        # Plain ints and strs only (see the module docstring): times are
        # microseconds (types.UTCMicros), "none" is a sentinel, and a SKU is
        # needed only to create its product.
        bind_now: object = to_micros(now)
        before = pl.col("before").fill_null(-1)
        as_of = pl.col("as_of").dt.convert_time_zone("UTC").dt.epoch("us").fill_null(_NO_AS_OF)
        sku = pl.when(pl.col("_new")).then(pl.col("sku")).otherwise(pl.lit(""))
    else:
        bind_now = now.astimezone(UTC)
        before = pl.col("before")
        as_of = pl.col("as_of").dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00")
        sku = pl.col("sku")
    frame = writes.select(
        "product_id", sku.alias("sku"), before.alias("before"), "after",
        (pl.col("changed").cast(pl.Int64) * CHANGED + pl.col("zeroed").cast(pl.Int64) * ZEROED
         + pl.col("_new").cast(pl.Int64) * NEW).alias("flag"),
        as_of.alias("as_of"),
    )
    if sqlite:
        _stage_sqlite(session, frame.sort("product_id"))
    else:
        _stage_pg(session, frame)
    params = {"m": merchant_id, "src": source_id, "now": bind_now, "ref": reference,
              "actor": actor, "new": NEW, "changed": CHANGED, "zeroed": ZEROED, "none": _NO_AS_OF}
    if n_new:
        if sqlite:
            session.execute(text(
                f"INSERT INTO products (id, merchant_id, sku, created_at) "
                f"SELECT product_id, :m, sku, :now FROM {_STAGE} WHERE flag & :new"), params)
        else:
            # The new ids come back through RETURNING and a hash join with
            # the stage, not by probing the products index once per row.
            session.execute(text(
                f"WITH created AS (INSERT INTO products (merchant_id, sku, created_at) "
                f"SELECT :m, sku, :now FROM {_STAGE} WHERE product_id IS NULL "
                f"ON CONFLICT (merchant_id, sku) DO NOTHING RETURNING id, sku) "
                f"UPDATE {_STAGE} s SET product_id = created.id FROM created "
                f"WHERE s.sku = created.sku"), params)
            # Another source of the merchant may create the same SKU at the
            # same time (the lock is per source): whoever is second (DO
            # NOTHING above) keeps the first one's product.
            session.execute(text(
                f"UPDATE {_STAGE} s SET product_id = p.id FROM products p "
                f"WHERE s.product_id IS NULL AND p.merchant_id = :m AND p.sku = s.sku"), params)
            written = _with_created_ids(session, written)
    before_sql = "CASE WHEN s.before < 0 THEN 0 ELSE s.before END" if sqlite else "COALESCE(s.before, 0)"
    as_of_sql = "CASE WHEN s.as_of = :none THEN NULL ELSE s.as_of END" if sqlite else "s.as_of"
    session.execute(text(
        f"INSERT INTO ledger (source_id, product_id, before, after, reason, reference, actor, at) "
        f"SELECT :src, s.product_id, {before_sql}, s.after, "
        f"CASE WHEN s.flag & :zeroed <> 0 THEN 'feed_zeroed' ELSE 'feed' END, :ref, :actor, :now "
        f"FROM {_STAGE} s WHERE s.flag & :changed <> 0"
    ), params)
    if n_new:
        # A product created in this transaction has no stock row anywhere
        # yet: a plain insert spares PostgreSQL's per-row speculative
        # insertion (the upsert below) for the whole of a first load.
        session.execute(text(
            f"INSERT INTO stock (source_id, product_id, quantity, as_of, updated_at) "
            f"SELECT :src, s.product_id, s.after, {as_of_sql}, :now FROM {_STAGE} s "
            f"WHERE s.flag & :new <> 0"
        ), params)
    if n_new < writes.height:
        session.execute(text(
            f"INSERT INTO stock (source_id, product_id, quantity, as_of, updated_at) "
            f"SELECT :src, s.product_id, s.after, {as_of_sql}, :now FROM {_STAGE} s "
            f"WHERE s.flag & :new = 0 "
            f"ON CONFLICT (source_id, product_id) DO UPDATE SET quantity = excluded.quantity, "
            f"as_of = excluded.as_of, updated_at = CASE WHEN stock.quantity <> excluded.quantity "
            f"THEN excluded.updated_at ELSE stock.updated_at END"
        ), params)
    session.connection().exec_driver_sql(f"DELETE FROM {_STAGE}")
    return written
