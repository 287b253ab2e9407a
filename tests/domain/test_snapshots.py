"""The oversell window: orders after a snapshot's as_of are subtracted again."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from daemon.inventory.snapshots import Rebase, apply_snapshot, rebase_snapshot
from daemon.inventory.stock import Reason, StockLevel


def at(hh: int, mm: int) -> datetime:
    return datetime(2024, 5, 1, hh, mm, tzinfo=UTC)


T = at(10, 0)


@pytest.mark.parametrize(
    ("snapshot", "orders", "expected"),
    [
        pytest.param(
            10,
            [(at(10, 2), 3)],
            Rebase(7, 3, 0),
            id="an-order-after-the-snapshot-is-subtracted-again",
        ),
        pytest.param(
            10,
            [(at(9, 58), 3)],
            Rebase(10, 0, 0),
            id="an-order-before-the-snapshot-is-in-the-count",
        ),
        pytest.param(
            10, [(T, 3)], Rebase(10, 0, 0), id="an-order-at-the-snapshot-time-is-in-the-count"
        ),
        pytest.param(
            10,
            [(at(10, 1), 2), (at(10, 4), 4), (at(9, 0), 5)],
            Rebase(4, 6, 0),
            id="only-the-later-orders-add-up",
        ),
        pytest.param(
            2, [(at(10, 2), 5)], Rebase(0, 2, 3), id="below-zero-stops-at-zero-with-a-shortfall"
        ),
        pytest.param(0, [], Rebase(0, 0, 0), id="no-orders-keep-the-snapshot"),
    ],
)
def test_a_rebased_snapshot_subtracts_only_the_orders_after_it(snapshot, orders, expected):
    assert rebase_snapshot(snapshot, T, orders) == expected


def test_rebase_snapshot_refuses_a_negative_count():
    with pytest.raises(ValueError, match="must not be negative"):
        rebase_snapshot(-1, T, [])


def snapshot(current, qty, *, orders=(), counted_as_of=None):
    counted_as_of = counted_as_of or (current.as_of if current else None)
    return apply_snapshot(
        current,
        qty,
        as_of=T,
        orders_after=list(orders),
        sku="A",
        source="east",
        actor="feed",
        now=at(10, 5),
        counted_as_of=counted_as_of,
    )


def test_a_snapshot_of_ten_applied_after_an_order_of_three_leaves_seven():
    # 09:00 count said 13; order at 10:02 took 3 (level 10, bumped to 10:02 by the order);
    # the 10:00 snapshot says 10 and arrives at 10:05.
    outcome = snapshot(
        StockLevel(10, at(10, 2)), 10, orders=[(at(10, 2), 3)], counted_as_of=at(9, 0)
    )
    assert not outcome.stale
    assert outcome.level == StockLevel(7, T)
    assert [(e.reason, e.before, e.after) for e in outcome.entries] == [(Reason.RECOUNT, 10, 7)]


def test_the_ledger_shows_the_feed_then_the_recount():
    outcome = snapshot(StockLevel(4, at(9, 0)), 10, orders=[(at(10, 2), 3)])
    assert [(e.reason, e.before, e.after) for e in outcome.entries] == [
        (Reason.FEED, 4, 10),
        (Reason.RECOUNT, 10, 7),
    ]
    assert outcome.rebase == Rebase(7, 3, 0)


def test_a_snapshot_that_ends_where_the_stock_is_writes_nothing():
    outcome = snapshot(StockLevel(7, at(9, 0)), 10, orders=[(at(10, 2), 3)])
    assert outcome.entries == ()
    assert outcome.level == StockLevel(7, T)


def test_a_snapshot_older_than_the_last_count_is_stale():
    current = StockLevel(5, at(10, 30))
    outcome = snapshot(current, 10)
    assert outcome.stale and outcome.level == current and outcome.entries == ()


def test_a_snapshot_for_a_new_sku_creates_the_level():
    outcome = snapshot(None, 10, orders=[(at(10, 3), 1)])
    assert outcome.level == StockLevel(9, T)
    assert sum(e.delta for e in outcome.entries) == 9


def test_a_snapshot_is_judged_stale_against_the_last_count_not_the_last_order():
    # The level's as_of moved to 10:02 with an order; the count it came from is 09:00.
    current = StockLevel(10, at(10, 2))
    outcome = apply_snapshot(
        current,
        10,
        as_of=T,
        orders_after=[(at(10, 2), 3)],
        sku="A",
        source="east",
        actor="feed",
        now=at(10, 5),
        counted_as_of=at(9, 0),
    )
    assert not outcome.stale and outcome.level.quantity == 7


def test_a_level_never_counted_takes_any_snapshot():
    outcome = apply_snapshot(
        StockLevel(0, at(11, 0)),
        10,
        as_of=T,
        orders_after=[],
        sku="A",
        source="east",
        actor="feed",
        now=at(11, 5),
        counted_as_of=None,
    )
    assert not outcome.stale and outcome.level == StockLevel(10, T)


def test_the_snapshot_entry_can_carry_another_reason():
    outcome = apply_snapshot(
        None,
        4,
        as_of=T,
        orders_after=[],
        sku="A",
        source="east",
        actor="alice",
        now=at(10, 5),
        counted_as_of=None,
        reason=Reason.MANUAL,
        reference="upload:7",
    )
    assert [(e.reason, e.reference, e.delta) for e in outcome.entries] == [
        (Reason.MANUAL, "upload:7", 4)
    ]
