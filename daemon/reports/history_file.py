"""The upload history as a spreadsheet (CSV or XLSX), for merchants.

One row per upload with everything the history holds: when and how it came,
what became of it, its counts, the reason or note, and the duplicate rule
that applied. Rows are written as they are read (``uploads.iter_history``;
XLSX in openpyxl's write-only mode), so a history of millions of uploads
needs no more memory than one of ten.

File names, messages and user names come from outside: text cells that a
spreadsheet would run as a formula are escaped (``cells.escape_cell``) in
both formats.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from daemon.db.uploads import HistoryRow
from daemon.formats.cells import escape_cell
from daemon.inventory.uploads import UploadStatus


def _utc(value: datetime | None) -> datetime | None:
    # Spreadsheets have no time zones: the header says UTC.
    return value.astimezone(UTC).replace(tzinfo=None, microsecond=0) if value is not None else None


def _duplicate_rule(r: HistoryRow) -> str | None:
    # A duplicate's message is the rule that made it one (db.uploads.find_duplicate).
    return r.message if r.status == UploadStatus.DUPLICATE else None


COLUMNS: tuple[tuple[str, Callable[[HistoryRow], object]], ...] = (
    ("ID", lambda r: r.id),
    ("Received (UTC)", lambda r: _utc(r.received_at)),
    ("Merchant", lambda r: r.merchant),
    ("Source", lambda r: r.source),
    ("Kind", lambda r: r.kind),
    ("File", lambda r: r.original_name),
    ("Status", lambda r: r.status),
    ("Rows", lambda r: r.rows),
    ("Rows applied", lambda r: r.applied),
    ("Rows unchanged", lambda r: r.unchanged),
    ("Rows rejected", lambda r: r.errors),
    ("SKUs zeroed", lambda r: r.zeroed),
    ("Rows stale", lambda r: r.stale),
    ("Reason / message", lambda r: r.message),
    ("Duplicate of", lambda r: r.duplicate_of),
    ("Duplicate rule", _duplicate_rule),
    ("Warnings", lambda r: r.warnings),
    ("Via", lambda r: r.protocol),
    ("User", lambda r: r.user),
    ("Remote address", lambda r: r.remote_addr),
    ("Size (bytes)", lambda r: r.size),
    ("Transfer (s)", lambda r: r.elapsed_s),
    ("SHA-256", lambda r: r.sha256),
    ("Started (UTC)", lambda r: _utc(r.started_at)),
    ("Finished (UTC)", lambda r: _utc(r.finished_at)),
)
HEADER = tuple(name for name, _ in COLUMNS)


def cells(row: HistoryRow) -> list[object]:
    """One upload's cells, text escaped; numbers and times as they are."""
    return [escape_cell(value(row)) for _, value in COLUMNS]


def write_csv(rows: Iterable[HistoryRow], out: TextIO) -> int:
    """Write the history to ``out`` (opened with ``newline=""``); returns the rows written."""
    writer = csv.writer(out)
    writer.writerow(HEADER)
    count = 0
    for row in rows:
        writer.writerow([_csv_cell(v) for v in cells(row)])
        count += 1
    return count


def _csv_cell(value: object) -> object:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")  # what a spreadsheet reads as a date and time
    return "" if value is None else value


def write_xlsx(rows: Iterable[HistoryRow], path: Path) -> int:
    """Write the history to an XLSX workbook at ``path``; returns the rows written."""
    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter

    book = Workbook(write_only=True)
    sheet = book.create_sheet("Upload history")
    sheet.freeze_panes = "A2"
    widths = {"Received (UTC)": 20, "File": 32, "Status": 20, "Reason / message": 60, "SHA-256": 66,
              "Started (UTC)": 20, "Finished (UTC)": 20}
    for name, width in widths.items():
        sheet.column_dimensions[get_column_letter(HEADER.index(name) + 1)].width = width
    sheet.append(list(HEADER))
    count = 0
    for row in rows:
        # Escaped text never starts with "=", so openpyxl keeps every string a string.
        sheet.append(cells(row))
        count += 1
    book.save(path)
    return count
