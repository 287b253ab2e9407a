"""Alerts for rejected and held files and failing exports: written by ingest's hook, sent over real SMTP."""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from daemon.db import email as db_email
from daemon.db.catalog import sync_config
from daemon.db.engine import session_factory
from daemon.db.markets import sync_markets
from daemon.ingest.arrival import Arrival
from daemon.ingest.contained import ParserPool
from daemon.ingest.pipeline import Pipeline
from daemon.ingest.sources import SourceBook
from daemon.reports.alerts import Alerts, reason_kind
from daemon.reports.outbox import Mailer
from daemon.settings import Settings, parse_settings
from tests.conftest import Database
from tests.helpers import ONE_WAREHOUSE, run_cli, write_config
from tests.reports.conftest import Received, SmtpServer


@pytest.fixture(scope="module")
def parsers() -> Iterator[ParserPool]:
    with ParserPool(1) as pool:
        yield pool


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def settings_for(tmp_path: Path, database: Database, server: SmtpServer, *, feed: dict[str, Any] | None = None,
                 coalesce_seconds: float = 600) -> Settings:
    raw = {
        "database": {"url": database.url},
        "smtp": {"host": "127.0.0.1", "port": server.port, "security": "none",
                 "from_address": "stockdrop@example.com", "tries": 1},
        "alerts": {"coalesce_seconds": coalesce_seconds},
        "merchants": [{"name": "acme", "report_recipients": ["buyer@acme.example"], "sources": [
            {"name": "wh1", "feed": {"unknown_sku": "create", **(feed or {})},
             "report_recipients": ["ops@3pl.example"]},
            {"name": "wh2", "feed": {"unknown_sku": "create"}}]}],
    }
    return parse_settings(raw, base=tmp_path)


class World:
    def __init__(self, settings: Settings, database: Database, parsers: ParserPool, clock: Clock) -> None:
        self.settings, self.clock = settings, clock
        self.sessions: sessionmaker[Session] = session_factory(database.engine)
        with self.sessions() as s, s.begin():
            sync_config(s, settings, clock())
            sync_markets(s, settings, clock())
            book = SourceBook.load(s, settings)
        self.alerts = Alerts(self.sessions, settings, now=clock)
        self.pipeline = Pipeline(settings, self.sessions, book, workers=1, parsers=parsers,
                                 on_outcome=self.alerts.upload_finished)
        assert settings.smtp is not None
        self.mailer = Mailer(self.sessions, settings.smtp, node="n1", sleep=lambda s: None)

    def arrive(self, name: str, content: str, source: str = "wh1") -> int:
        info = self.pipeline.book.by_name("acme", source)
        assert info is not None
        info.staging.mkdir(parents=True, exist_ok=True)
        (info.staging / name).write_text(content)
        return self.pipeline.deliver(Arrival(path=info.staging / name, source_id=info.id, original_name=name,
                                             protocol="ftp", user="wh1", received_at=self.clock()))

    def upload(self, name: str, content: str, source: str = "wh1") -> int:
        upload_id = self.arrive(name, content, source)
        self.pipeline.processor.process(upload_id)
        return upload_id

    def outbox(self) -> list[db_email.EmailRow]:
        with self.sessions() as s:
            return list(reversed(db_email.list_emails(s)))


@pytest.fixture
def alert_world(tmp_path: Path, database: Database, parsers: ParserPool,
               start_smtp: Callable[..., SmtpServer]) -> Iterator[Callable[..., tuple[World, SmtpServer]]]:
    worlds: list[World] = []

    def make(**kw: Any) -> tuple[World, SmtpServer]:
        server = start_smtp()
        world = World(settings_for(tmp_path, database, server, **kw), database, parsers, Clock())
        worlds.append(world)
        return world, server

    yield make
    for world in worlds:
        world.pipeline.dispatcher.stop(10)


def wait_for_mail(world: World, server: SmtpServer, count: int = 1, timeout: float = 30) -> list[Received]:
    deadline = time.monotonic() + timeout
    while len(server.inbox.received) < count and time.monotonic() < deadline:
        world.mailer.send_pending()
        time.sleep(0.05)
    assert len(server.inbox.received) >= count, world.outbox()
    return server.inbox.received


def test_a_rejected_file_taken_by_the_workers_sends_an_alert_naming_file_reason_and_what_to_do(
        alert_world: Callable[..., tuple[World, SmtpServer]]) -> None:
    world, server = alert_world()
    world.pipeline.dispatcher.start()
    upload_id = world.arrive("stock<1>.csv", "sku,quantity\nA,lots\nB,-\n")  # the worker takes it from here

    [mail] = wait_for_mail(world, server)

    msg = mail.message
    assert mail.rcpt_tos == ["ops@3pl.example"]  # the source's own recipients, not the merchant's
    assert msg["Subject"] == "[stockdrop] acme/wh1: File stock<1>.csv rejected"
    text = mail.part("plain")
    assert "The file stock<1>.csv sent to source wh1 of acme was rejected: nothing in it was applied." in text
    assert "Why: no valid rows: 2 row error(s)." in text
    assert f"stockdrop history show {upload_id}" in text and "correct the file and send it again" in text
    assert re.search(r"Row errors:\s+2", text) and "by ftp (user wh1)" in text
    html = mail.part("html")
    assert "stock&lt;1&gt;.csv" in html and "stock<1>" not in html
    assert f"{upload_id:09d}__stock_1_.csv.result.csv" in text
    [row] = world.outbox()
    assert (row.kind, row.status, row.attempts) == ("alert", "sent", 1)


def test_a_held_feed_alert_gives_the_numbers_and_an_approve_command_that_works(
        tmp_path: Path, database: Database, start_smtp: Callable[..., SmtpServer],
        capsys: pytest.CaptureFixture[str]) -> None:
    server = start_smtp()
    body = ONE_WAREHOUSE.replace('unknown_sku = "create"', 'unknown_sku = "create"\nscope = "full"')
    body = body.replace('timezone = "UTC"', 'timezone = "UTC"\nreport_recipients = ["buyer@acme.example"]')
    body += (f'\n[smtp]\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "none"\n'
             'from_address = "stockdrop@example.com"\ntries = 1\n')
    cfg = write_config(tmp_path, body, database_url=database.url)
    assert run_cli(capsys, "-c", cfg, "db", "upgrade").code == 0
    full, short = tmp_path / "full.csv", tmp_path / "short.csv"
    full.write_text("sku,quantity\n" + "".join(f"S{i},3\n" for i in range(10)))
    short.write_text("sku,quantity\nS0,1\n")
    assert run_cli(capsys, "-c", cfg, "upload", full, "--source", "wh1").code == 0
    held = run_cli(capsys, "-c", cfg, "upload", short, "--source", "wh1", "--json")
    assert held.code == 7 and held.json()["status"] == "held"
    upload_id = held.json()["upload_id"]
    [pending] = run_cli(capsys, "-c", cfg, "outbox", "--json").json()["emails"]
    assert (pending["kind"], pending["status"], pending["to"]) == ("alert", "pending", ["buyer@acme.example"])

    settings = parse_settings({"database": {"url": database.url}, "smtp": {
        "host": "127.0.0.1", "port": server.port, "security": "none", "from_address": "stockdrop@example.com"}},
        base=tmp_path)
    assert settings.smtp is not None
    Mailer(session_factory(database.engine), settings.smtp, node="daemon").send_pending()
    [mail] = server.inbox.received
    assert mail.message["Subject"] == "[stockdrop] acme/wh1: Full feed short.csv held for approval"
    text = mail.part("plain")
    assert "Why: full feed would set 9 of 10 SKUs (90.0%) to 0, over max_zeroed_percent = 20%." in text
    assert re.search(r"Rows in the file:\s+1\n", text) and re.search(r"SKUs it would set to 0:\s+9\n", text)
    assert f"stockdrop history reject {upload_id}" in text
    html = mail.part("html")
    assert f"stockdrop history approve {upload_id}</code>" in html
    shown = run_cli(capsys, "-c", cfg, "outbox").out
    assert "sent" in shown and "held for approval" in shown

    command = next(line.strip() for line in text.splitlines() if line.strip().startswith("stockdrop history approve"))
    program, *args = shlex.split(command)
    assert program == "stockdrop"
    approved = run_cli(capsys, "-c", cfg, *args, "--json")
    assert approved.code == 0 and approved.json()["status"] == "applied" and approved.json()["zeroed"] == 9
    assert len(run_cli(capsys, "-c", cfg, "outbox", "--json").json()["emails"]) == 1  # applied: no alert


def test_alerts_of_one_cause_are_coalesced_and_the_next_mail_counts_the_ones_held_back(
        alert_world: Callable[..., tuple[World, SmtpServer]]) -> None:
    world, server = alert_world(coalesce_seconds=600)
    bad = "sku,quantity\nA,x\n"
    first = world.upload("a.csv", bad)
    for minute, name in ((1, "b.csv"), (2, "c.csv")):
        world.clock.now += timedelta(minutes=1)
        world.upload(name, bad + f"B{minute},y\n")
    world.upload("empty.csv", "")  # another kind of reason: a mail of its own
    world.upload("other.csv", bad, source="wh2")  # another source: a mail of its own
    assert [(r.status, r.subject.split(": ", 1)[1]) for r in world.outbox()] == [
        ("pending", "File a.csv rejected"), ("coalesced", "File b.csv rejected"),
        ("coalesced", "File c.csv rejected"), ("pending", "File empty.csv rejected"),
        ("pending", "File other.csv rejected")]
    # Recovery finishing an upload again is not a second alert.
    world.pipeline.processor.process(first)
    assert len(world.outbox()) == 5

    world.clock.now += timedelta(minutes=11)
    world.upload("d.csv", bad + "C,z\n")
    mails = wait_for_mail(world, server, count=4)
    assert [m.message["Subject"].split(": ", 1)[1] for m in mails] == [
        "File a.csv rejected", "File empty.csv rejected", "File other.csv rejected",
        "File d.csv rejected (and 2 more)"]
    assert mails[2].rcpt_tos == ["buyer@acme.example"]  # wh2 has no recipients of its own
    text = mails[3].part("plain")
    assert "2 more alert(s) of this kind were held back since 2026-12-03 09:01 UTC" in text
    assert "File b.csv rejected" in text and "File c.csv rejected" in text
    assert [r.status for r in world.outbox()].count("coalesced") == 2
    assert world.mailer.send_pending() == [] and len(server.inbox.received) == 4


def test_reasons_are_told_apart_by_kind_not_by_their_numbers() -> None:
    assert reason_kind("no valid rows: 2 row error(s)") == reason_kind("no valid rows: 9 row error(s)") == "row_errors"
    assert reason_kind("the file is empty (0 bytes)") == "empty"
    assert reason_kind("the file is 9 bytes, over max_file_bytes = 1") == "too_large"
    assert reason_kind("the file has a header but no rows") == "no_rows"
    assert reason_kind("x.csv: no column named sku or quantity") == "unreadable"


def test_a_market_whose_exports_keep_failing_alerts_its_merchant(
        make_world: Callable[..., Any], start_smtp: Callable[..., SmtpServer]) -> None:
    from tests.export.test_exports import Flaky

    world = make_world(failing_after=2)
    server = start_smtp()
    smtp = {"host": "127.0.0.1", "port": server.port, "security": "none", "from_address": "stockdrop@example.com"}
    settings = world.settings.model_copy(update={
        "smtp": parse_settings({"smtp": smtp}, base=world.tmp).smtp,
        "merchants": [world.settings.merchants[0].model_copy(update={"report_recipients": ["buyer@acme.example"]})]})
    alerts = Alerts(world.sessions, settings)
    flaky = Flaky(world.folder("amz"), down=9)
    exporter = world.exporter(("amz",), destinations=lambda s: flaky)
    exporter._alert = alerts.export_failing  # the hook runtime.assemble passes in
    [sent] = exporter.export_now("acme/amz", "delta")
    assert sent.status == "failing"
    assert settings.smtp is not None
    Mailer(world.sessions, settings.smtp, node="n1").send_pending()
    [mail] = server.inbox.received
    assert mail.message["Subject"] == "[stockdrop] acme: exports to amz are failing"
    text = mail.part("plain")
    assert f"could not deliver export {sent.export_id}" in text and "connection refused (try 2)" in text
    assert "stockdrop export amz" in text and "stockdrop exports --market amz" in text
