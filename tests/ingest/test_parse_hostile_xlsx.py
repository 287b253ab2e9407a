"""Workbooks built to hurt the parser: lying zip bombs, whitespace sheets, formulas, odd packages."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import pytest

from daemon.errors import FeedError
from daemon.formats.feeds import ParseOptions, parse_feed
from daemon.ingest.contained import ParserPool
from sample_files import hostile

SHEET = "xl/worksheets/sheet1.xml"
ROWS: list[list[object]] = [["sku", "quantity"], ["A-1", 4], ["B-2", 5]]


def plain(tmp_path: Path, rows: list[list[object]] = ROWS, **kw: object) -> Path:
    return hostile.write_xlsx(tmp_path / "feed.xlsx", hostile.sheet_parts(rows), **kw)  # type: ignore[arg-type]


def test_a_sheet_that_inflates_beyond_its_declared_size_is_refused_while_inflating(tmp_path):
    path = hostile.lying_bomb(tmp_path / "bomb.xlsx", inflates_to=64 * 1024 * 1024, declares=2_000_000)
    # The declarations are within every limit: only counting what comes out catches it.
    with pytest.raises(FeedError, match=r"declares 2,000,000 bytes but inflates to more \(possible zip bomb\)"):
        parse_feed(path, ParseOptions(max_inflation_ratio=1_000_000))


def test_a_lying_bomb_is_rejected_inside_a_small_memory_limit(tmp_path):
    # 1 GB of inflated sheet against a worker allowed 256 MB more than idle:
    # the file is refused for what it is, not for running out of memory.
    path = hostile.lying_bomb(tmp_path / "bomb.xlsx", inflates_to=1024 * 1024 * 1024)
    with ParserPool(1, memory_bytes=256 * 1024 * 1024) as pool, \
            pytest.raises(FeedError, match="possible zip bomb") as caught:
        pool.parse(path, ParseOptions(max_uncompressed_bytes=2 * 1024**3, max_inflation_ratio=1e9))
    assert "memory" not in str(caught.value)


def test_a_checksum_that_does_not_match_rejects_the_file(tmp_path):
    path = plain(tmp_path)
    hostile.patch_member(path, SHEET, crc=0x12345678)
    with pytest.raises(FeedError, match=r"checksum \(CRC-32\) of 'xl/worksheets/sheet1.xml' does not match"):
        parse_feed(path, ParseOptions())


def test_local_and_central_headers_that_disagree_reject_the_file(tmp_path):
    path = plain(tmp_path)
    hostile.patch_member(path, "xl/workbook.xml", size=10, local_only=True)
    with pytest.raises(FeedError, match="zip headers disagree about 'xl/workbook.xml'"):
        parse_feed(path, ParseOptions())


def test_a_declared_size_larger_than_the_contents_rejects_the_file(tmp_path):
    path = plain(tmp_path)
    hostile.patch_member(path, SHEET, size=10_000)
    with pytest.raises(FeedError, match=r"declares 10,000 bytes but holds"):
        parse_feed(path, ParseOptions())


def test_the_inflation_ratio_is_counted_as_the_archive_inflates(tmp_path):
    path = hostile.whitespace_sheet(tmp_path / "ws.xlsx", 40 * 1024 * 1024)
    with pytest.raises(FeedError, match=r"inflates to more than 100 times its size .*max_inflation_ratio"):
        parse_feed(path, ParseOptions(max_inflation_ratio=100))


def test_whitespace_before_the_first_row_is_read_with_the_right_row_numbers(tmp_path):
    # The old first-row search re-scanned a growing buffer: quadratic in the padding.
    path = hostile.write_xlsx(tmp_path / "ws.xlsx", hostile.sheet_parts(
        [["sku", "quantity"], ["WS-1", 3], ["WS-2", "x"]], padding=24 * 1024 * 1024 + 7, start_row=4))
    parsed = parse_feed(path, ParseOptions(max_inflation_ratio=1e6))
    assert parsed.frame.select("row", "sku", "quantity").rows() == [(5, "WS-1", 3)]
    assert [(e.row, e.value) for e in parsed.errors] == [(6, "x")]


def test_a_tag_cut_by_a_chunk_of_whitespace_still_counts(tmp_path):
    # The scan reads 1 MB chunks: "<row" ends the first, the second is all
    # whitespace (skipped), and the row's attributes open the third.
    head = b'<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    head += b"<sheetData>"
    first = head + b" " * ((1 << 20) - len(head) - 4) + b"<row"
    rest = (b' r="3"><c r="A3" t="inlineStr"><is><t>sku</t></is></c><c r="B3" t="inlineStr"><is><t>quantity</t>'
            b'</is></c></row><row r="4"><c r="A4" t="inlineStr"><is><t>Q</t></is></c><c r="B4"><v>2</v></c></row>'
            b"</sheetData></worksheet>")
    path = hostile.write_xlsx(tmp_path / "cut.xlsx", iter([first, b" " * (1 << 20), rest]))
    parsed = parse_feed(path, ParseOptions(max_inflation_ratio=1e6))
    assert parsed.frame.select("row", "sku").rows() == [(4, "Q")]


def test_formula_cells_in_the_sku_and_quantity_columns_are_row_errors_naming_the_formula(tmp_path):
    path = plain(tmp_path, [["sku", "quantity", "note"], [("=1+1", 2), 1, None], ["B", ("=SUM(C1:C2)", 6), None],
                            ["C", 3, ("=A1&\"x\"", "skux")]])
    parsed = parse_feed(path, ParseOptions())
    assert [(e.row, e.column, e.value, e.sku) for e in parsed.errors] == [
        (2, "sku", "=1+1", "2"), (3, "quantity", "=SUM(C1:C2)", "B")]
    assert "holds a formula (=1+1)" in parsed.errors[0].message
    assert parsed.frame.select("sku", "quantity").rows() == [("C", 3)]  # a formula in an unused column is fine


def test_formula_cells_are_placed_right_when_the_sheet_starts_at_column_c(tmp_path):
    rows = [[None, None, "sku", "quantity"], [None, None, "OK", 1], [None, None, "F", ("=2*3", 6)]]
    parts = hostile.sheet_parts(rows, start_row=2)
    xml = b"".join(parts).replace(b"<sheetData>", b'<dimension ref="C2:D4"/><sheetData>')
    path = hostile.write_xlsx(tmp_path / "c.xlsx", iter([xml]))
    parsed = parse_feed(path, ParseOptions())
    assert [(e.row, e.column, e.value) for e in parsed.errors] == [(4, "quantity", "=2*3")]


@pytest.mark.parametrize("kw", [{"backslashes": True}, {"minimal": True}], ids=["backslash-paths", "minimal"])
def test_valid_packages_calamine_reads_are_read(tmp_path, kw):
    parsed = parse_feed(plain(tmp_path, **kw), ParseOptions())
    assert parsed.frame.select("sku", "quantity").rows() == [("A-1", 4), ("B-2", 5)]


def test_an_ods_spreadsheet_is_read(tmp_path):
    path = hostile.ods(tmp_path / "stock.ods", ROWS)
    parsed = parse_feed(path, ParseOptions())
    assert parsed.frame.select("row", "sku", "quantity").rows() == [(2, "A-1", 4), (3, "B-2", 5)]


def test_a_damaged_workbook_says_which_format_could_not_be_read(tmp_path):
    path = tmp_path / "stock.xlsb"
    path.write_bytes(b"PK\x03\x04" + bytes(200))
    with pytest.raises(FeedError, match=r"damaged zip archive"):
        parse_feed(path, ParseOptions())
    ods = hostile.ods(tmp_path / "broken.ods", ROWS)
    data = ods.read_bytes()
    with pytest.raises(FeedError, match=r"^the \.ods file could not be read: "):
        # content.xml replaced by text that is no spreadsheet at all
        path = tmp_path / "empty.ods"
        import zipfile
        with zipfile.ZipFile(ods) as src, zipfile.ZipFile(path, "w") as out:
            for info in src.infolist():
                out.writestr(info, b"<nope" if info.filename == "content.xml" else src.read(info))
            assert data
        parse_feed(path, ParseOptions())


def test_the_bomb_helper_declares_a_true_crc(tmp_path):
    # The lying bomb must lie only about its size, so the size check is what catches it.
    path = hostile.lying_bomb(tmp_path / "b.xlsx", inflates_to=3 * 1024 * 1024, declares=1000)
    import zipfile
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(SHEET)
        assert info.file_size == 1000
        raw = path.read_bytes()
        start = info.header_offset + 30 + len(SHEET)
        whole = zlib.decompressobj(-15).decompress(raw[start:start + info.compress_size])
    assert len(whole) == 3 * 1024 * 1024 and zlib.crc32(whole) == info.CRC


def test_formulas_are_found_in_a_sheet_whose_tags_carry_a_namespace_prefix(tmp_path):
    xml = (b'<?xml version="1.0"?><x:worksheet xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
           b'<x:sheetData><x:row r="1"><x:c r="A1" t="inlineStr"><x:is><x:t>sku</x:t></x:is></x:c>'
           b'<x:c r="B1" t="inlineStr"><x:is><x:t>quantity</x:t></x:is></x:c></x:row>'
           b'<x:row r="2"><x:c r="A2" t="str"><x:f>1+1</x:f><x:v>2</x:v></x:c><x:c r="B2"><x:v>1</x:v></x:c></x:row>'
           b"</x:sheetData></x:worksheet>")
    parsed = parse_feed(hostile.write_xlsx(tmp_path / "x.xlsx", iter([xml])), ParseOptions())
    assert [(e.row, e.column, e.value) for e in parsed.errors] == [(2, "sku", "=1+1")]


def _flip_central(path: Path, member: str, at: int, value: bytes) -> None:
    data = bytearray(path.read_bytes())
    entry = hostile._central_entry(bytes(data), member)
    data[entry + at:entry + at + len(value)] = value
    path.write_bytes(bytes(data))


def test_a_central_directory_needing_an_unknown_zip_version_is_a_damaged_archive(tmp_path):
    # Found by the hypothesis property: zipfile raises NotImplementedError for it.
    path = plain(tmp_path)
    _flip_central(path, "xl/workbook.xml", 6, b"\xeb\x00")  # "version needed to extract" 23.5
    with pytest.raises(FeedError, match=r"damaged zip archive \(zip file version 23\.5\)"):
        parse_feed(path, ParseOptions())


def test_an_encrypted_zip_member_is_password_protected(tmp_path):
    path = plain(tmp_path)
    _flip_central(path, SHEET, 8, b"\x01\x00")  # general-purpose flag: encrypted
    with pytest.raises(FeedError, match=r"password-protected \('xl/worksheets/sheet1.xml' is encrypted\)"):
        parse_feed(path, ParseOptions())


@pytest.mark.parametrize("mark", [b"<row", b'<row r="3"', b'<c r="B4" t="str">'],
                         ids=["after-<row", "before->", "between-cell-and-formula"])
def test_the_sheet_scanner_joins_a_tag_cut_across_chunks_and_a_whitespace_chunk(mark):
    # The chunks are cut where XML allows whitespace, as the padding of a real sheet is.
    from daemon.formats import xlsx

    xml = (b'<worksheet><dimension ref="B3:C4"/><sheetData><row r="3"><c r="B3" t="inlineStr"><is><t>sku</t></is>'
           b'</c></row><row r="4"><c r="B4" t="str"><f>1+1</f><v>2</v></c></row></sheetData></worksheet>')
    at = xml.index(mark) + len(mark)
    found = xlsx._Scan()
    scanner = xlsx._scanner(found)
    next(scanner)
    for chunk in (xml[:at], b" " * 4096, xml[at:]):
        scanner.send(chunk)
    assert (found.first_row, found.first_col) == (3, 1)
    assert found.formulas == {(4, 1): "=1+1"}


def test_ods_row_numbers_count_leading_empty_rows_repeats_included(tmp_path):
    path = hostile.ods(tmp_path / "lead.ods", [["sku", "quantity"], ["A", 1], ["B", "x"]])
    with zipfile.ZipFile(path) as source:
        parts = [(info, source.read(info)) for info in source.infolist()]
    empty = (b'<table:table-row table:number-rows-repeated="2"><table:table-cell/></table:table-row>'
             b'<table:table-row table:style-name="ro1"><table:table-cell table:number-columns-repeated="3"/>'
             b"</table:table-row>")
    with zipfile.ZipFile(path, "w") as out:
        for info, content in parts:
            if info.filename == "content.xml":
                content = content.replace(b'<table:table table:name="Sheet1">',
                                          b'<table:table table:name="Sheet1">' + empty, 1)
            out.writestr(info, content)
    parsed = parse_feed(path, ParseOptions())
    assert parsed.frame.select("row", "sku").rows() == [(5, "A")]
    assert [(e.row, e.value) for e in parsed.errors] == [(6, "x")]


def test_a_formula_left_empty_in_an_otherwise_blank_row_is_a_blank_row(tmp_path):
    # Found by the hypothesis property: it was an error for a row that is not counted.
    path = plain(tmp_path, [["sku", "quantity"], ["A", 1], [("=B9", ""), None], ["C", 3]])
    parsed = parse_feed(path, ParseOptions())
    assert parsed.errors == [] and parsed.frame["sku"].to_list() == ["A", "C"] and parsed.total_rows == 2
