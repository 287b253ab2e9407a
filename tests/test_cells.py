"""The formula escape over polars columns says what ``escape_cell`` says, cell by cell."""

from __future__ import annotations

import re

import polars as pl
from hypothesis import example, given, settings
from hypothesis import strategies as st

from daemon.formats.cells import (
    _TRIGGERS,
    FORMULA_PATTERN,
    UNESCAPE_PATTERN,
    escape_cell,
    escape_text_columns,
    unescape_text_columns,
)

TRICKY = ["=1+1", "+44", "-5MM", "@SUM", "\tTAB", "\rCR", "'=done", "", " =x", "0017", "A,B",
          "é=", "=", "@", "?", ",x", "\n=", "ABC", "~", None]

cells = st.none() | st.text() | st.builds(lambda t, s: t + s, st.sampled_from(_TRIGGERS), st.text())


def test_the_column_escape_matches_escape_cell_on_tricky_cells() -> None:
    frame = pl.DataFrame({"text": TRICKY, "n": range(len(TRICKY))},
                         schema={"text": pl.Utf8, "n": pl.Int64})
    out = escape_text_columns(frame, "text")
    assert out.columns == ["text", "n"]
    assert out.get_column("text").to_list() == [escape_cell(v) for v in TRICKY]
    assert frame.get_column("text").to_list() == TRICKY  # the frame handed in is left alone


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(cells, cells), max_size=20))
def test_escaping_columns_is_escaping_each_cell(pairs: list[tuple[str | None, str | None]]) -> None:
    frame = pl.DataFrame(pairs, schema={"a": pl.Utf8, "b": pl.Utf8}, orient="row")
    out = escape_text_columns(frame, "a", "b")
    assert out.columns == ["a", "b"]
    assert out.rows() == [(escape_cell(a), escape_cell(b)) for a, b in pairs]


def test_a_column_with_nothing_to_escape_is_left_as_it_is() -> None:
    frame = pl.DataFrame({"sku": ["SKU-1", "0017", "?x", None], "error": [None, None, None, "=x"]})
    out = escape_text_columns(frame, "sku", "error")
    assert out.get_column("sku").to_list() == ["SKU-1", "0017", "?x", None]
    assert out.get_column("error").to_list() == [None, None, None, "'=x"]


@example("'=done")
@example("é")
@given(cells.filter(lambda v: v is not None))
def test_the_patterns_match_exactly_what_escape_cell_escapes(text: str) -> None:
    escapes = escape_cell(text) != text
    assert (re.match(FORMULA_PATTERN, text) is not None) == escapes
    assert (re.match(UNESCAPE_PATTERN, "'" + text) is not None) == escapes
    column = pl.Series([text, "'" + text], dtype=pl.Utf8)
    assert column.str.contains(FORMULA_PATTERN).to_list() == [escapes, False]
    assert column.str.contains(UNESCAPE_PATTERN).to_list()[1] == escapes


@settings(max_examples=200, deadline=None)
@given(st.lists(cells, max_size=30))
def test_unescaping_what_we_escaped_gives_back_every_cell(values) -> None:  # type: ignore[no-untyped-def]
    # A cell that was escaped on the way out reads back as it was; any other
    # cell (one that merely starts with an apostrophe) is left alone.
    frame = pl.DataFrame({"text": values}, schema={"text": pl.Utf8})
    back = unescape_text_columns(escape_text_columns(frame, "text"), "text")
    # (A cell that already looked escaped, "'=done", loses its apostrophe: the scheme cannot tell.)
    expected = [v[1:] if isinstance(v, str) and re.match(UNESCAPE_PATTERN, v) else v for v in values]
    assert back.get_column("text").to_list() == expected
