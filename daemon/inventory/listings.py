"""First integration wins.

When a merchant connects its first market, the quantities on that market's
listings are the best count there is, so they become the merchant-fulfilled
levels. Every market connected later is told the current inventory instead:
its own listing quantities are never imported, or a stale marketplace could
overwrite a true count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from daemon.inventory.allocation import MERCHANT_FULFILLED
from daemon.inventory.stock import LedgerEntry, Reason, StockLevel, set_quantity


@dataclass(frozen=True)
class ListingRow:
    """One listing as the market reports it."""

    sku: str
    quantity: int


@dataclass(frozen=True)
class ListingStatus:
    """A listing after import. ``needs_update``: send it the current inventory."""

    sku: str
    needs_update: bool


@dataclass(frozen=True)
class ListingImport:
    """What connecting a market did.

    ``first_integration`` says this market's quantities were taken; the caller
    then records that the merchant has integrated. ``levels`` (by SKU, in the
    merchant-fulfilled source) holds only the levels set by the import.
    """

    first_integration: bool
    listings: tuple[ListingStatus, ...]
    entries: tuple[LedgerEntry, ...] = ()
    levels: Mapping[str, StockLevel] = field(default_factory=dict)


def _one_quantity_per_sku(listings: Sequence[ListingRow]) -> dict[str, int]:
    # Two listings of one SKU with different quantities leave no way to know
    # the count; guessing would make the first integration wrong for good.
    quantities: dict[str, int] = {}
    for row in listings:
        known = quantities.setdefault(row.sku, row.quantity)
        if known != row.quantity:
            raise ValueError(
                f"SKU {row.sku!r} is listed twice with different quantities "
                f"({known} and {row.quantity}): fix the listings before the first integration"
            )
    return quantities


def has_integrated(first_market: str | None, market: str) -> bool:
    """The ``merchant_has_integrated`` flag for a listing file from ``market``.

    True only when another market came first: the first market's listings may
    arrive in several files (pages, a resend), and each of them is still the
    first integration.
    """
    return first_market is not None and first_market != market


def import_listings(
    merchant_has_integrated: bool,
    listings: Sequence[ListingRow],
    current_mf_levels: Mapping[str, StockLevel | None],
    now: datetime,
    *,
    source: str = MERCHANT_FULFILLED,
    actor: str = "import",
    reference: str | None = None,
) -> ListingImport:
    """Import a newly connected market's listings (``current_mf_levels`` is by SKU).

    ``merchant_has_integrated`` comes from ``has_integrated``; a later file
    of the first market sets its SKUs again (the newest listing wins).
    """
    if merchant_has_integrated:
        statuses = tuple(ListingStatus(sku, True) for sku in dict.fromkeys(r.sku for r in listings))
        return ListingImport(first_integration=False, listings=statuses)

    entries: list[LedgerEntry] = []
    levels: dict[str, StockLevel] = {}
    statuses_list: list[ListingStatus] = []
    for sku, quantity in _one_quantity_per_sku(listings).items():
        change = set_quantity(
            current_mf_levels.get(sku),
            quantity,
            sku=sku,
            source=source,
            reason=Reason.IMPORT,
            actor=actor,
            now=now,
            reference=reference,
        )
        # A level stamped later than now (clock skew) is not overwritten; that
        # listing then shows a number Stockdrop did not take, so it is resent.
        statuses_list.append(ListingStatus(sku, change.stale))
        if not change.stale:
            levels[sku] = change.level
        if change.entry is not None:
            entries.append(change.entry)
    return ListingImport(
        first_integration=True,
        listings=tuple(statuses_list),
        entries=tuple(entries),
        levels=levels,
    )
