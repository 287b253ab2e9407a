"""A re-sent full feed records its as-of once for the source, and the stale guard still holds."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from daemon.db import stock as store
from daemon.db.models import Source, Stock
from tests.ingest.conftest import IngestEnv

T1 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
T2 = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)
BETWEEN = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
FULL = 'scope = "full"\nmax_zeroed_percent = 100'


def as_of(env: IngestEnv) -> dict[str, datetime | None]:
    with env.sessions() as s:
        return {r.sku: r.as_of for r in store.inventory(s, merchant="acme", source="wh1")}


def stored_as_of(env: IngestEnv) -> dict[int, datetime | None]:
    with env.sessions() as s:
        return dict(s.execute(select(Stock.product_id, Stock.as_of)
                              .where(Stock.source_id == env.source().id)).all())


def test_a_resent_full_feed_moves_every_skus_as_of_without_rewriting_the_unchanged(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(feed=FULL)
    env.upload("f1.csv", "sku,quantity\nA,1\nB,2\nC,3\n", received_at=T1)
    before = stored_as_of(env)
    out = env.upload("f2.csv", "sku,quantity\nA,7\nB,2\nC,3\n", received_at=T2)
    assert (out.status, out.counts["applied"], out.counts["unchanged"]) == ("applied", 1, 2)
    assert env.quantities() == {"A": 7, "B": 2, "C": 3}
    # What every reader sees: all three as of the second feed.
    assert as_of(env) == {"A": T2, "B": T2, "C": T2}
    # How it is stored: only A's row was written; the source carries T2.
    after = stored_as_of(env)
    assert sorted(after.values()) == sorted([T1, T1, T2]) and len(before) == 3
    with env.sessions() as s:
        assert s.get(Source, env.source().id).full_feed_as_of == T2  # type: ignore[union-attr]
    assert env.ledger_count() == 4  # three first-load entries, one change


def test_after_a_resent_full_feed_an_older_update_is_stale_for_every_sku(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(feed=FULL)
    env.upload("f1.csv", "sku,quantity\nA,1\nB,2\nC,3\n", received_at=T1)
    env.upload("f2.csv", "sku,quantity\nA,7\nB,2\nC,3\n", received_at=T2)
    # A manual update timed between the two feeds is older than B's effective as-of.
    env.set("B", 50, at=BETWEEN)
    assert env.quantities()["B"] == 2
    # So is a late full feed generated between them: nothing applied, nothing zeroed.
    late = env.upload("late.csv", "sku,quantity\nB,9\n", received_at=BETWEEN)
    assert late.counts["stale"] == 1 and late.counts["zeroed"] == 0
    assert env.quantities() == {"A": 7, "B": 2, "C": 3}
    # And the late feed did not move the source's as-of backwards.
    assert as_of(env) == {"A": T2, "B": T2, "C": T2}


def test_a_row_with_its_own_as_of_is_not_covered_by_the_source_time(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(feed=FULL)
    env.upload("f1.csv", "sku,quantity\nA,1\nB,2\n", received_at=T1)
    # Per-row times: this feed does not cover the source at one time.
    env.upload("f2.csv", "sku,quantity,as_of\nA,1,2026-11-30T12:00:00Z\nB,2,2026-11-30T13:00:00Z\n",
               received_at=T2)
    with env.sessions() as s:
        assert s.get(Source, env.source().id).full_feed_as_of == T1  # type: ignore[union-attr]
    assert as_of(env) == {"A": datetime(2026, 11, 30, 12, tzinfo=UTC),
                          "B": datetime(2026, 11, 30, 13, tzinfo=UTC)}


def test_a_newer_manual_update_outlives_a_resent_full_feed_it_predates(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(feed=FULL)
    env.upload("f1.csv", "sku,quantity\nA,1\nB,2\n", received_at=T1)
    later = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)
    env.set("A", 40, at=later)
    out = env.upload("f2.csv", "sku,quantity\nA,1\nB,3\n", received_at=T2)
    assert out.counts["stale"] == 1
    assert env.quantities() == {"A": 40, "B": 3}
    assert as_of(env) == {"A": later, "B": T2}

