"""What a quantity feed means for one source's stock. Pure: frames in, a plan out.

Feeds can hold a million rows, so the rules are written as polars expressions
over whole columns rather than a Python loop per row; ``stock.set_quantity``
states the same rules for one row and the tests hold the two to each other.

The plan says, for every SKU the feed touches, what the quantity was, what it
becomes and from which as-of time; which rows were stale (older than what is
stored) or wrong; and whether a full feed must be held for a person to approve.
Writing the plan is the database layer's job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import polars as pl

from daemon.inventory.skus import DECIMAL_ZERO
from daemon.inventory.stock import MAX_QUANTITY

ROWS_SCHEMA = pl.Schema({"row": pl.Int64(), "sku": pl.Utf8(), "quantity": pl.Int64(),
                         "as_of": pl.Datetime("us", "UTC")})
CURRENT_SCHEMA = pl.Schema({"sku": pl.Utf8(), "quantity": pl.Int64(), "as_of": pl.Datetime("us", "UTC")})
WRITES_SCHEMA = pl.Schema({"sku": pl.Utf8(), "row": pl.Int64(), "before": pl.Int64(), "after": pl.Int64(),
                           "as_of": pl.Datetime("us", "UTC"), "changed": pl.Boolean(), "zeroed": pl.Boolean()})
PROBLEMS_SCHEMA = pl.Schema({"row": pl.Int64(), "sku": pl.Utf8(), "column": pl.Utf8(), "value": pl.Utf8(),
                             "message": pl.Utf8()})


@dataclass(frozen=True)
class FeedPolicy:
    mode: Literal["set", "adjust"] = "set"
    scope: Literal["partial", "full"] = "partial"
    unknown_sku: Literal["reject_row", "create"] = "reject_row"
    min_rows: int = 1
    max_zeroed_percent: float = 20.0

    def __post_init__(self) -> None:
        if self.mode not in ("set", "adjust"):
            raise ValueError(f"mode must be set or adjust, not {self.mode!r}")
        if self.scope not in ("partial", "full"):
            raise ValueError(f"scope must be partial or full, not {self.scope!r}")
        if self.scope == "full" and self.mode == "adjust":
            raise ValueError("a full feed states absolute quantities: scope=full needs mode=set")
        if not 0 <= self.max_zeroed_percent <= 100:
            raise ValueError("max_zeroed_percent must be between 0 and 100")


@dataclass
class FeedPlan:
    """``writes`` holds every stock row to write: changed ones and those whose
    as-of moves forward with the same quantity (so a later, older file is
    recognised as stale). Only rows with ``changed`` get a ledger entry."""

    writes: pl.DataFrame
    stale: pl.DataFrame
    problems: pl.DataFrame
    hold_reason: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    # Set when the plan states every SKU of the source as of this time: the
    # store records it for the source instead of in the unchanged rows.
    covers_as_of: datetime | None = None

    @property
    def changed(self) -> pl.DataFrame:
        return self.writes.filter(pl.col("changed"))


def _problems(frame: pl.DataFrame, column: str, value: pl.Expr,
              message: pl.Expr | pl.Series | str) -> pl.DataFrame:
    msg = pl.lit(message) if isinstance(message, str) else message
    return frame.select(
        pl.col("row"), pl.col("sku"), pl.lit(column).alias("column"),
        value.cast(pl.Utf8).alias("value"), msg.alias("message"),
    ).cast(PROBLEMS_SCHEMA)


def plan_feed(
    rows: pl.DataFrame,
    current: pl.DataFrame,
    catalog: pl.Series,
    policy: FeedPolicy,
    *,
    default_as_of: datetime,
    approved: bool = False,
    quantity_column: str = "quantity",
    orders_after: pl.DataFrame | None = None,
    covers: bool = False,
    invalid: pl.Series | None = None,
    lookalikes: Mapping[str, str] | None = None,
) -> FeedPlan:
    """Plan one feed for one source.

    rows: the valid rows (row, sku, quantity, as_of); a null as_of means
    ``default_as_of`` (the file name's time or the receive time).
    current: this source's stock (sku, quantity, as_of).
    catalog: the SKUs the merchant knows that are not in this source's stock
    (for ``unknown_sku = reject_row``; the stock's own SKUs are known anyway).
    lookalikes: for an unknown SKU, the catalogue SKU it may be a
    spreadsheet-mangled form of (``skus.spreadsheet_key``), named in its row error.
    approved: a held full feed that a person approved skips the guard.
    orders_after: (sku, ordered_at, units) taken from this source by orders;
    a snapshot does not know the units sold after its as-of time, so they
    are subtracted again (the oversell window). Set mode only.
    covers: the store records this feed's as-of for the whole source
    (``covers_source`` holds and nothing else writes the source in the same
    apply), so an unchanged quantity needs no write to move its as-of.
    invalid: SKUs the file named on rows that failed validation (a bad
    quantity, the same SKU twice). A full feed leaves them as they are: a
    typo in one cell must not zero that SKU as if the file had left it out.
    """
    if covers and not covers_source(policy, rows, invalid):
        # Rows with their own times, or a partial feed: the source's time
        # would claim an as-of for SKUs this feed does not state.
        raise ValueError("covers=True needs a full set-mode feed whose rows carry no as-of and are all valid")
    rows = rows.select(list(ROWS_SCHEMA)).cast(ROWS_SCHEMA)
    rows = rows.with_columns(pl.col("as_of").fill_null(pl.lit(default_as_of).dt.cast_time_unit("us")))
    current = current.select(list(CURRENT_SCHEMA)).cast(CURRENT_SCHEMA)
    problems: list[pl.DataFrame] = []

    joined, matched = _match(rows, current, keep_index=policy.scope == "full")

    if policy.unknown_sku == "reject_row":
        # In the source's stock, or in the catalogue: known. Only the rest is looked up.
        is_unknown = pl.col("before").is_null() & ~pl.col("sku").is_in(catalog.implode())
        unknown = joined.filter(is_unknown)
        if unknown.height:
            problems.append(_unknown_sku_problems(unknown, lookalikes or {}))
            joined = joined.filter(~is_unknown)
            rows = rows.filter(~pl.col("row").is_in(unknown.get_column("row").implode()))

    if policy.mode == "set":
        # Never overwrite newer data: a row older than what is stored is skipped.
        is_stale = pl.col("stored_as_of").is_not_null() & (pl.col("as_of") < pl.col("stored_as_of"))
        stale = joined.filter(is_stale).select("row", "sku", "as_of", "stored_as_of")
        # Usually nothing is stale: then the join is the fresh rows, without
        # a filtered copy of a million of them.
        fresh = joined.filter(~is_stale) if stale.height else joined
        fresh = fresh.with_columns(pl.col("quantity").alias("after"))
        fresh = _subtract_later_orders(fresh, orders_after)
    else:
        # Deltas are events, not counts: never stale, and they leave the
        # as-of (the time of the last absolute count) where it was.
        stale = joined.clear().select("row", "sku", "as_of", "stored_as_of")
        fresh = joined.with_columns(
            (pl.col("before").fill_null(0) + pl.col("quantity")).alias("after"),
            pl.col("stored_as_of").alias("as_of"),
        )
        below = fresh.filter(pl.col("after") < 0)
        if below.height:
            problems.append(_problems(
                below, quantity_column, pl.col("quantity"),
                pl.format("the change would take the quantity below 0 (it is {} now)",
                          pl.col("before").fill_null(0)),
            ))
        above = fresh.filter(pl.col("after") > MAX_QUANTITY)
        if above.height:
            problems.append(_problems(above, quantity_column, pl.col("quantity"),
                                      f"the result would be over the maximum {MAX_QUANTITY}"))
        fresh = fresh.filter((pl.col("after") >= 0) & (pl.col("after") <= MAX_QUANTITY))

    fed = fresh.select(
        "sku", "row", "before", "after", "as_of",
        (pl.col("before").fill_null(0) != pl.col("after")).alias("changed"),
        pl.lit(False).alias("zeroed"),
        pl.col("stored_as_of"),
    )

    zeroed = current.clear().select("sku", "quantity", "as_of")
    hold_reason = None
    if policy.scope == "full":
        # The stored SKUs no row named: the positions the join did not match.
        absent = current if matched is None else current.filter(
            pl.repeat(True, current.height, eager=True).scatter(matched, False))
        if invalid is not None and not invalid.is_empty():
            absent = absent.filter(~pl.col("sku").is_in(invalid.implode()))
        # A newer stored quantity is not zeroed by an older full feed either.
        zeroed = absent.filter(
            (pl.col("quantity") > 0)
            & (pl.col("as_of").is_null() | (pl.col("as_of") <= pl.lit(default_as_of)))
        )
        source_skus = current.height
        if not approved:
            if rows.height < policy.min_rows:
                hold_reason = (f"full feed has {rows.height} valid row(s), fewer than "
                               f"min_rows = {policy.min_rows}")
            elif source_skus and zeroed.height * 100 > policy.max_zeroed_percent * source_skus:
                pct = zeroed.height * 100 / source_skus
                hold_reason = (f"full feed would set {zeroed.height} of {source_skus} SKUs "
                               f"({pct:.1f}%) to 0, over max_zeroed_percent = "
                               f"{policy.max_zeroed_percent:g}%")
    zero_writes = zeroed.select(
        "sku", pl.lit(None, pl.Int64).alias("row"), pl.col("quantity").alias("before"),
        pl.lit(0, pl.Int64).alias("after"),
        pl.lit(default_as_of).dt.cast_time_unit("us").alias("as_of"),
        pl.lit(True).alias("changed"), pl.lit(True).alias("zeroed"),
        pl.col("as_of").alias("stored_as_of"),
    )

    # Unchanged quantities are written only when their as-of moves forward,
    # and not even then when the source's as-of covers them.
    moves = pl.col("changed") | pl.col("stored_as_of").is_null()
    if not covers:
        moves = moves | (pl.col("as_of") > pl.col("stored_as_of"))
    writes = (
        pl.concat([fed, zero_writes.cast(fed.schema)])
        .filter(moves).drop("stored_as_of").cast(WRITES_SCHEMA)
    )
    problem_frame = (pl.concat(problems) if problems else pl.DataFrame(schema=PROBLEMS_SCHEMA))
    n_changed = int(fed.get_column("changed").sum())
    recounted = int(fresh.get_column("recounted").sum()) if "recounted" in fresh.columns else 0
    counts = {
        "applied": n_changed,
        "unchanged": fed.height - n_changed,
        "zeroed": zeroed.height,
        "stale": stale.height,
        "errors": problem_frame.height,
        "recounted": recounted,
    }
    return FeedPlan(writes=writes, stale=stale, problems=problem_frame, hold_reason=hold_reason,
                    counts=counts, covers_as_of=default_as_of if covers else None)


def _unknown_sku_problems(unknown: pl.DataFrame, lookalikes: Mapping[str, str]) -> pl.DataFrame:
    messages = []
    for sku in unknown.get_column("sku").to_list():
        known = lookalikes.get(sku)
        if known is None:
            messages.append(f"unknown SKU {sku!r}: it is not in the merchant's catalogue; only a source "
                            f"with unknown_sku = \"create\" adds products")
            continue
        why = ("a spreadsheet may have added '.0'" if DECIMAL_ZERO.match(sku)
               else "a spreadsheet may have dropped its leading zeros")
        messages.append(f"unknown SKU {sku!r}; the catalogue has {known!r} ({why})")
    return _problems(unknown, "sku", pl.col("sku"), pl.Series("message", messages, dtype=pl.Utf8))


def _match(rows: pl.DataFrame, current: pl.DataFrame, *,
           keep_index: bool) -> tuple[pl.DataFrame, pl.Series | None]:
    """``rows`` with the stored ``before`` and ``stored_as_of`` of each SKU, and,
    with ``keep_index``, the positions in ``current`` that some row matched.

    Matching a million SKUs is most of a plan's cost, so it is done once:
    the matched positions tell a full feed which stored SKUs it left out,
    without a second (anti) join. Either side empty needs no matching.
    The rows keep the file's order, which the writes and their ledger follow.
    """
    if not (rows.height and current.height):
        joined = rows.with_columns(pl.lit(None, CURRENT_SCHEMA["quantity"]).alias("before"),
                                   pl.lit(None, CURRENT_SCHEMA["as_of"]).alias("stored_as_of"))
        return joined, None
    stored = current.rename({"quantity": "before", "as_of": "stored_as_of"})
    at = _positions(rows.get_column("sku"), stored.get_column("sku"))
    if at is None:
        at = (rows.select("sku").join(stored.select("sku").with_row_index("_at"), on="sku", how="left",
                                      maintain_order="left").get_column("_at"))
    joined = rows.with_columns(stored.get_column(c).gather(at) for c in stored.columns if c != "sku")
    return joined, (at.drop_nulls() if keep_index else None)


def _positions(skus: pl.Series, stored: pl.Series) -> pl.Series | None:
    """For each SKU, its position in ``stored`` (null where absent); None if hashes collide.

    This is the left join on SKU, done on 64-bit hashes. polars' string-keyed
    join over a million SKUs needs about 200 MB at its peak (its hash table
    and partitions), which is most of what a re-sent feed costs in memory;
    on integers it is about 85 MB and a fifth of the time. (A binary search
    over sorted hashes took a little less memory and more than twice the
    time.) Exact: equal SKUs have equal hashes, so a SKU whose hash is not
    stored is not stored, and every hash found is checked against the SKU
    itself. Two stored SKUs with one hash, or a hash found for another SKU,
    return None and the caller joins on the strings.
    """
    hashes = stored.hash()
    if hashes.n_unique() != hashes.len():
        return None
    index = pl.int_range(0, stored.len(), dtype=pl.get_index_type(), eager=True)
    at = (pl.DataFrame({"h": skus.hash()})
          .join(pl.DataFrame({"h": hashes, "_at": index}), on="h", how="left", maintain_order="left")
          .get_column("_at"))
    same = stored.gather(at) == skus
    if (at.is_not_null() & ~same.fill_null(False)).any():
        return None
    return at


ORDERS_SCHEMA = pl.Schema({"sku": pl.Utf8(), "ordered_at": pl.Datetime("us", "UTC"), "units": pl.Int64()})


def _subtract_later_orders(fresh: pl.DataFrame, orders: pl.DataFrame | None) -> pl.DataFrame:
    """A warehouse file generated at 10:00 and applied at 10:05 must not hand
    back the units sold at 10:02: subtract orders placed after each row's
    as-of time. The quantity stops at 0 (the rest was oversold)."""
    if orders is None or orders.height == 0:
        return fresh.with_columns(pl.lit(0, pl.Int64).alias("recounted"))
    orders = orders.select(list(ORDERS_SCHEMA)).cast(ORDERS_SCHEMA)
    later = (
        fresh.select("row", "sku", "as_of").join(orders, on="sku", how="inner")
        .filter(pl.col("ordered_at") > pl.col("as_of"))
        .group_by("row").agg(pl.col("units").sum().alias("recounted"))
    )
    return (
        fresh.join(later, on="row", how="left")
        .with_columns(pl.col("recounted").fill_null(0))
        .with_columns((pl.col("after") - pl.col("recounted")).clip(lower_bound=0).alias("after"))
    )


def covers_source(policy: FeedPolicy, rows: pl.DataFrame, invalid: pl.Series | None = None) -> bool:
    """Whether applying this feed leaves every SKU of the source known as of the file's time.

    A full feed states every SKU: the ones it names, and the absent ones (0).
    When no row carries its own as-of, all of them are as of the file's
    as-of, except rows the stale guard kept because they are newer still.
    The store can then record that one time for the whole source instead of
    moving every unchanged row's as-of. Not when ``invalid`` names SKUs:
    the file stated nothing valid about those (see ``plan_feed``).
    """
    return (policy.scope == "full" and policy.mode == "set"
            and (invalid is None or invalid.is_empty())
            and ("as_of" not in rows.columns or rows.get_column("as_of").null_count() == rows.height))
