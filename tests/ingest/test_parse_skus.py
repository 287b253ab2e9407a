"""What a SKU may be: at most max_sku_length characters, no control characters."""

from __future__ import annotations

from pathlib import Path

from daemon.formats.feeds import ParseOptions, parse_feed
from tests.ingest.test_parse_hostile_xlsx import plain


def feed(tmp_path: Path, data: bytes, **options):  # type: ignore[no-untyped-def]
    path = tmp_path / "feed.csv"
    path.write_bytes(data)
    return parse_feed(path, ParseOptions(**options))


def test_a_sku_over_the_length_limit_is_a_row_error_naming_row_column_and_value(tmp_path):
    long = "L" * 10_000
    parsed = feed(tmp_path, f"Item SKU,qty\nOK,1\n{long},2\n".encode())
    [error] = parsed.errors
    # The value shows the start of the cell and how long it was, not all 10,000 characters.
    assert (error.row, error.column, error.value) == (3, "Item SKU", "L" * 1000 + "\u2026 (10,000 characters)")
    assert error.message == "SKU is 10000 characters long, over the limit of 100 (max_sku_length)"
    assert parsed.frame["sku"].to_list() == ["OK"]


def test_the_limit_is_a_setting_and_counts_characters_not_bytes(tmp_path):
    parsed = feed(tmp_path, "sku,quantity\nÄÄÄÄÄ,1\nBBBBBB,1\n".encode(), max_sku_length=5)
    assert [(e.row, e.value) for e in parsed.errors] == [(3, "BBBBBB")]


def test_control_characters_inside_a_sku_are_row_errors_that_name_them(tmp_path):
    parsed = feed(tmp_path, b'sku,quantity\n"A\tB",1\n"C\nD",2\nE\x01F,3\nG\xc2\x85H,4\nOK,5\n'
                  # a stray control byte in a real export, not a binary file
                  + b"".join(b"P-%d,1\n" % i for i in range(40)))
    assert [(e.row, e.value, e.message) for e in parsed.errors] == [
        (2, "A\tB", "SKU contains a tab (U+0009), which no market accepts in a SKU"),
        (3, "C\nD", "SKU contains a line break (U+000A), which no market accepts in a SKU"),
        (4, "E\x01F", "SKU contains a control character (U+0001), which no market accepts in a SKU"),
        (5, "G\x85H", "SKU contains a control character (U+0085), which no market accepts in a SKU"),
    ]
    assert parsed.frame["sku"].to_list()[:1] == ["OK"]


def test_a_sku_with_control_characters_in_a_workbook_is_a_row_error_too(tmp_path):
    parsed = parse_feed(plain(tmp_path, [["sku", "quantity"], ["X\x07Y", 1], ["Z", 2]]), ParseOptions())
    assert [(e.row, e.column, e.value) for e in parsed.errors] == [(2, "sku", "X\x07Y")]
