"""Chosen rows of a feed, written back in the feed's own format: the quick-fix file.

A merchant corrects the rows that failed and sends the file again, so it must
read like the original: the same lines above the header and the same header,
the same delimiter, line ends and encoding (a BOM too) for delimited text, the
same sheet name and cell types for a workbook, and each cell as it was sent.
The rows are found as the parser numbered them (``feeds.read_text_cells``,
``feeds.xlsx_header``), so a row error's number picks the row it was about.

The file goes to a person's spreadsheet, so it is no more dangerous than the
files Stockdrop writes itself: text that a spreadsheet would run as a formula
is escaped in CSV (``cells.escape_cell``; the SKU comes back unescaped when
the file is read), and is a text cell, never a formula, in XLSX.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.errors import FeedError
from daemon.formats import feeds, xlsx
from daemon.formats.cells import escape_cell
from daemon.formats.feeds import ParseOptions

_TEXT_SUFFIXES = (".csv", ".txt", ".tsv", ".tab")
# A signed number such as -5 is a value a spreadsheet reads as a number, not a
# formula: escaping it would turn an adjust feed's "-3" into text that no
# longer reads as a quantity.
_NUMBER = re.compile(r"[+-]?\d[\d.,]*")


@dataclass(frozen=True)
class FixFile:
    data: bytes
    extension: str  # with its dot: ".csv", ".xlsx"
    rows: int  # data rows written (below the header)


def chosen_rows(raw: bytes, name: str, options: ParseOptions, rows: Collection[int] | None) -> FixFile:
    """The feed ``raw`` (named ``name``) with only its data rows numbered ``rows``;
    every non-blank data row when ``rows`` is None. Raises ``FeedError`` as the parser would."""
    if feeds.is_workbook(raw, name):
        kind = ".xls" if xlsx.is_cfb(raw) else Path(name).suffix.lower()
        if kind in (".xls", ".xlsb", ".ods"):
            # openpyxl, which keeps each cell's type, writes only the zip-XML workbooks.
            raise FeedError(f"quick-fix files are made of CSV and .xlsx feeds, not of a {kind} workbook: "
                            "correct the rows the history names in the original and send it again")
        return _workbook(raw, options, rows)
    return _text(raw, name, options, rows)


def _text(raw: bytes, name: str, options: ParseOptions, rows: Collection[int] | None) -> FixFile:
    cells = feeds.read_text_cells(raw, options)
    found, data = cells.layout, cells.decoded.data
    header_end = data.find(b"\n", found.header_offset)
    header_end = len(data) if header_end < 0 else header_end
    newline = "\r\n" if data[header_end - 1:header_end] == b"\r" else "\n"
    out = io.StringIO()
    writer = csv.writer(out, delimiter=found.delimiter, quotechar='"', lineterminator=newline)
    # The lines above the header and the header itself, cell by cell.
    for line in data[:header_end].decode("utf-8").split("\n"):
        writer.writerow([_text_cell(c) for c in next(csv.reader([line.rstrip("\r")],
                                                                 delimiter=found.delimiter), [])])
    table = cells.table.slice(1)
    first = found.header_line + 1
    width = found.width
    if rows is None:
        keep = [i for i, values in enumerate(table.iter_rows()) if any(v is not None and v.strip()
                                                                        for v in values)]
    else:
        keep = sorted({r - first for r in rows if 0 <= r - first < table.height})
    for values in table[keep].iter_rows() if keep else ():
        fields = list(values[:width])
        if cells.spare is not None and values[-1] is not None:
            fields.append(values[-1])  # the field beyond the header that made the row an error
        writer.writerow([_text_cell(v) for v in fields])
    suffix = Path(name).suffix
    return FixFile(_encode(out.getvalue(), cells.decoded.encoding, raw), suffix if suffix.lower()
                   in _TEXT_SUFFIXES else ".csv", len(keep))


def _text_cell(value: str | None) -> str:
    if value is None:
        return ""
    return value if _NUMBER.fullmatch(value) else str(escape_cell(value))


def _encode(text: str, encoding: str, raw: bytes) -> bytes:
    """``text`` in the original's encoding, with its byte-order mark if it had one."""
    if encoding == "utf-16":
        big = raw.startswith(b"\xfe\xff")
        return (b"\xfe\xff" if big else b"\xff\xfe") + text.encode("utf-16-be" if big else "utf-16-le")
    return text.encode(encoding)  # utf-8, utf-8-sig (writes the BOM) or cp1252


def _workbook(raw: bytes, options: ParseOptions, rows: Collection[int] | None) -> FixFile:
    # openpyxl, not the parser's calamine: it keeps each cell's type and
    # number format, so 0017 stays a text cell and 5 a number.
    from openpyxl import Workbook, load_workbook

    sheet_name, header_row = feeds.xlsx_header(raw, options)
    wanted = None if rows is None else set(rows)
    stop = None if wanted is None else max(wanted | {header_row})
    source = load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
    book = Workbook(write_only=True)
    sheet = book.create_sheet(sheet_name)
    written = 0
    try:
        # A read-only sheet yields every row, empty ones too, so the count is the sheet row.
        for number, row in enumerate(source[sheet_name].iter_rows(), start=1):
            if stop is not None and number > stop:
                break
            if number > header_row:  # above it: the lines before the header, and the header
                if wanted is not None and number not in wanted:
                    continue
                if wanted is None and all(_blank(getattr(c, "value", None)) for c in row):
                    continue
                written += 1
            sheet.append(list(_copied(sheet, row)))
    finally:
        source.close()
    out = io.BytesIO()
    book.save(out)
    return FixFile(out.getvalue(), ".xlsx", written)


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _copied(sheet: Any, row: Sequence[Any]) -> Iterable[Any]:
    """The cells of a read-only row as write-only cells with the same value, type and format."""
    from openpyxl.cell import WriteOnlyCell

    for cell in row:
        value = getattr(cell, "value", None)  # an EmptyCell has a value of None
        if value is None:
            yield None
            continue
        copy = WriteOnlyCell(sheet, value=value)
        copy.number_format = cell.number_format
        if isinstance(value, str) and cell.data_type != "e":
            # openpyxl stores any string starting with "=" as a formula; this was text.
            copy.data_type = "s"
        yield copy
