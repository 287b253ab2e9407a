"""The market feed writers: one module per format, one line each in ``FORMATS``.

A writer turns the lines of an export (a polars frame with at least ``sku``
(Utf8) and ``quantity`` (Int64), in the order they are to be written) into
the bytes of one file. SKUs are written exactly as stored (leading zeros,
dots, dashes), the generic csv's formula escape aside (see ``csv``). Writers
are pure: no I/O, no clock. Output is UTF-8, and every format ends its lines
in "\n", CSV included: one rule for all of them.

A writer that needs more of each listing than its SKU names it in
``listing_data`` (kinds of ``db.listing_details``): the lines then carry one
more column per kind, fetched only for such formats.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import polars as pl


class Writer(Protocol):
    def __call__(self, lines: pl.DataFrame, options: Mapping[str, str]) -> bytes: ...


@dataclass(frozen=True)
class Format:
    name: str
    extension: str  # without the dot: "txt", "csv", "json"
    write: Writer
    description: str
    listing_data: tuple[str, ...] = ()  # e.g. ("locations",): extra columns the lines must carry


def csv_bytes(frame: pl.DataFrame, *, separator: str = ",") -> bytes:
    """``frame`` as CSV, header first, lines ending in "\n", fields quoted only where needed.

    Written into a buffer: ``write_csv()`` to a str and then ``encode()``
    copies a million-line feed twice more (a third of the writer's time).
    """
    buf = io.BytesIO()
    frame.write_csv(buf, separator=separator, line_terminator="\n", quote_style="necessary")
    return buf.getvalue()


FORMATS: dict[str, Format] = {}  # filled below, one line per format

# At the bottom because each format module imports ``Format`` from here.
from daemon.export.formats import amazon, csv, ebay, shopify, walmart

FORMATS.update((f.name, f) for f in (
    csv.FORMAT,
    amazon.PRICE_QUANTITY,
    amazon.INVENTORY_LOADER,
    ebay.FORMAT,
    walmart.FORMAT,
    shopify.FORMAT,
))
