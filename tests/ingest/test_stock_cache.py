"""The stock kept between uploads (``ingest.stock_store``) is always what a fresh read returns.

After every upload the kept frame must equal ``bulk.load_current``; any
writer the daemon did not make itself must make it read again.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from daemon.db import bulk, stock_version
from tests.ingest.conftest import IngestEnv

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
FULL = 'scope = "full"\nmax_zeroed_percent = 100'
LOAD_CURRENT = bulk.load_current  # the real one: the ``reads`` fixture replaces it with a spy


def fresh(env: IngestEnv, source: str = "wh1") -> tuple[int, pl.DataFrame]:
    with env.sessions() as s:
        source_id = env.source(source).id
        return stock_version.current(s, source_id), LOAD_CURRENT(s, source_id).sort("product_id")


def kept(env: IngestEnv, source: str = "wh1") -> tuple[int, pl.DataFrame] | None:
    return env.pipeline.processor.feeds._stock._frames.get(env.source(source).id)


def assert_kept_is_fresh(env: IngestEnv, source: str = "wh1") -> None:
    held = kept(env, source)
    assert held is not None, "nothing kept after an apply"
    version, frame = fresh(env, source)
    assert held[0] == version
    assert held[1].sort("product_id").equals(frame), (held[1], frame)


@pytest.fixture
def reads(monkeypatch):  # type: ignore[no-untyped-def]
    """The source ids whose stock was read from the database."""
    seen: list[int] = []
    real = bulk.load_current

    def spy(session, source_id):  # type: ignore[no-untyped-def]
        seen.append(source_id)
        return real(session, source_id)

    monkeypatch.setattr(bulk, "load_current", spy)
    return seen


def feed(rows: dict[str, int]) -> str:
    return "sku,quantity\n" + "".join(f"{k},{v}\n" for k, v in rows.items())


def test_a_sequence_of_feeds_keeps_exactly_the_stored_stock(make_env, reads) -> None:  # type: ignore[no-untyped-def]
    env = make_env(feed=FULL)
    at = iter(T0 + timedelta(hours=h) for h in range(100))
    steps: list[dict[str, int]] = [
        {"A": 1, "B": 2, "C": 0},              # first load, a zero among them
        {"A": 1, "B": 5, "C": 0, "D": 7},      # one change, one new SKU
        {"A": 1, "D": 7},                       # B and C left out: B zeroed
        {"D": 7, "A": 1},                       # nothing changes: only the as-of moves
        {"A": 2, "B": 3, "E": 4},               # back again, and D zeroed
    ]
    for i, rows in enumerate(steps):
        out = env.upload(f"f{i}.csv", feed(rows), received_at=next(at))
        assert out.status == "applied", out
        assert_kept_is_fresh(env)
    assert env.quantities() == {"A": 2, "B": 3, "C": 0, "D": 0, "E": 4}
    assert reads == [env.source().id]  # read once, for the first load; kept since


def test_rows_with_their_own_times_and_stale_rows_are_kept_as_stored(make_env, reads) -> None:  # type: ignore[no-untyped-def]
    env = make_env(feed='as_of_from = "column"')
    env.upload("a.csv", "sku,quantity,updated_at\nA,1,2026-11-30T08:00:00Z\nB,2,2026-11-30T10:00:00Z\n")
    assert_kept_is_fresh(env)
    out = env.upload("b.csv", "sku,quantity,updated_at\nA,5,2026-11-30T09:00:00Z\nB,9,2026-11-30T09:00:00Z\n")
    assert (out.counts["applied"], out.counts["stale"]) == (1, 1)
    assert_kept_is_fresh(env)
    assert len(reads) == 1


def test_a_manual_update_between_two_feeds_makes_the_next_feed_read_again(make_env, reads) -> None:  # type: ignore[no-untyped-def]
    env = make_env(feed=FULL)
    env.upload("f1.csv", feed({"A": 1, "B": 2}), received_at=T0)
    with env.sessions() as s:
        before = stock_version.current(s, env.source().id)
    env.set("A", 40, at=T0 + timedelta(hours=1))  # an ORM write: db.stock.write_change
    with env.sessions() as s:
        assert stock_version.current(s, env.source().id) == before + 1
    out = env.upload("f2.csv", feed({"A": 1, "B": 3}), received_at=T0 + timedelta(hours=2))
    assert out.counts["applied"] == 2  # A's 40 was seen: 40 -> 1 is a change
    assert reads == [env.source().id] * 2
    assert_kept_is_fresh(env)


def test_another_daemon_writing_the_source_makes_this_one_read_again(make_env, reads) -> None:  # type: ignore[no-untyped-def]
    env = make_env(feed=FULL)
    other = make_env(feed=FULL)  # a second pipeline on the same database, with its own cache
    env.upload("f1.csv", feed({"A": 1, "B": 2}), received_at=T0)
    other.upload("f2.csv", feed({"A": 6, "B": 2}), received_at=T0 + timedelta(hours=1))
    out = env.upload("f3.csv", feed({"A": 6, "B": 2, "C": 1}), received_at=T0 + timedelta(hours=2))
    assert (out.counts["applied"], out.counts["unchanged"]) == (1, 2)  # A = 6 was seen
    assert_kept_is_fresh(env)
    assert env.quantities() == {"A": 6, "B": 2, "C": 1}


def test_an_apply_that_fails_before_its_commit_keeps_nothing_of_it(make_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from daemon.ingest import apply_feed

    env = make_env(feed=FULL)
    env.upload("f1.csv", feed({"A": 1, "B": 2}), received_at=T0)
    held = kept(env)
    real = apply_feed.finish

    def fail(session, upload, status, *a, **kw):  # type: ignore[no-untyped-def]
        if status == "applied":
            raise RuntimeError("injected failure before the commit")
        return real(session, upload, status, *a, **kw)

    monkeypatch.setattr(apply_feed, "finish", fail)
    with pytest.raises(RuntimeError):
        env.upload("f2.csv", feed({"A": 9, "B": 9}), received_at=T0 + timedelta(hours=1))
    monkeypatch.setattr(apply_feed, "finish", real)
    assert kept(env) is held  # rolled back: the stock is what was kept
    assert_kept_is_fresh(env)
    assert env.quantities() == {"A": 1, "B": 2}


def test_two_locations_mapped_to_one_source_keep_nothing_for_it(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(feed='location_map = { "north" = "wh1", "south" = "wh1" }')
    out = env.upload("loc.csv", "sku,quantity,location\nA,1,north\nB,2,south\n")
    assert out.status == "applied", out
    assert kept(env) is None


def test_only_db_bulk_writes_the_stock_table_with_sql() -> None:
    # Every other writer goes through the ORM, whose flushes bump
    # sources.stock_version (db.stock_version); SQL elsewhere would not.
    pattern = re.compile(r"(INSERT\s+INTO|UPDATE|DELETE\s+FROM|REPLACE\s+INTO)\s+\"?stock\"?\b", re.IGNORECASE)
    root = Path(__file__).resolve().parents[2] / "daemon"
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if "migrations" not in p.parts and "bulk" not in p.parts and pattern.search(p.read_text())]
    assert offenders == []
