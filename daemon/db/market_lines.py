"""What each listing of a market should be sent now: read whole, or kept and brought up to date.

``market_lines`` reads it whole: every listing, the units available over the
market's sources summed in the database, the channel rules applied
set-wise. For a million listings that is seconds, and a delta after one sale
must take well under one (issue 13's figures): ``LinesCache`` keeps each
market's lines between exports and brings them up to date from what moved
since, which is

- the stock of the products with a ledger row since the last look: every
  change of a quantity writes one (``db.stock``, ``db.bulk``), and ledger
  ids only grow; rows with ids up to the cache's *watermark* are in it;
- the listings' last-delivered quantities, from the exports delivered since
  (their ``lines``, in the order they were delivered: one undelivered export
  per market makes that the order of their ids), whoever delivered them;
- anything else (a listing added: ``markets.listings_version``; the
  market's sources; the merchant's sources) reads the market whole again, as
  does a look that finds more than a tenth of the listings changed, where
  reading whole is as cheap.

The watermark must never pass a ledger id that a transaction still open
could commit later. On SQLite there is one writer at a time and ids are
given in commit order, so the newest id this transaction sees will do. On
PostgreSQL ids come from a sequence when rows are inserted, and a
transaction may commit after a later one, so the newest visible id could
hide an older one still to come: the watermark is taken as the newest id,
then the cache waits until every transaction in flight at that moment has
ended (``pg_current_snapshot``). Until then the look does not settle and is
retried: a run under a long apply waits for it, which it would have to
anyway to send the apply's quantities.

The cached frame is about 50 bytes a listing (50 MB for a million), per
market, in the exporting daemon only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from daemon.db.engine import driver_connection as dbapi
from daemon.db.exports import DELIVERED, blob_lines
from daemon.db.markets import channel_market
from daemon.db.models import ExportRecord, MarketRecord, Source
from daemon.errors import TransientError
from daemon.inventory import channels

LINES_SCHEMA = pl.Schema({"listing_id": pl.Int64(), "sku": pl.Utf8(), "quantity": pl.Int64(),
                          "last_sent": pl.Int64()})
_RAW = {"listing_id": pl.Int64(), "product_id": pl.Int64(), "sku": pl.Utf8(), "available": pl.Int64(),
        "last_sent": pl.Int64()}
_SLICE = 100_000
_POSITIVE = "SUM(CASE WHEN s.quantity > 0 THEN s.quantity ELSE 0 END)"  # channels.available_sum's rule


def market_lines(session: Session, market: MarketRecord) -> pl.DataFrame:
    """Every listing of ``market`` with the quantity it should be sent now (``LINES_SCHEMA``), by SKU."""
    return _with_rules(_read_whole(session, market, _source_ids(session, market)), market)


_COMPOSED_KEPT = 16  # exports' lines kept between composing and delivery: one undelivered per market


class NotSettled(TransientError):
    """A transaction that may still write the ledger below the watermark is open; try again."""


@dataclass
class _Entry:
    key: tuple[object, ...]  # what reads the market whole again when it moves
    watermark: int  # every ledger row up to this id is in ``frame``
    delivered: int  # every delivered export up to this id is in ``frame.last_sent``
    frame: pl.DataFrame  # _RAW, by SKU


class LinesCache:
    """Each market's lines between exports (see the module docstring). One per exporting daemon.

    Not for concurrent use on one market: the exporter runs one export of a
    market at a time. ``settle_seconds``: how long a look waits for the
    transactions in flight at its watermark before giving up (``NotSettled``).
    A look that finds more than ``max(min_patch, listings // 10)`` ledger
    rows reads the market whole instead.
    """

    def __init__(self, *, settle_seconds: float = 10.0, min_patch: int = 1_000,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._entries: dict[int, _Entry] = {}
        # The last lines handed out per market, with the kept frame and rules they came from: a full
        # feed of an unchanged market reuses them (1M listings: 7-14 ms of the feed's ~60).
        self._shaped: dict[int, tuple[pl.DataFrame, object, pl.DataFrame]] = {}
        # The lines of the exports this exporter composed, by id (with their sha256: on SQLite a
        # rolled-back id can be handed out again): at delivery they are taken from here, not by
        # decoding the row's blob (1M lines: 25 ms of zstd).
        self._composed: dict[int, tuple[str, pl.DataFrame]] = {}
        self._settle_seconds, self._min_patch, self._sleep = settle_seconds, min_patch, sleep
        self.whole_reads = 0  # for tests and benchmarks: how often a market was read whole

    def market_lines(self, session: Session, market: MarketRecord) -> pl.DataFrame:
        """``market_lines(session, market)``, from the kept copy brought up to date."""
        source_ids = _source_ids(session, market)
        key = (_listings_version(session, market.id), market.merchant_id, market.sources, tuple(source_ids),
               tuple(session.scalars(select(Source.id).where(Source.merchant_id == market.merchant_id)
                                     .order_by(Source.id))))
        watermark = self._settled_watermark(session)
        delivered = _newest_delivered(session, market.id)
        entry = self._entries.get(market.id)
        if entry is not None and entry.key == key:
            entry = _brought_up_to_date(session, market.id, entry, source_ids, watermark, delivered,
                                        min_patch=self._min_patch, composed=self._composed)
        if entry is None or entry.key != key:
            self.whole_reads += 1
            entry = _Entry(key, watermark, delivered, _read_whole(session, market, source_ids))
        self._entries[market.id] = entry
        rules = channel_market(market).rules
        shaped = self._shaped.get(market.id)
        if shaped is not None and shaped[0] is entry.frame and shaped[1] == rules:
            return shaped[2]
        lines = _with_rules(entry.frame, market)
        self._shaped[market.id] = (entry.frame, rules, lines)
        return lines

    def composed(self, export_id: int, sha256: str, lines: pl.DataFrame) -> None:
        """An export composed from these lines (listing_id, quantity); kept until delivered."""
        self._composed[export_id] = (sha256, lines)
        while len(self._composed) > _COMPOSED_KEPT:
            self._composed.pop(next(iter(self._composed)))

    def forget(self, market_id: int | None = None) -> None:
        """Drop the kept copy of one market (None: all), e.g. when this daemon stops leading."""
        if market_id is None:
            self._entries.clear()
            self._shaped.clear()
            self._composed.clear()
        else:
            self._entries.pop(market_id, None)
            self._shaped.pop(market_id, None)

    def _settled_watermark(self, session: Session) -> int:
        conn = session.connection()
        if conn.dialect.name != "postgresql":
            return int(conn.exec_driver_sql("SELECT COALESCE(MAX(id), 0) FROM ledger").scalar_one())
        mark = int(conn.exec_driver_sql("SELECT COALESCE(MAX(id), 0) FROM ledger").scalar_one())
        # Taken after the id: every transaction that could hold a smaller id uncommitted is in it.
        in_flight = [x for x, in conn.exec_driver_sql(
            "SELECT x::text FROM pg_snapshot_xip(pg_current_snapshot()) AS x "
            "WHERE x IS DISTINCT FROM pg_current_xact_id_if_assigned()")]
        deadline = time.monotonic() + self._settle_seconds
        while in_flight:
            in_flight = [x for x, in conn.exec_driver_sql(
                "SELECT x FROM unnest(CAST(%(xs)s AS text[])) AS x "
                "WHERE pg_xact_status(CAST(x AS xid8)) = 'in progress'", {"xs": in_flight})]
            if not in_flight:
                break
            if time.monotonic() > deadline:
                raise NotSettled(f"transactions {', '.join(in_flight[:5])} are still open after "
                                 f"{self._settle_seconds:g} s; the export runs again later")
            self._sleep(0.02)
        return mark


def _brought_up_to_date(session: Session, market_id: int, entry: _Entry, source_ids: list[int], watermark: int,
                        delivered: int, *, min_patch: int,
                        composed: dict[int, tuple[str, pl.DataFrame]]) -> _Entry | None:
    """``entry`` with the changes since it was made; None where reading whole is as cheap."""
    frame = entry.frame
    if watermark < entry.watermark or delivered < entry.delivered:
        return None  # ids went back: the database is not the one the copy was made from
    if watermark > entry.watermark:
        moved = _changed_available(session, source_ids, entry.watermark, watermark,
                                   limit=max(min_patch, frame.height // 10))
        if moved is None:
            return None
        frame = _patched(frame, moved, "product_id", "available")
    if delivered > entry.delivered:
        for export_id, sha256 in session.execute(select(ExportRecord.id, ExportRecord.sha256).where(
                ExportRecord.market_id == market_id, ExportRecord.status == DELIVERED,
                ExportRecord.id > entry.delivered, ExportRecord.id <= delivered).order_by(ExportRecord.id)):
            mine = composed.pop(export_id, None)
            if mine is not None and mine[0] == sha256:
                lines = mine[1]
            else:
                blob = session.scalar(select(ExportRecord.lines).where(ExportRecord.id == export_id))
                if blob is None:
                    return None  # gone meanwhile: read the market whole
                lines = blob_lines(blob)
            frame = _patched(frame, lines.rename({"quantity": "last_sent"}), "listing_id", "last_sent")
    return _Entry(entry.key, watermark, delivered, frame)


def _patched(frame: pl.DataFrame, patch: pl.DataFrame, on: str, column: str) -> pl.DataFrame:
    """``frame`` with ``column`` taken from ``patch`` where ``on`` matches; its order kept."""
    if patch.height == 0:
        return frame
    new = patch.select(pl.col(on).cast(pl.Int64), pl.col(column).cast(pl.Int64).alias("_new"))
    if new.height == frame.height and new.get_column(on).equals(frame.get_column(on)):
        # A full feed delivered: every line, in the frame's own order. The column
        # as it is, not a join of a million rows (0.3 s of the next feed's time).
        return frame.with_columns(pl.coalesce(new.get_column("_new"), frame.get_column(column)).alias(column))
    return (frame.join(new, on=on, how="left", maintain_order="left")
            .with_columns(pl.when(pl.col("_new").is_not_null()).then(pl.col("_new")).otherwise(pl.col(column))
                          .alias(column))
            .drop("_new"))


def _changed_available(session: Session, source_ids: list[int], after: int, upto: int, *,
                       limit: int) -> pl.DataFrame | None:
    """(product_id, available) of the products with a ledger row in (after, upto] in ``source_ids``.

    None if more than ``limit`` ledger rows are in that range (of any
    source: a bound, read off the primary key).
    """
    conn = session.connection()
    rows = conn.exec_driver_sql(f"SELECT COUNT(*) FROM ledger WHERE id > {int(after)} AND id <= {int(upto)}")
    if int(rows.scalar_one()) > limit:
        return None
    schema = {"product_id": pl.Int64(), "available": pl.Int64()}
    if not source_ids:
        return pl.DataFrame(schema=schema)
    sources = ", ".join(str(int(i)) for i in source_ids)
    # Every changed product has a stock row in the source it changed in (stock
    # rows are never deleted), so the GROUP BY gives each one a row.
    result = conn.exec_driver_sql(
        f"SELECT s.product_id, {_POSITIVE} FROM stock s WHERE s.source_id IN ({sources}) AND s.product_id IN "
        f"(SELECT product_id FROM ledger WHERE id > {int(after)} AND id <= {int(upto)} "
        f"AND source_id IN ({sources})) GROUP BY s.product_id")
    return pl.DataFrame(result.all(), orient="row", schema=schema)


def _source_ids(session: Session, market: MarketRecord) -> list[int]:
    """The ids of the sources the market sells from, ascending."""
    domain = channel_market(market)
    query = select(Source.id).where(Source.merchant_id == market.merchant_id).order_by(Source.id)
    if domain.sources is not None:
        query = query.where(Source.name.in_(sorted(domain.sources)))
    return list(session.scalars(query))


def _listings_version(session: Session, market_id: int) -> int:
    return int(session.connection().execute(
        text("SELECT listings_version FROM markets WHERE id = :id"), {"id": market_id}).scalar_one())


def _newest_delivered(session: Session, market_id: int) -> int:
    newest = session.scalar(select(ExportRecord.id).where(
        ExportRecord.market_id == market_id, ExportRecord.status == DELIVERED)
        .order_by(ExportRecord.id.desc()).limit(1))
    return 0 if newest is None else int(newest)


def _read_whole(session: Session, market: MarketRecord, source_ids: list[int]) -> pl.DataFrame:
    """Every listing of the market with its available units (``_RAW``), by SKU."""
    sources = ", ".join(str(int(i)) for i in source_ids) or "NULL"
    ph = "?" if session.get_bind().dialect.name == "sqlite" else "%s"
    sql = (
        "SELECT l.id, l.product_id, p.sku, COALESCE(a.available, 0), l.last_sent_quantity FROM listings l "
        "JOIN products p ON p.id = l.product_id "
        f"LEFT JOIN (SELECT s.product_id, {_POSITIVE} AS available FROM stock s WHERE s.source_id IN ({sources}) "
        f"GROUP BY s.product_id) a ON a.product_id = l.product_id WHERE l.market_id = {ph} ORDER BY p.sku")
    cur = dbapi(session).cursor()
    try:
        cur.execute(sql, (market.id,))
        parts = [pl.DataFrame(rows, orient="row", schema=_RAW) for rows in iter(lambda: cur.fetchmany(_SLICE), [])]
    finally:
        cur.close()
    return pl.concat(parts) if parts else pl.DataFrame(schema=_RAW)


def _with_rules(frame: pl.DataFrame, market: MarketRecord) -> pl.DataFrame:
    rules = channel_market(market).rules
    return frame.select("listing_id", "sku", channels.rules_expr(pl.col("available"), rules).alias("quantity"),
                        "last_sent")
