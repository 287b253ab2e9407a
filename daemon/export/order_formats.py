"""The order file writers for warehouses: one line each in ``ORDER_FORMATS``.

A writer turns the lines due to a warehouse (a polars frame with
``ORDER_COLUMNS``, in the order they are to be written) into the bytes of
one file. Pure, as the market writers are. The generic CSV is the market
csv writer (``formats.csv``: its delimiter and formula escape) over the
order columns, all of them unless ``columns`` names fewer.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from daemon.export.formats import Format
from daemon.export.formats import csv as csv_format

# What a warehouse needs to pick and ship a line, and to answer for it
# (its status file names the order id, and the market where two share one).
ORDER_COLUMNS = ("order_id", "line_id", "market", "sku", "quantity", "ordered_at")
SCHEMA = pl.Schema({"order_id": pl.Utf8(), "line_id": pl.Utf8(), "market": pl.Utf8(), "sku": pl.Utf8(),
                    "quantity": pl.Int64(), "ordered_at": pl.Utf8()})


def write_csv(lines: pl.DataFrame, options: Mapping[str, str]) -> bytes:
    return csv_format.write(lines, {"columns": ",".join(ORDER_COLUMNS), **options})


ORDER_FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("csv", "csv", write_csv, "Generic CSV: order_id, line_id, market, sku, quantity, ordered_at"),
)}
