"""The email outbox: every status change of a mail is here, as an export's is in ``db.exports``.

A mail is ``pending`` from the moment it is written until a server accepted
it (``sent``) or refused it for good (``failed``); an alert held back by
coalescing is ``coalesced`` and never sent. A sender first claims a row
(``claim``): a conditional UPDATE, so of two senders only one gets it; the
claim lapses at ``claimed_until``, and a node's own claims are let go when
its sender starts (``release_claims``): they are a crashed run's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from daemon.db.models import EmailRecord, Merchant

PENDING, SENT, FAILED, COALESCED = "pending", "sent", "failed", "coalesced"
STATUSES = (PENDING, SENT, FAILED, COALESCED)


def add(session: Session, *, message_id: str, kind: str, merchant_id: int | None, recipients: list[str],
        subject: str, message: bytes, now: datetime, node: str | None, event_key: str | None = None,
        coalesce_key: str | None = None, status: str = PENDING) -> EmailRecord:
    record = EmailRecord(message_id=message_id, kind=kind, status=status, merchant_id=merchant_id,
                         recipients=",".join(recipients), subject=subject[:300], message=message,
                         event_key=event_key, coalesce_key=coalesce_key, attempts=0, node=node,
                         created_at=now)
    session.add(record)
    session.flush()
    return record


def has_event(session: Session, event_key: str) -> bool:
    return session.scalar(select(EmailRecord.id).where(EmailRecord.event_key == event_key)) is not None


def last_mail(session: Session, coalesce_key: str) -> EmailRecord | None:
    """The newest mail (not a coalesced row) of this cause."""
    return session.scalar(select(EmailRecord).where(EmailRecord.coalesce_key == coalesce_key,
                                                    EmailRecord.status != COALESCED)
                          .order_by(EmailRecord.id.desc()).limit(1))


def coalesced_since(session: Session, coalesce_key: str, after_id: int) -> list[EmailRecord]:
    """The alerts of this cause held back since mail ``after_id``, oldest first."""
    return list(session.scalars(select(EmailRecord).where(
        EmailRecord.coalesce_key == coalesce_key, EmailRecord.status == COALESCED, EmailRecord.id > after_id)
        .order_by(EmailRecord.id)))


def pending_ids(session: Session, limit: int = 100) -> list[int]:
    return list(session.scalars(select(EmailRecord.id).where(EmailRecord.status == PENDING)
                                .order_by(EmailRecord.id).limit(limit)))


def claim(session: Session, email_id: int, *, node: str, now: datetime, until: datetime) -> bool:
    """Take a pending row for this sender until ``until``; False if another holds it or it is done."""
    result = session.execute(
        update(EmailRecord).where(
            EmailRecord.id == email_id, EmailRecord.status == PENDING,
            or_(EmailRecord.claimed_until.is_(None), EmailRecord.claimed_until < now))
        .values(claimed_by=node, claimed_until=until).execution_options(synchronize_session=False))
    return bool(getattr(result, "rowcount", 0))


def release_claims(session: Session, node: str) -> int:
    """At a sender's start: the claims this node holds are a crashed run's, in hand no more."""
    result = session.execute(
        update(EmailRecord).where(EmailRecord.claimed_by == node, EmailRecord.status == PENDING)
        .values(claimed_by=None, claimed_until=None).execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0))


def release(session: Session, email_id: int) -> None:
    session.execute(update(EmailRecord).where(EmailRecord.id == email_id)
                    .values(claimed_by=None, claimed_until=None).execution_options(synchronize_session=False))


def mark_sent(session: Session, email_id: int, now: datetime, *, note: str | None = None) -> None:
    """The server accepted it; ``note``: the recipients it refused (the others got it)."""
    session.execute(update(EmailRecord).where(EmailRecord.id == email_id).values(
        status=SENT, sent_at=now, attempts=EmailRecord.attempts + 1, last_attempt_at=now,
        last_error=note[:2000] if note else None, claimed_by=None, claimed_until=None)
        .execution_options(synchronize_session=False))


def mark_attempt(session: Session, email_id: int, now: datetime, error: str, *, permanent: bool = False,
                 release: bool = False) -> None:
    """A try that did not get the mail accepted; ``permanent``: the server refused it for good.
    ``release``: the sender lets the row go (a later pass tries again)."""
    values: dict[str, object] = {"attempts": EmailRecord.attempts + 1, "last_attempt_at": now,
                                 "last_error": error[:2000]}
    if permanent:
        values["status"] = FAILED
    if permanent or release:
        values.update(claimed_by=None, claimed_until=None)
    session.execute(update(EmailRecord).where(EmailRecord.id == email_id).values(**values)
                    .execution_options(synchronize_session=False))


@dataclass(frozen=True)
class EmailRow:
    id: int
    kind: str
    merchant: str | None
    to: list[str]
    subject: str
    status: str
    attempts: int
    last_error: str | None
    message_id: str
    created_at: datetime
    sent_at: datetime | None


def list_emails(session: Session, *, status: str | None = None, kind: str | None = None,
                limit: int = 50) -> list[EmailRow]:
    """The outbox, newest first."""
    query = (select(EmailRecord, Merchant.name).outerjoin(Merchant, Merchant.id == EmailRecord.merchant_id)
             .order_by(EmailRecord.id.desc()).limit(limit))
    if status is not None:
        query = query.where(EmailRecord.status == status)
    if kind is not None:
        query = query.where(EmailRecord.kind == kind)
    return [EmailRow(r.id, r.kind, merchant, [a for a in r.recipients.split(",") if a], r.subject, r.status,
                     r.attempts, r.last_error, r.message_id, r.created_at, r.sent_at)
            for r, merchant in session.execute(query)]


def count_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(EmailRecord.status, func.count()).group_by(EmailRecord.status))
    return {status: count for status, count in rows.all()}


def get_row(session: Session, email_id: int) -> EmailRow:
    """One mail of the outbox, as ``list_emails`` shows it."""
    query = (select(EmailRecord, Merchant.name).outerjoin(Merchant, Merchant.id == EmailRecord.merchant_id)
             .where(EmailRecord.id == email_id))
    r, merchant = session.execute(query).one()
    return EmailRow(r.id, r.kind, merchant, [a for a in r.recipients.split(",") if a], r.subject, r.status,
                    r.attempts, r.last_error, r.message_id, r.created_at, r.sent_at)
