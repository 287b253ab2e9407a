"""Read the order and cancellation files markets send.

Every reader returns the valid rows and a list of row errors (row number as
an editor shows it, column header as in the file, the value and a sentence),
and raises ``FeedError`` when the file cannot be used as a whole (binary, no
header, a required column missing). Decoding and header detection are the
feed reader's (``decode``, ``layout``).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from daemon.errors import FeedError
from daemon.formats import decode as decoding
from daemon.formats.feeds import RowError
from daemon.formats.headers import normalise, show_fields
from daemon.formats.layout import find_header

__all__ = [
    "CancellationRow", "OrderRow", "ParsedCancellations", "ParsedOrders",
    "RowError", "read_cancellations", "read_orders",
]

_SCIENTIFIC = re.compile(r"^[+-]?\d+(?:[.,]\d+)?[eE][+-]?\d+$")
_WHOLE = re.compile(r"^\+?(\d+)(?:\.0*)?$")
MAX_ORDER_QUANTITY = 1_000_000


# --- shared text handling -------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    header: list[str]
    rows: list[tuple[int, list[str]]]  # (row number as an editor shows it, cells)
    delimiter: str


def _read_table(raw: bytes, is_header: Callable[[set[str]], bool], what: str,
                expected: str) -> _Table:
    """Find the header (the first line ``is_header`` accepts) and read the rows."""
    data = decoding.decode(raw).data
    if not data.strip():
        raise FeedError("the file is empty")
    found = find_header(
        data, lambda fields: 0 if is_header({normalise(f) for f in fields}) else None,
        lambda shown: f"no {what} header row was found; headers found: {shown}; expected {expected}")
    reader = csv.reader(io.StringIO(data[found.header_offset:].decode("utf-8")), delimiter=found.delimiter)
    header = [h.strip() for h in next(reader)]
    rows: list[tuple[int, list[str]]] = []
    start = found.header_line - 1  # lines before the header; editor row = start + line_num
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise FeedError(f"the file cannot be read as delimited text near line "
                            f"{start + reader.line_num}: {exc}") from None
        if not any(c.strip() for c in cells):
            continue  # blank rows are layout noise, not errors
        rows.append((start + reader.line_num, [c.strip() for c in cells]))
    return _Table(header, rows, found.delimiter)


def _columns(header: Sequence[str], roles: dict[str, tuple[str, ...]],
             required: Sequence[str]) -> dict[str, int]:
    norm = [normalise(h) for h in header]
    found: dict[str, int] = {}
    for role, aliases in roles.items():
        for alias in aliases:
            if alias in norm:
                found[role] = norm.index(alias)
                break
    missing = [r for r in required if r not in found]
    if missing:
        shown = show_fields(header)
        raise FeedError(f"no {', '.join(missing)} column: headers found: {shown}")
    return found


def _cell(cells: list[str], index: int | None) -> str:
    if index is None or index >= len(cells):
        return ""
    return cells[index]


def parse_time(value: str) -> datetime:
    """ISO 8601 (``Z`` or an offset; no zone means UTC) to an aware UTC datetime."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    when = datetime.fromisoformat(text)  # raises ValueError
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


# The table reading, shared with the warehouses' status files (``formats.statuses``).
read_table, columns, cell = _read_table, _columns, _cell


# --- orders ---------------------------------------------------------------------

_ORDER_ROLES: dict[str, tuple[str, ...]] = {
    "order_id": ("orderid", "ordernumber"),
    "line_id": ("lineid", "orderitemid", "orderlineid"),
    "sku": ("sku", "sellersku"),
    "quantity": ("quantity", "quantitypurchased", "qty"),
    "ordered_at": ("orderedat", "purchasedate", "orderdate"),
}
_ORDER_REQUIRED = ("order_id", "line_id", "sku", "quantity", "ordered_at")


@dataclass(frozen=True)
class OrderRow:
    row: int
    order_id: str
    line_id: str
    sku: str
    quantity: int
    ordered_at: datetime


@dataclass
class ParsedOrders:
    rows: list[OrderRow]
    errors: list[RowError]
    total_rows: int
    duplicates: int = 0  # the same line twice in the file, identical: counted as skipped
    format: str = "generic"
    warnings: list[str] = field(default_factory=list)


def read_orders(path: Path) -> ParsedOrders:
    """Generic CSV (order_id, line_id, sku, quantity, ordered_at) or an Amazon order report."""
    table = _read_table(
        Path(path).read_bytes(), lambda h: "orderid" in h and "sku" in h, "order",
        "order_id, line_id, sku, quantity, ordered_at (or the Amazon order report's "
        "order-id, order-item-id, purchase-date, sku, quantity-purchased)",
    )
    cols = _columns(table.header, _ORDER_ROLES, _ORDER_REQUIRED)
    fmt = "amazon" if normalise(table.header[cols["line_id"]]) == "orderitemid" else "generic"
    label = {role: table.header[i] for role, i in cols.items()}
    rows: list[OrderRow] = []
    errors: list[RowError] = []
    seen: dict[tuple[str, str], OrderRow] = {}
    duplicates = 0
    for number, cells in table.rows:
        values = {role: _cell(cells, i) for role, i in cols.items()}
        problems: list[RowError] = []

        def bad(role: str, message: str, n: int = number, v: dict[str, str] = values,
                found: list[RowError] = problems) -> None:
            found.append(RowError(n, label[role], v[role], message))

        if len(cells) > len(table.header) and any(c for c in cells[len(table.header):]):
            problems.append(RowError(number, None, table.delimiter.join(cells[len(table.header):]),
                                     "the row has more fields than the header"))
        for role in ("order_id", "line_id"):
            if not values[role]:
                bad(role, f"{role.replace('_', ' ')} is empty")
            elif len(values[role]) > 100:
                bad(role, f"{role.replace('_', ' ')} is longer than 100 characters")
        sku = values["sku"]
        if not sku:
            bad("sku", "SKU is empty")
        elif _SCIENTIFIC.match(sku):
            bad("sku", "SKU looks mangled by a spreadsheet (scientific notation)")
        elif len(sku) > 200:
            bad("sku", "SKU is longer than 200 characters")
        quantity = _order_quantity(values["quantity"], bad)
        ordered_at: datetime | None = None
        if not values["ordered_at"]:
            bad("ordered_at", "the order time is empty")
        else:
            try:
                ordered_at = parse_time(values["ordered_at"])
            except ValueError:
                bad("ordered_at", "not an ISO 8601 date and time (e.g. 2024-05-01T10:02:00Z)")
        if problems:
            errors.extend(problems)
            continue
        assert quantity is not None and ordered_at is not None
        row = OrderRow(number, values["order_id"], values["line_id"], sku, quantity, ordered_at)
        key = (row.order_id, row.line_id)
        earlier = seen.get(key)
        if earlier is not None:
            if (earlier.sku, earlier.quantity, earlier.ordered_at) == (sku, quantity, ordered_at):
                duplicates += 1
            else:
                errors.append(RowError(number, label["line_id"], row.line_id,
                                       f"order {row.order_id} line {row.line_id} is also on row "
                                       f"{earlier.row} with a different SKU, quantity or time"))
            continue
        seen[key] = row
        rows.append(row)
    return ParsedOrders(rows, errors, len(table.rows), duplicates, fmt)


def _order_quantity(value: str, bad: Callable[[str, str], None]) -> int | None:
    if not value:
        bad("quantity", "quantity is empty")
        return None
    match = _WHOLE.match(value)
    if match is None:
        bad("quantity", "quantity must be a whole number 1 or more")
        return None
    quantity = int(match.group(1))
    if quantity < 1:
        bad("quantity", "quantity must be 1 or more")
        return None
    if quantity > MAX_ORDER_QUANTITY:
        bad("quantity", f"quantity is above the maximum of {MAX_ORDER_QUANTITY:,}")
        return None
    return quantity


# --- cancellations --------------------------------------------------------------

_CANCEL_ROLES: dict[str, tuple[str, ...]] = {
    "order_id": ("orderid", "ordernumber"),
    "line_id": ("lineid", "orderitemid", "orderlineid"),
    "cancelled_at": ("cancelledat", "canceledat", "cancellationdate"),
    "origin": ("origin",),
    "restock": ("restock",),
}
_YES = {"yes", "y", "true", "1"}
_NO = {"no", "n", "false", "0"}


@dataclass(frozen=True)
class CancellationRow:
    row: int
    order_id: str
    line_id: str | None  # None: every line of the order
    cancelled_at: datetime
    origin: str  # market | stockdrop
    restock: bool | None  # the operator's choice, for origin stockdrop


@dataclass
class ParsedCancellations:
    rows: list[CancellationRow]
    errors: list[RowError]
    total_rows: int


def read_cancellations(path: Path) -> ParsedCancellations:
    """CSV ``order_id, line_id, cancelled_at, origin`` (+ optional ``restock`` yes/no).

    ``origin`` is market (default) or stockdrop; an empty ``line_id``
    cancels every line of the order.
    """
    table = _read_table(Path(path).read_bytes(), lambda h: "orderid" in h and "cancelledat" in h,
                        "cancellation", "order_id, line_id, cancelled_at, origin")
    cols = _columns(table.header, _CANCEL_ROLES, ("order_id", "cancelled_at"))
    label = {role: table.header[i] for role, i in cols.items()}
    rows: list[CancellationRow] = []
    errors: list[RowError] = []
    for number, cells in table.rows:
        values = {role: _cell(cells, cols.get(role)) for role in _CANCEL_ROLES}
        problems: list[RowError] = []
        if not values["order_id"]:
            problems.append(RowError(number, label["order_id"], "", "order id is empty"))
        when: datetime | None = None
        try:
            when = parse_time(values["cancelled_at"]) if values["cancelled_at"] else None
            if when is None:
                problems.append(RowError(number, label["cancelled_at"], "", "the cancellation time is empty"))
        except ValueError:
            problems.append(RowError(number, label["cancelled_at"], values["cancelled_at"],
                                     "not an ISO 8601 date and time (e.g. 2024-05-01T10:02:00Z)"))
        origin = values["origin"].lower() or "market"
        if origin not in ("market", "stockdrop"):
            problems.append(RowError(number, label.get("origin"), values["origin"],
                                     "origin must be market or stockdrop"))
        restock: bool | None = None
        if values["restock"]:
            if values["restock"].lower() in _YES:
                restock = True
            elif values["restock"].lower() in _NO:
                restock = False
            else:
                problems.append(RowError(number, label.get("restock"), values["restock"],
                                         "restock must be yes or no"))
        if problems:
            errors.extend(problems)
            continue
        assert when is not None
        rows.append(CancellationRow(number, values["order_id"], values["line_id"] or None, when,
                                    origin, restock))
    return ParsedCancellations(rows, errors, len(table.rows))
