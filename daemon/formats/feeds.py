"""Parse one quantity feed file (CSV/TSV/XLSX) into validated rows.

This is the public entry of the parser; the apply stage relies on these names.
``parse_feed`` raises ``FeedError`` when the file cannot be used as a whole and
otherwise returns valid rows plus row errors. ``daemon.ingest.contained`` runs
it in a resource-limited worker process, so a misbehaving native reader
cannot take the daemon down.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl

from daemon.errors import FeedError
from daemon.formats import decode as decoding
from daemon.formats import headers as heads
from daemon.formats import layout, validate, xlsx


@dataclass(frozen=True)
class ParseOptions:
    columns: Mapping[str, str] = field(default_factory=dict)  # role -> header as in the file
    sheet: str | int | None = None
    negative: Literal["reject", "clamp", "allow"] = "reject"
    max_quantity: int = 1_000_000
    duplicates: Literal["reject", "last_wins"] = "reject"
    timezone: str = "UTC"
    max_uncompressed_bytes: int = 256 * 1024 * 1024
    max_inflation_ratio: float = 100.0
    max_sku_length: int = 100

    def __post_init__(self) -> None:
        # A plain dict keeps the options picklable for the worker process.
        object.__setattr__(self, "columns", dict(self.columns))


@dataclass(frozen=True)
class RowError:
    row: int | None
    column: str | None
    value: str | None
    message: str
    sku: str | None = None  # the row's SKU as written, when it has one


@dataclass
class ParsedFeed:
    frame: pl.DataFrame
    errors: list[RowError]
    warnings: list[str]
    total_rows: int
    encoding: str | None
    delimiter: str | None
    sheet: str | None
    header: list[str]


def is_workbook(raw: bytes, name: str) -> bool:
    """Whether a feed is read as a workbook (calamine): by its bytes, or by its name."""
    return xlsx.is_zip(raw) or xlsx.is_cfb(raw) or Path(name).suffix.lower() in xlsx.SUFFIXES


def parse_feed(path: Path, options: ParseOptions) -> ParsedFeed:
    raw = Path(path).read_bytes()
    suffix = Path(path).suffix.lower()
    if is_workbook(raw, str(path)):
        if not raw:
            raise FeedError("the file is empty")
        table, source = _read_xlsx(raw, options, suffix)
    else:
        table, source = _read_text(raw, options)
    # Each step drops what the next one does not need, so the file's bytes,
    # the whole table and the checked rows are never in memory all at once.
    del raw
    rows, labels = _used_rows(table, source, options)
    del table
    return _finish(rows, labels, source, options)


def read_columns(path: Path, options: ParseOptions, names: Sequence[str]) -> pl.DataFrame:
    """``row`` (numbered as ``parse_feed`` numbers rows) and the named columns of a text file.

    For a reader that needs more of a file than the four roles (a Shopify
    export's handle and option values), joined onto ``parse_feed``'s rows by
    ``row``. Cells are trimmed, empty is null; headers match as
    ``headers.normalise`` makes them, and one the file lacks gives a null column.
    """
    table, source = _read_text(Path(path).read_bytes(), options)
    index: dict[str, int] = {}
    for i, header in enumerate(source.header):
        index.setdefault(heads.normalise(header), i)
    cells = [(_trimmed(pl.col(table.columns[index[heads.normalise(n)]])) if heads.normalise(n) in index
              else pl.lit(None, pl.Utf8)).alias(n) for n in names]
    first = source.first_row
    return table.select(pl.int_range(first, first + pl.len(), dtype=pl.Int64).alias("row"), *cells)


@dataclass
class _Source:
    """How the file was read; the cells travel separately so they can be freed early."""

    header: list[str]
    first_row: int  # the row number a user sees for the table's first row
    cell_errors: dict[tuple[int, int], str] = field(default_factory=dict)  # (row, column) -> "#N/A"
    formulas: dict[tuple[int, int], str] = field(default_factory=dict)  # (row, column) -> "=1+1"
    formula_errors: list[tuple[int, str | None, str | None, str, str | None]] = field(default_factory=list)
    spare: str | None = None  # the column catching fields beyond the header, if read
    semicolon: bool = False
    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class TextCells:
    """A delimited file's fields as the parser reads them: the header row first, then each
    record, whose row number is ``layout.header_line`` plus its place after the header."""

    table: pl.DataFrame  # every field as text (empty is null), columns c0..cN, then the spare
    spare: str | None  # the column catching a field beyond the header, if any row has one
    layout: layout.Layout
    decoded: decoding.Decoded


def read_text_cells(raw: bytes, options: ParseOptions) -> TextCells:
    """The fields of a delimited feed, untrimmed, numbered as ``parse_feed`` numbers its rows
    (for the quick-fix file, which writes chosen rows back as they were)."""
    decoded = decoding.decode(raw)
    if not decoded.data or decoded.data.isspace():  # not .strip(): that copies the whole file
        raise FeedError("the file is empty")
    heads.check_mapping(options.columns)
    found = layout.find_layout(decoded.data, options.columns)
    table, spare = _read_delimited(decoded.data[found.header_offset:], found.delimiter, found.width)
    return TextCells(table, spare, found, decoded)


def _read_text(raw: bytes, options: ParseOptions) -> tuple[pl.DataFrame, _Source]:
    cells = read_text_cells(raw, options)
    table, found, decoded = cells.table, cells.layout, cells.decoded
    header = _header(table.row(0) if table.height else ())
    return table.slice(1), _Source(
        header, found.header_line + 1, spare=cells.spare, semicolon=found.delimiter == ";",
        encoding=decoded.encoding, delimiter=found.delimiter, warnings=decoded.warnings,
    )


def _read_delimited(data: bytes, delimiter: str, width: int) -> tuple[pl.DataFrame, str | None]:
    """All fields as text, the header row first; also the spare column's name, if any.

    A row longer than the header must become a row error, so the fields
    beyond the header need catching. Most files have no such row, and a
    spare column costs a full text column, so first read strictly (polars
    then refuses a longer row) and only on refusal read again with one
    spare column that catches the first field beyond the header.
    """
    def read(columns: int, ragged: bool) -> pl.DataFrame:
        return pl.read_csv(
            data, has_header=False, separator=delimiter, quote_char='"',
            schema={f"c{i}": pl.Utf8 for i in range(columns)},
            missing_columns="insert", truncate_ragged_lines=ragged, raise_if_empty=False,
        )

    try:
        return read(width, ragged=False), None
    except pl.exceptions.PolarsError:
        pass  # a longer row, or a file polars cannot read at all: the second read tells
    try:
        table = read(width + 1, ragged=True)
    except pl.exceptions.PolarsError as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        # polars quotes the field it choked on, which may be megabytes long.
        raise FeedError(f"the file cannot be read as delimited text: {shorten(detail)}") from None
    return table, table.columns[-1]


def xlsx_header(raw: bytes, options: ParseOptions, suffix: str = ".xlsx") -> tuple[str, int]:
    """The sheet a workbook feed is read from and the sheet row of its header, as
    ``parse_feed`` finds them: its row errors name the sheet rows after it."""
    _, source = _read_xlsx(raw, options, suffix)
    assert source.sheet is not None
    return source.sheet, source.first_row - 1


def _read_xlsx(raw: bytes, options: ParseOptions, suffix: str = ".xlsx") -> tuple[pl.DataFrame, _Source]:
    heads.check_mapping(options.columns)
    sheet = xlsx.read_sheet(raw, options.sheet, options.max_uncompressed_bytes,
                            options.max_inflation_ratio, suffix)
    frame = sheet.frame
    # Preamble rows are allowed in sheets too: the header is the first row
    # (among the first 200) that names a SKU column.
    probe = frame.head(200).rows()
    index = next((i for i, cells in enumerate(probe)
                  if heads.looks_like_header([c or "" for c in cells], options.columns)[0]), None)
    if index is None:
        if not probe:
            raise FeedError(f"sheet {sheet.name!r} is empty")
        raise FeedError(
            f"no header row with a SKU column was found in sheet {sheet.name!r}; "
            f"first row: {heads.show_fields(probe[0])}; "
            f"accepted SKU names: {', '.join(heads.ALIASES['sku'])}"
        )
    errors = {(r - index - 1, c): text for (r, c), text in sheet.cell_errors.items() if r > index}
    formulas = {(r - index - 1, c): text for (r, c), text in sheet.formulas.items() if r > index}
    source = _Source(_header(probe[index]), sheet.first_row + index + 1, errors, sheet=sheet.name,
                     formulas=formulas)
    return frame.slice(index + 1), source


def _header(cells: tuple[str | None, ...] | list[str | None]) -> list[str]:
    header = [(c or "").strip() for c in cells]
    while header and not header[-1]:
        header.pop()  # trailing empty columns are layout noise, not headers
    return header


# Equal to ``str.to_lowercase() == "not stocked"`` without a lowercased copy
# of the column: the Kelvin sign is the one non-ASCII letter that lowercases
# to an ASCII one.
_NOT_STOCKED = "^[Nn][Oo][Tt] [Ss][Tt][Oo][Cc][Kk\u212a][Ee][Dd]$"
_BLANK = r"^\s*$"  # regex \s and strip_chars() agree on what whitespace is (Unicode White_Space)


def _used_rows(
    table: pl.DataFrame, source: _Source, options: ParseOptions,
) -> tuple[pl.DataFrame, dict[str, str | None]]:
    """The used columns as trimmed text (empty is null) with row numbers, in one pass.

    Also returns the header of each used role as the file spells it.
    """
    used = dict(heads.resolve(source.header, options.columns).items())
    names = table.columns
    # Put error cells back as their display text, only where they matter.
    for (r, c), shown in source.cell_errors.items():
        if c in used.values() and 0 <= r < table.height:
            table[r, names[c]] = shown
    # A formula's cached value is whatever the sheet last computed (=1+1 is
    # SKU "2"): a row error, never a SKU or a stock level.
    checked_roles = {used[role]: role for role in ("sku", "quantity") if role in used}
    source.formula_errors = [
        (source.first_row + r, source.header[c], formula,
         (f"the {'SKU' if checked_roles[c] == 'sku' else 'quantity'} cell holds a formula ({formula}), "
          f"not a value; paste the column as values"),
         table[r, names[used['sku']]] if "sku" in used else None)
        for (r, c), formula in sorted(source.formulas.items())
        if c in checked_roles and 0 <= r < table.height
    ]
    spare = source.spare
    # Most files need no trimming: a column that needs none passes through
    # as it is, where a trimmed copy would cost a new column.
    texts = [names[i] for i in sorted(set(used.values()))] + ([spare] if spare is not None else [])
    dirty = table.lazy().select(_needs_trim(pl.col(n)).alias(n) for n in texts).collect()

    def text(name: str) -> pl.Expr:
        return _trimmed(pl.col(name)) if dirty.item(0, name) else pl.col(name)

    roles = [(text(names[used[role]]) if role in used else pl.lit(None, pl.Utf8)).alias(role)
             for role in heads.ROLES]
    extra = text(spare) if spare is not None else pl.lit(None, pl.Utf8)
    # A row is blank when every cell is, unused columns included: a note in
    # an unused column makes the row an error (no SKU), not nothing. Blank
    # rows are dropped wherever they are, which keeps the row numbers of the
    # rows after them intact.
    others = [n for i, n in enumerate(names) if i not in used.values() and n != spare]
    blank = [pl.col(role).is_null() for role in used] + [pl.col("_extra").is_null()]
    blank += [pl.col(n).is_null() | pl.col(n).str.contains(_BLANK) for n in others]
    # Shopify's "Not stocked" means the item is not kept at that location: no row either.
    stocked = ~pl.col("quantity").str.contains(_NOT_STOCKED).fill_null(False)
    first = source.first_row
    rows = table.lazy().with_columns(
        pl.int_range(first, first + pl.len(), dtype=pl.Int64).alias("row"),
        *roles, extra.cast(pl.Utf8).alias("_extra"),
    ).filter(~pl.all_horizontal(blank) & stocked).select("row", *heads.ROLES, "_extra").collect()
    return rows, {role: source.header[idx] for role, idx in used.items()}


def _trimmed(cell: pl.Expr) -> pl.Expr:
    trimmed = cell.str.strip_chars()
    return pl.when(trimmed != "").then(trimmed)


def _needs_trim(cell: pl.Expr) -> pl.Expr:
    """Whether ``_trimmed`` would change any cell of the column."""
    return ((cell.str.strip_chars() != cell) | (cell == "")).any()


# A row error repeats the cell it is about; a 50 MB "SKU" must not become a
# 50 MB history row, result file line and mail. The message says how long it was.
MAX_SHOWN_VALUE = 1000


def shorten(text: str | None, limit: int = 200) -> str | None:
    """``text``, or its start and how long it was when it is longer than ``limit``."""
    if text is None or len(text) <= limit:
        return text
    return f"{text[:limit]}\u2026 ({len(text):,} characters)"


def _finish(
    rows: pl.DataFrame, labels: dict[str, str | None], source: _Source, options: ParseOptions,
) -> ParsedFeed:
    rules = validate.Rules(options.negative, options.max_quantity, options.duplicates,
                           options.timezone, source.semicolon, options.max_sku_length)
    checked = validate.check(rows, labels, rules)
    frame, errors = checked.frame, checked.errors
    # Only rows that count: a formula left empty in an otherwise blank row is a blank row.
    counted = set(rows.get_column("row").to_list()) if source.formula_errors else set()
    formula_errors = [e for e in source.formula_errors if e[0] in counted]
    if formula_errors:
        rejected = {e[0] for e in formula_errors}
        frame = frame.filter(~pl.col("row").is_in(sorted(rejected)))
        # sorted() is stable: within a row, the formula's error comes after the others.
        errors = sorted(errors + formula_errors, key=lambda e: e[0])
    return ParsedFeed(
        frame=frame,
        errors=[RowError(r, c, shorten(v, MAX_SHOWN_VALUE), m, shorten(k, MAX_SHOWN_VALUE))
                for r, c, v, m, k in errors],
        warnings=source.warnings + checked.warnings, total_rows=checked.total_rows,
        encoding=source.encoding, delimiter=source.delimiter, sheet=source.sheet, header=source.header,
    )
