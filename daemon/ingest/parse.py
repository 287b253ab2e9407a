"""Parse one quantity feed file (CSV/TSV/XLSX) into validated rows.

This is the public entry of the parser; the apply stage relies on these names.
``parse_feed`` raises ``FeedError`` when the file cannot be used as a whole and
otherwise returns valid rows plus row errors; ``parse_contained`` runs the same
in a resource-limited worker process so a misbehaving native reader cannot
take the daemon down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl

from daemon.errors import FeedError
from daemon.ingest import decode as decoding
from daemon.ingest import headers as heads
from daemon.ingest import layout, validate, xlsx


@dataclass(frozen=True)
class ParseOptions:
    columns: Mapping[str, str] = field(default_factory=dict)  # role -> header as in the file
    sheet: str | int | None = None
    negative: Literal["reject", "clamp", "allow"] = "reject"
    max_quantity: int = 1_000_000
    duplicates: Literal["reject", "last_wins"] = "reject"
    timezone: str = "UTC"
    max_uncompressed_bytes: int = 256 * 1024 * 1024

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


_XLSX_SUFFIXES = {".xlsx", ".xlsm"}


def parse_feed(path: Path, options: ParseOptions) -> ParsedFeed:
    raw = Path(path).read_bytes()
    if xlsx.is_zip(raw) or xlsx.is_cfb(raw) or Path(path).suffix.lower() in _XLSX_SUFFIXES:
        if not raw:
            raise FeedError("the file is empty")
        return _parse_xlsx(raw, options)
    return _parse_text(raw, options)


def parse_contained(
    path: Path, options: ParseOptions, *, timeout_s: float = 120, memory_bytes: int = 2 * 1024**3
) -> ParsedFeed:
    from daemon.ingest import contained  # the worker imports this module; avoid a cycle

    return contained.default_pool().parse(path, options, timeout_s=timeout_s, memory_bytes=memory_bytes)


def _parse_text(raw: bytes, options: ParseOptions) -> ParsedFeed:
    decoded = decoding.decode(raw)
    if not decoded.data.strip():
        raise FeedError("the file is empty")
    heads.check_mapping(options.columns)
    found = layout.find_layout(decoded.data, options.columns)
    width = found.width + 1  # one spare column catches rows longer than the header
    try:
        table = pl.read_csv(
            decoded.data[found.header_offset:], has_header=False, separator=found.delimiter,
            quote_char='"', schema={f"c{i}": pl.Utf8 for i in range(width)},
            missing_columns="insert", truncate_ragged_lines=True, raise_if_empty=False,
        )
    except pl.exceptions.PolarsError as exc:
        raise FeedError(f"the file cannot be read as delimited text: {str(exc).splitlines()[0]}") from None
    header = _header(table.row(0) if table.height else ())
    table = table.slice(1)
    first_row = found.header_line + 1
    feed = _finish(table, header, first_row, {}, options, semicolon=found.delimiter == ";",
                   spare=table.columns[-1])
    feed.encoding, feed.delimiter = decoded.encoding, found.delimiter
    feed.warnings[:0] = decoded.warnings
    return feed


def _parse_xlsx(raw: bytes, options: ParseOptions) -> ParsedFeed:
    heads.check_mapping(options.columns)
    sheet = xlsx.read_sheet(raw, options.sheet, options.max_uncompressed_bytes)
    frame = sheet.frame
    # Preamble rows are allowed in sheets too: the header is the first row
    # (among the first 200) that names a SKU column.
    probe = frame.head(200).rows()
    for index, cells in enumerate(probe):
        if heads.looks_like_header([c or "" for c in cells], options.columns)[0]:
            break
    else:
        if not probe:
            raise FeedError(f"sheet {sheet.name!r} is empty")
        raise FeedError(
            f"no header row with a SKU column was found in sheet {sheet.name!r}; "
            f"first row: {', '.join(repr(c) for c in probe[0] if c)}; "
            f"accepted SKU names: {', '.join(heads.ALIASES['sku'])}"
        )
    header = _header(probe[index])
    errors = {(r - index - 1, c): text for (r, c), text in sheet.cell_errors.items() if r > index}
    feed = _finish(frame.slice(index + 1), header, sheet.first_row + index + 1, errors, options, semicolon=False)
    feed.sheet = sheet.name
    return feed


def _header(cells: tuple[str | None, ...] | list[str | None]) -> list[str]:
    header = [(c or "").strip() for c in cells]
    while header and not header[-1]:
        header.pop()  # trailing empty columns are layout noise, not headers
    return header


def _finish(
    table: pl.DataFrame, header: list[str], first_row: int,
    cell_errors: dict[tuple[int, int], str], options: ParseOptions, *, semicolon: bool,
    spare: str | None = None,
) -> ParsedFeed:
    columns = heads.resolve(header, options.columns)
    names = table.columns
    used = dict(columns.items())
    # Put error cells back as their display text, only where they matter.
    for (r, c), text in cell_errors.items():
        if c in used.values() and 0 <= r < table.height:
            table[r, names[c]] = text
    extra = pl.col(spare) if spare is not None else pl.lit(None, pl.Utf8)
    blank = pl.all_horizontal((pl.col(n).is_null() | (pl.col(n).str.strip_chars() == "")) for n in names)
    raw = table.select(
        pl.int_range(first_row, first_row + pl.len(), dtype=pl.Int64).alias("row"),
        *[(pl.col(names[used[role]]) if role in used else pl.lit(None, pl.Utf8)).alias(role)
          for role in heads.ROLES],
        extra.cast(pl.Utf8).alias("_extra"),
        blank.alias("_blank"),
    )
    # Trailing empty rows are dropped by _blank; so are ones in the middle,
    # which keeps the row numbers of the rows after them intact.
    rules = validate.Rules(options.negative, options.max_quantity, options.duplicates,
                           options.timezone, semicolon)
    labels: dict[str, str | None] = {role: header[idx] for role, idx in used.items()}
    checked = validate.check(raw, labels, rules)
    return ParsedFeed(
        frame=checked.frame,
        errors=[RowError(*e) for e in checked.errors],
        warnings=checked.warnings, total_rows=checked.total_rows,
        encoding=None, delimiter=None, sheet=None, header=header,
    )
