"""The ingest pipeline assembled: intake -> workers -> processor, plus the watcher.

``Pipeline`` is the object the endpoints deliver to; ``services()`` lists the
runtime services in start order (workers first, so recovered spool files have
somewhere to go; endpoints last, so nothing arrives before we can take it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from daemon.ingest.arrival import Arrival
from daemon.ingest.contained import ParserPool
from daemon.ingest.dispatch import Dispatcher
from daemon.ingest.intake import Intake
from daemon.ingest.outcomes import OutcomeHook
from daemon.ingest.process import Processor
from daemon.ingest.retention import janitor, staging_idle
from daemon.ingest.sources import SourceBook, book_refresher
from daemon.ingest.spool import SpoolDirs
from daemon.ingest.watch import FolderWatcher
from daemon.settings import Settings


class Pipeline:
    """``workers`` threads apply files, each reading through a parser process of
    its own (``ingest.workers`` of each by default). ``parsers`` shares a pool
    the caller owns (tests); otherwise the pipeline makes one and ``close``
    stops it. ``on_outcome`` is told of every upload's final outcome
    (``ingest.outcomes.OutcomeHook``: the alerts)."""

    def __init__(
        self, settings: Settings, sessions: sessionmaker[Session], book: SourceBook, *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        workers: int | None = None, parsers: ParserPool | None = None, on_outcome: OutcomeHook | None = None,
    ) -> None:
        ingest = settings.ingest
        self.settings = settings
        self.sessions = sessions
        self.book = book
        self.dirs = SpoolDirs(settings.data_dir)
        self.dirs.create()
        size = workers or ingest.workers
        self._owns_parsers = parsers is None
        self.parsers = parsers or ParserPool(size, timeout_s=ingest.parse_timeout_seconds,
                                             memory_bytes=ingest.parse_memory_mb * 1024 * 1024)
        self.processor = Processor(sessions, self.dirs, book, ingest, self.parsers.parse, self.parsers, clock,
                                   node=settings.node, on_outcome=on_outcome)
        self.dispatcher = Dispatcher(lambda upload_id: self.processor.process(upload_id), size)
        self.intake = Intake(sessions, self.dirs, self.dispatcher.submit, clock, node=settings.node)

    def deliver(self, arrival: Arrival) -> int:
        return self.intake.deliver(arrival)

    def close(self) -> None:
        """Stop the parser processes this pipeline started."""
        if self._owns_parsers:
            self.parsers.close()

    def services(self, *, leads: Callable[[str], Callable[[], bool]] | None = None) -> list[Any]:
        """The runtime services, in start order. ``leads(work)`` says whether this
        daemon does ``work`` that one daemon of several does (default: always)."""
        ingest = self.settings.ingest
        watcher = FolderWatcher(
            self.book.inboxes(), self.deliver, settle_seconds=ingest.settle_seconds,
            reconcile_seconds=ingest.reconcile_seconds, polling=ingest.polling_observer,
            done_markers=ingest.done_markers,
        )
        here = hashlib.sha256(str(self.dirs.root.resolve()).encode()).hexdigest()[:16]
        listeners = self.settings.listeners
        sweeper = janitor(self.dirs.root / "archive", lambda: self.book.staging_folders,
                          ingest.archive_retention_days,
                          staging_idle=staging_idle(listeners.ftp.idle_timeout, listeners.sftp.idle_timeout),
                          leads=leads(f"retention:{here}") if leads is not None else (lambda: True))
        markets = book_refresher(self.book, self.sessions, self.settings, on_new=watcher.add)
        return [_Workers(self), watcher, markets, sweeper]


class _Workers:
    """The worker threads as a runtime service; recovery runs once they are up."""

    name = "ingest"

    def __init__(self, pipeline: Pipeline) -> None:
        self._p = pipeline

    def start(self) -> None:
        # The first file should not wait for the parser's start-up, nor should
        # READY=1 be sent before the daemon can parse.
        self._p.parsers.warm(wait_s=30)
        self._p.dispatcher.start()
        self._p.intake.recover()

    def stop(self, timeout: float) -> None:
        # Workers finish the file in hand; queued files stay in the spool.
        self._p.dispatcher.stop(timeout)
        self._p.close()

    def check(self) -> None:
        self._p.dispatcher.check()
