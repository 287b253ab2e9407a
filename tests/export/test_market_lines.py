"""The exporter's kept copy of each market's lines is always what reading the market whole gives.

A seeded run of everything that moves a market's lines (stock in either
source, new listings, channel rules, the market's sources, deliveries by the
exporter that keeps the copy and by another one, as ``stockdrop export``
would), comparing after every step; and, on PostgreSQL, a writer that commits
an older ledger id after a newer one.
"""

from __future__ import annotations

import json
import random
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from daemon.db.catalog import get_or_create_product, get_source
from daemon.db.engine import session_factory
from daemon.db.market_lines import LinesCache, NotSettled, market_lines
from daemon.db.markets import get_market
from daemon.db.models import Listing
from daemon.db.stock import set_one
from daemon.db.sync import sync_with_config
from daemon.export.service import Exporter, ExportTarget
from daemon.settings import parse_settings
from tests.conftest import Database

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
MARKETS = ("amz", "shop")


def _world(database: Database, tmp_path: Path) -> tuple[sessionmaker[Session], list[ExportTarget]]:
    def export(name: str) -> dict[str, Any]:
        return {"folder": str(tmp_path / f"out-{name}"), "format": "csv", "debounce_seconds": 0,
                "delta_every_seconds": None, "full_every_seconds": None}

    raw = {
        "database": {"url": database.url},
        "merchants": [{
            "name": "acme",
            "sources": [{"name": "wh"}, {"name": "wh2"}],
            "markets": [{"name": "amz", "kind": "amazon", "sources": ["wh"], "buffer": 1, "export": export("amz")},
                        {"name": "shop", "kind": "generic", "percent": 50, "export": export("shop")}],
        }],
    }
    settings = parse_settings(raw, base=tmp_path)
    sessions = session_factory(database.engine)
    with sessions() as s, s.begin():
        sync_with_config(s, settings, NOW)
    targets = [ExportTarget(m, k, e) for m, k, e in settings.export_targets()]
    return sessions, targets


def _add_listing(sessions: sessionmaker[Session], market: str, sku: str) -> None:
    with sessions() as s, s.begin():
        record = get_market(s, "acme", market)
        product = get_or_create_product(s, record.merchant_id, sku, NOW)
        if s.query(Listing).filter_by(market_id=record.id, product_id=product.id).first() is None:
            s.add(Listing(market_id=record.id, product_id=product.id, updated_at=NOW))


def _set(sessions: sessionmaker[Session], source: str, sku: str, quantity: int) -> None:
    with sessions() as s, s.begin():
        set_one(s, get_source(s, "acme", source), sku, quantity, actor="test", now=NOW)


def _assert_same(sessions: sessionmaker[Session], cache: LinesCache, step: str) -> None:
    for name in MARKETS:
        with sessions() as s, s.begin():
            market = get_market(s, "acme", name)
            kept = cache.market_lines(s, market)
            whole = market_lines(s, market)
        assert kept.to_dicts() == whole.to_dicts(), f"{name} after {step}"


def test_the_kept_lines_follow_every_kind_of_change(database: Database, tmp_path: Path) -> None:
    sessions, targets = _world(database, tmp_path)
    exporter = Exporter(sessions, targets, sleep=lambda seconds: None)
    exporter.lines = cache = LinesCache(min_patch=4)  # a low bound, so big looks read whole too
    other = Exporter(sessions, targets, sleep=lambda seconds: None)  # as `stockdrop export` would
    skus = [f"{i:04d}" for i in range(12)]
    for sku in skus[:8]:
        for market in MARKETS:
            _add_listing(sessions, market, sku)
        _set(sessions, "wh", sku, 3)
    _assert_same(sessions, cache, "the first look")
    rng = random.Random(20261202)
    for step in range(60):
        op = rng.choice(["set", "set", "set", "burst", "listing", "rules", "sources", "deliver", "deliver",
                         "deliver_elsewhere"])
        if op == "set":
            _set(sessions, rng.choice(["wh", "wh2"]), rng.choice(skus), rng.randint(0, 9))
        elif op == "burst":  # more ledger rows than the bound: read whole
            for sku in rng.sample(skus, 6):
                _set(sessions, "wh", sku, rng.randint(0, 9))
        elif op == "listing":
            _add_listing(sessions, rng.choice(MARKETS), rng.choice(skus))
        elif op == "rules":
            with sessions() as s, s.begin():
                get_market(s, "acme", "shop").percent = rng.choice([25, 50, 100])
        elif op == "sources":
            with sessions() as s, s.begin():
                get_market(s, "acme", "amz").sources = json.dumps(rng.choice([["wh"], ["wh2"], ["wh", "wh2"]]))
        else:
            (exporter if op == "deliver" else other).export_now(
                f"acme/{rng.choice(MARKETS)}", rng.choice(["delta", "full"]))
        _assert_same(sessions, cache, f"step {step} ({op})")
    assert cache.whole_reads < 60 * len(MARKETS) // 2, "the copy was hardly ever brought up to date"


def test_a_delta_from_the_kept_lines_holds_exactly_what_moved(database: Database, tmp_path: Path) -> None:
    sessions, targets = _world(database, tmp_path)
    exporter = Exporter(sessions, targets, sleep=lambda seconds: None)
    for sku in ("0001", "0002", "0003"):
        _add_listing(sessions, "shop", sku)
        _set(sessions, "wh", sku, 10)
    [full] = exporter.export_now("acme/shop", "full")
    reads = exporter.lines.whole_reads
    _set(sessions, "wh2", "0002", 4)  # shop sells from every source: 14 available, 7 after its 50%
    [delta] = exporter.export_now("acme/shop", "delta")
    assert (tmp_path / "out-shop" / delta.file_name).read_text() == "sku,quantity\n0002,7\n"
    assert exporter.export_now("acme/shop", "delta") == []
    assert exporter.lines.whole_reads == reads, "a delta after one change read the market whole"
    assert full.status == "delivered"


def test_lines_kept_for_an_export_id_handed_out_again_are_not_taken_for_its_lines(
        database: Database, tmp_path: Path) -> None:
    """On SQLite a rolled-back export's id comes back for the next export: the kept lines
    of the first must not stand for the second's (the sha256 tells them apart)."""
    sessions, targets = _world(database, tmp_path)
    exporter = Exporter(sessions, targets, sleep=lambda seconds: None)
    for sku in ("0001", "0002"):
        _add_listing(sessions, "shop", sku)
        _set(sessions, "wh", sku, 10)
    exporter.export_now("acme/shop", "full")
    with sessions() as s:
        market = get_market(s, "acme", "shop")
        lines = exporter.lines.market_lines(s, market)
    real = exporter.lines.composed
    stale = lines.select("listing_id", pl.lit(999, pl.Int64).alias("quantity"))

    def composed(export_id: int, sha256: str, kept: pl.DataFrame) -> None:
        real(export_id, "the rolled-back export's sha256", stale)  # what the memo held under this id

    exporter.lines.composed = composed  # type: ignore[method-assign]
    _set(sessions, "wh", "0001", 4)
    [delta] = exporter.export_now("acme/shop", "delta")
    assert delta.status == "delivered"
    with sessions() as s:
        market = get_market(s, "acme", "shop")
        assert exporter.lines.market_lines(s, market).equals(market_lines(s, market))
        assert 999 not in exporter.lines.market_lines(s, market).get_column("last_sent").to_list()


# SQLite has one writer at a time: its ids are given in commit order.
@pytest.mark.parametrize("database", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_an_older_ledger_id_committed_late_is_waited_for_not_skipped(database: Database, tmp_path: Path) -> None:
    sessions, _targets = _world(database, tmp_path)
    for sku in ("A", "B"):
        _add_listing(sessions, "shop", sku)
        _set(sessions, "wh", sku, 2)
    cache = LinesCache(settle_seconds=0.3)
    _assert_same(sessions, cache, "the first look")
    # The slow writer takes its ledger id first and commits last. (In another
    # source: writers of one source queue on its stock_version row.)
    slow = sessions()
    slow.begin()
    set_one(slow, get_source(slow, "acme", "wh2"), "A", 8, actor="slow", now=NOW)
    slow.flush()
    slow_id = slow.execute(text("SELECT MAX(id) FROM ledger")).scalar_one()
    _set(sessions, "wh", "B", 6)  # a newer id, committed first
    with sessions() as s, s.begin(), pytest.raises(NotSettled):
        cache.market_lines(s, get_market(s, "acme", "shop"))
    committed = threading.Timer(0.2, slow.commit)
    committed.start()
    try:
        with sessions() as s, s.begin():
            lines = cache.market_lines(s, get_market(s, "acme", "shop"))
    finally:
        committed.join()
        slow.close()
    # shop sells half of every source: A 2 + 8, B 6.
    assert dict(zip(lines["sku"], lines["quantity"], strict=True)) == {"A": 5, "B": 3}
    assert slow_id is not None
    _assert_same(sessions, cache, "the slow writer's commit")
