"""The digest's periods and figures from plain values: no database, no clock, no server."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from daemon.db.digests import DeliveryRow, OversellRow, UploadRow
from daemon.reports import period
from daemon.reports.period import Period
from daemon.reports.summary import FileCounts, summarise

BERLIN = ZoneInfo("Europe/Berlin")
SEVEN = time(7, 0)
T = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)  # 07:00 in Berlin


def test_a_time_of_day_is_hh_mm_and_anything_else_says_so() -> None:
    assert period.parse_at("07:00") == time(7, 0) and period.parse_at("23:59") == time(23, 59)
    for bad in ("7:00", "24:00", "07:60", "0700", "07:00:00", ""):
        with pytest.raises(ValueError, match="HH:MM"):
            period.parse_at(bad)


def test_the_boundary_is_the_merchants_wall_clock_time_in_utc() -> None:
    assert period.boundary_at_or_before(T, SEVEN, BERLIN) == T
    assert period.boundary_at_or_before(T - timedelta(seconds=1), SEVEN, BERLIN) == T - timedelta(days=1)
    assert period.next_boundary(T, SEVEN, BERLIN) == T + timedelta(days=1)
    # Summer time: 07:00 in Berlin is 05:00 UTC.
    june = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
    assert period.boundary_at_or_before(june, SEVEN, BERLIN) == datetime(2026, 6, 10, 5, 0, tzinfo=UTC)
    # Tokyo's 07:00 on the 3rd is 22:00 UTC on the 2nd.
    tokyo = period.boundary_at_or_before(T, SEVEN, ZoneInfo("Asia/Tokyo"))
    assert tokyo == datetime(2026, 12, 1, 22, 0, tzinfo=UTC)


def test_across_the_clock_changes_the_days_are_23_and_25_hours_and_a_missing_time_is_an_instant() -> None:
    spring = period.boundary_at_or_before(datetime(2026, 3, 29, 12, 0, tzinfo=UTC), SEVEN, BERLIN)
    assert spring - period.boundary_at_or_before(spring - timedelta(seconds=1), SEVEN, BERLIN) == timedelta(hours=23)
    autumn = period.boundary_at_or_before(datetime(2026, 10, 25, 12, 0, tzinfo=UTC), SEVEN, BERLIN)
    assert autumn - period.boundary_at_or_before(autumn - timedelta(seconds=1), SEVEN, BERLIN) == timedelta(hours=25)
    # 02:30 does not exist on 29 March in Berlin: every daemon takes the same instant for it.
    gap = period.boundary_at_or_before(datetime(2026, 3, 29, 12, 0, tzinfo=UTC), time(2, 30), BERLIN)
    assert gap == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 summer time


def test_a_digest_is_due_once_its_boundary_passed_and_covers_every_day_since_the_last() -> None:
    assert period.due(T - timedelta(minutes=1), T - timedelta(days=1), SEVEN, BERLIN) is None
    assert period.due(T, T - timedelta(days=1), SEVEN, BERLIN) == Period(T - timedelta(days=1), T)
    assert period.due(T + timedelta(hours=1), T, SEVEN, BERLIN) is None
    assert period.due(T + timedelta(days=3, hours=1), T, SEVEN, BERLIN) == Period(T, T + timedelta(days=3))


def test_a_digest_by_hand_covers_from_since_else_the_watermark_else_a_day() -> None:
    now = T + timedelta(hours=5)
    assert period.manual(now, since=T - timedelta(hours=2), covered_until=T) == Period(T - timedelta(hours=2), now)
    assert period.manual(now, since=None, covered_until=T) == Period(T, now)
    assert period.manual(now, since=None, covered_until=None) == Period(now - timedelta(days=1), now)
    with pytest.raises(ValueError, match="not before now"):
        period.manual(now, since=now + timedelta(seconds=1), covered_until=None)


def up(id: int, status: str, *, source: str | None = "wh1", market: str | None = None, applied: int = 0,
       errors: int = 0, at: datetime = T + timedelta(hours=1), zeroed: int = 0, message: str | None = None) -> UploadRow:
    return UploadRow(id, source, market, "feed" if source else "orders", f"f{id}.csv", status, applied + errors,
                     applied, 0, errors, zeroed, message, at)


def test_files_are_counted_by_outcome_and_rows_only_where_they_were_applied() -> None:
    files = [up(1, "applied", applied=5), up(2, "applied_with_errors", applied=3, errors=2),
             up(3, "rejected", errors=4), up(4, "held", applied=7, zeroed=9), up(5, "duplicate"),
             up(6, "processing"), up(7, "applied", source="wh2", applied=1),
             up(8, "applied", at=T - timedelta(seconds=1), applied=100)]  # before the period
    summary = summarise(Period(T, T + timedelta(days=1)), files, sources=["wh1", "wh2", "idle"], markets=[])
    assert summary.sources == [
        ("wh1", FileCounts(received=6, applied=1, applied_with_errors=1, rejected=1, held=1, duplicate=1,
                           in_progress=1, rows_applied=8, rows_unchanged=0, rows_rejected=6)),
        ("wh2", FileCounts(received=1, applied=1, rows_applied=1)),
        ("idle", FileCounts())]  # a source that sent nothing is shown with its zeros
    assert summary.total.received == 7 and summary.total.rows_applied == 9
    assert [(a.upload_id, a.status) for a in summary.actions] == [(4, "held"), (3, "rejected"),
                                                                   (2, "applied_with_errors")]
    assert summary.with_failed_rows == [2, 3]


def test_a_file_still_held_from_before_needs_action_first_and_says_since_when() -> None:
    old = up(1, "held", at=T - timedelta(days=2), zeroed=40,
             message="full feed would set 40 of 50 SKUs (80.0%) to 0; approve with `stockdrop history approve 1` "
                     "or reject it")
    summary = summarise(Period(T, T + timedelta(days=1)), [up(2, "rejected", errors=1)], held_before=[old],
                        sources=["wh1"], markets=[])
    first, second = summary.actions
    assert (first.upload_id, second.upload_id) == (1, 2)
    assert first.why == "full feed would set 40 of 50 SKUs (80.0%) to 0 (still held from before this period)"
    assert first.commands == ("stockdrop history approve 1", "stockdrop history reject 1")
    assert "40 SKU(s) would be set to 0" in first.todo
    assert summary.sources[0][1].held == 0  # counted where it was received, not again


def test_a_markets_deliveries_failures_and_oversells_are_those_of_the_period() -> None:
    span = Period(T, T + timedelta(days=1))
    inside, before = T + timedelta(hours=2), T - timedelta(hours=2)

    def export(id: int, market: str, status: str, attempts: int, tried: datetime | None,
               delivered: datetime | None, lines: int = 3) -> DeliveryRow:
        return DeliveryRow(id, market, "delta", status, f"e{id}", lines, attempts,
                           "connection refused" if attempts else None, tried, delivered)

    deliveries = [export(1, "amz", "delivered", 0, None, inside), export(2, "amz", "delivered", 2, inside, inside, 5),
                  export(3, "amz", "delivered", 0, None, before),  # the last period's
                  export(4, "shop", "failing", 3, inside, None)]
    oversells = [OversellRow("amz", "O-1", "1", "A", 5, 2, "wh1", inside, inside),
                 OversellRow("amz", "O-2", "1", "B", 1, 1, None, inside, inside)]
    summary = summarise(span, [up(9, "rejected", source=None, market="shop", errors=1)], sources=[],
                        markets=["amz", "shop", "ebay"], deliveries=deliveries, oversells=oversells,
                        last_deliveries={"amz": before, "ebay": before - timedelta(days=9)})
    amz, shop, ebay = summary.markets
    assert (amz.delivered, amz.lines_delivered, amz.failed, amz.owed, amz.last_delivery) == (2, 8, 1, 0, inside)
    assert (amz.oversold_lines, amz.oversold_units) == (2, 3)
    assert (shop.delivered, shop.failed, shop.owed, shop.last_delivery, shop.last_error) == (
        0, 1, 1, None, "connection refused")
    assert (shop.files.received, shop.files.rejected) == (1, 1)
    assert (ebay.delivered, ebay.last_delivery) == (0, before - timedelta(days=9))
    assert [a.owner for a in summary.actions] == ["shop (orders)"]
