"""plan_feed over random small feeds, against its rules written out SKU by SKU.

plan_feed states the rules of a set-mode feed over whole columns; here they
are spelled out one row at a time, including the order of the writes (the
file's rows, then the stored SKUs a full feed leaves out, in stored order).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.inventory.feed import WRITES_SCHEMA, FeedPolicy, covers_source, plan_feed

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
SKUS = ["A", "B", "C", "D", "E", "F"]
ROWS = {"row": pl.Int64, "sku": pl.Utf8, "quantity": pl.Int64, "as_of": pl.Datetime("us", "UTC")}
STORE = {"sku": pl.Utf8, "quantity": pl.Int64, "as_of": pl.Datetime("us", "UTC")}
STALE = {"row": pl.Int64, "sku": pl.Utf8, "as_of": pl.Datetime("us", "UTC"),
         "stored_as_of": pl.Datetime("us", "UTC")}
times = st.none() | st.sampled_from([T0 - timedelta(hours=1), T0, T0 + timedelta(hours=1)])


@st.composite
def feeds(draw: Any) -> tuple[pl.DataFrame, pl.DataFrame, list[str], FeedPolicy]:
    skus = draw(st.lists(st.sampled_from(SKUS), unique=True))
    rows = pl.DataFrame([(i + 2, sku, draw(st.integers(0, 3)), draw(times))
                         for i, sku in enumerate(skus)], schema=ROWS, orient="row")
    stored = draw(st.lists(st.tuples(st.sampled_from(SKUS), st.integers(0, 3), times),
                           unique_by=lambda t: t[0]))
    current = pl.DataFrame(stored, schema=STORE, orient="row")
    catalog = draw(st.lists(st.sampled_from(SKUS), unique=True))
    policy = FeedPolicy(scope=draw(st.sampled_from(["partial", "full"])),
                        unknown_sku=draw(st.sampled_from(["create", "reject_row"])),
                        max_zeroed_percent=100)
    return rows, current, catalog, policy


def planned(rows: pl.DataFrame, current: pl.DataFrame, catalog: list[str],
            policy: FeedPolicy, covers: bool = False) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int]:
    """(writes, stale rows, unknown rows), one SKU at a time."""
    stored = {s["sku"]: s for s in current.iter_rows(named=True)}
    writes, stale, unknown, named = [], [], 0, set()
    for r in rows.iter_rows(named=True):
        # The source's own stock is known: only the rest must be in the catalogue.
        if policy.unknown_sku == "reject_row" and r["sku"] not in catalog and r["sku"] not in stored:
            unknown += 1
            continue
        named.add(r["sku"])
        as_of, s = r["as_of"] or T0, stored.get(r["sku"])
        stored_as_of = s["as_of"] if s else None
        if stored_as_of is not None and as_of < stored_as_of:
            stale.append((r["row"], r["sku"], as_of, stored_as_of))
            continue
        before = s["quantity"] if s else None
        changed = (before or 0) != r["quantity"]
        # A plan that covers the source moves the unchanged rows' as-of through the source.
        if changed or stored_as_of is None or (as_of > stored_as_of and not covers):
            writes.append((r["sku"], r["row"], before, r["quantity"], as_of, changed, False))
    if policy.scope == "full":
        writes += [(s["sku"], None, s["quantity"], 0, T0, True, True)
                   for s in current.iter_rows(named=True)
                   if s["sku"] not in named and s["quantity"] > 0
                   and (s["as_of"] is None or s["as_of"] <= T0)]
    return writes, stale, unknown


@settings(max_examples=300, deadline=None)
@given(feeds())
def test_a_plan_follows_the_rules_row_by_row(feed: tuple[Any, ...]) -> None:
    rows, current, catalog, policy = feed
    plan = plan_feed(rows, current, pl.Series("sku", catalog, pl.Utf8), policy, default_as_of=T0)
    writes, stale, unknown = planned(rows, current, catalog, policy)
    assert dict(plan.writes.schema) == WRITES_SCHEMA and dict(plan.stale.schema) == STALE
    assert plan.writes.rows() == writes
    assert plan.stale.rows() == stale
    assert plan.problems.height == unknown
    assert plan.counts["zeroed"] == sum(1 for w in writes if w[6])
    assert plan.counts["stale"] == len(stale)


@settings(max_examples=200, deadline=None)
@given(feeds(), st.booleans(), st.booleans())
def test_a_plan_is_the_same_by_hash_or_by_string_join_and_covering_drops_only_as_of_moves(
        feed: tuple[Any, ...], by_string: bool, covers: bool) -> None:
    from unittest import mock

    from daemon.inventory import feed as module

    rows, current, catalog, policy = feed
    covers = covers and covers_source(policy, rows)  # the only feeds that may cover a source
    # by_string: as if two SKUs' hashes collided, which sends the join to the strings.
    with mock.patch.object(module, "_positions", return_value=None) if by_string else mock.MagicMock():
        plan = plan_feed(rows, current, pl.Series("sku", catalog, pl.Utf8), policy, default_as_of=T0,
                         covers=covers)
    writes, stale, _ = planned(rows, current, catalog, policy, covers=covers)
    assert plan.writes.rows() == writes
    assert plan.stale.rows() == stale
    assert plan.covers_as_of == (T0 if covers else None)


def test_a_plan_refuses_to_cover_a_source_the_feed_does_not_state_at_one_time() -> None:
    import pytest

    rows = pl.DataFrame([(2, "A", 1, T0)], schema=ROWS, orient="row")
    empty = pl.DataFrame(schema=STORE)
    with pytest.raises(ValueError, match="covers"):
        plan_feed(rows, empty, pl.Series("sku", [], pl.Utf8), FeedPolicy(scope="full"),
                  default_as_of=T0, covers=True)
    with pytest.raises(ValueError, match="covers"):
        plan_feed(rows.with_columns(pl.lit(None, ROWS["as_of"]).alias("as_of")), empty,
                  pl.Series("sku", [], pl.Utf8), FeedPolicy(scope="partial"), default_as_of=T0, covers=True)


def test_a_full_feed_never_zeroes_a_sku_it_named_on_an_invalid_row() -> None:
    import pytest

    rows = pl.DataFrame([(2, "A", 5, None)], schema=ROWS, orient="row")
    current = pl.DataFrame([("A", 1, T0), ("B", 2, T0), ("C", 3, T0)], schema=STORE, orient="row")
    invalid = pl.Series("sku", ["B"], dtype=pl.Utf8)
    plan = plan_feed(rows, current, pl.Series("sku", [], pl.Utf8), FeedPolicy(scope="full", max_zeroed_percent=100),
                     default_as_of=T0 + timedelta(hours=1), invalid=invalid)
    assert sorted(plan.writes.filter(pl.col("zeroed")).get_column("sku").to_list()) == ["C"]
    assert plan.counts["zeroed"] == 1
    with pytest.raises(ValueError, match="covers"):
        plan_feed(rows, current, pl.Series("sku", [], pl.Utf8), FeedPolicy(scope="full"),
                  default_as_of=T0 + timedelta(hours=1), invalid=invalid, covers=True)
