"""Properties of the feed readers over generated files: a parse or a clear error, never a crash.

Whatever bytes a sender uploads, ``parse_feed`` returns a ParsedFeed (good
rows plus RowErrors) or raises FeedError; any other exception would reach the
user as "the parser failed". Example counts stay small so the suite stays
fast; the deadline only bounds a runaway example, it is not a timing test.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from datetime import timedelta
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.errors import FeedError
from daemon.formats.feeds import ParsedFeed, ParseOptions, RowError, parse_feed
from daemon.formats.validate import OUTPUT_SCHEMA
from sample_files import hostile

BOUNDED = settings(max_examples=60, deadline=timedelta(seconds=20), derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

HEADERS = ["sku", "SKU", "Item SKU", "quantity", "Qty", "Stock Level", "location", "as_of", "price", "note", ""]
ENCODINGS = ["utf-8", "utf-8-sig", "cp1252", "utf-16", "latin-1", "utf-16-le"]
# Cells: ordinary values, numbers in odd spellings, quotes, delimiters, control
# characters, spreadsheet errors, and now and then a huge field.
CELL = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["5", "-2", "1,200", "1.200", "5,0", "1.23E+05", "#N/A", "=1+1", '"q"', "not stocked",
                     "2024-05-01T10:00:00Z", "2024-13-45", " 7 ", "\t", "\r\n", '"', "0017"]),
    st.integers(min_value=-10**20, max_value=10**20).map(str),
    st.builds(lambda n: "Z" * n, st.integers(min_value=100_000, max_value=300_000)),
)


def check(path: Path, options: ParseOptions | None = None) -> None:
    try:
        parsed = parse_feed(path, options or ParseOptions())
    except FeedError as exc:
        assert str(exc)  # a reason, in words
        return
    assert isinstance(parsed, ParsedFeed)
    assert parsed.frame.schema == OUTPUT_SCHEMA
    assert all(isinstance(e, RowError) and e.message for e in parsed.errors)
    # A row is either good or an error, never both, and never more rows than read.
    failed = {e.row for e in parsed.errors}
    assert not failed & set(parsed.frame["row"].to_list())
    assert parsed.frame.height + len(failed - {None}) <= parsed.total_rows
    assert parsed.frame.filter(pl.col("sku").is_null()).height == 0


def quote(cell: str, delimiter: str, how: str) -> str:
    if how == "always" or (how == "needed" and any(c in cell for c in (delimiter, '"', "\n", "\r"))):
        return '"' + cell.replace('"', '""') + '"'
    return cell  # "never": a broken file, as some exporters write them


@st.composite
def delimited(draw: st.DrawFn) -> bytes:
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    how = draw(st.sampled_from(["needed", "always", "never"]))
    width = draw(st.one_of(st.integers(1, 6), st.integers(900, 1100)))  # sometimes too many columns
    header = draw(st.lists(st.sampled_from(HEADERS), min_size=width, max_size=width))
    rows = draw(st.lists(st.lists(CELL, min_size=0, max_size=width + 2), max_size=8))
    preamble = draw(st.lists(st.sampled_from(["#INFO,x", "Stock report", ""]), max_size=2))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    lines = [*preamble, delimiter.join(quote(h, delimiter, how) for h in header)]
    lines += [delimiter.join(quote(c, delimiter, how) for c in row) for row in rows]
    text = newline.join(lines) + draw(st.sampled_from(["", newline]))
    encoding = draw(st.sampled_from(ENCODINGS))
    data = text.encode(encoding, errors="replace")
    # Junk bytes spliced in somewhere, now and then.
    junk = draw(st.binary(max_size=6))
    at = draw(st.integers(0, len(data)))
    return data[:at] + junk + data[at:] if draw(st.booleans()) else data


@BOUNDED
@given(data=delimited(), suffix=st.sampled_from([".csv", ".tsv", ".txt"]))
def test_any_delimited_file_parses_or_is_a_clear_error(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"feed{suffix}"
        path.write_bytes(data)
        check(path)


@BOUNDED
@given(data=st.binary(max_size=4096))
def test_any_bytes_at_all_parse_or_are_a_clear_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for name in ("junk.csv", "junk.xlsx"):
            path = Path(folder) / name
            path.write_bytes(data)
            check(path)


SHEET_CELL = st.one_of(
    st.none(), st.integers(-10**12, 10**12), st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=10),
    st.sampled_from(["sku", "quantity", "#REF!", "1.23E+05", "0017"]),
    st.tuples(st.sampled_from(["=1+1", "=A1", "=SUM(B1:B3)"]), st.sampled_from(["2", "x", ""])),
)


@st.composite
def workbooks(draw: st.DrawFn) -> bytes:
    header = draw(st.lists(st.sampled_from(HEADERS), min_size=1, max_size=5))
    rows = draw(st.lists(st.lists(SHEET_CELL, max_size=6), max_size=8))
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "w.xlsx"
        hostile.write_xlsx(path, hostile.sheet_parts(
            [list(header), *rows], padding=draw(st.sampled_from([0, 0, 5000])),
            start_row=draw(st.integers(1, 4))), minimal=draw(st.booleans()), backslashes=draw(st.booleans()))
        buffer.write(path.read_bytes())
    data = bytearray(buffer.getvalue())
    # Damage: flipped bytes anywhere (headers, CRCs, deflate data), or a cut.
    for at in draw(st.lists(st.integers(0, len(data) - 1), max_size=3)):
        data[at] ^= 0xFF
    if draw(st.booleans()) and draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    return bytes(data)


@BOUNDED
@given(data=workbooks())
def test_any_workbook_damaged_or_not_parses_or_is_a_clear_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "feed.xlsx"
        path.write_bytes(data)
        check(path)
        if zipfile.is_zipfile(path):
            check(path, ParseOptions(max_uncompressed_bytes=4096, max_inflation_ratio=1.5))
