"""Checkpoint SQLite's write-ahead log on a thread of its own, off the writers' path.

In WAL mode a commit appends pages to the log; a checkpoint later copies
them into the database file. By default the committing connection runs that
checkpoint itself, inside its commit, once the log passes 1000 pages: after a
million-row feed that is about 170 MB copied and synced before the upload
can report its outcome (0.25-0.3 s of a 2 s first load). The daemon instead
runs PASSIVE checkpoints here, every ``interval`` seconds. PASSIVE never
takes a lock that a reader or a writer waits for; the data is durable at the
commit either way (synchronous=NORMAL in WAL mode, see ``engine``).

The writers' own automatic checkpoint stays, raised to ``safety_pages``
(about 400 MB of log): should this thread ever stall, commits still bound
the log, as SQLite's default does. A thread that dies stops the daemon
(``check``), as any dead service does.

One-shot commands (``stockdrop upload``, ``set``, ...) do not run this and
keep SQLite's default.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

import structlog
from sqlalchemy import Engine, event

log = structlog.get_logger(__name__)

SAFETY_PAGES = 100_000


class Checkpointer:
    name = "checkpointer"

    def __init__(self, engine: Engine, *, interval: float = 1.0, safety_pages: int = SAFETY_PAGES) -> None:
        if engine.dialect.name != "sqlite" or not engine.url.database or engine.url.database == ":memory:":
            raise ValueError("the checkpointer is for an SQLite database file")
        self._engine = engine
        self._path = engine.url.database
        self._interval = interval
        self._safety_pages = int(safety_pages)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None

    def start(self) -> None:
        event.listen(self._engine, "connect", self._on_connect)
        # Connections opened before now keep the default; new ones get ours.
        self._engine.dispose()
        self._conn = sqlite3.connect(self._path, timeout=5, isolation_level=None, check_same_thread=False)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="checkpointer", daemon=True)
        self._thread.start()

    def _on_connect(self, dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute(f"PRAGMA wal_autocheckpoint={self._safety_pages}")

    def checkpoint(self) -> tuple[int, int, int]:
        """One PASSIVE checkpoint: (busy, pages in the log, pages checkpointed)."""
        assert self._conn is not None, "not started"
        busy, in_log, done = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return busy, in_log, done

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self._interval):
                try:
                    self.checkpoint()
                except sqlite3.Error:
                    # A busy or locked database now is fine the next time round.
                    log.warning("wal_checkpoint_failed", exc_info=True)
        except Exception:
            # Anything else is a bug: end the thread, and ``check`` stops the daemon.
            log.exception("checkpointer_crashed")

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if event.contains(self._engine, "connect", self._on_connect):
            event.remove(self._engine, "connect", self._on_connect)
            self._engine.dispose()  # whoever uses the engine next gets SQLite's default
        if self._conn is not None:
            try:
                self.checkpoint()  # leave the log empty for whoever opens the file next
            except sqlite3.Error:
                pass
            self._conn.close()
            self._conn = None

    def check(self) -> None:
        if self._thread is not None and not self._thread.is_alive() and not self._stop.is_set():
            raise RuntimeError("the checkpointer thread died")
