"""Spreadsheet-safe text cells for every file Stockdrop writes.

A cell that starts with ``= + - @`` (or a tab or carriage return) is run as
a formula by Excel and LibreOffice: CSV injection. Such text gets a leading
apostrophe, which spreadsheets show as text and do not evaluate.
"""

from __future__ import annotations

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(value: object) -> object:
    """Escape text cells; numbers and None pass through unchanged."""
    if isinstance(value, str) and value.startswith(_TRIGGERS):
        return "'" + value
    return value


UNESCAPE_PATTERN = r"^'[=+\-@\t\r]"
"""A cell we escaped on the way out; reading it back drops the apostrophe."""
