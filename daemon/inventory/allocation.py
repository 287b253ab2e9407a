"""Which sources an order's units come from.

An order for one SKU is taken from the merchant's sources in priority order.
Units that no source has are an oversell: they are recorded as a shortfall on
one source (the first in priority) rather than driving any quantity negative.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

# Matches the source ``kind`` in settings; repeated here so the domain does not
# import the configuration layer.
SourceKind = Literal["merchant-fulfilled", "warehouse"]
MERCHANT_FULFILLED: Final = "merchant-fulfilled"
WAREHOUSE: Final = "warehouse"


class SourceLike(Protocol):
    """Anything with a source's name, kind and priority (settings' sources fit)."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def priority(self) -> int: ...


@dataclass(frozen=True)
class SourceInfo:
    """A source as allocation sees it. Lower ``priority`` is tried first."""

    name: str
    kind: SourceKind = WAREHOUSE
    priority: int = 100


def default_priority(sources: Sequence[SourceLike]) -> list[str]:
    """Merchant-fulfilled first, then warehouses by priority (lower first).

    Ties keep the given order (sorted() is stable), so the configuration file
    order decides between equal priorities, predictably.
    """
    merchant = [s for s in sources if s.kind == MERCHANT_FULFILLED]
    warehouses = sorted(
        (s for s in sources if s.kind != MERCHANT_FULFILLED), key=lambda s: s.priority
    )
    return _unique([s.name for s in (*merchant, *warehouses)])


def _unique(names: Sequence[str]) -> list[str]:
    # A source listed twice must not be taken from twice.
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class Allocation:
    """Where an order's units came from.

    ``taken`` lists (source, units) with units > 0, in the order taken; these
    are the units a cancellation can give back. ``shortfall`` units were sold
    but were in no source (oversold); they are attributed to
    ``shortfall_source`` and never existed, so nothing gives them back.
    """

    taken: tuple[tuple[str, int], ...] = ()
    shortfall: int = 0
    shortfall_source: str | None = None

    @property
    def quantity(self) -> int:
        """Units ordered: taken plus oversold."""
        return sum(q for _, q in self.taken) + self.shortfall

    def taken_from(self, source: str) -> int:
        return sum(q for s, q in self.taken if s == source)


def allocate(
    quantity: int,
    available_by_source: Mapping[str, int],
    priority: Sequence[str],
    *,
    split: bool,
) -> Allocation:
    """Allocate ``quantity`` units over the sources in ``priority`` order.

    Without ``split`` one source ships the whole line (one parcel): the first
    that has enough, else the first in priority, which ships what it has and
    records the rest as shortfall. With ``split`` each source in turn gives
    what it has; what is left is shortfall on the first source. Sources not in
    ``available_by_source`` have 0; negative availability counts as 0.
    """
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
        raise ValueError(f"quantity to allocate must be a whole number 0 or more, got {quantity!r}")
    order = _unique(priority)
    if not order:
        raise ValueError("no source to allocate from: the priority list is empty")
    if quantity == 0:
        return Allocation()

    def available(source: str) -> int:
        return max(0, available_by_source.get(source, 0))

    if not split:
        for source in order:
            if available(source) >= quantity:
                return Allocation(taken=((source, quantity),))
        first = order[0]
        have = available(first)
        taken = ((first, have),) if have else ()
        return Allocation(taken=taken, shortfall=quantity - have, shortfall_source=first)

    parts: list[tuple[str, int]] = []
    remaining = quantity
    for source in order:
        take = min(available(source), remaining)
        if take:
            parts.append((source, take))
            remaining -= take
        if not remaining:
            break
    if remaining:
        return Allocation(taken=tuple(parts), shortfall=remaining, shortfall_source=order[0])
    return Allocation(taken=tuple(parts))
