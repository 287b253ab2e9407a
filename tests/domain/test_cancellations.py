"""Cancellations: restock by origin, the window wins, give back only what was taken."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon.inventory.allocation import Allocation
from daemon.inventory.cancellations import (
    CancellationKind,
    RestockDecision,
    apply_cancellation,
    restock_decision,
)
from daemon.inventory.orders import OrderLine
from daemon.inventory.stock import Reason, StockLevel

ORDERED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NOW = ORDERED + timedelta(days=2)
INSIDE = ORDERED + timedelta(days=3)
EDGE = ORDERED + timedelta(days=14)
OUTSIDE = ORDERED + timedelta(days=14, hours=3)


@pytest.mark.parametrize(
    ("origin", "requested", "cancelled_at", "policy", "restock", "reason"),
    [
        pytest.param(
            "market",
            None,
            INSIDE,
            "by_origin",
            True,
            "cancelled on the market",
            id="a-market-cancellation-restocks",
        ),
        pytest.param(
            "market",
            False,
            INSIDE,
            "by_origin",
            True,
            "cancelled on the market",
            id="a-market-cancellation-restocks-whatever-was-requested",
        ),
        pytest.param(
            "stockdrop",
            True,
            INSIDE,
            "by_origin",
            True,
            "chose --restock",
            id="a-stockdrop-cancellation-restocks-when-asked",
        ),
        pytest.param(
            "stockdrop",
            False,
            INSIDE,
            "by_origin",
            False,
            "chose --no-restock",
            id="a-stockdrop-cancellation-does-not-restock-when-told-not-to",
        ),
        pytest.param(
            "market",
            None,
            EDGE,
            "by_origin",
            True,
            "cancelled on the market",
            id="exactly-at-the-window-still-restocks",
        ),
        pytest.param(
            "market",
            None,
            OUTSIDE,
            "by_origin",
            False,
            "restock refused: cancelled 14 days 3 hours after the order, more than the 14-day",
            id="after-the-window-a-market-cancellation-is-refused",
        ),
        pytest.param(
            "stockdrop",
            True,
            OUTSIDE,
            "by_origin",
            False,
            "restock refused",
            id="after-the-window-an-operators-restock-is-refused",
        ),
        pytest.param(
            "stockdrop",
            False,
            OUTSIDE,
            "by_origin",
            False,
            "not restocked: cancelled 14 days",
            id="after-the-window-no-restock-is-not-a-refusal",
        ),
        pytest.param(
            "stockdrop",
            None,
            OUTSIDE,
            "by_origin",
            False,
            "more than the 14-day restock window",
            id="after-the-window-the-operator-need-not-choose",
        ),
        pytest.param(
            "market",
            None,
            INSIDE,
            "never",
            False,
            "policy is never",
            id="policy-never-overrides-a-market-cancellation",
        ),
        pytest.param(
            "stockdrop",
            True,
            INSIDE,
            "never",
            False,
            "policy is never",
            id="policy-never-overrides-the-operator",
        ),
        pytest.param(
            "stockdrop",
            None,
            INSIDE,
            "always",
            True,
            "policy is always",
            id="policy-always-needs-no-operator-choice",
        ),
        pytest.param(
            "stockdrop",
            False,
            INSIDE,
            "always",
            True,
            "policy is always",
            id="policy-always-overrides-the-operator",
        ),
        pytest.param(
            "market",
            None,
            OUTSIDE,
            "always",
            False,
            "restock refused",
            id="the-window-wins-over-policy-always",
        ),
        pytest.param(
            "market",
            None,
            ORDERED - timedelta(hours=1),
            "by_origin",
            True,
            "cancelled on the market",
            id="a-cancellation-stamped-before-its-order-is-inside-the-window",
        ),
    ],
)
def test_restock_decision_follows_the_window_then_the_policy_then_the_origin(
    origin, requested, cancelled_at, policy, restock, reason
):
    decision = restock_decision(origin, requested, ORDERED, cancelled_at, policy=policy)
    assert decision.restock is restock
    assert reason in decision.reason


def test_a_stockdrop_cancellation_without_a_choice_asks_for_one():
    with pytest.raises(ValueError, match="choose --restock or --no-restock"):
        restock_decision("stockdrop", None, ORDERED, INSIDE)


def test_the_window_is_configurable():
    late = ORDERED + timedelta(days=3, hours=1)
    assert restock_decision("market", None, ORDERED, late, window_days=3).restock is False
    assert (
        "more than the 3-day restock window"
        in restock_decision("market", None, ORDERED, late, 3).reason
    )
    assert restock_decision("market", None, ORDERED, late, window_days=30).restock is True


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"origin": "phone"}, "origin must be", id="unknown-origin"),
        pytest.param({"policy": "sometimes"}, "policy must be", id="unknown-policy"),
        pytest.param({"window_days": -1}, "window_days must be", id="negative-window"),
    ],
)
def test_restock_decision_refuses_unknown_values(kwargs, message):
    args = {
        "origin": "market",
        "requested": None,
        "ordered_at": ORDERED,
        "cancelled_at": INSIDE,
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        restock_decision(**args)


LINE = OrderLine("amazon", "A-100", "1", "SKU-1", 5, ORDERED)
TOOK = Allocation(taken=(("mf", 2), ("east", 1)), shortfall=2, shortfall_source="mf")
YES = RestockDecision(True, "restocked: cancelled on the market")
NO = RestockDecision(False, "not restocked: the operator chose --no-restock")


def cancel(decision, stock, cancelled=frozenset(), allocation=TOOK):
    return apply_cancellation(
        LINE,
        allocation,
        decision,
        stock,
        cancelled=cancelled,
        markets=["amazon", "ebay"],
        now=NOW,
        actor="cancel",
    )


def test_a_restock_gives_back_exactly_what_was_taken_from_each_source_but_not_the_shortfall():
    outcome = cancel(YES, {"mf": StockLevel(0), "east": StockLevel(4)})
    assert outcome.kind is CancellationKind.APPLIED
    assert outcome.returned == (("mf", 2), ("east", 1))
    assert {s: lvl.quantity for s, lvl in outcome.levels.items()} == {"mf": 2, "east": 5}
    assert [(e.source, e.delta) for e in outcome.entries] == [("mf", 2), ("east", 1)]
    assert all(
        e.reason is Reason.CANCEL and e.reference == "cancel:amazon:A-100:1"
        for e in outcome.entries
    )
    assert outcome.markets_to_update == ("amazon", "ebay")


def test_a_cancellation_without_restock_is_recorded_but_changes_no_stock():
    outcome = cancel(NO, {"mf": StockLevel(0)})
    assert outcome.kind is CancellationKind.APPLIED
    assert outcome.decision == NO
    assert outcome.entries == () and outcome.levels == {} and outcome.markets_to_update == ()


@pytest.mark.parametrize("decision", [YES, NO], ids=["restocked-before", "not-restocked-before"])
def test_cancelling_the_same_line_twice_returns_nothing_the_second_time(decision):
    outcome = cancel(decision, {"mf": StockLevel(0)}, cancelled={LINE.key})
    assert outcome.kind is CancellationKind.SKIPPED_DUPLICATE
    assert outcome.entries == () and outcome.returned == () and outcome.levels == {}


def test_cancelling_a_pure_oversell_returns_nothing():
    outcome = cancel(
        YES, {"mf": StockLevel(0)}, allocation=Allocation(shortfall=5, shortfall_source="mf")
    )
    assert outcome.kind is CancellationKind.APPLIED
    assert outcome.entries == () and outcome.markets_to_update == ()


def test_cancelling_a_line_never_imported_gives_nothing_back():
    outcome = cancel(YES, {"mf": StockLevel(0)}, allocation=None)
    assert outcome.kind is CancellationKind.APPLIED
    assert outcome.entries == () and outcome.returned == () and outcome.markets_to_update == ()
