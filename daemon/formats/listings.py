"""Read a market's listings: one quantity per SKU, in the market's own format.

Walmart's inventory JSON is read as such; a Shopify inventory export takes
``Available (not editable)`` summed over its locations, and keeps each
location with the handle and option values that name the variant there (the
export writes those rows back); everything else
(generic CSV, Amazon's tab-delimited inventory report, eBay Seller Hub / File
Exchange with its ``#INFO`` preamble) goes through the feed reader, which
knows their SKU and quantity headers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from daemon.errors import FeedError
from daemon.formats import decode as decoding
from daemon.formats.feeds import ParseOptions, RowError, parse_feed, read_columns
from daemon.formats.headers import normalise


@dataclass
class ListingFile:
    """A market's listings: (sku, quantity) with one quantity per SKU.

    ``locations``: a Shopify export's (sku, location, handle, option1,
    option2, option3) rows, one per location a SKU is stocked at; None for
    the formats that have none.
    """

    rows: list[tuple[str, int]]
    errors: list[RowError]
    total_rows: int
    format: str
    warnings: list[str] = field(default_factory=list)
    locations: list[tuple[str, str, str, str | None, str | None, str | None]] | None = None
    # A Shopify export's (sku, location, Available) rows; None for the other formats.
    available: list[tuple[str, str, int]] | None = None

    def kept_at(self, location: str) -> ListingFile:
        """The file as a market whose export writes ``location`` only (the Shopify option) must read it.

        That export leaves every other location as it is, so their units stay
        on sale beside Stockdrop's: counting them into Stockdrop's stock too
        would offer them twice. Each variant's quantity is its Available at
        ``location``; one not stocked there counts 0. A file with no row at
        ``location`` is refused: the option or the file is the wrong one.
        """
        if self.available is None:
            return self
        at = {sku: quantity for sku, where, quantity in self.available if where == location}
        if not at:
            found = sorted({where for _, where, _ in self.available})
            raise FeedError(f"no row of the file is at the Shopify location {location!r}, the one the market's "
                            f"export keeps (its option location); the file's locations are "
                            f"{', '.join(map(repr, found)) or 'none'}")
        elsewhere = sum(1 for sku, _ in self.rows if sku not in at)
        note = (f"quantities are each variant's Available at {location!r} only, the location the export keeps: "
                "the other locations are left as they are in Shopify"
                + (f"; {elsewhere} variant(s) not stocked there count 0" if elsewhere else ""))
        return replace(self, rows=[(sku, at.get(sku, 0)) for sku, _ in self.rows], warnings=[*self.warnings, note])


_SHOPIFY_QUANTITY = "Available (not editable)"
_SHOPIFY_NAMES = ("Handle", "Option1 Value", "Option2 Value", "Option3 Value")


def read_listings(path: Path) -> ListingFile:
    """A listing file in the market's own format, or generic ``sku,quantity``.

    Walmart's inventory JSON is read as such; a Shopify inventory export
    takes ``Available (not editable)`` summed over its locations, and keeps
    its locations (``_shopify``); everything
    else (generic CSV, Amazon's tab-delimited inventory report, eBay Seller
    Hub / File Exchange with its ``#INFO`` preamble) goes through the feed
    parser, which knows their SKU and quantity headers.
    """
    raw = Path(path).read_bytes()
    head = raw[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith((b"{", b"[")):
        return _walmart_json(raw)
    probe = decoding.decode(raw[:8192]).data if raw else b""
    if normalise(_SHOPIFY_QUANTITY).encode() in re.sub(rb"[\W_]+", b"", probe.lower()):
        return _shopify(path)
    feed = parse_feed(path, ParseOptions(negative="reject", duplicates="reject"))
    fmt = _guess_format(feed.header, feed.delimiter)
    totals: dict[str, int] = {}
    for sku, quantity in feed.frame.select("sku", "quantity").iter_rows():
        totals[sku] = totals.get(sku, 0) + int(quantity)
    return ListingFile(list(totals.items()), list(feed.errors), feed.total_rows, fmt,
                       list(feed.warnings))


def _shopify(path: Path) -> ListingFile:
    """A Shopify inventory export: the Available units summed per SKU, and the rows' locations.

    A negative Available (oversold) counts as 0; a ``Not stocked`` row is
    no row: the variant is not kept there, and the export leaves that
    location out, so Shopify leaves it as it is. A row without its handle or
    location could not be written back: it is a row error, and not counted.
    """
    options = ParseOptions(columns={"sku": "SKU", "quantity": _SHOPIFY_QUANTITY, "location": "Location"},
                           negative="clamp")
    feed = parse_feed(path, options)
    header = {normalise(h) for h in feed.header}
    missing = [name for name in ("Handle", "Location") if normalise(name) not in header]
    if missing:
        raise FeedError(f"a Shopify inventory export needs the column(s) {', '.join(missing)}, "
                        "to write quantities back to the right variant and location")
    named = read_columns(path, options, _SHOPIFY_NAMES)
    rows = feed.frame.select("row", "sku", "quantity", "location").join(named, on="row", how="left",
                                                                         maintain_order="left")
    errors = list(feed.errors)
    totals: dict[str, int] = {}
    locations, available = [], []
    for row, sku, quantity, location, handle, option1, option2, option3 in rows.iter_rows():
        if handle is None or location is None:
            column = "Handle" if handle is None else "Location"
            errors.append(RowError(row, column, None, f"{column} is empty: Stockdrop needs it to send "
                                                      "this variant's quantity back to Shopify", sku))
            continue
        totals[sku] = totals.get(sku, 0) + int(quantity)
        locations.append((sku, location, handle, option1, option2, option3))
        available.append((sku, location, int(quantity)))
    errors.sort(key=lambda e: (e.row is None, e.row or 0))
    return ListingFile(list(totals.items()), errors, feed.total_rows, "shopify", list(feed.warnings), locations,
                       available)


def _guess_format(header: Sequence[str], delimiter: str | None) -> str:
    norm = {normalise(h) for h in header}
    if any(h.startswith("action") for h in norm) or "customlabelsku" in norm or "customlabel" in norm:
        return "ebay"
    if delimiter == "\t":
        return "amazon"
    return "generic"


def _walmart_json(raw: bytes) -> ListingFile:
    try:
        doc = json.loads(decoding.decode(raw).data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FeedError(f"the file looks like JSON but cannot be read: {exc}") from None
    items = doc.get("Inventory") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise FeedError('a Walmart inventory file needs an "Inventory" list')
    totals: dict[str, int] = {}
    errors: list[RowError] = []
    for number, item in enumerate(_items(items), start=1):
        sku = item.get("sku") if isinstance(item, dict) else None
        qty = item.get("quantity") if isinstance(item, dict) else None
        amount = qty.get("amount") if isinstance(qty, dict) else qty
        if not isinstance(sku, str) or not sku.strip():
            errors.append(RowError(number, "sku", None if sku is None else str(sku), "SKU is empty"))
            continue
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            errors.append(RowError(number, "quantity.amount", None if amount is None else str(amount),
                                   "quantity must be a whole number 0 or more"))
            continue
        if sku in totals and totals[sku] != amount:
            errors.append(RowError(number, "sku", sku, "the SKU is listed twice with different quantities"))
            continue
        totals[sku.strip()] = amount
    return ListingFile(list(totals.items()), errors, len(items), "walmart")


def _items(items: list[object]) -> Iterator[dict[str, object]]:
    for item in items:
        yield item if isinstance(item, dict) else {}
