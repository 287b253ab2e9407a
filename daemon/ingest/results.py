"""The result file a sender downloads from ``results/``: what happened to each row.

Columns: row, sku, quantity, outcome, error. The first line after the header
is the file's own outcome (row empty). Written under a temporary name and
renamed, so a client never downloads half a result.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from daemon.cells import escape_cell

if TYPE_CHECKING:
    from daemon.db.uploads import ErrorRow, HistoryRow

SCHEMA = {"row": pl.Int64, "sku": pl.Utf8, "quantity": pl.Int64, "outcome": pl.Utf8, "error": pl.Utf8}


def result_name(spool_name: str) -> str:
    return f"{spool_name}.result.csv"


def _row_outcomes(status: str, frames: object) -> pl.DataFrame:
    parsed, plans = frames  # type: ignore[misc]
    valid = parsed.frame.select("row", "sku", "quantity")
    if status in ("held", "rejected"):
        return valid.with_columns(pl.lit(f"not applied ({status})").alias("outcome"),
                                  pl.lit(None, pl.Utf8).alias("error"))
    parts = []
    for _, plan in plans:
        w = plan.writes
        parts.append(w.filter(pl.col("row").is_not_null()).select(
            "row", pl.when(pl.col("changed")).then(pl.lit("applied")).otherwise(pl.lit("unchanged"))
            .alias("outcome")))
        parts.append(plan.stale.select("row", pl.lit("stale").alias("outcome")))
    marked = pl.concat(parts) if parts else pl.DataFrame(schema={"row": pl.Int64, "outcome": pl.Utf8})
    rows = valid.join(marked, on="row", how="left").with_columns(
        pl.col("outcome").fill_null("unchanged"), pl.lit(None, pl.Utf8).alias("error"))
    zeroed = [
        plan.writes.filter(pl.col("zeroed")).select(
            pl.lit(None, pl.Int64).alias("row"), "sku", pl.col("after").alias("quantity"),
            pl.lit("zeroed (absent from a full feed)").alias("outcome"),
            pl.lit(None, pl.Utf8).alias("error"))
        for _, plan in plans
    ]
    return pl.concat([rows, *zeroed], how="vertical_relaxed")


def write_result(results_dir: Path, spool_name: str, history: HistoryRow,
                 errors: Sequence[ErrorRow], frames: object | None) -> Path:
    head = pl.DataFrame([{"row": None, "sku": None, "quantity": None, "outcome": history.status,
                          "error": history.message}], schema=SCHEMA)
    err = pl.DataFrame(
        [{"row": e.row, "sku": e.sku, "quantity": None,
          "outcome": "stale" if e.message.startswith("skipped:") else "error",
          "error": (f"{e.column}: {e.value!r}: {e.message}" if e.column else e.message)}
         for e in errors], schema=SCHEMA)
    parts = [head]
    if frames is not None:
        parts.append(_row_outcomes(history.status, frames).cast(SCHEMA))  # type: ignore[arg-type]
    parts.append(err.filter(pl.col("outcome") == "error"))
    table = pl.concat(parts, how="vertical_relaxed").sort("row", nulls_last=False, maintain_order=True)
    # Text cells that a spreadsheet would run as formulas are escaped.
    needs_escape = pl.col("sku").str.contains(r"^[=+\-@\t\r]")
    table = table.with_columns(
        pl.when(needs_escape).then(pl.lit("'") + pl.col("sku")).otherwise(pl.col("sku")).alias("sku"),
        pl.col("error").map_elements(escape_cell, return_dtype=pl.Utf8),
    )
    results_dir.mkdir(parents=True, exist_ok=True)
    final = results_dir / result_name(spool_name)
    tmp = results_dir / f".{final.name}.tmp"
    table.write_csv(tmp)
    os.replace(tmp, final)
    return final
