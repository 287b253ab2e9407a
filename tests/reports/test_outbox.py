"""The email outbox against a real SMTP server: written first, sent once, every failure recorded."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session, sessionmaker

from daemon.db import email as db_email
from daemon.db.engine import session_factory
from daemon.reports import outbox, render
from daemon.reports.outbox import Mailer
from daemon.settings import SmtpSettings
from tests.conftest import Database
from tests.reports.conftest import SMTP_USER, Inbox, SmtpServer, free_port


@pytest.fixture
def sessions(database: Database) -> sessionmaker[Session]:
    return session_factory(database.engine)


def write_mail(sessions: sessionmaker[Session], smtp: SmtpSettings, subject: str = "Hello <&> there",
               to: tuple[str, ...] = ("ops@example.com", "boss@example.com")) -> tuple[int, str]:
    body = render.Body("A test mail").add(render.Para("Quantities & <things>"),
                                          render.Facts([("File", "a<b>.csv")]),
                                          render.Commands([("stockdrop history approve 3", "apply it")]))
    now = datetime.now(UTC)
    composed = outbox.compose(smtp, to, subject, body, kind="alert", now=now)
    with sessions() as session, session.begin():
        record = outbox.enqueue(session, composed, kind="alert", merchant_id=None, now=now, node="n1")
        return record.id, composed.message_id


def row(sessions: sessionmaker[Session], email_id: int) -> db_email.EmailRow:
    with sessions() as session:
        return next(r for r in db_email.list_emails(session) if r.id == email_id)


def no_wait(seconds: float) -> None:
    pass


def test_a_mail_goes_over_starttls_with_a_login_and_parses_back_whole(
        sessions: sessionmaker[Session], start_smtp: Callable[..., SmtpServer]) -> None:
    server = start_smtp(tls=True)
    smtp = server.settings()
    email_id, message_id = write_mail(sessions, smtp)
    assert row(sessions, email_id).status == "pending"  # written before anything is sent

    done = Mailer(sessions, smtp, node="n1", sleep=no_wait).send_pending()

    assert [(d.email_id, d.status, d.attempts) for d in done] == [(email_id, "sent", 1)]
    assert server.inbox.logins == [SMTP_USER]
    [got] = server.inbox.received
    assert got.mail_from == "stockdrop@example.com"
    assert got.rcpt_tos == ["ops@example.com", "boss@example.com"]
    msg = got.message
    assert msg["Message-ID"] == message_id and message_id.endswith("@example.com>")
    assert msg["Subject"] == "Hello <&> there" and msg["Auto-Submitted"] == "auto-generated"
    assert msg["To"] == "ops@example.com, boss@example.com" and msg["From"] == "stockdrop@example.com"
    assert msg.get_content_type() == "multipart/alternative"
    assert "Quantities & <things>" in got.part("plain")
    assert "stockdrop history approve 3" in got.part("plain")
    html = got.part("html")
    assert "Quantities &amp; &lt;things&gt;" in html and "a&lt;b&gt;.csv" in html
    assert "<things>" not in html and "<img" not in html and "<style" not in html and "http" not in html
    shown = row(sessions, email_id)
    assert (shown.status, shown.attempts, shown.last_error) == ("sent", 1, None) and shown.sent_at is not None


def test_a_server_that_requires_starttls_is_never_sent_a_password_in_the_clear(
        sessions: sessionmaker[Session], start_smtp: Callable[..., SmtpServer]) -> None:
    server = start_smtp(tls=True)
    # A wrong CA: the handshake fails, so the login is never sent; the mail waits.
    email_id, _ = write_mail(sessions, server.settings())
    wrong = server.settings(ca_file=None)
    done = Mailer(sessions, wrong, node="n1", sleep=no_wait).send_pending()
    assert done[0].status == "pending" and "CERTIFICATE_VERIFY_FAILED" in (done[0].error or "")
    assert server.inbox.logins == [] and server.inbox.received == []
    assert row(sessions, email_id).status == "pending"


def test_a_server_that_is_down_then_up_gets_the_mail_once(
        sessions: sessionmaker[Session], start_smtp: Callable[..., SmtpServer]) -> None:
    port = free_port()
    smtp = SmtpSettings(host="127.0.0.1", port=port, security="none", from_address="stockdrop@example.com",
                        timeout_seconds=5, tries=2, retry_max_seconds=1)
    email_id, message_id = write_mail(sessions, smtp)
    mailer = Mailer(sessions, smtp, node="n1", sleep=no_wait)

    first = mailer.send_pending()  # nothing listens: both tries refused
    assert [(d.status, d.attempts) for d in first] == [("pending", 2)]
    shown = row(sessions, email_id)
    assert shown.status == "pending" and shown.attempts == 2 and "ConnectionRefused" in (shown.last_error or "")

    inbox = Inbox()
    waits: list[float] = []

    def server_comes_back(seconds: float) -> None:
        waits.append(seconds)
        start_smtp(port=port, inbox=inbox)

    mailer = Mailer(sessions, smtp, node="n1", sleep=server_comes_back)
    # Still down for the first try of this pass; up after the backoff.
    second = mailer.send_pending()
    assert [(d.status, d.attempts) for d in second] == [("sent", 2)]
    assert waits == [1.0]
    assert [r.message["Message-ID"] for r in inbox.received] == [message_id]
    assert mailer.send_pending() == []  # sent is sent: a later pass sends nothing
    assert len(inbox.received) == 1 and row(sessions, email_id).attempts == 4


def test_a_temporary_refusal_is_retried_with_backoff(
        sessions: sessionmaker[Session], start_smtp: Callable[..., SmtpServer]) -> None:
    server = start_smtp()
    server.inbox.replies.append("451 4.3.0 Mailbox busy, try later")
    email_id, _ = write_mail(sessions, server.settings())
    waits: list[float] = []
    done = Mailer(sessions, server.settings(), node="n1", sleep=waits.append).send_pending()
    assert [(d.status, d.attempts) for d in done] == [("sent", 2)]
    assert waits == [1.0] and len(server.inbox.received) == 1
    assert row(sessions, email_id).status == "sent"


def test_a_mail_the_server_defers_on_its_own_account_holds_up_no_other(
        sessions: sessionmaker[Session], start_smtp: Callable[..., SmtpServer]) -> None:
    server = start_smtp()
    server.inbox.replies.extend(["452 4.2.2 Mailbox full", "452 4.2.2 Mailbox full"])  # both tries of the first
    full_id, _ = write_mail(sessions, server.settings(), subject="to a full mailbox")
    later_id, _ = write_mail(sessions, server.settings(), subject="the next one")
    done = Mailer(sessions, server.settings(), node="n1", sleep=no_wait).send_pending()
    assert [(d.email_id, d.status, d.attempts) for d in done] == [(full_id, "pending", 2), (later_id, "sent", 1)]
    assert [r.message["Subject"] for r in server.inbox.received] == ["the next one"]
    assert "452 4.2.2 Mailbox full" in (row(sessions, full_id).last_error or "")
    # The mailbox has room again: the next pass sends it, once.
    assert [(d.email_id, d.status) for d in Mailer(sessions, server.settings(), node="n1").send_pending()] == [
        (full_id, "sent")]
    assert [r.message["Subject"] for r in server.inbox.received] == ["the next one", "to a full mailbox"]


def test_a_server_that_is_down_holds_the_queue_until_it_is_back(
        sessions: sessionmaker[Session], start_smtp: Callable[..., SmtpServer]) -> None:
    smtp = SmtpSettings(host="127.0.0.1", port=free_port(), security="none", from_address="stockdrop@example.com",
                        timeout_seconds=5, tries=1, retry_max_seconds=1)
    first_id, _ = write_mail(sessions, smtp)
    write_mail(sessions, smtp, subject="the next one")
    done = Mailer(sessions, smtp, node="n1", sleep=no_wait).send_pending()
    assert [(d.email_id, d.status) for d in done] == [(first_id, "pending")]  # the next one was not tried


def test_a_permanent_refusal_is_recorded_and_never_tried_again(
        sessions: sessionmaker[Session], start_smtp: Callable[..., SmtpServer]) -> None:
    server = start_smtp()
    server.inbox.replies.append("550 5.7.1 Message refused by policy")
    email_id, _ = write_mail(sessions, server.settings())
    later_id, _ = write_mail(sessions, server.settings(), subject="the next one")
    mailer = Mailer(sessions, server.settings(), node="n1", sleep=no_wait)

    done = mailer.send_pending()

    assert [(d.email_id, d.status, d.attempts) for d in done] == [(email_id, "failed", 1), (later_id, "sent", 1)]
    shown = row(sessions, email_id)
    assert shown.status == "failed" and shown.attempts == 1
    assert "550 5.7.1 Message refused by policy" in (shown.last_error or "")
    assert mailer.send_pending() == []
    assert [r.message["Subject"] for r in server.inbox.received] == ["the next one"]


class Crash(BaseException):
    """The process dies: nothing after this point runs."""


def test_a_crash_between_the_servers_accept_and_mark_sent_resends_the_same_message_id(
        sessions: sessionmaker[Session], start_smtp: Callable[..., SmtpServer],
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = start_smtp()
    smtp = server.settings()
    email_id, message_id = write_mail(sessions, smtp)

    def die(*args: object, **kwargs: object) -> None:
        raise Crash

    with monkeypatch.context() as patched:
        patched.setattr(db_email, "mark_sent", die)
        with pytest.raises(Crash):
            Mailer(sessions, smtp, node="n1", sleep=no_wait).send_pending()
    assert len(server.inbox.received) == 1
    assert row(sessions, email_id).status == "pending"  # the crash came before "sent" was committed

    # Another daemon does not touch the row while the dead one's claim runs.
    assert Mailer(sessions, smtp, node="n2", sleep=no_wait).send_pending() == []
    # The restarted daemon lets its own claim go and sends the row again, the very same bytes.
    restarted = Mailer(sessions, smtp, node="n1", sleep=no_wait)
    assert restarted.recover() == 1
    assert [d.status for d in restarted.send_pending()] == ["sent"]
    first, second = server.inbox.received
    assert first.raw == second.raw and second.message["Message-ID"] == message_id
    assert row(sessions, email_id).status == "sent"
    assert restarted.send_pending() == [] and len(server.inbox.received) == 2


def test_only_the_leader_sends_and_a_claimed_row_is_sent_by_one_sender(
        sessions: sessionmaker[Session], start_smtp: Callable[..., SmtpServer]) -> None:
    server = start_smtp()
    smtp = server.settings()
    email_id, _ = write_mail(sessions, smtp)
    assert Mailer(sessions, smtp, node="n2", leads=lambda: False).send_pending() == []
    assert server.inbox.received == [] and row(sessions, email_id).status == "pending"

    now = datetime.now(UTC)
    with sessions() as session, session.begin():
        assert db_email.claim(session, email_id, node="n2", now=now, until=now.replace(year=now.year + 1))
    # A leader that took over while n2 still had the row in hand leaves it to n2.
    assert Mailer(sessions, smtp, node="n1").send(email_id) is None
    assert server.inbox.received == []
