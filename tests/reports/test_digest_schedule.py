"""Scheduled digests: once per period, the watermark moving with them, across restarts and two daemons."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from daemon.db import digests as db_digests
from daemon.db import email as db_email
from daemon.db.engine import make_engine, session_factory
from daemon.db.leader import Leadership
from daemon.db.models import EmailRecord
from daemon.ingest.contained import ParserPool
from daemon.reports.digest import Digests, DigestService
from daemon.reports.outbox import Mailer
from tests.conftest import Database
from tests.reports.conftest import SmtpServer
from tests.reports.digest_world import Clock, DigestWorld, make_digest_world

# 06:00 in Berlin (CET, UTC+1) on 2 December: an hour before the merchant's 07:00.
EARLY = datetime(2026, 12, 2, 5, 0, tzinfo=UTC)
SEVEN = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)  # 07:00 in Berlin
DAY = timedelta(days=1)


class Crash(Exception):
    """The daemon dies here."""


@pytest.fixture(scope="module")
def parsers() -> Iterator[ParserPool]:
    with ParserPool(1) as pool:
        yield pool


@pytest.fixture
def world(tmp_path: Path, database: Database, parsers: ParserPool,
          start_smtp: Callable[..., SmtpServer]) -> Iterator[tuple[DigestWorld, SmtpServer]]:
    made = make_digest_world(tmp_path, database, parsers, start_smtp, Clock(EARLY))
    yield made
    made[0].pipeline.dispatcher.stop(10)


def figures(text: str, source: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.strip().startswith(source + " "))
    return line.split()[1:]


def test_the_scheduled_digest_is_written_once_per_period_and_the_watermark_moves(
        world: tuple[DigestWorld, SmtpServer]) -> None:
    w, server = world
    digests = w.digests()
    # The first look records where the digests start, and sends nothing: yesterday's 07:00.
    assert digests.write_due() == [] and w.mark() == SEVEN - DAY
    w.upload("night.csv", "sku,quantity\nA1,5\n")  # at 06:00 Berlin: in the period ending 07:00
    w.clock.now = SEVEN - timedelta(seconds=1)
    assert digests.write_due() == [] and w.outbox() == []

    w.clock.now = SEVEN + timedelta(seconds=30)
    first = digests.write_due()
    assert [(x.period.start, x.period.end, x.recipients) for x in first] == [
        (SEVEN - DAY, SEVEN, ["buyer@acme.example"]), (SEVEN - DAY, SEVEN, ["ops@3pl.example"])]
    assert w.mark() == SEVEN
    assert digests.write_due() == []  # the same period is not written twice
    w.clock.now += timedelta(minutes=5)
    assert digests.write_due() == []
    assert [o.status for o in w.mailer.send_pending()] == ["sent", "sent"]
    assert w.mailer.send_pending() == []
    mail = server.inbox.received[0]
    text = mail.part("plain")
    assert "From 2026-12-01 07:00 CET to 2026-12-02 07:00 CET, for merchant acme." in text
    assert figures(text, "wh1") == ["1", "1", "0", "0", "0", "0", "1", "0"]
    assert "Sent by Stockdrop, daily at 07:00 Europe/Berlin; the next digest covers from 2026-12-02 07:00 CET." \
        in text
    assert re.fullmatch(r"<digest\.\d+\.20261202T060000Z\.[0-9a-f]{12}@example\.com>", mail.message["Message-ID"])

    # No daemon ran on the 3rd: the next look, on the 4th, covers both days in one digest.
    w.upload("late.csv", "sku,quantity\nA1,6\nA2,x\n")  # 07:05 on the 2nd: the next period
    w.clock.now = SEVEN + DAY + timedelta(hours=5)
    w.upload("third.csv", "sku,quantity\nA1,7\n")
    w.clock.now = SEVEN + 2 * DAY + timedelta(minutes=10)
    [second, _] = digests.write_due()
    assert (second.period.start, second.period.end) == (SEVEN, SEVEN + 2 * DAY)
    assert w.mark() == SEVEN + 2 * DAY
    w.mailer.send_pending()
    text = server.inbox.received[2].part("plain")
    assert "From 2026-12-02 07:00 CET to 2026-12-04 07:00 CET" in text
    assert figures(text, "wh1") == ["2", "1", "1", "0", "0", "0", "2", "1"]
    assert len({m.message["Message-ID"] for m in server.inbox.received}) == 4
    assert [r.status for r in w.outbox()] == ["sent"] * 4


def test_a_daemon_that_does_not_lead_writes_no_digest(world: tuple[DigestWorld, SmtpServer]) -> None:
    w, _ = world
    follower = w.digests(leads=lambda: False)
    assert follower.write_due() == [] and w.mark() is None
    w.clock.now = SEVEN + DAY
    assert follower.write_due() == [] and w.outbox() == []


def test_a_restart_between_the_servers_accept_and_mark_sent_sends_the_same_digest_and_writes_no_other(
        world: tuple[DigestWorld, SmtpServer], monkeypatch: pytest.MonkeyPatch) -> None:
    w, server = world
    w.digests().write_due()
    w.upload("a.csv", "sku,quantity\nA1,5\n")
    w.clock.now = SEVEN + timedelta(minutes=1)
    assert len(w.digests().write_due()) == 2

    def die(*args: object, **kwargs: object) -> None:
        raise Crash

    with monkeypatch.context() as patched:
        patched.setattr(db_email, "mark_sent", die)
        with pytest.raises(Crash):
            Mailer(w.sessions, w.mailer._smtp, node="n1", sleep=lambda s: None).send_pending()
    [accepted] = server.inbox.received
    assert [r.status for r in w.outbox()] == ["pending", "pending"]

    # The restarted daemon: its digest pass finds the period written; its sender resends that
    # very mail (it cannot know the server took it), under the same Message-ID, and then the next.
    w.clock.now += timedelta(minutes=1)
    assert w.digests().write_due() == []
    restarted = Mailer(w.sessions, w.mailer._smtp, node="n1", sleep=lambda s: None)
    assert restarted.recover() == 1
    assert [o.status for o in restarted.send_pending()] == ["sent", "sent"]
    again, other = server.inbox.received[1:]
    assert again.raw == accepted.raw and again.message["Message-ID"] == accepted.message["Message-ID"]
    assert other.rcpt_tos == ["ops@3pl.example"]
    # One digest per recipient for the period: a receiver that deduplicates by Message-ID shows one.
    assert len({m.message["Message-ID"] for m in server.inbox.received}) == 2
    assert [r.status for r in w.outbox()] == ["sent", "sent"]
    assert restarted.send_pending() == [] and w.digests().write_due() == []


def test_the_digest_service_writes_the_due_digest_and_the_mail_goes_out(
        world: tuple[DigestWorld, SmtpServer]) -> None:
    w, server = world
    w.clock.now = SEVEN + timedelta(minutes=1)
    w.digests().write_due()  # the first look, as a daemon started at 07:01 makes it
    w.clock.now = SEVEN + DAY + timedelta(minutes=1)
    settings = w.settings.model_copy(update={"reports": w.settings.reports.model_copy(update={"check_seconds": 0.1})})
    service = DigestService(w.sessions, settings, leads=lambda: True, now=w.clock)
    service.start()
    try:
        deadline = time.monotonic() + 30
        while len(w.outbox()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        service.check()
    finally:
        service.stop(10)
    assert [r.status for r in w.outbox()] == ["pending", "pending"] and w.mark() == SEVEN + DAY
    w.mailer.send_pending()
    assert [m.rcpt_tos for m in server.inbox.received] == [["buyer@acme.example"], ["ops@3pl.example"]]


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_two_daemons_on_postgresql_write_one_digest_per_period(
        world: tuple[DigestWorld, SmtpServer], database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    w, _ = world
    other_engine = make_engine(database.url)
    try:
        # Advisory locks are the server's: a work name of this test's own.
        work = f"email-{uuid.uuid4().hex}"
        one = Digests(w.sessions, w.settings, leads=Leadership(database.engine, work).is_leader, now=w.clock)
        two = Digests(session_factory(other_engine), w.settings, leads=Leadership(other_engine, work).is_leader,
                      now=w.clock)
        one.write_due()
        w.clock.now = SEVEN + timedelta(minutes=1)
        assert (len(one.write_due()), two.write_due()) == (2, [])  # only the leader writes

        # A leader that lost its lock mid-pass and the one that took over both write, at the same moment:
        # both read the same watermark; the database keeps one digest for the period.
        w.clock.now += DAY
        both = threading.Barrier(2, timeout=30)
        read = db_digests.covered_until

        def read_then_wait(session, merchant_id):  # type: ignore[no-untyped-def]
            value = read(session, merchant_id)
            both.wait()
            return value

        monkeypatch.setattr(db_digests, "covered_until", read_then_wait)
        results: dict[str, int] = {}
        errors: list[BaseException] = []

        def run(name: str, engine: Engine) -> None:
            try:
                digests = Digests(session_factory(engine), w.settings, leads=lambda: True, now=w.clock)
                results[name] = len(digests.write_due())
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(n, e)) for n, e in (("one", database.engine),
                                                                           ("two", other_engine))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert sorted(results.values()) == [0, 2]
        with w.sessions() as s:
            ends = s.scalars(select(EmailRecord.event_key).where(EmailRecord.kind == "digest")
                             .order_by(EmailRecord.id)).all()
            assert s.scalar(select(func.count()).select_from(EmailRecord)) == 4
        assert [e.split(":")[2] for e in ends] == ["20261202T060000Z"] * 2 + ["20261203T060000Z"] * 2
        assert w.mark() == SEVEN + DAY
    finally:
        other_engine.dispose()
