"""The email outbox: a mail is written whole before it is sent, and marked sent once accepted.

Nothing is lost: the row (recipients, subject, the MIME bytes, a
Message-ID made when it is written) is committed before any connection is
opened, and stays ``pending`` through every temporary failure: each pass
tries it ``smtp.tries`` times with capped exponential backoff (the retry
policy of exports, ``daemon.retry``), and the next pass, ``poll_seconds``
later, tries again. A 5xx refusal marks it ``failed``, with the server's
reply, for ``stockdrop outbox`` to show; it is never sent again.

Nothing is sent twice after a restart: a row is marked ``sent`` in the
transaction after the server accepted it, and a sent row is never sent.
The one window left is a crash (or the database going away) between the
server's "250 accepted" and that commit: the row is still pending, so the
next run sends it again, the same bytes under the same Message-ID. No
protocol closes that window (SMTP has no two-phase commit); what it leaves
is a duplicate that receivers detect: mail systems and clients that
deduplicate do so by Message-ID, and a person sees two identical mails
with one ID. Losing an alert would be worse than that.

Only one sender sends: the daemon that leads ``email`` (``db.leader``), and
each row is claimed before it is sent (``db.email.claim``), so a leader
that lost its lock mid-pass and the one that took over never send the same
row. A claim lapses after the longest a pass can spend on one row, so a
sender that died holding one does not hold it for ever; a restarted node
lets its own claims go at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

import structlog
import tenacity
from sqlalchemy.orm import Session, sessionmaker

from daemon.db import email as db_email
from daemon.db.engine import durable
from daemon.db.models import EmailRecord
from daemon.reports import render
from daemon.reports.smtp import Accepted, MailDeferred, MailRefused, SmtpClient
from daemon.retry import backoff
from daemon.runtime.periodic import Periodic
from daemon.settings import SmtpSettings

log = structlog.get_logger(__name__)


class Stopping(Exception):
    """The daemon is stopping: the wait between two tries was cut short."""


@dataclass(frozen=True)
class Composed:
    message_id: str
    subject: str
    recipients: list[str]
    message: bytes


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # "text/csv", ...
    data: bytes


def compose(smtp: SmtpSettings, recipients: Sequence[str], subject: str, body: render.Body, *,
            kind: str, now: datetime, message_id: str | None = None,
            attachments: Sequence[Attachment] = ()) -> Composed:
    """The whole mail: headers, a plain-text part and an HTML part (and any attachments after
    them), as the bytes that will be sent. ``message_id``: one the caller made stable (a
    digest's names its period); by default a new one."""
    message_id = message_id or make_msgid(idstring=kind, domain=smtp.domain)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = smtp.from_address
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id
    # RFC 3834: a machine wrote this; auto-responders and vacation replies stay quiet.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Stockdrop-Kind"] = kind
    msg.set_content(render.text(body))
    msg.add_alternative(render.page(body), subtype="html")
    for attachment in attachments:
        maintype, subtype = attachment.content_type.split("/", 1)
        msg.add_attachment(attachment.data, maintype=maintype, subtype=subtype, filename=attachment.filename)
    return Composed(message_id, subject, list(recipients), msg.as_bytes())


def enqueue(session: Session, composed: Composed, *, kind: str, merchant_id: int | None, now: datetime,
            node: str | None, event_key: str | None = None, coalesce_key: str | None = None) -> EmailRecord:
    """Write the mail to the outbox in the caller's transaction; the leader sends it."""
    return db_email.add(session, message_id=composed.message_id, kind=kind, merchant_id=merchant_id,
                        recipients=composed.recipients, subject=composed.subject, message=composed.message,
                        now=now, node=node, event_key=event_key, coalesce_key=coalesce_key)


@dataclass(frozen=True)
class Outcome:
    email_id: int
    status: str  # sent, failed, or pending (deferred, or stopped between tries)
    attempts: int
    error: str | None = None
    holds_queue: bool = False  # pending for a reason the mails behind it share (the server down, a stop)


class Mailer:
    def __init__(self, sessions: sessionmaker[Session], smtp: SmtpSettings, *, node: str,
                 leads: Callable[[], bool] = lambda: True, client: SmtpClient | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 sleep: Callable[[float], None] | None = None) -> None:
        self._sessions, self._smtp, self._node, self._leads, self._now = sessions, smtp, node, leads, now
        self._client = client or SmtpClient(smtp)
        self._sleep = sleep
        # The longest one row can be in hand: every try timing out, every wait at its cap.
        self._lease = timedelta(seconds=smtp.tries * (smtp.timeout_seconds * 4 + smtp.retry_max_seconds) + 60)

    def recover(self) -> int:
        """At start: the claims this node holds are a crashed run's; let them go."""
        with self._sessions() as session, session.begin():
            released = db_email.release_claims(session, self._node)
        if released:
            log.warning("email_claims_released", node=self._node, emails=released)
        return released

    def send_pending(self) -> list[Outcome]:
        """One pass over the outbox, oldest first, on the leader only.

        Stops at the first mail that could not go for a reason the ones
        behind it share (the server down, a refused login): they would wait
        the same, and the next pass comes soon. A mail the server deferred
        on its own account (a recipient's full mailbox, greylisting) holds
        up no other.
        """
        if not self._leads():
            return []
        with self._sessions() as session:
            ids = db_email.pending_ids(session)
        done: list[Outcome] = []
        for email_id in ids:
            outcome = self.send(email_id)
            if outcome is None:
                continue
            done.append(outcome)
            if outcome.holds_queue:
                break
        return done

    def send(self, email_id: int) -> Outcome | None:
        """Send one pending mail; None if it is not pending or another sender holds it."""
        now = self._now()
        with self._sessions() as session, session.begin():
            if not db_email.claim(session, email_id, node=self._node, now=now, until=now + self._lease):
                return None
            record = session.get(EmailRecord, email_id)
            assert record is not None
            recipients = [a for a in record.recipients.split(",") if a]
            message, message_id = record.message, record.message_id
        tries = 0
        accepted: list[Accepted] = []

        def attempt() -> None:
            nonlocal tries
            tries += 1
            accepted.append(self._client.send(self._smtp.from_address, recipients, message))

        def failed(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            self._record(email_id, str(error), keep_claim=True)
            log.warning("email_retry", email_id=email_id, attempt=state.attempt_number, error=str(error),
                        wait_s=round(state.upcoming_sleep, 1))

        retrying = backoff(attempts=self._smtp.tries, max_wait=self._smtp.retry_max_seconds,
                           transient=lambda e: isinstance(e, MailDeferred), before_sleep=failed, sleep=self._sleep)
        try:
            retrying(attempt)
        except Stopping:
            with self._sessions() as session, session.begin():
                db_email.release(session, email_id)
            return Outcome(email_id, db_email.PENDING, tries, holds_queue=True)
        except MailDeferred as exc:
            self._record(email_id, str(exc))
            log.warning("email_deferred", email_id=email_id, message_id=message_id, attempts=tries, error=str(exc))
            return Outcome(email_id, db_email.PENDING, tries, str(exc), holds_queue=not exc.this_message)
        except MailRefused as exc:
            self._record(email_id, str(exc), permanent=True)
            log.error("email_refused", email_id=email_id, message_id=message_id, error=str(exc))
            return Outcome(email_id, db_email.FAILED, tries, str(exc))
        except Exception as exc:  # a bug or a secret gone missing: not the mail's fault; the next pass tries
            self._record(email_id, f"{type(exc).__name__}: {exc}")
            raise
        refused = accepted[-1].refused
        note = "; ".join(f"refused {rcpt}: {why}" for rcpt, why in refused.items()) or None
        with self._sessions() as session, session.begin():
            durable(session)  # the server has it: "sent" must survive what comes next
            db_email.mark_sent(session, email_id, self._now(), note=note)
        log.info("email_sent", email_id=email_id, message_id=message_id, attempts=tries,
                 to=len(recipients), refused=sorted(refused))
        return Outcome(email_id, db_email.SENT, tries, note)

    def _record(self, email_id: int, error: str, *, permanent: bool = False, keep_claim: bool = False) -> None:
        with self._sessions() as session, session.begin():
            db_email.mark_attempt(session, email_id, self._now(), error, permanent=permanent,
                                  release=not keep_claim)


class MailService:
    """The mailer as a runtime service: a pass every ``poll_seconds``, its waits cut short at stop."""

    name = "email"

    def __init__(self, sessions: sessionmaker[Session], smtp: SmtpSettings, *, node: str,
                 leads: Callable[[], bool]) -> None:
        self._stopping = threading.Event()
        self.mailer = Mailer(sessions, smtp, node=node, leads=leads, sleep=self._wait)
        self._loop = Periodic("email", smtp.poll_seconds, self.mailer.send_pending, at_start=False)

    def _wait(self, seconds: float) -> None:
        if self._stopping.wait(seconds):
            raise Stopping

    def start(self) -> None:
        self._stopping.clear()
        self.mailer.recover()
        self._loop.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._loop.stop(timeout)

    def check(self) -> None:
        self._loop.check()
