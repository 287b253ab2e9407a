"""A runtime service that runs one job every ``interval`` seconds on a thread of its own."""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)


class Periodic:
    """``job`` every ``interval`` seconds (and once at start with ``at_start``).

    A job that raises is logged and tried again next round: a passing fault
    (the database away for a moment) must not stop the daemon. A thread that
    ends anyway is reported by ``check``, which stops the daemon.
    """

    def __init__(self, name: str, interval: float, job: Callable[[], object], *,
                 at_start: bool = False) -> None:
        self.name = name
        self._interval = interval
        self._job = job
        self._at_start = at_start
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> None:
        try:
            self._job()
        except Exception:
            log.exception("periodic_job_failed", service=self.name)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.run_once()

    def start(self) -> None:
        self._stop.clear()
        if self._at_start:
            self.run_once()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def check(self) -> None:
        if self._thread is not None and not self._thread.is_alive() and not self._stop.is_set():
            raise RuntimeError(f"the {self.name} thread died")
