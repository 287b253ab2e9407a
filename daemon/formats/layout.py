"""Find the header row and the delimiter of a delimited text file.

Producers put things before the header (eBay ``#INFO`` rows, report titles),
so the header is the first line that a reader accepts under one of the
candidate delimiters. Only the first lines are looked at; the body is left to
polars (feeds) or the csv module (orders). Feeds and order files both find
their header here, with the same limits.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from daemon.errors import FeedError
from daemon.formats.headers import ALIASES, looks_like_header, show_fields

DELIMITERS = (",", ";", "\t", "|")
MAX_PREAMBLE_LINES = 200
_MAX_SCAN_BYTES = 256 * 1024
# No header of any producer comes near these; a file past them is something
# else named .csv (a log, a dump, a JSON blob), and saying so beats a reader's
# "field larger than field limit".
MAX_LINE_BYTES = 1024 * 1024
MAX_COLUMNS = 1000

# How well a line's fields make a header: None when they do not, else a
# rank (higher is better) that picks between delimiters.
Rank = Callable[[list[str]], int | None]


@dataclass(frozen=True)
class Layout:
    delimiter: str
    header_offset: int  # byte offset of the header line in the UTF-8 data
    header_line: int  # 1-based line number of the header, as an editor shows it
    width: int  # fields in the header line, trailing empty ones included


def split(line: str, delimiter: str) -> list[str]:
    # The csv module honours quotes, so "Custom label (SKU)" and quoted
    # headers containing the delimiter split the way the body will be split.
    if delimiter not in line and '"' not in line:
        return [line] if line else []  # one field, without csv's limit on a field's length
    try:
        return next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        return [line]  # a quote it cannot close: one field, which names no header


def _size(n: int) -> str:
    mb = n / 1_000_000  # as a file manager shows sizes
    return f"{mb:,.0f} MB" if mb >= 10 else f"{mb:,.1f} MB"


def _not_csv(number: int, data: bytes, offset: int, end: int) -> None:
    """Refuse a line no feed has: too long, or too many fields."""
    length = end - offset
    if length > MAX_LINE_BYTES:
        cut = " without a line break" if end >= len(data) else ""
        raise FeedError(f"line {number} is {_size(length)} long{cut}: this is not a CSV feed")


def find_header(data: bytes, rank: Rank, missing: Callable[[str], str]) -> Layout:
    """The first line ``rank`` accepts, with the delimiter it ranks best.

    Ties between delimiters go to the one that splits into more fields.
    ``missing`` turns the fields of the first line that looked like content
    into the ``FeedError`` message when no line is accepted.
    """
    offset = 0
    first_fields: list[str] | None = None
    for number in range(1, MAX_PREAMBLE_LINES + 1):
        if offset >= len(data) or offset > _MAX_SCAN_BYTES:
            break
        end = data.find(b"\n", offset)
        end = len(data) if end < 0 else end
        _not_csv(number, data, offset, end)
        line = data[offset:end].decode("utf-8", errors="replace").rstrip("\r")
        best: tuple[int, int, str] | None = None
        for delimiter in DELIMITERS:
            fields = split(line, delimiter)
            if len(fields) > MAX_COLUMNS:
                raise FeedError(f"line {number} has {len(fields):,} fields (at most {MAX_COLUMNS:,} are read): "
                                f"this is not a CSV feed")
            score = rank(fields)
            if score is not None and (best is None or (score, len(fields)) > best[:2]):
                best = (score, len(fields), delimiter)
        if best is not None:
            return Layout(best[2], offset, number, best[1])
        if first_fields is None and line.strip() and not line.startswith("#"):
            first_fields = max((split(line, d) for d in DELIMITERS), key=len)
        offset = end + 1
    shown = show_fields(first_fields) if first_fields else "(none)"
    raise FeedError(missing(shown))


def find_layout(data: bytes, mapping: Mapping[str, str]) -> Layout:
    """A quantity feed's header: a SKU column, better with a quantity column too."""

    def rank(fields: list[str]) -> int | None:
        has_sku, has_qty = looks_like_header(fields, mapping)
        return int(has_qty) if has_sku else None

    accepted = [mapping["sku"]] if "sku" in mapping else list(ALIASES["sku"])
    return find_header(data, rank, lambda shown: (
        f"no header row with a SKU column was found; headers found: {shown}; "
        f"accepted SKU names: {', '.join(accepted)}"))
