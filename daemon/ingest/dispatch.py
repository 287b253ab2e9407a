"""Worker threads that process uploads one at a time per source, in receive order.

Different sources run in parallel; one source never has two files in flight,
so a later file can never be applied before an earlier one of the same source.
A file whose processing raised something unexpected (a bug, the database
gone) is retried with backoff rather than quarantined: a good file must not
be lost to a fault that is ours.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Hashable

import structlog

log = structlog.get_logger(__name__)

_STOP = object()  # tells a worker thread to end


class Dispatcher:
    name = "ingest-workers"

    def __init__(self, handle: Callable[[int], object], workers: int = 4,
                 retry_delays: tuple[float, ...] = (1, 5, 30, 120, 300)) -> None:
        self._handle = handle
        self._workers = workers
        self._retry_delays = retry_delays
        self._lock = threading.Lock()
        self._pending: dict[Hashable, deque[int]] = {}
        self._active: set[Hashable] = set()  # lanes queued in _ready or being processed
        self._ready: queue.Queue[Hashable] = queue.Queue()
        self._attempts: dict[int, int] = {}
        self._threads: list[threading.Thread] = []
        self._timers: set[threading.Timer] = set()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._stopping = False

    def submit(self, source_id: Hashable, upload_id: int) -> None:
        """Queue an upload in its lane (a source, or a market's order inbox)."""
        with self._lock:
            if self._stopping:
                return  # the spool keeps it; the next start recovers it
            pending = self._pending.setdefault(source_id, deque())
            if upload_id in pending:
                return
            pending.append(upload_id)
            self._in_flight += 1
            if source_id not in self._active:
                self._active.add(source_id)
                self._ready.put(source_id)

    def start(self) -> None:
        self._stopping = False
        for i in range(self._workers):
            t = threading.Thread(target=self._loop, name=f"ingest-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 30.0) -> None:
        with self._lock:
            self._stopping = True
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
        for _ in self._threads:
            self._ready.put(_STOP)
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()

    def check(self) -> None:
        dead = [t.name for t in self._threads if not t.is_alive()]
        if dead and not self._stopping:
            raise RuntimeError(f"ingest worker thread(s) died: {', '.join(dead)}")

    def wait_idle(self, timeout: float) -> bool:
        """For tests and `upload`: wait until nothing is queued or running."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def _loop(self) -> None:
        while True:
            source_id = self._ready.get()
            if source_id is _STOP:
                return
            with self._lock:
                upload_id = self._pending[source_id].popleft()
            retry = False
            try:
                self._handle(upload_id)
                self._attempts.pop(upload_id, None)
            except Exception:
                retry = True
                log.exception("upload_processing_failed", upload_id=upload_id, source_id=source_id)
            with self._lock:
                self._in_flight -= 1
                if retry and not self._stopping and self._schedule_retry(source_id, upload_id):
                    pass  # the source stays blocked until the retry fires: order is kept
                elif self._pending[source_id] and not self._stopping:
                    self._ready.put(source_id)
                else:
                    self._active.discard(source_id)
                self._idle.notify_all()

    def _schedule_retry(self, source_id: Hashable, upload_id: int) -> bool:
        """Put the upload back at the head of its source's queue after a delay."""
        attempt = self._attempts.get(upload_id, 0)
        if attempt >= len(self._retry_delays):
            log.error("upload_retries_exhausted", upload_id=upload_id,
                      note="left in the spool; it is processed again at the next start")
            self._attempts.pop(upload_id, None)
            return False
        self._attempts[upload_id] = attempt + 1
        delay = self._retry_delays[attempt]
        log.warning("upload_retry_scheduled", upload_id=upload_id, delay_s=delay)
        self._pending[source_id].appendleft(upload_id)
        self._in_flight += 1

        def fire() -> None:
            with self._lock:
                self._timers.discard(timer)
                if not self._stopping:
                    self._ready.put(source_id)

        timer = threading.Timer(delay, fire)
        timer.daemon = True
        self._timers.add(timer)
        timer.start()
        return True
