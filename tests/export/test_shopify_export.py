"""A Shopify market end to end: its inventory export imported as its listings, then written back.

On SQLite and PostgreSQL, to a real folder, the delivered file read back with
the csv module as Shopify's import would read it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from daemon.db import listing_details
from daemon.db.catalog import get_source
from daemon.db.engine import session_factory
from daemon.db.markets import get_market, import_listing_rows
from daemon.db.models import Listing, Product
from daemon.db.stock import set_one
from daemon.db.sync import sync_with_config
from daemon.errors import ExportError, FeedError
from daemon.export.formats import shopify
from daemon.export.service import Exporter, ExportTarget
from daemon.formats.listings import read_listings
from daemon.settings import Settings, parse_settings
from tests.conftest import Database

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
HEADER = ",".join(shopify.COLUMNS)
# Two locations for 0017 (one oversold), 0018 not stocked at the shop, a
# formula-like SKU, and a variant kept at the shop only.
EXPORT = f"""{HEADER}
mug,Blue,,,0017,Shop location,0,0,1,4,5,5
mug,Blue,,,0017,Warehouse East,0,0,0,-2,-2,-2
mug,Red,,,0018,Shop location,0,0,0,not stocked,Not stocked,Not stocked
mug,Red,,,0018,Warehouse East,2,0,0,3,3,3
cap,Default Title,,,=CAP,Warehouse East,0,0,0,7,7,7
shirt,L,Cotton,,SHIRT-L,Shop location,0,1,0,2,3,3
"""


def delivered(path: Path) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
    assert rows == [] or tuple(rows[0]) == shopify.COLUMNS
    return rows


def written(rows: list[dict[str, str]]) -> list[tuple[str, ...]]:
    return [(r["Handle"], r["Option1 Value"], r["Option2 Value"], r["SKU"], r["Location"], r["On hand (new)"])
            for r in rows]


class Shop:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session], tmp: Path) -> None:
        self.settings, self.sessions, self.tmp = settings, sessions, tmp

    def import_listings(self, market: str, text: str) -> None:
        path = self.tmp / f"{market}-inventory_export.csv"
        path.write_text(text, encoding="utf-8")
        parsed = read_listings(path)
        assert parsed.errors == []
        location = next(e for _, k, e in self.settings.export_targets() if k == market).options.get("location")
        if location is not None:  # as `stockdrop market import-listings` reads it
            parsed = parsed.kept_at(location)
        with self.sessions() as s, s.begin():
            import_listing_rows(s, get_market(s, "acme", market), parsed.rows, now=NOW, actor="test",
                                locations=parsed.locations)

    def exporter(self, market: str) -> Exporter:
        target = next(ExportTarget(m, k, e) for m, k, e in self.settings.export_targets() if k == market)
        return Exporter(self.sessions, [target], sleep=lambda seconds: None)

    def locations(self, market: str) -> dict[str, list[str]]:
        with self.sessions() as s:
            record = get_market(s, "acme", market)
            ids = dict(s.execute(select(Product.sku, Listing.id).join(Product, Product.id == Listing.product_id)
                                 .where(Listing.market_id == record.id)).all())
            frame = listing_details.fetch(s, record.id, pl.Series(list(ids.values())), ["locations"])
        by_id = {i: [loc["location"] for loc in locs or []] for i, locs in frame.iter_rows()}
        return {sku: by_id[i] for sku, i in sorted(ids.items())}


@pytest.fixture
def make_shop(database: Database, tmp_path: Path) -> Callable[..., Shop]:
    def make(**options: str) -> Shop:
        def market(name: str, opts: dict[str, str]) -> dict[str, Any]:
            return {"name": name, "kind": "shopify", "export": {
                "folder": str(tmp_path / f"out-{name}"), "format": "shopify_inventory", "options": opts,
                "debounce_seconds": 0}}

        raw = {"database": {"url": database.url},
               "merchants": [{"name": "acme", "sources": [{"name": "wh", "feed": {"unknown_sku": "create"}}],
                              "markets": [market("shop", options), market("outlet", {})]}]}
        settings = parse_settings(raw, base=tmp_path)
        sessions = session_factory(database.engine)
        with sessions() as s, s.begin():
            sync_with_config(s, settings, NOW)
        return Shop(settings, sessions, tmp_path)

    return make


@pytest.mark.parametrize("by_market", [False, True], ids=["by-id", "by-market"])
def test_a_shopify_market_is_sent_on_hand_at_the_location_stockdrop_keeps(  # type: ignore[no-untyped-def]
    make_shop, monkeypatch: pytest.MonkeyPatch, by_market: bool,
) -> None:
    if by_market:  # the query a big export takes: the market's rows, not IN lists
        monkeypatch.setattr(listing_details, "_BY_MARKET", 0)
    shop = make_shop(location="Warehouse East")
    shop.import_listings("shop", EXPORT)  # the first market: its Available units at Warehouse East become the stock
    assert shop.locations("shop") == {"0017": ["Shop location", "Warehouse East"], "0018": ["Warehouse East"],
                                      "=CAP": ["Warehouse East"], "SHIRT-L": ["Shop location"]}
    exporter = shop.exporter("shop")
    [full] = exporter.export_now("acme/shop", "full")
    assert full.status == "delivered" and full.file_name.endswith(".csv")
    # Every variant at Warehouse East only: the shop's rows are left out, so Shopify leaves them, and
    # their units are not Stockdrop's to offer again at Warehouse East.
    assert written(delivered(shop.tmp / "out-shop" / full.file_name)) == [
        ("mug", "Blue", "", "0017", "Warehouse East", "0"),  # -2 there counted as 0; the shop's 4 stay the shop's
        ("mug", "Red", "", "0018", "Warehouse East", "3"),
        ("cap", "Default Title", "", "=CAP", "Warehouse East", "7"),  # uploaded, not opened: no apostrophe
        ("shirt", "L", "Cotton", "SHIRT-L", "Warehouse East", "0"),  # kept at the shop only: none here
    ]
    with shop.sessions() as s, s.begin():
        set_one(s, get_source(s, "acme", "wh"), "0018", 5, actor="test", now=NOW)  # a warehouse feed
    [delta] = exporter.export_now("acme/shop", "delta")
    assert written(delivered(shop.tmp / "out-shop" / delta.file_name)) == [
        ("mug", "Red", "", "0018", "Warehouse East", "8")]


def test_a_shopify_market_without_a_location_names_the_skus_kept_at_several(make_shop) -> None:  # type: ignore[no-untyped-def]
    shop = make_shop()
    shop.import_listings("outlet", EXPORT)
    with pytest.raises(ExportError, match="market outlet: its shopify_inventory file cannot be written: SKU.s. "
                                          "stocked at several Shopify locations: '0017' at Shop location, "
                                          "Warehouse East; set the option location"):
        shop.exporter("outlet").export_now("acme/outlet", "full")
    assert not (shop.tmp / "out-outlet").exists() or list((shop.tmp / "out-outlet").iterdir()) == []
    # Once 0017 is kept at one location, each variant goes back where it came from.
    shop.import_listings("outlet", EXPORT.replace("mug,Blue,,,0017,Warehouse East,0,0,0,-2,-2,-2\n", ""))
    assert shop.locations("outlet")["0017"] == ["Shop location"]
    [full] = shop.exporter("outlet").export_now("acme/outlet", "full")
    assert [(r["SKU"], r["Location"]) for r in delivered(shop.tmp / "out-outlet" / full.file_name)] == [
        ("0017", "Shop location"), ("0018", "Warehouse East"), ("=CAP", "Warehouse East"),
        ("SHIRT-L", "Shop location")]


def test_listings_from_a_file_that_is_not_a_shopify_export_are_named_at_export_time(make_shop) -> None:  # type: ignore[no-untyped-def]
    shop = make_shop(location="Warehouse East")
    shop.import_listings("shop", EXPORT)
    shop.import_listings("shop", "sku,quantity\n0017,1\n0099,2\n")  # a generic file keeps what 0017 had
    assert shop.locations("shop")["0017"] == ["Shop location", "Warehouse East"]
    assert shop.locations("shop")["0099"] == []
    with pytest.raises(ExportError, match=r"no location for SKU\(s\) '0099': import the market's listings from a "
                                         "Shopify inventory export"):
        shop.exporter("shop").export_now("acme/shop", "full")


def test_a_shopify_export_read_for_one_location_counts_only_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "inventory_export.csv"
    path.write_text(EXPORT, encoding="utf-8")
    parsed = read_listings(path)
    assert parsed.rows == [("0017", 4), ("0018", 3), ("=CAP", 7), ("SHIRT-L", 2)]  # every location summed
    kept = parsed.kept_at("Warehouse East")
    assert kept.rows == [("0017", 0), ("0018", 3), ("=CAP", 7), ("SHIRT-L", 0)]
    assert kept.locations == parsed.locations  # every location is still written back where it was
    assert "1 variant(s) not stocked there count 0" in kept.warnings[-1]
    with pytest.raises(FeedError, match="no row of the file is at the Shopify location 'Warehouse West'.*"
                                        "'Shop location', 'Warehouse East'"):
        parsed.kept_at("Warehouse West")
    generic = tmp_path / "generic.csv"
    generic.write_text("sku,quantity\n0017,2\n")
    assert read_listings(generic).kept_at("Warehouse East").rows == [("0017", 2)]  # no locations to narrow to
