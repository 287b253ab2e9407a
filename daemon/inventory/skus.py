"""SKUs as spreadsheets mangle them."""

from __future__ import annotations

import re

DECIMAL_ZERO = re.compile(r"^(\d+)\.0+$")
_LEADING_ZEROS = re.compile(r"^0+(?=\d)")


def spreadsheet_key(sku: str) -> str:
    """What a spreadsheet leaves of a SKU: leading zeros dropped (``0017`` -> ``17``,
    ``0012-CT-BLK`` -> ``12-CT-BLK``), a whole number given a ``.0`` (``123.0``).

    Two SKUs with one key may be one SKU, once mangled; an unknown SKU whose key
    is a catalogue SKU's names that SKU in its row error.
    """
    return _LEADING_ZEROS.sub("", DECIMAL_ZERO.sub(r"\1", sku))
