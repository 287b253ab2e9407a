"""The result file, checked against its meaning written out row by row.

write_result builds the file from whole columns (a million rows must cost
little); here the same file is described one line at a time, the plain way.
"""

from __future__ import annotations

import csv
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.db.uploads import ErrorRow, HistoryRow
from daemon.formats.cells import escape_cell
from daemon.formats.feeds import ParsedFeed
from daemon.formats.results import write_result
from daemon.inventory.feed import FeedPlan, FeedPolicy, plan_feed

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
SKUS = ["A", "=B", "-C", "D", "@E", "\tF", "G0", "0017"]
FEED = {"row": pl.Int64, "sku": pl.Utf8, "quantity": pl.Int64, "location": pl.Utf8,
        "as_of": pl.Datetime("us", "UTC")}
STORE = {"sku": pl.Utf8, "quantity": pl.Int64, "as_of": pl.Datetime("us", "UTC")}
NO_CATALOG = pl.Series("sku", [], pl.Utf8)
times = st.none() | st.sampled_from([T0 - timedelta(hours=1), T0, T0 + timedelta(hours=1)])
Upload = tuple[HistoryRow, list[ErrorRow], ParsedFeed, list[FeedPlan]]


def history_row(status: str, message: str | None) -> HistoryRow:
    return HistoryRow(
        id=1, merchant="acme", source="wh1", kind="quantity", original_name="f.csv",
        status=status, protocol="cli", user=None, remote_addr=None, size=1, sha256="0",
        elapsed_s=None, rows=0, applied=0, unchanged=0, errors=0, zeroed=0, stale=0,
        message=message, warnings=None, duplicate_of=None, received_at=T0, started_at=T0,
        finished_at=T0)


@st.composite
def uploads(draw: Any) -> Upload:
    skus = draw(st.lists(st.sampled_from(SKUS), unique=True, max_size=len(SKUS)))
    numbers = sorted(draw(st.lists(st.integers(2, 30), unique=True, min_size=len(skus),
                                   max_size=len(skus))))
    frame = pl.DataFrame({"row": numbers, "sku": skus,
                          "quantity": draw(st.lists(st.integers(0, 3), min_size=len(skus),
                                                    max_size=len(skus))),
                          "location": [None] * len(skus),
                          "as_of": draw(st.lists(times, min_size=len(skus), max_size=len(skus)))},
                         schema=FEED)
    stored = draw(st.lists(st.tuples(st.sampled_from(SKUS), st.integers(0, 3), times),
                           unique_by=lambda t: t[0]))
    current = pl.DataFrame(stored, schema=STORE, orient="row")
    policy = FeedPolicy(scope=draw(st.sampled_from(["partial", "full"])), max_zeroed_percent=100)
    split = draw(st.sampled_from([1, 2]))  # two plans, as a file with a location column makes
    plans = [plan_feed(frame.filter(pl.col("row") % split == k), current, NO_CATALOG, policy,
                       default_as_of=T0) for k in range(split)]
    if draw(st.booleans()):
        frame = frame.reverse()  # not in row order: the file must come out sorted all the same
    errors = draw(st.lists(st.builds(
        ErrorRow, st.none() | st.integers(1, 31), st.none() | st.just("quantity"),
        st.none() | st.sampled_from(["=1+1", "x"]), st.none() | st.sampled_from(SKUS),
        st.sampled_from(["not a number", "=odd", "skipped: older than stored"])), max_size=5))
    status = draw(st.sampled_from(["applied", "applied_with_errors", "held", "rejected"]))
    outcome = history_row(status, draw(st.none() | st.sampled_from(["=sum", "held: approve it"])))
    parsed = ParsedFeed(frame, [], [], frame.height, None, None, None, ["sku", "quantity"])
    return outcome, errors, parsed, plans


def described(history: HistoryRow, errors: list[ErrorRow], parsed: ParsedFeed,
              plans: list[FeedPlan]) -> list[list[str]]:
    """The file, line by line: its outcome, zeroed SKUs and errors without a
    row, then by row number each row followed by the errors on it."""
    def line(row: int | None, sku: str | None, quantity: int | None, outcome: str,
             error: str | None) -> list[str]:
        return ["" if row is None else str(row), str(escape_cell(sku or "")),
                "" if quantity is None else str(quantity), outcome, str(escape_cell(error or ""))]

    shown = [(e.row, line(e.row, e.sku, None, "error",
                          f"{e.column}: {e.value!r}: {e.message}" if e.column else e.message))
             for e in errors if not e.message.startswith("skipped:")]
    held = history.status in ("held", "rejected")
    writes = [w for plan in plans for w in plan.writes.iter_rows(named=True)]
    applied = {w["row"] for w in writes if w["changed"]}
    stale = {s["row"] for plan in plans for s in plan.stale.iter_rows(named=True)}
    lines = [line(None, None, None, history.status, history.message)]
    if not held:
        lines += [line(None, w["sku"], w["after"], "zeroed (absent from a full feed)", None)
                  for w in writes if w["zeroed"]]
    lines += [cells for row, cells in shown if row is None]
    numbered = [(r["row"], 0, line(r["row"], r["sku"], r["quantity"],
                                   f"not applied ({history.status})" if held
                                   else "applied" if r["row"] in applied
                                   else "stale" if r["row"] in stale else "unchanged", None))
                for r in parsed.frame.iter_rows(named=True)]
    numbered += [(row, 1, cells) for row, cells in shown if row is not None]
    return lines + [cells for _, _, cells in sorted(numbered, key=lambda n: n[:2])]


@settings(max_examples=200, deadline=None)
@given(upload=uploads())
def test_the_result_file_says_what_happened_to_each_row(upload: Upload) -> None:
    outcome, errors, parsed, plans = upload
    with tempfile.TemporaryDirectory() as tmp:
        path = write_result(Path(tmp), "f.csv", outcome.status, outcome.message, errors,
                            (parsed, [(None, plan) for plan in plans]))
        with path.open(newline="", encoding="utf-8") as f:
            header, *lines = list(csv.reader(f))
    assert header == ["row", "sku", "quantity", "outcome", "error"]
    assert lines == described(outcome, errors, parsed, plans)


def test_a_file_rejected_as_a_whole_lists_only_its_errors(tmp_path: Path) -> None:
    errors = [ErrorRow(3, "quantity", "=1+1", "X", "not a number"),
              ErrorRow(None, None, None, None, "-bad")]
    path = write_result(tmp_path, "f.csv", "rejected", "=no", errors, None)
    assert path.read_text(encoding="utf-8").splitlines() == [
        "row,sku,quantity,outcome,error", ",,,rejected,'=no", ",,,error,'-bad",
        "3,X,,error,quantity: '=1+1': not a number"]


def test_a_file_with_many_row_errors_lists_each_after_its_row(tmp_path: Path) -> None:
    frame = pl.DataFrame({"row": range(2, 302), "sku": [f"S{i}" for i in range(300)],
                          "quantity": [1] * 300, "location": [None] * 300, "as_of": [None] * 300},
                         schema=FEED)
    plan = plan_feed(frame, pl.DataFrame(schema=STORE), NO_CATALOG, FeedPolicy(), default_as_of=T0)
    parsed = ParsedFeed(frame, [], [], 300, None, None, None, ["sku", "quantity"])
    errors = [ErrorRow(row, "quantity", "=x", None, "not a number") for row in range(400, 1, -2)]
    outcome = history_row("applied_with_errors", None)
    path = write_result(tmp_path, "f.csv", outcome.status, outcome.message, errors, (parsed, [(None, plan)]))
    with path.open(newline="", encoding="utf-8") as f:
        assert list(csv.reader(f))[1:] == described(outcome, errors, parsed, [plan])
