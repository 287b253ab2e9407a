"""eBay Seller Hub / File Exchange revise CSV: one ``Revise`` row per SKU.

The first header cell is the action with its parameters, which eBay reads
instead of asking: ``Action(SiteID=US|Country=US|Currency=USD|Version=1193|CC=UTF-8)``.
``spelling = "legacy"`` writes the older File Exchange header (``*Action(...)``,
``CustomLabel``, ``*Quantity``), for accounts that still upload there.

Options: ``site_id`` (default ``US``), ``country`` (``US``), ``currency``
(``USD``), ``spelling`` (``legacy`` or anything else for Seller Hub). The
parameters must be letters and digits: a ``|`` or ``)`` would break the header.

No formula escaping: the file is uploaded, and an apostrophe would change
the SKU. Lines end in "\\n", as in every export format.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import polars as pl

from daemon.export.formats import Format, csv_bytes

VERSION = "1193"
_PARAMETER = re.compile(r"[A-Za-z0-9]+")


def write(lines: pl.DataFrame, options: Mapping[str, str]) -> bytes:
    parameters = {"SiteID": options.get("site_id", "US"), "Country": options.get("country", "US"),
                  "Currency": options.get("currency", "USD")}
    for key, value in parameters.items():
        if not _PARAMETER.fullmatch(value):
            raise ValueError(f"the eBay {key} must be letters and digits: {value!r}")
    action = "Action(" + "|".join(f"{k}={v}" for k, v in parameters.items()) + f"|Version={VERSION}|CC=UTF-8)"
    if options.get("spelling") == "legacy":
        header = ("*" + action, "CustomLabel", "*Quantity")
    else:
        header = (action, "Custom label (SKU)", "Quantity")
    frame = lines.select(pl.lit("Revise").alias(header[0]), pl.col("sku").alias(header[1]),
                         pl.col("quantity").alias(header[2]))
    return csv_bytes(frame)


# Annotated: mypy cannot infer it through the import cycle with the package's registry.
FORMAT: Format = Format("ebay_revise", "csv", write, "eBay Seller Hub / File Exchange CSV revising quantities by SKU")
