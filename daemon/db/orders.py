"""Orders and cancellations in the database, through the domain core.

``apply_order_lines`` and ``apply_cancellation_rows`` apply rows already read
(in the parser worker, before the transaction) inside the caller's
transaction, so the stock, the ledger, the order rows and the upload's
outcome commit together. Every source an order can take from is locked first
(``stock.lock_source``, in id order so two writers never wait on each other
in a cycle).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.db.catalog import get_or_create_product
from daemon.db.markets import get_policy, mark_needs_update, market_sources
from daemon.db.models import (
    Cancellation,
    Fulfilment,
    MarketRecord,
    Merchant,
    OrderAllocation,
    OrderLineRecord,
    Product,
    Source,
    Stock,
)
from daemon.db.stock import current_level, lock_source, write_change
from daemon.errors import FeedError, NotFound, UserError
from daemon.inventory.allocation import Allocation, default_priority
from daemon.inventory.cancellations import (
    CancellationKind,
    Origin,
    Policy,
    RestockDecision,
    apply_cancellation,
    restock_decision,
)
from daemon.inventory.orders import LineKey, OrderLine, OrderOutcomeKind, apply_order_line
from daemon.inventory.stock import Change, LedgerEntry, StockLevel

_CHUNK = 500


# --- helpers --------------------------------------------------------------------


def get_market_by_id(session: Session, market_id: int) -> MarketRecord:
    market = session.get(MarketRecord, market_id)
    if market is None:
        raise NotFound(f"no market with id {market_id}")
    return market


def _market_sources(session: Session, market: MarketRecord) -> list[Source]:
    """The sources an order on ``market`` can take from (the market's, else all)."""
    sources = list(session.scalars(select(Source).where(Source.merchant_id == market.merchant_id)
                                   .order_by(Source.id)))
    names = market_sources(market)
    if names is not None:
        sources = [s for s in sources if s.name in names]
    if not sources:
        raise FeedError(f"market {market.name!r} has no inventory source to take orders from")
    return sources


def _lock(session: Session, sources: Sequence[Source]) -> None:
    for source in sorted(sources, key=lambda s: s.id):
        lock_source(session, source.id)


def _merchant_markets(session: Session, merchant_id: int) -> list[str]:
    return list(session.scalars(select(MarketRecord.name).where(MarketRecord.merchant_id == merchant_id)
                                .order_by(MarketRecord.name)))


def _persist(session: Session, rows: dict[str, Stock | None], ids: dict[str, int], product_id: int,
             levels: Mapping[str, StockLevel], entries: Sequence[LedgerEntry], now: datetime) -> None:
    """Write what the domain decided, source by source."""
    by_source = {e.source: e for e in entries}
    for source, level in levels.items():
        write_change(session, rows.get(source), ids[source], product_id,
                     Change(level=level, entry=by_source.get(source)), now)


def _seen(session: Session, market_id: int, order_ids: Sequence[str]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    unique = list(dict.fromkeys(order_ids))
    for start in range(0, len(unique), _CHUNK):
        found.update((o, ln) for o, ln in session.execute(
            select(OrderLineRecord.order_id, OrderLineRecord.line_id).where(
                OrderLineRecord.market_id == market_id,
                OrderLineRecord.order_id.in_(unique[start:start + _CHUNK]))))
    return found


# --- orders ---------------------------------------------------------------------


class OrderRowLike(Protocol):
    """One order line as a reader found it (``formats.orders.OrderRow`` fits)."""

    @property
    def order_id(self) -> str: ...
    @property
    def line_id(self) -> str: ...
    @property
    def sku(self) -> str: ...
    @property
    def quantity(self) -> int: ...
    @property
    def ordered_at(self) -> datetime: ...


@dataclass(frozen=True)
class LineResult:
    order_id: str
    line_id: str
    sku: str
    quantity: int
    status: str  # imported | skipped
    taken: list[dict[str, object]] = field(default_factory=list)  # [{source, units}]
    shortfall: int = 0
    shortfall_source: str | None = None


@dataclass
class OrderLinesResult:
    """What applying order lines did."""

    market: str
    imported: int = 0
    skipped: int = 0  # imported before (the same market, order and line)
    oversold: int = 0  # lines with a shortfall
    lines: list[LineResult] = field(default_factory=list)


def apply_order_lines(
    session: Session, market: MarketRecord, rows: Sequence[OrderRowLike], *,
    now: datetime, actor: str, upload_ref: str | None = None,
) -> OrderLinesResult:
    """Import order lines once each: allocate, subtract, record, flag the other markets."""
    result = OrderLinesResult(market=market.name)
    sources = _market_sources(session, market)
    _lock(session, sources)
    ids = {s.name: s.id for s in sources}
    priority = default_priority(sources)
    policy = get_policy(session, market.merchant_id)
    markets = _merchant_markets(session, market.merchant_id)
    seen: set[LineKey] = {(market.name, o, ln) for o, ln in _seen(session, market.id, [r.order_id for r in rows])}
    for row in rows:
        line = OrderLine(market.name, row.order_id, row.line_id, row.sku, row.quantity, row.ordered_at)
        if line.key in seen:
            result.skipped += 1
            result.lines.append(LineResult(row.order_id, row.line_id, row.sku, row.quantity, "skipped"))
            continue
        product = get_or_create_product(session, market.merchant_id, row.sku, now)
        stock_rows: dict[str, Stock | None] = {}
        levels: dict[str, StockLevel | None] = {}
        for name in priority:
            stock_rows[name], levels[name] = current_level(session, ids[name], product.id)
        outcome = apply_order_line(line, levels, priority=priority, split=policy.split_orders,
                                   seen=seen, markets=markets, now=now, actor=actor)
        assert outcome.kind is OrderOutcomeKind.IMPORTED and outcome.allocation is not None
        _persist(session, stock_rows, ids, product.id, outcome.levels, outcome.entries, now)
        allocation = outcome.allocation
        record = OrderLineRecord(
            market_id=market.id, order_id=row.order_id, line_id=row.line_id, product_id=product.id,
            quantity=row.quantity, ordered_at=row.ordered_at, imported_at=now, status="open",
            shortfall=allocation.shortfall,
            shortfall_source_id=ids[allocation.shortfall_source] if allocation.shortfall_source else None,
            upload_ref=upload_ref,
        )
        session.add(record)
        session.flush()
        for source, units in allocation.taken:
            session.add(OrderAllocation(order_line_id=record.id, source_id=ids[source],
                                        product_id=product.id, quantity=units, returned=0,
                                        ordered_at=row.ordered_at))
        mark_needs_update(session, market.merchant_id, outcome.markets_to_update, [product.id], now)
        seen.add(line.key)
        result.imported += 1
        result.oversold += 1 if allocation.shortfall else 0
        result.lines.append(LineResult(row.order_id, row.line_id, row.sku, row.quantity, "imported",
                                       [{"source": s, "units": u} for s, u in allocation.taken],
                                       allocation.shortfall, allocation.shortfall_source))
    session.flush()
    return result


def orders_after(session: Session, source_id: int, since: datetime) -> list[tuple[str, datetime, int]]:
    """(sku, ordered_at, units not returned) taken from ``source_id`` by orders placed after ``since``.

    For the oversell window: a snapshot counted at ``since`` has not seen
    these units go. Restocked cancellations are netted out; oversold units
    (never in the source) are not included.
    """
    query = (select(Product.sku, OrderAllocation.ordered_at,
                    OrderAllocation.quantity - OrderAllocation.returned)
             .join(Product, OrderAllocation.product_id == Product.id)
             .where(OrderAllocation.source_id == source_id, OrderAllocation.ordered_at > since,
                    OrderAllocation.quantity > OrderAllocation.returned)
             .order_by(OrderAllocation.ordered_at, OrderAllocation.id))
    return [(sku, at, int(units)) for sku, at, units in session.execute(query)]


# --- cancellations --------------------------------------------------------------


@dataclass(frozen=True)
class CancelResult:
    order_id: str
    line_id: str
    sku: str | None
    status: str  # cancelled | already_cancelled | recorded_ahead
    restocked: bool = False
    refused: bool = False  # the rules would have restocked, the window said no
    returned: list[dict[str, object]] = field(default_factory=list)  # [{source, units}]
    reason: str = ""


def cancel_order(
    session: Session, market: MarketRecord, order_id: str, line_id: str | None, *,
    origin: str, requested: bool | None, cancelled_at: datetime, now: datetime, actor: str,
    upload_ref: str | None = None, record_unknown: bool = False,
) -> list[CancelResult]:
    """Cancel one line (or every line) of an order; see ``restock_decision`` for the rules.

    A line cancelled before gives nothing back again. With ``record_unknown``
    a named line that was never imported is recorded as cancelled, so the
    order arriving later is skipped rather than subtracted.
    """
    query = select(OrderLineRecord).where(OrderLineRecord.market_id == market.id,
                                          OrderLineRecord.order_id == order_id)
    if line_id is not None:
        query = query.where(OrderLineRecord.line_id == line_id)
    lines = list(session.scalars(query.order_by(OrderLineRecord.line_id, OrderLineRecord.id)))
    if not lines:
        what = f"order {order_id!r}" + (f" line {line_id!r}" if line_id is not None else "")
        if record_unknown and line_id is not None:
            return [_record_ahead(session, market, order_id, line_id, origin, requested,
                                  cancelled_at, now, upload_ref)]
        raise NotFound(f"no {what} on market {market.name!r}")
    policy = get_policy(session, market.merchant_id)
    window = policy.restock_window_days
    already = set(session.scalars(select(Cancellation.order_line_id).where(
        Cancellation.order_line_id.in_([ln.id for ln in lines]))))
    # Decide every line before touching anything: a missing choice must not half-apply.
    decisions: dict[int, tuple[RestockDecision, bool]] = {}
    for ln in lines:
        if ln.id in already:
            continue
        # The domain checks both against its lists and raises ValueError otherwise.
        said, rule = cast(Origin, origin), cast(Policy, market.restock)
        try:
            decision = restock_decision(said, requested, ln.ordered_at, cancelled_at, window, rule)
            would = restock_decision(said, requested, ln.ordered_at, ln.ordered_at, window, rule)
        except ValueError as exc:
            raise UserError(f"order {order_id} line {ln.line_id}: {exc}") from None
        decisions[ln.id] = (decision, would.restock and not decision.restock)
    markets = _merchant_markets(session, market.merchant_id)
    results: list[CancelResult] = []
    for ln in lines:
        product = session.get(Product, ln.product_id) if ln.product_id is not None else None
        sku = product.sku if product else None
        if ln.id in already or product is None:
            results.append(CancelResult(ln.order_id, ln.line_id, sku, "already_cancelled",
                                        reason="already cancelled: nothing returned again"))
            continue
        decision, refused = decisions[ln.id]
        allocs = list(session.scalars(select(OrderAllocation).where(
            OrderAllocation.order_line_id == ln.id).order_by(OrderAllocation.id)))
        sources = {s.id: s for s in session.scalars(select(Source).where(
            Source.id.in_([a.source_id for a in allocs])))} if allocs else {}
        _lock(session, list(sources.values()))
        allocation = Allocation(taken=tuple((sources[a.source_id].name, a.quantity) for a in allocs),
                                shortfall=ln.shortfall)
        ids = {s.name: s.id for s in sources.values()}
        stock_rows: dict[str, Stock | None] = {}
        levels: dict[str, StockLevel | None] = {}
        for name, sid in ids.items():
            stock_rows[name], levels[name] = current_level(session, sid, product.id)
        line = OrderLine(market.name, ln.order_id, ln.line_id, product.sku, ln.quantity, ln.ordered_at)
        outcome = apply_cancellation(line, allocation, decision, levels, cancelled=set(),
                                     markets=markets, now=now, actor=actor)
        assert outcome.kind is CancellationKind.APPLIED
        _persist(session, stock_rows, ids, product.id, outcome.levels, outcome.entries, now)
        if outcome.returned:
            for a in allocs:
                a.returned = a.quantity
        ln.status = "cancelled"
        session.add(Cancellation(order_line_id=ln.id, origin=origin, requested_restock=requested,
                                 restocked=bool(outcome.returned), refused=refused,
                                 reason=decision.reason, cancelled_at=cancelled_at, recorded_at=now,
                                 upload_ref=upload_ref))
        session.flush()
        mark_needs_update(session, market.merchant_id, outcome.markets_to_update, [product.id], now)
        results.append(CancelResult(ln.order_id, ln.line_id, product.sku, "cancelled",
                                    restocked=bool(outcome.returned), refused=refused,
                                    returned=[{"source": s, "units": u} for s, u in outcome.returned],
                                    reason=decision.reason))
    return results


def _record_ahead(session: Session, market: MarketRecord, order_id: str, line_id: str, origin: str,
                  requested: bool | None, cancelled_at: datetime, now: datetime,
                  upload_ref: str | None) -> CancelResult:
    reason = "cancelled before the order was imported: the order will be skipped when it arrives"
    record = OrderLineRecord(market_id=market.id, order_id=order_id, line_id=line_id, product_id=None,
                             quantity=0, ordered_at=cancelled_at, imported_at=now, status="cancelled",
                             shortfall=0, upload_ref=upload_ref)
    session.add(record)
    session.flush()
    session.add(Cancellation(order_line_id=record.id, origin=origin, requested_restock=requested,
                             restocked=False, refused=False, reason=reason, cancelled_at=cancelled_at,
                             recorded_at=now, upload_ref=upload_ref))
    session.flush()
    return CancelResult(order_id, line_id, None, "recorded_ahead", reason=reason)


class CancellationRowLike(Protocol):
    """One cancellation as a reader found it (``formats.orders.CancellationRow`` fits)."""

    @property
    def row(self) -> int: ...
    @property
    def order_id(self) -> str: ...
    @property
    def line_id(self) -> str | None: ...
    @property
    def cancelled_at(self) -> datetime: ...
    @property
    def origin(self) -> str: ...
    @property
    def restock(self) -> bool | None: ...


@dataclass
class CancellationsResult:
    """What applying cancellation rows did; ``refused`` rows could not be cancelled."""

    market: str
    cancelled: int = 0  # lines cancelled by these rows
    already_cancelled: int = 0
    recorded_ahead: int = 0
    restocked: int = 0
    refused: int = 0  # the rules would have restocked, the window said no
    refusals: list[tuple[int, str, str]] = field(default_factory=list)  # (row, order id, why)
    lines: list[CancelResult] = field(default_factory=list)


def apply_cancellation_rows(session: Session, market: MarketRecord, rows: Sequence[CancellationRowLike], *,
                            upload_ref: str, now: datetime, actor: str) -> CancellationsResult:
    """Cancel each row's line (or order) inside the caller's transaction."""
    result = CancellationsResult(market=market.name)
    for row in rows:
        try:
            outcomes = cancel_order(session, market, row.order_id, row.line_id, origin=row.origin,
                                    requested=row.restock, cancelled_at=row.cancelled_at, now=now,
                                    actor=actor, upload_ref=upload_ref, record_unknown=True)
        except UserError as exc:
            result.refusals.append((row.row, row.order_id, str(exc)))
            continue
        for o in outcomes:
            result.lines.append(o)
            result.cancelled += o.status == "cancelled"
            result.already_cancelled += o.status == "already_cancelled"
            result.recorded_ahead += o.status == "recorded_ahead"
            result.restocked += o.restocked
            result.refused += o.refused
    return result


# --- listing --------------------------------------------------------------------


@dataclass(frozen=True)
class OrderView:
    merchant: str
    market: str
    order_id: str
    line_id: str
    sku: str | None
    quantity: int
    status: str
    shortfall: int
    ordered_at: datetime
    imported_at: datetime
    restocked: bool | None
    cancel_reason: str | None
    # What the warehouse it was sent to said (one row per warehouse; None: never sent to one).
    warehouse: str | None = None
    fulfilment: str | None = None  # open (sent, not confirmed), shipped, complete, cancelled, error, unconfirmed
    sends: int | None = None
    tracking_number: str | None = None
    shipping_service: str | None = None
    fulfilment_message: str | None = None


FULFILMENT_FILTERS = ("error", "unconfirmed")


def list_orders(session: Session, *, merchant: str | None = None, market: str | None = None,
                status: str | None = None, limit: int = 1000) -> list[OrderView]:
    query = (select(Merchant.name, MarketRecord.name, OrderLineRecord.order_id, OrderLineRecord.line_id,
                    Product.sku, OrderLineRecord.quantity, OrderLineRecord.status,
                    OrderLineRecord.shortfall, OrderLineRecord.ordered_at, OrderLineRecord.imported_at,
                    Cancellation.restocked, Cancellation.reason, Source.name, Fulfilment.status, Fulfilment.sends,
                    Fulfilment.tracking_number, Fulfilment.shipping_service, Fulfilment.message)
             .select_from(OrderLineRecord)
             .join(MarketRecord, OrderLineRecord.market_id == MarketRecord.id)
             .join(Merchant, MarketRecord.merchant_id == Merchant.id)
             .outerjoin(Product, OrderLineRecord.product_id == Product.id)
             .outerjoin(Cancellation, Cancellation.order_line_id == OrderLineRecord.id)
             .outerjoin(Fulfilment, Fulfilment.order_line_id == OrderLineRecord.id)
             .outerjoin(Source, Source.id == Fulfilment.source_id)
             .order_by(OrderLineRecord.ordered_at.desc(), OrderLineRecord.order_id, OrderLineRecord.line_id)
             .limit(limit))
    if merchant:
        query = query.where(Merchant.name == merchant)
    if market:
        query = query.where(MarketRecord.name == market)
    if status == "oversold":
        query = query.where(OrderLineRecord.shortfall > 0)
    elif status in FULFILMENT_FILTERS:
        query = query.where(Fulfilment.status == status)
    elif status:
        query = query.where(OrderLineRecord.status == status)
    return [OrderView(*tuple(r)) for r in session.execute(query)]
