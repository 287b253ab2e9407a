"""Order and cancellation files through the drop folder, and the oversell window."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from daemon.ingest.arrival import Arrival
from daemon.ingest.contained import ParserPool
from daemon.ingest.pipeline import Pipeline
from tests.ingest.conftest import IngestEnv

MARKETS = """
[[merchants.markets]]
name = "shop"
kind = "generic"

[[merchants.markets]]
name = "amazon"
kind = "amazon"
"""


@pytest.fixture
def menv(make_env) -> IngestEnv:  # type: ignore[no-untyped-def]
    env = make_env(merchant_extra=MARKETS)
    return env


def market_upload(env: IngestEnv, name: str, content: str, *, kind: str = "orders", market: str = "shop"):  # type: ignore[no-untyped-def]
    m = env.book.market_by_name("acme", market)
    assert m is not None
    m.staging.mkdir(parents=True, exist_ok=True)
    path = m.staging / name
    path.write_text(content)
    uid = env.pipeline.deliver(Arrival(path=path, source_id=None, market_id=m.id, kind=kind,
                                       original_name=name, protocol="cli",
                                       received_at=datetime.now(UTC)))
    return env.pipeline.processor.process(uid)


ORDERS = "order_id,line_id,sku,quantity,ordered_at\n" \
         "O-1,1,A,2,2026-11-29T10:02:00Z\nO-2,1,B,1,2026-11-29T10:03:00Z\n"


def test_an_order_file_in_a_market_inbox_subtracts_once_and_is_recorded(menv: IngestEnv) -> None:
    menv.set("A", 5)
    menv.set("B", 1)
    first = market_upload(menv, "orders.csv", ORDERS)
    assert first.status == "applied" and first.counts["applied"] == 2
    assert menv.quantities() == {"A": 3, "B": 0}
    # Markets resend open orders: the same lines in a new file are skipped.
    again = market_upload(menv, "orders-again.csv", ORDERS + "O-3,1,A,1,2026-11-29T10:04:00Z\n")
    assert again.status == "applied" and (again.counts["applied"], again.counts["unchanged"]) == (1, 2)
    assert menv.quantities() == {"A": 2, "B": 0}
    row, _ = menv.show(again.upload_id)
    assert row.kind == "orders" and row.source == "market:shop"


def test_a_bad_order_row_is_named_and_the_rest_applies(menv: IngestEnv) -> None:
    menv.set("A", 5)
    out = market_upload(menv, "o.csv", "order_id,line_id,sku,quantity,ordered_at\n"
                                       "O-1,1,A,2,2026-11-29T10:02:00Z\nO-2,1,A,lots,2026-11-29T10:03:00Z\n")
    assert out.status == "applied_with_errors" and menv.quantities() == {"A": 3}
    _, errors = menv.show(out.upload_id)
    assert [(e.row, e.column, e.value) for e in errors] == [(3, "quantity", "lots")]


def test_an_order_file_that_is_not_one_is_rejected_and_quarantined(menv: IngestEnv) -> None:
    out = market_upload(menv, "junk.csv", "foo,bar\n1,2\n")
    assert out.status == "rejected"
    assert menv.ledger_count() == 0


def test_a_cancellation_file_returns_what_the_order_took(menv: IngestEnv) -> None:
    menv.set("A", 5)
    market_upload(menv, "o.csv", ORDERS.splitlines()[0] + "\n" + ORDERS.splitlines()[1] + "\n")
    assert menv.quantities()["A"] == 3
    now = datetime.now(UTC).isoformat()
    out = market_upload(menv, "c.csv", f"order_id,line_id,cancelled_at,origin\nO-1,1,{now},market\n",
                        kind="cancellations")
    assert out.status == "applied", menv.show(out.upload_id)
    assert menv.quantities()["A"] == 5
    twice = market_upload(menv, "c2.csv", f"order_id,line_id,cancelled_at,origin\nO-1,1,{now},market\n",
                          kind="cancellations")
    assert twice.status == "duplicate" and menv.quantities()["A"] == 5


def test_a_snapshot_does_not_hand_back_units_sold_after_it_was_taken(menv: IngestEnv) -> None:
    """Generated at 10:00, applied later: the order at 10:02 is subtracted again."""
    menv.set("A", 10, at=datetime(2026, 11, 29, 9, 0, tzinfo=UTC))
    market_upload(menv, "o.csv", "order_id,line_id,sku,quantity,ordered_at\nO-1,1,A,3,2026-11-29T10:02:00Z\n")
    assert menv.quantities()["A"] == 7
    out = menv.upload("snap.csv", "sku,quantity,as_of\nA,10,2026-11-29T10:00:00Z\n")
    assert out.status == "applied"
    assert menv.quantities()["A"] == 7
    assert "subtracted again" in (out.message or "")
    # A snapshot taken after the order already knows about it.
    menv.upload("later.csv", "sku,quantity,as_of\nA,6,2026-11-29T10:30:00Z\n")
    assert menv.quantities()["A"] == 6


def test_the_watcher_serves_market_inboxes(menv: IngestEnv) -> None:
    inboxes = menv.book.inboxes()
    kinds = sorted((i.kind, str(i.path).split("/markets/")[-1]) for i in inboxes if i.market_id)
    assert kinds == [("cancellations", "acme/amazon/cancellations/inbox"),
                     ("cancellations", "acme/shop/cancellations/inbox"),
                     ("orders", "acme/amazon/orders/inbox"), ("orders", "acme/shop/orders/inbox")]


def test_an_order_file_over_max_file_bytes_is_rejected_before_it_is_read(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(ingest="max_file_bytes = 60", merchant_extra=MARKETS)
    env.set("A", 5)
    out = market_upload(env, "big.csv", ORDERS)
    assert out.status == "rejected" and "max_file_bytes" in (out.message or "")
    assert env.quantities() == {"A": 5}


class _FaultyReaders(ParserPool):
    """The real pool; a file named for a fault makes its worker panic or hang."""

    def read_orders(self, path, *, fault=None):  # type: ignore[no-untyped-def]
        name = path.name.split("__", 1)[-1]
        return super().read_orders(path, fault=fault or {"panic.csv": "raise", "hang.csv": "hang"}.get(name))


def test_an_order_file_that_panics_or_hangs_its_reader_rejects_only_that_file(menv: IngestEnv) -> None:
    menv.set("A", 5)
    with _FaultyReaders(1, timeout_s=3) as readers:
        pipeline = Pipeline(menv.settings, menv.sessions, menv.book, workers=1, parsers=readers)
        market = menv.book.market_by_name("acme", "shop")
        assert market is not None
        market.staging.mkdir(parents=True, exist_ok=True)
        ids = []
        for name in ("panic.csv", "hang.csv", "good.csv"):  # one lane: applied in this order
            path = market.staging / name
            path.write_text(ORDERS)
            ids.append(pipeline.deliver(Arrival(path=path, source_id=None, market_id=market.id, kind="orders",
                                                original_name=name, protocol="cli",
                                                received_at=datetime.now(UTC))))
        pipeline.dispatcher.start()
        try:
            assert pipeline.dispatcher.wait_idle(60)
        finally:
            pipeline.dispatcher.stop(10)
    panic, hang, good = (menv.show(i)[0] for i in ids)
    assert (panic.status, hang.status, good.status) == ("rejected", "rejected", "applied")
    assert "the parser failed: TestFault" in (panic.message or "")
    assert "did not finish within 3 s" in (hang.message or "")
    assert menv.quantities()["A"] == 3  # only the good file's order was subtracted
