"""Exports end to end: listings -> outbox row -> a file in the market's folder, exactly once.

Against a real database (SQLite and PostgreSQL) and real folders; the
market's FTP and SFTP servers are in ``test_export_endpoints``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from daemon.db.catalog import get_or_create_product, get_source
from daemon.db.engine import session_factory
from daemon.db.markets import get_market
from daemon.db.models import ExportRecord, Listing
from daemon.db.stock import set_one
from daemon.db.sync import sync_with_config
from daemon.export.service import Exporter, ExportTarget
from daemon.settings import ExportSettings, Settings, parse_settings
from daemon.transports import TransportError
from daemon.transports.destination import Destination, LoginRefused
from daemon.transports.folder import FolderDestination
from tests.conftest import Database

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
SKUS = {"0001234": 12, "TSHIRT-RED-M": 5, "MUG-11OZ.WHITE": 0}


def read_feed(path: Path) -> dict[str, int]:
    """An amazon_price_quantity file: sku -> quantity."""
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8")), delimiter="\t"))
    assert rows[0] == ["sku", "price", "quantity"]
    return {sku: int(quantity) for sku, _price, quantity in rows[1:]}


@dataclass
class World:
    settings: Settings
    sessions: sessionmaker[Session]
    tmp: Path
    alerts: list[tuple[int, int, str]] = field(default_factory=list)

    def target(self, market: str) -> ExportTarget:
        return next(ExportTarget(m, k, e) for m, k, e in self.settings.export_targets() if k == market)

    def exporter(self, markets: tuple[str, ...] = ("amz", "shop"), **kw: Any) -> Exporter:
        kw.setdefault("sleep", lambda seconds: None)  # tenacity's waits, without the wait
        return Exporter(self.sessions, [self.target(m) for m in markets], alert=self._alert, **kw)

    def _alert(self, market_id: int, export_id: int, error: str) -> None:
        self.alerts.append((market_id, export_id, error))

    def set(self, sku: str, quantity: int) -> None:
        with self.sessions() as s, s.begin():
            set_one(s, get_source(s, "acme", "wh"), sku, quantity, actor="test", now=NOW)

    def folder(self, market: str) -> Path:
        return self.tmp / f"out-{market}"

    def files(self, market: str) -> list[Path]:
        folder = self.folder(market)
        return sorted(p for p in folder.iterdir()) if folder.exists() else []

    def last_sent(self, market: str) -> dict[str, int | None]:
        from daemon.db.models import Product

        with self.sessions() as s:
            record = get_market(s, "acme", market)
            return dict(s.execute(select(Product.sku, Listing.last_sent_quantity)
                                  .join(Product, Product.id == Listing.product_id)
                                  .where(Listing.market_id == record.id)).all())

    def exports(self, market: str) -> list[ExportRecord]:
        with self.sessions() as s:
            record = get_market(s, "acme", market)
            return list(s.scalars(select(ExportRecord).where(ExportRecord.market_id == record.id)
                                  .order_by(ExportRecord.id)))


def export_config(tmp: Path, fmt: str, **extra: Any) -> dict[str, Any]:
    return {"folder": str(tmp), "format": fmt, "debounce_seconds": 0, **extra}  # extra may replace the folder


@pytest.fixture
def make_world(database: Database, tmp_path: Path) -> Callable[..., World]:
    def make(**amz: Any) -> World:
        raw = {
            "database": {"url": database.url},
            "merchants": [{
                "name": "acme",
                "sources": [{"name": "wh", "feed": {"unknown_sku": "create"}}],
                "markets": [
                    {"name": "amz", "kind": "amazon",
                     "export": export_config(tmp_path / "out-amz", "amazon_price_quantity", **amz)},
                    # Half of what is available, so the rules visibly apply.
                    {"name": "shop", "kind": "generic", "percent": 50,
                     "export": export_config(tmp_path / "out-shop", "csv")},
                ],
            }],
        }
        settings = parse_settings(raw, base=tmp_path)
        sessions = session_factory(database.engine)
        with sessions() as s, s.begin():
            sync_with_config(s, settings, NOW)
            source = get_source(s, "acme", "wh")
            for sku, quantity in SKUS.items():
                set_one(s, source, sku, quantity, actor="test", now=NOW)
            for name in ("amz", "shop"):
                market = get_market(s, "acme", name)
                for sku in SKUS:
                    product = get_or_create_product(s, market.merchant_id, sku, NOW)
                    s.add(Listing(market_id=market.id, product_id=product.id, updated_at=NOW))
        return World(settings, sessions, tmp_path)

    return make


def test_the_first_delta_sends_every_listing_and_then_only_what_moved(make_world) -> None:  # type: ignore[no-untyped-def]
    world = make_world()
    exporter = world.exporter()
    [first] = exporter.export_now("acme/amz", "delta")
    assert first.status == "delivered"
    [path] = world.files("amz")
    assert path.name == first.file_name and path.name.startswith("amz-delta-") and path.suffix == ".txt"
    assert read_feed(path) == SKUS  # never delivered: every listing differs
    assert world.last_sent("amz") == SKUS
    assert exporter.export_now("acme/amz", "delta") == []  # nothing moved: no file
    world.set("TSHIRT-RED-M", 4)  # a sale
    [second] = exporter.export_now("acme/amz", "delta")
    assert read_feed(world.folder("amz") / second.file_name) == {"TSHIRT-RED-M": 4}
    assert len(world.files("amz")) == 2  # the earlier file is not overwritten
    assert world.last_sent("amz")["TSHIRT-RED-M"] == 4


def test_a_full_feed_holds_every_listing_after_the_markets_channel_rules(make_world) -> None:  # type: ignore[no-untyped-def]
    world = make_world()
    [sent] = world.exporter().export_now("acme/shop", "full")
    rows = list(csv.DictReader(io.StringIO((world.folder("shop") / sent.file_name).read_text())))
    # percent = 50, rounded down; the SKUs keep their leading zeros.
    assert {r["sku"]: int(r["quantity"]) for r in rows} == {"0001234": 6, "TSHIRT-RED-M": 2, "MUG-11OZ.WHITE": 0}


def test_a_dry_run_composes_nothing_and_sends_nothing(make_world) -> None:  # type: ignore[no-untyped-def]
    from daemon.export import outbox

    world = make_world()
    with world.sessions() as s:
        fmt, content, lines = outbox.preview(s, get_market(s, "acme", "amz"), world.target("amz").settings, "delta")
    assert (fmt, lines) == ("amazon_price_quantity", 3)
    assert b"0001234" in content
    assert world.files("amz") == [] and world.exports("amz") == []


class CrashAfterRename:
    """Delivers, then "crashes" before the delivery is recorded (the worst moment)."""

    def __init__(self, inner: Destination) -> None:
        self.inner = inner

    def describe(self) -> str:
        return self.inner.describe()

    def deliver(self, name: str, data: bytes, *, done_marker: str | None = None) -> None:
        self.inner.deliver(name, data, done_marker=done_marker)
        raise KeyboardInterrupt  # not a TransportError: nothing catches it, as with a kill


def test_a_crash_after_the_rename_resends_the_same_file_under_the_same_name(make_world) -> None:  # type: ignore[no-untyped-def]
    world = make_world()
    crashing = world.exporter(destinations=lambda s: CrashAfterRename(FolderDestination(Path(s.folder))))
    with pytest.raises(KeyboardInterrupt):
        crashing.export_now("acme/amz", "delta")
    [owed] = world.exports("amz")
    assert owed.status == "pending" and world.last_sent("amz") == dict.fromkeys(SKUS)  # not advanced
    [path] = world.files("amz")
    first_bytes = path.read_bytes()
    world.set("TSHIRT-RED-M", 1)  # a change while the delivery is owed
    # The restarted daemon sends what it owes first, byte for byte, then the change.
    sent = world.exporter().export_now("acme/amz", "delta")
    assert sent[0].export_id == owed.id and sent[0].file_name == owed.file_name
    assert path.read_bytes() == first_bytes
    assert [s.status for s in sent] == ["delivered", "delivered"]
    assert read_feed(world.folder("amz") / sent[1].file_name) == {"TSHIRT-RED-M": 1}
    assert world.last_sent("amz")["TSHIRT-RED-M"] == 1
    assert len(world.files("amz")) == 2


class Flaky:
    """Down for its first ``down`` tries, then a real folder."""

    def __init__(self, folder: Path, down: int, error: type[TransportError] = TransportError) -> None:
        self.inner, self.down, self.error, self.tries = FolderDestination(folder), down, error, 0

    def describe(self) -> str:
        return "flaky"

    def deliver(self, name: str, data: bytes, *, done_marker: str | None = None) -> None:
        self.tries += 1
        if self.tries <= self.down:
            raise self.error(f"connection refused (try {self.tries})")
        self.inner.deliver(name, data, done_marker=done_marker)


def test_an_endpoint_down_then_up_gets_the_file_once(make_world) -> None:  # type: ignore[no-untyped-def]
    world = make_world()
    flaky = Flaky(world.folder("amz"), down=2)
    waits: list[float] = []
    [sent] = world.exporter(destinations=lambda s: flaky, sleep=waits.append).export_now("acme/amz", "delta")
    assert (sent.status, sent.attempts, flaky.tries) == ("delivered", 3, 3)
    assert waits == [1, 2]  # exponential backoff between tries
    [record] = world.exports("amz")
    assert record.attempts == 2 and record.status == "delivered"
    assert len(world.files("amz")) == 1


def test_down_for_longer_marks_the_market_failing_alerts_and_delivers_on_a_later_run(make_world) -> None:  # type: ignore[no-untyped-def]
    world = make_world(failing_after=3)
    flaky = Flaky(world.folder("amz"), down=4)
    exporter = world.exporter(destinations=lambda s: flaky)
    [sent] = exporter.export_now("acme/amz", "delta")
    assert sent.status == "failing" and "connection refused" in (sent.error or "")
    [record] = world.exports("amz")
    assert (record.status, record.attempts) == ("failing", 3)
    assert [(a[1], "try 3" in a[2]) for a in world.alerts] == [(record.id, True)]
    world.set("0001234", 7)  # a change meanwhile must not overtake the owed file
    sent = exporter.export_now("acme/amz", "delta")
    assert sent[0].export_id == record.id and sent[0].status == "delivered"
    assert read_feed(world.folder("amz") / sent[1].file_name) == {"0001234": 7}


def test_a_refused_login_fails_at_once_and_other_markets_still_receive(make_world) -> None:  # type: ignore[no-untyped-def]
    world = make_world()
    refused = Flaky(world.folder("amz"), down=99, error=LoginRefused)

    def destinations(settings: ExportSettings) -> Destination:
        return refused if "out-amz" in settings.folder else FolderDestination(Path(settings.folder))

    exporter = world.exporter(destinations=destinations)
    [amz] = exporter.export_now("acme/amz", "delta")
    assert (amz.status, refused.tries) == ("failing", 1)  # no retries: waiting will not fix a password
    [shop] = exporter.export_now("acme/shop", "delta")
    assert shop.status == "delivered" and len(world.files("shop")) == 1
    assert len(world.alerts) == 1


class Timer:
    def __init__(self) -> None:
        self.after_calls: dict[str, tuple[float, Callable[[], None]]] = {}

    def every(self, key: str, seconds: float, fn: Callable[[], None]) -> None:
        pass

    def cron(self, key: str, expression: str, fn: Callable[[], None]) -> None:
        pass

    def after(self, key: str, seconds: float, fn: Callable[[], None]) -> None:
        self.after_calls.setdefault(key, (seconds, fn))

    def run(self) -> None:
        calls, self.after_calls = self.after_calls, {}
        for _seconds, fn in calls.values():
            fn()


def test_a_change_triggers_a_debounced_delta_for_the_markets_it_touches(make_world) -> None:  # type: ignore[no-untyped-def]
    world = make_world(debounce_seconds=2)
    exporter, timer = world.exporter(), Timer()
    assert sorted(exporter.poll(timer)) == ["acme/amz", "acme/shop"]  # the first look
    timer.run()
    assert len(world.files("amz")) == len(world.files("shop")) == 1
    assert exporter.poll(timer) == []  # nothing moved
    world.set("TSHIRT-RED-M", 2)
    world.set("TSHIRT-RED-M", 3)  # two changes in the window
    assert sorted(exporter.poll(timer)) == ["acme/amz", "acme/shop"]
    assert timer.after_calls["exports:change:acme/amz"][0] == 2
    timer.run()
    amz = world.files("amz")[-1]
    assert read_feed(amz) == {"TSHIRT-RED-M": 3}  # one file, the latest quantity


def test_a_nudge_looks_at_once_instead_of_at_the_next_poll(make_world) -> None:  # type: ignore[no-untyped-def]
    world = make_world(debounce_seconds=1)
    exporter, timer = world.exporter(), Timer()
    exporter.nudge()  # not started: nothing to put it on, and nothing breaks
    exporter.start(timer, poll_seconds=3600)  # the poll on its schedule would come in an hour
    assert exporter.poll(timer) and timer.run() is None  # the first look, sent
    world.set("TSHIRT-RED-M", 4)  # a file applied in this daemon
    exporter.nudge()
    exporter.nudge()  # several files at once: one look
    assert list(timer.after_calls) == ["exports:nudge"] and timer.after_calls["exports:nudge"][0] == 0
    timer.run()  # the look finds the change and starts its debounced delta
    assert sorted(timer.after_calls) == ["exports:change:acme/amz", "exports:change:acme/shop"]
    timer.run()
    assert read_feed(world.files("amz")[-1]) == {"TSHIRT-RED-M": 4}


def test_a_follower_polls_and_sends_nothing(make_world) -> None:  # type: ignore[no-untyped-def]
    world = make_world()
    timer = Timer()
    assert world.exporter(leads=lambda: False).poll(timer) == []
    assert timer.after_calls == {}


def test_two_daemons_composing_at_once_make_one_export(make_world) -> None:  # type: ignore[no-untyped-def]
    """Daemon B composes while A's new export is not committed yet: B ends with A's, not a second.

    On PostgreSQL B's insert waits on the unique index of undelivered
    exports, then fails, and B takes A's; on SQLite B waits for the write lock.
    """
    import threading

    from daemon.export import outbox

    world = make_world()
    target = world.target("amz")
    b = world.exporter(node="b")
    got: dict[str, object] = {}
    with world.sessions() as first, first.begin():
        a = outbox.compose(first, get_market(first, "acme", "amz"), target.settings, "delta", trigger="change",
                           destination="d", now=NOW, node="a")
        assert a is not None
        a_id = a.id
        thread = threading.Thread(target=lambda: got.update(b=b._compose(target, "delta", "change", "d")))
        thread.start()
        thread.join(0.5)  # B is now waiting on A
    thread.join(30)
    assert got["b"] == (a_id, False)  # A's export, owed: not one of its own
    assert [e.id for e in world.exports("amz")] == [a_id]


def test_over_ftps_from_the_settings_a_market_down_then_up_is_delivered_once(  # type: ignore[no-untyped-def]
        make_world, tmp_path, start_server, tls_files) -> None:
    """The whole path from [export] settings to a real FTPS server (TLS on control and data)."""
    import socket

    from pyftpdlib.handlers import TLS_FTPHandler

    from tests.export.test_destinations import PASSWORD, USER, tls_attrs

    with socket.socket() as probe:  # a port nothing listens on yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    world = make_world(transport="ftps", host="127.0.0.1", port=port, user=USER, password=PASSWORD,
                       folder="out", ca_file=str(tls_files[0]), failing_after=2, timeout_seconds=5)
    exporter = world.exporter(markets=("amz",))
    [down] = exporter.export_now("acme/amz", "delta")
    assert down.status == "failing" and f"127.0.0.1:{port}" in (down.error or "")
    server = start_server(TLS_FTPHandler, port=port, **tls_attrs(tls_files))
    [up] = exporter.export_now("acme/amz", "delta")
    assert (up.export_id, up.status) == (down.export_id, "delivered")
    assert [p.name for p in (server.home / "out").iterdir()] == [up.file_name]
    assert read_feed(server.home / "out" / up.file_name) == SKUS
    assert exporter.export_now("acme/amz", "delta") == []  # delivered once: nothing owed, nothing moved


def test_a_change_deferred_while_the_stock_is_mid_write_is_sent_on_the_next_poll(make_world) -> None:  # type: ignore[no-untyped-def]
    from daemon.db.market_lines import LinesCache, NotSettled

    class Unsettled(LinesCache):
        """As on PostgreSQL while an apply is still open: the first look cannot settle."""

        def __init__(self) -> None:
            super().__init__()
            self.refusals = 1

        def market_lines(self, session, market):  # type: ignore[no-untyped-def]
            if self.refusals:
                self.refusals -= 1
                raise NotSettled("transaction 1234 is still open")
            return super().market_lines(session, market)

    world = make_world()
    exporter, timer = world.exporter(markets=("amz",)), Timer()
    exporter.lines = Unsettled()
    assert exporter.poll(timer) == ["acme/amz"]
    timer.run()  # deferred, not failed: nothing sent, nothing recorded
    assert world.files("amz") == [] and world.exports("amz") == []
    assert exporter.poll(timer) == ["acme/amz"]  # no new change: the deferred delta comes back by itself
    timer.run()
    [path] = world.files("amz")
    assert read_feed(path) == SKUS
