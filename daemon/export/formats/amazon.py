"""Amazon's tab-delimited flat files: Price & Quantity, and the Inventory Loader.

Both carry quantities only. An empty cell leaves Amazon's value as it is, so
price (and every other Inventory Loader column) is left empty rather than
guessed. Amazon rejects a file that names a SKU twice, so we refuse to write
one. No formula escaping: these files are uploaded, not opened, and an
apostrophe would change the SKU. A field is quoted only if it holds a tab,
a newline or a double quote, which a SKU should never do.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from daemon.export.formats import Format, csv_bytes

INVENTORY_LOADER_COLUMNS = (
    "sku", "price", "quantity", "product-id", "product-id-type", "add-delete",
    "will-ship-internationally", "expedited-shipping", "standard-plus",
    "minimum-seller-allowed-price", "maximum-seller-allowed-price",
    "handling-time", "fulfillment-center-id", "item-condition", "item-note",
)
_FILLED = {"sku": pl.col("sku"), "quantity": pl.col("quantity"), "add-delete": pl.lit("a")}  # "a": add or update


def write_price_quantity(lines: pl.DataFrame, options: Mapping[str, str]) -> bytes:
    return _write(lines, ("sku", "price", "quantity"))


def write_inventory_loader(lines: pl.DataFrame, options: Mapping[str, str]) -> bytes:
    return _write(lines, INVENTORY_LOADER_COLUMNS)


def _write(lines: pl.DataFrame, columns: tuple[str, ...]) -> bytes:
    _refuse_duplicates(lines.get_column("sku"))
    # Null, not "": polars writes a null as an empty field, an empty string as "".
    frame = lines.select(_FILLED.get(c, pl.lit(None, dtype=pl.String)).alias(c) for c in columns)
    return csv_bytes(frame, separator="\t")


def _refuse_duplicates(skus: pl.Series) -> None:
    # Exports come sorted by SKU: then neighbours tell it in a few ms (n_unique
    # hashes a million strings, most of this writer's time).
    if skus.is_sorted() and not (skus == skus.shift(1)).any():
        return
    if skus.n_unique() == skus.len():
        return
    twice = skus.filter(skus.is_duplicated()).unique(maintain_order=True).head(5).to_list()
    raise ValueError(f"Amazon rejects a file with a SKU twice; duplicated: {', '.join(map(repr, twice))}")


# Annotated: mypy cannot infer them through the import cycle with the package's registry.
PRICE_QUANTITY: Format = Format("amazon_price_quantity", "txt", write_price_quantity,
                        "Amazon Price & Quantity flat file (tab-delimited), quantities only")
INVENTORY_LOADER: Format = Format("amazon_inventory_loader", "txt", write_inventory_loader,
                          "Amazon Inventory Loader flat file (tab-delimited), quantity updates only")
