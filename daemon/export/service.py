"""The exporter: which market is sent what, when, on the leader only.

Three things start an export of a market:

- a change: a poll (every ``poll_seconds``) reads each market's fingerprint
  (its sources' ``stock_version``, which every stock write by any process or
  daemon bumps, its channel rules, its listing count); a market whose
  fingerprint moved gets a delta ``debounce_seconds`` later. Changes inside
  that window are in the same file: it is computed when it runs.
- its delta schedule (``delta_every_seconds``) and full schedule
  (``full_every_seconds``);
- ``stockdrop export`` (``export_now``).

Every run first delivers the market's undelivered export, if any, and only
then composes the next one (``export.outbox``). Runs of one market never
overlap (a lock per market); runs of different markets do, so one market's
dead endpoint never holds the others up. Scheduled and change-triggered runs
happen only while this daemon leads (``db.leader``); on PostgreSQL the
outbox's unique index would refuse a second undelivered export anyway.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Protocol

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from daemon.db import exports as db_exports
from daemon.db.market_lines import LinesCache
from daemon.db.markets import get_market
from daemon.errors import ExportError, TransientError
from daemon.export import outbox, plan
from daemon.export.destinations import destination_for
from daemon.export.sender import AlertHook, Sent, send
from daemon.settings import ExportSettings
from daemon.transports.destination import Destination

log = structlog.get_logger(__name__)


class Timer(Protocol):
    """What the exporter needs of a scheduler (``runtime.schedule`` gives APScheduler's)."""

    def every(self, key: str, seconds: float, fn: Callable[[], None]) -> None: ...

    def cron(self, key: str, expression: str, fn: Callable[[], None]) -> None: ...

    def after(self, key: str, seconds: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` once in ``seconds``, unless a run under ``key`` is already waiting."""
        ...


@dataclass(frozen=True)
class ExportTarget:
    merchant: str
    market: str
    settings: ExportSettings

    @property
    def key(self) -> str:
        return f"{self.merchant}/{self.market}"


class Exporter:
    def __init__(self, sessions: sessionmaker[Session], targets: list[ExportTarget], *,
                 leads: Callable[[], bool] = lambda: True, node: str | None = None,
                 alert: AlertHook | None = None, sleep: Callable[[float], None] | None = None,
                 destinations: Callable[[ExportSettings], Destination] = destination_for) -> None:
        self._sessions, self._leads, self._node, self._alert, self._sleep = sessions, leads, node, alert, sleep
        self._destinations = destinations
        self.targets = {t.key: t for t in targets}
        self._locks = {key: threading.Lock() for key in self.targets}
        self._seen: dict[str, tuple[object, ...]] = {}
        # Each market's lines between runs: a delta after one sale reads what
        # moved, not a million listings (db.market_lines).
        self.lines = LinesCache()
        self._timer: Timer | None = None
        self._poll_lock = threading.Lock()  # the poll on its schedule and a nudged one share _seen

    def start(self, timer: Timer, *, poll_seconds: float = 1.0) -> None:
        """Put the polls and schedules on ``timer``."""
        self._timer = timer
        timer.every("exports:poll", poll_seconds, partial(self.poll_for, timer))
        for key, target in self.targets.items():
            if target.settings.delta_every_seconds is not None:
                timer.every(f"exports:delta:{key}", target.settings.delta_every_seconds,
                            partial(self._scheduled, key, "delta"))
            if target.settings.full_every_seconds is not None:
                timer.every(f"exports:full:{key}", target.settings.full_every_seconds,
                            partial(self._scheduled, key, "full"))
            if target.settings.delta_cron is not None:
                timer.cron(f"exports:delta-cron:{key}", target.settings.delta_cron,
                           partial(self._scheduled, key, "delta"))
            if target.settings.full_cron is not None:
                timer.cron(f"exports:full-cron:{key}", target.settings.full_cron,
                           partial(self._scheduled, key, "full"))

    def poll_for(self, timer: Timer) -> None:
        self.poll(timer)

    def nudge(self) -> None:
        """Something changed in this process (a file applied): look now, not at the next poll.

        The poll still finds every change, whoever made it; this only spares
        a change made here the wait for it (up to ``poll_seconds``), so a sale
        reaches the other markets ``debounce_seconds`` after it is applied.
        """
        timer = self._timer
        if timer is not None:
            timer.after("exports:nudge", 0, partial(self.poll_for, timer))

    def poll(self, timer: Timer) -> list[str]:
        """Schedule a debounced delta for each market whose fingerprint moved; returns their keys."""
        with self._poll_lock:
            return self._poll(timer)

    def _poll(self, timer: Timer) -> list[str]:
        if not self._leads():
            self._seen.clear()  # a new leader starts from a fresh look
            self.lines.forget()  # and frees what it kept while it led
            return []
        with self._sessions() as session:
            prints = {key: db_exports.market_fingerprint(session, t.merchant, t.market)
                      for key, t in self.targets.items()}
        moved = [key for key, fp in prints.items() if self._seen.get(key) != fp]
        first_look = not self._seen
        self._seen = prints
        for key in moved:
            # On the first look every market "moved": a delta then sends what
            # changed while no daemon led (an empty delta writes nothing).
            timer.after(f"exports:change:{key}", 0 if first_look else self.targets[key].settings.debounce_seconds,
                        partial(self._scheduled, key, "delta", trigger="change"))
        return moved

    def _scheduled(self, key: str, kind: plan.Kind, trigger: str = "schedule") -> None:
        if not self._leads():
            return
        try:
            self.export_now(key, kind, trigger=trigger)
        except TransientError as exc:  # the stock is mid-write (db.market_lines.NotSettled), a lock
            self._seen.pop(key, None)  # the next poll starts a delta again, not the next change
            log.warning("export_run_deferred", market=key, kind=kind, reason=str(exc))
        except ExportError as exc:  # the listings or options: every run says so until they are fixed
            log.error("export_run_refused", market=key, kind=kind, reason=str(exc))
        except Exception:  # a scheduled job must not die; the next run tries again
            log.exception("export_run_failed", market=key, kind=kind)

    def export_now(self, key: str, kind: plan.Kind, *, trigger: str = "manual") -> list[Sent]:
        """Deliver the market's undelivered export, then compose and deliver one of ``kind``.

        Returns what was sent, in order (empty: nothing to send). Stops at
        the first delivery that does not succeed: the next run goes on.
        """
        target = self.targets[key]
        destination = self._destinations(target.settings)
        sent: list[Sent] = []
        with self._locks[key]:
            for _ in range(2):  # at most the one owed, then a new one
                composed = self._compose(target, kind, trigger, destination.describe())
                if composed is None or (sent and sent[-1].export_id == composed[0]):
                    break
                export_id, new = composed
                result = send(self._sessions, export_id, destination, target.settings, alert=self._alert,
                              sleep=self._sleep)
                sent.append(result)
                if result.status != "delivered" or new:
                    break
        return sent

    def _compose(self, target: ExportTarget, kind: plan.Kind, trigger: str,
                 destination: str) -> tuple[int, bool] | None:
        """(the export to send, whether it was composed now) or None: nothing to send."""
        for _ in range(2):
            try:
                with self._sessions() as session, session.begin():
                    market = get_market(session, target.merchant, target.market)
                    owed = db_exports.undelivered(session, market.id)
                    if owed is not None:
                        return owed.id, False
                    record = outbox.compose(session, market, target.settings, kind, trigger=trigger,
                                            destination=destination, now=datetime.now(UTC), node=self._node,
                                            lines_of=self.lines.market_lines, composed=self.lines.composed)
                    return None if record is None else (record.id, True)
            except IntegrityError:
                continue  # another daemon composed this market's export first: take that one
        return None
