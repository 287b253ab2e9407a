"""Delivering an outbox row, retried with capped exponential backoff, recorded only once delivered.

The retry policy is tenacity's (a ``TransientError`` is retried, waiting
1, 2, 4, ... seconds up to ``retry_max_seconds``, ``failing_after`` tries in
all); every failed try is recorded on the row. After the last, or at once on
a ``LoginRefused`` (a wrong password or a refused host key: waiting will not
fix it), the export is marked failing and the alert hook called; it stays
the market's undelivered export, tried again by the next run, so nothing is
lost and no other delta overtakes it. Other markets are not affected: each
market's delivery runs on its own.

Warehouses' order files go through the same loop: ``outbox`` says which
table the row is in (``MARKETS``, the default, or ``ORDERS``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
import tenacity
from sqlalchemy.orm import Session, sessionmaker

from daemon.db import exports as db_exports
from daemon.db import order_exports
from daemon.db.engine import durable
from daemon.export import plan
from daemon.retry import backoff
from daemon.settings import DeliverySettings
from daemon.transports import TransportError
from daemon.transports.destination import Destination, LoginRefused

log = structlog.get_logger(__name__)

# (market id, export id, the last error): the reports issue turns it into an email.
# For an order file: (the warehouse's source id, order export id, the last error).
AlertHook = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Outbox:
    """Where a delivery's row lives: one table of deliveries, the same rules."""

    name: str  # for the log: "exports", "order_exports"
    owner: str  # the log's key for the owner id: "market_id", "source_id"
    # (file name, bytes, owner id (market or source), kind, delivered) or None
    load: Callable[[Session, int], tuple[str, bytes, int, str, bool] | None]
    mark_attempt: Callable[..., int]  # (session, id, now, error, *, failing) -> attempts so far
    mark_delivered: Callable[[Session, int, datetime], bool]


MARKETS = Outbox("exports", "market_id", db_exports.load, db_exports.mark_attempt, db_exports.mark_delivered)
ORDERS = Outbox("order_exports", "source_id", order_exports.load, order_exports.mark_attempt, order_exports.mark_delivered)


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


def send(sessions: sessionmaker[Session], export_id: int, destination: Destination, export: DeliverySettings, *,
         now: Callable[[], datetime] = lambda: datetime.now(UTC), alert: AlertHook | None = None,
         sleep: Callable[[float], None] | None = None, outbox: Outbox = MARKETS) -> Sent:
    """Deliver export ``export_id`` (a row of ``outbox``) to ``destination``; the outcome is recorded on its row.

    ``sleep`` waits between tries; it may raise ``Stopping`` to give up
    early (the export stays pending).
    """
    with sessions() as session:
        loaded = outbox.load(session, export_id)
        if loaded is None or loaded[4]:
            return Sent(export_id, loaded[0] if loaded else "", loaded[3] if loaded else "",
                        db_exports.DELIVERED, 0)
        name, content, owner_id, kind, _ = loaded
    marker = plan.marker_name(export.done_marker, name)
    tries = 0

    def attempt() -> None:
        nonlocal tries
        tries += 1
        destination.deliver(name, content, done_marker=marker)

    def failed(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        _record_attempt(sessions, outbox, export_id, str(error), failing=False, now=now())
        log.warning("export_retry", outbox=outbox.name, export_id=export_id, file=name,
                    attempt=state.attempt_number, error=str(error), wait_s=round(state.upcoming_sleep, 1))

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
        attempts = _record_attempt(sessions, outbox, export_id, str(exc), failing=True, now=now())
        log.error("export_failing", outbox=outbox.name, export_id=export_id, file=name, error=str(exc),
                  attempts=attempts, refused=isinstance(exc, LoginRefused), **{outbox.owner: owner_id})
        if alert is not None:
            alert(owner_id, export_id, str(exc))
        return Sent(export_id, name, kind, db_exports.FAILING, tries, str(exc))
    with sessions() as session, session.begin():
        durable(session)
        outbox.mark_delivered(session, export_id, now())
    log.info("export_delivered", outbox=outbox.name, export_id=export_id, file=name, attempts=tries,
             destination=destination.describe(), **{outbox.owner: owner_id})
    return Sent(export_id, name, kind, db_exports.DELIVERED, tries)


def _record_attempt(sessions: sessionmaker[Session], outbox: Outbox, export_id: int, error: str, *,
                    failing: bool, now: datetime) -> int:
    with sessions() as session, session.begin():
        return outbox.mark_attempt(session, export_id, now, error[:2000], failing=failing)
