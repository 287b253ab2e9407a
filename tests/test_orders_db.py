"""Orders, cancellations and listings through the database, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.db import stock as store
from daemon.db.catalog import get_source, sync_config
from daemon.db.engine import session_factory
from daemon.db.markets import add_market, get_market, import_listing_rows, market_view, sync_markets
from daemon.db.models import Listing, MarketRecord, Product
from daemon.db.orders import (
    apply_order_lines,
    cancel_order,
    orders_after,
)
from daemon.errors import FeedError, UserError
from daemon.formats.orders import OrderRow, read_cancellations, read_orders
from daemon.ingest.apply_market import apply_cancellations, apply_orders
from daemon.settings import Settings, market_settings, parse_settings
from tests.conftest import Database

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def apply_order_file(session: Session, market_id: int, path: Path, *, upload_ref: str, now: datetime):  # type: ignore[no-untyped-def]
    """Read an order file as the parser worker does, then apply it."""
    return apply_orders(session, market_id, read_orders(path), upload_ref=upload_ref, now=now, actor="orders")


def apply_cancellation_file(session: Session, market_id: int, path: Path, *, upload_ref: str, now: datetime):  # type: ignore[no-untyped-def]
    return apply_cancellations(session, market_id, read_cancellations(path), upload_ref=upload_ref, now=now,
                               actor="orders")


def _settings(tmp_path: Path, *, split: bool = False, restock: str = "by_origin") -> Settings:
    return parse_settings({"merchants": [{
        "name": "acme", "split_orders": split, "restock_window_days": 14,
        "sources": [{"name": "wh1", "priority": 10}, {"name": "wh2", "priority": 20}],
        "markets": [{"name": "amazon", "kind": "amazon", "restock": restock},
                    {"name": "ebay", "kind": "ebay"}],
    }]}, base=tmp_path)


@dataclass
class World:
    session: Session

    def market(self, name: str = "amazon") -> MarketRecord:
        return get_market(self.session, "acme", name)

    def set(self, source: str, sku: str, quantity: int, at: datetime = T0 - timedelta(hours=1)) -> None:
        store.set_one(self.session, get_source(self.session, "acme", source), sku, quantity,
                      actor="test", now=at)

    def qty(self) -> dict[tuple[str, str], int]:
        return {(r.source, r.sku): r.quantity for r in store.inventory(self.session, merchant="acme")}

    def order(self, order_id: str, sku: str, quantity: int, *, line: str = "1", market: str = "amazon",
              at: datetime = T0):
        return apply_order_lines(self.session, self.market(market),
                                 [OrderRow(2, order_id, line, sku, quantity, at)], now=at, actor="test")

    def needs_update(self, market: str, sku: str) -> bool:
        return self.session.scalar(
            select(Listing.needs_update).join(Product, Listing.product_id == Product.id)
            .where(Listing.market_id == self.market(market).id, Product.sku == sku))


def _world(tmp_path: Path, database: Database, **kw: object) -> Iterator[World]:
    settings = _settings(tmp_path, **kw)  # type: ignore[arg-type]
    with session_factory(database.engine)() as session, session.begin():
        sync_config(session, settings, T0)
        sync_markets(session, settings, T0)
        yield World(session)


@pytest.fixture
def world(tmp_path: Path, database: Database) -> Iterator[World]:
    yield from _world(tmp_path, database)


@pytest.fixture
def split_world(tmp_path: Path, database: Database) -> Iterator[World]:
    yield from _world(tmp_path, database, split=True)


def test_an_order_line_ships_from_the_first_source_by_priority_that_has_it_all(world: World) -> None:
    world.set("merchant-fulfilled", "A", 1)
    world.set("wh2", "A", 5)
    world.set("wh1", "A", 3)
    result = world.order("O1", "A", 3)
    assert (result.imported, result.skipped, result.oversold) == (1, 0, 0)
    assert result.lines[0].taken == [{"source": "wh1", "units": 3}]
    assert world.qty() == {("merchant-fulfilled", "A"): 1, ("wh1", "A"): 0, ("wh2", "A"): 5}
    ledger = store.ledger(world.session, sku="A", limit=1)[0]
    assert (ledger.reason, ledger.reference, ledger.before, ledger.after) == ("order", "order:amazon:O1:1", 3, 0)


def test_split_orders_take_across_sources_in_priority_order(split_world: World) -> None:
    split_world.set("merchant-fulfilled", "A", 1)
    split_world.set("wh1", "A", 2)
    split_world.set("wh2", "A", 5)
    result = split_world.order("O1", "A", 6)
    assert result.lines[0].taken == [{"source": "merchant-fulfilled", "units": 1},
                                     {"source": "wh1", "units": 2}, {"source": "wh2", "units": 3}]
    assert split_world.qty() == {("merchant-fulfilled", "A"): 0, ("wh1", "A"): 0, ("wh2", "A"): 2}


def test_an_oversell_is_recorded_and_the_quantity_stops_at_zero(world: World) -> None:
    world.set("merchant-fulfilled", "A", 2)
    result = world.order("O1", "A", 5)
    assert result.oversold == 1
    line = result.lines[0]
    assert (line.taken, line.shortfall, line.shortfall_source) == (
        [{"source": "merchant-fulfilled", "units": 2}], 3, "merchant-fulfilled")
    assert world.qty()[("merchant-fulfilled", "A")] == 0


def test_reimporting_the_same_lines_skips_them_and_subtracts_nothing(world: World, tmp_path: Path) -> None:
    world.set("merchant-fulfilled", "A-100", 10)
    world.set("merchant-fulfilled", "0017", 10)
    world.set("merchant-fulfilled", "B-200", 10)
    sample = Path(__file__).parent.parent / "sample_files" / "orders" / "amazon_order_report.txt"
    first = apply_order_file(world.session, world.market().id, sample, upload_ref="u1", now=T0)
    again = apply_order_file(world.session, world.market().id, sample, upload_ref="u2", now=T0)
    assert (first.imported, first.skipped, first.format) == (3, 0, "amazon")
    assert (again.imported, again.skipped) == (0, 3)
    assert world.qty() == {("merchant-fulfilled", "A-100"): 9, ("merchant-fulfilled", "0017"): 8,
                           ("merchant-fulfilled", "B-200"): 9}
    # The same line id on another market is another line.
    assert world.order("114-3941689-8772232", "A-100", 1, line="46510268396154", market="ebay").imported == 1


def test_an_order_marks_every_other_market_listing_of_the_sku_for_update(world: World) -> None:
    import_listing_rows(world.session, world.market("amazon"), [("A", 5), ("B", 1)], now=T0, actor="t")
    import_listing_rows(world.session, world.market("ebay"), [("A", 9), ("B", 1)], now=T0, actor="t")
    for listing in world.session.scalars(select(Listing)):
        listing.needs_update = False
    world.order("O1", "A", 1)
    assert world.needs_update("ebay", "A") is True
    assert world.needs_update("amazon", "A") is False  # it sold the unit, it knows
    assert world.needs_update("ebay", "B") is False


def test_first_integration_wins_and_a_later_market_is_sent_the_current_inventory(world: World) -> None:
    first = import_listing_rows(world.session, world.market("ebay"), [("A", 4), ("B", 0)], now=T0, actor="t")
    assert first.first_integration and first.set_quantities == 1
    world.set("merchant-fulfilled", "A", 6, at=T0 + timedelta(hours=1))
    later = import_listing_rows(world.session, world.market("amazon"), [("A", 99), ("C", 3)], now=T0, actor="t")
    assert (later.first_integration, later.first_market, later.needs_update) == (False, "ebay", 2)
    assert world.qty() == {("merchant-fulfilled", "A"): 6, ("merchant-fulfilled", "B"): 0}
    assert world.needs_update("amazon", "A") and world.needs_update("amazon", "C")
    # A later page of the first market is still the first integration.
    again = import_listing_rows(world.session, world.market("ebay"), [("B", 2)], now=T0, actor="t")
    assert again.first_integration and world.qty()[("merchant-fulfilled", "B")] == 2
    reasons = {r.reason for r in store.ledger(world.session, source="merchant-fulfilled")}
    assert "import" in reasons


def test_a_market_shows_the_sum_of_its_sources_after_its_channel_rules(world: World) -> None:
    add_market(world.session, "acme", market_settings(name="shop", kind="shopify", sources=["wh1", "wh2"],
                                                      buffer=2, percent=50, maximum=4, minimum=2), now=T0)
    world.set("merchant-fulfilled", "A", 100)
    world.set("wh1", "A", 7)
    world.set("wh2", "A", 6)   # 13 -> buffer 11 -> 50% 5 -> max 4
    world.set("wh1", "B", 4)   # 4 -> 2 -> 1 -> below minimum 2 -> 0
    rows = {r.sku: r for r in market_view(world.session, get_market(world.session, "acme", "shop"))}
    assert (rows["A"].quantities, rows["A"].available, rows["A"].quantity) == ({"wh1": 7, "wh2": 6}, 13, 4)
    assert (rows["B"].available, rows["B"].quantity) == (4, 0)
    with pytest.raises(UserError, match="no source named 'nope'"):
        add_market(world.session, "acme", market_settings(name="x", sources=["nope"]), now=T0)
    with pytest.raises(UserError, match="already has a market"):
        add_market(world.session, "acme", market_settings(name="amazon"), now=T0)


def test_a_market_cancellation_returns_exactly_what_was_taken(split_world: World) -> None:
    split_world.set("merchant-fulfilled", "A", 1)
    split_world.set("wh1", "A", 1)
    split_world.order("O1", "A", 4)  # 1 + 1 taken, 2 oversold
    split_world.set("wh1", "A", 5)
    [result] = cancel_order(split_world.session, split_world.market(), "O1", None, origin="market",
                            requested=None, cancelled_at=T0 + timedelta(days=1), now=T0, actor="t")
    assert (result.status, result.restocked, result.refused) == ("cancelled", True, False)
    assert result.returned == [{"source": "merchant-fulfilled", "units": 1}, {"source": "wh1", "units": 1}]
    assert split_world.qty() == {("merchant-fulfilled", "A"): 1, ("wh1", "A"): 6}


def test_a_cancellation_after_the_window_is_refused_and_the_refusal_reported(world: World) -> None:
    world.set("merchant-fulfilled", "A", 3)
    world.order("O1", "A", 2)
    [result] = cancel_order(world.session, world.market(), "O1", "1", origin="stockdrop", requested=True,
                            cancelled_at=T0 + timedelta(days=15), now=T0, actor="t")
    assert (result.restocked, result.refused, result.returned) == (False, True, [])
    assert "restock refused" in result.reason and "14-day" in result.reason
    assert world.qty()[("merchant-fulfilled", "A")] == 1


@pytest.mark.parametrize(("policy", "origin", "requested", "restocked"), [
    ("never", "market", None, False),
    ("always", "stockdrop", False, True),
    ("by_origin", "stockdrop", False, False),
])
def test_the_market_restock_policy_overrides_the_origin(
    tmp_path: Path, database: Database, policy: str, origin: str, requested: bool | None, restocked: bool
) -> None:
    for world in _world(tmp_path, database, restock=policy):
        world.set("merchant-fulfilled", "A", 3)
        world.order("O1", "A", 2)
        [result] = cancel_order(world.session, world.market(), "O1", "1", origin=origin, requested=requested,
                                cancelled_at=T0 + timedelta(hours=1), now=T0, actor="t")
        assert result.restocked is restocked
        assert world.qty()[("merchant-fulfilled", "A")] == (3 if restocked else 1)


def test_cancelling_twice_returns_nothing_the_second_time(world: World) -> None:
    world.set("merchant-fulfilled", "A", 3)
    world.order("O1", "A", 2)
    kw = {"origin": "market", "requested": None, "cancelled_at": T0, "now": T0, "actor": "t"}
    assert cancel_order(world.session, world.market(), "O1", "1", **kw)[0].returned  # type: ignore[arg-type]
    [second] = cancel_order(world.session, world.market(), "O1", "1", **kw)  # type: ignore[arg-type]
    assert (second.status, second.returned) == ("already_cancelled", [])
    assert world.qty()[("merchant-fulfilled", "A")] == 3
    world.order("O2", "A", 1)
    with pytest.raises(UserError, match="choose --restock or --no-restock"):
        cancel_order(world.session, world.market(), "O2", "1", origin="stockdrop", requested=None,
                     cancelled_at=T0, now=T0, actor="t")


def test_a_cancellation_file_before_its_order_makes_the_late_order_skipped(world: World, tmp_path: Path) -> None:
    world.set("merchant-fulfilled", "A", 3)
    path = tmp_path / "c.csv"
    path.write_text("order_id,line_id,cancelled_at,origin\nO9,1,2024-05-01T09:00:00Z,market\n"
                    "NOPE,,2024-05-01T09:00:00Z,market\nO9,1,bad time,market\n")
    result = apply_cancellation_file(world.session, world.market().id, path, upload_ref="u", now=T0)
    assert (result.recorded_ahead, result.errors) == (1, 2)
    assert [(e.row, e.column, e.value) for e in result.row_errors] == [
        (3, "order_id", "NOPE"), (4, "cancelled_at", "bad time")]
    assert world.order("O9", "A", 2).skipped == 1
    assert world.qty()[("merchant-fulfilled", "A")] == 3


def test_orders_after_lists_the_units_taken_after_a_time_net_of_restocks(world: World) -> None:
    world.set("wh1", "A", 10)
    world.set("wh1", "B", 10)
    wh1 = get_source(world.session, "acme", "wh1")
    world.order("O1", "A", 2, at=T0)
    world.order("O2", "B", 3, at=T0 + timedelta(minutes=2))
    world.order("O3", "A", 1, at=T0 + timedelta(minutes=3))
    cancel_order(world.session, world.market(), "O3", None, origin="market", requested=None,
                 cancelled_at=T0 + timedelta(minutes=4), now=T0, actor="t")
    assert orders_after(world.session, wh1.id, T0) == [("B", T0 + timedelta(minutes=2), 3)]
    assert [q for _, _, q in orders_after(world.session, wh1.id, T0 - timedelta(seconds=1))] == [2, 3]


def test_a_file_level_problem_raises_before_anything_is_applied(world: World, tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_text("order_id,sku,quantity\nO1,A,1\n")
    with pytest.raises(FeedError, match="no line_id, ordered_at column"):
        apply_order_file(world.session, world.market().id, path, upload_ref="u", now=T0)
    path.write_bytes(b"\x00\x01\x02binary")
    with pytest.raises(FeedError):
        apply_order_file(world.session, world.market().id, path, upload_ref="u", now=T0)
