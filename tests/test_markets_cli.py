"""`stockdrop market ...` as a user drives it, through --json, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from daemon import exitcodes
from tests.conftest import Database
from tests.helpers import ONE_WAREHOUSE, run_cli, write_config

LISTINGS = Path(__file__).parent.parent / "sample_files" / "listings"
MARKETS = ONE_WAREHOUSE + """
[[merchants.markets]]
name = "ebay"
kind = "ebay"

[[merchants.markets]]
name = "amazon"
kind = "amazon"
buffer = 1
"""


@pytest.fixture
def config(tmp_path: Path, database: Database, capsys: pytest.CaptureFixture[str]) -> Path:
    path = write_config(tmp_path / "conf", MARKETS, database_url=database.url)
    assert run_cli(capsys, "-c", path, "db", "upgrade").code == 0
    return path


def test_market_add_and_list_show_config_and_database_markets(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    added = run_cli(capsys, "-c", config, "market", "add", "shop", "--kind", "shopify", "--sources", "wh1",
                    "--buffer", "2", "--percent", "50", "--maximum", "10", "--minimum", "1",
                    "--restock", "never", "--json")
    assert added.code == 0, added.err
    assert added.json()["market"] == {
        "merchant": "acme", "name": "shop", "kind": "shopify", "sources": ["wh1"], "buffer": 2, "percent": 50,
        "maximum": 10, "minimum": 1, "restock": "never", "from_config": False, "connected_at": None,
        "first_integration": False, "listings": 0}
    markets = run_cli(capsys, "-c", config, "market", "list", "--json").json()["markets"]
    assert [(m["name"], m["from_config"], m["buffer"]) for m in markets] == [
        ("amazon", True, 1), ("ebay", True, 0), ("shop", False, 2)]
    again = run_cli(capsys, "-c", config, "market", "add", "shop")
    assert again.code == exitcodes.FAILURE and len(again.err.strip().splitlines()) == 1
    bad = run_cli(capsys, "-c", config, "market", "add", "x", "--percent", "150")
    assert bad.code == exitcodes.FAILURE and "percent" in bad.err and "Traceback" not in bad.err


def test_the_first_market_imports_quantities_and_a_later_one_is_sent_the_current_inventory(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = run_cli(capsys, "-c", config, "market", "import-listings", "ebay", LISTINGS / "ebay_seller_hub.csv", "--json")
    assert first.code == 0, first.err
    assert first.json() == {"market": "ebay", "merchant": "acme", "format": "ebay", "rows": 2, "listings": 2,
                            "first_integration": True, "first_market": "ebay", "set_quantities": 2,
                            "needs_update": 0, "errors": 0, "row_errors": [], "warnings": []}
    later = run_cli(capsys, "-c", config, "market", "import-listings", "amazon",
                    LISTINGS / "amazon_inventory_report.txt", "--json").json()
    assert (later["first_integration"], later["first_market"], later["needs_update"]) == (False, "ebay", 2)
    inv = run_cli(capsys, "-c", config, "inventory", "--json").json()["inventory"]
    assert {(r["sku"], r["quantity"]) for r in inv} == {("A-100", 7), ("0017", 1)}  # eBay's, not Amazon's
    ledger = run_cli(capsys, "-c", config, "ledger", "--json").json()["ledger"]
    assert {e["reason"] for e in ledger} == {"import"}
    shown = run_cli(capsys, "-c", config, "market", "list", "--json").json()["markets"]
    assert {m["name"]: m["first_integration"] for m in shown} == {"amazon": False, "ebay": True}


def test_market_show_gives_the_quantity_after_channel_rules_next_to_each_source(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(capsys, "-c", config, "set", "A", "4", "--source", "merchant-fulfilled").code == 0
    assert run_cli(capsys, "-c", config, "set", "A", "3", "--source", "wh1").code == 0
    out = run_cli(capsys, "-c", config, "market", "show", "amazon", "--json")
    assert out.code == 0, out.err
    assert out.json() == {
        "merchant": "acme", "market": "amazon", "kind": "amazon", "sources": None,
        "rules": {"buffer": 1, "percent": 100, "maximum": None, "minimum": 0},
        "inventory": [{"sku": "A", "quantities": {"merchant-fulfilled": 4, "wh1": 3}, "available": 7,
                       "quantity": 6, "listed": False, "needs_update": False, "last_sent_quantity": None}],
        "export": None}  # no [merchants.markets.export]: computed, never sent
    text = run_cli(capsys, "-c", config, "market", "show", "amazon")
    assert "merchant-fulfilled=4, wh1=3" in text.out
    missing = run_cli(capsys, "-c", config, "market", "show", "etsy")
    assert missing.code == exitcodes.FAILURE and "no market named 'etsy'" in missing.err and "amazon, ebay" in missing.err


def test_a_listing_file_without_a_header_is_rejected_whole(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "junk.csv"
    path.write_text("hello,world\n1,2\n")
    result = run_cli(capsys, "-c", config, "market", "import-listings", "ebay", path)
    assert result.code == exitcodes.REJECTED
    assert "junk.csv rejected" in result.err and len(result.err.strip().splitlines()) == 1
    assert run_cli(capsys, "-c", config, "inventory", "--json").json() == {"inventory": []}


def test_a_shopify_export_imported_by_the_cli_is_written_back_at_its_location(
    tmp_path: Path, database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "conf", ONE_WAREHOUSE + """
[[merchants.markets]]
name = "shop"
kind = "shopify"
[merchants.markets.export]
folder = "out"
format = "shopify_inventory"
options = { location = "Warehouse East" }
""", database_url=database.url)
    assert run_cli(capsys, "-c", config, "db", "upgrade").code == 0
    imported = run_cli(capsys, "-c", config, "market", "import-listings", "shop",
                       LISTINGS / "shopify_inventory_export.csv", "--json")
    assert imported.code == 0, imported.err
    assert (imported.json()["format"], imported.json()["listings"]) == ("shopify", 1)
    dry = run_cli(capsys, "-c", config, "export", "shop", "--full", "--dry-run")
    assert dry.code == 0, dry.err
    [row] = list(csv.DictReader(io.StringIO(dry.out, newline="")))
    assert (row["Handle"], row["Option1 Value"], row["SKU"], row["Location"], row["On hand (new)"]) == (
        "mug", "Blue", "A-100", "Warehouse East", "6")  # Warehouse East's 6: the shop's 4 stay on sale there
    assert "Available at 'Warehouse East' only" in imported.json()["warnings"][0]
    # A variant at two locations and no location option: one line naming them, no traceback, nothing sent.
    config.write_text(config.read_text().replace('options = { location = "Warehouse East" }\n', ""))
    assert run_cli(capsys, "-c", config, "market", "import-listings", "shop",
                   LISTINGS / "shopify_inventory_export.csv").code == 0
    refused = run_cli(capsys, "-c", config, "export", "shop", "--full")
    assert refused.code == exitcodes.FAILURE and "Traceback" not in refused.err
    assert refused.err.strip() == ("stockdrop: market shop: its shopify_inventory file cannot be written: SKU(s) "
                                   "stocked at several Shopify locations: 'A-100' at Shop location, Warehouse East; "
                                   "set the option location to the one Stockdrop keeps (the others are left as "
                                   "they are)")
    assert run_cli(capsys, "-c", config, "exports", "--json").json()["exports"] == []  # the dry run wrote none
