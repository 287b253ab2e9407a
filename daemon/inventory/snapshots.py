"""The oversell window: a warehouse count does not know the orders after it.

A snapshot generated at T and applied at A > T counts stock as of T. Orders
placed after T were already subtracted from the old level by Stockdrop, but
the warehouse had not seen them when it counted, so taking the snapshot as
is would give those units back and let markets oversell them. They are
subtracted again from the snapshot (a recount).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from daemon.inventory.stock import LedgerEntry, Reason, StockLevel, set_quantity


class Rebase(NamedTuple):
    """``quantity + recounted == snapshot``; ``shortfall`` went below zero."""

    quantity: int
    recounted: int
    shortfall: int = 0


def rebase_snapshot(
    snapshot_qty: int,
    as_of: datetime,
    orders_after: Sequence[tuple[datetime, int]],
) -> Rebase:
    """The level a snapshot taken at ``as_of`` means now.

    ``orders_after`` is (ordered_at, units taken from this source) for orders
    already subtracted; pass units net of restocked cancellations. Only
    orders placed strictly after ``as_of`` count: one placed at ``as_of`` is
    taken to be in the count. The result stops at 0; the units beyond are
    the shortfall (sold but no longer in the warehouse).
    """
    if snapshot_qty < 0:
        raise ValueError(f"snapshot quantity must not be negative, got {snapshot_qty}")
    later = 0
    for ordered_at, units in orders_after:
        if units < 0:
            raise ValueError(f"units taken by an order must not be negative, got {units}")
        if ordered_at > as_of:
            later += units
    quantity = max(0, snapshot_qty - later)
    return Rebase(
        quantity=quantity,
        recounted=snapshot_qty - quantity,
        shortfall=later - (snapshot_qty - quantity),
    )


@dataclass(frozen=True)
class SnapshotOutcome:
    """``level`` is what the stock becomes (or stays, when ``stale``)."""

    level: StockLevel | None
    entries: tuple[LedgerEntry, ...]
    rebase: Rebase | None
    stale: bool = False


def apply_snapshot(
    current: StockLevel | None,
    snapshot_qty: int,
    *,
    as_of: datetime,
    orders_after: Sequence[tuple[datetime, int]],
    sku: str,
    source: str,
    actor: str,
    now: datetime,
    counted_as_of: datetime | None,
    reason: Reason = Reason.FEED,
    reference: str | None = None,
) -> SnapshotOutcome:
    """Apply one SKU of a warehouse snapshot, recounting the orders after it.

    Staleness is judged against ``counted_as_of``, the time of the last
    absolute count of this level (feed, manual set, import), not against
    ``current.as_of``: adjust_quantity moves ``as_of`` to the time an order
    was imported, which would make every snapshot older than the last order
    look stale. It is required, not defaulted to ``current.as_of``, so that
    trap cannot be fallen into by omission; None means never counted.

    The ledger gets the feed's number (``reason``) and then the recount
    (Reason.RECOUNT), so the history shows both what the warehouse said and
    why the stock differs; nothing is written when the level ends unchanged.
    """
    if counted_as_of is not None and as_of < counted_as_of:
        return SnapshotOutcome(level=current, entries=(), rebase=None, stale=True)

    rebase = rebase_snapshot(snapshot_qty, as_of, orders_after)
    # Staleness is decided above, so set_quantity sees a level without as_of.
    base = StockLevel(current.quantity) if current is not None else None
    fed = set_quantity(
        base,
        snapshot_qty,
        sku=sku,
        source=source,
        reason=reason,
        actor=actor,
        now=now,
        as_of=as_of,
        reference=reference,
    )
    recount = set_quantity(
        fed.level,
        rebase.quantity,
        sku=sku,
        source=source,
        reason=Reason.RECOUNT,
        actor=actor,
        now=now,
        as_of=as_of,
        reference=reference,
    )
    before = current.quantity if current is not None else None
    if before == rebase.quantity:
        return SnapshotOutcome(level=recount.level, entries=(), rebase=rebase)
    entries = tuple(e for e in (fed.entry, recount.entry) if e is not None)
    return SnapshotOutcome(level=recount.level, entries=entries, rebase=rebase)
