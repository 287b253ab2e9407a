from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon.inventory.stock import QuantityError, Reason, StockLevel, adjust_quantity, set_quantity

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
KW = {"sku": "0017", "source": "wh", "reason": Reason.MANUAL, "actor": "cli", "now": NOW}


def test_setting_a_new_sku_writes_a_ledger_entry_from_zero() -> None:
    change = set_quantity(None, 7, **KW)
    assert change.level == StockLevel(7, NOW)
    assert change.entry is not None and (change.entry.before, change.entry.after) == (0, 7)


def test_setting_the_same_quantity_writes_no_ledger_entry() -> None:
    change = set_quantity(StockLevel(7, NOW - timedelta(hours=1)), 7, **KW)
    assert change.entry is None
    assert change.level.as_of == NOW  # the quantity is confirmed as of now


def test_an_older_snapshot_never_overwrites_newer_data() -> None:
    current = StockLevel(5, NOW)
    change = set_quantity(current, 9, as_of=NOW - timedelta(minutes=1), **KW)
    assert change.stale and change.entry is None and change.level == current


@pytest.mark.parametrize("bad", [-1, 2**31, 1.5, True, "3"], ids=["negative", "huge", "float", "bool", "text"])
def test_quantities_that_cannot_be_stored_are_refused(bad: object) -> None:
    with pytest.raises(QuantityError):
        set_quantity(None, bad, **KW)  # type: ignore[arg-type]


def test_adjusting_adds_the_delta_and_records_it() -> None:
    change, shortfall = adjust_quantity(StockLevel(5, NOW), -2, **KW)
    assert change.level.quantity == 3 and shortfall == 0
    assert change.entry is not None and change.entry.delta == -2


def test_adjusting_below_zero_stops_at_zero_and_reports_the_shortfall() -> None:
    change, shortfall = adjust_quantity(StockLevel(2, NOW), -5, **KW)
    assert change.level.quantity == 0 and shortfall == 3
    assert change.entry is not None and change.entry.after == 0
