"""The upload-history digest: written into the email outbox once per merchant and period.

**When.** Daily at ``digest_at`` in the merchant's time zone
(``reports.period``). The leader of ``email`` looks every
``reports.check_seconds`` whether a merchant's digest is due, so one missed
while no daemon ran is written soon after the next start, and covers every
day it missed.

**Once per period.** The digest covers ``[covered_until, boundary)``. The
mail (with a Message-ID made from the merchant, the period and who it is
for) goes into ``email_outbox`` under ``event_key = digest:<merchant
id>:<end>:<group>`` in the same transaction that moves ``covered_until`` to
the boundary (``db.digests``). A restart therefore neither skips a period
(the watermark did not move) nor repeats one (it did, with the mail); two
daemons that both think they lead write one digest, as the second
transaction fails on the unique ``event_key`` and ``message_id`` and on the
watermark's compare-and-set. Sending is the outbox's (``reports.outbox``):
written once, marked sent once accepted; a crash in between resends the
same bytes under the same Message-ID.

**Who.** The merchant's ``report_recipients`` get its digest; a source with
``report_recipients`` of its own has its part in a digest to those
recipients instead. Markets and oversells are in the merchant's.

**By hand.** ``report send`` writes a digest of ``[since, now)`` with an
event key of its own and does not move the watermark: the daily digest still
covers its whole day, so a look taken at noon does not cut the next one short.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from daemon.db import digests as db_digests
from daemon.db.models import EmailRecord, Merchant
from daemon.errors import NotFound
from daemon.reports import digest_body, outbox, period, render
from daemon.reports.attachments import quick_fix_attachments, rejected_rows
from daemon.reports.outbox import Attachment
from daemon.reports.summary import Summary, summarise
from daemon.runtime.periodic import Periodic
from daemon.settings import MerchantSettings, Settings, SmtpSettings

log = structlog.get_logger(__name__)

MERCHANT_GROUP = "merchant"


@dataclass(frozen=True)
class Group:
    """Who one digest mail is for, and what it covers."""

    key: str  # "merchant", or "sources:wh1,wh2" (sources with recipients of their own)
    recipients: list[str]
    sources: list[str]
    markets: list[str]


def groups(merchant: MerchantSettings, sources: list[str], markets: list[str]) -> list[Group]:
    """The merchant's digest, and one per set of recipients that sources have of their own."""
    configured = {s.name: s for s in merchant.all_sources()}
    own: dict[tuple[str, ...], list[str]] = {}
    mine: list[str] = []
    for name in sources:
        found = configured.get(name)
        recipients = found.recipients(merchant) if found is not None else merchant.report_recipients
        if sorted(recipients) == sorted(merchant.report_recipients):
            mine.append(name)
        else:
            own.setdefault(tuple(sorted(recipients)), []).append(name)
    out = [Group(MERCHANT_GROUP, list(merchant.report_recipients), mine, list(markets))]
    out += [Group("sources:" + ",".join(names), list(recipients), names, []) for recipients, names in own.items()]
    return out


@dataclass(frozen=True)
class Draft:
    """One digest mail, composed but not written."""

    group: Group
    subject: str
    body: render.Body
    attachments: list[Attachment]
    summary: Summary


@dataclass(frozen=True)
class Written:
    merchant: str
    email_id: int
    subject: str
    recipients: list[str]
    period: period.Period
    new: bool  # False: this digest was in the outbox already (the same period and recipients)


class _Moved(Exception):
    """Another daemon moved the watermark while this one wrote: its digest stands."""


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


class Digests:
    """Drafts and writes digests; ``write_due`` is the scheduled pass, on the leader only."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings, *,
                 leads: Callable[[], bool] = lambda: True,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._sessions, self._settings, self._leads, self._now = sessions, settings, leads, now

    @property
    def _smtp(self) -> SmtpSettings:
        assert self._settings.smtp is not None, "digests are mailed: they need [smtp]"
        return self._settings.smtp

    # --- drafting ---------------------------------------------------------------------------

    def draft(self, session: Session, merchant: MerchantSettings, merchant_id: int, span: period.Period, *,
              scheduled: bool) -> list[Draft]:
        """Every mail of one merchant's digest for ``span``, one per group (see ``groups``)."""
        reports = self._settings.reports
        zone = ZoneInfo(merchant.timezone)
        files = db_digests.uploads(session, merchant_id, span.start, span.end)
        held = db_digests.held_before(session, merchant_id, span.start)
        deliveries = db_digests.deliveries(session, merchant_id, span.start, span.end)
        last = db_digests.last_deliveries(session, merchant_id, span.end)
        oversold = db_digests.oversells(session, merchant_id, span.start, span.end)
        source_names, market_names = db_digests.names(session, merchant_id)
        by_id = {f.id: f for f in files}
        schedule = f"daily at {merchant.digest_time(reports)} {merchant.timezone}" if scheduled else None
        out = []
        for group in groups(merchant, source_names, market_names):
            summary = summarise(span, files, held_before=held, sources=group.sources, markets=group.markets,
                                deliveries=deliveries, last_deliveries=last, oversells=oversold)
            failed = [f.id for f in files if f.errors and (f.source in group.sources
                                                          if f.source is not None else f.market in group.markets)]
            errors, total = db_digests.row_errors(session, failed, limit=reports.max_attached_rows)
            attachments = rejected_rows(errors, by_id, period_end=span.end.astimezone(zone), merchant=merchant.name,
                                        xlsx=merchant.digest_xlsx(reports))
            attachments += quick_fix_attachments(session, summary.with_failed_rows, self._settings)
            label = merchant.name if group.key == MERCHANT_GROUP else f"{merchant.name}/{'+'.join(group.sources)}"
            head = digest_body.Heading(merchant.name, zone, label, schedule)
            out.append(Draft(group, digest_body.subject(summary, head),
                             digest_body.body(summary, head, attachments, shown_rows=len(errors), total_rows=total),
                             attachments, summary))
        return out

    def _keys(self, merchant_id: int, span: period.Period, group: Group, *, scheduled: bool) -> tuple[str, str]:
        """(event key, Message-ID): the same merchant, period and recipients make the same ones."""
        kind = "digest" if scheduled else "digest-manual"
        start = "" if scheduled else f"{_stamp(span.start)}:"  # a scheduled one starts where the last ended
        event = f"{kind}:{merchant_id}:{start}{_stamp(span.end)}:{group.key}"
        if len(event) > 200:
            event = f"{kind}:{merchant_id}:{start}{_stamp(span.end)}:{hashlib.sha256(group.key.encode()).hexdigest()}"
        # Short enough not to be folded: the start and the group are in the hash.
        tag = hashlib.sha256(f"{_stamp(span.start)}|{group.key}".encode()).hexdigest()[:12]
        message_id = f"<{kind}.{merchant_id}.{_stamp(span.end)}.{tag}@{self._smtp.domain}>"
        return event, message_id

    def _write(self, session: Session, merchant: MerchantSettings, merchant_id: int, span: period.Period, *,
               scheduled: bool, now: datetime) -> list[Written]:
        written = []
        for draft in self.draft(session, merchant, merchant_id, span, scheduled=scheduled):
            if not draft.group.recipients:
                log.warning("digest_not_sent_no_recipients", merchant=merchant.name, group=draft.group.key)
                continue
            event, message_id = self._keys(merchant_id, span, draft.group, scheduled=scheduled)
            existing = session.scalar(select(EmailRecord).where(EmailRecord.event_key == event))
            if existing is not None:
                written.append(Written(merchant.name, existing.id, existing.subject, draft.group.recipients, span,
                                       new=False))
                continue
            composed = outbox.compose(self._smtp, draft.group.recipients, draft.subject, draft.body, kind="digest",
                                      now=now, message_id=message_id, attachments=draft.attachments)
            record = outbox.enqueue(session, composed, kind="digest", merchant_id=merchant_id, now=now,
                                    node=self._settings.node, event_key=event)
            written.append(Written(merchant.name, record.id, composed.subject, composed.recipients, span, new=True))
        return written

    # --- the schedule -----------------------------------------------------------------------

    def write_due(self) -> list[Written]:
        """The scheduled pass: each merchant whose digest is due gets it written (leader only)."""
        if self._settings.smtp is None or not self._settings.reports.digest or not self._leads():
            return []
        out: list[Written] = []
        for merchant in self._settings.merchants:
            try:
                out += self._write_due(merchant)
            except (IntegrityError, _Moved):
                # Another daemon wrote this period's digest first (it thought it led too): it stands.
                log.info("digest_written_elsewhere", merchant=merchant.name)
        return out

    def _write_due(self, merchant: MerchantSettings) -> list[Written]:
        now = self._now()
        at, zone = period.parse_at(merchant.digest_time(self._settings.reports)), ZoneInfo(merchant.timezone)
        with self._sessions() as session, session.begin():
            merchant_id = session.scalar(select(Merchant.id).where(Merchant.name == merchant.name))
            if merchant_id is None:
                return []  # not in the database yet: the next pass, once synced
            mark = db_digests.covered_until(session, merchant_id)
            if mark is None:
                start = period.boundary_at_or_before(now, at, zone)
                db_digests.start_mark(session, merchant_id, start, now=now, node=self._settings.node)
                log.info("digest_started", merchant=merchant.name, covers_from=start.isoformat(),
                         first=period.next_boundary(now, at, zone).isoformat())
                return []
            span = period.due(now, mark, at, zone)
            if span is None:
                return []
            written = self._write(session, merchant, merchant_id, span, scheduled=True, now=now)
            if not db_digests.move_mark(session, merchant_id, expected=mark, to=span.end, now=now,
                                        node=self._settings.node):
                raise _Moved
        for w in written:
            log.info("digest_written", merchant=merchant.name, email_id=w.email_id, start=span.start.isoformat(),
                     end=span.end.isoformat(), to=w.recipients)
        return written

    # --- by hand ----------------------------------------------------------------------------

    def span_for(self, session: Session, merchant_id: int, since: datetime | None) -> period.Period:
        # Not rounded down: a file received in this very second belongs to it. Its keys name the
        # second, so a second send within it is the same digest (already written).
        return period.manual(self._now(), since=since, covered_until=db_digests.covered_until(session, merchant_id))

    def write_now(self, merchant: MerchantSettings, *, since: datetime | None) -> list[Written]:
        """``report send``: a digest of ``[since, now)`` into the outbox; the watermark stays."""
        now = self._now()
        with self._sessions() as session, session.begin():
            merchant_id = _merchant_id(session, merchant.name)
            span = self.span_for(session, merchant_id, since)
            return self._write(session, merchant, merchant_id, span, scheduled=False, now=now)

    def preview(self, merchant: MerchantSettings, *, since: datetime | None,
                source: str | None = None) -> Draft:
        """What ``report send`` would write for the group of ``source`` (default: the merchant's)."""
        with self._sessions() as session:
            merchant_id = _merchant_id(session, merchant.name)
            span = self.span_for(session, merchant_id, since)
            drafts = self.draft(session, merchant, merchant_id, span, scheduled=False)
        if source is None:
            return drafts[0]
        found = next((d for d in drafts if source in d.group.sources), None)
        if found is None:
            raise NotFound(f"merchant {merchant.name!r} has no source named {source!r}")
        return found


def _merchant_id(session: Session, name: str) -> int:
    merchant_id = session.scalar(select(Merchant.id).where(Merchant.name == name))
    if merchant_id is None:
        raise NotFound(f"merchant {name!r} is not in the database yet: run `stockdrop db upgrade`")
    return merchant_id


class DigestService:
    """The scheduled digests as a runtime service: a look every ``reports.check_seconds``.
    Not at start: drafting a digest must not hold up the daemon's readiness, and a digest
    missed while no daemon ran is written at the first look, a minute later."""

    name = "digest"

    def __init__(self, sessions: sessionmaker[Session], settings: Settings, *, leads: Callable[[], bool],
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.digests = Digests(sessions, settings, leads=leads, now=now)
        self._loop = Periodic("digest", settings.reports.check_seconds, self.digests.write_due)

    def start(self) -> None:
        self._loop.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._loop.stop(timeout)

    def check(self) -> None:
        self._loop.check()

