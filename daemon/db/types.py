"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python, whatever the backend stores.

    SQLite keeps no zone, PostgreSQL keeps timestamptz; both come back aware.
    Naive datetimes are refused on the way in: a naive time is a bug.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} stored; pass an aware UTC time")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(value: datetime) -> int:
    """Microseconds since the Unix epoch of an aware time (exact; no float on the way)."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


class UTCMicros(UTCDateTime):
    """``UTCDateTime`` kept as integer microseconds since the epoch on SQLite.

    For the columns a bulk apply writes a million times (stock, ledger,
    products): SQLAlchemy's SQLite text form is 26 bytes a value and a
    formatted string per row on the way in and out; an integer is at most
    8 bytes and binds, compares and reads as a plain int. PostgreSQL keeps
    its native timestamptz. Migration 0007 has the measurements.
    """

    cache_ok = True

    # The declared type stays DATETIME everywhere (what migration 0007 left
    # on SQLite, whose DATETIME has numeric affinity and keeps integers as
    # they are); only SQLite's processors are replaced: its DateTime would
    # format and parse text.
    def bind_processor(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return lambda value: self.process_bind_param(value, dialect)
        return super().bind_processor(dialect)

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        if dialect.name == "sqlite":
            return lambda value: self.process_result_value(value, dialect)
        return super().result_processor(dialect, coltype)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        value = super().process_bind_param(value, dialect)  # refuses naive times; UTC
        if dialect.name == "sqlite" and value is not None:
            return to_micros(value.replace(tzinfo=UTC))  # the parent strips the zone for SQLite
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if dialect.name != "sqlite" or value is None:
            return super().process_result_value(value, dialect)
        return from_micros(int(value))
