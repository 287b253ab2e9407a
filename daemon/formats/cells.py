"""Spreadsheet-safe text cells for every file Stockdrop writes.

A cell that starts with ``= + - @`` (or a tab or carriage return) is run as
a formula by Excel and LibreOffice: CSV injection. Such text gets a leading
apostrophe, which spreadsheets show as text and do not evaluate.

``escape_cell`` is the rule for one value, ``escape_text_columns`` the same
rule over polars columns, for files of a million rows, and
``unescape_text_columns`` its reverse for files coming back. All, and the
patterns, are built from ``_TRIGGERS``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")

# re.escape keeps "-" from making a range; Python's re and polars read the result alike.
_TRIGGER_CLASS = "[" + "".join(re.escape(t) for t in _TRIGGERS) + "]"

FORMULA_PATTERN = "^" + _TRIGGER_CLASS
"""Text that a spreadsheet would run: what ``escape_cell`` escapes."""

UNESCAPE_PATTERN = "^'" + _TRIGGER_CLASS
"""A cell we escaped on the way out; reading it back drops the apostrophe."""

# Text that starts with a (one-character) trigger sorts below this. Comparing
# is far cheaper than matching a pattern, and rules out most SKU columns.
_ABOVE_TRIGGERS = chr(ord(max(_TRIGGERS)) + 1)
assert all(len(t) == 1 for t in _TRIGGERS)


def escape_cell(value: object) -> object:
    """Escape text cells; numbers and None pass through unchanged."""
    if isinstance(value, str) and value.startswith(_TRIGGERS):
        return "'" + value
    return value


def escape_text_columns(frame: pl.DataFrame, *names: str) -> pl.DataFrame:
    """``frame`` with ``escape_cell`` applied to its Utf8 columns ``names``.

    A column of a million cells rarely has one to escape: a comparison per
    cell rules most columns out, and only the cells found are rewritten.
    """
    import polars as pl  # here, not at the top: writers without polars need only escape_cell
    low = frame.select([(pl.col(n) < _ABOVE_TRIGGERS).any() for n in names]).row(0)
    suspect = [n for n, hit in zip(names, low, strict=True) if hit]
    if not suspect:
        return frame
    found = frame.select([pl.col(n).str.contains(FORMULA_PATTERN) for n in suspect])
    escaped = []
    for name in suspect:
        at = found.get_column(name).arg_true()
        if not at.is_empty():
            column = frame.get_column(name).clone()
            escaped.append(column.scatter(at, "'" + column.gather(at)))
    return frame.with_columns(escaped) if escaped else frame


def unescape_text_columns(frame: pl.DataFrame, *names: str) -> pl.DataFrame:
    """``frame`` with cells we escaped (``'=SKU``) in the Utf8 columns ``names`` as they were.

    Most files have none: one pattern check per column, and the frame is
    only copied when a column holds one.
    """
    import polars as pl
    found = frame.select([pl.col(n).str.contains(UNESCAPE_PATTERN).any() for n in names]).row(0)
    hit = [n for n, any_ in zip(names, found, strict=True) if any_]
    if not hit:
        return frame
    return frame.with_columns(
        pl.when(pl.col(n).str.contains(UNESCAPE_PATTERN)).then(pl.col(n).str.slice(1)).otherwise(pl.col(n))
        .alias(n) for n in hit)
