"""The market feed writers, byte for byte against golden files, and read back.

The golden files under ``golden/`` were written once by the writers and
checked by eye against ../shared/formats.md; a change to a writer's output
must change its golden file in the same commit. Each file is named
``<format>[-<variant>].<extension>``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.export.formats import FORMATS, amazon, shopify
from daemon.export.formats import csv as generic_csv
from daemon.formats.cells import escape_cell

GOLDEN = Path(__file__).parent / "golden"

SKUS = ["0001234", "TSHIRT-RED-M", "MUG-11OZ.WHITE", 'BOX,"BIG"', "CAFÉ-Ü-日本", "=SUM(A1)", "-5"]
QUANTITIES = [5, 0, 12, 3, 7, 1, 2]
SOURCES = ["north", "north", "south", "@east", "west", "south", "north"]  # "@east": escaped too, not only SKUs

EXTENSIONS = {"csv": "csv", "amazon_price_quantity": "txt", "amazon_inventory_loader": "txt",
              "ebay_revise": "csv", "walmart_json": "json", "shopify_inventory": "csv"}


def at(location: str, handle: str, *options: str) -> dict[str, str | None]:
    """One location a listing came with on its Shopify export, as ``db.listing_details`` gives it."""
    values = [*options, None, None, None][:3]
    return {"location": location, "handle": handle, "option1": values[0], "option2": values[1], "option3": values[2]}


# One location per SKU: what a Shopify format writes with no options.
ONE_EACH = [[at("Shop location", "widget", "Default Title")], [at("Warehouse East", "t-shirt", "Red", "M")],
            [at("Shop location", "mug", "11oz", "White", "Matte")], [at("Entrepôt, Lyon", "box", "Big")],
            [at("Shop location", "café", "Ü")], [at("Shop location", "formula", "=A1")],
            [at("Warehouse East", "minus", "-5")]]
# Several locations; with location = "Warehouse East" only that one is written.
SEVERAL = [[at("Shop location", "widget", "Default Title")],  # not at Warehouse East: written there all the same
           [at("Shop location", "t-shirt", "Red", "M"), at("Warehouse East", "t-shirt", "Red", "M")],
           [at("Warehouse East", "mug", "11oz", "White", "Matte"), at("Entrepôt, Lyon", "mug", "11oz", "White", "Matte")],
           [at("Entrepôt, Lyon", "box", "Big")], [at("Warehouse East", "café", "Ü")],
           [at("Shop location", "formula", "=A1"), at("Warehouse East", "formula", "=A1")],
           [at("Warehouse East", "minus", "-5")]]

# (golden file, format, options)
CASES = [
    ("csv.csv", "csv", {}),
    ("csv-columns.csv", "csv", {"columns": "quantity, sku,source", "delimiter": ";"}),
    ("csv-unescaped.csv", "csv", {"escape_formulas": "false"}),
    ("amazon_price_quantity.txt", "amazon_price_quantity", {}),
    ("amazon_inventory_loader.txt", "amazon_inventory_loader", {}),
    ("ebay_revise.csv", "ebay_revise", {}),
    ("ebay_revise-legacy.csv", "ebay_revise", {"spelling": "legacy"}),
    ("walmart_json.json", "walmart_json", {}),
    ("shopify_inventory.csv", "shopify_inventory", {}),
    ("shopify_inventory-location.csv", "shopify_inventory", {"location": "Warehouse East"}),
]


def frame(skus: list[str] = SKUS, quantities: list[int] = QUANTITIES, **extra: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"sku": skus, "quantity": quantities, **extra},
                        schema={"sku": pl.String, "quantity": pl.Int64, **{k: pl.String for k in extra}})


def lines() -> pl.DataFrame:
    return frame(source=SOURCES)


def with_locations(data: pl.DataFrame, locations: list[list[dict[str, str | None]]] | None = None) -> pl.DataFrame:
    return data.with_columns(pl.Series("locations", locations or ONE_EACH[:data.height],
                                       dtype=pl.List(shopify.LOCATION)))


def write(name: str, data: pl.DataFrame, **options: str) -> bytes:
    """What the writer makes of ``data``; the lines carry the listing data it asks for, as the outbox joins it."""
    if FORMATS[name].listing_data and "locations" not in data.columns and data.height:
        data = with_locations(data, SEVERAL if "location" in options else None)
    return FORMATS[name].write(data, options)


def read_delimited(data: bytes, delimiter: str = ",") -> list[list[str]]:
    # newline="": a quoted "\r" or "\n" inside a SKU stays in the SKU, as the csv module asks.
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline=""), delimiter=delimiter))


def read_back(name: str, data: bytes, **options: str) -> list[tuple[str, int]]:
    """(sku, quantity) of a written file, read the way its receiver would read it."""
    if name == "walmart_json":
        doc = json.loads(data)
        assert doc["InventoryHeader"] == {"version": "1.4"}
        assert all(item["quantity"]["unit"] == "EACH" for item in doc["Inventory"])
        return [(item["sku"], item["quantity"]["amount"]) for item in doc["Inventory"]]
    rows = read_delimited(data, "\t" if name.startswith("amazon") else options.get("delimiter", ","))
    header, body = rows[0], rows[1:]
    sku, quantity = ({"ebay_revise": (1, 2), "shopify_inventory": (4, 11)}.get(name)
                     or (header.index("sku"), header.index("quantity")))
    assert all(len(row) == len(header) for row in body)
    return [(row[sku], int(row[quantity])) for row in body]


@pytest.mark.parametrize(("golden", "name", "options"), CASES, ids=[c[0] for c in CASES])
def test_each_format_writes_its_golden_file(golden: str, name: str, options: dict[str, str]) -> None:
    assert golden.startswith(name) and golden.endswith("." + FORMATS[name].extension)
    assert write(name, lines(), **options) == (GOLDEN / golden).read_bytes()


def test_every_format_has_a_golden_file() -> None:
    assert {name for _, name, _ in CASES} == set(FORMATS)
    assert sorted(p.name for p in GOLDEN.iterdir()) == sorted(c[0] for c in CASES)


def test_each_format_is_registered_under_its_own_name_and_extension() -> None:
    assert {key: (f.name, f.extension) for key, f in FORMATS.items()} == {k: (k, e) for k, e in EXTENSIONS.items()}
    assert all(f.description for f in FORMATS.values())


@pytest.mark.parametrize("name", sorted(EXTENSIONS))
def test_each_format_reads_back_to_the_same_skus_and_quantities(name: str) -> None:
    options = {"escape_formulas": "false"} if name == "csv" else {}
    data = lines()
    out = write(name, data, **options)
    out.decode("utf-8")  # UTF-8, no BOM
    assert not out.startswith(b"\xef\xbb\xbf") and b"\r\n" not in out and out.endswith(b"\n")
    assert read_back(name, out, **options) == list(zip(SKUS, QUANTITIES, strict=True))
    assert data.equals(lines())  # the frame handed in is left as it was


@pytest.mark.parametrize("name", sorted(EXTENSIONS))
def test_no_lines_make_a_file_with_no_items(name: str) -> None:
    assert read_back(name, write(name, frame([], []))) == []


def test_csv_escapes_formula_cells_with_an_apostrophe() -> None:
    rows = read_delimited(write("csv", lines(), columns="sku,quantity,source"))
    assert rows[0] == ["sku", "quantity", "source"]
    assert [r[0] for r in rows[1:]] == [s if s[0] not in "=+-@\t\r" else "'" + s for s in SKUS]
    assert [r[0] for r in rows[1:]][-2:] == ["'=SUM(A1)", "'-5"]
    assert [r[2] for r in rows[1:]] == ["'@east" if s == "@east" else s for s in SOURCES]
    assert [int(r[1]) for r in rows[1:]] == QUANTITIES  # numbers are never escaped


def test_the_csv_escape_is_the_one_ingest_undoes() -> None:
    # daemon.formats.cells is the rule on the way in; export/formats may not import it.
    tricky = ["=1+1", "+44", "-5MM", "@SUM", "\tTAB", "\rCR", "'=done", "", " =x", "0017", "A,B", "é=", "\n=", "~"]
    out = generic_csv.escape_formulas(frame(tricky, [0] * len(tricky)))
    assert out.get_column("sku").to_list() == [escape_cell(s) for s in tricky]


def test_one_formula_cell_among_clean_ones_is_still_escaped() -> None:
    # escape_formulas skips a column no cell of which passes a cheap pre-check:
    # the pre-check must let through every cell the rule escapes, whatever its first character.
    for first in [*map(chr, range(128)), "é", "\u00a0", "\U0001f600"]:
        skus = ["0017", "SAFE-1", first + "X", "zz"]
        out = generic_csv.escape_formulas(frame(skus, [0] * len(skus)))
        assert out.get_column("sku").to_list() == [escape_cell(s) for s in skus], repr(first)


def test_csv_names_an_unknown_column_and_the_available_ones() -> None:
    with pytest.raises(ValueError, match="'price'.*'sku', 'quantity', 'source'"):
        write("csv", lines(), columns="sku,price")


def test_csv_refuses_a_delimiter_it_cannot_write() -> None:
    for bad in ("", ";;", '"', "\n", "§"):
        with pytest.raises(ValueError, match="delimiter"):
            write("csv", lines(), delimiter=bad)


def test_a_tab_delimited_csv_quotes_a_sku_with_a_tab() -> None:
    data = frame(["A\tB", "=x"], [1, 2])
    assert read_back("csv", write("csv", data, delimiter="\t"), delimiter="\t") == [("A\tB", 1), ("'=x", 2)]


@pytest.mark.parametrize("name", ["amazon_price_quantity", "amazon_inventory_loader"])
def test_amazon_refuses_a_sku_twice_and_names_it(name: str) -> None:
    data = frame(["0001234", "A", "0001234", "B", "B"], [1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="'0001234', 'B'"):
        write(name, data)
    write(name, frame(["0001234", "1234"], [1, 2]))  # leading zeros make another SKU


def test_the_inventory_loader_fills_only_sku_quantity_and_add_delete() -> None:
    rows = read_delimited(write("amazon_inventory_loader", lines()), "\t")
    assert tuple(rows[0]) == amazon.INVENTORY_LOADER_COLUMNS
    filled = {"sku", "quantity", "add-delete"}
    for row in rows[1:]:
        cells = dict(zip(rows[0], row, strict=True))
        assert cells["add-delete"] == "a"
        assert all(value == "" for column, value in cells.items() if column not in filled)


def test_ebay_takes_its_site_from_the_options() -> None:
    rows = read_delimited(write("ebay_revise", lines(), site_id="UK", country="GB", currency="GBP"))
    assert rows[0] == ["Action(SiteID=UK|Country=GB|Currency=GBP|Version=1193|CC=UTF-8)", "Custom label (SKU)",
                       "Quantity"]
    assert {row[0] for row in rows[1:]} == {"Revise"}
    with pytest.raises(ValueError, match="SiteID"):
        write("ebay_revise", lines(), site_id="US|Country=DE")


def test_walmart_json_keeps_every_character_of_a_sku() -> None:
    skus = ['q"x', "b\\s", "\x01\x1f\x7f", "\t\n\r\b\f", "é€😀", "\u2028\u2029", "", "\ufeffbom", "\x00nul"]
    assert read_back("walmart_json", write("walmart_json", frame(skus, list(range(len(skus)))))) == [
        (s, i) for i, s in enumerate(skus)]


skus = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12)
quantities = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(skus, quantities), max_size=20))
def test_random_skus_read_back_from_walmart_json_and_csv(pairs: list[tuple[str, int]]) -> None:
    data = frame([s for s, _ in pairs], [q for _, q in pairs])
    assert read_back("walmart_json", write("walmart_json", data)) == pairs
    assert read_back("csv", write("csv", data, escape_formulas="false")) == pairs


def test_shopify_writes_each_variant_back_at_the_location_it_came_with() -> None:
    rows = list(csv.DictReader(io.StringIO(write("shopify_inventory", lines()).decode(), newline="")))
    assert tuple(rows[0]) == shopify.COLUMNS
    assert [(r["Handle"], r["Option1 Value"], r["Option2 Value"], r["Option3 Value"], r["SKU"], r["Location"])
            for r in rows] == [(loc["handle"], loc["option1"] or "", loc["option2"] or "", loc["option3"] or "", sku,
                                loc["location"]) for sku, [loc] in zip(SKUS, ONE_EACH, strict=True)]
    assert [r["On hand (new)"] for r in rows] == [str(q) for q in QUANTITIES]
    # Shopify reads none of these; what the export said there is stale.
    assert {r[c] for r in rows for c in shopify.COLUMNS[6:11]} == {""}
    # Uploaded, not opened: a formula-like SKU or option is written as it is.
    assert [(r["SKU"], r["Option1 Value"]) for r in rows][-2:] == [("=SUM(A1)", "=A1"), ("-5", "-5")]


def test_shopify_with_a_location_writes_that_row_only_and_leaves_the_others_out() -> None:
    rows = list(csv.DictReader(io.StringIO(
        write("shopify_inventory", lines(), location="Warehouse East").decode(), newline="")))
    assert [(r["SKU"], r["Location"], r["On hand (new)"]) for r in rows] == [
        (sku, "Warehouse East", str(q)) for sku, q in zip(SKUS, QUANTITIES, strict=True)]
    assert [r["Option3 Value"] for r in rows][2] == "Matte"  # the row at that location, with its options


def test_shopify_refuses_a_sku_at_several_locations_without_the_location_option() -> None:
    with pytest.raises(ValueError, match=r"'TSHIRT-RED-M' at Shop location, Warehouse East; 'MUG-11OZ.WHITE' at "
                                         r"Warehouse East, Entrepôt, Lyon; '=SUM\(A1\)'.*set the option location"):
        write("shopify_inventory", with_locations(lines(), SEVERAL))


def test_shopify_names_the_skus_that_came_with_no_location() -> None:
    data = with_locations(frame(["0017", "A", "0018"], [1, 2, 3]),
                          [[], [at("Shop location", "a")], None])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"no location for SKU\(s\) '0017', '0018': import the market's listings "
                                         "from a Shopify inventory export"):
        write("shopify_inventory", data, location="Shop location")  # a location names where, not which variant
    with pytest.raises(ValueError, match="no location for SKU"):
        write("shopify_inventory", frame(["0017"], [1]).with_columns(
            pl.lit(None, pl.List(shopify.LOCATION)).alias("locations")))
    with pytest.raises(ValueError, match="location is empty"):
        write("shopify_inventory", lines(), location=" ")


def test_the_listing_data_a_format_asks_for_is_what_the_database_gives() -> None:
    from daemon.db import listing_details

    assert {kind for f in FORMATS.values() for kind in f.listing_data} <= listing_details.KINDS
    assert shopify.LOCATION == listing_details.LOCATION
