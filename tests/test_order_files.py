"""Reading order, cancellation and listing files: formats, row errors, file-level rejections."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.errors import FeedError
from daemon.formats.listings import read_listings
from daemon.formats.orders import read_cancellations, read_orders

SAMPLES = Path(__file__).parent.parent / "sample_files"


def test_the_generic_order_csv_reads_every_line_with_aware_utc_times() -> None:
    parsed = read_orders(SAMPLES / "orders" / "generic_orders.csv")
    assert parsed.format == "generic" and parsed.errors == []
    assert [(r.row, r.order_id, r.line_id, r.sku, r.quantity) for r in parsed.rows] == [
        (2, "SO-1001", "1", "A-100", 2), (3, "SO-1001", "2", "0017", 1), (4, "SO-1002", "1", "B-200", 5)]
    assert parsed.rows[2].ordered_at == datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


def test_the_amazon_order_report_maps_its_own_headers_among_many_columns() -> None:
    parsed = read_orders(SAMPLES / "orders" / "amazon_order_report.txt")
    assert parsed.format == "amazon" and parsed.errors == []
    assert [(r.order_id, r.line_id, r.sku, r.quantity) for r in parsed.rows][1] == (
        "114-3941689-8772232", "46510268396155", "0017", 2)


def test_every_bad_order_row_names_its_row_column_value_and_a_sentence() -> None:
    parsed = read_orders(SAMPLES / "orders" / "bad_rows.csv")
    assert [r.order_id for r in parsed.rows] == ["SO-2001"]
    assert [(e.row, e.column, e.value) for e in parsed.errors] == [
        (3, "order_id", ""), (4, "sku", ""), (5, "quantity", "two"), (6, "quantity", "0"),
        (7, "sku", "1.23E+05"), (8, "ordered_at", "yesterday")]
    assert all(e.message[0].isalpha() and len(e.message) > 10 for e in parsed.errors)


def test_a_repeated_line_is_skipped_when_identical_and_an_error_when_it_differs(tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_bytes(b"\xef\xbb\xbforder_id;line_id;sku;quantity;ordered_at\r\n"
                     b"A;1;X;1;2024-05-01 10:00\r\nA;1;X;1;2024-05-01 10:00\r\nA;1;X;2;2024-05-01 10:00\r\n\r\n")
    parsed = read_orders(path)
    assert (len(parsed.rows), parsed.duplicates, parsed.total_rows) == (1, 1, 3)
    assert [(e.row, e.column) for e in parsed.errors] == [(4, "line_id")]
    assert "also on row 2" in parsed.errors[0].message


@pytest.mark.parametrize(("content", "message"), [
    (b"", "empty"),
    (b"sku,quantity\nA,1\n", "no order header row"),
    (b"order_id,sku,quantity\nA,B,1\n", "no line_id, ordered_at column"),
    (b"\x00\x01\x02\x03" * 50, "NUL bytes"),
])
def test_a_file_that_cannot_be_used_as_a_whole_is_rejected(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "o.csv"
    path.write_bytes(content)
    with pytest.raises(FeedError, match=message):
        read_orders(path)


def test_a_cancellation_file_defaults_to_market_origin_and_an_empty_line_means_the_whole_order(
    tmp_path: Path,
) -> None:
    parsed = read_cancellations(SAMPLES / "orders" / "cancellations.csv")
    assert [(r.order_id, r.line_id, r.origin) for r in parsed.rows] == [
        ("SO-1001", "1", "market"), ("SO-1002", None, "market")]
    path = tmp_path / "c.csv"
    path.write_text("order_id,line_id,cancelled_at,origin,restock\nA,1,2024-05-01T10:00:00Z,,\n"
                    "B,1,2024-05-01T10:00:00Z,warehouse,\nC,1,2024-05-01T10:00:00Z,stockdrop,maybe\n"
                    "D,1,2024-05-01T10:00:00Z,stockdrop,yes\n")
    parsed = read_cancellations(path)
    assert [(r.order_id, r.origin, r.restock) for r in parsed.rows] == [("A", "market", None), ("D", "stockdrop", True)]
    assert [(e.row, e.column, e.value) for e in parsed.errors] == [(3, "origin", "warehouse"), (4, "restock", "maybe")]


@pytest.mark.parametrize(("name", "fmt", "rows"), [
    ("generic_listings.csv", "generic", [("A-100", 12), ("0017", 3), ("B-200", 0)]),
    ("amazon_inventory_report.txt", "amazon", [("A-100", 12), ("0017", 3)]),
    ("ebay_seller_hub.csv", "ebay", [("A-100", 7), ("0017", 1)]),
    ("ebay_file_exchange_legacy.csv", "ebay", [("A-100", 7)]),
    ("walmart_inventory.json", "walmart", [("A-100", 9), ("0017", 0)]),
    ("shopify_inventory_export.csv", "shopify", [("A-100", 10)]),  # summed over locations; not stocked skipped
])
def test_listing_files_are_read_in_each_market_format(name: str, fmt: str, rows: list[tuple[str, int]]) -> None:
    parsed = read_listings(SAMPLES / "listings" / name)
    assert (parsed.format, parsed.rows, parsed.errors) == (fmt, rows, [])


def test_bad_listing_rows_are_reported_and_the_good_ones_kept(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_text("sku,quantity\nA,1\nB,-2\n,4\nC,lots\n")
    parsed = read_listings(path)
    assert parsed.rows == [("A", 1)]
    assert [(e.row, e.column, e.value) for e in parsed.errors] == [
        (3, "quantity", "-2"), (4, "sku", None), (5, "quantity", "lots")]


SHOPIFY_HEADER = ("Handle,Option1 Value,Option2 Value,Option3 Value,SKU,Location,Incoming (not editable),"
                  "Unavailable (not editable),Committed (not editable),Available (not editable),"
                  "On hand (current),On hand (new)")


def test_a_shopify_export_keeps_each_variants_handle_options_and_locations(tmp_path: Path) -> None:
    path = tmp_path / "inventory_export_1.csv"
    path.write_bytes(("\ufeff" + SHOPIFY_HEADER + "\r\n"
                      "mug,Blue,11oz,,0017,Shop location,0,0,1,4,5,\r\n"
                      "mug,Blue,11oz,,0017,\"Entrepôt, Lyon\",0,0,0,-3,-3,\r\n"  # oversold: counts as 0
                      "mug,Red,11oz,,0018,Shop location,0,0,0,not stocked,Not stocked,\r\n"  # not kept there
                      "mug,Red,11oz,,0018,\"Entrepôt, Lyon\",0,0,0,2,2,\r\n"
                      ",Green,,,0019,Shop location,0,0,0,1,1,\r\n"  # no handle: cannot be written back
                      "cap,Default Title,,,CAP-1,,0,0,0,6,6,\r\n"  # no location: neither
                      "\r\n").encode())
    parsed = read_listings(path)
    assert (parsed.format, parsed.rows) == ("shopify", [("0017", 4), ("0018", 2)])
    assert parsed.locations == [("0017", "Shop location", "mug", "Blue", "11oz", None),
                                ("0017", "Entrepôt, Lyon", "mug", "Blue", "11oz", None),
                                ("0018", "Entrepôt, Lyon", "mug", "Red", "11oz", None)]
    assert [(e.row, e.column, e.value, e.sku) for e in parsed.errors] == [
        (6, "Handle", None, "0019"), (7, "Location", None, "CAP-1")]
    assert "send this variant's quantity back to Shopify" in parsed.errors[0].message


def test_the_shopify_sample_keeps_its_two_locations_and_not_the_unstocked_one() -> None:
    parsed = read_listings(SAMPLES / "listings" / "shopify_inventory_export.csv")
    assert parsed.locations == [("A-100", "Shop location", "mug", "Blue", None, None),
                                ("A-100", "Warehouse East", "mug", "Blue", None, None)]
    assert read_listings(SAMPLES / "listings" / "generic_listings.csv").locations is None


def test_a_shopify_export_without_its_handle_column_is_rejected_as_a_whole(tmp_path: Path) -> None:
    path = tmp_path / "inventory_export_1.csv"
    path.write_text("SKU,Location,Available (not editable)\n0017,Shop location,4\n")
    with pytest.raises(FeedError, match="needs the column.s. Handle"):
        read_listings(path)
