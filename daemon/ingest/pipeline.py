"""The ingest pipeline assembled: intake -> workers -> processor, plus the watcher.

``Pipeline`` is the object receivers deliver to; ``services()`` lists the
runtime services in start order (workers first, so recovered spool files have
somewhere to go; receivers last, so nothing arrives before we can take it).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from daemon.ingest.arrival import Arrival
from daemon.ingest.dispatch import Dispatcher
from daemon.ingest.intake import Intake
from daemon.formats.feeds import ParsedFeed, ParseOptions
from daemon.ingest.contained import parse_contained
from daemon.ingest.process import Outcome, Processor
from daemon.ingest.retention import Janitor
from daemon.ingest.sources import SourceBook
from daemon.ingest.spool import SpoolDirs
from daemon.ingest.watch import FolderWatcher
from daemon.settings import Settings


class Pipeline:
    def __init__(
        self, settings: Settings, sessions: sessionmaker[Session], book: SourceBook, *,
        parser: Callable[[Path, ParseOptions], ParsedFeed] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        workers: int | None = None,
    ) -> None:
        ingest = settings.ingest
        self.settings = settings
        self.sessions = sessions
        self.book = book
        self.dirs = SpoolDirs(settings.data_dir)
        self.dirs.create()
        if parser is None:
            def parser(path: Path, options: ParseOptions) -> ParsedFeed:
                return parse_contained(path, options, timeout_s=ingest.parse_timeout_seconds,
                                       memory_bytes=ingest.parse_memory_mb * 1024 * 1024)
        self.processor = Processor(sessions, self.dirs, book, ingest, parser, clock)
        self.dispatcher = Dispatcher(self._handle, workers or ingest.workers)
        self.intake = Intake(sessions, self.dirs, self.dispatcher.submit, clock)
        self._listeners: list[Callable[[Outcome], None]] = []

    def deliver(self, arrival: Arrival) -> int:
        return self.intake.deliver(arrival)

    def on_outcome(self, listener: Callable[[Outcome], None]) -> None:
        """Called after each upload is filed (reports and metrics hook in here)."""
        self._listeners.append(listener)

    def _handle(self, upload_id: int) -> None:
        outcome = self.processor.process(upload_id)
        for listener in self._listeners:
            listener(outcome)

    def services(self) -> list[Any]:
        ingest = self.settings.ingest
        watcher = FolderWatcher(
            self.book.inboxes(), self.deliver, settle_seconds=ingest.settle_seconds,
            reconcile_seconds=ingest.reconcile_seconds, polling=ingest.polling_observer,
            done_markers=ingest.done_markers,
        )
        staging = [s.staging for s in self.book] + [m.staging for m in self.book.markets.values()]
        janitor = Janitor(self.dirs.root / "archive", staging, ingest.archive_retention_days)
        return [_Workers(self), watcher, janitor]


class _Workers:
    """The worker threads as a runtime service; recovery runs once they are up."""

    name = "ingest"

    def __init__(self, pipeline: Pipeline) -> None:
        self._p = pipeline

    def start(self) -> None:
        from daemon.ingest import contained

        # The first file should not wait for the parser's start-up, nor should
        # READY=1 be sent before the daemon can parse.
        contained.default_pool().warm(wait_s=30)
        self._p.dispatcher.start()
        self._p.intake.recover()

    def stop(self, timeout: float) -> None:
        # Workers finish the file in hand; queued files stay in the spool.
        self._p.dispatcher.stop(timeout)
        from daemon.ingest import contained

        contained.close()

    def check(self) -> None:
        self._p.dispatcher.check()
