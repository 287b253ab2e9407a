"""Reading and writing stock and the ledger through the domain core."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, case, or_, select, text
from sqlalchemy.orm import Session

from daemon.db.catalog import get_or_create_product
from daemon.db.models import LedgerEntry, Merchant, Product, Source, Stock
from daemon.inventory import stock as domain


def lock_source(session: Session, source_id: int) -> None:
    """Serialise writers of one source's stock across threads and boxes.

    On SQLite the transaction already holds the database write lock (BEGIN
    IMMEDIATE, ``engine``); on PostgreSQL the source row is the lock every
    writer takes. NO KEY UPDATE, not UPDATE: recording a new upload for the
    source (a foreign key's KEY SHARE) must not wait for a long apply, or a
    sender's transfer would hang until it ends.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT id FROM sources WHERE id = :id FOR NO KEY UPDATE"), {"id": source_id})


def effective_as_of(own: datetime | None, full_feed: datetime | None) -> datetime | None:
    """A stock row's as-of: its own, or its source's last full feed's when that is later."""
    if full_feed is None or (own is not None and own >= full_feed):
        return own
    return full_feed


def effective_as_of_sql() -> ColumnElement[datetime | None]:
    """``effective_as_of`` for a query that joins Stock and Source."""
    later = and_(Source.full_feed_as_of.is_not(None),
                 or_(Stock.as_of.is_(None), Stock.as_of < Source.full_feed_as_of))
    return case((later, Source.full_feed_as_of), else_=Stock.as_of)


def current_level(session: Session, source_id: int, product_id: int) -> tuple[Stock | None, domain.StockLevel | None]:
    row = session.get(Stock, (source_id, product_id), with_for_update=True)
    if row is None:
        return None, None
    source = session.get(Source, source_id)
    full_feed = source.full_feed_as_of if source is not None else None
    return row, domain.StockLevel(quantity=row.quantity, as_of=effective_as_of(row.as_of, full_feed))


def write_change(
    session: Session, row: Stock | None, source_id: int, product_id: int,
    change: domain.Change, now: datetime,
) -> None:
    """Persist what the domain decided: the level, and the ledger entry if any."""
    if change.stale:
        return
    if row is None:
        session.add(Stock(source_id=source_id, product_id=product_id,
                          quantity=change.level.quantity, as_of=change.level.as_of, updated_at=now))
    else:
        if change.entry is not None:
            row.quantity = change.level.quantity
            row.updated_at = now
        row.as_of = change.level.as_of
    if change.entry is not None:
        e = change.entry
        session.add(LedgerEntry(source_id=source_id, product_id=product_id, before=e.before,
                                after=e.after, reason=e.reason.value, reference=e.reference,
                                actor=e.actor, at=e.at))


def set_one(
    session: Session, source: Source, sku: str, quantity: int, *,
    actor: str, now: datetime, reason: domain.Reason = domain.Reason.MANUAL,
    reference: str | None = None,
) -> domain.Change:
    """The individual update: one SKU's quantity in one source."""
    product = get_or_create_product(session, source.merchant_id, sku, now)
    row, level = current_level(session, source.id, product.id)
    change = domain.set_quantity(level, quantity, sku=sku, source=source.name, reason=reason,
                                 actor=actor, now=now, reference=reference)
    write_change(session, row, source.id, product.id, change, now)
    return change


@dataclass(frozen=True)
class InventoryRow:
    merchant: str
    source: str
    sku: str
    quantity: int
    as_of: datetime | None
    updated_at: datetime


def inventory(
    session: Session, *, merchant: str | None = None, sku: str | None = None,
    source: str | None = None,
) -> list[InventoryRow]:
    query = (
        select(Merchant.name, Source.name, Product.sku, Stock.quantity, effective_as_of_sql(),
               Stock.updated_at)
        .select_from(Stock).join(Source, Stock.source_id == Source.id)
        .join(Product, Stock.product_id == Product.id).join(Merchant, Source.merchant_id == Merchant.id)
        .order_by(Merchant.name, Product.sku, Source.priority, Source.name)
    )
    if merchant:
        query = query.where(Merchant.name == merchant)
    if sku is not None:
        query = query.where(Product.sku == sku)
    if source:
        query = query.where(Source.name == source)
    return [InventoryRow(*r) for r in session.execute(query)]


@dataclass(frozen=True)
class LedgerRow:
    id: int
    merchant: str
    source: str
    sku: str
    before: int
    after: int
    reason: str
    reference: str | None
    actor: str
    at: datetime


def ledger(
    session: Session, *, merchant: str | None = None, sku: str | None = None,
    source: str | None = None, limit: int = 50,
) -> list[LedgerRow]:
    query = (
        select(LedgerEntry.id, Merchant.name, Source.name, Product.sku, LedgerEntry.before,
               LedgerEntry.after, LedgerEntry.reason, LedgerEntry.reference, LedgerEntry.actor,
               LedgerEntry.at)
        .select_from(LedgerEntry).join(Source, LedgerEntry.source_id == Source.id)
        .join(Product, LedgerEntry.product_id == Product.id)
        .join(Merchant, Source.merchant_id == Merchant.id)
        .order_by(LedgerEntry.id.desc()).limit(limit)
    )
    if merchant:
        query = query.where(Merchant.name == merchant)
    if sku is not None:
        query = query.where(Product.sku == sku)
    if source:
        query = query.where(Source.name == source)
    return [LedgerRow(*tuple(r)) for r in session.execute(query)]
