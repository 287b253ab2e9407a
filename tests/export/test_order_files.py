"""Order files to warehouses, and their status files back through intake.

Orders come in through the real pipeline (a market's orders inbox), the
order file goes out through the real exporter to a real folder, FTP server
or SFTP server, and the warehouse's status file comes back through intake
into its statuses/ folder; SQLite and PostgreSQL.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from daemon.auth.hostkey import fingerprint
from daemon.db import stock as store
from daemon.db import uploads
from daemon.db.catalog import get_source
from daemon.db.engine import session_factory
from daemon.db.models import Cancellation, Fulfilment, OrderExportRecord, OrderLineRecord
from daemon.db.orders import list_orders
from daemon.db.sync import sync_with_config
from daemon.export.orders import OrderExporter, OrdersTarget
from daemon.ingest.arrival import Arrival
from daemon.ingest.contained import ParserPool
from daemon.ingest.outcomes import Outcome
from daemon.ingest.pipeline import Pipeline
from daemon.ingest.sources import SourceBook
from daemon.settings import OrdersExportSettings, Settings, parse_settings
from daemon.transports import TransportError
from daemon.transports.destination import Destination
from daemon.transports.folder import FolderDestination
from tests.conftest import Database

NOW = datetime.now(UTC).replace(microsecond=0)
ORDERED = (NOW - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
STATUS_HEADER = "OrderId,Status,Tracking Number,Shipping Service\n"


def order_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


@pytest.fixture(scope="module")
def parsers() -> Iterator[ParserPool]:
    with ParserPool(1) as pool:
        yield pool


@dataclass
class World:
    settings: Settings
    sessions: sessionmaker[Session]
    pipeline: Pipeline
    out: Path

    @property
    def target(self) -> OrdersTarget:
        [(m, s, e)] = self.settings.orders_export_targets()
        return OrdersTarget(m, s, e)

    def exporter(self, destination: Destination | None = None, **kw: Any) -> OrderExporter:
        kw.setdefault("sleep", lambda seconds: None)  # tenacity's waits, without the wait
        if destination is not None:
            kw["destinations"] = lambda settings: destination
        return OrderExporter(self.sessions, [self.target], **kw)

    def run(self, **kw: Any) -> list[Any]:
        return self.exporter(**kw).export_now("acme/wh")

    def orders(self, content: str, market: str = "shop") -> Outcome:
        inbox = self.pipeline.book.market_by_name("acme", market)
        assert inbox is not None
        inbox.staging.mkdir(parents=True, exist_ok=True)
        path = inbox.staging / "orders.csv"
        path.write_text("order_id,line_id,sku,quantity,ordered_at\n" + content)
        return self.pipeline.processor.process(self.pipeline.deliver(Arrival(
            path=path, source_id=None, market_id=inbox.id, kind="orders", original_name="orders.csv",
            protocol="cli", received_at=datetime.now(UTC))))

    def status_file(self, content: str, name: str = "status.csv") -> Outcome:
        """As the warehouse drops it: into its statuses/ folder, through intake."""
        info = self.pipeline.book.by_name("acme", "wh")
        assert info is not None and info.statuses is not None
        staging = info.statuses / ".staging"
        staging.mkdir(parents=True, exist_ok=True)
        (staging / name).write_text(content)
        return self.pipeline.processor.process(self.pipeline.deliver(Arrival(
            path=staging / name, source_id=info.id, kind="statuses", original_name=name, protocol="ftp",
            received_at=datetime.now(UTC))))

    def stock(self, source: str = "wh") -> dict[str, int]:
        with self.sessions() as s:
            return {r.sku: r.quantity for r in store.inventory(s, merchant="acme", source=source)}

    def files(self) -> list[Path]:
        return sorted(self.out.iterdir(), key=lambda p: p.stat().st_mtime_ns) if self.out.exists() else []

    def fulfilments(self) -> dict[str, Fulfilment]:
        with self.sessions() as s:
            rows = s.execute(select(OrderLineRecord.order_id, Fulfilment)
                             .join(Fulfilment, Fulfilment.order_line_id == OrderLineRecord.id)).all()
            for _, f in rows:
                s.expunge(f)
            return {order_id: f for order_id, f in rows}

    def line_status(self, order_id: str) -> str:
        """The status of the order's lines ("a,b" when they differ)."""
        with self.sessions() as s:
            found = s.scalars(select(OrderLineRecord.status).where(OrderLineRecord.order_id == order_id))
            return ",".join(sorted(set(found)))

    def order_exports(self) -> list[OrderExportRecord]:
        with self.sessions() as s:
            rows = list(s.scalars(select(OrderExportRecord).order_by(OrderExportRecord.id)))
            for r in rows:
                s.expunge(r)
            return rows


@pytest.fixture
def make_world(database: Database, tmp_path: Path, parsers: ParserPool) -> Iterator[Callable[..., World]]:
    made: list[Pipeline] = []

    def make(**orders_export: Any) -> World:
        out = tmp_path / "out-wh"
        export = {"folder": str(out), "resend_limit": 2, **orders_export}
        raw = {
            "database": {"url": database.url},
            "merchants": [{
                "name": "acme",
                "sources": [{"name": "wh", "priority": 10, "feed": {"unknown_sku": "create"},
                             "orders_export": export}],
                "markets": [{"name": "shop"}, {"name": "amz", "kind": "amazon", "restock": "never"}],
            }],
        }
        settings = parse_settings(raw, base=tmp_path)
        sessions = session_factory(database.engine)
        with sessions() as s, s.begin():
            sync_with_config(s, settings, NOW)
            wh, mf = get_source(s, "acme", "wh"), get_source(s, "acme", "merchant-fulfilled")
            for sku, quantity in (("0017", 10), ("MUG", 5), ("=HYPERLINK(1)", 3)):
                store.set_one(s, wh, sku, quantity, actor="test", now=NOW)
            store.set_one(s, mf, "BOOK", 4, actor="test", now=NOW)  # merchant-fulfilled: never sent to wh
            book = SourceBook.load(s, settings)
        pipeline = Pipeline(settings, sessions, book, workers=1, parsers=parsers)
        made.append(pipeline)
        return World(settings, sessions, pipeline, out)

    yield make
    for pipeline in made:
        pipeline.dispatcher.stop(10)


# --- order files out ------------------------------------------------------------


def test_open_lines_allocated_to_the_warehouse_go_out_as_a_csv_with_what_it_needs_to_ship(make_world) -> None:  # type: ignore[no-untyped-def]
    world = make_world()
    world.orders(f"W-1,1,0017,2,{ORDERED}\nW-1,2,BOOK,1,{ORDERED}\nW-2,1,=HYPERLINK(1),1,{ORDERED}\n")
    [sent] = world.run()
    assert sent.status == "delivered" and sent.kind == "orders"
    [path] = world.files()
    assert path.name == sent.file_name and path.name.startswith("wh-orders-") and path.name.endswith("-1.csv")
    assert order_rows(path) == [
        {"order_id": "W-1", "line_id": "1", "market": "shop", "sku": "0017", "quantity": "2", "ordered_at": ORDERED},
        # A spreadsheet must not run it: the csv writer's formula escape.
        {"order_id": "W-2", "line_id": "1", "market": "shop", "sku": "'=HYPERLINK(1)", "quantity": "1",
         "ordered_at": ORDERED},
    ]  # BOOK came from the merchant-fulfilled source: not the warehouse's to ship
    assert {k: (f.status, f.sends) for k, f in world.fulfilments().items()} == {"W-1": ("open", 1),
                                                                                   "W-2": ("open", 1)}


def test_an_unconfirmed_order_is_sent_on_every_run_until_the_resend_limit_then_flagged_and_shown(make_world) -> None:  # type: ignore[no-untyped-def]
    world = make_world(resend_limit=2)
    world.orders(f"W-1,1,0017,2,{ORDERED}\n")
    names = [s.file_name for run in range(3) for s in world.run()]
    assert len(set(names)) == 3  # a name of its own per delivery: none overwrites another
    assert all(order_rows(p)[0]["order_id"] == "W-1" for p in world.files())
    assert world.run() == []  # sent 1 + resend_limit times: flagged, not sent again
    f = world.fulfilments()["W-1"]
    assert (f.status, f.sends) == ("unconfirmed", 3) and "after 3 order file(s)" in (f.message or "")
    with world.sessions() as s:
        [shown] = list_orders(s, status="unconfirmed")
    assert (shown.order_id, shown.warehouse, shown.fulfilment) == ("W-1", "wh", "unconfirmed")
    # A late answer is still taken.
    assert world.status_file(STATUS_HEADER + "W-1,SHIPPED,1Z999,UPS\n").status == "applied"
    assert world.line_status("W-1") == "shipped"


def test_a_line_ordered_before_max_age_days_is_never_sent_for_the_first_time(make_world) -> None:  # type: ignore[no-untyped-def]
    world = make_world(max_age_days=1)
    old = (NOW - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    world.orders(f"OLD-1,1,0017,1,{old}\nNEW-1,1,MUG,1,{ORDERED}\n")
    world.run()
    [path] = world.files()
    assert [r["order_id"] for r in order_rows(path)] == ["NEW-1"]


class Flaky:
    """Down for its first ``down`` tries, then a real folder."""

    def __init__(self, folder: Path, down: int) -> None:
        self.inner, self.down, self.tries = FolderDestination(folder), down, 0

    def describe(self) -> str:
        return "flaky"

    def deliver(self, name: str, data: bytes, *, done_marker: str | None = None) -> None:
        self.tries += 1
        if self.tries <= self.down:
            raise TransportError(f"connection refused (try {self.tries})")
        self.inner.deliver(name, data, done_marker=done_marker)


def test_a_warehouse_down_then_up_gets_the_order_file_once_and_the_send_counts_once(make_world) -> None:  # type: ignore[no-untyped-def]
    world = make_world(failing_after=2)
    world.orders(f"W-1,1,0017,2,{ORDERED}\n")
    flaky = Flaky(world.out, down=3)
    alerts: list[tuple[int, int, str]] = []
    [down] = world.run(destination=flaky, alert=lambda *a: alerts.append(a))
    assert down.status == "failing" and world.files() == [] and len(alerts) == 1
    assert world.fulfilments()["W-1"].sends == 0  # not delivered: not counted as sent
    [up] = world.run(destination=flaky)
    assert (up.export_id, up.status, up.file_name) == (down.export_id, "delivered", down.file_name)
    assert [p.name for p in world.files()] == [down.file_name]
    [record] = world.order_exports()
    assert (record.status, record.attempts) == ("delivered", 3)
    assert world.fulfilments()["W-1"].sends == 1


class CrashAfterRename:
    def __init__(self, inner: Destination) -> None:
        self.inner = inner

    def describe(self) -> str:
        return self.inner.describe()

    def deliver(self, name: str, data: bytes, *, done_marker: str | None = None) -> None:
        self.inner.deliver(name, data, done_marker=done_marker)
        raise KeyboardInterrupt  # not a TransportError: nothing catches it, as with a kill


def test_a_crash_after_the_rename_resends_the_same_file_under_the_same_name_before_anything_new(make_world) -> None:  # type: ignore[no-untyped-def]
    world = make_world(done_marker="{name}.done")
    world.orders(f"W-1,1,0017,2,{ORDERED}\n")
    with pytest.raises(KeyboardInterrupt):
        world.run(destination=CrashAfterRename(FolderDestination(world.out)))
    [owed] = world.order_exports()
    first = (world.out / owed.file_name).read_bytes()
    world.orders(f"W-2,1,MUG,1,{ORDERED}\n")  # a new order while the file is owed
    [resent] = world.run()  # the restarted daemon's first run sends what it owes, and only that
    assert (resent.export_id, resent.status, resent.file_name) == (owed.id, "delivered", owed.file_name)
    assert (world.out / owed.file_name).read_bytes() == first  # byte for byte, the same name
    assert world.fulfilments()["W-1"].sends == 1
    sent = [resent, *world.run()]
    assert sorted(p.name for p in world.files()) == sorted(
        [owed.file_name, owed.file_name + ".done", sent[1].file_name, sent[1].file_name + ".done"])
    assert [r["order_id"] for r in order_rows(world.out / sent[1].file_name)] == ["W-1", "W-2"]


def test_a_follower_does_not_send_on_its_schedule(make_world) -> None:  # type: ignore[no-untyped-def]
    world = make_world()
    world.orders(f"W-1,1,0017,2,{ORDERED}\n")
    world.exporter(leads=lambda: False)._scheduled("acme/wh")
    assert world.files() == [] and world.order_exports() == []
    world.exporter()._scheduled("acme/wh")
    assert len(world.files()) == 1


def test_over_ftp_from_the_settings_down_then_up_is_delivered_once(make_world, start_server, home) -> None:  # type: ignore[no-untyped-def]
    import socket

    from tests.export.test_destinations import PASSWORD, USER

    with socket.socket() as probe:  # a port nothing listens on yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    world = make_world(transport="ftp", host="127.0.0.1", port=port, user=USER, password=PASSWORD, folder="out",
                       failing_after=2, timeout_seconds=5)
    world.orders(f"W-1,1,0017,2,{ORDERED}\n")
    [down] = world.run()
    assert down.status == "failing" and f"127.0.0.1:{port}" in (down.error or "")
    start_server(port=port)
    [up] = world.run()
    assert (up.export_id, up.status) == (down.export_id, "delivered")
    assert [p.name for p in (home / "out").iterdir()] == [up.file_name]
    assert order_rows(home / "out" / up.file_name)[0]["sku"] == "0017"


def test_over_sftp_with_the_host_key_pinned(make_world, open_server) -> None:  # type: ignore[no-untyped-def]
    (open_server.root / "in").mkdir()
    open_server.user, open_server.password = "wh", "wh-secret"
    world = make_world(transport="sftp", host="127.0.0.1", port=open_server.port, user="wh", password="wh-secret",
                       host_key_fingerprint=fingerprint(open_server.key), folder="in", timeout_seconds=10)
    world.orders(f"W-1,1,0017,2,{ORDERED}\n")
    [sent] = world.run()
    assert sent.status == "delivered"
    assert [p.name for p in (open_server.root / "in").iterdir()] == [sent.file_name]


# --- status files back ------------------------------------------------------------


def test_a_shipped_status_file_through_intake_closes_the_line_and_a_resend_is_a_duplicate(make_world) -> None:  # type: ignore[no-untyped-def]
    world = make_world()
    world.orders(f"W-1,1,0017,2,{ORDERED}\nW-1,2,MUG,1,{ORDERED}\nW-2,1,MUG,1,{ORDERED}\n")
    world.run()
    status = STATUS_HEADER + "W-1,SHIPPED,1Z999AA1,UPS Ground\nW-2,complete,,\n"
    done = world.status_file(status)
    assert done.status == "applied" and done.counts["applied"] == 2
    assert world.line_status("W-1") == world.line_status("W-2") == "shipped"
    f = world.fulfilments()
    assert (f["W-1"].status, f["W-1"].tracking_number, f["W-1"].shipping_service) == ("shipped", "1Z999AA1",
                                                                                       "UPS Ground")
    assert f["W-2"].status == "complete"
    assert world.stock() == {"0017": 8, "MUG": 3, "=HYPERLINK(1)": 3}  # shipping moves no stock again
    assert world.run() == []  # confirmed: nothing is owed
    again = world.status_file(status, name="status-again.csv")
    assert again.status == "duplicate"
    with world.sessions() as s:
        _, errors = uploads.show(s, again.upload_id)
        history = uploads.show(s, done.upload_id)[0]
    assert (history.kind, history.source) == ("statuses", "wh") and errors == []
    with world.sessions() as s:
        shown = {(r.order_id, r.line_id): r for r in list_orders(s)}
    assert (shown["W-1", "1"].status, shown["W-1", "1"].fulfilment, shown["W-1", "1"].tracking_number) == (
        "shipped", "shipped", "1Z999AA1")


def test_cancelled_by_the_warehouse_returns_stock_by_each_markets_restock_policy(make_world) -> None:  # type: ignore[no-untyped-def]
    world = make_world()
    world.orders(f"S-1,1,0017,2,{ORDERED}\n", market="shop")  # restock = by_origin: a warehouse's comes back
    world.orders(f"A-1,1,MUG,1,{ORDERED}\n", market="amz")  # restock = never
    world.run()
    assert world.stock()["0017"] == 8 and world.stock()["MUG"] == 4
    done = world.status_file(STATUS_HEADER + "S-1,CANCELLED,,\nA-1,CANCELLED,,\n")
    assert done.status == "applied"
    assert world.stock()["0017"] == 10 and world.stock()["MUG"] == 4
    with world.sessions() as s:
        cancels = s.execute(select(OrderLineRecord.order_id, Cancellation.origin, Cancellation.restocked)
                            .join(Cancellation, Cancellation.order_line_id == OrderLineRecord.id)).all()
    assert sorted(cancels) == [("A-1", "warehouse", False), ("S-1", "warehouse", True)]
    assert world.line_status("S-1") == "cancelled" and world.run() == []
    # Sent again: nothing given back twice.
    assert world.status_file(STATUS_HEADER + "S-1,CANCELLED,,\n", name="again.csv").status == "duplicate"
    assert world.stock()["0017"] == 10


def test_error_is_recorded_shown_and_the_line_is_sent_again(make_world) -> None:  # type: ignore[no-untyped-def]
    world = make_world()
    world.orders(f"W-1,1,0017,2,{ORDERED}\n")
    world.run()
    done = world.status_file("OrderId,Status,Tracking Number,Shipping Service,Message\n"
                             "W-1,ERROR,,,SKU 0017 unknown at the warehouse\n")
    assert done.status == "applied"
    f = world.fulfilments()["W-1"]
    assert (f.status, f.message) == ("error", "SKU 0017 unknown at the warehouse")
    with world.sessions() as s:
        [shown] = list_orders(s, status="error")
    assert (shown.fulfilment, shown.fulfilment_message) == ("error", "SKU 0017 unknown at the warehouse")
    [again] = world.run()  # not a confirmation: sent again
    assert order_rows(world.out / again.file_name)[0]["order_id"] == "W-1"
    assert world.status_file(STATUS_HEADER + "W-1,SHIPPED,1Z1,DHL\n", name="s2.csv").status == "applied"
    assert world.line_status("W-1") == "shipped"


def test_bad_status_rows_name_row_column_and_value_and_apply_nothing_of_themselves(make_world) -> None:  # type: ignore[no-untyped-def]
    world = make_world()
    world.orders(f"W-1,1,0017,2,{ORDERED}\nW-2,1,MUG,1,{ORDERED}\n")
    world.run()
    done = world.status_file(STATUS_HEADER
                             + "NOPE-9,SHIPPED,1Z,UPS\n"  # row 2: never sent to this warehouse
                             + "W-1,LOST,,\n"  # row 3: no such status
                             + "W-2,,,\n"  # row 4: the status is missing
                             + ",SHIPPED,,\n"  # row 5: the order id is missing
                             + "W-2,SHIPPED,1Z2,UPS\n")  # row 6: good
    assert done.status == "applied_with_errors" and (done.counts["applied"], done.counts["errors"]) == (1, 4)
    with world.sessions() as s:
        _, errors = uploads.show(s, done.upload_id)
    got = [(e.row, e.column, e.value) for e in errors]
    assert got == [(2, "OrderId", "NOPE-9"), (3, "Status", "LOST"), (4, "Status", ""), (5, "OrderId", "")]
    assert "was sent to warehouse wh" in errors[0].message and "SHIPPED, COMPLETE, CANCELLED, ERROR" in errors[1].message
    assert world.fulfilments()["W-1"].status == "open" and world.line_status("W-1") == "open"
    assert world.line_status("W-2") == "shipped"
    # A contradiction is a row error too: cancelling what was shipped gives nothing back.
    late = world.status_file(STATUS_HEADER + "W-2,CANCELLED,,\n", name="late.csv")
    assert late.status == "rejected" and world.stock()["MUG"] == 4
    # A file without a Status column is rejected whole, naming what it found.
    whole = world.status_file("OrderId,Tracking Number\nW-1,1Z\n", name="nostatus.csv")
    assert whole.status == "rejected" and "no status column" in (whole.message or "")
    assert "'OrderId', 'Tracking Number'" in (whole.message or "")


def test_an_order_id_on_two_markets_needs_the_market_column(make_world) -> None:  # type: ignore[no-untyped-def]
    world = make_world()
    world.orders(f"X-1,1,0017,1,{ORDERED}\n", market="shop")
    world.orders(f"X-1,1,MUG,1,{ORDERED}\n", market="amz")
    world.run()
    ambiguous = world.status_file(STATUS_HEADER + "X-1,SHIPPED,,\n")
    assert ambiguous.status == "rejected"
    with world.sessions() as s:
        _, errors = uploads.show(s, ambiguous.upload_id)
    assert "several markets (amz, shop)" in errors[0].message
    done = world.status_file("OrderId,Status,Market\nX-1,SHIPPED,amz\n", name="with-market.csv")
    assert done.status == "applied"
    with world.sessions() as s:
        assert {r.market: r.status for r in list_orders(s)} == {"amz": "shipped", "shop": "open"}


# --- settings -----------------------------------------------------------------------


@pytest.mark.parametrize(("values", "message"), [
    ({"folder": "x", "file_name": "orders.csv"}, "file_name must contain {delivery}"),
    ({"folder": "x", "every_seconds": None}, "give every_seconds or cron"),
    ({"folder": "x", "cron": "every day"}, "cron: 'every day' is not a crontab line"),
    ({"folder": "x", "transport": "ftp"}, "needs host and user"),
    ({"folder": "x", "format": "xml"}, "unknown order file format 'xml'"),
])
def test_impossible_order_exports_are_refused_at_load(values: dict[str, Any], message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message.replace("{", r"\{").replace("(", r"\(")):
        OrdersExportSettings(**values)


def test_only_a_warehouse_is_sent_order_files(tmp_path: Path) -> None:
    from daemon.errors import ConfigError

    raw = {"merchants": [{"name": "acme", "sources": [
        {"name": "mf", "kind": "merchant-fulfilled", "orders_export": {"folder": "x"}}]}]}
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw, base=tmp_path)
    assert any(key == "merchants[0].sources[0]" and "only a warehouse" in why for key, why in caught.value.problems)
