"""The order files outbox: what each warehouse is owed, and every status change of a delivery.

The same rule as ``db.exports`` for markets makes a delivery exactly-once:
the row (with the file's bytes and the fulfilments it carries) is written
before anything is sent; at most one undelivered file per warehouse
(``ix_order_exports_undelivered``); the next is composed only once the last
is delivered; the carried lines' ``sends`` advance only in the transaction
that marks it delivered, after the remote rename.

Which lines a warehouse is sent (``due_lines``): every open order line
allocated to it whose fulfilment is ``open`` or ``error`` (a status file
has not confirmed it), made the first time the line is due. A line sent
``1 + resend_limit`` times with no answer is flagged ``unconfirmed`` first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from daemon.db.exports import DELIVERED, PENDING, record_attempt
from daemon.db.models import (
    Fulfilment,
    MarketRecord,
    OrderAllocation,
    OrderExportRecord,
    OrderLineRecord,
    Product,
)

# Fulfilment states. Sent again on every run: OWED; answered: the rest.
OPEN, SHIPPED, COMPLETE, CANCELLED, ERROR, UNCONFIRMED = (
    "open", "shipped", "complete", "cancelled", "error", "unconfirmed")
OWED = (OPEN, ERROR)


@dataclass(frozen=True)
class DueLine:
    """One line of an order file: what the warehouse needs to ship it."""

    fulfilment_id: int
    order_id: str
    line_id: str
    market: str
    sku: str
    quantity: int  # the units this warehouse gives, not the whole line's when split
    ordered_at: datetime
    sends: int  # how many delivered files carried it before


def flag_unconfirmed(session: Session, source_id: int, resend_limit: int, now: datetime) -> list[int]:
    """Flag the owed lines already sent ``1 + resend_limit`` times; returns their fulfilment ids.

    Run before a new file is composed, so a line's last send still had a
    whole interval for its answer to arrive.
    """
    ids = list(session.scalars(select(Fulfilment.id).where(
        Fulfilment.source_id == source_id, Fulfilment.status.in_(OWED), Fulfilment.sends > resend_limit)
        .order_by(Fulfilment.id)))
    if ids:
        session.execute(update(Fulfilment).where(Fulfilment.id.in_(ids)).values(
            status=UNCONFIRMED, status_at=now,
            message=f"no status file confirmed it after {resend_limit + 1} order file(s): not sent again"))
    return ids


def _open_allocations(source_id: int) -> Any:
    return (select(OrderAllocation.id, OrderAllocation.order_line_id)
            .join(OrderLineRecord, OrderLineRecord.id == OrderAllocation.order_line_id)
            .where(OrderAllocation.source_id == source_id, OrderLineRecord.status == "open",
                   OrderAllocation.returned < OrderAllocation.quantity))


def due_lines(session: Session, source_id: int, *, now: datetime, max_age_days: int) -> list[DueLine]:
    """The lines the warehouse is owed now, oldest order first; new ones get their fulfilment row.

    A line first due longer than ``max_age_days`` after it was ordered is
    left alone: an export switched on late does not ship old orders again.
    """
    new = session.execute(
        _open_allocations(source_id)
        .outerjoin(Fulfilment, Fulfilment.allocation_id == OrderAllocation.id)
        .where(Fulfilment.id.is_(None), OrderAllocation.ordered_at >= now - timedelta(days=max_age_days))
        .order_by(OrderAllocation.id)).all()
    for allocation_id, line_id in new:
        session.add(Fulfilment(allocation_id=allocation_id, order_line_id=line_id, source_id=source_id,
                               status=OPEN, sends=0, created_at=now))
    session.flush()
    rows = session.execute(
        select(Fulfilment.id, OrderLineRecord.order_id, OrderLineRecord.line_id, MarketRecord.name, Product.sku,
               OrderAllocation.quantity - OrderAllocation.returned, OrderLineRecord.ordered_at, Fulfilment.sends)
        .join(OrderAllocation, OrderAllocation.id == Fulfilment.allocation_id)
        .join(OrderLineRecord, OrderLineRecord.id == Fulfilment.order_line_id)
        .join(MarketRecord, MarketRecord.id == OrderLineRecord.market_id)
        .join(Product, Product.id == OrderAllocation.product_id)
        .where(Fulfilment.source_id == source_id, Fulfilment.status.in_(OWED), OrderLineRecord.status == "open",
               OrderAllocation.returned < OrderAllocation.quantity)
        .order_by(OrderLineRecord.ordered_at, OrderLineRecord.order_id, OrderLineRecord.line_id)).all()
    return [DueLine(*row) for row in rows]


def undelivered(session: Session, source_id: int) -> OrderExportRecord | None:
    """The warehouse's order file not yet delivered (pending or failing), if any."""
    return session.scalar(select(OrderExportRecord).where(OrderExportRecord.source_id == source_id,
                                                          OrderExportRecord.status != DELIVERED))


def add_export(session: Session, *, fulfilments: list[int], **fields: Any) -> OrderExportRecord:
    """A new pending order file. The caller's transaction fails on the unique index if the
    warehouse already has an undelivered one (another daemon was first)."""
    record = OrderExportRecord(status=PENDING, attempts=0, fulfilments=json.dumps(fulfilments), **fields)
    session.add(record)
    session.flush()
    return record


# --- what the sender needs (``export.sender.Outbox``) --------------------------


def load(session: Session, export_id: int) -> tuple[str, bytes, int, str, bool] | None:
    """(file name, bytes, source id, kind, delivered) of one order file."""
    record = session.get(OrderExportRecord, export_id)
    if record is None:
        return None
    return record.file_name, record.content, record.source_id, "orders", record.status == DELIVERED


def mark_delivered(session: Session, export_id: int, now: datetime) -> bool:
    """Mark delivered and count the send on every line it carried, in the caller's transaction.

    False (nothing changed) if it was not undelivered any more: another
    daemon recorded it first.
    """
    record = session.get(OrderExportRecord, export_id, with_for_update=True)
    if record is None or record.status == DELIVERED:
        return False
    record.status, record.delivered_at, record.last_error = DELIVERED, now, None
    ids = json.loads(record.fulfilments)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        session.execute(update(Fulfilment).where(Fulfilment.id.in_(chunk)).values(
            sends=Fulfilment.sends + 1, last_sent_at=now, last_export_id=export_id))
        session.execute(update(Fulfilment).where(Fulfilment.id.in_(chunk), Fulfilment.first_sent_at.is_(None))
                        .values(first_sent_at=now))
    return True


def mark_attempt(session: Session, export_id: int, now: datetime, error: str, *, failing: bool) -> int:
    """Record a failed attempt; returns the attempts so far."""
    return record_attempt(session, OrderExportRecord, export_id, now, error, failing=failing)
