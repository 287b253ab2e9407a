"""A digest's attachments: the rejected rows (CSV, and XLSX if asked), and the quick-fix files.

The rejected rows are every row error of the period's files, one line each
with its upload, file, row, column, value and the sentence, to sort and
filter in a spreadsheet. Text that a spreadsheet would run as a formula
(``= + - @``) gets a leading apostrophe, as in every file Stockdrop writes
(``formats.cells``), in both formats.

A *quick-fix file* holds only the failed rows of one upload in that
source's own upload format, ready to correct and send again;
``quick_fix_attachments`` asks ``reports.quickfix`` for one per upload.
"""

from __future__ import annotations

import csv
import io
import mimetypes
from collections.abc import Mapping, Sequence
from datetime import datetime

from openpyxl import Workbook
from openpyxl.styles import Font
from sqlalchemy.orm import Session

from daemon.db.digests import RowErrorRow, UploadRow
from daemon.formats.cells import escape_cell
from daemon.reports.outbox import Attachment
from daemon.settings import Settings

HEADER = ("upload", "file", "source", "received_at", "row", "column", "value", "sku", "error")


def _lines(errors: Sequence[RowErrorRow], uploads: Mapping[int, UploadRow]) -> list[list[object]]:
    out: list[list[object]] = []
    for e in errors:
        f = uploads[e.upload_id]
        received = f.received_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        out.append([e.upload_id, escape_cell(f.name), escape_cell(f.owner), received, e.row,
                    escape_cell(e.column), escape_cell(e.value), escape_cell(e.sku), escape_cell(e.message)])
    return out


def rejected_rows_csv(errors: Sequence[RowErrorRow], uploads: Mapping[int, UploadRow]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(HEADER)
    writer.writerows(_lines(errors, uploads))
    # A BOM, so that Excel opens the UTF-8 file as UTF-8 (SKUs and messages may hold any text).
    return b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8")


def rejected_rows_xlsx(errors: Sequence[RowErrorRow], uploads: Mapping[int, UploadRow]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Rejected rows"
    sheet.append(list(HEADER))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    sheet.freeze_panes = "A2"
    for number, line in enumerate(_lines(errors, uploads), start=2):
        sheet.append(line)
        for cell in sheet[number]:
            if isinstance(cell.value, str):
                # Text, never a formula: openpyxl would store a string starting with "=" as one.
                cell.data_type = "s"
    for column, width in zip("ABCDEFGHI", (8, 28, 18, 21, 6, 14, 18, 18, 60), strict=True):
        sheet.column_dimensions[column].width = width
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def rejected_rows(errors: Sequence[RowErrorRow], uploads: Mapping[int, UploadRow], *, period_end: datetime,
                  merchant: str, xlsx: bool) -> list[Attachment]:
    if not errors:
        return []
    stem = f"rejected-rows-{merchant}-{period_end:%Y-%m-%d}"
    out = [Attachment(f"{stem}.csv", "text/csv", rejected_rows_csv(errors, uploads))]
    if xlsx:
        out.append(Attachment(f"{stem}.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                              rejected_rows_xlsx(errors, uploads)))
    return out


def quick_fix_attachments(session: Session, upload_ids: Sequence[int], settings: Settings) -> list[Attachment]:
    """The quick-fix file of each upload that has one (its failed rows, in its own format)."""
    # Imported here: the quick-fix module reads a source's format settings and the
    # kept original, which the rest of the digest never needs.
    from daemon.reports.quickfix import quick_fix_file

    out = []
    for upload_id in upload_ids:
        made = quick_fix_file(session, upload_id, settings=settings)
        if made is not None:
            name, data = made
            kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
            out.append(Attachment(name, kind, data))
    return out
