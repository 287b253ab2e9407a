"""The exports outbox (what a market should be sent is ``db.market_lines``).

Every status change of an export is here, as every upload's is in
``db.uploads``. The rule that makes delivery exactly-once: an export row is
written (with the file's bytes) before anything is sent; at most one export
per market is undelivered (``ix_exports_undelivered``); a new one is
computed only once the last is delivered, against the listings'
``last_sent_quantity``, which advances only in the transaction that marks an
export delivered, after the remote rename.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.db.engine import driver_connection as dbapi
from daemon.db.models import ExportRecord, MarketRecord, Merchant, OrderExportRecord, Source

PENDING, FAILING, DELIVERED = "pending", "failing", "delivered"
_Delivery = TypeVar("_Delivery", ExportRecord, OrderExportRecord)  # a row of either delivery outbox
_SLICE = 100_000


def lines_blob(lines: pl.DataFrame) -> bytes:
    """The (listing_id, quantity) pairs an export carries, as Arrow IPC bytes."""
    buf = io.BytesIO()
    lines.select("listing_id", "quantity").write_ipc(buf, compression="zstd")
    return buf.getvalue()


def blob_lines(blob: bytes) -> pl.DataFrame:
    return pl.read_ipc(io.BytesIO(blob))


def undelivered(session: Session, market_id: int, *, lock: bool = False) -> ExportRecord | None:
    """The market's export not yet delivered (pending or failing), if any."""
    query = select(ExportRecord).where(ExportRecord.market_id == market_id, ExportRecord.status != DELIVERED)
    return session.scalar(query.with_for_update() if lock else query)


def add_export(session: Session, **fields: Any) -> ExportRecord:
    """A new pending export. The caller's transaction fails on the unique index if the
    market already has an undelivered one (another daemon was first)."""
    record = ExportRecord(status=PENDING, attempts=0, **fields)
    session.add(record)
    session.flush()
    return record


def mark_delivered(session: Session, export_id: int, now: datetime) -> bool:
    """Mark delivered and advance the listings' last-sent quantities, in the caller's transaction.

    False (nothing changed) if it was not undelivered any more: another
    daemon recorded it first.
    """
    record = session.get(ExportRecord, export_id, with_for_update=True)
    if record is None or record.status == DELIVERED:
        return False
    record.status, record.delivered_at, record.last_error = DELIVERED, now, None
    _advance_last_sent(session, blob_lines(record.lines))
    return True


def _advance_last_sent(session: Session, lines: pl.DataFrame) -> None:
    """listings.last_sent_quantity := the delivered quantity, for every line, in one UPDATE.

    The pairs go into a temporary table first (COPY on PostgreSQL, a
    many-row insert on SQLite): a full feed carries a million of them, too
    many for statements keyed by id lists.
    """
    if lines.height == 0:
        return
    conn = session.connection()
    postgres = conn.dialect.name == "postgresql"
    conn.exec_driver_sql("CREATE TEMPORARY TABLE IF NOT EXISTS delivered_lines "
                         "(listing_id BIGINT PRIMARY KEY, quantity BIGINT NOT NULL)")
    conn.exec_driver_sql("TRUNCATE delivered_lines" if postgres else "DELETE FROM delivered_lines")
    cur = dbapi(session).cursor()
    try:
        if postgres:
            with cur.copy("COPY delivered_lines (listing_id, quantity) FROM STDIN") as copy:
                for part in lines.iter_slices(_SLICE):
                    buf = io.BytesIO()
                    part.select("listing_id", "quantity").write_csv(buf, include_header=False, separator="\t")
                    copy.write(buf.getvalue())
        else:
            for part in lines.iter_slices(_SLICE):
                cur.executemany("INSERT INTO delivered_lines VALUES (?, ?)",
                                part.select("listing_id", "quantity").iter_rows())
    finally:
        cur.close()
    if postgres:
        # Temporary tables get no statistics from autovacuum: without them a
        # one-line delta is planned as a hash join over every listing.
        conn.exec_driver_sql("ANALYZE delivered_lines")
    # Only the rows that change: a full feed mostly repeats what was sent,
    # and rewriting a million unchanged rows costs PostgreSQL tens of seconds.
    distinct = "IS DISTINCT FROM" if postgres else "IS NOT"
    conn.exec_driver_sql("UPDATE listings SET last_sent_quantity = d.quantity, needs_update = false "
                         "FROM delivered_lines d WHERE listings.id = d.listing_id "
                         f"AND (listings.last_sent_quantity {distinct} d.quantity OR listings.needs_update)")
    conn.exec_driver_sql("TRUNCATE delivered_lines" if postgres else "DELETE FROM delivered_lines")


def mark_attempt(session: Session, export_id: int, now: datetime, error: str, *, failing: bool) -> int:
    """Record a failed attempt; returns the attempts so far."""
    return record_attempt(session, ExportRecord, export_id, now, error, failing=failing)


def record_attempt(session: Session, model: type[_Delivery], export_id: int,
                   now: datetime, error: str, *, failing: bool) -> int:
    """A failed attempt on a row of either delivery outbox (markets' or warehouses'): the same rule."""
    record = session.get(model, export_id, with_for_update=True)
    if record is None or record.status == DELIVERED:
        return 0
    record.attempts += 1
    record.last_attempt_at, record.last_error = now, error
    if failing:
        record.status = FAILING
    return record.attempts


def load(session: Session, export_id: int) -> tuple[str, bytes, int, str, bool] | None:
    """(file name, bytes, market id, kind, delivered) of one export: what the sender needs."""
    record = session.get(ExportRecord, export_id)
    if record is None:
        return None
    return record.file_name, record.content, record.market_id, record.kind, record.status == DELIVERED


@dataclass(frozen=True)
class ExportRow:
    id: int
    merchant: str
    market: str
    kind: str
    status: str
    trigger: str
    file_name: str
    destination: str
    lines: int
    size: int
    attempts: int
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


def list_exports(session: Session, *, merchant: str | None = None, market: str | None = None,
                 status: str | None = None, limit: int = 50) -> list[ExportRow]:
    query = (select(ExportRecord.id, Merchant.name, MarketRecord.name, ExportRecord.kind, ExportRecord.status,
                    ExportRecord.trigger, ExportRecord.file_name, ExportRecord.destination,
                    ExportRecord.line_count, ExportRecord.size, ExportRecord.attempts, ExportRecord.last_error,
                    ExportRecord.created_at, ExportRecord.delivered_at)
             .join(MarketRecord, MarketRecord.id == ExportRecord.market_id)
             .join(Merchant, Merchant.id == MarketRecord.merchant_id)
             .order_by(ExportRecord.id.desc()).limit(limit))
    if merchant:
        query = query.where(Merchant.name == merchant)
    if market:
        query = query.where(MarketRecord.name == market)
    if status:
        query = query.where(ExportRecord.status == status)
    return [ExportRow(*tuple(row)) for row in session.execute(query)]


def last_delivery(session: Session, market_id: int) -> datetime | None:
    return session.scalar(select(ExportRecord.delivered_at).where(
        ExportRecord.market_id == market_id, ExportRecord.status == DELIVERED)
        .order_by(ExportRecord.delivered_at.desc()).limit(1))


def market_fingerprint(session: Session, merchant: str, market: str) -> tuple[object, ...]:
    """What moves when the market should be sent something: its sources' stock versions
    (bumped by every stock write, by any process or daemon), its rules, its listings' version."""
    record = session.scalar(select(MarketRecord).join(Merchant).where(
        Merchant.name == merchant, MarketRecord.name == market))
    if record is None:
        return ()
    versions = session.execute(select(Source.name, Source.stock_version)
                               .where(Source.merchant_id == record.merchant_id).order_by(Source.name)).all()
    listings = session.connection().exec_driver_sql(
        f"SELECT listings_version FROM markets WHERE id = {int(record.id)}").scalar_one()
    return (tuple(map(tuple, versions)), record.sources, record.buffer, record.percent, record.maximum,
            record.minimum, listings)
