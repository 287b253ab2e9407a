"""XLSX feeds made with openpyxl, read through calamine."""

from __future__ import annotations

import datetime
import zipfile
from pathlib import Path

import openpyxl
import pytest

from daemon.errors import FeedError
from daemon.formats.feeds import ParseOptions, parse_feed


def workbook(tmp_path: Path, rows: list[list[object]], *, title: str = "Sheet1", start_row: int = 1,
             extra_sheets: dict[str, list[list[object]]] | None = None) -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = title
    for r, values in enumerate(rows, start=start_row):
        for c, value in enumerate(values, start=1):
            if value is not None:
                sheet.cell(row=r, column=c, value=value)
    for name, other in (extra_sheets or {}).items():
        extra = book.create_sheet(name)
        for values in other:
            extra.append(values)
    path = tmp_path / "feed.xlsx"
    book.save(path)
    return path


def test_numeric_sku_cells_lose_the_trailing_dot_zero(tmp_path):
    path = workbook(tmp_path, [["SKU", "Quantity"], [12345, 5], [12345.0 + 1, 5.0], ["0017", 2]])
    parsed = parse_feed(path, ParseOptions())
    assert parsed.frame.select("sku", "quantity").rows() == [("12345", 5), ("12346", 5), ("0017", 2)]
    assert parsed.sheet == "Sheet1" and parsed.encoding is None


def test_a_text_cell_in_scientific_notation_is_a_row_error(tmp_path):
    path = workbook(tmp_path, [["sku", "quantity"], ["1.23E+05", 1], ["OK", 1]])
    parsed = parse_feed(path, ParseOptions())
    assert [(e.row, e.message) for e in parsed.errors] == [
        (2, "SKU looks mangled by a spreadsheet (scientific notation)")]


def test_dates_formulas_and_error_cells_in_unused_columns_do_not_fail_the_sheet(tmp_path):
    path = workbook(tmp_path, [
        ["sku", "quantity", "Notes", "Seen"],
        ["A", 1, "=1/0", datetime.datetime(2024, 5, 1)],
        ["B", 2, "#NAME?", datetime.date(2024, 5, 2)],
    ])
    book = openpyxl.load_workbook(path)
    book.active["C3"].data_type = "e"
    book.save(path)
    parsed = parse_feed(path, ParseOptions())
    assert parsed.errors == [] and parsed.frame["sku"].to_list() == ["A", "B"]


def test_an_error_cell_in_a_used_column_is_a_row_error(tmp_path):
    path = workbook(tmp_path, [["sku", "quantity"], ["A", "#N/A"], ["B", 3]])
    book = openpyxl.load_workbook(path)
    book.active["B2"].data_type = "e"
    book.save(path)
    parsed = parse_feed(path, ParseOptions())
    assert [(e.row, e.column, e.value) for e in parsed.errors] == [(2, "quantity", "#N/A")]
    assert parsed.frame["sku"].to_list() == ["B"]


def test_date_cells_in_the_as_of_column_are_read_in_the_source_timezone(tmp_path):
    path = workbook(tmp_path, [["sku", "quantity", "As Of"], ["A", 1, datetime.datetime(2024, 1, 15, 9, 30)]])
    parsed = parse_feed(path, ParseOptions(timezone="America/New_York"))
    assert parsed.frame["as_of"][0].isoformat() == "2024-01-15T14:30:00+00:00"


def test_row_numbers_count_leading_empty_rows_and_a_preamble(tmp_path):
    path = workbook(tmp_path, [["Weekly stock"], [], ["sku", "quantity"], ["A", 1], ["B", "x"]], start_row=3)
    parsed = parse_feed(path, ParseOptions())
    assert parsed.frame["row"].to_list() == [6]
    assert [(e.row, e.value) for e in parsed.errors] == [(7, "x")]


def test_the_sheet_option_picks_by_name_or_index_and_first_is_default(tmp_path):
    path = workbook(tmp_path, [["sku", "quantity"], ["FIRST", 1]],
                    extra_sheets={"Second": [["sku", "quantity"], ["SECOND", 2]]})
    assert parse_feed(path, ParseOptions()).frame["sku"].to_list() == ["FIRST"]
    assert parse_feed(path, ParseOptions(sheet="Second")).frame["sku"].to_list() == ["SECOND"]
    assert parse_feed(path, ParseOptions(sheet=1)).sheet == "Second"
    with pytest.raises(FeedError, match="sheet 'Nope' not found.*'Sheet1', 'Second'"):
        parse_feed(path, ParseOptions(sheet="Nope"))


def test_an_xlsx_that_is_not_a_zip_is_a_feed_error(tmp_path):
    path = tmp_path / "feed.xlsx"
    path.write_bytes(b"sku,quantity\nA,1\n")
    with pytest.raises(FeedError, match="not a zip"):
        parse_feed(path, ParseOptions())


def test_a_password_protected_workbook_is_a_feed_error(tmp_path):
    path = tmp_path / "feed.xlsx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504) + "EncryptedPackage".encode("utf-16-le"))
    with pytest.raises(FeedError, match="password-protected"):
        parse_feed(path, ParseOptions())


def test_a_damaged_legacy_xls_says_the_xls_could_not_be_read(tmp_path):
    path = tmp_path / "feed.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))
    with pytest.raises(FeedError, match=r"^the \.xls file could not be read: "):
        parse_feed(path, ParseOptions())


def test_a_zip_bomb_is_refused_before_inflating(tmp_path):
    path = workbook(tmp_path, [["sku", "quantity"], ["A", 1]])
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/media/padding.bin", bytes(5 * 1024 * 1024))
    with pytest.raises(FeedError, match="zip bomb"):
        parse_feed(path, ParseOptions(max_uncompressed_bytes=1024 * 1024))


def test_a_zip_that_is_no_workbook_is_a_feed_error(tmp_path):
    path = tmp_path / "feed.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(FeedError, match="not a spreadsheet workbook"):
        parse_feed(path, ParseOptions())


def test_a_sheet_without_a_sku_header_is_a_feed_error(tmp_path):
    path = workbook(tmp_path, [["code", "qty"], ["A", 1]])
    with pytest.raises(FeedError, match="no header row with a SKU column.*'code', 'qty'"):
        parse_feed(path, ParseOptions())


def test_a_sheet_without_empty_or_error_cells_is_read_without_loading_pyarrow(tmp_path):
    # pyarrow is needed only for error records (xlsx.read_sheet); a worker
    # that never sees such a sheet stays about 30 MB smaller.
    import subprocess
    import sys

    path = workbook(tmp_path, [["sku", "quantity"], ["A", 1], ["B", 2]])
    probe = ("import sys; from pathlib import Path; from daemon.formats.feeds import parse_feed, ParseOptions; "
             f"f = parse_feed(Path({str(path)!r}), ParseOptions()); "
             "print(f.total_rows, 'pyarrow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2", "False"]


def test_empty_cells_beside_an_error_cell_keep_the_error_text(tmp_path):
    path = workbook(tmp_path, [["sku", "quantity", "note"], ["A", "#REF!", None], ["B", 3, "x"], ["C", None, None]])
    book = openpyxl.load_workbook(path)
    book.active["B2"].data_type = "e"
    book.save(path)
    parsed = parse_feed(path, ParseOptions())
    assert [(e.row, e.column, e.value) for e in parsed.errors][:1] == [(2, "quantity", "#REF!")]
    assert parsed.frame["sku"].to_list() == ["B"]
