"""Timed jobs for the daemon: the one module that imports APScheduler (a layout test holds it).

``Scheduler`` is a runtime service and the ``Timer`` that ``export.service``
(and, later, reports) put their jobs on: ``every`` for a schedule, ``after``
for a debounced run. Jobs run on a small thread pool; one job never
overlaps itself (``max_instances=1``), and a run that was missed while the
pool was busy is run once, not once per miss (``coalesce``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

log = structlog.get_logger(__name__)


def check_cron(expression: str) -> str | None:
    """None if ``expression`` is a crontab line APScheduler takes; else why not."""
    try:
        CronTrigger.from_crontab(expression, timezone=UTC)
    except ValueError as exc:
        return f"{expression!r} is not a crontab line (minute hour day month weekday): {exc}"
    return None


class Stopped(Exception):
    """``sleep`` was cut short: the scheduler is stopping."""


class Scheduler:
    def __init__(self, name: str, setup: Callable[[Scheduler], None], *, workers: int = 4) -> None:
        self.name = name
        self._setup = setup
        self._stopping = threading.Event()
        self._aps = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(workers)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
            timezone=UTC)

    def every(self, key: str, seconds: float, fn: Callable[[], None]) -> None:
        self._aps.add_job(fn, IntervalTrigger(seconds=seconds), id=key, name=key, replace_existing=True)

    def cron(self, key: str, expression: str, fn: Callable[[], None]) -> None:
        self._aps.add_job(fn, CronTrigger.from_crontab(expression, timezone=UTC), id=key, name=key,
                          replace_existing=True)

    def after(self, key: str, seconds: float, fn: Callable[[], None]) -> None:
        if self._aps.get_job(key) is not None:
            return  # already waiting: this change rides along with it
        run_at = datetime.now(UTC) + timedelta(seconds=seconds)
        self._aps.add_job(fn, DateTrigger(run_date=run_at), id=key, name=key, replace_existing=True)

    def cancel(self, key: str) -> None:
        try:
            self._aps.remove_job(key)
        except JobLookupError:
            pass

    def sleep(self, seconds: float) -> None:
        """Wait between two tries of a job; raises ``Stopped`` as soon as the scheduler stops."""
        if self._stopping.wait(seconds):
            raise Stopped

    def start(self) -> None:
        self._stopping.clear()
        self._setup(self)
        self._aps.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()  # waits between retries end now
        if self._aps.running:
            self._aps.shutdown(wait=True)

    def check(self) -> None:
        if not self._aps.running and not self._stopping.is_set():
            raise RuntimeError(f"the {self.name} scheduler stopped")
