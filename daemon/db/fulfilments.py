"""A warehouse's status file applied to what it was sent (``fulfilments``), in the caller's transaction.

Each row names an order (and maybe its market and line); it answers for
every line of that order the warehouse was sent, or for none: every row is
checked against the database before anything of it is written, so a row
that cannot be applied whole is a row error and leaves nothing behind.

- ``SHIPPED`` / ``COMPLETE`` record the tracking number and service; a line
  whose every warehouse has confirmed it is closed (``shipped``).
- ``CANCELLED`` is a cancellation of origin ``warehouse`` through
  ``orders.cancel_order``: the stock comes back as the market's restock
  policy and window say.
- ``ERROR`` is recorded with its message; the line stays owed and is sent
  again until it is confirmed or flagged unconfirmed.

The same answer again changes nothing (a status file sent twice is a
duplicate); an answer that contradicts a final one (``CANCELLED`` after
``SHIPPED``, ``SHIPPED`` for a line cancelled meanwhile) is a row error, so
a person looks at it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.db.models import Fulfilment, MarketRecord, OrderLineRecord, Source
from daemon.db.order_exports import CANCELLED, COMPLETE, ERROR, SHIPPED
from daemon.db.orders import cancel_order

_CONFIRMED = (SHIPPED, COMPLETE)


class StatusRowLike(Protocol):
    """One row of a status file as the reader found it (``formats.statuses.StatusRow`` fits)."""

    @property
    def row(self) -> int: ...
    @property
    def order_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def tracking(self) -> str | None: ...
    @property
    def service(self) -> str | None: ...
    @property
    def market(self) -> str | None: ...
    @property
    def line_id(self) -> str | None: ...
    @property
    def message(self) -> str | None: ...


@dataclass(frozen=True)
class StatusLine:
    row: int
    order_id: str
    line_id: str
    market: str
    status: str  # what the line's fulfilment is now
    outcome: str  # applied | unchanged
    restocked: bool = False
    note: str = ""


@dataclass
class StatusesResult:
    source: str
    applied: int = 0  # rows that changed something
    unchanged: int = 0  # rows that said what was known already
    shipped: int = 0  # lines confirmed by these rows
    cancelled: int = 0
    restocked: int = 0
    errors: int = 0
    refusals: list[tuple[int, str, str, str]] = field(default_factory=list)  # (row, column role, value, why)
    lines: list[StatusLine] = field(default_factory=list)


@dataclass
class _Match:
    fulfilment: Fulfilment
    line: OrderLineRecord
    market: MarketRecord


def _matches(session: Session, source: Source, row: StatusRowLike) -> list[_Match]:
    query = (select(Fulfilment, OrderLineRecord, MarketRecord)
             .join(OrderLineRecord, OrderLineRecord.id == Fulfilment.order_line_id)
             .join(MarketRecord, MarketRecord.id == OrderLineRecord.market_id)
             .where(Fulfilment.source_id == source.id, OrderLineRecord.order_id == row.order_id)
             .order_by(MarketRecord.name, OrderLineRecord.line_id, Fulfilment.id))
    if row.market is not None:
        query = query.where(MarketRecord.name == row.market)
    if row.line_id is not None:
        query = query.where(OrderLineRecord.line_id == row.line_id)
    return [_Match(f, ln, m) for f, ln, m in session.execute(query)]


def _refusal(row: StatusRowLike, match: _Match, target: str) -> str | None:
    """Why ``target`` cannot be applied to this line, or None."""
    f, ln = match.fulfilment, match.line
    what = f"order {ln.order_id} line {ln.line_id} ({match.market.name})"
    if ln.status == "cancelled" and target in _CONFIRMED and f.status != CANCELLED:
        return f"{what} was cancelled before the warehouse said {row.status}: check it by hand"
    if f.status in _CONFIRMED and target == CANCELLED:
        return (f"{what} was already {f.status.upper()}: a cancellation after shipping is a return, "
                "handled outside Stockdrop")
    if f.status in _CONFIRMED and target == ERROR:
        return f"{what} was already {f.status.upper()}: an ERROR after it is not applied"
    if f.status == CANCELLED and target in _CONFIRMED:
        return f"{what} was CANCELLED by the warehouse before: it cannot be {row.status} now"
    return None


def _unchanged(row: StatusRowLike, match: _Match, target: str) -> bool:
    f, ln = match.fulfilment, match.line
    if target == CANCELLED or (target == ERROR and ln.status == "cancelled"):
        return f.status == CANCELLED or ln.status == "cancelled"
    if target in _CONFIRMED:
        # COMPLETE after SHIPPED moves on; SHIPPED after COMPLETE does not step back.
        same = f.status == target or (f.status == COMPLETE and target == SHIPPED)
        return same and (row.tracking or f.tracking_number) == f.tracking_number \
            and (row.service or f.shipping_service) == f.shipping_service
    return f.status == ERROR and (row.message or f.message) == f.message


def apply_status_rows(session: Session, source: Source, rows: Sequence[StatusRowLike], *, upload_id: int,
                      received_at: datetime, now: datetime, actor: str) -> StatusesResult:
    """Apply a status file's valid rows for warehouse ``source`` inside the caller's transaction."""
    result = StatusesResult(source=source.name)
    for row in rows:
        target = row.status.lower()
        matches = _matches(session, source, row)
        if not matches:
            scope = "".join([f" on market {row.market}" if row.market else "",
                             f" line {row.line_id}" if row.line_id else ""])
            result.refusals.append((row.row, "order_id", row.order_id,
                                    f"no order {row.order_id}{scope} was sent to warehouse {source.name}"))
            continue
        markets = sorted({m.market.name for m in matches})
        if len(markets) > 1:
            result.refusals.append((row.row, "order_id", row.order_id,
                                    (f"order {row.order_id} is on several markets ({', '.join(markets)}): "
                                     "add a Market column to say which")))
            continue
        why = next((r for m in matches if (r := _refusal(row, m, target)) is not None), None)
        if why is not None:
            result.refusals.append((row.row, "status", row.status, why))
            continue
        todo = [m for m in matches if not _unchanged(row, m, target)]
        if not todo:
            result.unchanged += 1
            result.lines.extend(StatusLine(row.row, m.line.order_id, m.line.line_id, m.market.name,
                                           m.fulfilment.status, "unchanged") for m in matches)
            continue
        result.applied += 1
        for m in todo:
            result.lines.append(_apply(session, row, m, target, upload_id=upload_id, received_at=received_at,
                                       now=now, actor=actor, result=result))
    session.flush()
    return result


def _apply(session: Session, row: StatusRowLike, m: _Match, target: str, *, upload_id: int,
           received_at: datetime, now: datetime, actor: str, result: StatusesResult) -> StatusLine:
    f, ln = m.fulfilment, m.line
    f.status_at, f.status_upload_id = now, upload_id
    restocked, note = False, ""
    if target in _CONFIRMED:
        f.status = COMPLETE if f.status == COMPLETE else target
        f.tracking_number = row.tracking or f.tracking_number
        f.shipping_service = row.service or f.shipping_service
        f.message = None
        session.flush()
        others = session.scalars(select(Fulfilment.status).where(Fulfilment.order_line_id == ln.id)).all()
        if all(s in _CONFIRMED for s in others) and ln.status == "open":
            ln.status = "shipped"
        result.shipped += 1
    elif target == CANCELLED:
        if ln.status != "cancelled":
            [done] = cancel_order(session, m.market, ln.order_id, ln.line_id, origin="warehouse", requested=None,
                                  cancelled_at=received_at, now=now, actor=actor, upload_ref=f"upload:{upload_id}")
            restocked, note = done.restocked, done.reason
            result.restocked += done.restocked
        f.status = CANCELLED
        f.message = row.message
        result.cancelled += 1
    else:
        f.status = ERROR
        f.message = row.message or "the warehouse said ERROR (no message)"
        note = f.message
    return StatusLine(row.row, ln.order_id, ln.line_id, m.market.name, f.status, "applied", restocked, note)
