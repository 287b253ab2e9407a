"""Shopify's inventory CSV, as its import takes it: ``On hand (new)`` per variant and location.

The file is the inventory export's own shape (Handle, the option values,
SKU, Location, the quantity columns), one row per variant and location.
Shopify's import changes only ``On hand (new)`` and leaves every location
whose row is left out as it is, so a row is written only for a location the
listing came with on its Shopify export (``db.listing_details``); ``Not
stocked`` locations were never kept and are never written. The columns
Shopify does not read (the ``(not editable)`` ones and ``On hand (current)``)
are left empty: what the export said there is stale by now, and a number
that looks current would mislead whoever opens the file.

One quantity and several locations: writing it at each would offer it
several times over, and splitting it would be a guess, so the merchant names
the location Stockdrop keeps, ``location = "Warehouse"``. Then only that
row is written (the other locations do not change), for a variant the
export had elsewhere only too: the merchant said Stockdrop's stock is there.
Without the option a variant must have come with one location; several, or
none (listings imported from a file that is not a Shopify export, which
names no handle either), are an error at export time naming the SKUs,
rather than a file Shopify would apply in a way nobody chose.

The quantity goes to ``On hand``, which Shopify splits into Committed,
Unavailable and Available: Stockdrop's quantity already has the market's
orders taken off, so a variant with unfulfilled orders shows that much less
Available until they ship.

No formula escaping: the file is uploaded, and an apostrophe would change
the SKU. Lines end in "\\n", as in every export format.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from daemon.export.formats import Format, csv_bytes

COLUMNS = ("Handle", "Option1 Value", "Option2 Value", "Option3 Value", "SKU", "Location",
           "Incoming (not editable)", "Unavailable (not editable)", "Committed (not editable)",
           "Available (not editable)", "On hand (current)", "On hand (new)")
# The ``locations`` column the lines carry (``db.listing_details.LOCATION``; a test keeps them equal).
LOCATION = pl.Struct({"location": pl.Utf8(), "handle": pl.Utf8(), "option1": pl.Utf8(),
                      "option2": pl.Utf8(), "option3": pl.Utf8()})
_SHOWN = 5  # SKUs named in an error


def write(lines: pl.DataFrame, options: Mapping[str, str]) -> bytes:
    managed = options.get("location")
    if managed is not None and not managed.strip():
        raise ValueError("the Shopify option location is empty: name the Shopify location Stockdrop keeps")
    if "locations" not in lines.columns:
        lines = lines.with_columns(pl.lit(None, pl.List(LOCATION)).alias("locations"))
    none = lines.filter(pl.col("locations").list.len().fill_null(0) == 0)
    if none.height:
        raise ValueError(f"Shopify has no location for SKU(s) {_skus(none)}: import the market's listings "
                         "from a Shopify inventory export, which names each variant's handle and locations")
    rows = (lines.select(pl.int_range(pl.len()).alias("_line"), "sku", "quantity", "locations")
            .explode("locations").unnest("locations"))
    if managed is None:
        several = rows.filter(pl.len().over("_line") > 1)
        if several.height:
            named = (several.group_by("_line", maintain_order=True)
                     .agg(pl.first("sku"), pl.col("location").str.join(", ")).head(_SHOWN))
            where = "; ".join(f"{sku!r} at {locations}" for sku, locations in named.select("sku", "location").iter_rows())
            raise ValueError(f"SKU(s) stocked at several Shopify locations: {where}; set the option location to "
                             "the one Stockdrop keeps (the others are left as they are)")
    else:
        there = rows.filter(pl.col("location") == managed)
        elsewhere = (rows.filter(~pl.col("_line").is_in(there.get_column("_line").implode()))
                     .group_by("_line", maintain_order=True).first()
                     .with_columns(pl.lit(managed).alias("location")))
        rows = pl.concat([there, elsewhere]).sort("_line", maintain_order=True)
    empty = pl.lit(None, pl.Utf8)
    frame = rows.select(
        pl.col("handle").alias(COLUMNS[0]), pl.col("option1").alias(COLUMNS[1]),
        pl.col("option2").alias(COLUMNS[2]), pl.col("option3").alias(COLUMNS[3]),
        pl.col("sku").alias(COLUMNS[4]), pl.col("location").alias(COLUMNS[5]),
        *(empty.alias(name) for name in COLUMNS[6:11]), pl.col("quantity").alias(COLUMNS[11]))
    return csv_bytes(frame)


def _skus(rows: pl.DataFrame) -> str:
    skus = rows.get_column("sku").unique(maintain_order=True)
    shown = ", ".join(map(repr, skus.head(_SHOWN).to_list()))
    return shown + (f" and {skus.len() - _SHOWN} more" if skus.len() > _SHOWN else "")


# Annotated: mypy cannot infer it through the import cycle with the package's registry.
FORMAT: Format = Format("shopify_inventory", "csv", write,
                        "Shopify inventory CSV: On hand (new) per variant at the locations it came with",
                        listing_data=("locations",))
