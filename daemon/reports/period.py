"""When a digest is due and what it covers: plain times in, plain times out (no clock, no I/O).

A merchant's digest is sent daily at ``digest_at`` in the merchant's time
zone. The times it is sent at are *boundaries*; a digest covers
``[covered_until, boundary)``, where ``covered_until`` is the boundary the
last digest ended at (the watermark, kept in the database). Periods are
computed, not timed: a daemon that was down at 07:00, or a leader that
took over at 07:03, finds the same boundary and so writes the same digest,
and a digest that covers the days it missed, not one per day.

Daylight saving time: a ``digest_at`` that falls in the spring-forward gap
(02:30 on a night that skips from 02:00 to 03:00) is the instant zoneinfo
gives that wall time (03:30 local); one that occurs twice in the autumn is
its first occurrence. Every daemon computes the same instant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_AT = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def parse_at(text: str) -> time:
    """``"07:00"`` -> 07:00; a ``ValueError`` that says what is wrong otherwise."""
    found = _AT.fullmatch(text)
    if found is None:
        raise ValueError(f"{text!r} is not a time of day as HH:MM (24-hour, e.g. \"07:00\")")
    return time(int(found.group(1)), int(found.group(2)))


@dataclass(frozen=True)
class Period:
    """``[start, end)`` in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a period's times must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(f"a period must end after it starts: {self.start} .. {self.end}")

    def holds(self, when: datetime | None) -> bool:
        return when is not None and self.start <= when < self.end


def _on(day: date, at: time, zone: ZoneInfo) -> datetime:
    # Through UTC and back: a wall time in a DST gap becomes a real instant.
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def boundary_at_or_before(now: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The latest scheduled time (UTC) at or before ``now``."""
    day = now.astimezone(zone).date()
    for back in range(3):  # today's, or yesterday's (two for a DST edge at midnight)
        candidate = _on(day - timedelta(days=back), at, zone)
        if candidate <= now:
            return candidate
    raise AssertionError("no scheduled time in the last three days")  # pragma: no cover


def next_boundary(now: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The first scheduled time (UTC) after ``now``."""
    day = now.astimezone(zone).date()
    for ahead in range(3):
        candidate = _on(day + timedelta(days=ahead), at, zone)
        if candidate > now:
            return candidate
    raise AssertionError("no scheduled time in the next three days")  # pragma: no cover


def due(now: datetime, covered_until: datetime, at: time, zone: ZoneInfo) -> Period | None:
    """The period the scheduled digest should cover now, or None: not due yet."""
    end = boundary_at_or_before(now, at, zone)
    return Period(covered_until, end) if end > covered_until else None


def manual(now: datetime, *, since: datetime | None, covered_until: datetime | None) -> Period:
    """What ``report send`` / ``preview`` cover: from ``since``, else from the end of the last
    scheduled digest, else the last day; up to ``now``."""
    start = since or covered_until or now - timedelta(days=1)
    if start >= now:
        raise ValueError(f"the period would start at {start.isoformat()}, not before now ({now.isoformat()})")
    return Period(start, now)
