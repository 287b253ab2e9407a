"""Read the status files warehouses send back about the orders they were sent.

Headers as warehouses write them (formats.md): ``OrderId``, ``Status``
(``SHIPPED``, ``COMPLETE``, ``CANCELLED`` or ``ERROR``; any case),
``Tracking Number``, ``Shipping Service``. Optional: ``Market`` (where two
markets share an order id; our order files carry it), ``LineId`` (one line
of the order, else every line the warehouse holds) and ``Message`` (why an
``ERROR``). Decoding and header detection are the feed reader's, as for
order files; every bad row is a ``RowError`` with its row, column and value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from daemon.formats.feeds import RowError
from daemon.formats.orders import cell, columns, read_table

STATUSES = ("SHIPPED", "COMPLETE", "CANCELLED", "ERROR")
_ROLES: dict[str, tuple[str, ...]] = {
    "order_id": ("orderid", "ordernumber"),
    "status": ("status", "orderstatus"),
    "tracking": ("trackingnumber", "tracking", "trackingno"),
    "service": ("shippingservice", "carrier", "shippingmethod"),
    "market": ("market", "channel"),
    "line_id": ("lineid", "orderlineid", "orderitemid"),
    "message": ("message", "error", "errormessage", "reason", "comment"),
}
_LIMITS = {"order_id": 100, "line_id": 100, "market": 100, "tracking": 200, "service": 200, "message": 2000}


@dataclass(frozen=True)
class StatusRow:
    row: int
    order_id: str
    status: str  # one of STATUSES
    tracking: str | None
    service: str | None
    market: str | None
    line_id: str | None
    message: str | None


@dataclass
class ParsedStatuses:
    rows: list[StatusRow]
    errors: list[RowError]
    total_rows: int
    duplicates: int = 0  # the same row twice in the file: counted once
    labels: dict[str, str] = field(default_factory=dict)  # role -> the file's own header, for row errors


def read_statuses(path: Path) -> ParsedStatuses:
    """A warehouse status file (CSV, TSV, ``;``): valid rows and row errors; ``FeedError`` for the whole file."""
    table = read_table(Path(path).read_bytes(), lambda h: "orderid" in h or "status" in h, "status",
                       "OrderId, Status, Tracking Number, Shipping Service")
    cols = columns(table.header, _ROLES, ("order_id", "status"))
    label = {role: table.header[i] for role, i in cols.items()}
    rows: list[StatusRow] = []
    errors: list[RowError] = []
    seen: dict[tuple[str, str | None, str | None], StatusRow] = {}
    duplicates = 0
    for number, cells in table.rows:
        values = {role: cell(cells, cols.get(role)) for role in _ROLES}
        problems: list[RowError] = []
        if len(cells) > len(table.header) and any(c for c in cells[len(table.header):]):
            problems.append(RowError(number, None, table.delimiter.join(cells[len(table.header):]),
                                     "the row has more fields than the header"))
        if not values["order_id"]:
            problems.append(RowError(number, label["order_id"], "", "the order id is empty"))
        status = values["status"].upper()
        if not status:
            problems.append(RowError(number, label["status"], "", "the status is empty"))
        elif status not in STATUSES:
            problems.append(RowError(number, label["status"], values["status"],
                                     f"the status must be one of {', '.join(STATUSES)}"))
        for role, limit in _LIMITS.items():
            if len(values[role]) > limit:
                problems.append(RowError(number, label[role], values[role][:60] + "...",
                                         f"longer than {limit} characters"))
        if problems:
            errors.extend(problems)
            continue
        row = StatusRow(number, values["order_id"], status, values["tracking"] or None, values["service"] or None,
                        values["market"] or None, values["line_id"] or None, values["message"] or None)
        key = (row.order_id, row.market, row.line_id)
        earlier = seen.get(key)
        if earlier is not None:
            if (earlier.status, earlier.tracking, earlier.service) == (row.status, row.tracking, row.service):
                duplicates += 1
            else:
                errors.append(RowError(number, label["status"], values["status"],
                                       f"order {row.order_id} is also on row {earlier.row} with another status, "
                                       f"tracking number or shipping service"))
            continue
        seen[key] = row
        rows.append(row)
    return ParsedStatuses(rows, errors, len(table.rows), duplicates, label)
