"""Read one sheet of an XLSX workbook as text cells, after safety checks.

calamine (through fastexcel) does the reading; every cell comes back as text
so validation is the same as for CSV. Error cells (``#NAME?``) come back as
null plus a cell-error record (read only from sheets with nulls); they are
put back as their display text so a used column reports them and an unused
column is simply ignored.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass

import fastexcel
import polars as pl

from daemon.errors import FeedError

_ZIP_MAGIC = b"PK\x03\x04"
_CFB_MAGIC = b"\xd0\xcf\x11\xe0"  # OLE compound file: encrypted xlsx or legacy .xls

# calamine's names for error values -> what a spreadsheet shows.
_ERROR_TEXT = {
    "Div0": "#DIV/0!", "NA": "#N/A", "Name": "#NAME?", "Null": "#NULL!",
    "Num": "#NUM!", "Ref": "#REF!", "Value": "#VALUE!", "GettingData": "#GETTING_DATA",
}
_ERROR_DETAIL = re.compile(r"Error\((\w+)\)")


@dataclass
class Sheet:
    frame: pl.DataFrame  # all cells as Utf8, columns c0..cN
    name: str
    first_row: int  # 1-based sheet row of the frame's first row
    cell_errors: dict[tuple[int, int], str]  # (frame row, column) -> "#NAME?"


def is_zip(raw: bytes) -> bool:
    return raw.startswith(_ZIP_MAGIC)


def is_cfb(raw: bytes) -> bool:
    return raw.startswith(_CFB_MAGIC)


def read_sheet(raw: bytes, sheet: str | int | None, max_uncompressed: int) -> Sheet:
    if is_cfb(raw):
        raise FeedError(
            "the workbook is password-protected (or a legacy .xls file); "
            "save it as an unprotected .xlsx"
        )
    if not is_zip(raw):
        raise FeedError("the file is named .xlsx but is not an Excel workbook (not a zip archive)")
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            members = archive.infolist()
            # The sizes in the central directory are what a reader will inflate
            # to; checking them first stops a zip bomb before any inflating.
            total = sum(m.file_size for m in members)
            if total > max_uncompressed:
                raise FeedError(
                    f"the workbook would unpack to {total:,} bytes, over the limit of "
                    f"{max_uncompressed:,} bytes (possible zip bomb)"
                )
            names = {m.filename for m in members}
            if "xl/workbook.xml" not in names:
                raise FeedError("the file is a zip archive but not an Excel workbook (.xlsx)")
            reader = fastexcel.read_excel(raw)
            name = _pick(reader.sheet_names, sheet)
            first_row = _first_row(archive, reader.sheet_names.index(name))
    except zipfile.BadZipFile as exc:
        raise FeedError(f"the workbook is a damaged zip archive ({exc})") from None
    except fastexcel.FastExcelError as exc:
        raise FeedError(f"the workbook cannot be read: {str(exc).splitlines()[0]}") from None
    cells: dict[tuple[int, int], str] = {}
    try:
        loaded = reader.load_sheet(name, header_row=None, dtypes="string")
        # An error cell comes back as null, so a sheet without nulls has
        # none and needs no error records. Those come only through pyarrow,
        # which the common case then never loads: its import is most of a
        # worker's first XLSX beyond the parse (about 0.03 s) and 30 MB.
        frame = loaded.to_polars()
        if frame.width and any(frame.null_count().row(0)):
            batch, errors = loaded.to_arrow_with_errors()
            converted = pl.from_arrow(batch)
            assert isinstance(converted, pl.DataFrame)
            frame = converted
            for err in errors.errors if errors is not None else ():
                found = _ERROR_DETAIL.search(err.detail)
                if found:
                    cells[err.position] = _ERROR_TEXT.get(found.group(1), f"#{found.group(1).upper()}")
    except fastexcel.FastExcelError as exc:
        raise FeedError(f"sheet {name!r} cannot be read: {str(exc).splitlines()[0]}") from None
    frame = frame.rename({c: f"c{i}" for i, c in enumerate(frame.columns)})
    return Sheet(frame, name, first_row, cells)


def _pick(names: list[str], sheet: str | int | None) -> str:
    if sheet is None:
        if not names:
            raise FeedError("the workbook has no sheets")
        return names[0]
    if isinstance(sheet, int):
        if 0 <= sheet < len(names):
            return names[sheet]
    elif sheet in names:
        return sheet
    raise FeedError(f"sheet {sheet!r} not found; the workbook has sheets: {', '.join(map(repr, names))}")


_SHEET_TAG = re.compile(rb"<(?:\w+:)?sheet\b[^>]*?\br:id=\"([^\"]+)\"")
_REL_TAG = re.compile(rb"<(?:\w+:)?Relationship\b[^>]*>")
_ROW = re.compile(rb"<(?:\w+:)?row\b([^>]*?)(?<!/)>(.*?)</(?:\w+:)?row>", re.DOTALL)
_ROW_NUMBER = re.compile(rb"\br=\"(\d+)\"")
_HAS_VALUE = re.compile(rb"<(?:\w+:)?(?:v|is)\b")


def _first_row(archive: zipfile.ZipFile, index: int) -> int:
    """The sheet row calamine's range starts at (it skips leading empty rows).

    fastexcel does not expose the range's origin, but row numbers in errors
    must match what the user sees, so read it from the sheet XML's first row
    holding a value. Any surprise falls back to row 1.
    """
    try:
        ids = _SHEET_TAG.findall(archive.read("xl/workbook.xml"))
        rels = archive.read("xl/_rels/workbook.xml.rels")
        target = None
        for tag in _REL_TAG.findall(rels):
            named = re.search(rb'Target="([^"]+)"', tag)
            if f'Id="{ids[index].decode()}"'.encode() in tag and named is not None:
                target = named.group(1).decode()
        if target is None:
            return 1
        path = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
        with archive.open(path) as handle:
            buffer, counted = b"", 0
            while chunk := handle.read(1 << 20):
                buffer += chunk
                last = 0
                for match in _ROW.finditer(buffer):
                    last = match.end()
                    number = _ROW_NUMBER.search(match.group(1))
                    counted += 1
                    if _HAS_VALUE.search(match.group(2)):
                        return int(number.group(1)) if number else counted
                buffer = buffer[last:]
    except (KeyError, IndexError, AttributeError, ValueError):
        pass
    return 1
