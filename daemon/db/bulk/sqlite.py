"""SQLite's side of the bulk apply: aggregated reads, ids taken by the writer, json_each.

The transaction holds the database write lock from its start (BEGIN
IMMEDIATE, ``engine``), which is what makes the shortcuts here safe: new
products' ids are max(id) + n, and rows with ids over that are this
transaction's own.

On SQLite every staged value is a plain int or str: pysqlite binds those
directly, while None and bool take its adapter lookup, which costs about as
much as the insert itself. "No before" is -1 and "no as-of" a sentinel;
times are integer microseconds (``types.UTCMicros``), not formatted text.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from datetime import datetime
from typing import Any

import polars as pl
from sqlalchemy import text
from sqlalchemy.orm import Session

from daemon.db.engine import driver_connection as dbapi
from daemon.db.types import to_micros

STAGE = "feed_stage"
# "No as-of" in a staged row (see the module docstring).
NO_AS_OF = -(2**62)
_UNIT_SEPARATOR = "\x1f"


class SqliteBulk:
    placeholder = "?"
    # Microseconds since the epoch: SQLite stores them (types.UTCMicros).
    own_as_of = "s.as_of"
    before_sql = "CASE WHEN s.before < 0 THEN 0 ELSE s.before END"
    as_of_sql = "CASE WHEN s.as_of = :none THEN NULL ELSE s.as_of END"

    def load(self, session: Session, source_id: int, as_of: str, joins: str) -> pl.DataFrame | None:
        return load_aggregated(session, source_id, as_of, joins)

    def reserve_ids(self, session: Session, writes: pl.DataFrame, new: pl.Expr) -> tuple[pl.DataFrame, int]:
        """New products' ids, taken here: ``top`` + 1, + 2, ... in the writes' order."""
        top = session.execute(text("SELECT coalesce(max(id), 0) FROM products")).scalar_one()
        return writes.with_columns(
            pl.when(new).then(pl.lit(top, pl.Int64) + new.cast(pl.Int64).cum_sum())
            .otherwise(pl.col("product_id")).alias("product_id")), top

    def create_unstaged(self, session: Session, new: pl.DataFrame, top: int, **kw: Any) -> pl.DataFrame | None:
        return new.select("sku", "product_id") if create_unstaged(session, new, top, **kw) else None

    def load_keys(self, session: Session, keys: pl.Series) -> None:
        cur = dbapi(session).cursor()
        try:
            cur.execute("CREATE TEMPORARY TABLE IF NOT EXISTS feed_keys (product_id INTEGER PRIMARY KEY)")
            cur.execute("DELETE FROM feed_keys")
            insert_rows(cur, "feed_keys", keys.sort().to_frame())
        finally:
            cur.close()

    def bind_time(self, value: datetime) -> object:
        return to_micros(value)

    def stage_columns(self) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
        """before, as_of and sku as staged: plain ints and strs (see the module docstring);
        a SKU is needed only to create its product."""
        return (pl.col("before").fill_null(-1),
                pl.col("as_of").dt.convert_time_zone("UTC").dt.epoch("us").fill_null(NO_AS_OF),
                pl.when(pl.col("_new")).then(pl.col("sku")).otherwise(pl.lit("")))

    def stage(self, session: Session, frame: pl.DataFrame) -> None:
        cur = dbapi(session).cursor()
        try:
            cur.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGE} (product_id INTEGER PRIMARY KEY, "
                f"sku TEXT NOT NULL, before INTEGER NOT NULL, after INTEGER NOT NULL, "
                f"flag INTEGER NOT NULL, as_of INTEGER NOT NULL)")
            cur.execute(f"DELETE FROM {STAGE}")
            # Ordered by product id, so stock and ledger index inserts append.
            insert_rows(cur, STAGE, frame.sort("product_id"))
        finally:
            cur.close()

    def insert_new_products(self, session: Session, params: dict[str, Any],
                            written: pl.DataFrame) -> pl.DataFrame:
        session.execute(text(
            f"INSERT INTO products (id, merchant_id, sku, created_at) "
            f"SELECT product_id, :m, sku, :now FROM {STAGE} WHERE flag & :new"), params)
        return written  # their ids were known before they were staged


def load_aggregated(session: Session, source_id: int, as_of: str, joins: str) -> pl.DataFrame | None:
    """The source's stock rows, each column read as one delimited string.

    pysqlite builds a tuple and an object per value: for a million rows that
    is most of a re-sent feed's time. One aggregate row whose columns are
    split by polars costs about half. All the aggregates of one query see
    the rows in the same order, so the columns line up. None (the caller
    reads row by row instead) if a SKU holds the separator or a value is not
    what the columns should hold, or if the source has no stock; the counts
    and types are checked, never trusted.
    """
    cur = dbapi(session).cursor()
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
        return None
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


def insert_rows(cur: Any, table: str, frame: pl.DataFrame) -> None:
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
        flat = list(itertools.chain.from_iterable(zip(*columns, strict=True)))
        chunk = per * width
        full = len(flat) // chunk
        cur.executemany(statement, (flat[i * chunk:(i + 1) * chunk] for i in range(full)))
        rest = flat[full * chunk:]
        if rest:
            cur.execute(f"INSERT INTO {table} VALUES " + ", ".join([one] * (len(rest) // width)), rest)


def create_unstaged(session: Session, new: pl.DataFrame, top: int, *, merchant_id: int,
                    source_id: int, now: datetime, reference: str, actor: str) -> bool:
    """Create the products of ``new`` with their stock and ledger, unstaged.

    Most of a first load. ``new``'s product ids are ``top`` + 1, + 2, ... in
    its order (``reserve_ids``). The SKUs and the quantities go in as one
    JSON array each, which SQLite's json_each reads as a table: no per-value
    binding and no stage to write and read back, about 0.5 s of a million
    rows. The ledger is then read from the stock rows just made (ids over
    ``top``: nobody else can create any while BEGIN IMMEDIATE holds the write
    lock). False, with nothing written, where that shape does not fit and the
    caller stages the rows instead: rows with their own as-of times, or a
    build of SQLite without JSON.
    """
    as_of = new.get_column("as_of")
    if new.height == 0 or as_of.n_unique() != 1 or not has_json(session):
        return False
    # For a new product, before is "nothing": the quantity changed exactly
    # when it is not 0, and it cannot have been zeroed (it was not stored).
    if not new.select((pl.col("changed") == (pl.col("after") != 0)).all() & ~pl.col("zeroed").any()).item():
        return False
    only = as_of.item(0)
    params = {"m": merchant_id, "src": source_id, "top": top, "now": to_micros(now), "ref": reference,
              "actor": actor, "as_of": None if only is None else to_micros(only)}
    cur = dbapi(session).cursor()
    try:
        cur.execute("INSERT INTO products (id, merchant_id, sku, created_at) "
                    "SELECT :top + key + 1, :m, value, :now FROM json_each(:skus)",
                    {**params, "skus": json_text_array(new.get_column("sku"))})
        cur.execute("INSERT INTO stock (source_id, product_id, quantity, as_of, updated_at) "
                    "SELECT :src, :top + key + 1, value, :as_of, :now FROM json_each(:quantities)",
                    {**params, "quantities": json_int_array(new.get_column("after"))})
        cur.execute("INSERT INTO ledger (source_id, product_id, before, after, reason, reference, actor, at) "
                    "SELECT :src, product_id, 0, quantity, 'feed', :ref, :actor, :now FROM stock "
                    "WHERE source_id = :src AND product_id > :top AND quantity <> 0", params)
    finally:
        cur.close()
    return True


def has_json(session: Session) -> bool:
    try:
        session.connection().exec_driver_sql("SELECT json_valid('[]')")
    except Exception:  # noqa: BLE001 - OperationalError from a build without JSON
        return False
    return True


def json_text_array(values: pl.Series) -> str:
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


def json_int_array(values: pl.Series) -> str:
    if values.len() == 0 or values.has_nulls():
        return json.dumps(values.to_list())
    return "[" + values.cast(pl.Utf8).str.join(",").item() + "]"
