"""Delimited text feeds: encodings, layout, headers, quantities, row numbers."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from daemon.errors import FeedError
from daemon.formats.feeds import ParseOptions, parse_feed


def feed(tmp_path: Path, data: bytes, name: str = "feed.csv", **options):
    path = tmp_path / name
    path.write_bytes(data)
    return parse_feed(path, ParseOptions(**options))


def test_a_generic_template_parses_into_the_documented_frame(tmp_path):
    parsed = feed(tmp_path, b"sku,quantity,source,as_of\nA-1,5,main,2024-05-01T10:00:00+02:00\n")
    assert parsed.frame.schema == pl.Schema({
        "row": pl.Int64, "sku": pl.Utf8, "quantity": pl.Int64, "location": pl.Utf8,
        "as_of": pl.Datetime("us", "UTC"),
    })
    row = parsed.frame.row(0, named=True)
    assert (row["row"], row["sku"], row["quantity"], row["location"]) == (2, "A-1", 5, "main")
    assert row["as_of"].isoformat() == "2024-05-01T08:00:00+00:00"
    assert parsed.header == ["sku", "quantity", "source", "as_of"]
    assert (parsed.encoding, parsed.delimiter, parsed.total_rows) == ("utf-8", ",", 1)


def test_a_bom_glued_to_the_first_header_is_ignored(tmp_path):
    parsed = feed(tmp_path, b"\xef\xbb\xbfsku,quantity\r\nA,1\r\n")
    assert parsed.header[0] == "sku" and parsed.frame["sku"].to_list() == ["A"]
    assert parsed.encoding == "utf-8-sig"


def test_utf16_with_a_bom_is_read_as_it_is(tmp_path):
    parsed = feed(tmp_path, "sku\tquantity\r\nÄ-1\t3\r\n".encode("utf-16"))
    assert parsed.frame["sku"].to_list() == ["Ä-1"] and parsed.encoding == "utf-16"


def test_cp1252_falls_back_with_a_warning(tmp_path):
    parsed = feed(tmp_path, "sku;quantity\r\nCAFÉ;5,0\r\n".encode("cp1252"))
    assert parsed.frame["sku"].to_list() == ["CAFÉ"] and parsed.frame["quantity"].to_list() == [5]
    assert parsed.warnings == ["decoded as CP-1252 (not valid UTF-8)"]


@pytest.mark.parametrize("junk", [b"sku,quantity\nA\x00,1\n", bytes(range(1, 32)) * 50])
def test_binary_junk_is_a_feed_error_not_a_guess(tmp_path, junk):
    with pytest.raises(FeedError, match="not a text feed|binary"):
        feed(tmp_path, junk)


def test_bytes_that_are_no_known_text_are_a_feed_error(tmp_path):
    with pytest.raises(FeedError, match="neither UTF-8 nor CP-1252"):
        feed(tmp_path, b"sku,quantity\nA\x81\x8d,1\n")


@pytest.mark.parametrize("data", [b"", b"   \r\n\r\n", b"\xef\xbb\xbf"])
def test_an_empty_file_is_a_feed_error(tmp_path, data):
    with pytest.raises(FeedError, match="empty"):
        feed(tmp_path, data)


def test_a_header_only_file_gives_zero_rows_not_an_error(tmp_path):
    parsed = feed(tmp_path, b"sku,quantity\r\n")
    assert parsed.frame.height == 0 and parsed.total_rows == 0 and parsed.errors == []


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_each_delimiter_is_detected(tmp_path, delimiter):
    text = f"sku{delimiter}quantity\nA{delimiter}4\n".encode()
    parsed = feed(tmp_path, text)
    assert parsed.delimiter == delimiter and parsed.frame["quantity"].to_list() == [4]


def test_quoted_fields_and_crlf_are_handled(tmp_path):
    parsed = feed(tmp_path, b'sku,quantity\r\n"A, the big one",2\r\n"B ""quoted""",3\r\n')
    assert parsed.frame["sku"].to_list() == ["A, the big one", 'B "quoted"']


def test_ebay_info_preamble_is_skipped_and_row_numbers_count_it(tmp_path):
    data = (b"#INFO,Version=0.0.2\n#INFO Action is required\n"
            b"Action(SiteID=US|Country=US|Currency=USD|Version=1193|CC=UTF-8),Custom label (SKU),Quantity\n"
            b"Revise,MUG,4\nRevise,CUP,x\n")
    parsed = feed(tmp_path, data)
    assert parsed.frame.select("row", "sku").rows() == [(4, "MUG")]
    assert [(e.row, e.column, e.value) for e in parsed.errors] == [(5, "Quantity", "x")]


def test_row_numbers_match_what_a_spreadsheet_shows(tmp_path):
    # line 1 title, line 2 blank, line 3 header; blank line 5 still counts.
    data = b"Stock report\n\nsku,quantity\nA,1\n\nB,bad\n"
    parsed = feed(tmp_path, data)
    assert parsed.frame["row"].to_list() == [4]
    assert parsed.errors[0].row == 6 and parsed.errors[0].value == "bad"


def test_trailing_empty_rows_and_columns_are_ignored(tmp_path):
    parsed = feed(tmp_path, b"sku,quantity,,\r\nA,1,,\r\nB,2,,\r\n,,,\r\n\r\n\r\n")
    assert parsed.header == ["sku", "quantity"] and parsed.total_rows == 2 and parsed.errors == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'sku,quantity\nA,"1,200"\n', 1200),
        (b"sku;quantity\nA;1 200\n", 1200),
        (b"sku;quantity\nA;1,200\n", 1200),
        (b"sku;quantity\nA;5,0\n", 5),
        (b"sku,quantity\nA, 5.0 \n", 5),
        (b"sku,quantity\nA,+7\n", 7),
    ],
)
def test_thousands_separators_and_decimal_commas_are_recognised(tmp_path, data, expected):
    parsed = feed(tmp_path, data)
    assert parsed.errors == [] and parsed.frame["quantity"].to_list() == [expected]


def test_an_unquoted_thousands_comma_is_a_row_error_not_a_silent_1(tmp_path):
    parsed = feed(tmp_path, b"sku,quantity\nA,1,200\n")
    assert parsed.frame.height == 0 and "more fields than the header" in parsed.errors[0].message


def test_a_dot_grouped_quantity_in_a_semicolon_file_is_ambiguous(tmp_path):
    parsed = feed(tmp_path, b"sku;quantity\nA;1.200\n")
    assert "ambiguous" in parsed.errors[0].message


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5.5", "quantity must be a whole number, not a fraction"),
        ("lots", "quantity must be a whole number"),
        ("", "quantity is empty"),
        ("1000001", "quantity is above the maximum of 1,000,000"),
        ("99999999999999999999999", "quantity is above the maximum of 1,000,000"),
        ("-3", "quantity must not be negative"),
        ("#VALUE!", "the quantity cell holds a spreadsheet error"),
    ],
)
def test_bad_quantities_are_row_errors_with_a_sentence(tmp_path, value, message):
    parsed = feed(tmp_path, f"sku,quantity\nA,{value}\nB,1\n".encode())
    assert [(e.row, e.column, e.message) for e in parsed.errors] == [(2, "quantity", message)]
    assert parsed.frame["sku"].to_list() == ["B"] and parsed.total_rows == 2


def test_negative_quantities_clamp_to_zero_or_pass_in_adjust_mode(tmp_path):
    data = b"sku,quantity\nA,-3\nB,-2000000\n"
    clamped = feed(tmp_path, data, negative="clamp")
    assert clamped.frame["quantity"].to_list() == [0, 0] and clamped.warnings
    allowed = feed(tmp_path, data, negative="allow")
    assert allowed.frame["quantity"].to_list() == [-3]
    assert allowed.errors[0].message.startswith("quantity is above the maximum")


def test_skus_stay_text_exactly_as_given(tmp_path):
    parsed = feed(tmp_path, b"sku,quantity\n  0017 ,1\n00123,2\n90.750,3\n")
    assert parsed.frame["sku"].to_list() == ["0017", "00123", "90.750"]


def test_empty_and_scientific_skus_are_row_errors(tmp_path):
    parsed = feed(tmp_path, b"sku,quantity\n,1\n1.23E+05,2\n4.5e7,3\n")
    assert [e.message for e in parsed.errors] == [
        "SKU is empty",
        "SKU looks mangled by a spreadsheet (scientific notation)",
        "SKU looks mangled by a spreadsheet (scientific notation)",
    ]


def test_duplicates_are_rejected_on_every_row_and_never_summed(tmp_path):
    parsed = feed(tmp_path, b"sku,quantity,location\nA,1,W1\nA,2,W2\nB,3,W1\nA,4,W1\n")
    assert sorted(e.row for e in parsed.errors) == [2, 5]
    assert "rows 2, 5" in parsed.errors[0].message
    assert parsed.frame.select("sku", "location", "quantity").rows() == [("A", "W2", 2), ("B", "W1", 3)]


def test_duplicates_last_wins_keeps_the_later_row(tmp_path):
    parsed = feed(tmp_path, b"sku,quantity\nA,1\nB,2\nA,9\n", duplicates="last_wins")
    assert parsed.frame.select("row", "sku", "quantity").rows() == [(3, "B", 2), (4, "A", 9)]
    assert parsed.errors == [] and parsed.warnings


@pytest.mark.parametrize(
    ("header", "sku", "qty"),
    [
        ("Custom label (SKU),*Quantity", "Custom label (SKU)", "*Quantity"),
        ("CustomLabel,Qty", "CustomLabel", "Qty"),
        ("Inventory Number,Available quantity", "Inventory Number", "Available quantity"),
        ("Part_Number,quantity-available", "Part_Number", "quantity-available"),
        ("ITEM SKU,stock level", "ITEM SKU", "stock level"),
        ("Seller SKU,Available", "Seller SKU", "Available"),
        ("item_sku,Stock", "item_sku", "Stock"),
        ("Variant SKU,Quantity", "Variant SKU", "Quantity"),
    ],
)
def test_header_aliases_match_case_and_space_insensitively(tmp_path, header, sku, qty):
    parsed = feed(tmp_path, f"{header}\nX,1\n".encode())
    assert parsed.frame["quantity"].to_list() == [1]
    bad = feed(tmp_path, f"{header}\n,z\n".encode())
    assert [e.column for e in bad.errors] == [sku, qty]


def test_shopify_prefers_on_hand_new_and_skips_not_stocked(tmp_path):
    data = (b"Handle,SKU,Location,Available (not editable),On hand (current),On hand (new)\n"
            b"tee,T-S,Shop,4,5,6\ntee,T-M,Shop,not stocked,Not stocked,Not stocked\n")
    parsed = feed(tmp_path, data)
    assert parsed.frame.select("sku", "quantity", "location").rows() == [("T-S", 6, "Shop")]
    assert parsed.total_rows == 1 and parsed.errors == []


def test_an_explicit_mapping_wins_over_aliases(tmp_path):
    data = b"Artikel,Bestand,quantity\nA,7,99\n"
    parsed = feed(tmp_path, data, columns={"sku": "Artikel", "quantity": "Bestand"})
    assert parsed.frame.select("sku", "quantity").rows() == [("A", 7)]


def test_a_mapped_header_missing_from_the_file_is_a_feed_error(tmp_path):
    with pytest.raises(FeedError, match="'Bestand' mapped to quantity"):
        feed(tmp_path, b"sku,quantity\nA,1\n", columns={"quantity": "Bestand"})


def test_missing_quantity_column_lists_headers_found_and_accepted_names(tmp_path):
    with pytest.raises(FeedError) as caught:
        feed(tmp_path, b"sku,price\nA,1\n")
    assert "'sku', 'price'" in str(caught.value) and "Stock Level" in str(caught.value)


def test_missing_sku_column_lists_headers_found(tmp_path):
    with pytest.raises(FeedError, match="no header row with a SKU column.*'code', 'qty'"):
        feed(tmp_path, b"code,qty\nA,1\n")


def test_naive_as_of_values_are_in_the_source_timezone(tmp_path):
    data = b"sku,quantity,as_of\nA,1,2024-07-01 12:00\nB,1,2024-07-01\nC,1,2024-07-01T12:00:00Z\nD,1,yesterday\nE,1,\n"
    parsed = feed(tmp_path, data, timezone="Europe/Berlin")
    stamps = [v.isoformat() if v else None for v in parsed.frame["as_of"].to_list()]
    assert stamps == ["2024-07-01T10:00:00+00:00", "2024-06-30T22:00:00+00:00",
                      "2024-07-01T12:00:00+00:00", None]
    assert [(e.row, e.column) for e in parsed.errors] == [(5, "as_of")]


def test_a_million_rows_parse_fast(tmp_path):
    import time

    path = tmp_path / "big.csv"
    n = 1_000_000
    pl.DataFrame({"sku": [f"S{i:07d}" for i in range(n)], "quantity": [str(i % 97) for i in range(n)]}).write_csv(path)
    started = time.perf_counter()
    parsed = parse_feed(path, ParseOptions())
    elapsed = time.perf_counter() - started
    assert parsed.frame.height == n and parsed.errors == []
    assert elapsed < 3.0, f"1M rows took {elapsed:.2f} s"


def test_a_file_mixing_utf8_and_cp1252_is_rejected_naming_the_first_line_that_is_not_utf8(tmp_path):
    data = "sku,quantity\nMÜLLER-UTF8,1\nOK,2\n".encode() + "MÜLLER-1252,3\n".encode("cp1252") + b"Z,4\n"
    with pytest.raises(FeedError, match=r"mixes encodings: it has UTF-8 text, but line 4 is not UTF-8 "
                                        r"\(byte 0xDC at column 2\)"):
        feed(tmp_path, data)


def test_a_whole_cp1252_file_still_decodes_with_the_warning(tmp_path):
    parsed = feed(tmp_path, "sku,quantity\nMÜLLER,1\nCAFÉ,2\n".encode("cp1252"))
    assert parsed.frame["sku"].to_list() == ["MÜLLER", "CAFÉ"]
    assert parsed.encoding == "cp1252" and parsed.warnings == ["decoded as CP-1252 (not valid UTF-8)"]


def test_a_line_of_many_megabytes_without_a_break_is_not_a_csv_feed(tmp_path):
    with pytest.raises(FeedError, match=r"^line 1 is 20 MB long without a line break: this is not a CSV feed$"):
        feed(tmp_path, b"x" * 20_000_000)


def test_a_long_preamble_line_is_named_by_its_number(tmp_path):
    with pytest.raises(FeedError, match=r"^line 2 is 1\.5 MB long: this is not a CSV feed$"):
        feed(tmp_path, b"# report\n" + b"y" * 1_500_000 + b"\nsku,quantity\nA,1\n")


def test_a_header_with_too_many_columns_is_not_a_csv_feed(tmp_path):
    header = ",".join(["sku", "quantity", *(f"c{i}" for i in range(99_998))])
    with pytest.raises(FeedError, match=r"^line 1 has 100,000 fields \(at most 1,000 are read\): this is not a CSV"):
        feed(tmp_path, header.encode() + b"\nA,1\n")


def test_a_long_single_field_line_under_the_limit_is_just_not_a_header(tmp_path):
    # csv's own field limit (128 KB) used to turn this into "the parser failed".
    with pytest.raises(FeedError, match="no header row with a SKU column"):
        feed(tmp_path, b"z" * 300_000 + b"\n" + b'"unclosed' * 20_000 + b"\n")


def test_a_huge_field_in_the_body_is_a_row_error_that_shows_only_its_start(tmp_path):
    parsed = feed(tmp_path, b"sku,quantity\nA,1\n" + b"B" * 3_000_000 + b",1\n")
    [error] = parsed.errors
    assert error.message == "SKU is 3000000 characters long, over the limit of 100 (max_sku_length)"
    assert error.value == "B" * 1000 + "\u2026 (3,000,000 characters)" and error.sku == error.value
    assert parsed.frame["sku"].to_list() == ["A"]


def test_a_reader_error_quoting_a_huge_field_is_cut_short(tmp_path):
    with pytest.raises(FeedError) as caught:
        feed(tmp_path, b'sku,quantity\nA,1\n"' + b"C" * 2_000_000 + b"\n")
    assert len(str(caught.value)) < 400 and "characters)" in str(caught.value)


def test_a_message_quoting_the_file_s_fields_cuts_them_short(tmp_path):
    with pytest.raises(FeedError) as caught:
        feed(tmp_path, b"z" * 500_000 + b"\n" + b",".join(b"h%d" % i for i in range(100)) + b"\n")
    message = str(caught.value)
    assert len(message) < 600
    assert "'" + "z" * 80 + "'\u2026 (500,000 characters)" in message
