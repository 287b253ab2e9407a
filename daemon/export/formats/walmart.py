"""Walmart's inventory feed (feedType=inventory, version 1.4) as JSON.

polars encodes each item (``{"sku": ..., "quantity": {"unit": "EACH", "amount": n}}``)
as one line of NDJSON, escaping quotes, backslashes and control characters as
JSON requires; we only put the lines between brackets, one item per line so a
feed reads (and diffs) by eye. A raw newline never occurs inside a JSON
string, so turning NDJSON's newlines into ",\\n" cannot touch a SKU. Non-ASCII
text stays UTF-8. The file ends in "\\n".
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from daemon.export.formats import Format

_HEAD = b'{"InventoryHeader":{"version":"1.4"},"Inventory":[\n'
_TAIL = b"]}\n"


def write(lines: pl.DataFrame, options: Mapping[str, str]) -> bytes:
    items = lines.select(pl.col("sku"), pl.struct(unit=pl.lit("EACH"), amount=pl.col("quantity")).alias("quantity"))
    body = items.write_ndjson().encode()
    if not body:
        return _HEAD + _TAIL
    return _HEAD + body[:-1].replace(b"\n", b",\n") + b"\n" + _TAIL


# Annotated: mypy cannot infer it through the import cycle with the package's registry.
FORMAT: Format = Format("walmart_json", "json", write, "Walmart inventory feed JSON (version 1.4), quantities in EACH")
