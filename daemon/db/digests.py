"""What a merchant's digest is made of, read as plain rows; and the digests' watermark.

The queries return frozen dataclasses, not ORM objects, so the summary
(``reports.summary``) counts them without a session. Each query is bounded
by the period or by what is still open (held files, undelivered exports),
never by the whole history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.orm import Session

from daemon.db.models import (
    DigestMark,
    ExportRecord,
    MarketRecord,
    OrderLineRecord,
    Product,
    Source,
    Upload,
    UploadError,
)

# --- the watermark ---------------------------------------------------------------------------


def covered_until(session: Session, merchant_id: int) -> datetime | None:
    return session.scalar(select(DigestMark.covered_until).where(DigestMark.merchant_id == merchant_id))


def start_mark(session: Session, merchant_id: int, at: datetime, *, now: datetime, node: str | None) -> None:
    """The first look at a merchant: its digests cover from ``at``. The caller's transaction
    fails on the primary key if another daemon recorded it first."""
    session.add(DigestMark(merchant_id=merchant_id, covered_until=at, updated_at=now, node=node))
    session.flush()


def move_mark(session: Session, merchant_id: int, *, expected: datetime, to: datetime, now: datetime,
              node: str | None) -> bool:
    """Move the watermark from ``expected`` to ``to``; False if it is not at ``expected`` any
    more (another daemon moved it): the caller rolls back what it wrote for that period."""
    result = session.execute(
        update(DigestMark).where(DigestMark.merchant_id == merchant_id, DigestMark.covered_until == expected)
        .values(covered_until=to, updated_at=now, node=node).execution_options(synchronize_session=False))
    return bool(getattr(result, "rowcount", 0))


# --- the facts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadRow:
    """One file of the upload history: a source's feed or status file, or a market's order file."""

    id: int
    source: str | None  # the inventory source, or None for a market's file
    market: str | None
    kind: str  # feed, statuses, orders, cancellations
    name: str
    status: str
    rows: int
    applied: int
    unchanged: int
    errors: int
    zeroed: int
    message: str | None
    received_at: datetime

    @property
    def owner(self) -> str:
        return self.source if self.source is not None else f"{self.market} ({self.kind})"


@dataclass(frozen=True)
class RowErrorRow:
    upload_id: int
    row: int | None
    column: str | None
    value: str | None
    sku: str | None
    message: str


@dataclass(frozen=True)
class DeliveryRow:
    """One export to a market that was delivered, tried, or is still owed."""

    id: int
    market: str
    kind: str
    status: str
    file_name: str
    line_count: int
    attempts: int  # failed tries (a delivered export's last try succeeded and is not counted)
    last_error: str | None
    last_attempt_at: datetime | None
    delivered_at: datetime | None


@dataclass(frozen=True)
class OversellRow:
    market: str
    order_id: str
    line_id: str
    sku: str | None
    quantity: int
    shortfall: int
    source: str | None  # the source the missing units were attributed to
    ordered_at: datetime
    imported_at: datetime


def _merchant_uploads(merchant_id: int) -> Select[*tuple[Any, ...]]:
    return (select(Upload.id, Source.name, MarketRecord.name, Upload.kind, Upload.original_name, Upload.status,
                   Upload.rows, Upload.applied, Upload.unchanged, Upload.errors, Upload.zeroed, Upload.message,
                   Upload.received_at)
            .select_from(Upload)
            .outerjoin(Source, Upload.source_id == Source.id)
            .outerjoin(MarketRecord, Upload.market_id == MarketRecord.id)
            .where(func.coalesce(Source.merchant_id, MarketRecord.merchant_id) == merchant_id))


def uploads(session: Session, merchant_id: int, start: datetime, end: datetime) -> list[UploadRow]:
    """The merchant's files received in ``[start, end)``, oldest first."""
    query = _merchant_uploads(merchant_id).where(Upload.received_at >= start, Upload.received_at < end)
    return [UploadRow(*row) for row in session.execute(query.order_by(Upload.id))]


def held_before(session: Session, merchant_id: int, start: datetime) -> list[UploadRow]:
    """Files received before ``start`` that are still held: they still wait for a person."""
    query = _merchant_uploads(merchant_id).where(Upload.received_at < start, Upload.status == "held")
    return [UploadRow(*row) for row in session.execute(query.order_by(Upload.id))]


def row_errors(session: Session, upload_ids: list[int], *, limit: int) -> tuple[list[RowErrorRow], int]:
    """The row errors of these uploads, in upload and row order, at most ``limit``; and how many in all."""
    if not upload_ids:
        return [], 0
    where = UploadError.upload_id.in_(upload_ids)
    total = session.scalar(select(func.count()).select_from(UploadError).where(where)) or 0
    rows = session.execute(
        select(UploadError.upload_id, UploadError.row, UploadError.column, UploadError.value, UploadError.sku,
               UploadError.message).where(where).order_by(UploadError.upload_id, UploadError.id).limit(limit))
    return [RowErrorRow(*row) for row in rows], total


def deliveries(session: Session, merchant_id: int, start: datetime, end: datetime) -> list[DeliveryRow]:
    """Exports to the merchant's markets delivered or tried in ``[start, end)``, or owed now."""
    in_period = or_(and_(ExportRecord.delivered_at >= start, ExportRecord.delivered_at < end),
                    and_(ExportRecord.last_attempt_at >= start, ExportRecord.last_attempt_at < end))
    query = (select(ExportRecord.id, MarketRecord.name, ExportRecord.kind, ExportRecord.status,
                    ExportRecord.file_name, ExportRecord.line_count, ExportRecord.attempts,
                    ExportRecord.last_error, ExportRecord.last_attempt_at, ExportRecord.delivered_at)
             .join(MarketRecord, MarketRecord.id == ExportRecord.market_id)
             .where(MarketRecord.merchant_id == merchant_id, or_(in_period, ExportRecord.status != "delivered"))
             .order_by(ExportRecord.id))
    return [DeliveryRow(*tuple(row)) for row in session.execute(query)]


def last_deliveries(session: Session, merchant_id: int, before: datetime) -> dict[str, datetime]:
    """Market -> its latest delivery before ``before`` (any period: "last delivered 3 days ago")."""
    query = (select(MarketRecord.name, func.max(ExportRecord.delivered_at))
             .join(ExportRecord, ExportRecord.market_id == MarketRecord.id)
             .where(MarketRecord.merchant_id == merchant_id, ExportRecord.delivered_at < before)
             .group_by(MarketRecord.name))
    return {name: at for name, at in session.execute(query) if at is not None}


def oversells(session: Session, merchant_id: int, start: datetime, end: datetime) -> list[OversellRow]:
    """Order lines imported in ``[start, end)`` that sold more than any source had."""
    query = (select(MarketRecord.name, OrderLineRecord.order_id, OrderLineRecord.line_id, Product.sku,
                    OrderLineRecord.quantity, OrderLineRecord.shortfall, Source.name, OrderLineRecord.ordered_at,
                    OrderLineRecord.imported_at)
             .join(MarketRecord, MarketRecord.id == OrderLineRecord.market_id)
             .outerjoin(Product, Product.id == OrderLineRecord.product_id)
             .outerjoin(Source, Source.id == OrderLineRecord.shortfall_source_id)
             .where(MarketRecord.merchant_id == merchant_id, OrderLineRecord.shortfall > 0,
                    OrderLineRecord.imported_at >= start, OrderLineRecord.imported_at < end)
             .order_by(OrderLineRecord.id))
    return [OversellRow(*row) for row in session.execute(query)]


def names(session: Session, merchant_id: int) -> tuple[list[str], list[str]]:
    """The merchant's source and market names, as the database has them."""
    sources = session.scalars(select(Source.name).where(Source.merchant_id == merchant_id).order_by(Source.id))
    markets = session.scalars(select(MarketRecord.name).where(MarketRecord.merchant_id == merchant_id)
                              .order_by(MarketRecord.id))
    return list(sources), list(markets)
