"""When a feed states every SKU of its source at one time (so the store may record that time once)."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from daemon.inventory.feed import ROWS_SCHEMA, FeedPolicy, covers_source

AT = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def rows(*as_of: datetime | None) -> pl.DataFrame:
    return pl.DataFrame({"row": list(range(2, 2 + len(as_of))), "sku": [f"S{i}" for i in range(len(as_of))],
                         "quantity": [1] * len(as_of), "as_of": list(as_of)}, schema=ROWS_SCHEMA)


def test_a_full_feed_without_row_times_covers_its_source() -> None:
    assert covers_source(FeedPolicy(scope="full"), rows(None, None))


def test_a_partial_feed_never_covers_its_source() -> None:
    assert not covers_source(FeedPolicy(scope="partial"), rows(None, None))


def test_one_row_with_its_own_time_means_the_feed_does_not_cover_its_source() -> None:
    assert not covers_source(FeedPolicy(scope="full"), rows(None, AT))


def test_an_empty_full_feed_covers_its_source() -> None:
    # It zeroes everything (once approved), all as of the file's time.
    assert covers_source(FeedPolicy(scope="full"), rows())


def test_a_full_feed_with_invalid_rows_does_not_cover_its_source() -> None:
    # It stated nothing valid about those SKUs, so no time for all of them.
    invalid = pl.Series("sku", ["B"], dtype=pl.Utf8)
    assert not covers_source(FeedPolicy(scope="full"), rows(None, None), invalid)
    assert covers_source(FeedPolicy(scope="full"), rows(None, None), invalid.clear())
