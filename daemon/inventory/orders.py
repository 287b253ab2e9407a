"""Importing an order line: subtract it once, and say which markets to update.

Markets and warehouses resend open orders on every run, so an order line is
identified by (market, order id, line id) and a line already seen is skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from daemon.inventory.allocation import Allocation, allocate
from daemon.inventory.stock import LedgerEntry, Reason, StockLevel, adjust_quantity

LineKey = tuple[str, str, str]  # (market, order id, line id)


@dataclass(frozen=True)
class OrderLine:
    """One line of one order as a market reports it."""

    market: str
    order_id: str
    line_id: str
    sku: str
    quantity: int
    ordered_at: datetime

    def __post_init__(self) -> None:
        if (
            isinstance(self.quantity, bool)
            or not isinstance(self.quantity, int)
            or self.quantity < 1
        ):
            raise ValueError(
                f"order {self.order_id} line {self.line_id}: quantity must be "
                f"a whole number 1 or more, got {self.quantity!r}"
            )

    @property
    def key(self) -> LineKey:
        return (self.market, self.order_id, self.line_id)

    @property
    def reference(self) -> str:
        """The ledger reference; the same line always yields the same string."""
        return f"order:{self.market}:{self.order_id}:{self.line_id}"


class OrderOutcomeKind(StrEnum):
    IMPORTED = "imported"
    SKIPPED_DUPLICATE = "skipped_duplicate"


@dataclass(frozen=True)
class OrderOutcome:
    """What importing one line did.

    ``levels`` holds only the sources whose level changed (merge it into the
    stock). ``allocation`` must be kept with the line: a cancellation gives
    back exactly what it took. The caller adds ``line.key`` to its seen set
    when ``kind`` is imported.
    """

    kind: OrderOutcomeKind
    line: OrderLine
    allocation: Allocation | None = None
    entries: tuple[LedgerEntry, ...] = ()
    levels: Mapping[str, StockLevel] = field(default_factory=dict)
    shortfall: int = 0
    markets_to_update: tuple[str, ...] = ()


def apply_order_line(
    line: OrderLine,
    levels: Mapping[str, StockLevel | None],
    *,
    priority: Sequence[str],
    split: bool,
    seen: AbstractSet[LineKey],
    markets: Sequence[str],
    now: datetime,
    actor: str,
) -> OrderOutcome:
    """Subtract one order line from the SKU's levels (``levels`` is by source).

    ``markets`` is the merchant's market list; every market except the one
    the order came from is to be sent the new quantity (the ordering market
    already lowered its own count when it sold).
    """
    if line.key in seen:
        return OrderOutcome(kind=OrderOutcomeKind.SKIPPED_DUPLICATE, line=line)

    available = {s: (lvl.quantity if lvl else 0) for s, lvl in levels.items()}
    allocation = allocate(line.quantity, available, priority, split=split)

    entries: list[LedgerEntry] = []
    new_levels: dict[str, StockLevel] = {}
    for source, units in allocation.taken:
        change, _ = adjust_quantity(
            levels.get(source),
            -units,
            sku=line.sku,
            source=source,
            reason=Reason.ORDER,
            actor=actor,
            now=now,
            reference=line.reference,
        )
        # allocate() never takes more than is there, so adjust's own shortfall is 0.
        new_levels[source] = change.level
        if change.entry is not None:
            entries.append(change.entry)

    # Nothing changed (a pure oversell on empty stock): no market needs a new number.
    others = tuple(dict.fromkeys(m for m in markets if m != line.market)) if entries else ()
    return OrderOutcome(
        kind=OrderOutcomeKind.IMPORTED,
        line=line,
        allocation=allocation,
        entries=tuple(entries),
        levels=new_levels,
        shortfall=allocation.shortfall,
        markets_to_update=others,
    )
