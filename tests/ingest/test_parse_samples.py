"""The committed sample feeds behave as sample_files/feeds/README.md says."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.errors import FeedError
from daemon.formats.feeds import ParseOptions, parse_feed

FEEDS = Path(__file__).resolve().parents[2] / "sample_files" / "feeds"
GOOD = sorted((FEEDS / "good").glob("*.*"))

ERRORS = {
    "excel_mangled_skus.csv": [2],
    "duplicates.csv": [2, 4],
    "row_errors.csv": [3, 4, 5, 6, 7],
    "mangled_sku_text.xlsx": [2],
}
REJECTED = {
    "binary_junk.csv": "not a text feed",
    "empty.csv": "empty",
    "no_quantity_column.csv": "no quantity column",
    "not_a_zip.xlsx": "not a zip",
    "password_protected.xlsx": "password-protected",
}


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_every_good_sample_parses_without_row_errors(path):
    parsed = parse_feed(path, ParseOptions())
    assert parsed.errors == []
    assert parsed.frame.height == parsed.total_rows


@pytest.mark.parametrize(("name", "rows"), ERRORS.items())
def test_bad_samples_report_errors_on_the_rows_a_user_sees(name, rows):
    parsed = parse_feed(FEEDS / "bad" / name, ParseOptions())
    assert [e.row for e in parsed.errors] == rows


@pytest.mark.parametrize(("name", "reason"), REJECTED.items())
def test_bad_samples_are_rejected_as_a_whole_with_a_reason(name, reason):
    with pytest.raises(FeedError, match=reason):
        parse_feed(FEEDS / "bad" / name, ParseOptions())


def test_the_ebay_sample_rows_are_numbered_after_the_preamble():
    parsed = parse_feed(FEEDS / "good" / "ebay_file_exchange.csv", ParseOptions())
    assert parsed.frame["row"].to_list() == [4, 5]


def test_the_shopify_sample_uses_on_hand_new_and_skips_not_stocked():
    parsed = parse_feed(FEEDS / "good" / "shopify_inventory_export.csv", ParseOptions())
    assert parsed.frame.select("sku", "quantity").rows() == [("TEE-S", 6), ("TEE-L", 3)]
