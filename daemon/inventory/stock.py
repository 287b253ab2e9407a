"""Setting and adjusting quantities, and the ledger entries that record them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Reason(StrEnum):
    """Why a quantity changed; stored in the ledger as its value."""

    MANUAL = "manual"  # individual update (CLI, later HTTP)
    FEED = "feed"  # a quantity feed (upload)
    FEED_ZEROED = "feed_zeroed"  # absent from a full feed
    ORDER = "order"
    CANCEL = "cancel"
    IMPORT = "import"  # first-integration listing import
    RECOUNT = "recount"  # oversell window: orders after a snapshot subtracted again


@dataclass(frozen=True)
class StockLevel:
    """One SKU's quantity in one source, with the time the quantity was true."""

    quantity: int
    as_of: datetime | None = None


@dataclass(frozen=True)
class LedgerEntry:
    """One change of one SKU in one source. ``after - before`` is the change."""

    sku: str
    source: str
    before: int
    after: int
    reason: Reason
    actor: str
    at: datetime
    reference: str | None = None

    @property
    def delta(self) -> int:
        return self.after - self.before


@dataclass(frozen=True)
class Change:
    """The outcome of a request to change a quantity.

    ``entry`` is None when nothing changes (same quantity), so callers write
    neither the stock nor the ledger: only changed quantities are written.
    ``level`` is what the stock becomes (or stays).
    """

    level: StockLevel
    entry: LedgerEntry | None
    stale: bool = False


class QuantityError(ValueError):
    """A quantity that cannot be stored (negative without clamping, too large)."""


MAX_QUANTITY = 2**31 - 1


def _check(quantity: int) -> int:
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise QuantityError(f"quantity must be a whole number, got {quantity!r}")
    if quantity < 0:
        raise QuantityError(f"quantity must not be negative, got {quantity}")
    if quantity > MAX_QUANTITY:
        raise QuantityError(f"quantity {quantity} is over the maximum {MAX_QUANTITY}")
    return quantity


def set_quantity(
    current: StockLevel | None,
    quantity: int,
    *,
    sku: str,
    source: str,
    reason: Reason,
    actor: str,
    now: datetime,
    as_of: datetime | None = None,
    reference: str | None = None,
) -> Change:
    """Set an absolute quantity.

    A request whose ``as_of`` is older than the level already stored is stale:
    it never overwrites newer data. A missing ``as_of`` means "true now".
    """
    _check(quantity)
    effective_as_of = as_of or now
    before = current.quantity if current else 0
    if current and current.as_of and effective_as_of < current.as_of:
        return Change(level=current, entry=None, stale=True)
    level = StockLevel(quantity=quantity, as_of=effective_as_of)
    if before == quantity:
        # A new SKU at 0 is stored, but 0 -> 0 is no change for the ledger.
        return Change(level=level, entry=None)
    entry = LedgerEntry(
        sku=sku, source=source, before=before, after=quantity,
        reason=reason, actor=actor, at=now, reference=reference,
    )
    return Change(level=level, entry=entry)


def adjust_quantity(
    current: StockLevel | None,
    delta: int,
    *,
    sku: str,
    source: str,
    reason: Reason,
    actor: str,
    now: datetime,
    reference: str | None = None,
    floor_at_zero: bool = True,
) -> tuple[Change, int]:
    """Add ``delta`` (may be negative) to the current quantity.

    Returns the change and the shortfall: how many units could not be
    subtracted because the quantity would have gone below zero. The stock
    stops at 0 (never negative silently); the caller records the shortfall
    (an oversell for orders).
    """
    before = current.quantity if current else 0
    target = before + delta
    shortfall = 0
    if target < 0 and floor_at_zero:
        shortfall = -target
        target = 0
    _check(target)
    # as_of is the time of the last absolute count. A delta (an order, a
    # return) is not a count, so it leaves as_of alone: a warehouse snapshot
    # taken before this order is still newer than the last count and must
    # apply (the oversell window then subtracts the order again).
    level = StockLevel(quantity=target, as_of=current.as_of if current else None)
    if target == before and current is not None:
        return Change(level=level, entry=None), shortfall
    entry = LedgerEntry(
        sku=sku, source=source, before=before, after=target,
        reason=reason, actor=actor, at=now, reference=reference,
    )
    return Change(level=level, entry=entry), shortfall
