"""Cancellations: whether the units go back, and giving back exactly what was taken.

Decision order (documented in ``restock_decision``):
1. The restock window always wins: a line cancelled more than ``window_days``
   after it was ordered is never restocked, whatever was asked or configured,
   because by then the goods have usually shipped and a late cancellation is
   a return, handled elsewhere. The refusal is said in the reason.
2. Inside the window, a market policy of "always" or "never" decides.
3. Otherwise ("by_origin"): a cancellation on the market restocks, and so
   does one by the warehouse (its status file said CANCELLED: the goods never
   left it); one made in Stockdrop needs the operator's explicit choice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from daemon.inventory.allocation import Allocation
from daemon.inventory.orders import LineKey, OrderLine
from daemon.inventory.stock import LedgerEntry, Reason, StockLevel, adjust_quantity

Origin = Literal["market", "stockdrop", "warehouse"]
Policy = Literal["always", "never", "by_origin"]

DEFAULT_WINDOW_DAYS = 14


@dataclass(frozen=True)
class RestockDecision:
    """Whether the cancelled units go back, and a sentence saying why (shown to people)."""

    restock: bool
    reason: str


def _describe(age: timedelta) -> str:
    # "14 days 3 hours" reads better next to "the 14-day window" than 14.125.
    days, rest = age.days, age.seconds // 3600
    parts = [f"{days} day{'s' if days != 1 else ''}"] if days else []
    if rest:
        parts.append(f"{rest} hour{'s' if rest != 1 else ''}")
    return " ".join(parts) or "less than an hour"


def restock_decision(
    origin: Origin,
    requested: bool | None,
    ordered_at: datetime,
    cancelled_at: datetime,
    window_days: int = DEFAULT_WINDOW_DAYS,
    policy: Policy = "by_origin",
) -> RestockDecision:
    """Decide whether a cancelled line's units go back into stock.

    ``requested`` is the operator's choice (--restock / --no-restock) for a
    cancellation made in Stockdrop; it is only consulted under "by_origin".
    Exactly ``window_days`` after the order is still inside the window. A
    cancellation stamped before its order (clock skew between systems) counts
    as inside the window.
    """
    if origin not in ("market", "stockdrop", "warehouse"):
        raise ValueError(f"origin must be 'market', 'stockdrop' or 'warehouse', got {origin!r}")
    if policy not in ("always", "never", "by_origin"):
        raise ValueError(f"policy must be 'always', 'never' or 'by_origin', got {policy!r}")
    if isinstance(window_days, bool) or not isinstance(window_days, int) or window_days < 0:
        raise ValueError(f"window_days must be a whole number 0 or more, got {window_days!r}")

    inside = _inside_window(origin, requested, policy)
    age = cancelled_at - ordered_at
    if age > timedelta(days=window_days):
        # Said as a refusal when the rules would otherwise have restocked, so
        # the operator or merchant sees why the units did not come back.
        lead = "restock refused" if inside is not None and inside.restock else "not restocked"
        return RestockDecision(
            restock=False,
            reason=f"{lead}: cancelled {_describe(age)} after the order, "
            f"more than the {window_days}-day restock window",
        )
    if inside is None:
        raise ValueError("choose --restock or --no-restock")
    return inside


def _inside_window(
    origin: Origin, requested: bool | None, policy: Policy
) -> RestockDecision | None:
    """The decision inside the window; None when the operator has to choose."""
    if policy == "always":
        return RestockDecision(True, "restocked: the market's restock policy is always")
    if policy == "never":
        return RestockDecision(False, "not restocked: the market's restock policy is never")
    if origin == "market":
        return RestockDecision(True, "restocked: cancelled on the market")
    if origin == "warehouse":
        return RestockDecision(True, "restocked: the warehouse cancelled it (status file)")
    if requested is None:
        return None
    if requested:
        return RestockDecision(True, "restocked: the operator chose --restock")
    return RestockDecision(False, "not restocked: the operator chose --no-restock")


class CancellationKind(StrEnum):
    APPLIED = "applied"
    SKIPPED_DUPLICATE = "skipped_duplicate"


@dataclass(frozen=True)
class CancellationOutcome:
    """What cancelling one line did.

    ``applied`` with no entries is a cancellation recorded without restock;
    the caller adds ``line.key`` to its cancelled set either way, so a
    second cancellation of the line is skipped. ``levels`` holds only the
    sources whose level changed.
    """

    kind: CancellationKind
    line: OrderLine
    decision: RestockDecision | None = None
    returned: tuple[tuple[str, int], ...] = ()
    entries: tuple[LedgerEntry, ...] = ()
    levels: Mapping[str, StockLevel] = field(default_factory=dict)
    markets_to_update: tuple[str, ...] = ()


def cancel_reference(line: OrderLine) -> str:
    return f"cancel:{line.market}:{line.order_id}:{line.line_id}"


def apply_cancellation(
    line: OrderLine,
    allocation: Allocation | None,
    decision: RestockDecision,
    levels: Mapping[str, StockLevel | None],
    *,
    cancelled: AbstractSet[LineKey],
    markets: Sequence[str],
    now: datetime,
    actor: str,
) -> CancellationOutcome:
    """Cancel a whole order line; ``allocation`` is what its import took.

    ``allocation`` None means the line was never imported (the cancellation
    arrived first): nothing is given back, and the caller must also add
    ``line.key`` to its seen set so the late order is skipped, never subtracted.

    On restock each source gets back exactly what was taken from it. The
    shortfall part is not given back: those units were never in stock.
    Every market is to be updated when stock changed, the ordering market
    included, since it does not know Stockdrop put the units back.
    """
    if line.key in cancelled:
        return CancellationOutcome(kind=CancellationKind.SKIPPED_DUPLICATE, line=line)
    if allocation is None or not decision.restock:
        return CancellationOutcome(kind=CancellationKind.APPLIED, line=line, decision=decision)

    entries: list[LedgerEntry] = []
    new_levels: dict[str, StockLevel] = {}
    returned: list[tuple[str, int]] = []
    for source, units in allocation.taken:
        current = new_levels.get(source) or levels.get(source)
        change, _ = adjust_quantity(
            current,
            units,
            sku=line.sku,
            source=source,
            reason=Reason.CANCEL,
            actor=actor,
            now=now,
            reference=cancel_reference(line),
        )
        new_levels[source] = change.level
        returned.append((source, units))
        if change.entry is not None:
            entries.append(change.entry)
    return CancellationOutcome(
        kind=CancellationKind.APPLIED,
        line=line,
        decision=decision,
        returned=tuple(returned),
        entries=tuple(entries),
        levels=new_levels,
        markets_to_update=tuple(dict.fromkeys(markets)) if entries else (),
    )
