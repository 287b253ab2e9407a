"""What a file means for the stock, however often and through however many daemons it comes.

A set-mode feed is the warehouse's statement of its stock: it is a no-op only
when it equals the latest one applied. An adjust feed, an order or a
cancellation is applied once, ever. The database itself refuses a second
apply of an upload, and each daemon recovers only the uploads it holds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError

from daemon.db import uploads
from daemon.db.models import Upload, UploadApply
from tests.ingest.conftest import IngestEnv

MONDAY = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def test_an_older_snapshot_sent_again_after_a_different_one_is_the_stock_again(env: IngestEnv) -> None:
    monday = "sku,quantity\nTSHIRT-RED-M,0\n"
    first = env.upload("mon.csv", monday, received_at=MONDAY)
    second = env.upload("tue.csv", "sku,quantity\nTSHIRT-RED-M,5\n", received_at=MONDAY + DAY)
    third = env.upload("wed.csv", monday, received_at=MONDAY + 2 * DAY)  # Monday's exact bytes
    assert (first.status, second.status, third.status) == ("applied", "applied", "applied")
    assert env.quantities() == {"TSHIRT-RED-M": 0}


def test_a_snapshot_equal_to_the_latest_applied_one_is_a_duplicate_and_says_why(env: IngestEnv) -> None:
    first = env.upload("a.csv", "sku,quantity\nX,5\n", received_at=MONDAY)
    again = env.upload("b.csv", "sku,quantity\nX,5\n", received_at=MONDAY + DAY)
    assert again.status == "duplicate"
    assert f"the latest applied feed, upload {first.upload_id}" in (again.message or "")
    row, _ = env.show(again.upload_id)
    assert row.duplicate_of == first.upload_id


def test_an_adjust_feed_sent_again_is_a_duplicate_even_after_others(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(feed='mode = "adjust"')
    plus_five = "sku,quantity\nA,5\n"
    assert env.upload("d1.csv", plus_five).status == "applied"
    assert env.upload("d2.csv", "sku,quantity\nA,1\n").status == "applied"
    again = env.upload("d1-again.csv", plus_five)
    assert again.status == "duplicate" and "an adjust feed is applied once" in (again.message or "")
    assert env.quantities() == {"A": 6}


def test_the_database_refuses_to_apply_one_upload_twice_or_adjust_content_twice(env: IngestEnv) -> None:
    out = env.upload("a.csv", "sku,quantity\nX,5\n")
    with env.sessions() as s, s.begin():
        upload = uploads.get(s, out.upload_id)
        with pytest.raises(IntegrityError), s.begin_nested():  # the same upload again
            uploads.record_apply(s, upload, once=False, node="other", now=datetime.now(UTC))
    with env.sessions() as s, s.begin():
        first = uploads.record_received(s, source_id=env.source().id, original_name="d.csv", size=1,
                                        sha256="f" * 64, protocol="cli", user=None, remote_addr=None,
                                        received_at=datetime.now(UTC), elapsed_s=None)
        second = uploads.record_received(s, source_id=env.source().id, original_name="d2.csv", size=1,
                                         sha256="f" * 64, protocol="cli", user=None, remote_addr=None,
                                         received_at=datetime.now(UTC), elapsed_s=None)
        uploads.record_apply(s, first, once=True, node="a", now=datetime.now(UTC))
        # the same adjust content, another upload, another daemon
        with pytest.raises(IntegrityError), s.begin_nested():
            uploads.record_apply(s, second, once=True, node="b", now=datetime.now(UTC))
    with env.sessions() as s:
        assert s.scalar(select(func.count()).select_from(UploadApply)) == 2


def test_an_order_file_whose_lines_were_all_imported_is_a_duplicate_by_its_lines(make_env) -> None:  # type: ignore[no-untyped-def]
    from tests.ingest.test_market_files import MARKETS, ORDERS, market_upload

    env = make_env(merchant_extra=MARKETS)
    env.set("A", 5)
    env.set("B", 1)
    assert market_upload(env, "o.csv", ORDERS).status == "applied"
    again = market_upload(env, "o-again.csv", ORDERS)
    assert again.status == "duplicate" and "applied once by market, order and line" in (again.message or "")
    assert env.quantities() == {"A": 3, "B": 0}


def test_a_daemon_recovers_only_its_own_uploads(make_env) -> None:  # type: ignore[no-untyped-def]
    a = make_env(node="a")
    b = make_env(node="b")
    held = b.arrive("b.csv", "sku,quantity\nX,5\n")  # received by b, not yet processed
    assert a.pipeline.intake.recover() == []
    with a.sessions() as s:
        row = s.get(Upload, held)
        assert row is not None and (row.status, row.node) == ("received", "b")
    assert b.pipeline.intake.recover() == [held]
    assert b.pipeline.processor.process(held).status == "applied"


@pytest.mark.parametrize("step", ["deliver", "apply"])
def test_the_receipt_a_sender_is_told_about_survives_an_os_crash_and_the_apply_stays_fast(
        make_env, database, step: str) -> None:  # type: ignore[no-untyped-def]
    from daemon.db.engine import make_engine

    # On PostgreSQL the server's default is made "off": the receipt must not depend on it.
    engine = (database.engine if database.kind == "sqlite"
              else make_engine(database.url + "%20-csynchronous_commit%3Doff"))
    env = make_env(engine=engine)
    seen: list[object] = []

    def at_commit(conn) -> None:  # type: ignore[no-untyped-def]
        query = "PRAGMA synchronous" if database.kind == "sqlite" else "SHOW synchronous_commit"
        seen.append(conn.exec_driver_sql(query).scalar())

    upload_id = env.arrive("a.csv", "sku,quantity\nX,5\n") if step == "apply" else None
    event.listen(engine, "commit", at_commit)
    try:
        if step == "deliver":
            env.arrive("b.csv", "sku,quantity\nY,5\n")
        else:
            assert upload_id is not None
            assert env.pipeline.processor.process(upload_id).status == "applied"
    finally:
        event.remove(engine, "commit", at_commit)
        if engine is not database.engine:
            engine.dispose()
    assert seen
    # The receipt waits for the disk: FULL (2) on SQLite, synchronous_commit on. The apply
    # does not (its file and receipt are on disk already, so a lost apply is redone):
    # NORMAL (1), or the server's own default.
    if database.kind == "sqlite":
        assert set(seen) == ({2} if step == "deliver" else {1})
    else:
        assert set(seen) == ({"on"} if step == "deliver" else {"off"})


def test_an_unknown_sku_names_the_catalogue_sku_a_spreadsheet_may_have_mangled(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(feed='unknown_sku = "reject_row"')  # the default
    for sku in ("0017", "000123", "0012-CT-BLK", "555"):
        env.set(sku, 1, source="wh2")  # in the merchant's catalogue, not in this source
    out = env.upload("f.csv", "sku,quantity\n17,4\n123,4\n12-CT-BLK,4\n555.0,4\nBRAND-NEW,4\n0017,9\n")
    assert out.status == "applied_with_errors"
    assert env.quantities() == {"0017": 9}  # the one real SKU; nothing invented
    messages = {e.value: e.message for e in env.show(out.upload_id)[1]}
    assert messages["17"] == ("unknown SKU '17'; the catalogue has '0017' "
                              "(a spreadsheet may have dropped its leading zeros)")
    assert messages["123"].startswith("unknown SKU '123'; the catalogue has '000123'")
    assert messages["12-CT-BLK"].startswith("unknown SKU '12-CT-BLK'; the catalogue has '0012-CT-BLK'")
    assert messages["555.0"] == "unknown SKU '555.0'; the catalogue has '555' (a spreadsheet may have added '.0')"
    assert messages["BRAND-NEW"] == ("unknown SKU 'BRAND-NEW': it is not in the merchant's catalogue; "
                                     'only a source with unknown_sku = "create" adds products')
    assert {e.column for e in env.show(out.upload_id)[1]} == {"sku"}


def test_a_source_that_owns_the_catalogue_creates_new_skus(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(feed='unknown_sku = "create"')
    assert env.upload("f.csv", "sku,quantity\nBRAND-NEW,4\n").status == "applied"
    assert env.quantities() == {"BRAND-NEW": 4}
