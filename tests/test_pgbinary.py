"""PostgreSQL's binary COPY format as ``db.bulk.pgbinary`` writes it, read back by a real server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.db.bulk import pgbinary
from tests.conftest import PG_URL, need_pg

pytestmark = pytest.mark.postgres

KINDS: tuple[pgbinary.Kind, ...] = ("int2", "int4", "int8", "timestamptz", "text", "text")
COLUMNS = "a int2, b int4, c int8, d timestamptz, e text, f varchar(300)"
SCHEMA = {"a": pl.Int64, "b": pl.Int64, "c": pl.Int64, "d": pl.Datetime("us", "UTC"), "e": pl.Utf8, "f": pl.Utf8}


@pytest.fixture(scope="module")
def cursor() -> Iterator[object]:
    need_pg()
    import psycopg

    with psycopg.connect(PG_URL.replace("postgresql+psycopg://", "postgresql://")) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TEMPORARY TABLE t ({COLUMNS})")
        yield cur


def round_trip(cur, frame: pl.DataFrame) -> list[tuple]:  # type: ignore[no-untyped-def]
    cur.execute("TRUNCATE t")
    with cur.copy("COPY t FROM STDIN WITH (FORMAT binary)") as copy:
        for chunk in pgbinary.chunks(frame, KINDS):
            copy.write(chunk)
    cur.execute("SELECT a, b, c, d, e, f FROM t")
    return [tuple(row) for row in cur.fetchall()]


def expected(frame: pl.DataFrame) -> list[tuple]:
    return [tuple(row) for row in frame.iter_rows()]


def test_every_kind_nulls_and_awkward_text_read_back_exactly(cursor) -> None:  # type: ignore[no-untyped-def]
    frame = pl.DataFrame({
        "a": [1, None, -(2**15), 2**15 - 1],
        "b": [2**31 - 1, -5, None, 0],
        "c": [None, 7, -(2**63), 2**63 - 1],
        "d": [datetime(2026, 12, 2, 5, 1, 2, 345678, tzinfo=UTC), None,
              datetime(1970, 1, 1, tzinfo=UTC), datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)],
        "e": ["héllo", None, "", "日本語"],
        "f": ['x,y\n"z\t\\', "ÿ", None, "a" * 300],
    }, schema=SCHEMA)
    assert round_trip(cursor, frame) == expected(frame)


def test_a_frame_longer_than_one_chunk_keeps_its_rows_in_order(cursor, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(pgbinary, "_SLICE", 7)
    n = 50
    frame = pl.DataFrame({
        "a": [i % 3 or None for i in range(n)], "b": list(range(n)), "c": [i * 10**12 for i in range(n)],
        "d": [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i) for i in range(n)],
        "e": [f"sku-{i}" * (i % 4) for i in range(n)], "f": [None if i % 5 == 0 else str(i) for i in range(n)],
    }, schema=SCHEMA)
    assert round_trip(cursor, frame) == expected(frame)


def test_a_value_out_of_its_columns_range_is_refused_not_wrapped() -> None:
    frame = pl.DataFrame({"b": [2**31]}, schema={"b": pl.Int64})
    with pytest.raises(ValueError, match="out of int4's range"):
        list(pgbinary.chunks(frame, ("int4",)))


_text = st.one_of(st.none(), st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
                                     max_size=20))
_rows = st.lists(st.tuples(
    st.one_of(st.none(), st.integers(-(2**15), 2**15 - 1)),
    st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
    st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
    st.one_of(st.none(), st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                                      timezones=st.just(UTC))),
    _text, _text), max_size=30)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_rows)
def test_any_rows_read_back_exactly(cursor, rows) -> None:  # type: ignore[no-untyped-def]
    frame = pl.DataFrame(rows, schema=SCHEMA, orient="row")
    assert round_trip(cursor, frame) == expected(frame)


@pytest.mark.parametrize("e, f", [("ab-c", "üüü"), ("", "x")], ids=["texts-of-one-length", "empty-texts"])
def test_rows_of_fields_of_one_width_each_read_back_exactly(cursor, monkeypatch, e, f) -> None:  # type: ignore[no-untyped-def]
    """No nulls and every text of one byte length: each row is one record (``encode_rows``'s fast way)."""
    monkeypatch.setattr(pgbinary, "_SLICE", 7)
    n = 50
    frame = pl.DataFrame({
        "a": [i - 25 for i in range(n)], "b": [-(2**31) + i for i in range(n)], "c": [2**63 - 1 - i for i in range(n)],
        "d": [datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) + timedelta(microseconds=i) for i in range(n)],
        "e": [e] * n, "f": [f] * n,
    }, schema=SCHEMA)
    assert round_trip(cursor, frame) == expected(frame)


_no_null_rows = st.lists(st.tuples(
    st.integers(-(2**15), 2**15 - 1), st.integers(-(2**31), 2**31 - 1), st.integers(-(2**63), 2**63 - 1),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)),
    st.text("abc", min_size=3, max_size=3), _text), min_size=1, max_size=30)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_no_null_rows)
def test_runs_of_fixed_fields_around_a_varying_text_read_back_exactly(cursor, rows) -> None:  # type: ignore[no-untyped-def]
    frame = pl.DataFrame(rows, schema=SCHEMA, orient="row")
    assert round_trip(cursor, frame) == expected(frame)
