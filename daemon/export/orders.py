"""Order files to warehouses: which warehouse is sent what, when, on the leader only.

Each warehouse with an ``[orders_export]`` gets, on its schedule
(``every_seconds``, ``cron``) and on demand (``stockdrop orders export``),
one file of every open order line allocated to it that its status files
have not confirmed (``db.order_exports.due_lines``). The same lines go out
again on the next run until a status file answers for them, as the
warehouse systems it talks to expect (they dedupe by order number); a line
sent ``1 + resend_limit`` times with no answer is flagged ``unconfirmed``
and left out from then on.

A run delivers the warehouse's undelivered file, if it has one, byte for
byte under its name; only a run with nothing owed composes a new one. The delivery itself
is the market exports' (``sender.send``, tenacity's backoff, the
``transports`` destinations). Runs of one warehouse never overlap (a lock
per warehouse in this daemon, the leadership across daemons, and the
outbox's unique index under both).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import polars as pl
import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from daemon.db import order_exports as db_orders
from daemon.db.catalog import get_source
from daemon.db.models import OrderExportRecord, Source
from daemon.export.destinations import destination_for
from daemon.export.order_formats import ORDER_FORMATS, SCHEMA
from daemon.export.sender import ORDERS, AlertHook, Sent, send
from daemon.export.service import Timer
from daemon.settings import OrdersExportSettings
from daemon.transports.destination import Destination

log = structlog.get_logger(__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")  # as a market file's name (``plan.file_name``)


@dataclass(frozen=True)
class OrdersTarget:
    merchant: str
    source: str
    settings: OrdersExportSettings

    @property
    def key(self) -> str:
        return f"{self.merchant}/{self.source}"


@dataclass(frozen=True)
class Preview:
    """What a run would send now (``--dry-run``): nothing is written or sent."""

    owed: OrderExportRecord | None  # delivered first, as it is
    format: str
    content: bytes
    lines: int
    flagged: int  # lines this run would flag unconfirmed


def frame(lines: list[db_orders.DueLine]) -> pl.DataFrame:
    return pl.DataFrame(
        [(x.order_id, x.line_id, x.market, x.sku, x.quantity,
          x.ordered_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")) for x in lines],
        schema=SCHEMA, orient="row")


def file_name(pattern: str, *, source: str, now: datetime, delivery: int, ext: str) -> str:
    """As ``plan.file_name``: ``{delivery}`` makes it unique per file and the same on a resend;
    anything that is not a safe file-name character becomes ``_``."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return _UNSAFE.sub("_", pattern.format(source=source, timestamp=stamp, delivery=delivery, ext=ext))


def compose(session: Session, source: Source, settings: OrdersExportSettings, *, trigger: str, destination: str,
            now: datetime, node: str | None) -> OrderExportRecord | None:
    """The warehouse's next order file: its undelivered one, or a new one (None: nothing is due).

    In the caller's transaction; another daemon composing at the same
    moment makes the flush fail on ``ix_order_exports_undelivered``: the
    caller rolls back and takes that one.
    """
    pending = db_orders.undelivered(session, source.id)
    if pending is not None:
        return pending
    flagged = db_orders.flag_unconfirmed(session, source.id, settings.resend_limit, now)
    if flagged:
        log.warning("order_lines_unconfirmed", source=source.name, fulfilments=flagged,
                    resend_limit=settings.resend_limit)
    lines = db_orders.due_lines(session, source.id, now=now, max_age_days=settings.max_age_days)
    if not lines:
        return None
    fmt = ORDER_FORMATS[settings.format]
    content = fmt.write(frame(lines), settings.options)
    record = db_orders.add_export(
        session, source_id=source.id, trigger=trigger, file_name="", format=fmt.name,
        destination=destination[:300], sha256=hashlib.sha256(content).hexdigest(), size=len(content),
        line_count=len(lines), content=content, fulfilments=[x.fulfilment_id for x in lines], node=node,
        created_at=now)
    record.file_name = file_name(settings.file_name, source=source.name, now=now, delivery=record.id,
                                 ext=fmt.extension)
    return record


class OrderExporter:
    def __init__(self, sessions: sessionmaker[Session], targets: list[OrdersTarget], *,
                 leads: Callable[[], bool] = lambda: True, node: str | None = None,
                 alert: AlertHook | None = None, sleep: Callable[[float], None] | None = None,
                 destinations: Callable[[OrdersExportSettings], Destination] = destination_for,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._sessions, self._leads, self._node, self._alert, self._sleep = sessions, leads, node, alert, sleep
        self._destinations, self._clock = destinations, clock
        self.targets = {t.key: t for t in targets}
        self._locks = {key: threading.Lock() for key in self.targets}

    def start(self, timer: Timer) -> None:
        """Put each warehouse's schedule on ``timer``, and a first run now (what a stop left owed)."""
        for key, target in self.targets.items():
            run = partial(self._scheduled, key)
            timer.after(f"orders:start:{key}", 0, run)
            if target.settings.every_seconds is not None:
                timer.every(f"orders:every:{key}", target.settings.every_seconds, run)
            if target.settings.cron is not None:
                timer.cron(f"orders:cron:{key}", target.settings.cron, run)

    def _scheduled(self, key: str) -> None:
        if not self._leads():
            return
        try:
            self.export_now(key, trigger="schedule")
        except Exception:  # a scheduled job must not die; the next run tries again
            log.exception("order_export_run_failed", source=key)

    def export_now(self, key: str, *, trigger: str = "manual") -> list[Sent]:
        """Deliver the warehouse's undelivered file if it has one, else compose and deliver the next.

        One file a run: the one owed already carries what the warehouse is
        to be sent again, and what came since goes with the next run.
        Returns what was sent (empty: nothing due).
        """
        target = self.targets[key]
        destination = self._destinations(target.settings)
        with self._locks[key]:
            composed = self._compose(target, trigger, destination.describe())
            if composed is None:
                return []
            return [send(self._sessions, composed, destination, target.settings, alert=self._alert,
                         sleep=self._sleep, outbox=ORDERS, now=self._clock)]

    def preview(self, key: str) -> Preview:
        """What ``export_now`` would send, composed in a transaction that is rolled back."""
        target = self.targets[key]
        with self._sessions() as session:
            source = get_source(session, target.merchant, target.source)
            owed = db_orders.undelivered(session, source.id)
            if owed is not None:
                session.expunge(owed)
            flagged = db_orders.flag_unconfirmed(session, source.id, target.settings.resend_limit, self._clock())
            lines = db_orders.due_lines(session, source.id, now=self._clock(),
                                        max_age_days=target.settings.max_age_days)
            session.rollback()
        fmt = ORDER_FORMATS[target.settings.format]
        return Preview(owed, fmt.name, fmt.write(frame(lines), target.settings.options), len(lines), len(flagged))

    def _compose(self, target: OrdersTarget, trigger: str, destination: str) -> int | None:
        """The file to send (owed, or composed now), or None: nothing to send."""
        for _ in range(2):
            try:
                with self._sessions() as session, session.begin():
                    source = get_source(session, target.merchant, target.source)
                    record = compose(session, source, target.settings, trigger=trigger, destination=destination,
                                     now=self._clock(), node=self._node)
                    return None if record is None else record.id
            except IntegrityError:
                continue  # another daemon composed this warehouse's file first: take that one
        return None
