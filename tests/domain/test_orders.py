"""Importing order lines: subtract once, record the oversell, update the other markets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from daemon.inventory.allocation import Allocation
from daemon.inventory.orders import OrderLine, OrderOutcomeKind, apply_order_line
from daemon.inventory.stock import Reason, StockLevel

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ORDERED = datetime(2024, 5, 1, 11, 0, tzinfo=UTC)
MARKETS = ["amazon", "ebay", "shop"]
PRIORITY = ["mf", "east"]


def line(quantity: int = 2, *, market: str = "amazon", line_id: str = "1") -> OrderLine:
    return OrderLine(market, "A-100", line_id, "SKU-1", quantity, ORDERED)


def levels(mf: int | None, east: int | None) -> dict[str, StockLevel | None]:
    return {
        "mf": None if mf is None else StockLevel(mf),
        "east": None if east is None else StockLevel(east),
    }


def apply(
    order: OrderLine, stock: dict[str, StockLevel | None], *, split: bool = False, seen=frozenset()
):
    return apply_order_line(
        order,
        stock,
        priority=PRIORITY,
        split=split,
        seen=seen,
        markets=MARKETS,
        now=NOW,
        actor="orders",
    )


@pytest.mark.parametrize(
    ("quantity", "stock", "split", "after", "shortfall"),
    [
        pytest.param(
            2, levels(5, 5), False, {"mf": 3}, 0, id="taken-from-merchant-fulfilled-first"
        ),
        pytest.param(
            2,
            levels(1, 5),
            False,
            {"east": 3},
            0,
            id="taken-whole-from-the-first-source-with-enough",
        ),
        pytest.param(4, levels(1, 2), False, {"mf": 0}, 3, id="oversold-on-the-first-source"),
        pytest.param(4, levels(1, 2), True, {"mf": 0, "east": 0}, 1, id="split-then-oversold"),
        pytest.param(2, levels(None, 4), False, {"east": 2}, 0, id="a-missing-level-has-nothing"),
    ],
)
def test_an_order_line_subtracts_its_quantity(quantity, stock, split, after, shortfall):
    outcome = apply(line(quantity), stock, split=split)
    assert outcome.kind is OrderOutcomeKind.IMPORTED
    assert {s: lvl.quantity for s, lvl in outcome.levels.items()} == after
    assert outcome.shortfall == shortfall
    assert outcome.allocation is not None and outcome.allocation.quantity == quantity
    for entry in outcome.entries:
        assert entry.reason is Reason.ORDER
        assert entry.reference == "order:amazon:A-100:1"
        assert entry.at == NOW and entry.actor == "orders"
    assert sum(e.delta for e in outcome.entries) == -(quantity - shortfall)


def test_a_line_already_seen_is_skipped_and_changes_nothing():
    outcome = apply(line(), levels(5, 5), seen={("amazon", "A-100", "1")})
    assert outcome.kind is OrderOutcomeKind.SKIPPED_DUPLICATE
    assert outcome.entries == () and outcome.levels == {} and outcome.markets_to_update == ()
    assert outcome.allocation is None


def test_the_same_order_id_on_another_line_or_market_is_not_a_duplicate():
    seen = {("amazon", "A-100", "1")}
    assert apply(line(line_id="2"), levels(5, 5), seen=seen).kind is OrderOutcomeKind.IMPORTED
    assert apply(line(market="ebay"), levels(5, 5), seen=seen).kind is OrderOutcomeKind.IMPORTED


def test_every_other_market_is_to_be_updated():
    assert apply(line(market="ebay"), levels(5, 0)).markets_to_update == ("amazon", "shop")


def test_an_oversell_on_empty_stock_updates_no_market_since_nothing_changed():
    outcome = apply(line(3), levels(0, 0))
    assert outcome.shortfall == 3
    assert outcome.entries == ()
    assert outcome.markets_to_update == ()
    assert outcome.allocation == Allocation(shortfall=3, shortfall_source="mf")


def test_the_outcome_names_the_line_key_and_reference():
    order = line()
    assert order.key == ("amazon", "A-100", "1")
    assert order.reference == "order:amazon:A-100:1"


@pytest.mark.parametrize(
    "quantity", [0, -1, 1.5, True], ids=["zero", "negative", "fraction", "boolean"]
)
def test_an_order_line_needs_a_whole_positive_quantity(quantity):
    with pytest.raises(ValueError, match="quantity must be a whole number 1 or more"):
        line(quantity)
