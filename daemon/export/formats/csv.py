"""Generic CSV: the columns a merchant asks for, header row first.

This is the export people open in a spreadsheet, so it is the one format that
escapes formulas by default: a text cell that starts with ``= + - @``, a tab
or a carriage return gets a leading apostrophe (OWASP's CSV-injection advice),
because Excel and LibreOffice would otherwise run ``=HYPERLINK(...)`` as a
formula. The apostrophe changes the cell text ("-5" is written "'-5"), so a
tool that reads the file as data sees a different SKU; such a tool should set
``escape_formulas = "false"``. The marketplace formats are uploaded, never
opened, and do not escape.

Options (all strings):

- ``columns``: comma-separated frame columns to write, in order; default ``sku,quantity``;
- ``delimiter``: one ASCII character; default ``,``;
- ``escape_formulas``: anything but ``"false"`` escapes (the safe side wins a typo).

Lines end in "\\n", as in every export format: one rule for all of them, and
every CSV reader accepts it. Fields are quoted only where they need it.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from daemon.export.formats import Format, csv_bytes

# The same triggers as daemon.formats.cells (the ingest side unescapes them on
# the way back in); export/formats may not import daemon.formats, and a test
# checks that the two rules agree.
FORMULA_PATTERN = "^[=+\\-@\t\r]"


def write(lines: pl.DataFrame, options: Mapping[str, str]) -> bytes:
    columns = _columns(options.get("columns", "sku,quantity"), lines.columns)
    delimiter = options.get("delimiter", ",")
    if len(delimiter) != 1 or not delimiter.isascii() or delimiter in "\"\r\n":
        raise ValueError(f"the csv delimiter must be one ASCII character other than a quote or newline: {delimiter!r}")
    frame = lines.select(columns)
    if options.get("escape_formulas", "true") != "false":
        frame = escape_formulas(frame)
    return csv_bytes(frame, separator=delimiter)


def escape_formulas(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with every text cell a spreadsheet would run as a formula prefixed by ``'``."""
    text = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    text = [name for name in text if frame.select(_may_start_a_formula(pl.col(name)).any()).item()]
    return frame.with_columns(
        pl.when(pl.col(n).str.contains(FORMULA_PATTERN)).then("'" + pl.col(n)).otherwise(pl.col(n)).alias(n)
        for n in text)


def _may_start_a_formula(cell: pl.Expr) -> pl.Expr:
    """True for every cell FORMULA_PATTERN matches, and for a few more (``,`` ``>`` ``?``, control characters).

    A pre-check: string comparisons (bytewise, on the prefix polars keeps
    beside each string) are twice as fast as the anchored regex, and almost
    no feed has a cell that passes it, so the regex runs on almost none.
    """
    return (cell < " ") | ((cell >= "+") & (cell < ".")) | ((cell >= "=") & (cell < "A"))


def _columns(spec: str, available: list[str]) -> list[str]:
    names = [name.strip() for name in spec.split(",")]
    unknown = [name for name in names if name not in available]
    if unknown:
        raise ValueError(f"unknown csv column(s) {', '.join(map(repr, unknown))}; "
                         f"the available columns are {', '.join(map(repr, available))}")
    if len(set(names)) != len(names):
        raise ValueError(f"a csv column is named twice in {spec!r}")
    return names


# Annotated: mypy cannot infer it through the import cycle with the package's registry.
FORMAT: Format = Format("csv", "csv", write, "Generic CSV of the chosen columns, formula cells escaped for spreadsheets")
