"""Find the header row and the delimiter of a delimited text feed.

Producers put things before the header (eBay ``#INFO`` rows, report titles),
so the header is the first line that names a SKU column under one of the
candidate delimiters. Only the first lines are looked at; the body is left to
polars.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass

from daemon.errors import FeedError
from daemon.formats.headers import ALIASES, looks_like_header

DELIMITERS = (",", ";", "\t", "|")
_MAX_PREAMBLE_LINES = 200
_MAX_SCAN_BYTES = 256 * 1024


@dataclass(frozen=True)
class Layout:
    delimiter: str
    header_offset: int  # byte offset of the header line in the UTF-8 data
    header_line: int  # 1-based line number of the header, as an editor shows it
    width: int  # fields in the header line, trailing empty ones included


def _split(line: str, delimiter: str) -> list[str]:
    # The csv module honours quotes, so "Custom label (SKU)" and quoted
    # headers containing the delimiter split the way polars will split them.
    return next(csv.reader([line], delimiter=delimiter), [])


def find_layout(data: bytes, mapping: Mapping[str, str]) -> Layout:
    offset = 0
    first_fields: list[str] | None = None
    for number in range(1, _MAX_PREAMBLE_LINES + 1):
        if offset >= len(data) or offset > _MAX_SCAN_BYTES:
            break
        end = data.find(b"\n", offset)
        end = len(data) if end < 0 else end
        line = data[offset:end].decode("utf-8", errors="replace").rstrip("\r")
        best: tuple[int, int, str, list[str]] | None = None
        for delimiter in DELIMITERS:
            fields = _split(line, delimiter)
            has_sku, has_qty = looks_like_header(fields, mapping)
            if has_sku:
                # A delimiter that also finds the quantity column beats one
                # that does not; then the one that splits into more fields.
                rank = (int(has_qty), len(fields))
                if best is None or rank > best[:2]:
                    best = (*rank, delimiter, fields)
        if best is not None:
            return Layout(best[2], offset, number, len(best[3]))
        if first_fields is None and line.strip() and not line.startswith("#"):
            first_fields = max((_split(line, d) for d in DELIMITERS), key=len)
        offset = end + 1
    shown = ", ".join(repr(f) for f in first_fields if f.strip()) if first_fields else "(none)"
    accepted = [mapping["sku"]] if "sku" in mapping else list(ALIASES["sku"])
    raise FeedError(
        f"no header row with a SKU column was found; headers found: {shown}; "
        f"accepted SKU names: {', '.join(accepted)}"
    )
