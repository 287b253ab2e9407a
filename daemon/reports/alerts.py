"""Alerts: a mail at once when a file is rejected or held, or a market's exports keep failing.

Each alert says what happened to which file, why, and what to do; a held
feed's gives the exact approve and reject commands and the numbers that
made it hold. Alerts go through the outbox (``reports.outbox``): written by
whichever daemon saw the event, sent by the leader.

Alerts of one cause (one source or market, one kind of reason) within
``alerts.coalesce_seconds`` of the last mail of that cause are written as
``coalesced`` rows and not sent: a warehouse sending a bad file every
minute gets one mail, and the next mail of that cause after the window
lists the ones held back. An event is written once (``event_key``): the
same upload finished again by recovery is not a second alert.

Two daemons that see two events of one cause at the same moment may both
send a mail; coalescing is for floods, and two mails are not one lost.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import make_msgid
from typing import Protocol

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from daemon.db import email as db_email
from daemon.db.models import ExportRecord, MarketRecord, Merchant, OrderExportRecord, Source, Upload
from daemon.formats.results import result_name
from daemon.reports import outbox, render
from daemon.settings import MerchantSettings, Settings

log = structlog.get_logger(__name__)

ALERTED = ("rejected", "held")
_HELD_HINT = re.compile(r";\s*approve with `stockdrop history approve \d+` or reject it$")
_HELD_BACK_LISTED = 20


class Finished(Protocol):
    """What ingest tells of a finished upload (``ingest.outcomes.Outcome``)."""

    @property
    def upload_id(self) -> int: ...

    @property
    def status(self) -> str: ...


def reason_kind(message: str | None) -> str:
    """The kind of a rejection's reason, for coalescing: one bad file a minute is one cause."""
    text = (message or "").lower()
    for needle, kind in (("the file is empty", "empty"), ("over max_file_bytes", "too_large"),
                         ("header but no rows", "no_rows"), ("row error", "row_errors"),
                         ("held feed rejected", "refused_by_person")):
        if needle in text:
            return kind
    return "unreadable"


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


class Alerts:
    """``upload_finished`` is ingest's ``OutcomeHook``; ``export_failing`` the exporter's ``AlertHook``."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings, *,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        assert settings.smtp is not None, "alerts need [smtp]"
        self._sessions, self._settings, self._smtp, self._now = sessions, settings, settings.smtp, now
        self._window = timedelta(seconds=settings.alerts.coalesce_seconds)

    def upload_finished(self, done: Finished) -> None:
        if str(done.status) not in ALERTED:
            return
        with self._sessions() as session:
            upload = session.get(Upload, done.upload_id)
            if upload is None or upload.status != str(done.status):
                return
            alert = self._upload_alert(session, upload)
        if alert is not None:
            self._write(*alert, event_key=f"upload:{upload.id}:{upload.status}")

    def export_failing(self, market_id: int, export_id: int, error: str) -> None:
        with self._sessions() as session:
            market = session.get(MarketRecord, market_id)
            export = session.get(ExportRecord, export_id)
            merchant = self._merchant(session, market.merchant_id) if market is not None else None
            if market is None or export is None or merchant is None:
                return
            alert = (market.merchant_id, merchant.report_recipients,
                     f"[stockdrop] {merchant.name}: exports to {market.name} are failing",
                     self._delivery_failing(
                         f"Exports to {market.name} are failing",
                         f"export {export.id} ({export.file_name}) to market {market.name} of {merchant.name}",
                         error, [("Market", market.name),
                                 ("Export", f"{export.id}, a {export.kind} feed of {export.line_count} line(s)")],
                         export.destination, export.attempts,
                         "the export is kept and sent again at the market's next run, and no later feed "
                         "overtakes it. Until it goes through, the market keeps the quantities it was last sent.",
                         "[merchants.markets.export]", "market",
                         [(f"stockdrop exports --market {market.name}", "every try and its error"),
                          (f"stockdrop export {market.name}", "send it now, once the endpoint is fixed")]),
                     f"market:{market.id}:export_failing")
        self._write(*alert, event_key=None)

    def order_export_failing(self, source_id: int, export_id: int, error: str) -> None:
        """The alert hook of ``export.orders``: a warehouse's order files keep failing."""
        with self._sessions() as session:
            source = session.get(Source, source_id)
            export = session.get(OrderExportRecord, export_id)
            merchant = self._merchant(session, source.merchant_id) if source is not None else None
            if source is None or export is None or merchant is None:
                return
            alert = (source.merchant_id, _recipients(merchant, source.name),
                     f"[stockdrop] {merchant.name}: order files to {source.name} are failing",
                     self._delivery_failing(
                         f"Order files to {source.name} are failing",
                         f"order file {export.id} ({export.file_name}) to warehouse {source.name} of "
                         f"{merchant.name}", error,
                         [("Warehouse", source.name),
                          ("Order file", f"{export.id}, {export.line_count} order line(s)")],
                         export.destination, export.attempts,
                         "the file is kept and sent again at the warehouse's next run, with the order lines "
                         "it carries. Until it goes through, the warehouse does not know of these orders, so "
                         "they are not shipped.",
                         "[merchants.sources.orders_export]", "warehouse",
                         [(f"stockdrop orders export {source.name}", "send it now, once the endpoint is fixed")]),
                     f"source:{source.id}:order_export_failing")
        self._write(*alert, event_key=None)

    def _delivery_failing(self, title: str, what: str, error: str, facts: list[tuple[str, str]],
                          destination: str, attempts: int, kept: str, section: str, party: str,
                          commands: list[tuple[str, str]]) -> render.Body:
        """The body of an alert for a delivery that keeps failing (a market's feed, a warehouse's orders)."""
        return render.Body(title).add(
            render.Para(f"Stockdrop could not deliver {what}: {error}", strong=True),
            render.Facts([*facts, ("Destination", destination), ("Tries", str(attempts)),
                          ("Last try", _when(self._now()))]),
            render.Para(f"Nothing is lost: {kept}"),
            render.Para(f"What to do: check the endpoint in {section} (host, login, host key or certificate) "
                        f"and whether the {party}'s server is up."),
            render.Commands(commands))

    def _merchant(self, session: Session, merchant_id: int) -> MerchantSettings | None:
        record = session.get(Merchant, merchant_id)
        if record is None:
            return None
        return next((m for m in self._settings.merchants if m.name == record.name), None)

    def _upload_alert(self, session: Session,
                      upload: Upload) -> tuple[int, list[str], str, render.Body, str] | None:
        if upload.source_id is not None:
            source = session.get(Source, upload.source_id)
            assert source is not None
            merchant = self._merchant(session, source.merchant_id)
            if merchant is None:
                return None
            recipients = _recipients(merchant, source.name)
            where, owner, merchant_id = f"source {source.name}", f"source:{source.id}", source.merchant_id
            short = source.name
        else:
            market = session.get(MarketRecord, upload.market_id)
            assert market is not None
            merchant = self._merchant(session, market.merchant_id)
            if merchant is None:
                return None
            recipients = merchant.report_recipients
            where, owner, merchant_id = f"market {market.name} ({upload.kind})", f"market:{market.id}", market.merchant_id
            short = f"{market.name} {upload.kind}"
        counts = counts_of(upload)
        facts = [("File", upload.original_name), ("Received", f"{_when(upload.received_at)} by {upload.protocol}"
                                                                + (f" (user {upload.user})" if upload.user else "")),
                 ("Size", f"{upload.size} bytes"), ("Upload", str(upload.id))]
        if upload.status == "held":
            reason = _HELD_HINT.sub("", upload.message or "")
            title = f"Full feed {upload.original_name} held for approval"
            body = render.Body(title).add(
                render.Para(f"The full feed {upload.original_name} sent to {where} of {merchant.name} was held, "
                            "not applied: it looks truncated, and applying it would set the SKUs it leaves "
                            "out to 0.", strong=True),
                render.Para(f"Why: {reason}."),
                render.Facts([*facts, ("Rows in the file", str(counts["rows"])),
                              ("Valid rows", str(counts["rows"] - counts["errors"])),
                              ("Row errors", str(counts["errors"])),
                              ("SKUs it would set to 0", str(counts["zeroed"]))]),
                render.Para("What to do: if the file is complete (the SKUs it leaves out are really gone), "
                            "approve it; if it was cut short, reject it and have the full file sent again. "
                            "Until then the stock stays as it was."),
                render.Commands([(f"stockdrop history approve {upload.id}", "apply it after all"),
                                 (f"stockdrop history reject {upload.id}", "refuse it; nothing is applied"),
                                 (f"stockdrop history show {upload.id}", "the upload and its row errors")]))
            return merchant_id, recipients, f"[stockdrop] {merchant.name}/{short}: {title}", body, f"{owner}:held"
        title = f"File {upload.original_name} rejected"
        results = result_name(upload.spool_name) if upload.spool_name else None
        body = render.Body(title).add(
            render.Para(f"The file {upload.original_name} sent to {where} of {merchant.name} was rejected: "
                        "nothing in it was applied.", strong=True),
            render.Para(f"Why: {upload.message or 'no reason was recorded'}."),
            render.Facts([*facts, ("Rows in the file", str(counts["rows"])), ("Row errors", str(counts["errors"]))]),
            render.Para("What to do: correct the file and send it again. Each row error names its row, "
                        "column and value" + (f"; the result file {results} beside the inbox lists them too."
                                              if results else ".")),
            render.Commands([(f"stockdrop history show {upload.id}", "the upload and its row errors")]))
        return (merchant_id, recipients, f"[stockdrop] {merchant.name}/{short}: {title}", body,
                f"{owner}:rejected:{reason_kind(upload.message)}")

    def _write(self, merchant_id: int, recipients: list[str], subject: str, body: render.Body,
               coalesce_key: str, *, event_key: str | None) -> None:
        if not recipients:
            log.info("alert_not_sent_no_recipients", subject=subject)
            return
        for _ in range(2):
            try:
                with self._sessions() as session, session.begin():
                    self._write_in(session, merchant_id, recipients, subject, body, coalesce_key, event_key)
                return
            except IntegrityError:
                continue  # another worker wrote this event meanwhile: the next look finds it

    def _write_in(self, session: Session, merchant_id: int, recipients: list[str], subject: str,
                  body: render.Body, coalesce_key: str, event_key: str | None) -> None:
        now = self._now()
        if event_key is not None and db_email.has_event(session, event_key):
            return
        last = db_email.last_mail(session, coalesce_key)
        if last is not None and now - last.created_at < self._window:
            db_email.add(session, message_id=make_msgid(idstring="coalesced", domain=self._smtp.domain),
                         kind="alert", merchant_id=merchant_id, recipients=recipients, subject=subject,
                         message=b"", now=now, node=self._settings.node, event_key=event_key,
                         coalesce_key=coalesce_key, status=db_email.COALESCED)
            log.info("alert_coalesced", subject=subject, coalesce_key=coalesce_key, last_mail=last.id)
            return
        held_back = db_email.coalesced_since(session, coalesce_key, last.id if last is not None else 0)
        if held_back:
            listed = [f"{_when(r.created_at)}: {r.subject}" for r in held_back[:_HELD_BACK_LISTED]]
            if len(held_back) > _HELD_BACK_LISTED:
                listed.append(f"and {len(held_back) - _HELD_BACK_LISTED} more")
            body.add(render.Items(f"{len(held_back)} more alert(s) of this kind were held back since "
                                  f"{_when(held_back[0].created_at)}, so as not to flood you:", listed))
            subject = f"{subject} (and {len(held_back)} more)"
        composed = outbox.compose(self._smtp, recipients, subject, body, kind="alert", now=now)
        outbox.enqueue(session, composed, kind="alert", merchant_id=merchant_id, now=now, node=self._settings.node,
                       event_key=event_key, coalesce_key=coalesce_key)
        log.info("alert_written", subject=subject, coalesce_key=coalesce_key, held_back=len(held_back))


def alerts_for(sessions: sessionmaker[Session], settings: Settings) -> Alerts | None:
    """The alerts to write, or None: no [smtp], or ``alerts.enabled = false``."""
    return Alerts(sessions, settings) if settings.smtp is not None and settings.alerts.enabled else None


def counts_of(upload: Upload) -> Mapping[str, int]:
    return {key: getattr(upload, key) for key in ("rows", "applied", "unchanged", "errors", "zeroed", "stale")}


def _recipients(merchant: MerchantSettings, source: str) -> list[str]:
    """Who is mailed about a source: its own ``report_recipients``, else the merchant's."""
    settings = next((s for s in merchant.all_sources() if s.name == source), None)
    return settings.recipients(merchant) if settings else merchant.report_recipients
