"""Read one sheet of a workbook (.xlsx, .xlsm, .xlsb, .xls, .ods) as text cells, after safety checks.

calamine (through fastexcel) does the reading; every cell comes back as text
so validation is the same as for CSV. Error cells (``#NAME?``) come back as
null plus a cell-error record (read only from sheets with nulls); they are
put back as their display text so a used column reports them and an unused
column is simply ignored. A zip-based workbook is measured first
(``archive.measure``): calamine inflates what the zip declares, and the
declarations are the sender's word.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import fastexcel
import polars as pl

from daemon.errors import FeedError
from daemon.formats import archive as measuring

_ZIP_MAGIC = b"PK\x03\x04"
_CFB_MAGIC = b"\xd0\xcf\x11\xe0"  # OLE compound file: legacy .xls, or an encrypted .xlsx
_ENCRYPTED = "EncryptedPackage".encode("utf-16-le")  # the stream an encrypted OOXML file keeps
_ODS_MIME = b"application/vnd.oasis.opendocument.spreadsheet"
SUFFIXES = (".xlsx", ".xlsm", ".xlsb", ".xls", ".ods")

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
    formulas: dict[tuple[int, int], str] = field(default_factory=dict)  # (frame row, column) -> "=1+1"
    kind: str = ".xlsx"


def is_zip(raw: bytes) -> bool:
    return raw.startswith(_ZIP_MAGIC)


def is_cfb(raw: bytes) -> bool:
    return raw.startswith(_CFB_MAGIC)


def read_sheet(raw: bytes, sheet: str | int | None, max_uncompressed: int,
               max_ratio: float = 100.0, suffix: str = ".xlsx") -> Sheet:
    kind = suffix.lower() if suffix.lower() in SUFFIXES else ".xlsx"
    if is_cfb(raw):
        if _ENCRYPTED in raw:
            raise FeedError("the workbook is password-protected; save it without a password")
        return _read(raw, sheet, ".xls", None)
    if not is_zip(raw):
        raise FeedError(f"the file is named {kind} but is not a spreadsheet (not a zip archive or an .xls file)")
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            kind = _zip_kind(archive, kind)
            located: _SheetXml | _OdsRows | None = (
                _SheetXml(archive) if kind in (".xlsx", ".xlsm") else _OdsRows(archive) if kind == ".ods" else None)
            # The sheets are scanned as they are measured: one inflate for both.
            sinks = located.scanners() if located is not None else {}
            measuring.measure(raw, archive, measuring.Limits(max_uncompressed, max_ratio), sinks)
            return _read(raw, sheet, kind, located)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, ValueError) as exc:
        # zipfile's own refusals of a damaged directory (a version byte
        # flipped is NotImplementedError, for one): the file's fault.
        raise FeedError(f"the workbook is a damaged zip archive ({exc or type(exc).__name__})") from None


def _read(raw: bytes, sheet: str | int | None, kind: str, located: _SheetXml | _OdsRows | None) -> Sheet:
    try:
        reader = fastexcel.read_excel(raw)
        name = _pick(reader.sheet_names, sheet)
    except fastexcel.FastExcelError as exc:
        if located is not None and not located.workbook:
            raise FeedError("the file is a zip archive but not a spreadsheet workbook") from None
        raise FeedError(f"the {kind} file could not be read: {_reason(exc)}") from None
    first_row, first_col, formulas = 1, 0, {}
    if located is not None:
        scan = located.scan(reader.sheet_names.index(name))
        first_row, first_col = scan.first_row, scan.first_col
        formulas = {(r - first_row, c - first_col): f for (r, c), f in scan.formulas.items()
                    if r >= first_row and c >= first_col}
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
        raise FeedError(f"sheet {name!r} of the {kind} file could not be read: {_reason(exc)}") from None
    frame = frame.rename({c: f"c{i}" for i, c in enumerate(frame.columns)})
    return Sheet(frame, name, first_row, cells, formulas, kind)


def _reason(exc: Exception) -> str:
    """calamine's message, without the Rust type names that mean nothing to a warehouse."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = re.sub(r"^(?:calamine error|could not open workbook)[: ]*", "", text, flags=re.IGNORECASE)
    if "cannot detect file format" in text.lower():
        return "its contents are not in any spreadsheet format the reader knows (damaged, or another kind of file)"
    text = text.strip()
    return (text[:200] + "\u2026" if len(text) > 200 else text) or "the reader gave no reason"


def _zip_kind(archive: zipfile.ZipFile, kind: str) -> str:
    names = {_norm(n) for n in archive.namelist()}
    if "mimetype" in names:
        try:
            mimetype = archive.getinfo(_find(archive, "mimetype"))
            # Read before the archive is measured: only a small one.
            if mimetype.file_size < 1024 and archive.read(mimetype).strip().startswith(_ODS_MIME):
                return ".ods"
        except (KeyError, *_UNREADABLE):
            pass  # measure() then says what is wrong with it
    if any(n.endswith("workbook.bin") for n in names):
        return ".xlsb"
    if "content.xml" in names and kind == ".ods":
        return ".ods"
    return kind if kind in (".xlsx", ".xlsm") else ".xlsx"


def _norm(name: str) -> str:
    # Some writers put backslashes in zip paths; calamine reads them as folders.
    return name.replace("\\", "/").lstrip("/")


def _find(archive: zipfile.ZipFile, wanted: str) -> str:
    wanted = _norm(wanted).lower()
    for name in archive.namelist():
        if _norm(name).lower() == wanted:
            return name
    raise KeyError(wanted)


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
_REL_ID = re.compile(rb'\bId="([^"]+)"')
_REL_TAG = re.compile(rb"<(?:\w+:)?Relationship\b[^>]*>")
_TARGET = re.compile(rb'Target="([^"]+)"')
_OFFICE_DOCUMENT = re.compile(rb'Type="[^"]*/officeDocument"')
# The tokens that decide where calamine's range starts: row starts and ends,
# and a value inside a row.
_TOKEN = re.compile(rb"<(/?)(?:\w+:)?(row|v|is)\b([^>]*)>")
_ROW_NUMBER = re.compile(rb"\br=\"(\d+)\"")
_DIMENSION = re.compile(rb"<(?:\w+:)?dimension\b[^>]*\bref=\"\$?([A-Z]+)\$?(\d+)")
# A formula is a cell's first child (OOXML fixes the order: f, v, is).
_FORMULA = re.compile(
    rb"<(?:\w+:)?c\b([^>]*?)(?<!/)>\s*<(?:\w+:)?f\b([^>]*?)(?:/>|>(.*?)</(?:\w+:)?f>)", re.DOTALL)
_CELL_REF = re.compile(rb"\br=\"\$?([A-Z]{1,3})\$?(\d+)\"")
_FORMULA_HINT = re.compile(rb"<(?:\w+:)?f\b")
_CELL_START = re.compile(rb"<(?:\w+:)?c\b")
_MAX_TAIL = 64 * 1024
_MAX_PART = 16 * 1024 * 1024  # the workbook part and its relationships, read before measuring
# What zipfile raises for a member it cannot read.
_UNREADABLE = (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError, ValueError)
_MAX_FORMULAS = 100_000  # enough to name every formula cell of any real feed


@dataclass
class _Scan:
    first_row: int = 1
    first_col: int = 0
    formulas: dict[tuple[int, int], str] = field(default_factory=dict)  # (sheet row, sheet column) -> "=..."


class _SheetXml:
    """The sheet XML parts of an .xlsx, found through the package's relationships."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive
        self.workbook = self._workbook_path()
        self.found: dict[str, _Scan] = {}

    def _small(self, name: str) -> bytes:
        """A package part read before the archive is measured: zipfile stops at
        the declared size, and only a small declared size is read."""
        info = self.archive.getinfo(name)
        if info.file_size > _MAX_PART:
            raise KeyError(name)
        try:
            return self.archive.read(info)
        except _UNREADABLE:
            raise KeyError(name) from None  # measure() then says what is wrong with it

    def scanners(self) -> dict[str, Callable[[bytes], None]]:
        """A consumer of inflated bytes for every sheet part, for ``archive.measure``."""
        sinks: dict[str, Callable[[bytes], None]] = {}
        for path in self._sheet_paths():
            if path is not None and path not in sinks:
                self.found[path] = found = _Scan()
                scanner = _scanner(found)
                next(scanner)
                sinks[path] = scanner.send
        return sinks

    def _workbook_path(self) -> str | None:
        try:
            rels = self._small(_find(self.archive, "_rels/.rels"))
            for tag in _REL_TAG.findall(rels):
                target = _TARGET.search(tag)
                if _OFFICE_DOCUMENT.search(tag) and target is not None:
                    return _find(self.archive, target.group(1).decode())
        except (KeyError, UnicodeDecodeError):
            pass
        try:
            return _find(self.archive, "xl/workbook.xml")
        except KeyError:
            return None

    def _sheet_paths(self) -> list[str | None]:
        """The zip member of each sheet, in the workbook's order (calamine's)."""
        if self.workbook is None:
            return []
        folder = _norm(self.workbook).rpartition("/")[0]
        rels_name = f"{folder}/_rels/{_norm(self.workbook).rpartition('/')[2]}.rels".lstrip("/")
        try:
            ids = _SHEET_TAG.findall(self._small(self.workbook))
            rels = self._small(_find(self.archive, rels_name))
        except (KeyError, UnicodeDecodeError):
            return []
        targets: dict[bytes, str] = {}
        for tag in _REL_TAG.findall(rels):
            target, rel_id = _TARGET.search(tag), _REL_ID.search(tag)
            if target is not None and rel_id is not None:
                path = target.group(1).decode("utf-8", "replace")
                targets[rel_id.group(1)] = path.lstrip("/") if path.startswith("/") else f"{folder}/{path}".lstrip("/")
        paths: list[str | None] = []
        for sheet_id in ids:
            try:
                paths.append(_find(self.archive, targets[sheet_id]))
            except KeyError:
                paths.append(None)
        return paths

    def scan(self, index: int) -> _Scan:
        """Where calamine's range starts (it skips leading empty rows and columns), and the formula cells.

        fastexcel does not expose the range's origin, but row numbers in
        errors must match what the user sees. One streaming pass, linear in
        the sheet's size whatever it holds (500 MB of whitespace included).
        Any surprise falls back to row 1, column A.
        """
        paths = self._sheet_paths()
        path = paths[index] if index < len(paths) else None
        return self.found.get(path, _Scan()) if path is not None else _Scan()


class _OdsRows:
    """Where calamine's range starts in each table of an .ods (it skips leading empty rows).

    Row numbers only: an .ods keeps its formulas in cell attributes, which are
    not looked for (a formula's value is read as the value, as in .xls and .xlsb).
    """

    def __init__(self, archive: zipfile.ZipFile) -> None:
        try:
            self.workbook: str | None = _find(archive, "content.xml")
        except KeyError:
            self.workbook = None
        self.firsts: list[int] = []  # per table, in order: the 1-based row of its first value

    def scanners(self) -> dict[str, Callable[[bytes], None]]:
        if self.workbook is None:
            return {}
        scanner = _ods_scanner(self.firsts)
        next(scanner)
        return {self.workbook: scanner.send}

    def scan(self, index: int) -> _Scan:
        return _Scan(first_row=self.firsts[index] if index < len(self.firsts) else 1)


_ODS_TABLE = b"<table:table "
_ODS_TOKEN = re.compile(rb"<(/?)table:(table-row|table-cell|covered-table-cell|table)(?=[\s/>])([^>]*)>")
_ODS_REPEAT = re.compile(rb'table:number-rows-repeated="(\d+)"')


def _ods_scanner(firsts: list[int]) -> Generator[None, bytes, None]:
    """Fed content.xml chunk by chunk: counts each table's rows (repeats too) up to its first value."""
    tail = b""
    rows, repeat, has_value, looking = 0, 1, False, False
    while True:
        buffer = tail + (yield)
        pos, tail = 0, b""
        while True:
            if not looking:  # between tables, or done with one: jump to the next table
                at = buffer.find(_ODS_TABLE, pos)
                if at < 0:
                    tail = buffer[-len(_ODS_TABLE):]
                    break
                firsts.append(1)
                rows, looking, pos = 0, True, at + len(_ODS_TABLE)
                continue
            token = _ODS_TOKEN.search(buffer, pos)
            if token is None:
                cut = buffer.rfind(b"<", pos)
                tail = buffer[cut:] if cut >= 0 and len(buffer) - cut < _MAX_TAIL else b""
                break
            pos = token.end()
            closing, tag, attrs = token.groups()
            if tag == b"table":
                looking = looking and not closing  # a table without any value: row 1 it is
            elif tag == b"table-row":
                if closing:
                    if has_value:
                        firsts[-1], looking = rows + 1, False
                    else:
                        rows += repeat
                else:
                    repeated = _ODS_REPEAT.search(attrs)
                    repeat, has_value = int(repeated.group(1)) if repeated else 1, False
                    if attrs.endswith(b"/"):
                        rows += repeat
            elif b"office:value-type" in attrs:
                has_value = True


def _scanner(found: _Scan) -> Generator[None, bytes, None]:
    """Fed the sheet's inflated bytes chunk by chunk (``send``), fills in ``found``."""
    row_found = dimension_seen = False
    in_row, row_number, counted = False, 0, 0
    rows_tail = formula_tail = b""
    plain: bool | None = None  # whether the sheet's tags go without a namespace prefix
    while True:
        chunk = yield
        if chunk.find(b"<") < 0:  # memchr: whitespace padding costs next to nothing
            # A tag cut before this chunk goes on after it: the padding was
            # whitespace inside the tag, which one space stands for.
            rows_tail += b" " if rows_tail else b""
            formula_tail += b" " if formula_tail else b""
            continue
        if not dimension_seen:
            dim = _DIMENSION.search(chunk)
            dimension_seen = dim is not None or b"sheetData" in chunk
            if dim is not None:
                found.first_col = _column_index(dim.group(1))
        if not row_found:
            buffer, last = rows_tail + chunk, 0
            for token in _TOKEN.finditer(buffer):
                last = token.end()
                closing, tag, attrs = token.groups()
                if tag == b"row":
                    if closing:
                        in_row = False
                        continue
                    counted += 1
                    number = _ROW_NUMBER.search(attrs)
                    row_number = int(number.group(1)) if number else counted
                    in_row = not attrs.endswith(b"/")
                elif in_row and not closing:
                    found.first_row, row_found = row_number, True
                    break
            # Keep only a tag that the chunk cut in two; whitespace and
            # finished tags are dropped, so each byte is looked at once or twice.
            cut = buffer.rfind(b"<", last)
            rows_tail = buffer[cut:] if cut >= 0 and len(buffer) - cut < _MAX_TAIL else b""
        buffer = formula_tail + chunk
        # A plain find where the sheet has no namespace prefix (nearly always):
        # a regex tried at every '<' of a sheet costs more than the inflate.
        if plain is None and b"sheetData" in buffer:
            plain = b"<sheetData" in buffer
        if (buffer.find(b"<f") < 0) if plain else not _FORMULA_HINT.search(buffer):
            formula_tail = _cell_tail(buffer, 0)
            continue
        last = 0
        for cell in _FORMULA.finditer(buffer):
            last = cell.end()
            ref = _CELL_REF.search(cell.group(1))
            if ref is None or len(found.formulas) >= _MAX_FORMULAS:
                continue
            text = cell.group(3)
            shown = f"={_unescape(text.decode('utf-8', 'replace'))}" if text else "a shared formula"
            found.formulas[(int(ref.group(2)), _column_index(ref.group(1)))] = shown
        formula_tail = _cell_tail(buffer, last)


def _cell_tail(buffer: bytes, after: int) -> bytes:
    """The end of ``buffer`` from the last cell tag on, which the next chunk may finish."""
    starts = [m.start() for m in _CELL_START.finditer(buffer, max(after, len(buffer) - _MAX_TAIL))]
    return buffer[starts[-1]:] if starts else b""


def _column_index(letters: bytes) -> int:
    index = 0
    for letter in letters:
        index = index * 26 + letter - 64
    return index - 1


def _unescape(text: str) -> str:
    return (text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
            .replace("&apos;", "'").replace("&amp;", "&"))
