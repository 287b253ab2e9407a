"""First integration wins: the first market's listings become merchant-fulfilled stock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon.inventory.listings import ListingRow, ListingStatus, has_integrated, import_listings
from daemon.inventory.stock import Reason, StockLevel

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("current", "rows", "levels", "deltas"),
    [
        pytest.param(
            {},
            [ListingRow("A", 4), ListingRow("B", 0)],
            {"A": 4, "B": 0},
            {"A": 4},
            id="quantities-become-merchant-fulfilled-levels",
        ),
        pytest.param(
            {"A": StockLevel(9, NOW - timedelta(days=1))},
            [ListingRow("A", 4)],
            {"A": 4},
            {"A": -5},
            id="the-first-market-overwrites-a-hand-set-level",
        ),
        pytest.param(
            {"A": StockLevel(4)},
            [ListingRow("A", 4)],
            {"A": 4},
            {},
            id="an-equal-quantity-writes-no-ledger-entry",
        ),
        pytest.param(
            {},
            [ListingRow("A", 2), ListingRow("A", 2)],
            {"A": 2},
            {"A": 2},
            id="the-same-sku-twice-with-the-same-quantity-is-one-level",
        ),
    ],
)
def test_the_first_market_sets_merchant_fulfilled_levels(current, rows, levels, deltas):
    result = import_listings(False, rows, current, NOW)
    assert result.first_integration is True
    assert {sku: lvl.quantity for sku, lvl in result.levels.items()} == levels
    # A new SKU at 0 is no change for the ledger, whether or not an entry says 0 -> 0.
    assert {e.sku: e.delta for e in result.entries if e.delta} == deltas
    assert all(
        e.reason is Reason.IMPORT and e.source == "merchant-fulfilled" for e in result.entries
    )
    assert all(not s.needs_update for s in result.listings)


@pytest.mark.parametrize(
    "current",
    [pytest.param({}, id="with-no-stock"), pytest.param({"A": StockLevel(9)}, id="with-stock")],
)
def test_a_later_market_changes_nothing_and_every_listing_needs_an_update(current):
    result = import_listings(
        True, [ListingRow("A", 4), ListingRow("B", 1), ListingRow("A", 4)], current, NOW
    )
    assert result.first_integration is False
    assert result.entries == () and result.levels == {}
    assert result.listings == (ListingStatus("A", True), ListingStatus("B", True))


def test_the_same_sku_twice_with_different_quantities_is_refused_on_first_integration():
    with pytest.raises(
        ValueError, match="'A' is listed twice with different quantities \\(2 and 3\\)"
    ):
        import_listings(False, [ListingRow("A", 2), ListingRow("A", 3)], {}, NOW)


def test_a_level_newer_than_now_is_kept_and_its_listing_is_resent():
    later = StockLevel(7, NOW + timedelta(minutes=5))
    result = import_listings(False, [ListingRow("A", 4)], {"A": later}, NOW)
    assert result.levels == {} and result.entries == ()
    assert result.listings == (ListingStatus("A", True),)


def test_the_source_actor_and_reference_can_be_named():
    result = import_listings(
        False, [ListingRow("A", 4)], {}, NOW, source="mf", actor="alice", reference="market:ebay"
    )
    (entry,) = result.entries
    assert (entry.source, entry.actor, entry.reference, entry.at) == (
        "mf",
        "alice",
        "market:ebay",
        NOW,
    )


@pytest.mark.parametrize(
    ("first_market", "market", "expected"),
    [
        pytest.param(None, "ebay", False, id="no-market-yet-is-the-first-integration"),
        pytest.param(
            "ebay", "ebay", False, id="another-file-of-the-first-market-is-still-the-first"
        ),
        pytest.param("ebay", "amazon", True, id="another-market-comes-later"),
    ],
)
def test_has_integrated_is_true_only_when_another_market_came_first(first_market, market, expected):
    assert has_integrated(first_market, market) is expected
