"""Which file column plays which role (sku, quantity, location, as_of).

An explicit per-source mapping wins; otherwise the header is matched against
the names the known producers use (see /work/shared/formats.md), ignoring case,
spaces and punctuation so ``Custom label (SKU)``, ``*Quantity`` and
``item_sku`` all match without a list of spellings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from daemon.errors import FeedError

ROLES = ("sku", "quantity", "location", "as_of")

# Order matters: the first alias present wins. Shopify exports carry both
# "Available (not editable)" and "On hand (new)"; only the latter is editable,
# so it must be preferred (the punctuation-free forms differ, which helps).
ALIASES: dict[str, tuple[str, ...]] = {
    "sku": (
        "sku", "Custom label (SKU)", "CustomLabel", "Inventory Number", "Part_Number",
        "Item SKU", "Seller SKU", "item_sku", "Variant SKU",
    ),
    "quantity": (
        "On hand (new)", "quantity", "Qty", "Stock Level", "Available quantity",
        "quantity-available", "Available", "Stock",
    ),
    "location": ("Location", "Warehouse", "source"),
    "as_of": ("as_of", "As Of", "updated_at", "timestamp"),
}

_NOT_WORD = re.compile(r"[\W_]+")


def normalise(header: str) -> str:
    """Lowercase and drop everything but letters and digits (BOM included)."""
    return _NOT_WORD.sub("", header.replace("\ufeff", "").lower())


_NORMALISED = {role: tuple(normalise(a) for a in names) for role, names in ALIASES.items()}


@dataclass(frozen=True)
class Columns:
    """Column indexes in the header; ``None`` when the file has no such column."""

    sku: int
    quantity: int
    location: int | None
    as_of: int | None

    def items(self) -> list[tuple[str, int]]:
        pairs = [("sku", self.sku), ("quantity", self.quantity),
                 ("location", self.location), ("as_of", self.as_of)]
        return [(role, idx) for role, idx in pairs if idx is not None]


def _find(header: Sequence[str], role: str, mapping: Mapping[str, str]) -> int | None:
    wanted = mapping.get(role)
    if wanted is not None:
        stripped = [h.strip() for h in header]
        if wanted.strip() in stripped:
            return stripped.index(wanted.strip())
        norm = [normalise(h) for h in header]
        return norm.index(normalise(wanted)) if normalise(wanted) in norm else None
    norm = [normalise(h) for h in header]
    for alias in _NORMALISED[role]:
        if alias in norm:
            return norm.index(alias)
    return None


def looks_like_header(fields: Sequence[str], mapping: Mapping[str, str]) -> tuple[bool, bool]:
    """(has a SKU header, has a quantity header) - used to find the header row."""
    return (_find(fields, "sku", mapping) is not None,
            _find(fields, "quantity", mapping) is not None)


def check_mapping(mapping: Mapping[str, str]) -> None:
    unknown = sorted(set(mapping) - set(ROLES))
    if unknown:
        raise FeedError(
            f"the column mapping names unknown roles {unknown}; the roles are {list(ROLES)}"
        )


def resolve(header: Sequence[str], mapping: Mapping[str, str]) -> Columns:
    """Map roles to column indexes or raise a FeedError naming what was found."""
    check_mapping(mapping)
    found = {role: _find(header, role, mapping) for role in ROLES}
    for role in ROLES:
        if role in mapping and found[role] is None:
            raise FeedError(
                f"the column {mapping[role]!r} mapped to {role} is not in the file; "
                f"headers found: {_show(header)}"
            )
    for role in ("sku", "quantity"):
        if found[role] is None:
            raise FeedError(
                f"no {role} column: headers found: {_show(header)}; "
                f"accepted names: {', '.join(ALIASES[role])}"
            )
    sku, quantity = found["sku"], found["quantity"]
    assert sku is not None and quantity is not None  # checked just above
    return Columns(sku, quantity, found["location"], found["as_of"])


def _show(header: Sequence[str]) -> str:
    return show_fields(header)


def show_fields(fields: Sequence[str | None], *, each: int = 80, count: int = 30) -> str:
    """Fields for a message, quoted: the non-empty ones, each and all of them cut short.

    The fields come from the file, so a message quoting them could otherwise
    be as long as a line of it (1 MB).
    """
    shown = [f for f in fields if f and f.strip()]
    if not shown:
        return "(none)"
    quoted = [repr(f) if len(f) <= each else repr(f[:each]) + f"\u2026 ({len(f):,} characters)" for f in shown[:count]]
    more = f", and {len(shown) - count:,} more" if len(shown) > count else ""
    return ", ".join(quoted) + more
