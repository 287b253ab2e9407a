"""The result file a sender downloads from ``results/``: what happened to each row.

Columns: row, sku, quantity, outcome, error. The first line after the header
is the file's own outcome (row empty). Written under a temporary name and
renamed, so a client never downloads half a result.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from daemon.formats.cells import escape_text_columns
from daemon.inventory.feed import FeedPlan


class ErrorLike(Protocol):
    """One row error of the upload, as the history keeps it."""

    @property
    def row(self) -> int | None: ...
    @property
    def column(self) -> str | None: ...
    @property
    def value(self) -> str | None: ...
    @property
    def sku(self) -> str | None: ...
    @property
    def message(self) -> str: ...

SCHEMA = pl.Schema({"row": pl.Int64(), "sku": pl.Utf8(), "quantity": pl.Int64(), "outcome": pl.Utf8(),
                    "error": pl.Utf8()})


def result_name(spool_name: str) -> str:
    return f"{spool_name}.result.csv"


def _row_outcomes(status: str, frames: tuple[Any, list[tuple[Any, FeedPlan]]],
                  ) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """A line per valid row, in the file's order, and the zeroed SKUs of each plan."""
    parsed, plans = frames
    valid = parsed.frame.select("row", "sku", "quantity")
    if status in ("held", "rejected"):
        return valid.with_columns(pl.lit(f"not applied ({status})").alias("outcome"),
                                  pl.lit(None, pl.Utf8).alias("error")), []
    outcome = _outcome(valid.get_column("row"), [plan for _, plan in plans])
    rows = valid.with_columns(outcome.alias("outcome"), pl.lit(None, pl.Utf8).alias("error"))
    zeroed = [
        plan.writes.filter(pl.col("zeroed")).select(
            pl.lit(None, pl.Int64).alias("row"), "sku", pl.col("after").alias("quantity"),
            pl.lit("zeroed (absent from a full feed)").alias("outcome"),
            pl.lit(None, pl.Utf8).alias("error"))
        for _, plan in plans
    ]
    return rows, zeroed


def _outcome(numbers: pl.Series, plans: list[FeedPlan]) -> pl.Expr:
    """applied, stale or unchanged for each valid row, by its number.

    A row number is in at most one plan, at most once (a file's rows are
    split by location), so looking it up among the applied and the stale
    ones says what a join on row would.
    """
    if len(plans) == 1 and not numbers.has_nulls():
        writes = plans[0].writes.head(numbers.len())
        if writes.get_column("row").equals(numbers):
            # Every row is written, in the file's order (a first load, or a
            # feed newer than the store): ``changed`` says it, no lookup.
            return (pl.when(writes.get_column("changed")).then(pl.lit("applied"))
                    .otherwise(pl.lit("unchanged")))
    applied = [plan.writes.get_column("row").filter(plan.writes.get_column("changed")).drop_nulls()
               for plan in plans]
    stale = [plan.stale.get_column("row") for plan in plans]
    return (pl.when(_among(applied)).then(pl.lit("applied"))
            .when(_among(stale)).then(pl.lit("stale"))
            .otherwise(pl.lit("unchanged")))


def _among(parts: list[pl.Series]) -> pl.Expr:
    """Whether a row's number is in one of ``parts``."""
    found = [part for part in parts if not part.is_empty()]
    return pl.col("row").is_in(pl.concat(found).implode()) if found else pl.lit(False)


def _in_row_order(head: pl.DataFrame, rows: pl.DataFrame | None, zeroed: list[pl.DataFrame],
                  errors: pl.DataFrame) -> pl.DataFrame:
    """head, rows, zeroed and errors, by row number (nulls first), ties in that order."""
    if errors.is_empty() and (rows is None or rows.get_column("row").is_sorted()):
        # Nothing to interleave (the usual case): the row-less lines lead and
        # the rows are in order already. Sorting a million rows would cost
        # more than writing them, and its copy is the apply's memory peak.
        parts = [head, *zeroed, *([rows] if rows is not None else [])]
        return pl.concat([part.cast(SCHEMA) for part in parts])
    parts = [head, *([rows] if rows is not None else []), *zeroed, errors]
    return (pl.concat([part.cast(SCHEMA) for part in parts])
            .sort("row", nulls_last=False, maintain_order=True))


def write_result(results_dir: Path, spool_name: str, status: str, message: str | None,
                 errors: Sequence[ErrorLike],
                 frames: tuple[Any, list[tuple[Any, FeedPlan]]] | None) -> Path:
    """The result file of one upload. ``frames`` (a feed's rows as read, and
    each source's plan) adds a line per row; without it, only the errors."""
    head = pl.DataFrame([{"row": None, "sku": None, "quantity": None, "outcome": status,
                          "error": message}], schema=SCHEMA)
    err = pl.DataFrame(
        [{"row": e.row, "sku": e.sku, "quantity": None,
          "outcome": "stale" if e.message.startswith("skipped:") else "error",
          "error": (f"{e.column}: {e.value!r}: {e.message}" if e.column else e.message)}
         for e in errors], schema=SCHEMA)
    rows, zeroed = _row_outcomes(status, frames) if frames is not None else (None, [])
    table = _in_row_order(head, rows, zeroed, err.filter(pl.col("outcome") == "error"))
    # Text cells that a spreadsheet would run as formulas are escaped.
    table = escape_text_columns(table, "sku", "error")
    results_dir.mkdir(parents=True, exist_ok=True)
    final = results_dir / result_name(spool_name)
    tmp = results_dir / f".{final.name}.tmp"
    table.write_csv(tmp)
    os.replace(tmp, final)
    return final
