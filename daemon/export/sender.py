"""Delivering an outbox row, retried with capped exponential backoff, recorded only once delivered.

The retry policy is tenacity's (a ``TransientError`` is retried, waiting
1, 2, 4, ... seconds up to ``retry_max_seconds``, ``failing_after`` tries in
all); every failed try is recorded on the row. After the last, or at once on
a ``LoginRefused`` (a wrong password or a refused host key: waiting will not
fix it), the export is marked failing and the alert hook called; it stays
the market's undelivered export, tried again by the next run, so nothing is
lost and no other delta overtakes it. Other markets are not affected: each
market's delivery runs on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
import tenacity
from sqlalchemy.orm import Session, sessionmaker

from daemon.db import exports as db_exports
from daemon.db.engine import durable
from daemon.db.models import ExportRecord
from daemon.export import plan
from daemon.retry import backoff
from daemon.settings import ExportSettings
from daemon.transports import TransportError
from daemon.transports.destination import Destination, LoginRefused

log = structlog.get_logger(__name__)

# (market id, export id, the last error): the reports issue turns it into an email.
AlertHook = Callable[[int, int, str], None]


class Stopping(Exception):
    """The daemon is stopping: the wait between two tries was cut short."""


@dataclass(frozen=True)
class Sent:
    export_id: int
    file_name: str
    kind: str
    status: str  # delivered, failing, or pending (stopped between tries)
    attempts: int
    error: str | None = None


def send(sessions: sessionmaker[Session], export_id: int, destination: Destination, export: ExportSettings, *,
         now: Callable[[], datetime] = lambda: datetime.now(UTC), alert: AlertHook | None = None,
         sleep: Callable[[float], None] | None = None) -> Sent:
    """Deliver export ``export_id`` to ``destination``; the outcome is recorded on its row.

    ``sleep`` waits between tries; it may raise ``Stopping`` to give up
    early (the export stays pending).
    """
    with sessions() as session:
        record = session.get(ExportRecord, export_id)
        if record is None or record.status == db_exports.DELIVERED:
            return Sent(export_id, record.file_name if record else "", record.kind if record else "",
                        db_exports.DELIVERED, 0)
        name, content, market_id, kind = record.file_name, record.content, record.market_id, record.kind
    marker = plan.marker_name(export.done_marker, name)
    tries = 0

    def attempt() -> None:
        nonlocal tries
        tries += 1
        destination.deliver(name, content, done_marker=marker)

    def failed(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        _record_attempt(sessions, export_id, str(error), failing=False, now=now())
        log.warning("export_retry", export_id=export_id, file=name, attempt=state.attempt_number,
                    error=str(error), wait_s=round(state.upcoming_sleep, 1))

    retrying = backoff(
        attempts=export.failing_after, max_wait=export.retry_max_seconds,
        # A refused login is a TransportError too, but waiting will not fix it.
        transient=lambda e: isinstance(e, TransportError) and not isinstance(e, LoginRefused),
        before_sleep=failed, sleep=sleep)
    try:
        retrying(attempt)
    except Stopping:
        return Sent(export_id, name, kind, db_exports.PENDING, tries)
    except TransportError as exc:
        attempts = _record_attempt(sessions, export_id, str(exc), failing=True, now=now())
        log.error("export_failing", export_id=export_id, file=name, market_id=market_id, error=str(exc),
                  attempts=attempts, refused=isinstance(exc, LoginRefused))
        if alert is not None:
            alert(market_id, export_id, str(exc))
        return Sent(export_id, name, kind, db_exports.FAILING, tries, str(exc))
    with sessions() as session, session.begin():
        durable(session)
        db_exports.mark_delivered(session, export_id, now())
    log.info("export_delivered", export_id=export_id, file=name, market_id=market_id, attempts=tries,
             destination=destination.describe())
    return Sent(export_id, name, kind, db_exports.DELIVERED, tries)


def _record_attempt(sessions: sessionmaker[Session], export_id: int, error: str, *, failing: bool,
                    now: datetime) -> int:
    with sessions() as session, session.begin():
        return db_exports.mark_attempt(session, export_id, now, error[:2000], failing=failing)
